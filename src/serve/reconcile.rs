//! At start: the sandboxes of pull requests that were closed while the service was not
//! listening (down, restarting, or a lost delivery) are deleted.

use anyhow::{Context, Result};

use super::github::{valid_repo, GitHub};
use super::log::log;
use super::queue::{Action, PrRef, Queue, Work};
use crate::kube::{connect, ClusterOptions};
use crate::pipeline::config::Config;
use crate::record::{self, PrNumber, SandboxRecord};

/// Queue the deletion of every sandbox of this product whose pull requests are all closed.
/// Returns how many were queued. A sandbox whose pull request GitHub cannot tell about is kept:
/// nothing is deleted on a guess.
pub(crate) async fn reconcile(
    cluster: &ClusterOptions,
    config: &Config,
    github: &GitHub,
    queue: &Queue,
) -> Result<usize> {
    let cluster = connect(cluster)
        .await
        .context("cannot look for sandboxes of closed pull requests")?;
    let sandboxes = record::list(&cluster, Some(&config.name))
        .await
        .context("could not list the sandbox namespaces")?;
    let mut queued = 0;
    for sandbox in sandboxes {
        if sandbox.terminating || sandbox.prs.is_empty() {
            continue; // going already, or not a pull request's sandbox
        }
        // Only this product's sandboxes: the name must be what this sandbox.yaml makes of the
        // branch (or made of it before the hash was lengthened: `destroy` finds that one too).
        let prefix = &config.namespace_prefix;
        let names = [
            Some(record::namespace_for(prefix, &sandbox.branch)),
            record::legacy_namespace_for(prefix, &sandbox.branch),
        ];
        if !names.contains(&Some(sandbox.namespace.clone())) {
            continue;
        }
        let SandboxRecord {
            namespace: name,
            branch,
            prs,
            ..
        } = sandbox;
        if !all_closed(github, &name, &prs).await {
            continue;
        }
        let work = Work {
            branch,
            action: Action::Destroy,
            prs: prs
                .into_iter()
                .map(|PrNumber { repo, number }| PrRef {
                    repo,
                    number,
                    sha: String::new(),
                    author: String::new(),
                    delivery: String::new(),
                })
                .collect(),
        };
        log!(
            Info,
            "reconcile.closed",
            namespace = name,
            prs = work.prs_text()
        );
        queue.submit(work);
        queued += 1;
    }
    Ok(queued)
}

/// Whether GitHub says every one of the pull requests is closed. Anything unclear (an unusable
/// repository name, an error from GitHub) counts as open: nothing is deleted on a guess.
async fn all_closed(github: &GitHub, namespace: &str, prs: &[PrNumber]) -> bool {
    for PrNumber { repo, number } in prs {
        if !valid_repo(repo) {
            log!(
                Warn,
                "reconcile.skipped",
                namespace = namespace,
                reason = format!("unusable repository `{repo}`")
            );
            return false;
        }
        match github.pull_is_closed(repo, *number).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                log!(
                    Warn,
                    "reconcile.skipped",
                    namespace = namespace,
                    pr = format!("{repo}#{number}"),
                    error = format!("{e:#}")
                );
                return false;
            }
        }
    }
    true
}

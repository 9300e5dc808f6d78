//! At start: the sandboxes of pull requests that were closed while the service was not
//! listening (down, restarting, or a lost delivery) are deleted.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::Api;

use super::deployer::recorded_prs;
use super::github::{valid_repo, GitHub};
use super::log::log;
use super::queue::{Action, PrRef, Queue, Work};
use crate::kube::{connect, ClusterOptions};
use crate::pipeline::config::Config;
use crate::pipeline::plan::{ANNOTATION_PREFIX, MANAGED_BY, MANAGED_BY_VALUE, SANDBOX_LABEL};

/// Queue the deletion of every sandbox of this product whose pull requests are all closed.
/// Returns how many were queued. A sandbox whose pull request GitHub cannot tell about is kept:
/// nothing is deleted on a guess.
pub async fn reconcile(
    cluster: &ClusterOptions,
    config: &Config,
    github: &GitHub,
    queue: &Queue,
) -> Result<usize> {
    let cluster = connect(cluster)
        .await
        .context("cannot look for sandboxes of closed pull requests")?;
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let selector = format!(
        "{MANAGED_BY}={MANAGED_BY_VALUE},{SANDBOX_LABEL}={}",
        config.name
    );
    let namespaces = api
        .list(&ListParams::default().labels(&selector))
        .await
        .context("could not list the sandbox namespaces")?;
    let mut queued = 0;
    for ns in namespaces.items {
        let name = ns.metadata.name.clone().unwrap_or_default();
        if ns.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let annotations = ns.metadata.annotations.clone().unwrap_or_default();
        let get = |k: &str| annotations.get(&format!("{ANNOTATION_PREFIX}{k}")).cloned();
        let prs = recorded_prs(get);
        if prs.is_empty() {
            continue; // not a pull request's sandbox
        }
        // Only this product's sandboxes: the name must be what this sandbox.yaml makes of the branch.
        let Some(branch) = get("branch") else {
            continue;
        };
        if crate::pipeline::plan::namespace_for(&config.namespace_prefix, &branch) != name {
            continue;
        }
        let mut all_closed = true;
        for (repo, number) in &prs {
            if !valid_repo(repo) {
                all_closed = false;
                log!(
                    Warn,
                    "reconcile.skipped",
                    namespace = name,
                    reason = format!("unusable repository `{repo}`")
                );
                break;
            }
            match github.pull_is_closed(repo, *number).await {
                Ok(true) => {}
                Ok(false) => {
                    all_closed = false;
                    break;
                }
                Err(e) => {
                    all_closed = false;
                    log!(
                        Warn,
                        "reconcile.skipped",
                        namespace = name,
                        pr = format!("{repo}#{number}"),
                        error = format!("{e:#}")
                    );
                    break;
                }
            }
        }
        if !all_closed {
            continue;
        }
        let work = Work {
            branch,
            action: Action::Destroy,
            prs: prs
                .into_iter()
                .map(|(repo, number)| PrRef {
                    repo,
                    number,
                    sha: String::new(),
                    author: String::new(),
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

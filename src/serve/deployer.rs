//! The real [`Deployer`]: `sandbox up` and `sandbox down` as library calls, with the pull
//! request recorded on the namespace.

use std::time::Duration;

use anyhow::Context;

use super::log::{log, scrub};
use super::queue::PrRef;
use super::scope::Scope;
use super::worker::{Deployed, Deployer, Destroyed, Failure};
use crate::kube::{connect, ClusterOptions};
use crate::pipeline::config::Config;
use crate::pipeline::values::SetValue;
use crate::pipeline::{self, Environment, OnFailure, Pin, Settings, UpOptions};
use crate::progress::Reporter;
use crate::record::{self, Lookup, PrNumber};

pub(crate) struct ClusterDeployer {
    pub(crate) config: Config,
    pub(crate) cluster: ClusterOptions,
    pub(crate) sets: Vec<SetValue>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) on_failure: OnFailure,
    /// How long to wait for another holder of a sandbox's lock (`serve --lock-timeout`).
    pub(crate) lock_timeout: Duration,
    pub(crate) env: Environment,
    /// The repositories' GitHub names, for a deployment's commit.
    pub(crate) scope: Scope,
}

/// The commit a GitHub deployment asked for, when the newest work is a deployment's: `up`
/// checks the branch is exactly there (and exists) before it makes anything. A deployment
/// names a commit; deploying the branch's tip and reporting success on that commit would
/// be a lie.
pub(crate) fn pin_of(scope: &Scope, prs: &[PrRef]) -> Option<Pin> {
    let newest = prs.last()?;
    let id = newest.deployment.filter(|_| newest.number == 0)?;
    Some(Pin {
        repo: scope
            .configured(&newest.repo)
            .map_or_else(|| newest.repo.clone(), |c| c.name.clone()),
        sha: newest.sha.clone(),
        asked_by: format!("GitHub deployment {id} of {}", newest.repo),
    })
}

impl ClusterDeployer {
    /// Record why the deploy failed on the sandbox, if it has one, for the status page (`up`
    /// records failures of its rollout itself; this also covers those before it, e.g. a
    /// checkout or render error on a re-up). The status is left as it is: what runs may still
    /// be the previous (or rolled back) revision. Best effort: the failure is reported anyway.
    async fn record_failure(&self, branch: &str, failure: &Failure) {
        let recorded = async {
            let cluster = connect(&self.cluster).await?;
            let config = &self.config;
            let namespace =
                record::locate(&cluster, &config.namespace_prefix, branch, &config.name).await?;
            let lookup = record::fetch(&cluster, &namespace, &config.name).await?;
            if matches!(lookup, Lookup::Ours(r) if !r.terminating) {
                let update = record::Update {
                    last_error: Some(Some(failure.summary.clone())),
                    ..record::Update::default()
                };
                record::update(&cluster, &namespace, update).await?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = recorded {
            log!(
                Warn,
                "record.failed",
                branch = branch,
                error = scrub(&format!("{e:#}"))
            );
        }
    }
}

impl Deployer for ClusterDeployer {
    fn namespace(&self, branch: &str) -> String {
        record::namespace_for(&self.config.namespace_prefix, branch)
    }

    async fn deploy(&self, branch: &str, prs: &[PrRef]) -> Result<Deployed, Failure> {
        // Quiet: jobs run side by side and the service logs one line per event instead. The
        // reporter still learns the decrypted values, to scrub them from the error and from
        // this work's lines (its span) — and from no other branch's.
        let reporter = Reporter::for_one_sandbox(&tracing::Span::current());
        let result = async {
            let mut settings = Settings::new(
                self.config.clone(),
                branch,
                self.sets.clone(),
                self.ttl,
                &self.env,
            )?;
            // What serve makes, serve may delete when its pull requests close; nothing else.
            settings.made_by = record::MADE_BY_SERVE;
            if let Some(newest) = prs.last().filter(|p| !p.author.is_empty()) {
                settings.owner = newest.author.clone();
            }
            settings.pinned = pin_of(&self.scope, prs);
            // A deployment event's work (number 0) is no pull request's.
            settings.prs = prs
                .iter()
                .filter(|p| p.number != 0)
                .map(|p| PrNumber {
                    repo: p.repo.clone(),
                    number: p.number,
                })
                .collect();
            let options = UpOptions {
                on_failure: self.on_failure,
                // Someone's `sandbox up` by hand: wait for it rather than fail the pull
                // request, but not forever: a pod of the sandbox may hold the lock (a Role the
                // plan refuses, bound by hand) and this deploy holds one of serve's slots.
                lock_timeout: Some(self.lock_timeout),
                wait: true,
                // A push's image is CI's job; a preview that comes first waits a while for it.
                wait_for_images: Some(std::time::Duration::from_secs(600)),
            };
            pipeline::up(&settings, &self.cluster, options, &reporter).await
        }
        .await;
        match result {
            Ok(report) => Ok(Deployed {
                url: report.url,
                repos: report.repos,
            }),
            Err(e) => {
                let failure = Failure::new(&e, |t| reporter.scrub(t));
                self.record_failure(branch, &failure).await;
                Err(failure)
            }
        }
    }

    async fn destroy(&self, branch: &str) -> Result<Destroyed, Failure> {
        let reporter = Reporter::for_one_sandbox(&tracing::Span::current());
        let result = async {
            let cluster = connect(&self.cluster)
                .await
                .context("cannot delete the sandbox")?;
            let config = &self.config;
            let namespace =
                record::locate(&cluster, &config.namespace_prefix, branch, &config.name).await?;
            if let Lookup::Ours(found) = record::fetch(&cluster, &namespace, &config.name).await? {
                if let Some(reason) = not_ours_to_delete(&found) {
                    return Ok(Destroyed::Kept { reason });
                }
                // Made by an older serve without a RoleBinding for today's: without it serve
                // could not take the sandbox's lock to delete it.
                if let Some(access) = &self.env.access {
                    crate::access::grant(&cluster, &namespace, access).await?;
                }
            }
            let options = pipeline::DownOptions {
                lock_timeout: Some(self.lock_timeout),
                ..pipeline::DownOptions::default()
            };
            pipeline::down(&cluster, &namespace, &config.name, options, &reporter).await?;
            Ok(Destroyed::Deleted)
        }
        .await;
        result.map_err(|e| Failure::new(&e, |t| reporter.scrub(t)))
    }
}

/// Why serve must leave a sandbox alone when its pull requests close, if it must: it deletes
/// only what the previews made.
pub(crate) fn not_ours_to_delete(sandbox: &record::SandboxRecord) -> Option<String> {
    if sandbox.terminating || sandbox.made_by_serve() {
        return None;
    }
    Some(match sandbox.made_by.as_deref() {
        Some(record::MADE_BY_UP) => format!(
            "`{}` was made by `sandbox up`, not by the previews: serve never deletes it (`sandbox down` does)",
            sandbox.namespace
        ),
        Some(other) => format!(
            "`{}` was made by `{other}`, not by the previews: serve never deletes it",
            sandbox.namespace
        ),
        None => format!(
            "`{}` does not record that the previews made it (made by hand, or by an older serve): serve leaves it to `sandbox down` or its expiry",
            sandbox.namespace
        ),
    })
}

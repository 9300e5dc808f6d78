//! The real [`Deployer`]: the operations `up` and `down` ([`crate::ops`]), asked with the
//! previews' rules: what serve makes is marked as made by serve, owned by the pull request's
//! author, pinned to a deployment's commit, and records every failure; serve deletes only
//! what it made.

use std::time::Duration;

use super::queue::PrRef;
use super::scope::Scope;
use super::worker::{Deployed, Deployer, Destroyed, Failure};
use crate::kube::ClusterOptions;
use crate::ops::down::{AskedBy, DownOptions, DownRequest, Downed};
use crate::ops::{self, OnFailure, UpOptions, UpRequest};
use crate::pipeline::config::Config;
use crate::pipeline::values::SetValue;
use crate::pipeline::{Environment, Pin, Settings};
use crate::progress::Reporter;
use crate::record::{self, PrNumber};

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
                // The status page shows why a preview failed, also before its rollout.
                record_every_failure: true,
                on_failure: self.on_failure,
                // Someone's `sandbox up` by hand: wait for it rather than fail the pull
                // request, but not forever: a pod of the sandbox may hold the lock (a Role the
                // plan refuses, bound by hand) and this deploy holds one of serve's slots.
                lock_timeout: Some(self.lock_timeout),
                wait: true,
                // A push's image is CI's job; a preview that comes first waits a while for it.
                wait_for_images: Some(std::time::Duration::from_secs(600)),
            };
            let request = UpRequest { settings, options };
            ops::up(&request, &self.cluster, &reporter).await
        }
        .await;
        match result {
            Ok(report) => Ok(Deployed {
                url: report.url,
                repos: report.repos,
            }),
            Err(e) => Err(Failure::new(&e, |t| reporter.scrub(t))),
        }
    }

    async fn destroy(&self, branch: &str) -> Result<Destroyed, Failure> {
        let reporter = Reporter::for_one_sandbox(&tracing::Span::current());
        // What serve made, serve deletes when its pull requests close; nothing else.
        let request = DownRequest {
            config: &self.config,
            branch,
            dry_run: false,
            options: DownOptions {
                lock_timeout: Some(self.lock_timeout),
                ..DownOptions::default()
            },
            asked_by: AskedBy::Previews {
                access: self.env.access.clone(),
            },
        };
        let result = match ops::down::down(&request, &self.cluster, &reporter).await {
            Ok(Downed::Kept { reason }) => Ok(Destroyed::Kept { reason }),
            Ok(Downed::Deleted { .. } | Downed::WouldDelete { .. }) => Ok(Destroyed::Deleted),
            Err(e) => Err(e),
        };
        result.map_err(|e| Failure::new(&e, |t| reporter.scrub(t)))
    }
}

//! The real [`Deployer`]: `sandbox up` and `sandbox down` as library calls, with the pull
//! request recorded on the namespace.

use std::time::Duration;

use anyhow::Context;

use super::log::{log, scrub};
use super::queue::PrRef;
use super::worker::{Deployed, Deployer, Failure};
use crate::kube::{connect, ClusterOptions};
use crate::pipeline::config::Config;
use crate::pipeline::values::SetValue;
use crate::pipeline::{self, Environment, OnFailure, Settings, UpOptions};
use crate::progress::Reporter;
use crate::record::{self, Lookup, PrNumber};

pub(crate) struct ClusterDeployer {
    pub(crate) config: Config,
    pub(crate) cluster: ClusterOptions,
    pub(crate) sets: Vec<SetValue>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) on_failure: OnFailure,
    pub(crate) env: Environment,
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
        // reporter still learns the decrypted values, to scrub them from the error.
        let reporter = Reporter::new(true);
        let result = async {
            let mut settings = Settings::new(
                self.config.clone(),
                branch,
                self.sets.clone(),
                self.ttl,
                &self.env,
            )?;
            if let Some(newest) = prs.last().filter(|p| !p.author.is_empty()) {
                settings.owner = newest.author.clone();
            }
            settings.prs = prs
                .iter()
                .map(|p| PrNumber {
                    repo: p.repo.clone(),
                    number: p.number,
                })
                .collect();
            let options = UpOptions {
                on_failure: self.on_failure,
                // Someone's `sandbox up` by hand: wait for it rather than fail the pull request.
                wait_for_lock: true,
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

    async fn destroy(&self, branch: &str) -> Result<(), Failure> {
        let reporter = Reporter::new(true);
        let result = async {
            let cluster = connect(&self.cluster)
                .await
                .context("cannot delete the sandbox")?;
            let config = &self.config;
            let namespace =
                record::locate(&cluster, &config.namespace_prefix, branch, &config.name).await?;
            // A sandbox someone brought up by hand has no RoleBinding for serve yet: without
            // it serve could not take the sandbox's lock to delete it.
            if let Some(access) = &self.env.access {
                if let Lookup::Ours(_) = record::fetch(&cluster, &namespace, &config.name).await? {
                    crate::access::grant(&cluster, &namespace, access).await?;
                }
            }
            pipeline::down(&cluster, &namespace, &config.name, true, &reporter).await
        }
        .await;
        result.map_err(|e| Failure::new(&e, |t| reporter.scrub(t)))
    }
}

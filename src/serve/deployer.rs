//! The real [`Deployer`]: `sandbox up` and `sandbox down` as library calls, with the pull
//! request recorded on the namespace.

use std::time::Duration;

use anyhow::Context;

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
                // Someone's `sandbox up` by hand: wait for it rather than fail the pull request.
                lock_timeout: None,
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
            Err(e) => Err(Failure::new(&e, |t| reporter.scrub(t))),
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
            let options = pipeline::DownOptions::default();
            pipeline::down(&cluster, &namespace, &config.name, options, &reporter).await
        }
        .await;
        result.map_err(|e| Failure::new(&e, |t| reporter.scrub(t)))
    }
}

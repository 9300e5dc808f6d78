//! The real [`Deployer`]: `sandbox up` and `sandbox down` as library calls, with the pull
//! request recorded on the namespace.

use std::time::Duration;

use anyhow::Context;

use super::pipeline::{Deployed, Deployer, Failure};
use super::queue::PrRef;
use crate::cli::OnFailure;
use crate::kube::{connect, ClusterOptions};
use crate::pipeline::config::Config;
use crate::pipeline::up::{self, Settings, UpOptions};
use crate::pipeline::values::SetValue;
use crate::progress::Reporter;

/// Namespace annotations (after `sandbox.dev/`) that record the pull request of a sandbox.
pub const PR_REPO: &str = "pr-repo";
pub const PR_NUMBER: &str = "pr-number";
/// Every pull request of the last deploy, `owner/a#1 owner/b#7`, when there are several.
pub const PRS: &str = "prs";

pub struct ClusterDeployer {
    pub config: Config,
    pub cluster: ClusterOptions,
    pub sets: Vec<SetValue>,
    pub ttl: Option<Duration>,
    pub on_failure: OnFailure,
}

impl Deployer for ClusterDeployer {
    fn namespace(&self, branch: &str) -> String {
        crate::pipeline::plan::namespace_for(&self.config.namespace_prefix, branch)
    }

    async fn deploy(&self, branch: &str, prs: &[PrRef]) -> Result<Deployed, Failure> {
        // Quiet: jobs run side by side and the service logs one line per event instead. The
        // reporter still learns the decrypted values, to scrub them from the error.
        let reporter = Reporter::new(true);
        let result = async {
            let mut settings =
                Settings::new(self.config.clone(), branch, self.sets.clone(), self.ttl)?;
            if let Some(newest) = prs.last() {
                if !newest.author.is_empty() {
                    settings.owner = newest.author.clone();
                }
                let a = &mut settings.extra_annotations;
                a.insert(PR_REPO.into(), newest.repo.clone());
                a.insert(PR_NUMBER.into(), newest.number.to_string());
                if prs.len() > 1 {
                    let all: Vec<String> = prs
                        .iter()
                        .map(|p| format!("{}#{}", p.repo, p.number))
                        .collect();
                    a.insert(PRS.into(), all.join(" "));
                }
            }
            let options = UpOptions {
                on_failure: self.on_failure,
                // Someone's `sandbox up` by hand: wait for it rather than fail the pull request.
                wait_for_lock: true,
            };
            up::up(&settings, &self.cluster, options, &reporter).await
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
        let namespace = self.namespace(branch);
        let result = async {
            let cluster = connect(&self.cluster)
                .await
                .context("cannot delete the sandbox")?;
            crate::commands::down(&cluster, &namespace, true, &reporter).await
        }
        .await;
        result.map_err(|e| Failure::new(&e, |t| reporter.scrub(t)))
    }
}

/// The pull requests a sandbox namespace records, from its `sandbox.dev/*` annotations.
pub fn recorded_prs(annotation: impl Fn(&str) -> Option<String>) -> Vec<(String, u64)> {
    if let Some(list) = annotation(PRS) {
        let parsed: Vec<(String, u64)> = list
            .split_whitespace()
            .filter_map(|item| {
                let (repo, number) = item.rsplit_once('#')?;
                Some((repo.to_owned(), number.parse().ok()?))
            })
            .collect();
        if !parsed.is_empty() {
            return parsed;
        }
    }
    match (annotation(PR_REPO), annotation(PR_NUMBER)) {
        (Some(repo), Some(number)) => number.parse().map(|n| vec![(repo, n)]).unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_pull_requests_are_read_back() {
        let one = |k: &str| match k {
            "pr-repo" => Some("o/backend".to_owned()),
            "pr-number" => Some("42".to_owned()),
            _ => None,
        };
        assert_eq!(recorded_prs(one), [("o/backend".to_owned(), 42)]);
        let many = |k: &str| match k {
            "prs" => Some("o/backend#42 o/frontend#7".to_owned()),
            "pr-repo" => Some("o/frontend".to_owned()),
            "pr-number" => Some("7".to_owned()),
            _ => None,
        };
        assert_eq!(
            recorded_prs(many),
            [("o/backend".to_owned(), 42), ("o/frontend".to_owned(), 7)]
        );
        assert!(recorded_prs(|_| None).is_empty());
        assert!(recorded_prs(|k| (k == "pr-number").then(|| "x".to_owned())).is_empty());
    }
}

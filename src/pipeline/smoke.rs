//! Stage 7: run the smoke Jobs in parallel, stream their logs with a prefix, and fail if any fails.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::runtime::watcher;
use kube::Api;

use crate::error::Hint;
use crate::kube::Cluster;
use crate::object::Object;
use crate::pipeline::apply::{self, ApplyError};
use crate::pipeline::plan::Plan;
use crate::pipeline::wait::{self, WaitError};
use crate::progress::Reporter;

/// A smoke Job that failed, with what it printed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SmokeError {
    #[error("smoke test `{job}` of service `{service}` failed")]
    Failed {
        service: String,
        job: String,
        #[source]
        source: WaitError,
    },
    #[error("could not start the smoke tests")]
    Apply(#[source] ApplyError),
}

impl Hint for SmokeError {
    fn hint(&self) -> Option<String> {
        match self {
            SmokeError::Failed { source, .. } => {
                let mut out = source
                    .diagnosis()
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                out.push_str("the sandbox is deployed but does not work: its log lines are above; inspect it with `kubectl -n <namespace> get pods`");
                Some(out)
            }
            SmokeError::Apply(e) => e.hint(),
        }
    }
}

/// Run every smoke Job of the plan. Jobs left by an earlier `up` are deleted first so each
/// `up` proves the sandbox afresh.
pub(crate) async fn run(
    cluster: &Cluster,
    plan: &Plan,
    timeout: Duration,
    reporter: &Reporter,
) -> Result<(), SmokeError> {
    if plan.smoke.is_empty() {
        return Ok(());
    }
    let ns = plan.namespace.as_str();
    for (_, object) in plan.smoke.iter().filter(|(_, o)| o.kind() == "Job") {
        // A Job that is not the tool's is left alone: apply reports the conflict.
        apply::delete_own(cluster, ns, &object.object_ref())
            .await
            .map_err(SmokeError::Apply)?;
    }
    let mut ordered: Vec<&(String, serde_json::Value)> = plan.smoke.iter().collect();
    ordered.sort_by_key(|(_, o)| o.kind() == "Job");
    for (_, object) in &ordered {
        apply::apply_object(cluster, ns, object)
            .await
            .map_err(SmokeError::Apply)?;
    }
    let runs = ordered.iter().filter(|(_, o)| o.kind() == "Job").map(|(service, object)| {
        let name = object.name().to_owned();
        async move {
            reporter.step_started(&format!("smoke/{name}"));
            let started = std::time::Instant::now();
            let logs = stream_logs(cluster, ns, &name, reporter);
            let done = wait::until_ready_diagnosed(&cluster.client, ns, "Job", &name, timeout);
            tokio::pin!(logs);
            let (result, logs_ended) = tokio::select! {
                r = done => (r, false),
                // The log stream ends with the container; the Job's status follows shortly.
                _ = &mut logs => (wait::until_ready(&cluster.client, ns, "Job", &name, timeout).await, true),
            };
            if !logs_ended {
                // Let the last log lines drain.
                let _ = tokio::time::timeout(Duration::from_secs(2), logs).await;
            }
            match result {
                Ok(()) => {
                    reporter.step_ready(&format!("smoke/{name}"), started.elapsed());
                    Ok(())
                }
                Err(source) => {
                    reporter.step_failed(&format!("smoke/{name}"));
                    Err(SmokeError::Failed { service: service.clone(), job: name.clone(), source })
                }
            }
        }
    });
    futures::future::try_join_all(runs).await.map(|_| ())
}

/// Follow the log of the Job's pod as soon as its container runs; returns when the log ends.
async fn stream_logs(cluster: &Cluster, ns: &str, job: &str, reporter: &Reporter) {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let selector = format!("job-name={job}");
    let mut events =
        std::pin::pin!(watcher(pods.clone(), watcher::Config::default().labels(&selector)).boxed());
    let pod = loop {
        match events.try_next().await {
            Ok(Some(watcher::Event::Apply(p))) | Ok(Some(watcher::Event::InitApply(p))) => {
                let started = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .and_then(|c| c.state.as_ref())
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
                if started {
                    break p;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    };
    let name = pod.metadata.name.unwrap_or_default();
    let params = LogParams {
        follow: true,
        ..Default::default()
    };
    let Ok(stream) = pods.log_stream(&name, &params).await else {
        return;
    };
    let mut lines = stream.lines();
    while let Some(Ok(line)) = lines.next().await {
        reporter.log_line(&format!("smoke/{job}"), &line);
    }
}

//! Stage 7: run the smoke Jobs (and charts' test Pods) in parallel, stream their logs with a prefix, and fail if any fails.

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

/// What runs to completion in a smoke step: Jobs, and charts' test Pods.
fn runs(object: &serde_json::Value) -> bool {
    matches!(object.kind(), "Job" | "Pod")
}

/// Run every smoke Job (and chart test Pod) of the plan. Those left by an earlier `up` are
/// deleted first so each `up` proves the sandbox afresh.
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
    for (_, object) in plan.smoke.iter().filter(|(_, o)| runs(o)) {
        // One that is not the tool's is left alone: apply reports the conflict.
        apply::delete_own(cluster, ns, &object.object_ref())
            .await
            .map_err(SmokeError::Apply)?;
    }
    let mut ordered: Vec<&(String, serde_json::Value)> = plan.smoke.iter().collect();
    ordered.sort_by_key(|(_, o)| runs(o));
    for (_, object) in &ordered {
        apply::apply_object(cluster, ns, object)
            .await
            .map_err(SmokeError::Apply)?;
    }
    let tests = ordered
        .iter()
        .filter(|(_, o)| runs(o))
        .map(|(service, object)| run_one(cluster, ns, service, object, timeout, reporter));
    futures::future::try_join_all(tests).await.map(|_| ())
}

/// Wait for one smoke Job or test Pod while streaming its log; then delete it if its hook
/// delete policy says so.
async fn run_one(
    cluster: &Cluster,
    ns: &str,
    service: &str,
    object: &serde_json::Value,
    timeout: Duration,
    reporter: &Reporter,
) -> Result<(), SmokeError> {
    let (kind, name) = (object.kind(), object.name());
    let id = format!("smoke/{name}");
    reporter.step_started(&id);
    let started = std::time::Instant::now();
    let logs = stream_logs(cluster, ns, kind, name, reporter);
    let done = wait::until_ready_diagnosed(&cluster.client, ns, kind, name, timeout);
    tokio::pin!(logs);
    let (result, logs_ended) = tokio::select! {
        r = done => (r, false),
        // The log stream ends with the container; the status follows shortly.
        _ = &mut logs => (wait::until_ready_diagnosed(&cluster.client, ns, kind, name, timeout).await, true),
    };
    if !logs_ended {
        // Let the last log lines drain.
        let _ = tokio::time::timeout(Duration::from_secs(2), logs).await;
    }
    let objects = std::slice::from_ref(object);
    let deleted = apply::delete_finished_hooks(cluster, ns, objects, result.is_ok()).await;
    match result {
        Ok(()) => {
            reporter.step_ready(&id, started.elapsed());
            deleted.map_err(SmokeError::Apply)
        }
        Err(source) => {
            reporter.step_failed(&id);
            Err(SmokeError::Failed {
                service: service.to_owned(),
                job: name.to_owned(),
                source,
            })
        }
    }
}

/// Follow the log of the Job's pod (or of the Pod itself) as soon as its container runs;
/// returns when the log ends.
async fn stream_logs(cluster: &Cluster, ns: &str, kind: &str, name: &str, reporter: &Reporter) {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let config = match kind {
        "Job" => watcher::Config::default().labels(&format!("job-name={name}")),
        _ => watcher::Config::default().fields(&format!("metadata.name={name}")),
    };
    let mut events = std::pin::pin!(crate::outage::ride_out(watcher(pods.clone(), config)).boxed());
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
    let pod_name = pod.metadata.name.unwrap_or_default();
    let params = LogParams {
        follow: true,
        ..Default::default()
    };
    let Ok(stream) = pods.log_stream(&pod_name, &params).await else {
        return;
    };
    let mut lines = stream.lines();
    while let Some(Ok(line)) = lines.next().await {
        reporter.log_line(&format!("smoke/{name}"), &line);
    }
}

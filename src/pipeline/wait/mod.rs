//! Readiness, from watches: the watch loop that applies a kind's predicate to one object until it
//! is ready, fails or runs out of time, and what a failure says.
//!
//! Files: `ready.rs` (the pure predicates, unit-tested on YAML fixtures), `stuck.rs` (pods that
//! will never become ready, found early, and their diagnosis).

mod ready;
mod stuck;

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Pod, ResourceQuota, Service};
use kube::runtime::watcher::{self, watch_object};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::error::Hint;
use ready::{
    daemon_set, deployment, endpoints_ready, job, load_balancer, pod, resource_quota, stateful_set,
    Progress,
};
use stuck::{diagnose, diagnose_job, Diagnosis, QuotaRefusal};
pub(crate) use stuck::{first_refused_pod, first_stuck_pod};

/// Why something did not become ready.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WaitError {
    /// Not ready in time.
    #[error("{kind} `{name}` was not ready after {}s ({last})", after.as_secs())]
    Timeout {
        kind: String,
        name: String,
        after: Duration,
        last: String,
        diagnosis: Option<Diagnosis>,
    },
    /// A Job failed or a pod is stuck (image pull, crash loop, bad config).
    #[error("{kind} `{name}` failed: {reason}")]
    Failed {
        kind: String,
        name: String,
        reason: String,
        diagnosis: Option<Diagnosis>,
    },
    /// The namespace's ResourceQuota refuses the pods a controller makes.
    #[error("{kind} `{name}` cannot create its pods: {refusal}")]
    QuotaExceeded {
        kind: String,
        name: String,
        refusal: QuotaRefusal,
    },
    /// The namespace's Pod Security level refuses the pods a controller makes.
    #[error("{kind} `{name}` cannot create its pods: {violation}")]
    PodSecurity {
        kind: String,
        name: String,
        violation: String,
    },
    /// The watch itself broke.
    #[error("watching {kind} `{name}` failed")]
    Watch {
        kind: String,
        name: String,
        #[source]
        source: watcher::Error,
    },
}

impl WaitError {
    pub(crate) fn diagnosis(&self) -> Option<&Diagnosis> {
        match self {
            WaitError::Timeout { diagnosis, .. } | WaitError::Failed { diagnosis, .. } => {
                diagnosis.as_ref()
            }
            WaitError::Watch { .. }
            | WaitError::QuotaExceeded { .. }
            | WaitError::PodSecurity { .. } => None,
        }
    }
}

impl Hint for WaitError {
    fn hint(&self) -> Option<String> {
        let mut out = self.diagnosis().map(|d| d.to_string()).unwrap_or_default();
        let advice = match self {
            WaitError::Timeout { .. } => "raise `timeouts.service` in sandbox.yaml (or pass `up --timeout`) if it is only slow",
            WaitError::Failed { reason, .. } if reason.contains("Image") => {
                "check the image name and tag, and that the cluster's nodes can pull from its registry (a private one needs an imagePullSecret; `kubectl describe pod` shows the pull error)"
            }
            WaitError::Failed { .. } => "fix the cause and run `sandbox up` again: it resumes where it stopped",
            WaitError::Watch { .. } => "check that the cluster is reachable",
            WaitError::PodSecurity { .. } => {
                "the namespace enforces `pod_security` of sandbox.yaml (default baseline): make the pods meet it (`sandbox validate` warns of what each violates) or choose a lower level"
            }
            WaitError::QuotaExceeded { .. } => {
                "the sandbox's quota is `limits` in sandbox.yaml: raise it there, or have the service ask for less (its containers' `resources`); `kubectl describe resourcequota -n NAMESPACE` shows what is used"
            }
        };
        out.push_str(advice);
        Some(out)
    }
}

/// Watch one object until `classify` says ready (Ok) or failed (Err).
async fn watch_until<K>(
    api: Api<K>,
    name: &str,
    classify: fn(Option<&K>) -> Progress,
    last: &std::sync::Mutex<String>,
) -> Result<(), WaitError>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = std::pin::pin!(crate::outage::ride_out(watch_object(api, name)));
    while let Some(event) = stream.next().await {
        let object = event.map_err(|source| WaitError::Watch {
            kind: short_type::<K>(),
            name: name.into(),
            source,
        })?;
        match classify(object.as_ref()) {
            Progress::Ready => return Ok(()),
            Progress::Pending(why) => *last.lock().expect("not poisoned") = why,
            Progress::Failed(reason) => {
                return Err(WaitError::Failed {
                    kind: short_type::<K>(),
                    name: name.into(),
                    reason,
                    diagnosis: None,
                })
            }
        }
    }
    unreachable!("watch streams do not end")
}

fn short_type<K>() -> String {
    std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("object")
        .to_owned()
}

/// Wait until the object described by `kind`/`name` in `namespace` is ready. Kinds without a
/// notion of readiness (ConfigMap, Secret, a ClusterIP Service…) are ready once applied.
pub(crate) async fn until_ready(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), WaitError> {
    let last = std::sync::Mutex::new(String::from("no status yet"));
    let watch = watch_ready(client.clone(), namespace, kind, name, &last);
    match tokio::time::timeout(timeout, watch).await {
        Ok(result) => result,
        Err(_) => Err(WaitError::Timeout {
            kind: kind.into(),
            name: name.into(),
            after: timeout,
            last: last.into_inner().expect("not poisoned"),
            diagnosis: None,
        }),
    }
}

/// Watch the object with its kind's predicate until it is ready, keeping in `last` what it
/// still misses.
async fn watch_ready(
    c: Client,
    namespace: &str,
    kind: &str,
    name: &str,
    last: &std::sync::Mutex<String>,
) -> Result<(), WaitError> {
    match kind {
        "Deployment" => {
            let deployments = Api::<Deployment>::namespaced(c, namespace);
            watch_until(deployments, name, deployment, last).await
        }
        "StatefulSet" => {
            let stateful_sets = Api::<StatefulSet>::namespaced(c, namespace);
            watch_until(stateful_sets, name, stateful_set, last).await
        }
        "DaemonSet" => {
            let daemon_sets = Api::<DaemonSet>::namespaced(c, namespace);
            watch_until(daemon_sets, name, daemon_set, last).await
        }
        "Job" => watch_until(Api::<Job>::namespaced(c, namespace), name, job, last).await,
        "ResourceQuota" => {
            let quotas = Api::<ResourceQuota>::namespaced(c, namespace);
            watch_until(quotas, name, resource_quota, last).await
        }
        "Pod" => watch_until(Api::<Pod>::namespaced(c, namespace), name, pod, last).await,
        "Service" => service_ready(c, namespace, name, last).await,
        _ => Ok(()),
    }
}

/// A Service is ready once its load balancer (if it asks for one) has an address and, when it
/// routes to pods, once they are in its Endpoints: then it is usable.
async fn service_ready(
    c: Client,
    namespace: &str,
    name: &str,
    last: &std::sync::Mutex<String>,
) -> Result<(), WaitError> {
    let services = Api::<Service>::namespaced(c.clone(), namespace);
    watch_until(services.clone(), name, load_balancer, last).await?;
    let routes_to_pods = services
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.spec)
        .is_some_and(|s| {
            s.selector.is_some_and(|sel| !sel.is_empty())
                && s.type_.as_deref() != Some("ExternalName")
        });
    if !routes_to_pods {
        return Ok(());
    }
    let endpoints = Api::<Endpoints>::namespaced(c, namespace);
    watch_until(endpoints, name, endpoints_ready, last).await
}

/// [`until_ready`], and when a Job failed, what its pod said (events, last log lines).
pub(crate) async fn until_ready_diagnosed(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), WaitError> {
    match until_ready(client, namespace, kind, name, timeout).await {
        Err(WaitError::Failed {
            kind,
            name,
            reason,
            diagnosis: None,
        }) if kind == "Job" || kind == "Pod" => {
            let diagnosis = match kind.as_str() {
                "Job" => diagnose_job(client, namespace, &name, 20).await,
                _ => Some(diagnose(client, namespace, &name, None, 20).await),
            };
            Err(WaitError::Failed {
                kind,
                name,
                reason,
                diagnosis,
            })
        }
        other => other,
    }
}

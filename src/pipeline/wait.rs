//! Readiness, from watches: pure predicates over objects (unit-tested on YAML fixtures below), the
//! watch loop that applies them, and the diagnosis of pods that will never become ready.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use crate::error::Hint;
use crate::pipeline::config::parse_quantity;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, LogParams};
use kube::runtime::watcher::{self, watch_object, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// Where an object stands on its way to ready.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Progress {
    Ready,
    /// Not yet; the text says what is missing (shown on timeout).
    Pending(String),
    /// It will not get there by itself.
    Failed(String),
}

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
                "check the image name and tag; on the local cluster import images with scripts/images"
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

/// What a person needs to see about a failing pod: its events and its last log lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct Diagnosis {
    pub(crate) pod: String,
    pub(crate) container: Option<String>,
    pub(crate) events: Vec<String>,
    pub(crate) logs: Vec<String>,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.events.is_empty() {
            writeln!(f, "events of pod {}:", self.pod)?;
            for e in &self.events {
                writeln!(f, "    {e}")?;
            }
        }
        if !self.logs.is_empty() {
            let c = self.container.as_deref().unwrap_or("?");
            writeln!(f, "last log lines of {}/{c}:", self.pod)?;
            for l in &self.logs {
                writeln!(f, "    {l}")?;
            }
        }
        Ok(())
    }
}

/// A pod the namespace's ResourceQuota refused, as the API server said it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuotaRefusal {
    pub(crate) quota: String,
    /// Resource → amount, for `exceeded quota`.
    pub(crate) asked: Vec<(String, String)>,
    pub(crate) used: BTreeMap<String, String>,
    pub(crate) limited: BTreeMap<String, String>,
    /// For `must specify`: the resources the pod's containers do not declare.
    pub(crate) unspecified: Vec<String>,
}

impl std::fmt::Display for QuotaRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quota = &self.quota;
        if !self.unspecified.is_empty() {
            let missing = self.unspecified.join(", ");
            return write!(
                f,
                "ResourceQuota `{quota}` needs every container to declare {missing}"
            );
        }
        let parts: Vec<String> = self
            .asked
            .iter()
            .map(|(resource, amount)| {
                let used = self.used.get(resource).map_or("0", String::as_str);
                let Some(limit) = self.limited.get(resource) else {
                    return format!("{resource}: asked {amount}");
                };
                let left = match (parse_quantity(limit), parse_quantity(used)) {
                    (Some(l), Some(u)) => format_quantity(resource, (l - u).max(0.0)),
                    _ => "?".into(),
                };
                format!("{resource}: asked {amount}, {left} left of {limit} ({used} used)")
            })
            .collect();
        write!(
            f,
            "ResourceQuota `{quota}` refuses them ({})",
            parts.join("; ")
        )
    }
}

/// Parse the API server's quota refusal out of an event's message: `… forbidden: exceeded
/// quota: NAME, requested: r=a,…, used: r=u,…, limited: r=l,…` or `… forbidden: failed quota:
/// NAME: must specify r,…`.
pub(crate) fn quota_refusal(message: &str) -> Option<QuotaRefusal> {
    let pairs = |list: &str| -> Vec<(String, String)> {
        list.split(',')
            .filter_map(|p| p.trim().split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    if let Some((_, rest)) = message.split_once("exceeded quota: ") {
        let (quota, rest) = rest.split_once(", requested: ")?;
        let (asked, rest) = rest.split_once(", used: ")?;
        let (used, limited) = rest.split_once(", limited: ")?;
        return Some(QuotaRefusal {
            quota: quota.trim().to_owned(),
            asked: pairs(asked),
            used: pairs(used).into_iter().collect(),
            limited: pairs(limited.trim_end_matches(['.', ' ']))
                .into_iter()
                .collect(),
            unspecified: Vec::new(),
        });
    }
    let (_, rest) = message.split_once("failed quota: ")?;
    let (quota, missing) = rest.split_once(": must specify ")?;
    Some(QuotaRefusal {
        quota: quota.trim().to_owned(),
        asked: Vec::new(),
        used: BTreeMap::new(),
        limited: BTreeMap::new(),
        unspecified: missing.trim().split(',').map(str::to_owned).collect(),
    })
}

/// An amount of `resource` for people: `1.5Gi`, `250m`, `3`.
fn format_quantity(resource: &str, value: f64) -> String {
    if resource.contains("memory") || resource.contains("storage") {
        let mi = value / (1024.0 * 1024.0);
        return match mi >= 1024.0 {
            true => format!("{}Gi", round2(mi / 1024.0)),
            false => format!("{}Mi", round2(mi)),
        };
    }
    if resource.contains("cpu") && value < 1.0 {
        return format!("{}m", (value * 1000.0).round());
    }
    round2(value).to_string()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Whether a controller object named in an event (`ReplicaSet` `api-5d8f9`) makes the pods of
/// the step's object `kind`/`name` (a Deployment's ReplicaSets are named after it).
fn makes_pods_of(event_kind: &str, event_name: &str, kind: &str, name: &str) -> bool {
    match kind {
        "Deployment" => {
            event_kind == "ReplicaSet"
                && event_name
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|hash| !hash.is_empty() && !hash.contains('-'))
        }
        _ => event_kind == kind && event_name == name,
    }
}

// --- predicates ---------------------------------------------------------------------------------

/// A Deployment is ready when the controller has seen its latest spec and every replica is updated
/// and available (what `kubectl rollout status` checks). The stock condition reads only the
/// `Progressing` reason, which right after a re-apply can still describe the previous rollout.
pub(crate) fn deployment(d: Option<&Deployment>) -> Progress {
    let Some(d) = d else {
        return Progress::Pending("not created yet".into());
    };
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else {
        return Progress::Pending("no status yet".into());
    };
    if let Some(c) = s.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Progress::Failed(
            c.message
                .clone()
                .unwrap_or_else(|| "progress deadline exceeded".into()),
        );
    }
    if s.observed_generation.unwrap_or(0) < generation {
        return Progress::Pending("the controller has not seen the new spec yet".into());
    }
    let updated = s.updated_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    let total = s.replicas.unwrap_or(0);
    if updated < want {
        return Progress::Pending(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return Progress::Pending(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < want {
        return Progress::Pending(format!("{available} of {want} replicas available"));
    }
    Progress::Ready
}

pub(crate) fn stateful_set(s: Option<&StatefulSet>) -> Progress {
    let Some(s) = s else {
        return Progress::Pending("not created yet".into());
    };
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &s.status else {
        return Progress::Pending("no status yet".into());
    };
    if st.observed_generation.unwrap_or(0) < s.metadata.generation.unwrap_or(0) {
        return Progress::Pending("the controller has not seen the new spec yet".into());
    }
    let ready = st.ready_replicas.unwrap_or(0);
    if ready < want {
        return Progress::Pending(format!("{ready} of {want} replicas ready"));
    }
    if st.update_revision.is_some() && st.update_revision != st.current_revision {
        return Progress::Pending("rolling update in progress".into());
    }
    Progress::Ready
}

pub(crate) fn daemon_set(d: Option<&DaemonSet>) -> Progress {
    let Some(d) = d else {
        return Progress::Pending("not created yet".into());
    };
    let Some(s) = &d.status else {
        return Progress::Pending("no status yet".into());
    };
    if s.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Progress::Pending("the controller has not seen the new spec yet".into());
    }
    let want = s.desired_number_scheduled;
    let ready = s.number_ready;
    if s.updated_number_scheduled.unwrap_or(0) < want || ready < want {
        return Progress::Pending(format!("{ready} of {want} pods ready"));
    }
    Progress::Ready
}

/// A Pod on its own (a chart's test or hook Pod): done when it exits 0, failed when it exits
/// otherwise; a Pod that restarts forever is ready when it is Ready.
pub(crate) fn pod(p: Option<&Pod>) -> Progress {
    let Some(p) = p else {
        return Progress::Pending("not created yet".into());
    };
    let status = p.status.as_ref();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => return Progress::Ready,
        Some("Failed") => {
            let exit = status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .find(|t| t.exit_code != 0)
                .map(|t| format!("exited with code {}", t.exit_code));
            return Progress::Failed(exit.unwrap_or_else(|| "the pod failed".into()));
        }
        _ => {}
    }
    let runs_forever = p
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .is_none_or(|r| r == "Always");
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if runs_forever && ready {
        return Progress::Ready;
    }
    let phase = status.and_then(|s| s.phase.clone());
    Progress::Pending(format!("phase {}", phase.as_deref().unwrap_or("unknown")))
}

pub(crate) fn job(j: Option<&Job>) -> Progress {
    let Some(j) = j else {
        return Progress::Pending("not created yet".into());
    };
    let conditions = j.status.as_ref().and_then(|s| s.conditions.as_ref());
    for c in conditions.into_iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return Progress::Ready,
            "Failed" => {
                return Progress::Failed(
                    c.message
                        .clone()
                        .or(c.reason.clone())
                        .unwrap_or_else(|| "the Job failed".into()),
                )
            }
            _ => {}
        }
    }
    let active = j.status.as_ref().and_then(|s| s.active).unwrap_or(0);
    Progress::Pending(format!("{active} pods running"))
}

/// A ResourceQuota counts once the quota controller has written its status: until then the
/// API server refuses every pod of the namespace ("status unknown for quota").
pub(crate) fn resource_quota(q: Option<&ResourceQuota>) -> Progress {
    let Some(q) = q else {
        return Progress::Pending("not created yet".into());
    };
    let want = q.spec.as_ref().and_then(|s| s.hard.as_ref());
    let counted = q.status.as_ref().and_then(|s| s.hard.as_ref());
    if want.is_some() && counted == want {
        Progress::Ready
    } else {
        Progress::Pending("the quota controller has not counted it yet".into())
    }
}

pub(crate) fn load_balancer(s: Option<&Service>) -> Progress {
    let Some(s) = s else {
        return Progress::Pending("not created yet".into());
    };
    let is_lb = s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let has_address = s
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());
    if !is_lb || has_address {
        Progress::Ready
    } else {
        Progress::Pending("waiting for a load balancer address".into())
    }
}

pub(crate) fn endpoints_ready(e: Option<&Endpoints>) -> Progress {
    let ready = e.and_then(|e| e.subsets.as_ref()).is_some_and(|subsets| {
        subsets
            .iter()
            .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()))
    });
    if ready {
        Progress::Ready
    } else {
        Progress::Pending("no ready endpoints yet".into())
    }
}

/// Container states from which a pod does not recover by itself.
const STUCK_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A container of `pod` that is stuck, with its reason and message.
pub(crate) fn stuck_container(pod: &Pod) -> Option<(String, String, String)> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in all {
        if let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.clone().unwrap_or_default();
            if STUCK_REASONS.contains(&reason.as_str()) {
                return Some((
                    c.name.clone(),
                    reason,
                    waiting.message.clone().unwrap_or_default(),
                ));
            }
        }
    }
    None
}

// --- watching -----------------------------------------------------------------------------------

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

/// Resolve only when a pod matching `selector` is stuck; the error carries its diagnosis.
/// Runs beside the readiness waits of a step so that a bad image fails in seconds, not at the
/// timeout.
pub(crate) async fn first_stuck_pod(
    client: &Client,
    namespace: &str,
    selector: &str,
    tail: i64,
) -> WaitError {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let stream = watcher(pods.clone(), watcher::Config::default().labels(selector));
    let mut stream = std::pin::pin!(crate::outage::ride_out(stream).boxed());
    loop {
        let pod = match stream.try_next().await {
            Ok(Some(watcher::Event::Apply(p))) | Ok(Some(watcher::Event::InitApply(p))) => p,
            Ok(Some(_)) => continue,
            Ok(None) => std::future::pending().await,
            Err(source) => {
                return WaitError::Watch {
                    kind: "Pod".into(),
                    name: selector.into(),
                    source,
                }
            }
        };
        if let Some((container, reason, message)) = stuck_container(&pod) {
            if !is_current_pod(client, namespace, &pod).await {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let diagnosis = diagnose(client, namespace, &name, Some(&container), tail).await;
            return WaitError::Failed {
                kind: "Pod".into(),
                name,
                reason: if message.is_empty() {
                    reason
                } else {
                    format!("{reason}: {message}")
                },
                diagnosis: Some(diagnosis),
            };
        }
    }
}

/// Resolve only when the API server refuses a pod of one of `owners` (kind, name) for the
/// namespace's ResourceQuota or Pod Security level: the controller's `FailedCreate` event says
/// so, and no pod ever appears to be stuck. Events older than `since` (a refusal before this
/// run) do not count.
pub(crate) async fn first_refused_pod(
    client: &Client,
    namespace: &str,
    owners: &[(String, String)],
    since: jiff::Timestamp,
) -> WaitError {
    if owners.is_empty() {
        return std::future::pending().await;
    }
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields("reason=FailedCreate");
    let mut stream = std::pin::pin!(crate::outage::ride_out(watcher(events, config)).boxed());
    loop {
        let (event, fresh) = match stream.try_next().await {
            Ok(Some(watcher::Event::Apply(e))) => (e, true),
            Ok(Some(watcher::Event::InitApply(e))) => (e, false),
            Ok(Some(_)) => continue,
            Ok(None) => std::future::pending().await,
            Err(source) => {
                return WaitError::Watch {
                    kind: "Event".into(),
                    name: "FailedCreate".into(),
                    source,
                }
            }
        };
        let when = event
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(event.event_time.as_ref().map(|t| t.0));
        if !fresh && when.is_none_or(|t| t < since) {
            continue;
        }
        let involved = &event.involved_object;
        let (event_kind, event_name) = (
            involved.kind.as_deref().unwrap_or_default(),
            involved.name.as_deref().unwrap_or_default(),
        );
        let owner = owners
            .iter()
            .find(|(kind, name)| makes_pods_of(event_kind, event_name, kind, name));
        let Some((kind, name)) = owner else { continue };
        if !makes_current_pods(client, namespace, kind, name, event_name).await {
            continue;
        }
        let message = event.message.as_deref().unwrap_or_default();
        if let Some(refusal) = quota_refusal(message) {
            return WaitError::QuotaExceeded {
                kind: kind.clone(),
                name: name.clone(),
                refusal,
            };
        }
        if let Some((_, violation)) = message.split_once("forbidden: violates PodSecurity") {
            return WaitError::PodSecurity {
                kind: kind.clone(),
                name: name.clone(),
                violation: format!("it violates PodSecurity{violation}"),
            };
        }
    }
}

/// Whether a stuck pod speaks for the workload as it is now: not one being deleted, and not one
/// of a Deployment's superseded ReplicaSet (after a rollback the failed revision's pods linger
/// for a while, and a later run must not take them for its own).
async fn is_current_pod(client: &Client, namespace: &str, pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let owned_by = |refs: Option<&Vec<OwnerReference>>, kind: &str| {
        refs.into_iter()
            .flatten()
            .find(|r| r.kind == kind && r.controller == Some(true))
            .map(|r| r.name.clone())
    };
    let Some(replica_set) = owned_by(pod.metadata.owner_references.as_ref(), "ReplicaSet") else {
        return true;
    };
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let Ok(Some(rs)) = sets.get_opt(&replica_set).await else {
        return false;
    };
    match owned_by(rs.metadata.owner_references.as_ref(), "Deployment") {
        Some(deployment) => {
            makes_current_pods(client, namespace, "Deployment", &deployment, &replica_set).await
        }
        None => true,
    }
}

/// Whether the ReplicaSet `replica_set` is the one a Deployment now makes pods with: the old
/// one of a fixed Deployment may still report its last refusals. Other kinds: always.
async fn makes_current_pods(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
    replica_set: &str,
) -> bool {
    if kind != "Deployment" {
        return true;
    }
    const REVISION: &str = "deployment.kubernetes.io/revision";
    let revision = |meta: &kube::api::ObjectMeta| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .cloned()
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let (Ok(Some(d)), Ok(Some(rs))) = (
        deployments.get_opt(name).await,
        sets.get_opt(replica_set).await,
    ) else {
        return false;
    };
    // Until the controller has seen the latest spec, its revision is the previous one's.
    let seen = d.status.as_ref().and_then(|s| s.observed_generation) >= d.metadata.generation;
    seen && revision(&d.metadata).is_some() && revision(&d.metadata) == revision(&rs.metadata)
}

/// The events of a pod and the last `tail` log lines of a container (the previous run's, for a
/// crash loop).
pub(crate) async fn diagnose(
    client: &Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    tail: i64,
) -> Diagnosis {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut lines: Vec<(String, String)> = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let when = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            let text = format!(
                "{} {}: {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default().trim()
            );
            (when, text)
        })
        .collect();
    lines.sort();
    let events: Vec<String> = lines
        .into_iter()
        .rev()
        .take(8)
        .rev()
        .map(|(_, t)| t)
        .collect();

    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut params = LogParams {
        container: container.map(str::to_owned),
        tail_lines: Some(tail),
        ..Default::default()
    };
    let mut logs = pods.logs(pod, &params).await.unwrap_or_default();
    if logs.trim().is_empty() {
        params.previous = true;
        logs = pods.logs(pod, &params).await.unwrap_or_default();
    }
    // The container's own text reaches terminals and comments: without control sequences.
    Diagnosis {
        pod: pod.into(),
        container: container.map(str::to_owned),
        events: events.iter().map(|e| crate::redact::printable(e)).collect(),
        logs: logs.lines().map(crate::redact::printable).collect(),
    }
}

/// The diagnosis of the most recent failed pod of a Job.
pub(crate) async fn diagnose_job(
    client: &Client,
    namespace: &str,
    job: &str,
    tail: i64,
) -> Option<Diagnosis> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .ok()?;
    let pod = list
        .items
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let name = pod.metadata.name.clone()?;
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone());
    Some(diagnose(client, namespace, &name, container.as_deref(), tail).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: DeserializeOwned>(s: &str) -> T {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn deployment_ready_only_when_latest_generation_is_fully_available() {
        let ready: Deployment = yaml(
            "metadata: {name: a, generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2}",
        );
        assert_eq!(deployment(Some(&ready)), Progress::Ready);
        let stale: Deployment = yaml(
            "metadata: {name: a, generation: 3}\nspec: {replicas: 2, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2}",
        );
        assert!(matches!(deployment(Some(&stale)), Progress::Pending(_)));
        let rolling: Deployment = yaml(
            "metadata: {name: a, generation: 2}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 2, updatedReplicas: 1, availableReplicas: 1}",
        );
        assert!(
            matches!(deployment(Some(&rolling)), Progress::Pending(s) if s.contains("old replicas"))
        );
        let stuck: Deployment = yaml(
            "metadata: {name: a, generation: 1}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {conditions: [{type: Progressing, status: 'False', reason: ProgressDeadlineExceeded, message: too slow}]}",
        );
        assert_eq!(
            deployment(Some(&stuck)),
            Progress::Failed("too slow".into())
        );
        assert!(matches!(deployment(None), Progress::Pending(_)));
    }

    #[test]
    fn job_complete_failed_or_running() {
        let done: Job =
            yaml("metadata: {name: j}\nstatus: {conditions: [{type: Complete, status: 'True'}]}");
        assert_eq!(job(Some(&done)), Progress::Ready);
        let failed: Job = yaml(
            "metadata: {name: j}\nstatus: {conditions: [{type: Failed, status: 'True', reason: BackoffLimitExceeded, message: Job has reached the specified backoff limit}]}",
        );
        assert!(matches!(job(Some(&failed)), Progress::Failed(m) if m.contains("backoff")));
        let running: Job = yaml("metadata: {name: j}\nstatus: {active: 1}");
        assert!(matches!(job(Some(&running)), Progress::Pending(_)));
    }

    #[test]
    fn stateful_and_daemon_sets() {
        let ss: StatefulSet = yaml(
            "metadata: {name: s, generation: 1}\nspec: {replicas: 1, selector: {}, serviceName: s, template: {}}\nstatus: {observedGeneration: 1, replicas: 1, readyReplicas: 1, currentRevision: r1, updateRevision: r1}",
        );
        assert_eq!(stateful_set(Some(&ss)), Progress::Ready);
        let ds: DaemonSet = yaml(
            "metadata: {name: d, generation: 1}\nspec: {selector: {}, template: {}}\nstatus: {observedGeneration: 1, desiredNumberScheduled: 1, numberReady: 0, currentNumberScheduled: 1, numberMisscheduled: 0, updatedNumberScheduled: 1}",
        );
        assert!(matches!(daemon_set(Some(&ds)), Progress::Pending(_)));
    }

    #[test]
    fn services_wait_only_for_load_balancers() {
        let cluster_ip: Service = yaml("metadata: {name: s}\nspec: {type: ClusterIP}");
        assert_eq!(load_balancer(Some(&cluster_ip)), Progress::Ready);
        let lb: Service =
            yaml("metadata: {name: s}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {}}");
        assert!(matches!(load_balancer(Some(&lb)), Progress::Pending(_)));
        let lb_ready: Service =
            yaml("metadata: {name: s}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}");
        assert_eq!(load_balancer(Some(&lb_ready)), Progress::Ready);
    }

    #[test]
    fn a_quota_is_ready_once_counted() {
        let counted: ResourceQuota =
            yaml("metadata: {name: q}\nspec: {hard: {pods: '4'}}\nstatus: {hard: {pods: '4'}, used: {pods: '0'}}");
        assert_eq!(resource_quota(Some(&counted)), Progress::Ready);
        let fresh: ResourceQuota = yaml("metadata: {name: q}\nspec: {hard: {pods: '4'}}");
        assert!(matches!(resource_quota(Some(&fresh)), Progress::Pending(_)));
        let changed: ResourceQuota =
            yaml("metadata: {name: q}\nspec: {hard: {pods: '8'}}\nstatus: {hard: {pods: '4'}}");
        assert!(matches!(
            resource_quota(Some(&changed)),
            Progress::Pending(_)
        ));
    }

    #[test]
    fn endpoints_are_ready_with_an_address() {
        let none: Endpoints =
            yaml("metadata: {name: s}\nsubsets: [{notReadyAddresses: [{ip: 10.0.0.1}]}]");
        assert!(matches!(endpoints_ready(Some(&none)), Progress::Pending(_)));
        let some: Endpoints = yaml("metadata: {name: s}\nsubsets: [{addresses: [{ip: 10.0.0.1}]}]");
        assert_eq!(endpoints_ready(Some(&some)), Progress::Ready);
        assert!(matches!(endpoints_ready(None), Progress::Pending(_)));
    }

    #[test]
    fn quota_refusals_are_read_from_the_event_message() {
        let message = r#"Error creating: pods "worker-6d4cf56db6-x7k2p" is forbidden: exceeded quota: sandbox-quota, requested: limits.memory=2Gi,requests.memory=2Gi, used: limits.memory=1536Mi,requests.memory=384Mi, limited: limits.memory=2Gi,requests.memory=2Gi"#;
        let r = quota_refusal(message).unwrap();
        assert_eq!(r.quota, "sandbox-quota");
        assert_eq!(r.asked[0], ("limits.memory".into(), "2Gi".into()));
        assert_eq!(
            r.to_string(),
            "ResourceQuota `sandbox-quota` refuses them (limits.memory: asked 2Gi, 512Mi left of 2Gi (1536Mi used); requests.memory: asked 2Gi, 1.63Gi left of 2Gi (384Mi used))"
        );
        let unspecified = quota_refusal(r#"Error creating: pods "a-1" is forbidden: failed quota: sandbox-quota: must specify limits.cpu,limits.memory"#).unwrap();
        assert_eq!(unspecified.unspecified, ["limits.cpu", "limits.memory"]);
        assert!(unspecified
            .to_string()
            .contains("limits.cpu, limits.memory"));
        assert!(quota_refusal(
            "Error creating: pods \"a\" is forbidden: error looking up service account"
        )
        .is_none());
    }

    #[test]
    fn a_deployments_replica_sets_make_its_pods() {
        assert!(makes_pods_of(
            "ReplicaSet",
            "api-5d8f9c",
            "Deployment",
            "api"
        ));
        assert!(!makes_pods_of(
            "ReplicaSet",
            "api-extra-5d8f9c",
            "Deployment",
            "api"
        ));
        assert!(!makes_pods_of("ReplicaSet", "api", "Deployment", "api"));
        assert!(makes_pods_of("Job", "migrate", "Job", "migrate"));
        assert!(!makes_pods_of("StatefulSet", "db", "Job", "db"));
    }

    #[test]
    fn stuck_pods_are_recognised() {
        let pulling: Pod = yaml(
            "metadata: {name: p}\nstatus: {containerStatuses: [{name: app, image: x, imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: ImagePullBackOff, message: 'Back-off pulling image x'}}}]}",
        );
        let (c, reason, _) = stuck_container(&pulling).unwrap();
        assert_eq!((c.as_str(), reason.as_str()), ("app", "ImagePullBackOff"));
        let creating: Pod = yaml(
            "metadata: {name: p}\nstatus: {containerStatuses: [{name: app, image: x, imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}]}",
        );
        assert!(stuck_container(&creating).is_none());
        let config: Pod = yaml(
            "metadata: {name: p}\nstatus: {initContainerStatuses: [{name: init, image: x, imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: CreateContainerConfigError, message: 'secret \"x\" not found'}}}]}",
        );
        assert_eq!(
            stuck_container(&config).unwrap().1,
            "CreateContainerConfigError"
        );
    }
}

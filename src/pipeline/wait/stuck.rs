//! Pods that will never become ready, found early: a container stuck (bad image, crash loop,
//! bad config) or a pod the API server refuses for the quota or Pod Security, and what a person
//! needs to see about them (events, last log lines).

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, LogParams};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client};

use super::WaitError;
use crate::pipeline::config::parse_quantity;

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
    use serde::de::DeserializeOwned;

    use super::*;

    fn yaml<T: DeserializeOwned>(s: &str) -> T {
        serde_yaml_ng::from_str(s).unwrap()
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

//! Looking at sandboxes without changing them: `list`, `status` and `logs`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, LogParams};
use kube::Api;
use serde::Serialize;

use crate::kube::{connect, Cluster, ClusterOptions};
use crate::pipeline::config::Config;
use crate::record::{
    self, SandboxRecord, Status, MANAGED_BY, MANAGED_BY_VALUE, ROLE_LABEL, SERVICE_LABEL,
};

/// One row of `sandbox list`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SandboxRow {
    pub(crate) namespace: String,
    /// Whose: `list` shows every product's sandboxes (it changes nothing).
    pub(crate) product: String,
    pub(crate) branch: String,
    pub(crate) owner: String,
    pub(crate) created_at: String,
    pub(crate) expires_at: String,
    pub(crate) status: String,
    /// Asleep since then (`sandbox sleep`, or `reap` after `idle_after`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sleeping_since: Option<String>,
    pub(crate) url: String,
    /// repo → short SHA (and the branch used when it fell back).
    pub(crate) repos: BTreeMap<String, String>,
}

/// `sandbox list`: every product's sandboxes in the cluster (it changes nothing).
pub(crate) async fn list(options: &ClusterOptions) -> Result<Vec<SandboxRow>> {
    let cluster = connect(options).await.context("cannot list sandboxes")?;
    list_in(&cluster).await
}

async fn list_in(cluster: &Cluster) -> Result<Vec<SandboxRow>> {
    let now = jiff::Timestamp::now();
    let records = record::list(cluster, None).await?;
    Ok(records
        .into_iter()
        .map(|r| SandboxRow::new(r, now))
        .collect())
}

impl SandboxRow {
    fn new(r: SandboxRecord, now: jiff::Timestamp) -> SandboxRow {
        let status = if r.terminating {
            "terminating"
        } else if r.expired(now) {
            "expired"
        } else {
            r.status.map(Status::as_str).unwrap_or_default()
        };
        let sleeping_since = r
            .sleep
            .as_ref()
            .and_then(|s| s.since)
            .map(|t| t.to_string());
        let time = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
        SandboxRow {
            status: status.to_owned(),
            sleeping_since,
            created_at: time(r.created_at),
            expires_at: time(r.expires_at),
            url: r.url.unwrap_or_default(),
            repos: r
                .repos
                .into_iter()
                .map(|(repo, at)| {
                    let sha: String = at.sha.chars().take(7).collect();
                    let text = if at.fell_back {
                        format!("{sha} ({})", at.branch)
                    } else {
                        sha
                    };
                    (repo, text)
                })
                .collect(),
            namespace: r.namespace,
            product: r.product,
            branch: r.branch,
            owner: r.owner,
        }
    }
}

/// One service's state, for `sandbox status`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceStatus {
    pub(crate) service: String,
    pub(crate) ready: i32,
    pub(crate) desired: i32,
    pub(crate) restarts: i32,
    pub(crate) last_event: String,
}

/// Which sandbox `status` or `logs` looks at: the product's sandbox of `branch`.
pub(crate) struct SandboxOf<'a> {
    pub(crate) config: &'a Config,
    pub(crate) branch: &'a str,
}

/// `sandbox status`: each service's ready replicas, restarts and last event.
pub(crate) async fn status(
    which: &SandboxOf<'_>,
    options: &ClusterOptions,
) -> Result<Vec<ServiceStatus>> {
    let SandboxOf { config, branch } = which;
    let (cluster, namespace) =
        super::locate(options, config, branch, "cannot read the sandbox").await?;
    record::ensure_ours(&cluster, &namespace, &config.name).await?;
    status_in(&cluster, &namespace).await
}

async fn status_in(cluster: &Cluster, namespace: &str) -> Result<Vec<ServiceStatus>> {
    let selector = format!("{MANAGED_BY}={MANAGED_BY_VALUE},{ROLE_LABEL}=service");
    let params = ListParams::default().labels(&selector);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), namespace);
    let all = ListParams::default();
    let (deployments, pods, events) = tokio::try_join!(
        deployments.list(&params),
        pods.list(&params),
        events.list(&all)
    )
    .with_context(|| format!("could not read sandbox `{namespace}`"))?;
    let service_of = |labels: &Option<BTreeMap<String, String>>| {
        labels.as_ref().and_then(|l| l.get(SERVICE_LABEL)).cloned()
    };
    let mut rows: BTreeMap<String, ServiceStatus> = BTreeMap::new();
    // Which object names belong to which service, to attribute events.
    let mut owners: Vec<(String, String)> = Vec::new();
    for d in &deployments.items {
        let Some(service) = service_of(&d.metadata.labels) else {
            continue;
        };
        let row = rows
            .entry(service.clone())
            .or_insert_with(|| ServiceStatus {
                service: service.clone(),
                ready: 0,
                desired: 0,
                restarts: 0,
                last_event: String::new(),
            });
        row.desired += d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        row.ready += d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        owners.push((d.metadata.name.clone().unwrap_or_default(), service));
    }
    for p in &pods.items {
        let Some(service) = service_of(&p.metadata.labels) else {
            continue;
        };
        if let Some(row) = rows.get_mut(&service) {
            row.restarts += p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|c| c.iter().map(|c| c.restart_count).sum::<i32>())
                .unwrap_or(0);
        }
        owners.push((p.metadata.name.clone().unwrap_or_default(), service));
    }
    attribute_last_events(&mut rows, &owners, events.items);
    Ok(rows.into_values().collect())
}

/// Each service's latest event: the events of the objects it owns, by name (ReplicaSets and
/// pods are named after their Deployment), cut to 100 characters.
fn attribute_last_events(
    rows: &mut BTreeMap<String, ServiceStatus>,
    owners: &[(String, String)],
    mut events: Vec<Event>,
) {
    events.sort_by_key(|e| {
        e.last_timestamp.as_ref().map(|t| t.0).or(e
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0))
    });
    for e in events {
        let name = e.involved_object.name.clone().unwrap_or_default();
        let owner = owners
            .iter()
            .find(|(owner, _)| name == *owner || name.starts_with(&format!("{owner}-")));
        let Some(row) = owner.and_then(|(_, service)| rows.get_mut(service)) else {
            continue;
        };
        let text = format!(
            "{} {}: {}",
            e.type_.unwrap_or_default(),
            e.reason.unwrap_or_default(),
            e.message.unwrap_or_default().trim()
        );
        row.last_event = match text.char_indices().nth(100) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        };
    }
}

/// Which logs `sandbox logs` prints, as `kubectl logs` names the choices.
#[derive(Debug, Default, Clone)]
pub(crate) struct LogOptions {
    /// Only this service's pods.
    pub(crate) service: Option<String>,
    /// Only this container of each pod.
    pub(crate) container: Option<String>,
    /// A label selector (`-l`): the pods it selects in the sandbox, instead of the services'.
    pub(crate) selector: Option<String>,
    pub(crate) follow: bool,
    /// The previous, terminated instance of each container (after a restart).
    pub(crate) previous: bool,
    pub(crate) timestamps: bool,
    pub(crate) since: Option<std::time::Duration>,
    pub(crate) tail: Option<i64>,
}

impl LogOptions {
    /// Pods of the sandbox's services by default; `-l` chooses others (a smoke Job's, say).
    fn label_selector(&self) -> String {
        let mut selector = match &self.selector {
            Some(s) => s.clone(),
            None => format!("{MANAGED_BY}={MANAGED_BY_VALUE},{ROLE_LABEL}=service"),
        };
        if let Some(s) = &self.service {
            selector.push_str(&format!(",{SERVICE_LABEL}={s}"));
        }
        selector
    }

    fn params(&self, container: String) -> LogParams {
        LogParams {
            container: Some(container),
            follow: self.follow,
            previous: self.previous,
            timestamps: self.timestamps,
            since_seconds: self.since.map(|d| d.as_secs() as i64),
            tail_lines: self.tail,
            ..Default::default()
        }
    }
}

/// Stream the logs of the chosen pods' containers, each line prefixed with where it comes
/// from. A container that has no such log (no previous instance, not started) is reported on
/// stderr and the others go on, as `kubectl logs -l` does.
/// `sandbox logs`: stream the logs `logs` chooses to stdout, until they end (or Ctrl-C).
pub(crate) async fn logs(
    which: &SandboxOf<'_>,
    logs: &LogOptions,
    options: &ClusterOptions,
) -> Result<()> {
    let SandboxOf { config, branch } = which;
    let (cluster, namespace) =
        super::locate(options, config, branch, "cannot read the logs").await?;
    record::ensure_ours(&cluster, &namespace, &config.name).await?;
    tokio::select! {
        r = logs_in(&cluster, &namespace, logs) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn logs_in(cluster: &Cluster, namespace: &str, options: &LogOptions) -> Result<()> {
    let selector = options.label_selector();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| {
            format!("could not list the pods of `{namespace}` (selector `{selector}`)")
        })?;
    let targets = log_targets(&list.items, options.container.as_deref());
    if targets.is_empty() {
        let which = match (&options.service, &options.container) {
            (Some(s), Some(c)) => format!("service `{s}` with a container `{c}`"),
            (Some(s), None) => format!("service `{s}`"),
            (None, Some(c)) => format!("any service with a container `{c}`"),
            (None, None) => "any service".into(),
        };
        anyhow::bail!("no pods of {which} in `{namespace}` (selector `{selector}`)");
    }
    let wanted = targets.len();
    let streams = targets.into_iter().map(|(pod_name, container, prefix)| {
        let pods = pods.clone();
        let params = options.params(container.clone());
        async move {
            let stream = match pods.log_stream(&pod_name, &params).await {
                Ok(stream) => stream,
                Err(e) => return Err(format!("[{prefix}] {}", crate::kube::api_message(&e))),
            };
            let mut lines = stream.lines();
            while let Some(Ok(line)) = lines.next().await {
                // A container's text, shown on a terminal: without control sequences.
                println!("[{prefix}] {}", crate::redact::printable(&line));
            }
            Ok(())
        }
    });
    let failed: Vec<String> = futures::future::join_all(streams)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    // Containers without the log asked for are named on stderr while the others print; if no
    // container had it, the command failed (as `kubectl logs --previous` of one that never
    // restarted does).
    if failed.len() == wanted {
        anyhow::bail!(
            "no container had the logs asked for:\n  {}",
            failed.join("\n  ")
        );
    }
    for f in &failed {
        eprintln!("{f}");
    }
    Ok(())
}

/// `(pod, container, prefix)` for each container to read: `service/pod`, or
/// `service/pod/container` where a pod has several and none was chosen.
fn log_targets(pods: &[Pod], only: Option<&str>) -> Vec<(String, String, String)> {
    let mut targets = Vec::new();
    for pod in pods {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let service = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_LABEL))
            .cloned()
            .unwrap_or_else(|| "-".into());
        let containers: Vec<&str> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.as_str()))
            .collect();
        let several = containers.len() > 1 && only.is_none();
        for container in containers {
            if only.is_some_and(|c| c != container) {
                continue;
            }
            let prefix = if several {
                format!("{service}/{pod_name}/{container}")
            } else {
                format!("{service}/{pod_name}")
            };
            targets.push((pod_name.clone(), container.to_owned(), prefix));
        }
    }
    targets
}

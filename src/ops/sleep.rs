//! Sleep and wake: an idle sandbox's Deployments and StatefulSets scaled to zero and back, its
//! CronJobs suspended and resumed.
//!
//! The replica counts, and which CronJobs were running, are written into the sandbox's record
//! *before* anything is scaled or suspended, so a sleep cut short still knows what to restore.
//! Only the CronJobs the sleep suspended are resumed: one the template suspends stays so. Waking
//! touches nothing but the workloads' replicas and those CronJobs' `suspend` — no render, no
//! apply — so ConfigMaps, Secrets and Services keep their resourceVersions, and it takes as long
//! as the pods take to become ready.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::Api;

use crate::kube::{Cluster, ClusterOptions};
use crate::lock;
use crate::pipeline::config::Config;
use crate::pipeline::wait;
use crate::progress::Reporter;
use crate::record::{self, Sleep, Status, Update, MANAGED_BY, MANAGED_BY_VALUE};

/// The kinds that sleep scales to zero.
const WORKLOADS: [&str; 2] = ["Deployment", "StatefulSet"];

fn workload_api(cluster: &Cluster, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    };
    Api::namespaced_with(cluster.client.clone(), namespace, &resource)
}

/// The CronJobs of `namespace`, in the API the cluster serves (`batch/v1beta1` before
/// Kubernetes 1.21); None when it serves neither.
fn cronjob_api(cluster: &Cluster, namespace: &str) -> Option<Api<DynamicObject>> {
    let (resource, _) = ["batch/v1", "batch/v1beta1"]
        .into_iter()
        .find_map(|version| cluster.resolve(version, "CronJob"))?;
    Some(Api::namespaced_with(
        cluster.client.clone(),
        namespace,
        &resource,
    ))
}

/// Only what the tool created and labelled.
fn ours() -> ListParams {
    ListParams::default().labels(&format!("{MANAGED_BY}={MANAGED_BY_VALUE}"))
}

/// What a sleep or wake did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Put to sleep now: these workloads scaled to zero and CronJobs suspended.
    Slept(Sleep),
    /// It was asleep already (since then).
    AlreadyAsleep(Option<jiff::Timestamp>),
    /// Woken: these workloads scaled back and CronJobs resumed.
    Woken(Sleep),
    /// It was awake.
    AlreadyAwake,
}

/// Which sandbox to put to sleep or wake, and how long to wait for another run's lock.
pub(crate) struct SleepRequest<'a> {
    pub(crate) config: &'a Config,
    pub(crate) branch: &'a str,
    /// Who holds the sandbox's lock meanwhile.
    pub(crate) holder: String,
    pub(crate) lock_timeout: Option<Duration>,
}

/// What a sleep or wake did to which sandbox.
pub(crate) struct SleepReport {
    pub(crate) namespace: String,
    pub(crate) outcome: Outcome,
}

/// `sandbox sleep`: scale the sandbox's workloads to zero and suspend its CronJobs.
pub(crate) async fn sleep(
    request: &SleepRequest<'_>,
    cluster: &ClusterOptions,
    reporter: &Reporter,
) -> Result<SleepReport> {
    let SleepRequest { config, branch, .. } = request;
    let purpose = "cannot put the sandbox to sleep";
    let (cluster, namespace) = super::locate(cluster, config, branch, purpose).await?;
    reporter.info(&format!("`{namespace}` on {}", cluster.describe()));
    let product = &config.name;
    let holder = &request.holder;
    let outcome = sleep_namespace(
        &cluster,
        &namespace,
        product,
        holder,
        request.lock_timeout,
        reporter,
    )
    .await?;
    Ok(SleepReport { namespace, outcome })
}

/// `sandbox wake`: scale back, resume, and wait at most `timeout` (default: the config's per
/// service) until every workload is ready.
pub(crate) async fn wake(
    request: &SleepRequest<'_>,
    timeout: Option<Duration>,
    cluster: &ClusterOptions,
    reporter: &Reporter,
) -> Result<SleepReport> {
    let SleepRequest { config, branch, .. } = request;
    let (cluster, namespace) =
        super::locate(cluster, config, branch, "cannot wake the sandbox").await?;
    reporter.info(&format!("`{namespace}` on {}", cluster.describe()));
    let timeout = timeout.unwrap_or(config.timeouts.service);
    let woken = wake_namespace(
        &cluster,
        &namespace,
        &config.name,
        timeout,
        &request.holder,
        request.lock_timeout,
        reporter,
    );
    let outcome = woken.await?;
    Ok(SleepReport { namespace, outcome })
}

/// Take the sandbox's lock and put it to sleep.
async fn sleep_namespace(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
    holder: &str,
    lock_timeout: Option<Duration>,
    reporter: &Reporter,
) -> Result<Outcome> {
    let sandbox = record::ensure_ours(cluster, namespace, product).await?;
    if let Some(asleep) = &sandbox.sleep {
        return Ok(Outcome::AlreadyAsleep(asleep.since));
    }
    let held = lock::acquire(cluster, namespace, holder, lock_timeout, reporter).await?;
    let result = sleep_locked(cluster, namespace, product).await;
    held.release().await;
    result.map(Outcome::Slept)
}

/// Put a sandbox to sleep; its lock is held by the caller. The record is read again here, so
/// a sleep interrupted earlier is finished with the counts it recorded.
pub(crate) async fn sleep_locked(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
) -> Result<Sleep> {
    let sandbox = record::ensure_ours(cluster, namespace, product).await?;
    let mut asleep = sandbox.sleep.unwrap_or(Sleep {
        since: Some(jiff::Timestamp::now()),
        ..Sleep::default()
    });
    let running = running_workloads(cluster, namespace).await?;
    let scheduled = scheduled_cronjobs(cluster, namespace).await?;
    for (workload, replicas) in &running {
        asleep.replicas.entry(workload.clone()).or_insert(*replicas);
    }
    // Added to what an interrupted sleep recorded: those it suspended look suspended by the
    // template now.
    asleep.suspended.extend(scheduled.iter().cloned());
    let update = Update {
        sleep: Some(Some(asleep.clone())),
        ..Update::status(Status::Sleeping)
    };
    record::update(cluster, namespace, update).await?;
    for workload in running.keys() {
        scale(cluster, namespace, workload, 0).await?;
    }
    for cronjob in &scheduled {
        suspend(cluster, namespace, cronjob, true).await?;
    }
    Ok(asleep)
}

/// The tool's Deployments and StatefulSets that run pods, with their replicas.
async fn running_workloads(cluster: &Cluster, namespace: &str) -> Result<BTreeMap<String, i32>> {
    let mut running = BTreeMap::new();
    for kind in WORKLOADS {
        let list = workload_api(cluster, namespace, kind)
            .list(&ours())
            .await
            .with_context(|| format!("could not list the {kind}s of `{namespace}`"))?;
        for item in list.items {
            let replicas = item.data["spec"]["replicas"].as_i64().unwrap_or(1);
            if replicas > 0 {
                let name = item.metadata.name.unwrap_or_default();
                running.insert(format!("{kind}/{name}"), replicas as i32);
            }
        }
    }
    Ok(running)
}

/// The names of the tool's CronJobs that are not suspended: those a sleep suspends.
async fn scheduled_cronjobs(cluster: &Cluster, namespace: &str) -> Result<BTreeSet<String>> {
    let Some(api) = cronjob_api(cluster, namespace) else {
        return Ok(BTreeSet::new());
    };
    let list = api.list(&ours()).await.map_err(|e| {
        // A reaper installed before sleep suspended CronJobs lacks the right to list them.
        let forbidden = matches!(&e, kube::Error::Api(s) if s.code == 403);
        anyhow::Error::new(e).context(if forbidden {
            format!(
                "could not list the CronJobs of `{namespace}` (a reaper installed by an older \
                 version needs its manifests again: sandbox reaper-manifests | kubectl apply -f -)"
            )
        } else {
            format!("could not list the CronJobs of `{namespace}`")
        })
    })?;
    Ok(list
        .items
        .into_iter()
        .filter(|c| !is_suspended(&c.data))
        .filter_map(|c| c.metadata.name)
        .collect())
}

/// Whether a CronJob's `spec.suspend` is true (absent is false, as Kubernetes reads it).
fn is_suspended(cronjob: &serde_json::Value) -> bool {
    cronjob["spec"]["suspend"].as_bool() == Some(true)
}

/// Suspend or resume the CronJob `name`. One the tool no longer renders (pruned since) is
/// skipped.
async fn suspend(cluster: &Cluster, namespace: &str, name: &str, suspend: bool) -> Result<()> {
    let Some(api) = cronjob_api(cluster, namespace) else {
        return Ok(());
    };
    let what = if suspend { "suspend" } else { "resume" };
    let spec = serde_json::json!({"suspend": suspend});
    merge_spec(&api, name, spec, || {
        format!("could not {what} CronJob `{name}`")
    })
    .await
}

/// Set the replicas of `workload` (`Deployment/api`). One the tool no longer renders (pruned
/// since) is skipped.
async fn scale(cluster: &Cluster, namespace: &str, workload: &str, replicas: i32) -> Result<()> {
    let Some((kind, name)) = workload.split_once('/') else {
        return Ok(());
    };
    let api = workload_api(cluster, namespace, kind);
    let spec = serde_json::json!({"replicas": replicas});
    merge_spec(&api, name, spec, || {
        format!("could not scale {workload} to {replicas}")
    })
    .await
}

/// Merge `spec` into the object `name`'s. One gone since (pruned) is skipped; `failed` says
/// what could not be done otherwise.
async fn merge_spec(
    api: &Api<DynamicObject>,
    name: &str,
    spec: serde_json::Value,
    failed: impl FnOnce() -> String,
) -> Result<()> {
    let patch = serde_json::json!({ "spec": spec });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::kube::status_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(e).with_context(failed),
    }
}

/// Scale every workload of `asleep` back to its replicas and resume the CronJobs it suspended
/// (the caller holds the lock and waits).
pub(crate) async fn restore(cluster: &Cluster, namespace: &str, asleep: &Sleep) -> Result<()> {
    for (workload, replicas) in &asleep.replicas {
        scale(cluster, namespace, workload, *replicas).await?;
    }
    for cronjob in &asleep.suspended {
        suspend(cluster, namespace, cronjob, false).await?;
    }
    Ok(())
}

/// Take the lock, scale back, wait until every workload and Service is ready, and mark the
/// sandbox ready and used now.
async fn wake_namespace(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
    timeout: Duration,
    holder: &str,
    lock_timeout: Option<Duration>,
    reporter: &Reporter,
) -> Result<Outcome> {
    record::ensure_ours(cluster, namespace, product).await?;
    let held = lock::acquire(cluster, namespace, holder, lock_timeout, reporter).await?;
    let result = wake_locked(cluster, namespace, product, timeout).await;
    held.release().await;
    result
}

async fn wake_locked(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
    timeout: Duration,
) -> Result<Outcome> {
    let sandbox = record::ensure_ours(cluster, namespace, product).await?;
    let now = jiff::Timestamp::now();
    let Some(asleep) = sandbox.sleep else {
        let used = Update {
            last_used: Some(now),
            ..Update::default()
        };
        record::update(cluster, namespace, used).await?;
        return Ok(Outcome::AlreadyAwake);
    };
    restore(cluster, namespace, &asleep).await?;
    wait_ready(cluster, namespace, &asleep, timeout).await?;
    let awake = Update {
        last_used: Some(now),
        sleep: Some(None),
        ..Update::status(Status::Ready)
    };
    record::update(cluster, namespace, awake).await?;
    Ok(Outcome::Woken(asleep))
}

/// Until the woken workloads, and every Service of the tool's that routes to pods, are ready.
async fn wait_ready(
    cluster: &Cluster,
    namespace: &str,
    asleep: &Sleep,
    timeout: Duration,
) -> Result<()> {
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(cluster.client.clone(), namespace);
    let services = services
        .list(&ours())
        .await
        .context("could not list the sandbox's Services")?;
    let mut waits: Vec<(String, String)> = asleep
        .replicas
        .keys()
        .filter_map(|w| w.split_once('/'))
        .map(|(k, n)| (k.to_owned(), n.to_owned()))
        .collect();
    waits.extend(
        services
            .items
            .into_iter()
            .map(|s| ("Service".to_owned(), s.metadata.name.unwrap_or_default())),
    );
    let all = waits.iter().map(|(kind, name)| async move {
        wait::until_ready(&cluster.client, namespace, kind, name, timeout)
            .await
            .with_context(|| format!("{kind} `{name}` did not wake"))
    });
    futures::future::try_join_all(all).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cronjob_whose_suspend_is_true_counts_as_suspended() {
        let cronjob =
            |spec: serde_json::Value| serde_json::json!({"kind": "CronJob", "spec": spec});
        assert!(is_suspended(&cronjob(serde_json::json!({"suspend": true}))));
        assert!(!is_suspended(&cronjob(
            serde_json::json!({"suspend": false})
        )));
        assert!(!is_suspended(&cronjob(
            serde_json::json!({"schedule": "0 * * * *"})
        )));
        assert!(!is_suspended(&serde_json::json!({"kind": "CronJob"})));
    }
}

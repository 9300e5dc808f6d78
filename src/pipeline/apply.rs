//! Stage 6: create the sandbox's namespace and deploy the plan's steps, each as soon as the steps
//! it waits for are ready. Objects go in with server-side apply under one field manager; the tool
//! owns what it renders, so it always forces.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::Api;

use std::sync::Mutex;

use crate::error::Hint;
use crate::kube::{status_code, Cluster};
use crate::pipeline::inventory::Live;
use crate::pipeline::plan::{
    object_key, Plan, Step, MANAGED_BY, MANAGED_BY_VALUE, ROLE_LABEL, SERVICE_LABEL,
};
use crate::pipeline::wait::{self, WaitError};
use crate::progress::Reporter;

pub use crate::kube::FIELD_MANAGER;

/// Something the cluster refused or that never became ready.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The namespace exists but was not created by this tool: never touch it.
    #[error("namespace `{0}` exists and is not managed by sandbox")]
    NotOurs(String),
    /// The cluster does not serve this kind.
    #[error("the cluster does not serve {api_version} {kind}")]
    UnknownKind { api_version: String, kind: String },
    /// The API server rejected an object.
    #[error("applying {kind} `{name}` failed")]
    Rejected {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// A step did not become ready.
    #[error("service `{service}` did not become ready")]
    NotReady {
        service: String,
        step: String,
        #[source]
        source: WaitError,
    },
    /// Any other API call.
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

impl Hint for ApplyError {
    fn hint(&self) -> Option<String> {
        match self {
            ApplyError::NotOurs(ns) => Some(format!(
                "sandbox only changes namespaces labelled {MANAGED_BY}={MANAGED_BY_VALUE}; choose another namespace_prefix, or delete `{ns}` yourself if it is yours"
            )),
            ApplyError::UnknownKind { .. } => {
                Some("check apiVersion and kind in the template (`kubectl api-resources` lists what the cluster serves)".into())
            }
            ApplyError::Rejected { .. } => Some("the API server's reason is above; fix the template".into()),
            ApplyError::NotReady { source, .. } => source.hint(),
            ApplyError::Api { .. } => None,
        }
    }
}

/// What the namespace records about the sandbox.
#[derive(Debug, Clone)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Create or update the sandbox's namespace. Refuses a namespace that someone else created.
pub async fn ensure_namespace(
    cluster: &Cluster,
    name: &str,
    meta: &NamespaceMeta,
) -> Result<(), ApplyError> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let existing = api.get_opt(name).await.map_err(|source| ApplyError::Api {
        what: "reading the namespace".into(),
        source,
    })?;
    if let Some(ns) = &existing {
        let ours = crate::pipeline::plan::is_managed(&ns.metadata);
        if !ours {
            return Err(ApplyError::NotOurs(name.into()));
        }
        if ns.metadata.deletion_timestamp.is_some() {
            wait_namespace_gone(cluster, name, Duration::from_secs(120)).await?;
        }
    }
    let mut labels = meta.labels.clone();
    labels.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels, "annotations": meta.annotations},
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| ApplyError::Rejected {
        kind: "Namespace".into(),
        name: name.into(),
        source,
    })?;
    Ok(())
}

/// Wait until a namespace is gone (after a delete).
pub async fn wait_namespace_gone(
    cluster: &Cluster,
    name: &str,
    timeout: Duration,
) -> Result<(), ApplyError> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let gone = kube::runtime::wait::await_condition(api, name, |n: Option<&Namespace>| n.is_none());
    match tokio::time::timeout(timeout, gone).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ApplyError::NotReady {
            service: name.into(),
            step: "namespace deletion".into(),
            source: WaitError::Failed {
                kind: "Namespace".into(),
                name: name.into(),
                reason: e.to_string(),
                diagnosis: None,
            },
        }),
        Err(_) => Err(ApplyError::NotReady {
            service: name.into(),
            step: "namespace deletion".into(),
            source: WaitError::Timeout {
                kind: "Namespace".into(),
                name: name.into(),
                after: timeout,
                last: "still terminating".into(),
                diagnosis: None,
            },
        }),
    }
}

/// Server-side apply one object into `namespace`. A Job whose pod template changed cannot be
/// patched (the template is immutable), so it is replaced: deleted, then applied again.
pub async fn apply_object(
    cluster: &Cluster,
    namespace: &str,
    object: &serde_json::Value,
) -> Result<DynamicObject, ApplyError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let (resource, caps) =
        cluster
            .resolve(api_version, kind)
            .ok_or_else(|| ApplyError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            })?;
    let api = cluster.dynamic_api(&resource, &caps, namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let rejected = |source| ApplyError::Rejected {
        kind: kind.into(),
        name: name.into(),
        source,
    };
    match api.patch(name, &params, &Patch::Apply(object)).await {
        Ok(applied) => Ok(applied),
        Err(e) if kind == "Job" && status_code(&e) == Some(422) => {
            if !delete_and_wait(cluster, namespace, object).await? {
                return Err(rejected(e));
            }
            api.patch(name, &params, &Patch::Apply(object))
                .await
                .map_err(rejected)
        }
        Err(e) => Err(rejected(e)),
    }
}

/// Delete an object and wait (by uid) until it is gone; false if it did not go in time.
pub async fn delete_and_wait(
    cluster: &Cluster,
    namespace: &str,
    object: &serde_json::Value,
) -> Result<bool, ApplyError> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let Some((resource, caps)) = cluster.resolve(api_version, kind) else {
        return Ok(true);
    };
    let api = cluster.dynamic_api(&resource, &caps, namespace);
    let rejected = |source| ApplyError::Rejected {
        kind: kind.into(),
        name: name.into(),
        source,
    };
    let Some(old) = api.get_opt(name).await.map_err(rejected)? else {
        return Ok(true);
    };
    let uid = old.metadata.uid.unwrap_or_default();
    api.delete(name, &DeleteParams::background())
        .await
        .map_err(rejected)?;
    let gone = kube::runtime::wait::await_condition(
        api.clone(),
        name,
        kube::runtime::conditions::is_deleted(&uid),
    );
    Ok(tokio::time::timeout(Duration::from_secs(30), gone)
        .await
        .is_ok())
}

/// Kinds applied first within a step: what pods read at start (config, Services for their
/// environment variables) must exist before the pods do.
fn apply_rank(kind: &str) -> u8 {
    match kind {
        "ServiceAccount"
        | "Role"
        | "RoleBinding"
        | "ConfigMap"
        | "Secret"
        | "PersistentVolumeClaim" => 0,
        "Service" => 1,
        _ => 2,
    }
}

/// How long each step took, for progress and `--timings`.
#[derive(Debug, Clone)]
pub struct StepTiming {
    pub id: String,
    pub started: Duration,
    pub ready: Duration,
}

/// Deploy every step of the plan. A step starts as soon as all the steps it waits for are ready;
/// the first failure stops the deploy (steps in flight are dropped, which cancels their waits).
/// `live` says what is already there unchanged (skipped); `changed` collects the keys of the
/// objects this deploy applied, so that a failure can be rolled back.
pub async fn deploy(
    cluster: &Cluster,
    plan: &Plan,
    live: &Live,
    changed: &Mutex<Vec<String>>,
    timeout: Duration,
    reporter: &Reporter,
) -> Result<Vec<StepTiming>, ApplyError> {
    let start = Instant::now();
    let mut done = vec![false; plan.steps.len()];
    let mut launched = vec![false; plan.steps.len()];
    let mut running = FuturesUnordered::new();
    let mut timings = Vec::new();
    loop {
        for (i, step) in plan.steps.iter().enumerate() {
            if !launched[i] && step.after.iter().all(|&d| done[d]) {
                launched[i] = true;
                reporter.step_started(&step.id);
                let began = start.elapsed();
                running.push(async move {
                    (
                        i,
                        began,
                        run_step(
                            cluster,
                            &plan.namespace,
                            step,
                            live,
                            changed,
                            timeout,
                            reporter,
                        )
                        .await,
                    )
                });
            }
        }
        let Some((i, began, result)) = running.next().await else {
            break;
        };
        let step = &plan.steps[i];
        match result {
            Ok(()) => {
                done[i] = true;
                let ready = start.elapsed();
                reporter.step_ready(&step.id, ready - began);
                timings.push(StepTiming {
                    id: step.id.clone(),
                    started: began,
                    ready,
                });
            }
            Err(e) => {
                reporter.step_failed(&step.id);
                return Err(e);
            }
        }
    }
    Ok(timings)
}

/// Apply a step's objects, then wait until all of them are ready — or until one of its pods is
/// stuck, whichever comes first.
async fn run_step(
    cluster: &Cluster,
    namespace: &str,
    step: &Step,
    live: &Live,
    changed: &Mutex<Vec<String>>,
    timeout: Duration,
    reporter: &Reporter,
) -> Result<(), ApplyError> {
    let mut objects: Vec<&serde_json::Value> = step.objects.iter().collect();
    objects.sort_by_key(|o| apply_rank(o["kind"].as_str().unwrap_or_default()));
    for object in objects.iter().filter(|o| !live.unchanged(o)) {
        let key = object_key(object);
        if live.failed_jobs.contains(&key) {
            // A failed Job runs again only as a new Job.
            delete_and_wait(cluster, namespace, object).await?;
        }
        changed.lock().expect("not poisoned").push(key);
        apply_object(cluster, namespace, object).await?;
    }
    reporter.step_applied(&step.id);
    let not_ready = |source| ApplyError::NotReady {
        service: step.service.clone(),
        step: step.id.clone(),
        source,
    };
    let waits = objects.iter().map(|o| {
        let kind = o["kind"].as_str().unwrap_or_default().to_owned();
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let client = cluster.client.clone();
        async move {
            let result = wait::until_ready(&client, namespace, &kind, &name, timeout).await;
            match result {
                Err(WaitError::Failed {
                    kind,
                    name,
                    reason,
                    diagnosis: None,
                }) if kind == "Job" => {
                    let diagnosis = wait::diagnose_job(&client, namespace, &name, 20).await;
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
    });
    let all_ready = futures::future::try_join_all(waits);
    let selector = format!(
        "{SERVICE_LABEL}={},{ROLE_LABEL}={}",
        step.service,
        step.role.as_str()
    );
    let stuck = wait::first_stuck_pod(&cluster.client, namespace, &selector, 20);
    tokio::select! {
        ready = all_ready => ready.map(|_| ()).map_err(not_ready),
        stuck = stuck => Err(not_ready(stuck)),
    }
}

//! Stage 6: create the sandbox's namespace and deploy the plan's steps, each as soon as the steps
//! it waits for are ready. Objects go in with server-side apply under one field manager; the tool
//! owns what it renders, so it always forces.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};

use crate::error::Hint;
use crate::kube::{status_code, Cluster, FIELD_MANAGER};
use crate::object::{Object, ObjectRef};
use crate::pipeline::chart::hooks;
use crate::pipeline::inventory::Live;
use crate::pipeline::plan::{Plan, Role, Step};
use crate::pipeline::wait::{self, WaitError};
use crate::progress::Reporter;
use crate::record::{is_managed, ROLE_LABEL, SERVICE_LABEL};

/// Something the cluster refused or that never became ready.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The cluster does not serve this kind.
    #[error("the cluster does not serve {api_version} {kind}")]
    UnknownKind { api_version: String, kind: String },
    /// The cluster serves this kind cluster-wide: it would be shared with every other sandbox
    /// and outlive `down`.
    #[error("{kind} `{name}` is cluster-scoped on this cluster; a sandbox holds only namespaced objects")]
    ClusterScoped { kind: String, name: String },
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
        source: Box<WaitError>,
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
            ApplyError::UnknownKind { .. } => {
                Some("check apiVersion and kind in the template (`kubectl api-resources` lists what the cluster serves)".into())
            }
            ApplyError::ClusterScoped { .. } => Some(
                "remove the object from the template or chart: cluster-wide objects belong to whoever runs the cluster (`kubectl api-resources --namespaced=false` lists them)".into(),
            ),
            ApplyError::Rejected { .. } => Some("the API server's reason is above; fix the template".into()),
            ApplyError::NotReady { source, .. } => source.hint(),
            ApplyError::Api { .. } => None,
        }
    }
}

/// Before anything is created: every object's kind is served by the cluster, and namespaced.
/// Scope comes from discovery, not from a list of names, so no cluster-wide kind slips through.
pub(crate) fn check_served(cluster: &Cluster, plan: &Plan) -> Result<(), ApplyError> {
    for object in plan.objects() {
        served_namespaced(cluster, object)?;
    }
    Ok(())
}

/// The served, namespaced resource of `object`.
fn served_namespaced(
    cluster: &Cluster,
    object: &serde_json::Value,
) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
    let (api_version, kind) = (object.api_version(), object.kind());
    let (resource, caps) =
        cluster
            .resolve(api_version, kind)
            .ok_or_else(|| ApplyError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            })?;
    if caps.scope == Scope::Cluster {
        return Err(ApplyError::ClusterScoped {
            kind: kind.into(),
            name: object.name().into(),
        });
    }
    Ok((resource, caps))
}

/// Server-side apply one object into `namespace`. A Job whose pod template changed cannot be
/// patched (the template is immutable), nor can most of a Pod, so they are replaced: deleted,
/// then applied again (what helm's default `before-hook-creation` policy does for hooks).
pub(crate) async fn apply_object(
    cluster: &Cluster,
    namespace: &str,
    object: &serde_json::Value,
) -> Result<DynamicObject, ApplyError> {
    let (kind, name) = (object.kind(), object.name());
    let (resource, caps) = served_namespaced(cluster, object)?;
    let api = cluster.dynamic_api(&resource, &caps, namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let rejected = |source| ApplyError::Rejected {
        kind: kind.into(),
        name: name.into(),
        source,
    };
    match api.patch(name, &params, &Patch::Apply(object)).await {
        Ok(applied) => Ok(applied),
        Err(e) if matches!(kind, "Job" | "Pod") && status_code(&e) == Some(422) => {
            if !delete_own(cluster, namespace, &object.object_ref()).await? {
                return Err(rejected(e));
            }
            api.patch(name, &params, &Patch::Apply(object))
                .await
                .map_err(rejected)
        }
        Err(e) => Err(rejected(e)),
    }
}

/// Delete one of the tool's objects and wait (by uid) until it is gone. True when it is gone
/// (or was never there); false when it is not the tool's, or did not go within 30 s.
pub(crate) async fn delete_own(
    cluster: &Cluster,
    namespace: &str,
    object: &ObjectRef,
) -> Result<bool, ApplyError> {
    let Some((resource, caps)) = cluster.resolve(&object.api_version, &object.kind) else {
        return Ok(true);
    };
    let api = cluster.dynamic_api(&resource, &caps, namespace);
    let name = object.name.as_str();
    let failed = |source| ApplyError::Api {
        what: format!("deleting the earlier {} `{name}`", object.kind),
        source,
    };
    let Some(old) = api.get_opt(name).await.map_err(failed)? else {
        return Ok(true);
    };
    if !is_managed(&old.metadata) {
        return Ok(false);
    }
    let uid = old.metadata.uid.unwrap_or_default();
    api.delete(name, &DeleteParams::background())
        .await
        .map_err(failed)?;
    let gone = crate::outage::await_condition(
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

/// Kinds whose controller makes pods (and so meets the namespace's quota after the apply).
const POD_MAKERS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
];

/// How long each step took, for progress and `--timings`.
#[derive(Debug, Clone)]
pub(crate) struct StepTiming {
    pub(crate) id: String,
    pub(crate) started: Duration,
    pub(crate) ready: Duration,
}

/// Deploy every step of the plan. A step starts as soon as all the steps it waits for are ready;
/// the first failure stops the deploy (steps in flight are dropped, which cancels their waits).
/// `live` says what is already there unchanged (skipped); `changed` collects the keys of the
/// objects this deploy applied, so that a failure can be rolled back.
/// How long a step may take to become ready, and whether services are waited for at all
/// (`up --wait=false`: Jobs and hooks still are, as helm waits for its hooks, since what
/// comes after them needs their work done).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readiness {
    pub(crate) timeout: Duration,
    pub(crate) services: bool,
}

pub(crate) async fn deploy(
    cluster: &Cluster,
    plan: &Plan,
    live: &Live,
    changed: &Mutex<Vec<ObjectRef>>,
    readiness: Readiness,
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
                            readiness,
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
    changed: &Mutex<Vec<ObjectRef>>,
    readiness: Readiness,
    reporter: &Reporter,
) -> Result<(), ApplyError> {
    let timeout = readiness.timeout;
    // A little before now: the controllers' event clocks and ours may differ by a moment.
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(2);
    let mut objects: Vec<&serde_json::Value> = step.objects.iter().collect();
    objects.sort_by_key(|o| apply_rank(o.kind()));
    for object in objects.iter().filter(|o| !live.unchanged(o)) {
        let key = object.object_ref();
        if live.failed_jobs.contains(&key) {
            // A failed Job runs again only as a new Job.
            delete_own(cluster, namespace, &key).await?;
        }
        changed.lock().expect("not poisoned").push(key);
        apply_object(cluster, namespace, object).await?;
    }
    reporter.step_applied(&step.id);
    if !readiness.services && matches!(step.role, Role::Service) {
        return Ok(());
    }
    let not_ready = |source| ApplyError::NotReady {
        service: step.service.clone(),
        step: step.id.clone(),
        source: Box::new(source),
    };
    let waits = objects.iter().map(|o| {
        wait::until_ready_diagnosed(&cluster.client, namespace, o.kind(), o.name(), timeout)
    });
    let all_ready = futures::future::try_join_all(waits);
    let selector = format!(
        "{SERVICE_LABEL}={},{ROLE_LABEL}={}",
        step.service,
        step.role.as_str()
    );
    let stuck = wait::first_stuck_pod(&cluster.client, namespace, &selector, 20);
    let owners: Vec<(String, String)> = objects
        .iter()
        .filter(|o| POD_MAKERS.contains(&o.kind()))
        .map(|o| (o.kind().to_owned(), o.name().to_owned()))
        .collect();
    let refused = wait::first_refused_pod(&cluster.client, namespace, &owners, since);
    let result = tokio::select! {
        ready = all_ready => ready.map(|_| ()).map_err(not_ready),
        stuck = stuck => Err(not_ready(stuck)),
        refused = refused => Err(not_ready(refused)),
    };
    let deleted = delete_finished_hooks(cluster, namespace, &step.objects, result.is_ok()).await;
    result.and(deleted)
}

/// Delete the hooks whose `helm.sh/hook-delete-policy` says so, now that their step is over.
pub(crate) async fn delete_finished_hooks(
    cluster: &Cluster,
    namespace: &str,
    objects: &[serde_json::Value],
    succeeded: bool,
) -> Result<(), ApplyError> {
    for object in objects
        .iter()
        .filter(|o| hooks::deleted_after(o, succeeded))
    {
        delete_own(cluster, namespace, &object.object_ref()).await?;
    }
    Ok(())
}

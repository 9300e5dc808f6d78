//! What a sandbox holds, kept in the cluster so any machine can continue where another stopped:
//! the inventory of applied objects (for pruning what is no longer rendered), the digests of
//! what is live (so a re-up leaves unchanged objects alone), and the last good revision of every
//! object (for `--on-failure rollback`).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::Api;

use crate::kube::Cluster;
use crate::pipeline::apply::{ApplyError, FIELD_MANAGER};
use crate::pipeline::plan::{
    object_key, Plan, HASH_ANNOTATION, MANAGED_BY, MANAGED_BY_VALUE, ROLE_LABEL,
};

/// Namespace annotation: the keys (`apiVersion/Kind/name`) of every object the tool applied.
pub const INVENTORY_ANNOTATION: &str = "sandbox.dev/inventory";
/// The Secret holding the objects of the last successful `up` (it contains rendered Secrets, so
/// it is a Secret itself).
pub const LAST_GOOD_SECRET: &str = "sandbox-last-good";

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ApplyError {
    let what = what.into();
    move |source| ApplyError::Api { what, source }
}

/// The inventory recorded on a namespace.
pub fn recorded(ns: &Namespace) -> BTreeSet<String> {
    ns.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INVENTORY_ANNOTATION))
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Merge-patch annotations of the sandbox's namespace. A merge patch (not an apply) leaves the
/// other annotations alone.
pub async fn annotate(
    cluster: &Cluster,
    namespace: &str,
    annotations: BTreeMap<String, String>,
) -> Result<(), ApplyError> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    api.patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_error("updating the namespace's annotations"))?;
    Ok(())
}

pub async fn write_inventory(
    cluster: &Cluster,
    namespace: &str,
    keys: &BTreeSet<String>,
) -> Result<(), ApplyError> {
    let value = serde_json::to_string(keys).expect("serializable");
    annotate(
        cluster,
        namespace,
        BTreeMap::from([(INVENTORY_ANNOTATION.to_owned(), value)]),
    )
    .await
}

/// What is live now: the rendered-hash of every object of ours, by key, and which Jobs failed.
#[derive(Debug, Default)]
pub struct Live {
    pub hashes: BTreeMap<String, String>,
    pub failed_jobs: BTreeSet<String>,
}

impl Live {
    /// Whether applying `object` would change nothing the tool rendered.
    pub fn unchanged(&self, object: &serde_json::Value) -> bool {
        let key = object_key(object);
        let want = object["metadata"]["annotations"][HASH_ANNOTATION].as_str();
        want.is_some()
            && self.hashes.get(&key).map(String::as_str) == want
            && !self.failed_jobs.contains(&key)
    }
}

/// List our objects of every kind the plan and the inventory mention (one LIST per kind).
pub async fn live(
    cluster: &Cluster,
    namespace: &str,
    plan: &Plan,
    inventory: &BTreeSet<String>,
) -> Result<Live, ApplyError> {
    let mut kinds: BTreeSet<(String, String)> = plan
        .objects()
        .map(|o| {
            (
                o["apiVersion"].as_str().unwrap_or_default().to_owned(),
                o["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for key in inventory {
        if let Some((api_version, kind)) = split_key(key).map(|(a, k, _)| (a, k)) {
            kinds.insert((api_version.to_owned(), kind.to_owned()));
        }
    }
    let selector = format!("{MANAGED_BY}={MANAGED_BY_VALUE}");
    let lists = kinds.iter().filter_map(|(api_version, kind)| {
        let (resource, caps) = cluster.resolve(api_version, kind)?;
        let api = cluster.dynamic_api(&resource, &caps, namespace);
        let selector = selector.clone();
        Some(async move {
            let list = api
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(api_error(format!("listing {kind}s")))?;
            Ok::<_, ApplyError>((api_version.clone(), kind.clone(), list.items))
        })
    });
    let mut live = Live::default();
    for (api_version, kind, items) in futures::future::try_join_all(lists).await? {
        for item in items {
            let name = item.metadata.name.clone().unwrap_or_default();
            let key = format!("{api_version}/{kind}/{name}");
            if let Some(hash) = item
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HASH_ANNOTATION))
            {
                live.hashes.insert(key.clone(), hash.clone());
            }
            let failed = item.data["status"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Failed" && c["status"] == "True")
                });
            if kind == "Job" && failed {
                live.failed_jobs.insert(key);
            }
        }
    }
    Ok(live)
}

fn split_key(key: &str) -> Option<(&str, &str, &str)> {
    let (rest, name) = key.rsplit_once('/')?;
    let (api_version, kind) = rest.rsplit_once('/')?;
    Some((api_version, kind, name))
}

/// Delete objects by key — only those that carry the tool's label.
pub async fn delete_keys(
    cluster: &Cluster,
    namespace: &str,
    keys: impl IntoIterator<Item = &String>,
) -> Result<Vec<String>, ApplyError> {
    let mut deleted = Vec::new();
    for key in keys {
        let Some((api_version, kind, name)) = split_key(key) else {
            continue;
        };
        let Some((resource, caps)) = cluster.resolve(api_version, kind) else {
            continue;
        };
        let api = cluster.dynamic_api(&resource, &caps, namespace);
        let Some(object) = api
            .get_opt(name)
            .await
            .map_err(api_error(format!("reading {kind} `{name}`")))?
        else {
            continue;
        };
        let ours = crate::pipeline::plan::is_managed(&object.metadata);
        let state = object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ROLE_LABEL))
            .map(String::as_str)
            == Some("state");
        if !ours || state {
            continue;
        }
        api.delete(name, &DeleteParams::background())
            .await
            .map_err(api_error(format!("deleting {kind} `{name}`")))?;
        deleted.push(key.clone());
    }
    Ok(deleted)
}

/// Record the plan's objects as the last good revision.
pub async fn save_last_good(
    cluster: &Cluster,
    namespace: &str,
    plan: &Plan,
) -> Result<(), ApplyError> {
    let objects: BTreeMap<String, &serde_json::Value> =
        plan.objects().map(|o| (object_key(o), o)).collect();
    let data = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&objects).expect("serializable"));
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": LAST_GOOD_SECRET,
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGED_BY_VALUE, ROLE_LABEL: "state"},
        },
        "type": "Opaque",
        "data": {"objects.json": data},
    });
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.client.clone(), namespace);
    api.patch(
        LAST_GOOD_SECRET,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await
    .map_err(api_error("recording the last good revision"))?;
    Ok(())
}

/// The objects of the last successful `up`, by key (empty when there was none).
pub async fn load_last_good(
    cluster: &Cluster,
    namespace: &str,
) -> Result<BTreeMap<String, serde_json::Value>, ApplyError> {
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.client.clone(), namespace);
    let Some(secret) = api
        .get_opt(LAST_GOOD_SECRET)
        .await
        .map_err(api_error("reading the last good revision"))?
    else {
        return Ok(BTreeMap::new());
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get("objects.json"))
        .map(|b| b.0.clone())
        .unwrap_or_default();
    Ok(serde_json::from_slice(&bytes).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_with_grouped_and_core_versions() {
        assert_eq!(
            split_key("apps/v1/Deployment/web"),
            Some(("apps/v1", "Deployment", "web"))
        );
        assert_eq!(
            split_key("v1/ConfigMap/web-code"),
            Some(("v1", "ConfigMap", "web-code"))
        );
        assert_eq!(split_key("nonsense"), None);
    }

    #[test]
    fn unchanged_needs_the_same_hash_and_no_failed_job() {
        let object = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "m", "annotations": {HASH_ANNOTATION: "abc"}}});
        let mut live = Live::default();
        assert!(!live.unchanged(&object));
        live.hashes.insert("batch/v1/Job/m".into(), "abc".into());
        assert!(live.unchanged(&object));
        live.failed_jobs.insert("batch/v1/Job/m".into());
        assert!(!live.unchanged(&object), "a failed Job runs again");
        live.failed_jobs.clear();
        live.hashes.insert("batch/v1/Job/m".into(), "def".into());
        assert!(!live.unchanged(&object));
    }
}

//! What a sandbox holds, kept in the cluster so any machine can continue where another stopped:
//! the digests of what is live (so a re-up leaves unchanged objects alone), deletion of objects
//! no longer rendered, and the last good revision of every object (for `--on-failure
//! rollback`). The inventory itself (which objects were applied) is part of the sandbox's
//! record: [`crate::record`].

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::Api;

use crate::error::Hint;
use crate::kube::{Cluster, FIELD_MANAGER};
use crate::object::{Object, ObjectRef};
use crate::pipeline::plan::Plan;
use crate::record::{
    is_managed, HASH_ANNOTATION, LAST_GOOD_SECRET, MANAGED_BY, MANAGED_BY_VALUE, ROLE_LABEL,
};

/// Reading or changing what a sandbox holds failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InventoryError {
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The last good revision cannot be read back: restoring from it would lose objects.
    #[error("the last good revision in Secret `{LAST_GOOD_SECRET}` is unreadable")]
    CorruptLastGood(#[source] serde_json::Error),
}

impl Hint for InventoryError {
    fn hint(&self) -> Option<String> {
        match self {
            InventoryError::Api { .. } => None,
            InventoryError::CorruptLastGood(_) => Some(format!(
                "nothing was restored; run `sandbox up` again to deploy afresh (and `kubectl delete secret {LAST_GOOD_SECRET}` in the sandbox's namespace if it keeps failing)"
            )),
        }
    }
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> InventoryError {
    let what = what.into();
    move |source| InventoryError::Api { what, source }
}

/// What is live now: the rendered-hash of every object of ours, and which Jobs failed.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) hashes: BTreeMap<ObjectRef, String>,
    pub(crate) failed_jobs: BTreeSet<ObjectRef>,
}

impl Live {
    /// Whether applying `object` would change nothing the tool rendered.
    pub(crate) fn unchanged(&self, object: &serde_json::Value) -> bool {
        let key = object.object_ref();
        let want = object["metadata"]["annotations"][HASH_ANNOTATION].as_str();
        want.is_some()
            && self.hashes.get(&key).map(String::as_str) == want
            && !self.failed_jobs.contains(&key)
    }
}

/// List our objects of every kind the plan and the inventory mention (one LIST per kind).
pub(crate) async fn live(
    cluster: &Cluster,
    namespace: &str,
    plan: &Plan,
    inventory: &BTreeSet<ObjectRef>,
) -> Result<Live, InventoryError> {
    let kinds: BTreeSet<(String, String)> = plan
        .objects()
        .map(Object::object_ref)
        .chain(inventory.iter().cloned())
        .map(|r| (r.api_version, r.kind))
        .collect();
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
            Ok::<_, InventoryError>((api_version, kind, list.items))
        })
    });
    let mut live = Live::default();
    for (api_version, kind, items) in futures::future::try_join_all(lists).await? {
        for item in items {
            let name = item.metadata.name.as_deref().unwrap_or_default();
            let key = ObjectRef::new(api_version, kind, name);
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

/// Delete objects — only those that carry the tool's label, and never its own state.
pub(crate) async fn delete<'r>(
    cluster: &Cluster,
    namespace: &str,
    refs: impl IntoIterator<Item = &'r ObjectRef>,
) -> Result<Vec<ObjectRef>, InventoryError> {
    let mut deleted = Vec::new();
    for r in refs {
        let Some((resource, caps)) = cluster.resolve(&r.api_version, &r.kind) else {
            continue;
        };
        let api = cluster.dynamic_api(&resource, &caps, namespace);
        let name = r.name.as_str();
        let Some(object) = api
            .get_opt(name)
            .await
            .map_err(api_error(format!("reading {} `{name}`", r.kind)))?
        else {
            continue;
        };
        let state = object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ROLE_LABEL))
            .map(String::as_str)
            == Some("state");
        if !is_managed(&object.metadata) || state {
            continue;
        }
        api.delete(name, &DeleteParams::background())
            .await
            .map_err(api_error(format!("deleting {} `{name}`", r.kind)))?;
        deleted.push(r.clone());
    }
    Ok(deleted)
}

/// Record the plan's objects as the last good revision.
pub(crate) async fn save_last_good(
    cluster: &Cluster,
    namespace: &str,
    plan: &Plan,
) -> Result<(), InventoryError> {
    let objects: BTreeMap<ObjectRef, &serde_json::Value> =
        plan.objects().map(|o| (o.object_ref(), o)).collect();
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
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    api.patch(
        LAST_GOOD_SECRET,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await
    .map_err(api_error("recording the last good revision"))?;
    Ok(())
}

/// The objects of the last successful `up` (empty when there was none).
pub(crate) async fn load_last_good(
    cluster: &Cluster,
    namespace: &str,
) -> Result<BTreeMap<ObjectRef, serde_json::Value>, InventoryError> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
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
    parse_last_good(&bytes)
}

/// A snapshot that cannot be read is an error, not an empty revision: a rollback from an empty
/// revision would delete every changed object instead of restoring it.
fn parse_last_good(bytes: &[u8]) -> Result<BTreeMap<ObjectRef, serde_json::Value>, InventoryError> {
    serde_json::from_slice(bytes).map_err(InventoryError::CorruptLastGood)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_needs_the_same_hash_and_no_failed_job() {
        let object = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "m", "annotations": {HASH_ANNOTATION: "abc"}}});
        let key = object.object_ref();
        let mut live = Live::default();
        assert!(!live.unchanged(&object));
        live.hashes.insert(key.clone(), "abc".into());
        assert!(live.unchanged(&object));
        live.failed_jobs.insert(key.clone());
        assert!(!live.unchanged(&object), "a failed Job runs again");
        live.failed_jobs.clear();
        live.hashes.insert(key, "def".into());
        assert!(!live.unchanged(&object));
    }

    #[test]
    fn a_corrupt_last_good_revision_is_an_error_not_an_empty_one() {
        let good = br#"{"v1/ConfigMap/a": {"kind": "ConfigMap"}}"#;
        let parsed = parse_last_good(good).unwrap();
        assert!(parsed.contains_key(&ObjectRef::new("v1", "ConfigMap", "a")));
        assert!(matches!(
            parse_last_good(b"{\"v1/ConfigMap/a\": {"),
            Err(InventoryError::CorruptLastGood(_))
        ));
        assert!(parse_last_good(b"").is_err());
        assert!(parse_last_good(br#"{"nonsense": {}}"#).is_err());
    }
}

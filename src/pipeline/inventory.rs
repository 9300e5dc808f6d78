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
    /// The last good revision is not the one the tool wrote: something in the sandbox changed
    /// or removed it, and applying it would apply what no plan checked.
    #[error("the last good revision in Secret `{LAST_GOOD_SECRET}` is not the one sandbox wrote: {why}; refusing to apply it")]
    UntrustedLastGood { why: String },
}

impl Hint for InventoryError {
    fn hint(&self) -> Option<String> {
        match self {
            InventoryError::Api { .. } => None,
            InventoryError::CorruptLastGood(_) => Some(format!(
                "nothing was restored; run `sandbox up` again to deploy afresh (and `kubectl delete secret {LAST_GOOD_SECRET}` in the sandbox's namespace if it keeps failing)"
            )),
            InventoryError::UntrustedLastGood { .. } => Some(format!(
                "nothing was restored; find out who could write Secret `{LAST_GOOD_SECRET}` in the sandbox's namespace (a RoleBinding made by hand?), then run `sandbox up` to deploy afresh: a successful up writes a new revision"
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

/// Record the plan's objects as the last good revision; its digest, which the caller keeps in
/// the sandbox's record for [`load_last_good`] to check.
pub(crate) async fn save_last_good(
    cluster: &Cluster,
    namespace: &str,
    plan: &Plan,
) -> Result<String, InventoryError> {
    let objects: BTreeMap<ObjectRef, &serde_json::Value> =
        plan.objects().map(|o| (o.object_ref(), o)).collect();
    let bytes = serde_json::to_vec(&objects).expect("serializable");
    let digest = snapshot_digest(&bytes);
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
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
    Ok(digest)
}

/// `sha256:HEX` of a snapshot's bytes.
fn snapshot_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The objects of the last successful `up` (empty when there was none), if their digest is
/// `recorded` (the one the sandbox's record keeps): the Secret is in the sandbox's namespace,
/// where a pod with rights on Secrets could rewrite it, and a rollback applies it unchecked.
pub(crate) async fn load_last_good(
    cluster: &Cluster,
    namespace: &str,
    recorded: Option<&str>,
) -> Result<BTreeMap<ObjectRef, serde_json::Value>, InventoryError> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let secret = api
        .get_opt(LAST_GOOD_SECRET)
        .await
        .map_err(api_error("reading the last good revision"))?;
    let bytes = secret.map(|secret| {
        let data = secret.data.unwrap_or_default();
        data.get("objects.json")
            .map(|b| b.0.clone())
            .unwrap_or_default()
    });
    verify_last_good(bytes.as_deref(), recorded)?;
    match bytes {
        None => Ok(BTreeMap::new()),
        Some(bytes) => parse_last_good(&bytes),
    }
}

/// Whether the snapshot's `bytes` (None: no Secret) are the ones whose digest was `recorded`.
fn verify_last_good(bytes: Option<&[u8]>, recorded: Option<&str>) -> Result<(), InventoryError> {
    let why = match (bytes, recorded) {
        (None, None) => return Ok(()),
        (None, Some(_)) => "the sandbox's record has its digest, but the Secret is gone".to_owned(),
        (Some(_), None) => "the sandbox's record keeps no digest of it (written by someone else, or by an older version of sandbox)".to_owned(),
        (Some(bytes), Some(recorded)) => {
            let found = snapshot_digest(bytes);
            if found == recorded {
                return Ok(());
            }
            format!("its digest is {found}, the sandbox's record says {recorded}")
        }
    };
    Err(InventoryError::UntrustedLastGood { why })
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
    fn the_last_good_revision_is_applied_only_with_the_digest_the_record_keeps() {
        let written = br#"{"v1/ConfigMap/a": {"kind": "ConfigMap"}}"#;
        let digest = snapshot_digest(written);
        assert!(digest.starts_with("sha256:") && digest.len() == 7 + 64);
        assert!(verify_last_good(Some(written), Some(&digest)).is_ok());
        assert!(verify_last_good(None, None).is_ok(), "no revision yet");
        let tampered = br#"{"v1/ConfigMap/a": {"kind": "ConfigMap", "data": {"x": "y"}}}"#;
        for (bytes, recorded) in [
            (Some(&tampered[..]), Some(digest.as_str())),
            (Some(&written[..]), None),
            (None, Some(digest.as_str())),
        ] {
            let err = verify_last_good(bytes, recorded).unwrap_err();
            assert!(matches!(err, InventoryError::UntrustedLastGood { .. }));
            assert!(
                err.to_string().contains("is not the one sandbox wrote"),
                "{err}"
            );
        }
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

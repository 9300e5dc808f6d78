//! `sandbox diff` (what `up` would change, from a server-side dry run) and `sandbox validate`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use kube::api::{Patch, PatchParams};

use crate::kube::{Cluster, FIELD_MANAGER};
use crate::object::{Object, ObjectRef};
use crate::pipeline::plan::Plan;
use crate::record::{self, Lookup};
use crate::redact::{Scrubber, REDACTED};

/// One object's change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Create(ObjectRef),
    Update { key: ObjectRef, fields: Vec<String> },
    Prune(ObjectRef),
}

/// Server-managed fields that differ between any two reads and say nothing about the spec.
fn normalize(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for k in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
            a.remove("deployment.kubernetes.io/revision");
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// The paths whose values differ, as `path: old → new` with secret values masked: a Secret's
/// data, and any value that shows a decrypted secret in any form (e.g. base64 in a ConfigMap).
pub(crate) fn field_changes(
    old: &serde_json::Value,
    new: &serde_json::Value,
    secret: bool,
    secrets: &Scrubber,
) -> Vec<String> {
    fn walk(
        path: &str,
        a: &serde_json::Value,
        b: &serde_json::Value,
        out: &mut Vec<(String, String, String)>,
    ) {
        use serde_json::Value::{Array, Object};
        match (a, b) {
            (Object(x), Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = serde_json::Value::Null;
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            (Array(x), Array(y)) if x.len() == y.len() => {
                for (i, (ea, eb)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}.{i}"), ea, eb, out);
                }
            }
            _ if a != b => out.push((path.to_owned(), a.to_string(), b.to_string())),
            _ => {}
        }
    }
    let mut raw = Vec::new();
    walk("", old, new, &mut raw);
    raw.into_iter()
        .map(|(path, a, b)| {
            let hide = |v: String| {
                let in_data =
                    secret && (path.starts_with("data.") || path.starts_with("stringData."));
                // Checked before shortening, so a secret cut in two is still found.
                if in_data || secrets.reveals(&v) {
                    format!("\"{REDACTED}\"")
                } else if v.len() > 80 {
                    format!("{}…", v.chars().take(77).collect::<String>())
                } else {
                    v
                }
            };
            format!("{path}: {} → {}", hide(a), hide(b))
        })
        .collect()
}

/// What `up` would change in the sandbox's namespace.
pub(crate) async fn diff(
    cluster: &Cluster,
    plan: &Plan,
    product: &str,
    secrets: &[String],
) -> Result<Vec<Change>> {
    let ns = plan.namespace.as_str();
    let scrubber = Scrubber::new();
    scrubber.add(secrets.iter().cloned());
    let secrets = &scrubber;
    let before = match record::fetch(cluster, ns, product).await? {
        Lookup::Absent => {
            return Ok(plan
                .objects()
                .map(|o| Change::Create(o.object_ref()))
                .collect());
        }
        // `up` refuses these; nothing of theirs would be pruned.
        Lookup::NotOurs | Lookup::OtherProduct(_) => Default::default(),
        Lookup::Ours(r) => r.inventory,
    };
    let mut changes = Vec::new();
    let mut rendered = BTreeSet::new();
    for object in plan.objects() {
        let key = object.object_ref();
        rendered.insert(key.clone());
        if let Some(change) = object_change(cluster, ns, object, secrets).await? {
            changes.push(change);
        }
    }
    changes.extend(
        before
            .difference(&rendered)
            .map(|k| Change::Prune(k.clone())),
    );
    Ok(changes)
}

/// How one object would change: compare what is live with the server's dry run of the apply.
async fn object_change(
    cluster: &Cluster,
    ns: &str,
    object: &serde_json::Value,
    secrets: &Scrubber,
) -> Result<Option<Change>> {
    let (api_version, kind, name) = (object.api_version(), object.kind(), object.name());
    let (resource, caps) = cluster
        .resolve(api_version, kind)
        .with_context(|| format!("the cluster does not serve {api_version} {kind}"))?;
    let api = cluster.dynamic_api(&resource, &caps, ns);
    let Some(live) = api
        .get_opt(name)
        .await
        .with_context(|| format!("could not read {kind} `{name}`"))?
    else {
        return Ok(Some(Change::Create(object.object_ref())));
    };
    let dry_run = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let would = api
        .patch(name, &dry_run, &Patch::Apply(object))
        .await
        .with_context(|| format!("the server refused {kind} `{name}` in a dry run"))?;
    let old = normalize(serde_json::to_value(&live)?);
    let new = normalize(serde_json::to_value(&would)?);
    let fields = field_changes(&old, &new, kind == "Secret", secrets);
    Ok((!fields.is_empty()).then(|| Change::Update {
        key: object.object_ref(),
        fields,
    }))
}

pub(crate) fn print_diff(namespace: &str, changes: &[Change], total: usize) {
    let mut counts = BTreeMap::from([("create", 0), ("update", 0), ("prune", 0)]);
    for c in changes {
        match c {
            Change::Create(k) => {
                println!("+ {k}");
                *counts.get_mut("create").expect("key") += 1;
            }
            Change::Update { key, fields } => {
                println!("~ {key}");
                for f in fields {
                    println!("    {f}");
                }
                *counts.get_mut("update").expect("key") += 1;
            }
            Change::Prune(k) => {
                println!("- {k}  (no longer rendered: pruned)");
                *counts.get_mut("prune").expect("key") += 1;
            }
        }
    }
    let unchanged = total.saturating_sub(counts["create"] + counts["update"]);
    println!(
        "{namespace}: {} to create, {} to update, {} to prune, {unchanged} unchanged",
        counts["create"], counts["update"], counts["prune"]
    );
}

/// Server-side dry run of every object (into the sandbox's namespace if it exists, else into
/// `default`, which checks the objects' schema and admission without creating anything).
pub(crate) async fn validate_on_server(
    cluster: &Cluster,
    plan: &Plan,
    product: &str,
) -> Result<usize> {
    let target = match record::fetch(cluster, &plan.namespace, product).await? {
        Lookup::Absent => "default".to_owned(),
        _ => plan.namespace.clone(),
    };
    let dry_run = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let mut count = 0;
    for object in plan.objects() {
        let mut object = object.clone();
        object["metadata"]["namespace"] = target.clone().into();
        let (api_version, kind, name) = (object.api_version(), object.kind(), object.name());
        let (resource, caps) = cluster.resolve(api_version, kind).with_context(|| {
            format!("the cluster does not serve {api_version} {kind} (object `{name}`)")
        })?;
        cluster
            .dynamic_api(&resource, &caps, &target)
            .patch(name, &dry_run, &Patch::Apply(&object))
            .await
            .with_context(|| format!("the server refuses {kind} `{name}`"))?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_changes_name_paths_and_mask_secrets() {
        let old = json!({"spec": {"replicas": 1, "containers": [{"image": "a"}]}, "data": {"password": "czNjcmV0"}});
        let new = json!({"spec": {"replicas": 2, "containers": [{"image": "b"}]}, "data": {"password": "b3RoZXI="}});
        let changes = field_changes(&old, &new, true, &Scrubber::new());
        assert_eq!(changes[0], "data.password: \"<redacted>\" → \"<redacted>\"");
        assert!(changes.contains(&"spec.containers.0.image: \"a\" → \"b\"".to_owned()));
        assert!(changes.contains(&"spec.replicas: 1 → 2".to_owned()));
        let scrubber = Scrubber::new();
        scrubber.add(["hunter2-long".into(), "pa\"ss: word".into()]);
        let env = field_changes(
            &json!({"v": "x"}),
            &json!({"v": "hunter2-long"}),
            false,
            &scrubber,
        );
        assert_eq!(env, ["v: \"x\" → \"<redacted>\""]);
        // Forms a literal comparison misses: JSON-escaped (as the diff shows values), base64.
        let encoded = field_changes(
            &json!({"a": "x", "b": "x"}),
            &json!({"a": "url: pa\"ss: word", "b": "aHVudGVyMi1sb25n"}),
            false,
            &scrubber,
        );
        assert_eq!(
            encoded,
            ["a: \"x\" → \"<redacted>\"", "b: \"x\" → \"<redacted>\""]
        );
    }

    #[test]
    fn normalize_drops_server_fields() {
        let v = normalize(
            json!({"metadata": {"name": "a", "resourceVersion": "1", "managedFields": []}, "status": {}}),
        );
        assert_eq!(v, json!({"metadata": {"name": "a"}}));
    }
}

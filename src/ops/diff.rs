//! `sandbox diff`: what `up` would change, from a server-side dry run of every object against
//! what is live, secrets masked.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use kube::api::{Patch, PatchParams};

use crate::kube::{Cluster, ClusterOptions, FIELD_MANAGER};
use crate::object::{Object, ObjectRef};
use crate::pipeline::images::Mode;
use crate::pipeline::plan::Plan;
use crate::pipeline::settings::Settings;
use crate::pipeline::{prepare, Secrets, Target};
use crate::progress::Reporter;
use crate::record::{self, Lookup};
use crate::redact::{Scrubber, REDACTED};

/// What `up` would change in a sandbox.
pub(crate) struct DiffReport {
    pub(crate) namespace: String,
    pub(crate) changes: Vec<Change>,
    /// How many objects are rendered (the unchanged ones are counted, not shown).
    pub(crate) rendered: usize,
}

impl DiffReport {
    /// As `kubectl diff` prints it, then one summary line.
    pub(crate) fn unified(&self) -> String {
        unified(&self.namespace, &self.changes, self.rendered)
    }

    /// `-o json|yaml`: the changes and, for updates, the changed fields (masked).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        to_json(&self.namespace, &self.changes)
    }
}

/// `sandbox diff`: prepare the branch for the cluster as `up` would (images resolved, not
/// built), then compare.
pub(crate) async fn diff(
    settings: &Settings,
    cluster: &ClusterOptions,
    reporter: &Reporter,
) -> Result<DiffReport> {
    let target = Target::Cluster {
        options: cluster,
        mode: Mode::Resolve,
        purpose: "cannot compare with the cluster",
    };
    let prepared = prepare(settings, Secrets::Reveal, target, reporter).await?;
    let cluster = prepared.cluster.as_ref().expect("prepared for a cluster");
    let plan = &prepared.plan;
    let product = &settings.config.name;
    let changes = changes(cluster, plan, product, &prepared.secret_strings()).await?;
    Ok(DiffReport {
        namespace: plan.namespace.clone(),
        changes,
        rendered: plan.objects().count(),
    })
}

/// One object's change. `before`/`after` are the documents the unified diff shows, already
/// masked ([`masked`]): nothing in a `Change` reveals a secret.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Create {
        key: ObjectRef,
        after: serde_json::Value,
    },
    Update {
        key: ObjectRef,
        fields: Vec<String>,
        before: serde_json::Value,
        after: serde_json::Value,
    },
    Prune(ObjectRef),
}

impl Change {
    pub(crate) fn key(&self) -> &ObjectRef {
        match self {
            Change::Create { key, .. } | Change::Update { key, .. } | Change::Prune(key) => key,
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create",
            Change::Update { .. } => "update",
            Change::Prune(_) => "prune",
        }
    }

    /// A created object, as the diff shows it.
    fn create(object: &serde_json::Value, secrets: &Scrubber) -> Change {
        let mut after = object.clone();
        masked(
            &mut serde_json::Value::Null,
            &mut after,
            object.kind() == "Secret",
            secrets,
        );
        Change::Create {
            key: object.object_ref(),
            after,
        }
    }
}

/// What the diff may show of a pair of documents: a Secret's `data`/`stringData` values become
/// `***` (`*** (before)`/`*** (after)` where they differ, as `kubectl diff` shows them), and any
/// string that reveals a decrypted secret in any encoding becomes `<redacted>`.
fn masked(
    before: &mut serde_json::Value,
    after: &mut serde_json::Value,
    secret: bool,
    secrets: &Scrubber,
) {
    if secret {
        for field in ["data", "stringData"] {
            let old = before.get(field).cloned().unwrap_or_default();
            let new = after.get(field).cloned().unwrap_or_default();
            for (doc, own, other, mark) in [
                (&mut *before, &old, &new, "*** (before)"),
                (&mut *after, &new, &old, "*** (after)"),
            ] {
                let Some(map) = doc.get_mut(field).and_then(|m| m.as_object_mut()) else {
                    continue;
                };
                for (k, v) in map.iter_mut() {
                    // Where the other side has no such field (a created object), a mark would
                    // say nothing.
                    let same = other.is_null() || own.get(k) == other.get(k);
                    *v = (if same { "***" } else { mark }).into();
                }
            }
        }
    }
    redact_strings(before, secrets);
    redact_strings(after, secrets);
}

fn redact_strings(value: &mut serde_json::Value, secrets: &Scrubber) {
    match value {
        serde_json::Value::String(s) if secrets.reveals(s) => *s = REDACTED.to_owned(),
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| redact_strings(v, secrets))
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact_strings(v, secrets)),
        _ => {}
    }
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
            // Element by element, so one container's changed image is one line, and an added
            // element is `path.N: null → {...}` rather than the whole list twice.
            (Array(x), Array(y)) => {
                let null = serde_json::Value::Null;
                for i in 0..x.len().max(y.len()) {
                    let (ea, eb) = (x.get(i).unwrap_or(&null), y.get(i).unwrap_or(&null));
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
async fn changes(
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
            return Ok(plan.objects().map(|o| Change::create(o, secrets)).collect());
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
        return Ok(Some(Change::create(object, secrets)));
    };
    let dry_run = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let would = api
        .patch(name, &dry_run, &Patch::Apply(object))
        .await
        .with_context(|| format!("the server refused {kind} `{name}` in a dry run"))?;
    let mut before = normalize(serde_json::to_value(&live)?);
    let mut after = normalize(serde_json::to_value(&would)?);
    let secret = kind == "Secret";
    let fields = field_changes(&before, &after, secret, secrets);
    if fields.is_empty() {
        return Ok(None);
    }
    masked(&mut before, &mut after, secret, secrets);
    Ok(Some(Change::Update {
        key: object.object_ref(),
        fields,
        before,
        after,
    }))
}

/// `sandbox diff`'s text: a unified diff of each object's YAML, live (`---`) against what `up`
/// would make of it (`+++`), as `kubectl diff` prints it; then one summary line.
fn unified(namespace: &str, changes: &[Change], total: usize) -> String {
    let mut out = String::new();
    for change in changes {
        let key = change.key();
        let (before, after) = match change {
            Change::Create { after, .. } => (String::new(), yaml(after)),
            Change::Update { before, after, .. } => (yaml(before), yaml(after)),
            Change::Prune(_) => {
                out.push_str(&format!(
                    "--- live/{key}\n+++ /dev/null\n@@ no longer rendered: pruned @@\n"
                ));
                continue;
            }
        };
        let old_name = match change {
            Change::Create { .. } => "/dev/null".to_owned(),
            _ => format!("live/{key}"),
        };
        let text = similar::TextDiff::from_lines(&before, &after);
        out.push_str(
            &text
                .unified_diff()
                .context_radius(3)
                .header(&old_name, &format!("sandbox/{key}"))
                .to_string(),
        );
    }
    out.push_str(&summary(namespace, changes, total));
    out
}

/// `NAMESPACE: N to create, N to update, N to prune, N unchanged`.
fn summary(namespace: &str, changes: &[Change], total: usize) -> String {
    let count = |verb: &str| changes.iter().filter(|c| c.verb() == verb).count();
    let (create, update, prune) = (count("create"), count("update"), count("prune"));
    let unchanged = total.saturating_sub(create + update);
    format!("{namespace}: {create} to create, {update} to update, {prune} to prune, {unchanged} unchanged\n")
}

/// `sandbox diff -o json`: the changes and, for updates, the changed fields (masked).
fn to_json(namespace: &str, changes: &[Change]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = changes
        .iter()
        .map(|c| {
            let mut item = serde_json::json!({"change": c.verb(), "object": c.key().to_string()});
            if let Change::Update { fields, .. } = c {
                item["fields"] = fields.clone().into();
            }
            item
        })
        .collect();
    serde_json::json!({"namespace": namespace, "changes": items})
}

fn yaml(value: &serde_json::Value) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_else(|e| format!("# cannot show as YAML: {e}\n"))
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
    fn arrays_compare_element_by_element() {
        let old = json!({"c": [{"image": "a"}]});
        let new = json!({"c": [{"image": "a"}, {"image": "b"}]});
        assert_eq!(
            field_changes(&old, &new, false, &Scrubber::new()),
            ["c.1: null → {\"image\":\"b\"}"]
        );
    }

    /// The text is a unified diff a kubectl user reads as such, and it shows no secret: not a
    /// Secret's data (changed or not), nor a decrypted value anywhere else.
    #[test]
    fn the_unified_diff_masks_secrets_and_marks_what_changed() {
        let scrubber = Scrubber::new();
        scrubber.add(["hunter2-long".to_owned()]);
        let key = |kind: &str, name: &str| ObjectRef::new("v1", kind, name);
        let mut before = json!({"kind": "Secret", "data": {"a": "czNjcmV0", "b": "c2FtZQ=="}});
        let mut after = json!({"kind": "Secret", "data": {"a": "b3RoZXI=", "b": "c2FtZQ=="}});
        masked(&mut before, &mut after, true, &scrubber);
        let mut config = json!({"kind": "ConfigMap", "data": {"url": "x"}});
        let mut config_after =
            json!({"kind": "ConfigMap", "data": {"url": "db://hunter2-long@db"}});
        masked(&mut config, &mut config_after, false, &scrubber);
        let changes = [
            Change::Update {
                key: key("Secret", "s"),
                fields: vec![],
                before,
                after,
            },
            Change::Update {
                key: key("ConfigMap", "c"),
                fields: vec![],
                before: config,
                after: config_after,
            },
            Change::create(
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "n"}, "stringData": {"k": "hunter2-long"}}),
                &scrubber,
            ),
            Change::Prune(key("Service", "old")),
        ];
        let text = unified("ns", &changes, 5);
        assert!(
            !text.contains("czNjcmV0") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(
            text.contains("--- live/v1/Secret/s\n+++ sandbox/v1/Secret/s\n@@"),
            "{text}"
        );
        assert!(
            text.contains("-  a: '*** (before)'\n+  a: '*** (after)'\n   b: '***'"),
            "{text}"
        );
        assert!(text.contains("+  url: <redacted>"), "{text}");
        assert!(
            text.contains("--- /dev/null\n+++ sandbox/v1/Secret/n"),
            "{text}"
        );
        assert!(text.contains("+  k: '***'"), "{text}");
        assert!(
            text.contains("--- live/v1/Service/old\n+++ /dev/null"),
            "{text}"
        );
        assert!(
            text.ends_with("ns: 1 to create, 2 to update, 1 to prune, 2 unchanged\n"),
            "{text}"
        );
        let json = to_json("ns", &changes);
        assert_eq!(
            json["changes"][3],
            json!({"change": "prune", "object": "v1/Service/old"})
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

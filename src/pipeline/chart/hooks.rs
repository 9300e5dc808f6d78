//! Helm hooks onto the pipeline's steps, by the object's `helm.sh/hook` annotation:
//!
//! | hook                         | becomes                                                   |
//! |------------------------------|-----------------------------------------------------------|
//! | (none)                       | the service's own objects                                 |
//! | `pre-install`, `pre-upgrade` | preflight: after the dependencies, before the objects; one step per `helm.sh/hook-weight`, lowest first |
//! | `post-install`, `post-upgrade` | a step after the service is ready (its dependents wait for it) |
//! | `test`, `test-success`       | smoke: run once everything is ready                       |
//! | anything else                | not run, and reported                                     |
//!
//! `helm.sh/hook-delete-policy` stays on the object, and apply honours it.

use std::collections::BTreeMap;

use crate::pipeline::render::Manifest;

/// The annotation naming an object's hooks.
pub(crate) const HOOK: &str = "helm.sh/hook";
/// The annotation ordering hooks of one kind (lowest first; default 0).
pub(crate) const HOOK_WEIGHT: &str = "helm.sh/hook-weight";

/// The annotation saying when helm deletes a hook: `before-hook-creation` (the default),
/// `hook-succeeded`, `hook-failed`.
pub(crate) const HOOK_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

/// Whether a hook object's delete policy removes it once its step has `succeeded` (or failed).
/// `before-hook-creation` needs nothing here: apply replaces a changed Job or Pod anyway.
pub(crate) fn deleted_after(object: &serde_json::Value, succeeded: bool) -> bool {
    let wanted = if succeeded {
        "hook-succeeded"
    } else {
        "hook-failed"
    };
    object["metadata"]["annotations"][HOOK_DELETE_POLICY]
        .as_str()
        .is_some_and(|p| p.split(',').any(|p| p.trim() == wanted))
}

/// A chart's output, sorted into the pipeline's steps.
#[derive(Debug, Default)]
pub(crate) struct Hooked {
    pub(crate) objects: Vec<Manifest>,
    /// Pre-install hooks in groups of equal weight, lowest weight first.
    pub(crate) preflight: Vec<Vec<Manifest>>,
    pub(crate) post_install: Vec<Manifest>,
    pub(crate) tests: Vec<Manifest>,
    /// Hooks sandbox does not run, to report.
    pub(crate) unsupported: Vec<UnsupportedHook>,
}

/// A hook object none of whose events sandbox runs (e.g. `pre-delete`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnsupportedHook {
    /// `Kind/name`.
    pub(crate) object: String,
    pub(crate) events: Vec<String>,
}

/// Where one object goes.
enum Place {
    Object,
    Preflight(i64),
    PostInstall,
    Test,
    Unsupported(Vec<String>),
}

fn place(m: &Manifest) -> Place {
    let annotations = &m.object["metadata"]["annotations"];
    let Some(hook) = annotations[HOOK].as_str() else {
        return Place::Object;
    };
    let events: Vec<String> = hook
        .split(',')
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    let has = |names: &[&str]| events.iter().any(|e| names.contains(&e.as_str()));
    if has(&["pre-install", "pre-upgrade"]) {
        Place::Preflight(weight(&annotations[HOOK_WEIGHT]))
    } else if has(&["post-install", "post-upgrade"]) {
        Place::PostInstall
    } else if has(&["test", "test-success"]) {
        Place::Test
    } else {
        Place::Unsupported(events)
    }
}

/// `helm.sh/hook-weight` is a string holding an integer (helm treats anything else as 0).
fn weight(value: &serde_json::Value) -> i64 {
    match value {
        serde_json::Value::String(s) => s.trim().parse().unwrap_or(0),
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// Sort a chart's rendered objects into the pipeline's steps.
pub(crate) fn sort(manifests: Vec<Manifest>) -> Hooked {
    let mut hooked = Hooked::default();
    let mut by_weight: BTreeMap<i64, Vec<Manifest>> = BTreeMap::new();
    for m in manifests {
        match place(&m) {
            Place::Object => hooked.objects.push(m),
            Place::Preflight(weight) => by_weight.entry(weight).or_default().push(m),
            Place::PostInstall => hooked.post_install.push(m),
            Place::Test => hooked.tests.push(m),
            Place::Unsupported(events) => hooked.unsupported.push(UnsupportedHook {
                object: format!("{}/{}", m.kind(), m.name()),
                events,
            }),
        }
    }
    hooked.preflight = by_weight.into_values().collect();
    hooked
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, name: &str, annotations: serde_json::Value) -> Manifest {
        Manifest {
            template: "c/templates/x.yaml".into(),
            object: json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "annotations": annotations}}),
        }
    }

    fn names(list: &[Manifest]) -> Vec<&str> {
        list.iter().map(|m| m.name()).collect()
    }

    #[test]
    fn delete_policies_are_read_from_the_object() {
        let policy =
            |p: &str| object("Job", "j", json!({HOOK: "test", HOOK_DELETE_POLICY: p})).object;
        assert!(deleted_after(
            &policy("before-hook-creation, hook-succeeded"),
            true
        ));
        assert!(!deleted_after(&policy("hook-succeeded"), false));
        assert!(deleted_after(&policy("hook-failed"), false));
        assert!(!deleted_after(&policy("before-hook-creation"), true));
        assert!(!deleted_after(&object("Job", "j", json!({})).object, true));
    }

    #[test]
    fn hooks_go_to_their_steps() {
        let hooked = sort(vec![
            object("Deployment", "web", json!({})),
            object(
                "Job",
                "migrate",
                json!({HOOK: "pre-install,pre-upgrade", HOOK_WEIGHT: "5"}),
            ),
            object(
                "Job",
                "seed",
                json!({HOOK: "pre-upgrade", HOOK_WEIGHT: "-5"}),
            ),
            object(
                "ConfigMap",
                "seed-code",
                json!({HOOK: "pre-install", HOOK_WEIGHT: "-5"}),
            ),
            object("Job", "warm", json!({HOOK: "post-install"})),
            object("Pod", "test-page", json!({HOOK: "test"})),
            object("Job", "test-old", json!({HOOK: "test-success"})),
            object("Job", "cleanup", json!({HOOK: "pre-delete, post-delete"})),
            object(
                "Job",
                "oddly-weighted",
                json!({HOOK: "pre-install", HOOK_WEIGHT: "heavy"}),
            ),
        ]);
        assert_eq!(names(&hooked.objects), ["web"]);
        let phases: Vec<Vec<&str>> = hooked.preflight.iter().map(|p| names(p)).collect();
        assert_eq!(
            phases,
            [
                vec!["seed", "seed-code"],
                vec!["oddly-weighted"],
                vec!["migrate"]
            ]
        );
        assert_eq!(names(&hooked.post_install), ["warm"]);
        assert_eq!(names(&hooked.tests), ["test-page", "test-old"]);
        assert_eq!(
            hooked.unsupported,
            [UnsupportedHook {
                object: "Job/cleanup".into(),
                events: vec!["pre-delete".into(), "post-delete".into()]
            }]
        );
    }
}

//! The pod specs of a rendered object and their containers, with their field paths, for the
//! checks that look into pods (privileges, Pod Security).
//!
//! Rendered objects come from a branch, which anyone who can push controls: so the walk looks
//! at the objects themselves, not at their kinds. Every mapping with a `containers` list is
//! taken for a pod spec, wherever it sits (a Pod, the template of a Deployment, a CronJob's job
//! template, or a custom resource whose operator makes pods of it).

use serde_json::Value;

/// The lists of a pod spec that hold containers, in the order the kubelet starts them.
const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// A pod spec found in a rendered object.
#[derive(Debug)]
pub(super) struct PodSpec<'a> {
    pub(super) spec: &'a Value,
    /// As `kubectl explain` writes it: `spec.template.spec`; empty when the object itself is one.
    pub(super) path: String,
    /// The pod's `metadata` (annotations), beside the pod spec when it sits under `spec`: a
    /// Pod's own, a template's `spec.template.metadata`; null where there is none.
    pub(super) metadata: &'a Value,
    /// Its path: `metadata`, `spec.template.metadata`.
    pub(super) metadata_path: String,
}

/// One item of a list in a pod spec (a volume, a container), with its field path.
#[derive(Debug)]
pub(super) struct Entry<'a> {
    pub(super) value: &'a Value,
    /// `spec.template.spec.containers[0]`.
    pub(super) path: String,
}

/// Every pod spec in `object`, in document order (an outer one before those nested in it).
pub(super) fn pod_specs(object: &Value) -> Vec<PodSpec<'_>> {
    let mut found = Vec::new();
    walk(object, String::new(), None, &mut found);
    found
}

/// `value` at `path`, and the mapping that holds it under the key `spec` (with its path).
fn walk<'a>(
    value: &'a Value,
    path: String,
    holder: Option<(&'a Value, &str)>,
    found: &mut Vec<PodSpec<'a>>,
) {
    match value {
        Value::Object(map) => {
            if map.get("containers").is_some_and(Value::is_array) {
                let (metadata, at) = holder.unwrap_or((&Value::Null, ""));
                found.push(PodSpec {
                    spec: value,
                    path: path.clone(),
                    metadata: &metadata["metadata"],
                    metadata_path: join(at, "metadata"),
                });
            }
            for (key, child) in map {
                let holder = (key == "spec").then_some((value, path.as_str()));
                walk(child, join(&path, key), holder, found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), None, found);
            }
        }
        _ => {}
    }
}

impl<'a> PodSpec<'a> {
    /// The path of the pod spec's field `name` (`spec.hostNetwork`).
    pub(super) fn field(&self, name: &str) -> String {
        join(&self.path, name)
    }

    /// The items of the pod spec's list `name` (none when it is not a list).
    pub(super) fn items(&self, name: &str) -> impl Iterator<Item = Entry<'a>> + '_ {
        let list = self.field(name);
        items(&self.spec[name]).map(move |(i, value)| Entry {
            value,
            path: format!("{list}[{i}]"),
        })
    }

    /// Every container: the init containers, then the containers, then the ephemeral ones.
    pub(super) fn containers(&self) -> impl Iterator<Item = Entry<'a>> + '_ {
        CONTAINER_LISTS
            .into_iter()
            .flat_map(|list| self.items(list))
    }
}

/// The items of `list` with their indexes (none when it is not a list).
pub(super) fn items(list: &Value) -> impl Iterator<Item = (usize, &Value)> {
    list.as_array().into_iter().flatten().enumerate()
}

/// A field's value as it would be written: `true`, `SYS_ADMIN`, `{"server":"x"}`; `unset`.
pub(super) fn shown(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `path.key`, or `key` at the object's root.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn paths(object: &Value) -> Vec<String> {
        pod_specs(object).into_iter().map(|s| s.path).collect()
    }

    fn container_paths(object: &Value) -> Vec<String> {
        pod_specs(object)
            .iter()
            .flat_map(|s| s.containers().map(|c| c.path).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn pod_specs_are_found_wherever_they_sit() {
        let cases = [
            ("kind: Pod\nspec: {containers: [{name: a}]}", "spec"),
            (
                "kind: Deployment\nspec: {template: {spec: {containers: []}}}",
                "spec.template.spec",
            ),
            (
                "kind: CronJob\nspec: {jobTemplate: {spec: {template: {spec: {containers: []}}}}}",
                "spec.jobTemplate.spec.template.spec",
            ),
            (
                "kind: Workflow\napiVersion: argoproj.io/v1alpha1\nspec: {templates: [{name: a}, {name: b, podSpecPatch: {containers: []}}]}",
                "spec.templates[1].podSpecPatch",
            ),
            ("containers: [{name: a}]", ""),
        ];
        for (text, path) in cases {
            assert_eq!(paths(&yaml(text)), [path], "{text}");
        }
    }

    #[test]
    fn only_mappings_with_a_containers_list_are_pod_specs() {
        let none = [
            "kind: ConfigMap\ndata: {containers: 'a, b'}",
            "kind: Deployment\nspec: {template: {spec: {containers: {a: b}}}}",
            "kind: Service\nspec: {ports: [{port: 80}]}",
        ];
        for text in none {
            assert!(pod_specs(&yaml(text)).is_empty(), "{text}");
        }
    }

    #[test]
    fn nested_and_listed_pod_specs_come_in_document_order() {
        let list = yaml(
            "kind: List\nitems:\n  - {kind: Pod, spec: {containers: [], extra: {containers: []}}}\n  - {kind: Job, spec: {template: {spec: {containers: []}}}}\n",
        );
        assert_eq!(
            paths(&list),
            [
                "items[0].spec",
                "items[0].spec.extra",
                "items[1].spec.template.spec"
            ]
        );
        assert_eq!(paths(&yaml("[{containers: []}]")), ["[0]"]);
    }

    #[test]
    fn containers_come_init_first_then_plain_then_ephemeral_with_their_paths() {
        let deployment = yaml(
            "kind: Deployment\nspec:\n  template:\n    spec:\n      ephemeralContainers: [{name: debug}]\n      containers: [{name: app}, {name: sidecar}]\n      initContainers: [{name: init}]\n",
        );
        assert_eq!(
            container_paths(&deployment),
            [
                "spec.template.spec.initContainers[0]",
                "spec.template.spec.containers[0]",
                "spec.template.spec.containers[1]",
                "spec.template.spec.ephemeralContainers[0]",
            ]
        );
        let names: Vec<_> = pod_specs(&deployment)[0]
            .containers()
            .map(|c| c.value["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["init", "app", "sidecar", "debug"]);
        assert_eq!(
            container_paths(&yaml("containers: [{name: a}]")),
            ["containers[0]"]
        );
    }

    #[test]
    fn the_pod_metadata_is_the_one_beside_the_spec() {
        let pod =
            yaml("kind: Pod\nmetadata: {name: p, annotations: {a: b}}\nspec: {containers: []}");
        let spec = &pod_specs(&pod)[0];
        assert_eq!(spec.metadata["annotations"]["a"], "b");
        assert_eq!(spec.metadata_path, "metadata");
        let cron = yaml(
            "kind: CronJob\nmetadata: {name: c}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        metadata: {annotations: {a: c}}\n        spec: {containers: []}\n",
        );
        let spec = &pod_specs(&cron)[0];
        assert_eq!(spec.metadata["annotations"]["a"], "c");
        assert_eq!(
            spec.metadata_path,
            "spec.jobTemplate.spec.template.metadata"
        );
        let bare = yaml("podSpecPatch: {containers: []}");
        assert!(pod_specs(&bare)[0].metadata.is_null());
    }

    #[test]
    fn fields_and_list_items_are_named_from_the_pod_spec() {
        let pod = yaml(
            "kind: Pod\nspec: {containers: [], volumes: [{name: a}, {name: b}], initContainers: 3}",
        );
        let spec = &pod_specs(&pod)[0];
        assert_eq!(spec.field("hostNetwork"), "spec.hostNetwork");
        let volumes: Vec<_> = spec.items("volumes").map(|v| v.path).collect();
        assert_eq!(volumes, ["spec.volumes[0]", "spec.volumes[1]"]);
        assert_eq!(spec.containers().count(), 0, "initContainers: 3 is no list");
    }
}

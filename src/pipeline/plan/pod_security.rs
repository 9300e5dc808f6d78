//! What the namespace's Pod Security level (`pod_security` in sandbox.yaml) would refuse, checked
//! offline on the rendered objects so `validate` can warn before a cluster refuses the pods.
//! The main rules of the Pod Security Standards: baseline (no host namespaces, ports or paths,
//! no privileged containers or extra capabilities, no unconfined seccomp) and restricted (also
//! non-root, no privilege escalation, every capability dropped, a seccomp profile, and only
//! the volume types that hold no host access).

use serde_json::Value;

use super::pod_specs::{items, join, pod_specs, PodSpec};
// The capabilities baseline lets a container add: the list the plan's privilege check allows.
use super::privileges::BASELINE_CAPABILITIES;

use crate::pipeline::config::PodSecurity;

/// One field of a pod spec the level does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// As `kubectl explain` writes it: `spec.template.spec.containers[0].securityContext`.
    pub(crate) field: String,
    pub(crate) problem: String,
}

/// Volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every violation of `level` in the pod specs of `object` (wherever they sit).
pub(crate) fn violations(object: &Value, level: PodSecurity) -> Vec<Violation> {
    let mut found = Vec::new();
    if level != PodSecurity::Privileged {
        for pod in pod_specs(object) {
            pod_spec(&pod, level, &mut found);
        }
    }
    found
}

fn pod_spec(pod: &PodSpec, level: PodSecurity, found: &mut Vec<Violation>) {
    let mut bad = |field: String, problem: &str| {
        found.push(Violation {
            field,
            problem: problem.to_owned(),
        })
    };
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod.spec[host] == true {
            bad(pod.field(host), "host namespaces are not allowed");
        }
    }
    for volume in pod.items("volumes") {
        let at = volume.path;
        if !volume.value["hostPath"].is_null() {
            bad(join(&at, "hostPath"), "hostPath volumes are not allowed");
        } else if level == PodSecurity::Restricted {
            let kind = volume.value.as_object().and_then(|m| {
                m.keys()
                    .find(|k| *k != "name" && !RESTRICTED_VOLUMES.contains(&k.as_str()))
            });
            if let Some(kind) = kind {
                bad(join(&at, kind), "restricted allows only configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected and secret volumes");
            }
        }
    }
    let pod_context = &pod.spec["securityContext"];
    let pod_at = pod.field("securityContext");
    if pod_context["seccompProfile"]["type"] == "Unconfined" {
        bad(
            join(&pod_at, "seccompProfile.type"),
            "Unconfined seccomp is not allowed",
        );
    }
    if pod_context["runAsUser"] == 0 && level == PodSecurity::Restricted {
        bad(
            join(&pod_at, "runAsUser"),
            "restricted forbids running as root (0)",
        );
    }
    for container in pod.containers() {
        container_violations(container.value, pod_context, &container.path, level, found);
    }
}

fn container_violations(
    container: &Value,
    pod_context: &Value,
    at: &str,
    level: PodSecurity,
    found: &mut Vec<Violation>,
) {
    let context = &container["securityContext"];
    let field = |name: &str| join(&join(at, "securityContext"), name);
    let mut bad = |field: String, problem: &str| {
        found.push(Violation {
            field,
            problem: problem.to_owned(),
        })
    };
    if context["privileged"] == true {
        bad(field("privileged"), "privileged containers are not allowed");
    }
    for (i, port) in items(&container["ports"]) {
        if port["hostPort"].as_u64().is_some_and(|p| p != 0) {
            bad(
                format!("{at}.ports[{i}].hostPort"),
                "host ports are not allowed",
            );
        }
    }
    if !matches!(context["procMount"].as_str(), None | Some("Default")) {
        bad(field("procMount"), "only the Default procMount is allowed");
    }
    if context["seccompProfile"]["type"] == "Unconfined" {
        bad(
            field("seccompProfile.type"),
            "Unconfined seccomp is not allowed",
        );
    }
    let added: Vec<&str> = items(&context["capabilities"]["add"])
        .filter_map(|(_, c)| c.as_str())
        .collect();
    let allowed: &[&str] = match level {
        PodSecurity::Restricted => &["NET_BIND_SERVICE"],
        _ => BASELINE_CAPABILITIES,
    };
    if let Some(extra) = added.iter().find(|c| !allowed.contains(c)) {
        bad(
            field("capabilities.add"),
            &format!("adding capability {extra} is not allowed"),
        );
    }
    if level == PodSecurity::Restricted {
        restricted_violations(context, pod_context, at, found);
    }
}

/// What restricted asks of a container beyond baseline.
fn restricted_violations(
    context: &Value,
    pod_context: &Value,
    at: &str,
    found: &mut Vec<Violation>,
) {
    let field = |name: &str| join(&join(at, "securityContext"), name);
    let mut bad = |field: String, problem: &str| {
        found.push(Violation {
            field,
            problem: problem.to_owned(),
        })
    };
    if context["allowPrivilegeEscalation"] != false {
        bad(
            field("allowPrivilegeEscalation"),
            "restricted needs it set to false",
        );
    }
    let non_root = match &context["runAsNonRoot"] {
        Value::Bool(b) => *b,
        _ => pod_context["runAsNonRoot"] == true,
    };
    if !non_root {
        bad(
            field("runAsNonRoot"),
            "restricted needs it true (here or in the pod's securityContext)",
        );
    }
    if context["runAsUser"] == 0 {
        bad(field("runAsUser"), "restricted forbids running as root (0)");
    }
    let drops_all = items(&context["capabilities"]["drop"]).any(|(_, c)| c == "ALL");
    if !drops_all {
        bad(field("capabilities.drop"), "restricted needs `[ALL]`");
    }
    let profile = match &context["seccompProfile"]["type"] {
        Value::Null => &pod_context["seccompProfile"]["type"],
        t => t,
    };
    if !matches!(profile.as_str(), Some("RuntimeDefault" | "Localhost")) {
        bad(
            field("seccompProfile.type"),
            "restricted needs RuntimeDefault or Localhost (here or in the pod's securityContext)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn fields(object: &Value, level: PodSecurity) -> Vec<String> {
        violations(object, level)
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    const PLAIN: &str = "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: busybox\n";

    #[test]
    fn a_plain_pod_meets_baseline_but_not_restricted() {
        let plain = yaml(PLAIN);
        assert!(violations(&plain, PodSecurity::Baseline).is_empty());
        assert_eq!(
            fields(&plain, PodSecurity::Restricted),
            [
                "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
                "spec.template.spec.containers[0].securityContext.runAsNonRoot",
                "spec.template.spec.containers[0].securityContext.capabilities.drop",
                "spec.template.spec.containers[0].securityContext.seccompProfile.type",
            ]
        );
        assert!(violations(&plain, PodSecurity::Privileged).is_empty());
    }

    #[test]
    fn a_hardened_pod_meets_restricted_with_pod_level_settings() {
        let hardened = yaml(
            "kind: Pod\nspec:\n  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  volumes: [{name: c, configMap: {name: x}}]\n  containers:\n    - name: app\n      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\n",
        );
        assert!(
            violations(&hardened, PodSecurity::Restricted).is_empty(),
            "{:?}",
            violations(&hardened, PodSecurity::Restricted)
        );
    }

    #[test]
    fn baseline_refuses_host_access_and_privilege() {
        let host = yaml(
            "kind: Pod\nspec:\n  hostNetwork: true\n  volumes: [{name: d, hostPath: {path: /var/run/docker.sock}}]\n  containers:\n    - name: app\n      ports: [{containerPort: 80, hostPort: 80}]\n      securityContext: {privileged: true, capabilities: {add: [SYS_ADMIN]}}\n",
        );
        assert_eq!(
            fields(&host, PodSecurity::Baseline),
            [
                "spec.hostNetwork",
                "spec.volumes[0].hostPath",
                "spec.containers[0].securityContext.privileged",
                "spec.containers[0].ports[0].hostPort",
                "spec.containers[0].securityContext.capabilities.add",
            ]
        );
    }

    #[test]
    fn every_container_list_is_checked_wherever_the_pod_spec_sits() {
        let cron = yaml(
            "kind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          initContainers: [{name: i, securityContext: {procMount: Unmasked}}]\n          containers: [{name: a}]\n          ephemeralContainers: [{name: e, securityContext: {privileged: true}}]\n",
        );
        assert_eq!(
            fields(&cron, PodSecurity::Baseline),
            [
                "spec.jobTemplate.spec.template.spec.initContainers[0].securityContext.procMount",
                "spec.jobTemplate.spec.template.spec.ephemeralContainers[0].securityContext.privileged",
            ]
        );
    }
}

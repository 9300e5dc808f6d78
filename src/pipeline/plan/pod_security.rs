//! What the namespace's Pod Security level (`pod_security` in sandbox.yaml) refuses, checked
//! offline on the rendered objects and enforced by the plan: API servers before 1.25 ignore the
//! namespace's labels, and later ones refuse a pod only when its controller creates it, deep
//! into an `up`. The rules of the Pod Security Standards (latest):
//! - baseline: no host namespaces, ports or paths, Windows host processes, privileged
//!   containers, capabilities beyond baseline's, Unconfined seccomp, unsafe sysctls, procMounts
//!   other than Default, AppArmor profiles other than the runtime's or a local one, or SELinux
//!   types, users and roles beyond the container ones;
//! - restricted, also: only the volume types that hold no host access, no privilege escalation,
//!   non-root, every capability dropped (only NET_BIND_SERVICE added), a RuntimeDefault or
//!   Localhost seccomp profile.

use serde_json::Value;

use super::pod_specs::{items, join, pod_specs, shown, PodSpec};
// The capabilities baseline lets a container add: the list the plan's privilege check allows.
use super::privileges::BASELINE_CAPABILITIES;

use crate::pipeline::config::{PodSecurity, Privilege};

/// One field of a pod spec the level does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// As `kubectl explain` writes it: `spec.template.spec.containers[0].securityContext`.
    pub(crate) field: String,
    /// What it is set to, as it would be written (`unset` when the level needs it set).
    pub(crate) value: String,
    pub(crate) problem: String,
    /// The lowest level that refuses it: baseline, or restricted for restricted's own rules.
    pub(crate) level: PodSecurity,
}

/// A field of a pod spec that one of baseline's rules refuses, with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Finding {
    pub(super) field: String,
    pub(super) value: String,
}

/// One of baseline's rules for what also counts as a privilege (sandbox.yaml's `allow`, for
/// products at `pod_security: privileged`): one definition for both checks.
pub(super) struct Rule {
    pub(super) privilege: Privilege,
    pub(super) problem: &'static str,
    pub(super) find: fn(&PodSpec) -> Vec<Finding>,
}

pub(super) const BASELINE_RULES: &[Rule] = &[
    Rule {
        privilege: Privilege::HostProcess,
        problem: "Windows host processes are not allowed",
        find: host_processes,
    },
    Rule {
        privilege: Privilege::UnconfinedSeccomp,
        problem: "an Unconfined seccomp profile is not allowed",
        find: unconfined_seccomp,
    },
    Rule {
        privilege: Privilege::UnsafeSysctls,
        problem: "only the safe sysctls are allowed (kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, net.ipv4.ip_unprivileged_port_start, net.ipv4.tcp_syncookies, net.ipv4.ping_group_range, net.ipv4.ip_local_reserved_ports, net.ipv4.tcp_keepalive_*, net.ipv4.tcp_fin_timeout)",
        find: unsafe_sysctls,
    },
    Rule {
        privilege: Privilege::ProcMount,
        problem: "only the Default procMount is allowed",
        find: proc_mounts,
    },
    Rule {
        privilege: Privilege::UnconfinedApparmor,
        problem: "only the AppArmor profiles RuntimeDefault (runtime/default) and Localhost (localhost/…) are allowed",
        find: unconfined_apparmor,
    },
    Rule {
        privilege: Privilege::SelinuxOptions,
        problem: "only the SELinux types container_t, container_init_t, container_kvm_t and container_engine_t are allowed, and no user or role",
        find: selinux_options,
    },
];

/// Pod Security's safe sysctls: namespaced, they reach no other pod or the node.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// The SELinux types baseline allows (and none).
const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

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
            baseline_violations(&pod, &mut found);
            if level == PodSecurity::Restricted {
                restricted_violations(&pod, &mut found);
            }
        }
    }
    found
}

/// Collects violations of one level.
struct Violations<'a> {
    found: &'a mut Vec<Violation>,
    level: PodSecurity,
}

impl Violations<'_> {
    fn add(&mut self, field: String, value: &Value, problem: &str) {
        self.found.push(Violation {
            field,
            value: shown(value),
            problem: problem.to_owned(),
            level: self.level,
        });
    }
}

fn baseline_violations(pod: &PodSpec, found: &mut Vec<Violation>) {
    let mut bad = Violations {
        found,
        level: PodSecurity::Baseline,
    };
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod.spec[host] == true {
            bad.add(
                pod.field(host),
                &pod.spec[host],
                "host namespaces are not allowed",
            );
        }
    }
    for volume in pod.items("volumes") {
        let host_path = &volume.value["hostPath"];
        if !host_path.is_null() {
            let shown = host_path.get("path").unwrap_or(host_path);
            let field = join(&volume.path, "hostPath");
            bad.add(field, shown, "hostPath volumes are not allowed");
        }
    }
    for container in pod.containers() {
        container_baseline(container.value, &container.path, &mut bad);
    }
    for rule in BASELINE_RULES {
        for finding in (rule.find)(pod) {
            bad.found.push(Violation {
                field: finding.field,
                value: finding.value,
                problem: rule.problem.to_owned(),
                level: PodSecurity::Baseline,
            });
        }
    }
}

fn container_baseline(container: &Value, at: &str, bad: &mut Violations) {
    let context = &container["securityContext"];
    let field = |name: &str| join(&join(at, "securityContext"), name);
    if context["privileged"] == true {
        let problem = "privileged containers are not allowed";
        bad.add(field("privileged"), &context["privileged"], problem);
    }
    for (i, port) in items(&container["ports"]) {
        if port["hostPort"].as_u64().is_some_and(|p| p != 0) {
            let problem = "host ports are not allowed";
            bad.add(
                format!("{at}.ports[{i}].hostPort"),
                &port["hostPort"],
                problem,
            );
        }
    }
    for (i, cap) in items(&context["capabilities"]["add"]) {
        // Compared as written, as Pod Security does: `cap_chown` is not `CHOWN`.
        if !cap
            .as_str()
            .is_some_and(|c| BASELINE_CAPABILITIES.contains(&c))
        {
            let problem = "only the capabilities of baseline may be added (AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT)";
            bad.add(field(&format!("capabilities.add[{i}]")), cap, problem);
        }
    }
}

/// The pod's securityContext and each container's, with their paths.
fn security_contexts<'a>(pod: &PodSpec<'a>) -> Vec<(String, &'a Value)> {
    let mut all = vec![(pod.field("securityContext"), &pod.spec["securityContext"])];
    all.extend(pod.containers().map(|c| {
        let at = join(&c.path, "securityContext");
        (at, &c.value["securityContext"])
    }));
    all
}

/// The pod's annotations whose key matches `key`, with their paths
/// (`spec.template.metadata.annotations["seccomp.security.alpha.kubernetes.io/pod"]`).
fn annotations<'a>(pod: &PodSpec<'a>, key: impl Fn(&str) -> bool) -> Vec<(String, &'a Value)> {
    let map = pod.metadata["annotations"]
        .as_object()
        .into_iter()
        .flatten();
    map.filter(|(k, _)| key(k))
        .map(|(k, v)| (format!("{}.annotations[\"{k}\"]", pod.metadata_path), v))
        .collect()
}

fn finding(field: String, value: &Value) -> Finding {
    Finding {
        field,
        value: shown(value),
    }
}

fn host_processes(pod: &PodSpec) -> Vec<Finding> {
    let at = "windowsOptions.hostProcess";
    security_contexts(pod)
        .into_iter()
        .filter(|(_, c)| c["windowsOptions"]["hostProcess"] == true)
        .map(|(path, c)| finding(join(&path, at), &c["windowsOptions"]["hostProcess"]))
        .collect()
}

/// Unconfined in the fields, or in the annotations that kubelets before 1.27 still read.
fn unconfined_seccomp(pod: &PodSpec) -> Vec<Finding> {
    let mut found: Vec<Finding> = security_contexts(pod)
        .into_iter()
        .filter(|(_, c)| c["seccompProfile"]["type"] == "Unconfined")
        .map(|(path, c)| {
            finding(
                join(&path, "seccompProfile.type"),
                &c["seccompProfile"]["type"],
            )
        })
        .collect();
    let old = |k: &str| {
        k == "seccomp.security.alpha.kubernetes.io/pod"
            || k.starts_with("container.seccomp.security.alpha.kubernetes.io/")
    };
    for (field, value) in annotations(pod, old) {
        if value == "unconfined" {
            found.push(finding(field, value));
        }
    }
    found
}

fn unsafe_sysctls(pod: &PodSpec) -> Vec<Finding> {
    let at = pod.field("securityContext.sysctls");
    items(&pod.spec["securityContext"]["sysctls"])
        .filter(|(_, s)| {
            !s["name"]
                .as_str()
                .is_some_and(|n| SAFE_SYSCTLS.contains(&n))
        })
        .map(|(i, s)| finding(format!("{at}[{i}].name"), &s["name"]))
        .collect()
}

fn proc_mounts(pod: &PodSpec) -> Vec<Finding> {
    pod.containers()
        .filter(|c| {
            !matches!(
                c.value["securityContext"]["procMount"].as_str(),
                None | Some("Default")
            )
        })
        .map(|c| {
            let field = join(&c.path, "securityContext.procMount");
            finding(field, &c.value["securityContext"]["procMount"])
        })
        .collect()
}

/// The 1.30 fields, and the annotations before them.
fn unconfined_apparmor(pod: &PodSpec) -> Vec<Finding> {
    let mut found: Vec<Finding> = security_contexts(pod)
        .into_iter()
        .filter(|(_, c)| {
            let profile = &c["appArmorProfile"]["type"];
            !matches!(profile.as_str(), Some("RuntimeDefault" | "Localhost")) && !profile.is_null()
        })
        .map(|(path, c)| {
            finding(
                join(&path, "appArmorProfile.type"),
                &c["appArmorProfile"]["type"],
            )
        })
        .collect();
    let key = |k: &str| k.starts_with("container.apparmor.security.beta.kubernetes.io/");
    for (field, value) in annotations(pod, key) {
        let allowed = value
            .as_str()
            .is_some_and(|v| v.is_empty() || v == "runtime/default" || v.starts_with("localhost/"));
        if !allowed {
            found.push(finding(field, value));
        }
    }
    found
}

fn selinux_options(pod: &PodSpec) -> Vec<Finding> {
    let mut found = Vec::new();
    for (path, context) in security_contexts(pod) {
        let options = &context["seLinuxOptions"];
        let kind = &options["type"];
        if !kind.is_null() && !kind.as_str().is_some_and(|t| SELINUX_TYPES.contains(&t)) {
            found.push(finding(join(&path, "seLinuxOptions.type"), kind));
        }
        for name in ["user", "role"] {
            let value = &options[name];
            if !value.is_null() && *value != "" {
                found.push(finding(
                    join(&path, &format!("seLinuxOptions.{name}")),
                    value,
                ));
            }
        }
    }
    found
}

/// What restricted asks beyond baseline.
fn restricted_violations(pod: &PodSpec, found: &mut Vec<Violation>) {
    let mut bad = Violations {
        found,
        level: PodSecurity::Restricted,
    };
    for volume in pod.items("volumes") {
        let keys = volume.value.as_object().into_iter().flat_map(|m| m.keys());
        for kind in keys.filter(|k| *k != "name" && *k != "hostPath") {
            if !RESTRICTED_VOLUMES.contains(&kind.as_str()) {
                let problem = "restricted allows only configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected and secret volumes";
                bad.add(
                    join(&volume.path, kind),
                    &Value::String(kind.clone()),
                    problem,
                );
            }
        }
    }
    let pod_context = &pod.spec["securityContext"];
    let pod_at = pod.field("securityContext");
    if pod_context["runAsNonRoot"] == false {
        let problem = "restricted needs it true";
        bad.add(
            join(&pod_at, "runAsNonRoot"),
            &pod_context["runAsNonRoot"],
            problem,
        );
    }
    if pod_context["runAsUser"] == 0 {
        let problem = "restricted forbids running as root (0)";
        bad.add(
            join(&pod_at, "runAsUser"),
            &pod_context["runAsUser"],
            problem,
        );
    }
    for container in pod.containers() {
        let context = &container.value["securityContext"];
        container_restricted(context, pod_context, &container.path, &mut bad);
    }
}

fn container_restricted(context: &Value, pod_context: &Value, at: &str, bad: &mut Violations) {
    let field = |name: &str| join(&join(at, "securityContext"), name);
    if context["allowPrivilegeEscalation"] != false {
        let problem = "restricted needs it false";
        let value = &context["allowPrivilegeEscalation"];
        bad.add(field("allowPrivilegeEscalation"), value, problem);
    }
    let non_root = match &context["runAsNonRoot"] {
        Value::Bool(b) => *b,
        _ => pod_context["runAsNonRoot"] == true,
    };
    if !non_root {
        let problem = "restricted needs it true (here or in the pod's securityContext)";
        bad.add(field("runAsNonRoot"), &context["runAsNonRoot"], problem);
    }
    if context["runAsUser"] == 0 {
        let problem = "restricted forbids running as root (0)";
        bad.add(field("runAsUser"), &context["runAsUser"], problem);
    }
    let drops_all = items(&context["capabilities"]["drop"]).any(|(_, c)| c == "ALL");
    if !drops_all {
        let problem = "restricted needs `[ALL]`";
        bad.add(
            field("capabilities.drop"),
            &context["capabilities"]["drop"],
            problem,
        );
    }
    for (i, cap) in items(&context["capabilities"]["add"]) {
        // Beyond baseline's list, baseline has said so already.
        let name = cap.as_str().unwrap_or_default();
        if name != "NET_BIND_SERVICE" && BASELINE_CAPABILITIES.contains(&name) {
            let problem = "restricted allows adding only NET_BIND_SERVICE";
            bad.add(field(&format!("capabilities.add[{i}]")), cap, problem);
        }
    }
    let profile = match &context["seccompProfile"]["type"] {
        Value::Null => &pod_context["seccompProfile"]["type"],
        t => t,
    };
    // Unconfined: baseline has said so already.
    if !matches!(
        profile.as_str(),
        Some("RuntimeDefault" | "Localhost" | "Unconfined")
    ) {
        let problem =
            "restricted needs RuntimeDefault or Localhost (here or in the pod's securityContext)";
        bad.add(field("seccompProfile.type"), profile, problem);
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
        let first = &violations(&plain, PodSecurity::Restricted)[0];
        assert_eq!(
            (first.value.as_str(), first.level),
            ("unset", PodSecurity::Restricted)
        );
        assert!(violations(&plain, PodSecurity::Privileged).is_empty());
    }

    #[test]
    fn a_hardened_pod_meets_restricted_with_pod_level_settings() {
        let hardened = yaml(
            "kind: Pod\nspec:\n  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}, sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}], seLinuxOptions: {type: container_t}}\n  volumes: [{name: c, configMap: {name: x}}, {name: s, csi: {driver: x}}]\n  containers:\n    - name: app\n      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}, procMount: Default, appArmorProfile: {type: RuntimeDefault}}\n",
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
            "kind: Pod\nspec:\n  hostNetwork: true\n  volumes: [{name: d, hostPath: {path: /var/run/docker.sock}}]\n  containers:\n    - name: app\n      ports: [{containerPort: 80, hostPort: 80}]\n      securityContext: {privileged: true, capabilities: {add: [CHOWN, SYS_ADMIN, cap_chown]}}\n",
        );
        let found: Vec<(String, String)> = violations(&host, PodSecurity::Baseline)
            .into_iter()
            .map(|v| (v.field, v.value))
            .collect();
        let pair = |f: &str, v: &str| (f.to_owned(), v.to_owned());
        assert_eq!(
            found,
            [
                pair("spec.hostNetwork", "true"),
                pair("spec.volumes[0].hostPath", "/var/run/docker.sock"),
                pair("spec.containers[0].securityContext.privileged", "true"),
                pair("spec.containers[0].ports[0].hostPort", "80"),
                pair(
                    "spec.containers[0].securityContext.capabilities.add[1]",
                    "SYS_ADMIN"
                ),
                pair(
                    "spec.containers[0].securityContext.capabilities.add[2]",
                    "cap_chown"
                ),
            ]
        );
    }

    #[test]
    fn baseline_refuses_what_weakens_the_containers_confinement() {
        let pod = yaml(
            r#"
kind: Deployment
spec:
  template:
    metadata:
      annotations:
        seccomp.security.alpha.kubernetes.io/pod: unconfined
        container.apparmor.security.beta.kubernetes.io/app: unconfined
        container.apparmor.security.beta.kubernetes.io/side: localhost/mine
    spec:
      securityContext:
        windowsOptions: {hostProcess: true}
        seccompProfile: {type: Unconfined}
        sysctls: [{name: kernel.shm_rmid_forced, value: "1"}, {name: kernel.msgmax, value: "1"}]
        seLinuxOptions: {type: spc_t, user: system_u}
      containers:
        - name: app
          securityContext:
            procMount: Unmasked
            appArmorProfile: {type: Unconfined}
            seccompProfile: {type: Unconfined}
            seLinuxOptions: {role: sysadm_r}
"#,
        );
        let at = "spec.template.spec.";
        let expected = [
            "securityContext.windowsOptions.hostProcess",
            "securityContext.seccompProfile.type",
            "containers[0].securityContext.seccompProfile.type",
            "spec.template.metadata.annotations[\"seccomp.security.alpha.kubernetes.io/pod\"]",
            "securityContext.sysctls[1].name",
            "containers[0].securityContext.procMount",
            "containers[0].securityContext.appArmorProfile.type",
            "spec.template.metadata.annotations[\"container.apparmor.security.beta.kubernetes.io/app\"]",
            "securityContext.seLinuxOptions.type",
            "securityContext.seLinuxOptions.user",
            "containers[0].securityContext.seLinuxOptions.role",
        ]
        .map(|f| {
            if f.starts_with("spec.") {
                f.to_owned()
            } else {
                format!("{at}{f}")
            }
        });
        assert_eq!(fields(&pod, PodSecurity::Baseline), expected);
        assert!(violations(&pod, PodSecurity::Baseline)
            .iter()
            .all(|v| v.level == PodSecurity::Baseline));
    }

    #[test]
    fn restricted_refuses_host_reaching_volumes_and_root() {
        let pod = yaml(
            "kind: Pod\nspec:\n  securityContext: {runAsNonRoot: false, runAsUser: 0, seccompProfile: {type: RuntimeDefault}}\n  volumes: [{name: a, nfs: {server: x, path: /}}, {name: b, emptyDir: {}}, {name: c, gitRepo: {repository: x}}]\n  containers:\n    - name: app\n      securityContext: {allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: {drop: [ALL], add: [CHOWN]}}\n",
        );
        assert!(violations(&pod, PodSecurity::Baseline).is_empty());
        assert_eq!(
            fields(&pod, PodSecurity::Restricted),
            [
                "spec.volumes[0].nfs",
                "spec.volumes[2].gitRepo",
                "spec.securityContext.runAsNonRoot",
                "spec.securityContext.runAsUser",
                "spec.containers[0].securityContext.capabilities.add[0]",
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
                "spec.jobTemplate.spec.template.spec.ephemeralContainers[0].securityContext.privileged",
                "spec.jobTemplate.spec.template.spec.initContainers[0].securityContext.procMount",
            ]
        );
    }
}

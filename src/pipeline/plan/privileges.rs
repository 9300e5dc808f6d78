//! Rights a rendered object may not claim unless sandbox.yaml allows them: what reaches past the
//! sandbox's namespace to the node (host namespaces, host paths and ports, privileged
//! containers, extra capabilities) or to the cluster's network (a Service's external IPs).
//! Pod specs are held to an allow-list: only the volume types that hold no more than the
//! namespace's own data (`DEFAULT_VOLUMES`), no `nodeName`, no toleration of the control plane,
//! and nothing of what Pod Security's baseline refuses (which a product at `pod_security:
//! privileged` would otherwise let through).
//!
//! Rendered objects come from a branch, which anyone who can push controls; sandbox.yaml is the
//! product owner's. So the check looks at the objects themselves, not at their kinds: it looks
//! into every pod spec that `pod_specs` finds, wherever it sits.

use std::collections::BTreeSet;

use serde_json::Value;

use super::pod_security::BASELINE_RULES;
use super::pod_specs::{items, join, pod_specs, shown, Entry, PodSpec};
use crate::pipeline::config::{Privilege, VolumeType};

/// A privilege an object claims, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) privilege: Privilege,
    /// The field, as `kubectl explain` writes it: `spec.template.spec.hostNetwork`.
    pub(crate) field: String,
    /// What it is set to, as it would be written: `true`, `SYS_ADMIN`, `/var/run/docker.sock`.
    pub(crate) value: String,
}

/// The first privilege `object` claims that `allowed` does not grant.
pub(crate) fn first_unallowed(object: &Value, allowed: &BTreeSet<Privilege>) -> Option<Claim> {
    claims(object)
        .into_iter()
        .find(|c| !allowed.contains(&c.privilege))
}

/// Every privilege `object` claims, in document order.
pub(crate) fn claims(object: &Value) -> Vec<Claim> {
    let mut found = Vec::new();
    if object["kind"] == "Service" {
        let ips = &object["spec"]["externalIPs"];
        if !ips.is_null() && ips.as_array().is_none_or(|a| !a.is_empty()) {
            found.push(claim(Privilege::ExternalIps, "spec.externalIPs", ips));
        }
    }
    for pod in pod_specs(object) {
        pod_spec(&pod, &mut found);
    }
    found
}

/// Pod Security's baseline: the capabilities a container may add without being privileged.
pub(super) const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn pod_spec(pod: &PodSpec, found: &mut Vec<Claim>) {
    let host = [
        ("hostNetwork", Privilege::HostNetwork),
        ("hostPID", Privilege::HostPid),
        ("hostIPC", Privilege::HostIpc),
    ];
    for (field, privilege) in host {
        if pod.spec[field] == true {
            found.push(claim(privilege, &pod.field(field), &pod.spec[field]));
        }
    }
    for volume in pod.items("volumes") {
        volume_claims(&volume, found);
    }
    for container in pod.containers() {
        container_claims(container.value, &container.path, found);
    }
    scheduling_claims(pod, found);
    for rule in BASELINE_RULES {
        for finding in (rule.find)(pod) {
            found.push(Claim {
                privilege: rule.privilege,
                field: finding.field,
                value: finding.value,
            });
        }
    }
}

/// The volume types every pod may use: they hold the namespace's own data (its ConfigMaps,
/// Secrets, claims, the pod's own metadata and token) or scratch space.
const DEFAULT_VOLUMES: &[&str] = &[
    "configMap",
    "secret",
    "emptyDir",
    "projected",
    "downwardAPI",
    "persistentVolumeClaim",
    "ephemeral",
];

/// Every key of a volume but its name is a volume type (the API server allows one).
fn volume_claims(volume: &Entry, found: &mut Vec<Claim>) {
    let keys = volume.value.as_object().into_iter().flatten();
    for (kind, source) in keys.filter(|(k, _)| *k != "name") {
        if DEFAULT_VOLUMES.contains(&kind.as_str()) {
            continue;
        }
        let field = join(&volume.path, kind);
        let (privilege, value) = match kind.as_str() {
            "hostPath" => (Privilege::HostPath, source.get("path").unwrap_or(source)),
            other => {
                let known = VolumeType::of_field(other).unwrap_or(VolumeType::UNKNOWN);
                (Privilege::Volume(known), source)
            }
        };
        let mut claim = claim(privilege, &field, value);
        if claim.value.len() > 80 {
            claim.value = format!("{}…", claim.value.chars().take(80).collect::<String>());
        }
        found.push(claim);
    }
}

/// The taints a control-plane node carries so that no workload lands on it.
const CONTROL_PLANE_TAINTS: &[&str] = &[
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// Where the pod runs: a `nodeName` skips the scheduler (and so every taint); a toleration of the
/// control plane's taints, or of every taint, lets it onto the control plane's nodes.
fn scheduling_claims(pod: &PodSpec, found: &mut Vec<Claim>) {
    let node = &pod.spec["nodeName"];
    if !node.is_null() && *node != "" {
        found.push(claim(Privilege::NodeName, &pod.field("nodeName"), node));
    }
    for toleration in pod.items("tolerations") {
        let key = &toleration.value["key"];
        let privilege = Privilege::ControlPlaneTolerations;
        if key
            .as_str()
            .is_some_and(|k| CONTROL_PLANE_TAINTS.contains(&k))
        {
            found.push(claim(privilege, &join(&toleration.path, "key"), key));
        } else if (key.is_null() || *key == "") && toleration.value["operator"] == "Exists" {
            let field = join(&toleration.path, "operator");
            let every = Value::String("Exists, with no key: every taint".into());
            found.push(claim(privilege, &field, &every));
        }
    }
}

fn container_claims(container: &Value, at: &str, found: &mut Vec<Claim>) {
    let security = &container["securityContext"];
    if security["privileged"] == true {
        let field = format!("{at}.securityContext.privileged");
        found.push(claim(
            Privilege::Privileged,
            &field,
            &security["privileged"],
        ));
    }
    for (k, cap) in items(&security["capabilities"]["add"]) {
        let name = cap.as_str().unwrap_or_default().to_ascii_uppercase();
        let name = name.strip_prefix("CAP_").unwrap_or(&name);
        if !BASELINE_CAPABILITIES.contains(&name) {
            let field = format!("{at}.securityContext.capabilities.add[{k}]");
            found.push(claim(Privilege::Capabilities, &field, cap));
        }
    }
    for (j, port) in items(&container["ports"]) {
        let host_port = &port["hostPort"];
        if !host_port.is_null() && *host_port != 0 {
            let field = format!("{at}.ports[{j}].hostPort");
            found.push(claim(Privilege::HostPort, &field, host_port));
        }
    }
}

fn claim(privilege: Privilege, field: &str, value: &Value) -> Claim {
    Claim {
        privilege,
        field: field.to_owned(),
        value: shown(value),
    }
}

/// What a privilege reaches, for the error's hint.
pub(crate) fn reach(privilege: Privilege) -> &'static str {
    match privilege {
        Privilege::HostNetwork => "the pod shares the node's network: it can listen on and sniff the node's interfaces",
        Privilege::HostPid => "the pod sees and can signal every process on the node",
        Privilege::HostIpc => "the pod shares the node's IPC namespace",
        Privilege::HostPath => "the pod mounts a directory of the node (e.g. the container runtime's socket)",
        Privilege::HostPort => "the pod takes a port on the node's own address",
        Privilege::Privileged => "a privileged container has every device and capability of the node: it can take the node over",
        Privilege::Capabilities => "the capability goes beyond Pod Security's baseline and gives the container powers over the node",
        Privilege::ExternalIps => "traffic to these IPs is captured cluster-wide (CVE-2020-8554)",
        Privilege::Volume(volume) => volume_reach(volume),
        Privilege::NodeName => "the pod skips the scheduler and lands on the named node whatever its taints (e.g. a control-plane node)",
        Privilege::ControlPlaneTolerations => "the pod may run on the control plane's nodes (a toleration with no key and `Exists` tolerates every taint)",
        Privilege::UnconfinedSeccomp => "the container's system calls are not filtered: every kernel bug is in reach",
        Privilege::UnsafeSysctls => "the sysctl is not namespaced: it changes the node's kernel for every pod on it",
        Privilege::ProcMount => "an unmasked /proc shows the node's kernel and processes' secrets to the container",
        Privilege::UnconfinedApparmor => "the container runs without the runtime's AppArmor profile",
        Privilege::SelinuxOptions => "the SELinux type, user or role lifts the container's confinement (e.g. spc_t is unconfined)",
        Privilege::HostProcess => "a Windows host process runs on the node itself, as the node",
        Privilege::NetworkPolicies
        | Privilege::ExternalNameServices
        | Privilege::LoadBalancerServices
        | Privilege::Endpoints
        | Privilege::SnippetAnnotations => super::routing::reach(privilege),
    }
}

fn volume_reach(volume: VolumeType) -> &'static str {
    match volume.field() {
        "" => "it is no volume type of Kubernetes (up to 1.33): a typo, or a type newer than sandbox, which cannot vouch for it",
        "gitRepo" => "the kubelet runs git as root on the node to fill it: on kubelets before 1.28.12/1.29.7/1.30.3 a repository's hooks run on the node (CVE-2024-10220)",
        "flexVolume" => "the kubelet runs the driver named by the branch as root on the node",
        "csi" => "an inline CSI volume has a node plugin mount what the branch asks for, with the driver's rights",
        "image" => "the node pulls the image the branch names and mounts it",
        _ => "the node mounts storage the branch names (a network share, a disk, a cloud volume), with the node's access to it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn fields(object: &Value) -> Vec<(Privilege, String, String)> {
        claims(object)
            .into_iter()
            .map(|c| (c.privilege, c.field, c.value))
            .collect()
    }

    #[test]
    fn every_host_right_is_found_with_its_field_path() {
        let deployment = yaml(
            "
kind: Deployment
metadata: {name: api}
spec:
  template:
    spec:
      hostNetwork: true
      hostPID: true
      hostIPC: true
      volumes:
        - {name: ok, emptyDir: {}}
        - {name: sock, hostPath: {path: /var/run/docker.sock}}
      initContainers:
        - {name: init, securityContext: {capabilities: {add: [NET_BIND_SERVICE, cap_sys_admin]}}}
      containers:
        - name: api
          securityContext: {privileged: true, allowPrivilegeEscalation: true}
          ports: [{containerPort: 80}, {containerPort: 81, hostPort: 8081}]
",
        );
        let s = |p: Privilege, f: &str, v: &str| (p, f.to_owned(), v.to_owned());
        assert_eq!(
            fields(&deployment),
            [
                s(
                    Privilege::HostNetwork,
                    "spec.template.spec.hostNetwork",
                    "true"
                ),
                s(Privilege::HostPid, "spec.template.spec.hostPID", "true"),
                s(Privilege::HostIpc, "spec.template.spec.hostIPC", "true"),
                s(
                    Privilege::HostPath,
                    "spec.template.spec.volumes[1].hostPath",
                    "/var/run/docker.sock"
                ),
                s(
                    Privilege::Capabilities,
                    "spec.template.spec.initContainers[0].securityContext.capabilities.add[1]",
                    "cap_sys_admin"
                ),
                s(
                    Privilege::Privileged,
                    "spec.template.spec.containers[0].securityContext.privileged",
                    "true"
                ),
                s(
                    Privilege::HostPort,
                    "spec.template.spec.containers[0].ports[1].hostPort",
                    "8081"
                ),
            ]
        );
    }

    #[test]
    fn pod_specs_are_found_in_every_pod_bearing_kind() {
        let cases = [
            ("kind: Pod\nspec: {hostNetwork: true, containers: [{name: a}]}", "spec.hostNetwork"),
            ("kind: Job\nspec: {template: {spec: {hostNetwork: true, containers: []}}}", "spec.template.spec.hostNetwork"),
            ("kind: StatefulSet\nspec: {template: {spec: {hostNetwork: true, containers: []}}}", "spec.template.spec.hostNetwork"),
            ("kind: DaemonSet\nspec: {template: {spec: {hostNetwork: true, containers: []}}}", "spec.template.spec.hostNetwork"),
            ("kind: ReplicaSet\nspec: {template: {spec: {hostNetwork: true, containers: []}}}", "spec.template.spec.hostNetwork"),
            ("kind: CronJob\nspec: {jobTemplate: {spec: {template: {spec: {hostNetwork: true, containers: []}}}}}", "spec.jobTemplate.spec.template.spec.hostNetwork"),
            ("kind: PodTemplate\ntemplate: {spec: {hostNetwork: true, containers: []}}", "template.spec.hostNetwork"),
            ("kind: Rollout\napiVersion: argoproj.io/v1alpha1\nspec: {template: {spec: {hostNetwork: true, containers: []}}}", "spec.template.spec.hostNetwork"),
        ];
        for (text, field) in cases {
            let found = fields(&yaml(text));
            assert_eq!(found.len(), 1, "{text}: {found:?}");
            assert_eq!(found[0].1, field, "{text}");
        }
    }

    #[test]
    fn external_ips_are_found_on_services() {
        let service = yaml("kind: Service\nspec: {externalIPs: [10.0.0.1], ports: [{port: 80}]}");
        assert_eq!(
            fields(&service),
            [(
                Privilege::ExternalIps,
                "spec.externalIPs".to_owned(),
                r#"["10.0.0.1"]"#.to_owned()
            )]
        );
        assert!(claims(&yaml("kind: Service\nspec: {externalIPs: []}")).is_empty());
    }

    #[test]
    fn ordinary_objects_claim_nothing() {
        let ordinary = [
            "kind: Deployment\nspec: {template: {spec: {hostNetwork: false, containers: [{name: a, securityContext: {privileged: false, allowPrivilegeEscalation: false, capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}}, ports: [{containerPort: 80}]}], volumes: [{name: v, emptyDir: {}}]}}}",
            "kind: ConfigMap\ndata: {hostNetwork: 'true'}",
            "kind: Service\nspec: {type: NodePort, ports: [{port: 80}]}",
        ];
        for text in ordinary {
            assert!(claims(&yaml(text)).is_empty(), "{text}");
        }
    }

    #[test]
    fn only_the_namespaces_own_volume_types_pass_without_allow() {
        let pod = yaml(
            "
kind: Pod
spec:
  containers: [{name: a}]
  volumes:
    - {name: a, configMap: {name: x}}
    - {name: b, secret: {secretName: x}}
    - {name: c, emptyDir: {}}
    - {name: d, projected: {sources: []}}
    - {name: e, downwardAPI: {items: []}}
    - {name: f, persistentVolumeClaim: {claimName: x}}
    - {name: g, ephemeral: {volumeClaimTemplate: {spec: {}}}}
    - {name: h, gitRepo: {repository: 'https://example.com/x.git'}}
    - {name: i, nfs: {server: 10.0.0.1, path: /}}
    - {name: j, csi: {driver: secrets-store.csi.k8s.io}}
    - {name: k, iscsi: {targetPortal: x, iqn: y, lun: 0}}
    - {name: l, awsElasticBlockStore: {volumeID: x}}
    - {name: m, flexVolume: {driver: x/y}}
    - {name: n, hostPath: {path: /}}
    - {name: o, nfsv5: {}}
",
        );
        let volume = |f: &str| Privilege::Volume(VolumeType::of_field(f).unwrap());
        let found: Vec<(Privilege, String)> = claims(&pod)
            .into_iter()
            .map(|c| (c.privilege, c.field))
            .collect();
        let at = |i: usize, f: &str| format!("spec.volumes[{i}].{f}");
        assert_eq!(
            found,
            [
                (volume("gitRepo"), at(7, "gitRepo")),
                (volume("nfs"), at(8, "nfs")),
                (volume("csi"), at(9, "csi")),
                (volume("iscsi"), at(10, "iscsi")),
                (
                    volume("awsElasticBlockStore"),
                    at(11, "awsElasticBlockStore")
                ),
                (volume("flexVolume"), at(12, "flexVolume")),
                (Privilege::HostPath, at(13, "hostPath")),
                (Privilege::Volume(VolumeType::UNKNOWN), at(14, "nfsv5")),
            ]
        );
        let nfs = &claims(&pod)[1];
        assert_eq!(nfs.value, r#"{"server":"10.0.0.1","path":"/"}"#);
        assert_eq!(nfs.privilege.as_str(), "volume:nfs");
        assert!(!Privilege::Volume(VolumeType::UNKNOWN).can_be_allowed());
        assert!(reach(Privilege::Volume(VolumeType::UNKNOWN)).contains("no volume type"));
        assert!(reach(volume("gitRepo")).contains("CVE-2024-10220"));
    }

    #[test]
    fn node_name_and_control_plane_tolerations_are_claims() {
        let pod = yaml(
            "
kind: Job
spec:
  template:
    spec:
      nodeName: control-plane-1
      tolerations:
        - {key: node-role.kubernetes.io/control-plane, effect: NoSchedule}
        - {key: node-role.kubernetes.io/master, operator: Exists}
        - {operator: Exists}
        - {key: dedicated, operator: Equal, value: batch}
        - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
      containers: [{name: a}]
",
        );
        let at = "spec.template.spec.";
        let s = |p: Privilege, f: &str, v: &str| (p, format!("{at}{f}"), v.to_owned());
        let toleration = Privilege::ControlPlaneTolerations;
        assert_eq!(
            fields(&pod),
            [
                s(Privilege::NodeName, "nodeName", "control-plane-1"),
                s(
                    toleration,
                    "tolerations[0].key",
                    "node-role.kubernetes.io/control-plane"
                ),
                s(
                    toleration,
                    "tolerations[1].key",
                    "node-role.kubernetes.io/master"
                ),
                s(
                    toleration,
                    "tolerations[2].operator",
                    "Exists, with no key: every taint"
                ),
            ]
        );
        assert!(claims(&yaml("kind: Pod\nspec: {nodeName: '', containers: []}")).is_empty());
    }

    #[test]
    fn what_baseline_refuses_of_the_confinement_is_a_claim_too() {
        let pod = yaml(
            "
kind: Deployment
spec:
  template:
    metadata:
      annotations: {container.seccomp.security.alpha.kubernetes.io/app: unconfined}
    spec:
      securityContext:
        sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}, {name: net.core.somaxconn, value: '1024'}]
      containers:
        - name: app
          securityContext:
            procMount: Unmasked
            seccompProfile: {type: Unconfined}
            appArmorProfile: {type: Unconfined}
            seLinuxOptions: {type: spc_t}
            windowsOptions: {hostProcess: true}
",
        );
        let privileges: Vec<Privilege> = claims(&pod).into_iter().map(|c| c.privilege).collect();
        assert_eq!(
            privileges,
            [
                Privilege::HostProcess,
                Privilege::UnconfinedSeccomp,
                Privilege::UnconfinedSeccomp,
                Privilege::UnsafeSysctls,
                Privilege::ProcMount,
                Privilege::UnconfinedApparmor,
                Privilege::SelinuxOptions,
            ]
        );
        let sysctl = &claims(&pod)[3];
        assert_eq!(
            (sysctl.field.as_str(), sysctl.value.as_str()),
            (
                "spec.template.spec.securityContext.sysctls[1].name",
                "net.core.somaxconn"
            )
        );
    }

    #[test]
    fn allowed_claims_pass_and_the_first_other_is_named() {
        let pod = yaml("kind: Pod\nspec: {hostNetwork: true, containers: [{name: a, securityContext: {privileged: true}}]}");
        let allow = |p: &[Privilege]| p.iter().copied().collect::<BTreeSet<_>>();
        let first = first_unallowed(&pod, &allow(&[])).unwrap();
        assert_eq!(first.privilege, Privilege::HostNetwork);
        let next = first_unallowed(&pod, &allow(&[Privilege::HostNetwork])).unwrap();
        assert_eq!(next.field, "spec.containers[0].securityContext.privileged");
        assert!(first_unallowed(
            &pod,
            &allow(&[Privilege::HostNetwork, Privilege::Privileged])
        )
        .is_none());
    }
}

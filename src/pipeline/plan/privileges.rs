//! Rights a rendered object may not claim unless sandbox.yaml allows them: what reaches past the
//! sandbox's namespace to the node (host namespaces, host paths and ports, privileged
//! containers, extra capabilities) or to the cluster's network (a Service's external IPs).
//!
//! Rendered objects come from a branch, which anyone who can push controls; sandbox.yaml is the
//! product owner's. So the check looks at the objects themselves, not at their kinds: it looks
//! into every pod spec that `pod_specs` finds, wherever it sits.

use std::collections::BTreeSet;

use serde_json::Value;

use super::pod_specs::{items, pod_specs, PodSpec};
use crate::pipeline::config::Privilege;

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
        let host_path = &volume.value["hostPath"];
        if !host_path.is_null() {
            let field = format!("{}.hostPath", volume.path);
            let shown = host_path.get("path").unwrap_or(host_path);
            found.push(claim(Privilege::HostPath, &field, shown));
        }
    }
    for container in pod.containers() {
        container_claims(container.value, &container.path, found);
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
    let value = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Claim {
        privilege,
        field: field.to_owned(),
        value,
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
        Privilege::NetworkPolicies
        | Privilege::ExternalNameServices
        | Privilege::LoadBalancerServices
        | Privilege::Endpoints
        | Privilege::SnippetAnnotations => super::routing::reach(privilege),
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

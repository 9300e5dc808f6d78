//! The sandbox's own objects, made from `sandbox.yaml` rather than rendered from a branch: its
//! ResourceQuota and LimitRange (`limits`) and its NetworkPolicies (`network_policy`). They are
//! the plan's first step, so no workload starts before its limits and its isolation are there,
//! and they are in the inventory like every other object (changed when the config changes,
//! pruned when it drops them).

use serde_json::{json, Value};

use crate::pipeline::config::{AllowFrom, Isolation, NetworkPolicy, Quota};
use crate::pipeline::render::Manifest;

/// The names of the objects, fixed so a config change updates them in place.
pub(crate) const QUOTA_NAME: &str = "sandbox-quota";
pub(crate) const LIMIT_RANGE_NAME: &str = "sandbox-defaults";
pub(crate) const INGRESS_POLICY_NAME: &str = "sandbox-isolation";
pub(crate) const EGRESS_POLICY_NAME: &str = "sandbox-egress";

/// Where messages say these objects come from.
const SOURCE: &str = "sandbox.yaml";

/// Every object the isolation settings ask for.
pub(crate) fn namespace_objects(isolation: &Isolation) -> Vec<Manifest> {
    let mut objects = Vec::new();
    if let Some(quota) = &isolation.quota {
        objects.extend(quota_objects(quota));
    }
    if isolation.network_policy.enabled {
        objects.extend(network_policies(&isolation.network_policy));
    }
    objects
        .into_iter()
        .map(|object| Manifest {
            template: SOURCE.into(),
            object,
        })
        .collect()
}

fn quota_objects(quota: &Quota) -> Vec<Value> {
    let mut out = Vec::new();
    if !quota.hard.is_empty() {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": QUOTA_NAME},
            "spec": {"hard": quota.hard},
        }));
    }
    if !quota.default_requests.is_empty() || !quota.default_limits.is_empty() {
        let mut limit = json!({"type": "Container"});
        if !quota.default_limits.is_empty() {
            limit["default"] = json!(quota.default_limits);
        }
        if !quota.default_requests.is_empty() {
            limit["defaultRequest"] = json!(quota.default_requests);
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": LIMIT_RANGE_NAME},
            "spec": {"limits": [limit]},
        }));
    }
    out
}

/// Ingress only from the sandbox's own pods and the allowed namespaces; with
/// `restrict_egress`, egress only to the sandbox's own pods and to DNS.
fn network_policies(policy: &NetworkPolicy) -> Vec<Value> {
    let mut from = vec![json!({"podSelector": {}})];
    from.extend(policy.allow_from.iter().map(|allowed| match allowed {
        AllowFrom::Namespaces(labels) => json!({"namespaceSelector": {"matchLabels": labels}}),
        AllowFrom::Cidr(cidr) => json!({"ipBlock": {"cidr": cidr}}),
    }));
    let mut out = vec![json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": INGRESS_POLICY_NAME},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": from}],
        },
    })];
    if policy.restrict_egress {
        let dns_ports = json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]);
        out.push(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": EGRESS_POLICY_NAME},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [{"podSelector": {}}]},
                    {"to": [{"namespaceSelector": {}}], "ports": dns_ports},
                ],
            },
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pipeline::config::{Caps, PodSecurity};

    fn isolation(quota: Option<Quota>, network_policy: NetworkPolicy) -> Isolation {
        Isolation {
            quota,
            caps: Caps::default(),
            network_policy,
            pod_security: PodSecurity::Baseline,
            idle_after: None,
        }
    }

    fn names(objects: &[Manifest]) -> Vec<String> {
        objects
            .iter()
            .map(|m| format!("{}/{}", m.kind(), m.name()))
            .collect()
    }

    #[test]
    fn by_default_only_the_ingress_policy() {
        let objects = namespace_objects(&isolation(None, NetworkPolicy::default()));
        assert_eq!(names(&objects), ["NetworkPolicy/sandbox-isolation"]);
        let spec = &objects[0].object["spec"];
        assert_eq!(spec["podSelector"], json!({}));
        assert_eq!(spec["ingress"][0]["from"], json!([{"podSelector": {}}]));
    }

    #[test]
    fn quota_limit_range_and_allowed_namespaces() {
        let quota = Quota {
            hard: BTreeMap::from([("limits.memory".into(), "2Gi".into())]),
            default_requests: BTreeMap::from([("memory".into(), "64Mi".into())]),
            default_limits: BTreeMap::from([("memory".into(), "256Mi".into())]),
        };
        let policy = NetworkPolicy {
            enabled: true,
            allow_from: vec![
                AllowFrom::Namespaces(BTreeMap::from([(
                    "kubernetes.io/metadata.name".into(),
                    "ingress-nginx".into(),
                )])),
                AllowFrom::Cidr("0.0.0.0/0".into()),
            ],
            restrict_egress: true,
        };
        let objects = namespace_objects(&isolation(Some(quota), policy));
        assert_eq!(
            names(&objects),
            [
                "ResourceQuota/sandbox-quota",
                "LimitRange/sandbox-defaults",
                "NetworkPolicy/sandbox-isolation",
                "NetworkPolicy/sandbox-egress"
            ]
        );
        assert_eq!(objects[0].object["spec"]["hard"]["limits.memory"], "2Gi");
        let limit = &objects[1].object["spec"]["limits"][0];
        assert_eq!(limit["default"]["memory"], "256Mi");
        assert_eq!(limit["defaultRequest"]["memory"], "64Mi");
        let from = &objects[2].object["spec"]["ingress"][0]["from"];
        assert_eq!(
            from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "ingress-nginx"
        );
        assert_eq!(from[2]["ipBlock"]["cidr"], "0.0.0.0/0");
        let egress = &objects[3].object["spec"]["egress"];
        assert_eq!(egress[1]["ports"][0]["port"], 53);
    }

    #[test]
    fn every_object_made_here_has_a_name_no_template_may_render() {
        let quota = Quota {
            hard: BTreeMap::from([("pods".into(), "5".into())]),
            default_requests: BTreeMap::from([("cpu".into(), "50m".into())]),
            default_limits: BTreeMap::new(),
        };
        let policy = NetworkPolicy {
            restrict_egress: true,
            ..NetworkPolicy::default()
        };
        let objects = namespace_objects(&isolation(Some(quota), policy));
        assert_eq!(objects.len(), 4);
        for m in objects {
            assert!(
                super::super::reserved(m.kind(), m.name()).is_some(),
                "{} `{}` is not reserved",
                m.kind(),
                m.name()
            );
        }
    }

    #[test]
    fn turned_off_means_no_policy() {
        let off = NetworkPolicy {
            enabled: false,
            ..NetworkPolicy::default()
        };
        assert!(namespace_objects(&isolation(None, off)).is_empty());
    }
}

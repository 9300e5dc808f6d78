//! `sandbox rbac user`: the RBAC a person (or a CI job) needs to run `up`, `down` and the rest
//! of the command line against a cluster, from what the tool calls. Each sandbox is a namespace
//! the tool creates, so the rights inside one are granted cluster-wide: a ClusterRole bound by a
//! ClusterRoleBinding. Kinds the product's own templates and charts render beyond these need
//! their rules added (the plan names the kind a dry run is refused for).

/// One rule, with why the tool needs it.
struct Rule {
    why: &'static str,
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
}

const ALL: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// What the tool calls, cluster-wide (deploy/serve.yaml gives serve the same, split by scope).
const CLUSTER_RULES: &[Rule] = &[
    Rule {
        why: "each sandbox is a namespace: created and labelled by server-side apply, its inventory an annotation, listed by `list` and `reap`, watched until `down` has deleted it",
        groups: &[""],
        resources: &["namespaces"],
        verbs: ALL,
    },
    Rule {
        why: "a NodePort Service's URL needs the nodes' addresses",
        groups: &[""],
        resources: &["nodes"],
        verbs: &["get", "list"],
    },
    Rule {
        why: "what the templates render, applied server-side, read back for readiness, pruned when no longer rendered; `sandbox-last-good` (a Secret) keeps the last good revision",
        groups: &[""],
        resources: &["configmaps", "secrets", "services", "pods", "resourcequotas", "limitranges"],
        verbs: ALL,
    },
    Rule {
        why: "Deployments and StatefulSets (scaled to zero by `sleep`)",
        groups: &["apps"],
        resources: &["deployments", "statefulsets"],
        verbs: ALL,
    },
    Rule {
        why: "a pod refused by the quota or Pod Security is found by its ReplicaSet's events",
        groups: &["apps"],
        resources: &["replicasets"],
        verbs: &["get"],
    },
    Rule {
        why: "preflight and smoke Jobs (recreated when changed), CronJobs (suspended by `sleep`)",
        groups: &["batch"],
        resources: &["jobs", "cronjobs"],
        verbs: ALL,
    },
    Rule {
        why: "Ingresses, and the sandbox's own NetworkPolicies (`network_policy`)",
        groups: &["networking.k8s.io"],
        resources: &["ingresses", "networkpolicies"],
        verbs: ALL,
    },
    Rule {
        why: "`logs`, and a failing container's last lines in an error",
        groups: &[""],
        resources: &["pods/log"],
        verbs: &["get"],
    },
    Rule {
        why: "a Service is ready once its Endpoints list a ready pod; a failing object's events go into the error",
        groups: &[""],
        resources: &["endpoints", "events"],
        verbs: &["get", "list", "watch"],
    },
    Rule {
        why: "one `up` or `down` at a time per sandbox (the Lease `sandbox-lock`); `limits.max_sandboxes` counts under a Lease in `default`",
        groups: &["coordination.k8s.io"],
        resources: &["leases"],
        verbs: &["get", "list", "watch", "create", "update", "delete"],
    },
];

/// Who the bindings name.
pub(crate) struct Subjects {
    pub(crate) users: Vec<String>,
    pub(crate) groups: Vec<String>,
}

/// The ClusterRole `sandbox-user` and, for the subjects given, its ClusterRoleBinding.
pub(crate) fn user_manifests(subjects: &Subjects) -> String {
    let mut out = String::from(
        "# What `sandbox` calls to run up, down, sleep, wake, status, logs, list and reap\n\
         # (`sandbox rbac user`). A sandbox is a namespace the tool creates, so its rights\n\
         # inside one are granted cluster-wide. Add rules for the kinds your templates and charts\n\
         # render beyond these (e.g. serviceaccounts, persistentvolumeclaims, horizontalpodautoscalers).\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: sandbox-user\nrules:\n",
    );
    for rule in CLUSTER_RULES {
        out += &format!(
            "  # {}\n  - apiGroups: [{}]\n    resources: [{}]\n    verbs: [{}]\n",
            rule.why,
            list(rule.groups, true),
            list(rule.resources, false),
            list(rule.verbs, false),
        );
    }
    if subjects.users.is_empty() && subjects.groups.is_empty() {
        return out;
    }
    out += "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: sandbox-user\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: sandbox-user\nsubjects:\n";
    for (kind, names) in [("User", &subjects.users), ("Group", &subjects.groups)] {
        for name in names {
            let name = serde_json::to_string(name).expect("a string serializes");
            out += &format!(
                "  - {{apiGroup: rbac.authorization.k8s.io, kind: {kind}, name: {name}}}\n"
            );
        }
    }
    out
}

fn list(items: &[&str], quoted: bool) -> String {
    let shown: Vec<String> = items
        .iter()
        .map(|i| {
            if quoted {
                format!("\"{i}\"")
            } else {
                (*i).to_owned()
            }
        })
        .collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rights `serve` has inside a sandbox (deploy/serve.yaml) are the user's too: both run
    /// the same operations.
    #[test]
    fn the_user_gets_every_right_serve_has_in_a_sandbox() {
        let yaml = user_manifests(&Subjects {
            users: vec!["alice@example.com".into()],
            groups: vec!["developers".into()],
        });
        let documents: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1]["subjects"][0]["name"], "alice@example.com");
        assert_eq!(documents[1]["subjects"][1]["kind"], "Group");
        let granted = |group: &str, resource: &str, verb: &str| {
            documents[0]["rules"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|r| {
                    let has = |key: &str, v: &str| {
                        r[key]
                            .as_sequence()
                            .unwrap()
                            .iter()
                            .any(|x| x.as_str() == Some(v))
                    };
                    has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
                })
        };
        let serve = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/serve.yaml"),
        )
        .unwrap();
        let serve: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&serve)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let in_sandbox = serve
            .iter()
            .find(|d| {
                d["metadata"]["name"] == "sandbox-serve-in-sandbox" && d["kind"] == "ClusterRole"
            })
            .expect("deploy/serve.yaml has serve's rights in a sandbox");
        for rule in in_sandbox["rules"].as_sequence().unwrap() {
            let items = |key: &str| -> Vec<String> {
                rule[key]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            for group in items("apiGroups") {
                for resource in items("resources") {
                    for verb in items("verbs") {
                        assert!(
                            granted(&group, &resource, &verb),
                            "{group}/{resource} {verb}"
                        );
                    }
                }
            }
        }
        assert!(granted("", "namespaces", "create"));
    }
}

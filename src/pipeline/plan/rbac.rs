//! The Roles and RoleBindings a branch renders may grant no identity more than the sandbox's
//! own, and nothing over the tool's objects in the sandbox.
//!
//! A RoleBinding may name only service accounts of the sandbox's namespace (no User, no Group:
//! not `system:unauthenticated`, not `system:serviceaccounts`), and only a Role the branch
//! renders itself or a ClusterRole that sandbox.yaml lists (`rbac.cluster_roles`), never one of
//! [`crate::pipeline::config::never_bound`]'s. A Role may not:
//! - use the verbs `*`, `escalate`, `bind` or `impersonate`;
//! - name the resources `*`, `roles`, `rolebindings`, `clusterroles`, `clusterrolebindings`,
//!   `namespaces` (a Role grants rights on its own namespace object, which holds the sandbox's
//!   record and its Pod Security level), `podsecuritypolicies` or `securitycontextconstraints`
//!   (whose `use` lets pods past the node's checks);
//! - create, update or patch what the plan checks before anything is created:
//!   pods, every kind with a pod template, Services, Endpoints, Ingresses and NetworkPolicies.
//!   A pod with that right would make objects the plan never sees (a pod on the node's network,
//!   a LoadBalancer, an Ingress for any host);
//! - write (any verb but get, list and watch: delete too) Secrets, Leases, ResourceQuotas or
//!   LimitRanges or NetworkPolicies without `resourceNames`, or with one that names the tool's
//!   (`sandbox-last-good`, `sandbox-lock`, the quota, the limit range, the isolation policies).
//!   With `resourceNames` a rule grants neither `create` nor `deletecollection`, so no pod can
//!   make, take or rewrite the tool's objects.
//!
//! Resources are matched by name in every API group (a resource `leases` of any group is
//! refused as coordination's would be), subresources by the resource before the `/`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::pod_specs::items;
use crate::pipeline::config::never_bound;

/// What the plan knows when it looks at one object's RBAC.
pub(crate) struct Scope<'a> {
    /// The sandbox's namespace: the only one a subject may be in.
    pub(crate) namespace: &'a str,
    /// The ClusterRoles sandbox.yaml lets this service bind.
    pub(crate) cluster_roles: &'a BTreeSet<String>,
    /// The Roles the branch renders (all services': they share the namespace).
    pub(crate) roles: &'a BTreeSet<String>,
}

/// Why the plan refuses an RBAC object, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// As `kubectl explain` writes it: `subjects[0].kind`, `rules[1].verbs[0]`.
    pub(crate) field: String,
    pub(crate) value: String,
    pub(crate) reason: String,
    pub(crate) remedy: Remedy,
}

/// What to do about a refusal (the error's hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remedy {
    /// Narrow or remove the Role's rule.
    NarrowRule,
    /// List the ClusterRole in sandbox.yaml.
    ListClusterRole(String),
    /// Bind a Role of the branch's own instead.
    OwnRole,
    /// Bind service accounts of the sandbox only.
    OwnSubjects,
}

impl Remedy {
    pub(crate) fn hint(&self, service: &str) -> String {
        match self {
            Remedy::NarrowRule => format!(
                "a sandbox's Roles may grant only what stays inside the sandbox and leaves the tool's objects alone; remove or narrow the rule (e.g. `resourceNames: [{service}-config]`), or, if service `{service}` really needs more, bind a ClusterRole with those rights that sandbox.yaml lists: `rbac: {{cluster_roles: [NAME]}}` under `services.{service}` (a branch cannot allow it itself)"
            ),
            Remedy::ListClusterRole(name) => format!(
                "if service `{service}` really needs it, add `rbac: {{cluster_roles: [{name}]}}` under `services.{service}` in sandbox.yaml (a branch cannot allow it itself); or bind a Role the template renders, with just the rights needed"
            ),
            Remedy::OwnRole => "bind a Role the template renders, with just the rights the service needs".into(),
            Remedy::OwnSubjects => "bind only service accounts of the sandbox: `{kind: ServiceAccount, name: NAME}` (the namespace left out, or the sandbox's own)".into(),
        }
    }
}

/// Whether `object` is a Role or RoleBinding of the RBAC API (not some CRD's kind).
fn is_rbac(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("rbac.authorization.k8s.io/"))
}

/// The first thing the plan refuses in `object`, if it is a Role or RoleBinding.
pub(crate) fn refusal(object: &Value, scope: &Scope<'_>) -> Option<Refusal> {
    if !is_rbac(object) {
        return None;
    }
    match object["kind"].as_str() {
        Some("Role") => role(object),
        Some("RoleBinding") => role_ref(object, scope).or_else(|| subjects(object, scope)),
        _ => None,
    }
}

/// The names of the Roles among `objects`.
pub(crate) fn role_names<'a>(objects: impl Iterator<Item = &'a Value>) -> BTreeSet<String> {
    objects
        .filter(|o| is_rbac(o) && o["kind"] == "Role")
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

fn refuse(field: String, value: &Value, reason: String, remedy: Remedy) -> Option<Refusal> {
    let value = match value {
        Value::String(s) => s.clone(),
        Value::Null => "not set".into(),
        other => other.to_string(),
    };
    Some(Refusal {
        field,
        value,
        reason,
        remedy,
    })
}

fn role_ref(binding: &Value, scope: &Scope<'_>) -> Option<Refusal> {
    let to = &binding["roleRef"];
    let name = to["name"].as_str().unwrap_or_default();
    let field = || "roleRef.name".to_owned();
    match to["kind"].as_str() {
        Some("ClusterRole") => {
            if let Some(why) = never_bound(name) {
                let reason = format!("ClusterRole `{name}` can never be bound in a sandbox: {why}");
                return refuse(field(), &to["name"], reason, Remedy::OwnRole);
            }
            if !scope.cluster_roles.contains(name) {
                let reason = format!("ClusterRole `{name}` is not one that sandbox.yaml lets this service bind (`rbac.cluster_roles`): it is the cluster's, and may grant anything");
                let remedy = Remedy::ListClusterRole(name.to_owned());
                return refuse(field(), &to["name"], reason, remedy);
            }
            None
        }
        Some("Role") if !scope.roles.contains(name) => {
            let reason = format!("Role `{name}` is not rendered by the templates: a Role that is already in the namespace is someone else's (e.g. the tool's)");
            refuse(field(), &to["name"], reason, Remedy::OwnRole)
        }
        Some("Role") => None,
        _ => {
            let reason = "a RoleBinding refers to a Role or a ClusterRole".to_owned();
            refuse("roleRef.kind".into(), &to["kind"], reason, Remedy::OwnRole)
        }
    }
}

fn subjects(binding: &Value, scope: &Scope<'_>) -> Option<Refusal> {
    for (i, subject) in items(&binding["subjects"]) {
        if subject["kind"] != "ServiceAccount" {
            let reason = format!(
                "only service accounts of the sandbox may be bound: a {} is someone outside it (`{}`)",
                subject["kind"].as_str().unwrap_or("subject"),
                subject["name"].as_str().unwrap_or_default()
            );
            let field = format!("subjects[{i}].kind");
            return refuse(field, &subject["kind"], reason, Remedy::OwnSubjects);
        }
        let namespace = subject["namespace"].as_str().unwrap_or_default();
        if !namespace.is_empty() && namespace != scope.namespace {
            let reason = format!(
                "service account `{namespace}/{}` is outside the sandbox's namespace `{}`",
                subject["name"].as_str().unwrap_or_default(),
                scope.namespace
            );
            let field = format!("subjects[{i}].namespace");
            return refuse(field, &subject["namespace"], reason, Remedy::OwnSubjects);
        }
    }
    None
}

/// Verbs that grant more than the verb's object: RBAC's own escape hatches.
const ESCALATING_VERBS: &[(&str, &str)] = &[
    (
        "*",
        "every verb, `escalate`, `bind` and `impersonate` included",
    ),
    (
        "escalate",
        "it lets its holder write Roles that grant more than it holds",
    ),
    ("bind", "it lets its holder bind Roles it does not hold"),
    (
        "impersonate",
        "it lets its holder act as another user, group or service account",
    ),
];

/// Resources a sandbox's Role may not name at all.
const NEVER_GRANTED: &[(&str, &str)] = &[
    ("*", "every resource, RBAC and the tool's own objects included"),
    ("roles", "a pod could write Roles for itself"),
    ("rolebindings", "a pod could bind Roles to anyone, the tool's `sandbox-access` included"),
    ("clusterroles", "RBAC is the cluster's"),
    ("clusterrolebindings", "RBAC is the cluster's"),
    ("namespaces", "the namespace holds the sandbox's record, the digest of its last good revision and its Pod Security level"),
    ("podsecuritypolicies", "`use` of a policy lets pods past the node's checks"),
    ("securitycontextconstraints", "`use` of a constraint lets pods past the node's checks"),
];

/// Resources whose writes make objects the plan checks before anything is created: a pod with
/// such a right makes them unchecked.
const CHECKED_BY_THE_PLAN: &[&str] = &[
    "pods",
    "pods/ephemeralcontainers",
    "podtemplates",
    "replicationcontrollers",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "services",
    "endpoints",
    "endpointslices",
    "ingresses",
    "networkpolicies",
];

/// Resources that hold the tool's own objects in a sandbox, and their names.
fn tools_objects(resource: &str) -> Option<&'static [&'static str]> {
    use crate::pipeline::plan::isolation::{
        EGRESS_POLICY_NAME, INGRESS_POLICY_NAME, LIMIT_RANGE_NAME, QUOTA_NAME,
    };
    match resource {
        "secrets" => Some(&[crate::record::LAST_GOOD_SECRET]),
        "leases" => Some(&[crate::lock::LEASE_NAME]),
        "resourcequotas" => Some(&[QUOTA_NAME]),
        "limitranges" => Some(&[LIMIT_RANGE_NAME]),
        "networkpolicies" => Some(&[INGRESS_POLICY_NAME, EGRESS_POLICY_NAME]),
        _ => None,
    }
}

const READ_VERBS: &[&str] = &["get", "list", "watch"];
/// Verbs that make or change an object (deleting one makes nothing).
const MAKING_VERBS: &[&str] = &["create", "update", "patch"];

fn role(role: &Value) -> Option<Refusal> {
    items(&role["rules"]).find_map(|(i, rule)| rule_refusal(i, rule))
}

fn rule_refusal(i: usize, rule: &Value) -> Option<Refusal> {
    let verbs: Vec<(usize, &str)> = items(&rule["verbs"])
        .map(|(j, v)| (j, v.as_str().unwrap_or_default()))
        .collect();
    for &(j, verb) in &verbs {
        if let Some((_, why)) = ESCALATING_VERBS.iter().find(|(v, _)| *v == verb) {
            let reason = format!("verb `{verb}`: {why}");
            let field = format!("rules[{i}].verbs[{j}]");
            return refuse(field, &rule["verbs"][j], reason, Remedy::NarrowRule);
        }
    }
    let writes = verbs.iter().any(|(_, v)| !READ_VERBS.contains(v));
    let makes = verbs.iter().any(|(_, v)| MAKING_VERBS.contains(v));
    let names: Vec<&str> = items(&rule["resourceNames"])
        .filter_map(|(_, n)| n.as_str())
        .collect();
    for (j, value) in items(&rule["resources"]) {
        let resource = value.as_str().unwrap_or_default();
        let base = resource.split('/').next().unwrap_or_default();
        let field = format!("rules[{i}].resources[{j}]");
        if let Some((_, why)) = NEVER_GRANTED.iter().find(|(r, _)| *r == base) {
            let reason = format!("a sandbox's Role may not grant rights on `{resource}`: {why}");
            return refuse(field, value, reason, Remedy::NarrowRule);
        }
        if makes && CHECKED_BY_THE_PLAN.contains(&resource) {
            let reason = format!("writing `{resource}` from a pod makes objects the plan never checks (e.g. a pod on the node's network, a LoadBalancer Service, an Ingress for any host)");
            return refuse(field, value, reason, Remedy::NarrowRule);
        }
        let Some(tools) = tools_objects(base).filter(|_| writes) else {
            continue;
        };
        if names.is_empty() {
            let reason = format!(
                "writing `{resource}` without `resourceNames` reaches the tool's own (`{}`)",
                tools.join("`, `")
            );
            return refuse(field, value, reason, Remedy::NarrowRule);
        }
        if let Some(k) = names.iter().position(|n| tools.contains(n)) {
            let reason = format!("`{}` is the tool's own {resource}", names[k]);
            let field = format!("rules[{i}].resourceNames[{k}]");
            return refuse(field, &rule["resourceNames"][k], reason, Remedy::NarrowRule);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn check(text: &str, cluster_roles: &[&str]) -> Option<Refusal> {
        let cluster_roles = cluster_roles.iter().map(|s| s.to_string()).collect();
        let roles = BTreeSet::from(["api-reader".to_owned()]);
        let scope = Scope {
            namespace: "sb-x",
            cluster_roles: &cluster_roles,
            roles: &roles,
        };
        refusal(&yaml(text), &scope)
    }

    fn binding(role_ref: &str, subjects: &str) -> String {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: b}}\nroleRef: {role_ref}\nsubjects: {subjects}\n")
    }

    fn refused_at(text: &str, cluster_roles: &[&str]) -> (String, String) {
        let r = check(text, cluster_roles).unwrap_or_else(|| panic!("accepted: {text}"));
        (r.field, r.value)
    }

    const OWN_SA: &str = "[{kind: ServiceAccount, name: default}]";

    /// Each (rule, field, value): a Role with that rule is refused at that field, naming that value.
    fn assert_each_refused_at(cases: &[(&str, &str, &str)]) {
        for (rule, field, value) in cases {
            assert_eq!(
                refused_at(&role_with(rule), &[]),
                (field.to_string(), value.to_string()),
                "{rule}"
            );
        }
    }

    #[test]
    fn cluster_roles_are_bound_only_when_listed_and_never_the_dangerous_ones() {
        let to = |name: &str| {
            binding(
                &format!(
                    "{{kind: ClusterRole, name: '{name}', apiGroup: rbac.authorization.k8s.io}}"
                ),
                OWN_SA,
            )
        };
        assert!(check(&to("view"), &["view"]).is_none());
        let r = check(&to("view"), &[]).unwrap();
        assert_eq!(
            (r.field.as_str(), r.value.as_str()),
            ("roleRef.name", "view")
        );
        assert_eq!(r.remedy, Remedy::ListClusterRole("view".into()));
        assert!(r
            .remedy
            .hint("web")
            .contains("add `rbac: {cluster_roles: [view]}` under `services.web` in sandbox.yaml"));
        // Listed or not, these are never bound (config refuses to list them; the plan again).
        for name in [
            "admin",
            "edit",
            "cluster-admin",
            "sandbox-serve-in-sandbox",
            "sandbox-serve",
            "system:controller:foo",
        ] {
            let r = check(&to(name), &[name]).unwrap();
            assert!(r.reason.contains("can never be bound"), "{name}: {r:?}");
        }
    }

    #[test]
    fn only_roles_the_branch_renders_may_be_bound() {
        let to = |name: &str| binding(&format!("{{kind: Role, name: {name}}}"), OWN_SA);
        assert!(check(&to("api-reader"), &[]).is_none());
        let r = check(&to("sandbox-tool-role"), &[]).unwrap();
        assert_eq!(r.field, "roleRef.name");
        assert!(r.reason.contains("not rendered by the templates"), "{r:?}");
        let weird = binding("{kind: User, name: x}", OWN_SA);
        assert_eq!(refused_at(&weird, &[]).0, "roleRef.kind");
    }

    #[test]
    fn subjects_are_service_accounts_of_the_sandbox_only() {
        let role = "{kind: Role, name: api-reader}";
        let with = |subjects: &str| binding(role, subjects);
        for ok in [
            OWN_SA,
            "[{kind: ServiceAccount, name: api, namespace: sb-x}]",
            "[]",
        ] {
            assert!(check(&with(ok), &[]).is_none(), "{ok}");
        }
        let cases = [
            ("[{kind: Group, name: 'system:unauthenticated', apiGroup: rbac.authorization.k8s.io}]", "subjects[0].kind", "Group"),
            ("[{kind: Group, name: 'system:serviceaccounts'}]", "subjects[0].kind", "Group"),
            ("[{kind: User, name: 'system:anonymous'}]", "subjects[0].kind", "User"),
            ("[{kind: ServiceAccount, name: default}, {kind: ServiceAccount, name: sandbox-serve, namespace: sandbox-system}]", "subjects[1].namespace", "sandbox-system"),
        ];
        for (subjects, field, value) in cases {
            assert_eq!(
                refused_at(&with(subjects), &[]),
                (field.to_owned(), value.to_owned()),
                "{subjects}"
            );
        }
    }

    fn role_with(rule: &str) -> String {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: r}}\nrules:\n  - {{apiGroups: ['']}}\n  - {rule}\n")
    }

    #[test]
    fn roles_may_not_escalate_nor_touch_rbac_the_namespace_or_what_the_plan_checks() {
        let cases = [
            ("{apiGroups: [''], resources: [configmaps], verbs: [get, '*']}", "rules[1].verbs[1]", "*"),
            ("{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate]}", "rules[1].verbs[0]", "escalate"),
            ("{apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind]}", "rules[1].verbs[0]", "bind"),
            ("{apiGroups: [''], resources: [serviceaccounts], verbs: [impersonate]}", "rules[1].verbs[0]", "impersonate"),
            ("{apiGroups: ['*'], resources: ['*'], verbs: [get]}", "rules[1].resources[0]", "*"),
            ("{apiGroups: [rbac.authorization.k8s.io], resources: [rolebindings], verbs: [get]}", "rules[1].resources[0]", "rolebindings"),
            ("{apiGroups: [''], resources: [configmaps, namespaces/status], verbs: [patch]}", "rules[1].resources[1]", "namespaces/status"),
            ("{apiGroups: [policy], resources: [podsecuritypolicies], resourceNames: [privileged], verbs: [use]}", "rules[1].resources[0]", "podsecuritypolicies"),
            ("{apiGroups: [''], resources: [pods], verbs: [create]}", "rules[1].resources[0]", "pods"),
            ("{apiGroups: [apps], resources: [deployments], verbs: [patch]}", "rules[1].resources[0]", "deployments"),
            ("{apiGroups: [''], resources: [services], verbs: [update]}", "rules[1].resources[0]", "services"),
            ("{apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [create]}", "rules[1].resources[0]", "networkpolicies"),
        ];
        assert_each_refused_at(&cases);
    }

    #[test]
    fn writes_to_the_tools_kinds_need_resource_names_that_are_not_the_tools() {
        let cases = [
            ("{apiGroups: [''], resources: [secrets], verbs: [update]}", "rules[1].resources[0]", "secrets"),
            ("{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [create, update]}", "rules[1].resources[0]", "leases"),
            ("{apiGroups: [''], resources: [secrets], resourceNames: [api-token, sandbox-last-good], verbs: [patch]}", "rules[1].resourceNames[1]", "sandbox-last-good"),
            ("{apiGroups: [coordination.k8s.io], resources: [leases], resourceNames: [sandbox-lock], verbs: [update]}", "rules[1].resourceNames[0]", "sandbox-lock"),
            ("{apiGroups: [''], resources: [resourcequotas], verbs: [delete]}", "rules[1].resources[0]", "resourcequotas"),
            ("{apiGroups: [networking.k8s.io], resources: [networkpolicies], resourceNames: [sandbox-isolation], verbs: [delete]}", "rules[1].resourceNames[0]", "sandbox-isolation"),
        ];
        assert_each_refused_at(&cases);
    }

    #[test]
    fn roles_that_stay_inside_the_sandbox_pass() {
        let fine = [
            "{apiGroups: [''], resources: [secrets, configmaps, pods, services, leases], verbs: [get, list, watch]}",
            "{apiGroups: [''], resources: [configmaps], verbs: [create, update, patch, delete]}",
            "{apiGroups: [''], resources: [secrets], resourceNames: [api-token], verbs: [get, update]}",
            "{apiGroups: [coordination.k8s.io], resources: [leases], resourceNames: [api-leader], verbs: [get, update]}",
            "{apiGroups: [''], resources: [pods/log, pods/exec], verbs: [get, create]}",
            "{apiGroups: [''], resources: [pods], verbs: [delete]}",
        ];
        for rule in fine {
            assert_eq!(check(&role_with(rule), &[]), None, "{rule}");
        }
        // Kinds of another API that happen to be called Role are not RBAC's.
        assert!(check(
            "apiVersion: example.com/v1\nkind: Role\nrules: [{verbs: ['*']}]",
            &[]
        )
        .is_none());
    }
}

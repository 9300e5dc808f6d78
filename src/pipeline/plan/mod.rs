//! Stage 5: turn rendered manifests into a plan — the namespace, the labels every object carries,
//! and the dependency graph of services (with their preflight Jobs) that apply walks.

pub(crate) mod isolation;
pub(crate) mod pod_security;
mod pod_specs;
mod privileges;
mod rbac;
pub(crate) mod routing;

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::error::Hint;
use crate::pipeline::config::{PodSecurity, Privilege};
use crate::pipeline::render::Manifest;
use crate::record::{HASH_ANNOTATION, MANAGED_BY, MANAGED_BY_VALUE, ROLE_LABEL, SERVICE_LABEL};

/// What part of the sandbox an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// The sandbox's own objects (quota, limit range, network policies), before everything.
    Namespace,
    Preflight,
    Service,
    /// A chart's post-install hooks: after the service is ready, before its dependents start.
    PostInstall,
    Smoke,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Namespace => "namespace",
            Role::Preflight => "preflight",
            Role::Service => "service",
            Role::PostInstall => "post-install",
            Role::Smoke => "smoke",
        }
    }
}

/// The rendered manifests of one service, as render hands them over.
#[derive(Debug, Clone)]
pub(crate) struct RenderedService {
    pub(crate) name: String,
    pub(crate) depends_on: Vec<String>,
    /// Preflight Jobs in phases, each run after the one before (a chart's hook weights).
    pub(crate) preflight: Vec<Vec<Manifest>>,
    pub(crate) objects: Vec<Manifest>,
    /// Run once the service's objects are ready; its dependents wait for them.
    pub(crate) post_install: Vec<Manifest>,
    pub(crate) smoke: Vec<Manifest>,
    /// What sandbox.yaml allows its objects beyond the defaults.
    pub(crate) allow: BTreeSet<Privilege>,
    /// The ClusterRoles sandbox.yaml lets its RoleBindings name.
    pub(crate) cluster_roles: BTreeSet<String>,
}

/// One step of the deploy graph: a phase of a service's preflight Jobs, a service's own objects,
/// or its post-install Jobs.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// `api`, `api/preflight` (`api/preflight-2`… for later phases) or `api/post-install`.
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) role: Role,
    /// Indexes of the steps that must be ready first.
    pub(crate) after: Vec<usize>,
    pub(crate) objects: Vec<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) namespace: String,
    /// Steps in a topological order (every step after the steps it waits for).
    pub(crate) steps: Vec<Step>,
    /// Smoke Jobs, run once every step is ready.
    pub(crate) smoke: Vec<(String, serde_json::Value)>,
}

/// A rendered object that the plan refuses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanError {
    /// Only namespaced objects can live in a sandbox.
    #[error(
        "{template}: {kind} `{name}` is cluster-scoped; a sandbox holds only namespaced objects"
    )]
    ClusterScoped {
        template: String,
        kind: String,
        name: String,
    },
    /// Two templates produce the same object.
    #[error("{kind} `{name}` is rendered twice: by {first} and by {second}")]
    Duplicate {
        kind: String,
        name: String,
        first: String,
        second: String,
    },
    /// Preflight, post-install and smoke templates may only hold Jobs and Pods (and what they
    /// need).
    #[error("{template}: a {role} template must render Jobs or Pods, found {kind} `{name}`")]
    NotAJob {
        template: String,
        role: &'static str,
        kind: String,
        name: String,
    },
    /// An object has the kind and name of one the tool makes in every sandbox namespace itself:
    /// applying it would overwrite the tool's (or be overwritten by it).
    #[error("{template}: {kind} `{name}` of service `{service}` has a name reserved by sandbox for {purpose}")]
    Reserved {
        template: String,
        service: String,
        kind: String,
        name: String,
        purpose: &'static str,
    },
    /// An object claims a right over the node or the network that sandbox.yaml does not grant.
    /// (`object`: `TEMPLATE: KIND `NAME``.)
    #[error("{object} of service `{service}` sets `{field}` ({value}), which sandbox.yaml does not allow")]
    NotAllowed {
        object: String,
        service: String,
        field: String,
        value: String,
        privilege: Privilege,
    },
    /// Pods the namespace's Pod Security level refuses: every field of the first such object.
    #[error("{object} of service `{service}` is refused by Pod Security `{level}` (`pod_security` in sandbox.yaml):{}", fields_refused(.violations))]
    PodSecurity {
        object: String,
        service: String,
        level: &'static str,
        violations: Vec<pod_security::Violation>,
    },
    /// An Ingress or a route claims a host that is not this sandbox's (`url.host`).
    /// (`object`: `TEMPLATE: KIND `NAME``; `hosts`: this sandbox's, rendered.)
    #[error("{object} of service `{service}` sets `{}` ({}): {}", .foreign.field, .foreign.value, .foreign.reason)]
    ForeignHost {
        object: String,
        service: String,
        foreign: Box<routing::ForeignHost>,
        hosts: Vec<String>,
    },
    /// A Role or RoleBinding grants more than the sandbox's own, or rights over the tool's
    /// objects. (`object`: `TEMPLATE: KIND `NAME``.)
    #[error("{object} of service `{service}` sets `{}` ({}): {}", .refused.field, .refused.value, .refused.reason)]
    Rbac {
        object: String,
        service: String,
        /// Boxed: the largest variant sizes every `Result` of the plan.
        refused: Box<rbac::Refusal>,
    },
}

/// One line per field: `\n  spec.hostPID is true: host namespaces are not allowed`.
fn fields_refused(violations: &[pod_security::Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("\n  `{}` is {}: {}", v.field, v.value, v.problem))
        .collect()
}

impl Hint for PlanError {
    fn hint(&self) -> Option<String> {
        match self {
            PlanError::ClusterScoped { .. } => Some(
                "sandbox creates the namespace itself; remove the object from the template".into(),
            ),
            PlanError::Duplicate { .. } => {
                Some("give the objects distinct names, e.g. prefixed by the service".into())
            }
            PlanError::NotAJob { .. } => {
                Some("move the object to the service's `templates`".into())
            }
            PlanError::Reserved {
                service,
                kind,
                name,
                ..
            } => Some(format!(
                "rename it in the template, e.g. `{service}-{name}`: sandbox makes its own {} in every sandbox namespace",
                reserved_list(kind)
            )),
            PlanError::NotAllowed { privilege, .. } if !privilege.can_be_allowed() => Some(format!(
                "{}. Remove it from the template or the values",
                privileges::reach(*privilege),
            )),
            PlanError::NotAllowed {
                service, privilege, ..
            } => Some(format!(
                "{}. Remove it from the template or the values; or, if service `{service}` really needs it, add `allow: [{}]` under `services.{service}` in sandbox.yaml (a branch cannot allow it itself)",
                privileges::reach(*privilege),
                privilege.as_str()
            )),
            PlanError::PodSecurity { violations, .. } => {
                // Baseline's rules give way only at privileged, restricted's at baseline.
                let lower = if violations.iter().any(|v| v.level == PodSecurity::Baseline) {
                    PodSecurity::Privileged
                } else {
                    PodSecurity::Baseline
                };
                Some(format!(
                    "set the fields as the level asks in the template or the values; or, if the pods really need them, set `pod_security: {}` in sandbox.yaml (a branch cannot change it)",
                    lower.as_str()
                ))
            }
            PlanError::ForeignHost { hosts, .. } if hosts.is_empty() => Some(
                "an Ingress or route claims a host on the ingress controller every sandbox shares, so a branch may not choose it: give each sandbox its hosts in sandbox.yaml, e.g. `url: {service: gateway, host: \"{{sandbox.namespace}}.preview.example.com\"}`, and use them in the template or values".into(),
            ),
            PlanError::ForeignHost { hosts, .. } => Some(format!(
                "this sandbox may claim {} (`url.host` in sandbox.yaml); use one in the template or values",
                hosts.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")
            )),
            PlanError::Rbac {
                service, refused, ..
            } => Some(refused.remedy.hint(service)),
        }
    }
}

/// The objects the tool makes in every sandbox namespace itself — kind, name, what for — which
/// no template may render, whether or not this sandbox has them (sandbox.yaml may add them
/// later).
const RESERVED: &[(&str, &str, &str)] = &[
    (
        "ResourceQuota",
        isolation::QUOTA_NAME,
        "the sandbox's quota (`limits` in sandbox.yaml)",
    ),
    (
        "LimitRange",
        isolation::LIMIT_RANGE_NAME,
        "the sandbox's container defaults (`limits.container_defaults` in sandbox.yaml)",
    ),
    (
        "NetworkPolicy",
        isolation::INGRESS_POLICY_NAME,
        "the sandbox's network isolation (`network_policy` in sandbox.yaml)",
    ),
    (
        "NetworkPolicy",
        isolation::EGRESS_POLICY_NAME,
        "the sandbox's egress rules (`network_policy.restrict_egress` in sandbox.yaml)",
    ),
    ("Lease", crate::lock::LEASE_NAME, "the sandbox's lock"),
    (
        "Secret",
        crate::record::LAST_GOOD_SECRET,
        "the sandbox's last good revision (for rollbacks)",
    ),
    (
        "RoleBinding",
        crate::access::BINDING_NAME,
        "the rights of `serve`'s accounts in the sandbox",
    ),
];

/// What `kind` and `name` are reserved for, if they are.
fn reserved(kind: &str, name: &str) -> Option<&'static str> {
    RESERVED
        .iter()
        .find(|(k, n, _)| *k == kind && *n == name)
        .map(|(_, _, purpose)| *purpose)
}

/// The reserved names of `kind`, for the hint (`NetworkPolicy `sandbox-isolation`, …`).
fn reserved_list(kind: &str) -> String {
    let names: Vec<String> = RESERVED
        .iter()
        .filter(|(k, _, _)| *k == kind)
        .map(|(k, n, _)| format!("{k} `{n}`"))
        .collect();
    names.join(", ")
}

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "APIService",
];

/// Build the plan: stamp namespace and labels on every object and order the steps.
/// `services` must be in an order where dependencies are known (config validated them).
pub(crate) fn plan(namespace: &str, services: Vec<RenderedService>) -> Result<Plan, PlanError> {
    check_objects(namespace, &services)?;
    let steps = steps(namespace, &dependency_order(&services));
    let smoke = services
        .iter()
        .flat_map(|s| {
            s.smoke
                .iter()
                .map(|m| (s.name.clone(), stamp(m, namespace, &s.name, Role::Smoke)))
        })
        .collect();
    Ok(Plan {
        namespace: namespace.to_owned(),
        steps,
        smoke,
    })
}

/// Refuse cluster-scoped objects, objects rendered twice, objects named as the tool's own,
/// rights over the node or the network that sandbox.yaml does not allow, RBAC that grants more
/// than the sandbox's own, and preflight or smoke templates that render more than Jobs (and
/// what Jobs need).
fn check_objects(namespace: &str, services: &[RenderedService]) -> Result<(), PlanError> {
    let roles = rbac::role_names(services.iter().flat_map(all_manifests).map(|m| &m.object));
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut check = |m: &Manifest| -> Result<(), PlanError> {
        if CLUSTER_SCOPED.contains(&m.kind()) {
            return Err(PlanError::ClusterScoped {
                template: m.template.clone(),
                kind: m.kind().into(),
                name: m.name().into(),
            });
        }
        let key = (m.kind().to_owned(), m.name().to_owned());
        if let Some(first) = seen.insert(key, m.template.clone()) {
            return Err(PlanError::Duplicate {
                kind: m.kind().into(),
                name: m.name().into(),
                first,
                second: m.template.clone(),
            });
        }
        Ok(())
    };
    for s in services {
        let preflight: Vec<&Manifest> = s.preflight.iter().flatten().collect();
        let all = preflight.iter().copied();
        for m in all.chain(&s.objects).chain(&s.post_install).chain(&s.smoke) {
            check(m)?;
            check_reserved(s, m)?;
            check_privileges(s, m)?;
            check_rbac(s, m, namespace, &roles)?;
        }
        let runs: [(&str, Vec<&Manifest>); 3] = [
            ("preflight", preflight),
            ("post-install", s.post_install.iter().collect()),
            ("smoke", s.smoke.iter().collect()),
        ];
        for (role, list) in runs {
            if let Some(m) = list.into_iter().find(|m| !RUN_KINDS.contains(&m.kind())) {
                return Err(PlanError::NotAJob {
                    template: m.template.clone(),
                    role,
                    kind: m.kind().into(),
                    name: m.name().into(),
                });
            }
        }
    }
    Ok(())
}

fn check_reserved(service: &RenderedService, m: &Manifest) -> Result<(), PlanError> {
    match reserved(m.kind(), m.name()) {
        None => Ok(()),
        Some(purpose) => Err(PlanError::Reserved {
            template: m.template.clone(),
            service: service.name.clone(),
            kind: m.kind().into(),
            name: m.name().into(),
            purpose,
        }),
    }
}

fn check_privileges(service: &RenderedService, m: &Manifest) -> Result<(), PlanError> {
    match privileges::first_unallowed(&m.object, &service.allow) {
        None => Ok(()),
        Some(claim) => Err(PlanError::NotAllowed {
            object: format!("{}: {} `{}`", m.template, m.kind(), m.name()),
            service: service.name.clone(),
            field: claim.field,
            value: claim.value,
            privilege: claim.privilege,
        }),
    }
}

/// Refuse the pods that the namespace's Pod Security `level` refuses, before anything is created:
/// API servers before 1.25 ignore the level, later ones refuse a pod only when its controller
/// makes it. Rights sandbox.yaml does not allow are named first (as `plan` would): allowing one
/// is the first step, lowering the level the second.
pub(crate) fn check_pod_security(
    services: &[RenderedService],
    level: PodSecurity,
) -> Result<(), PlanError> {
    for s in services {
        for m in all_manifests(s) {
            check_privileges(s, m)?;
            let violations = pod_security::violations(&m.object, level);
            if !violations.is_empty() {
                return Err(PlanError::PodSecurity {
                    object: format!("{}: {} `{}`", m.template, m.kind(), m.name()),
                    service: s.name.clone(),
                    level: level.as_str(),
                    violations,
                });
            }
        }
    }
    Ok(())
}

fn check_rbac(
    service: &RenderedService,
    m: &Manifest,
    namespace: &str,
    roles: &BTreeSet<String>,
) -> Result<(), PlanError> {
    let scope = rbac::Scope {
        namespace,
        cluster_roles: &service.cluster_roles,
        roles,
    };
    match rbac::refusal(&m.object, &scope) {
        None => Ok(()),
        Some(refused) => Err(PlanError::Rbac {
            object: format!("{}: {} `{}`", m.template, m.kind(), m.name()),
            service: service.name.clone(),
            refused: Box::new(refused),
        }),
    }
}

/// Every manifest of a service: preflight, objects, post-install, smoke.
fn all_manifests(s: &RenderedService) -> impl Iterator<Item = &Manifest> {
    let preflight = s.preflight.iter().flatten();
    preflight
        .chain(&s.objects)
        .chain(&s.post_install)
        .chain(&s.smoke)
}

/// What preflight, post-install and smoke steps may hold: what runs to completion, and what it
/// needs (a chart's hooks often bring their own ServiceAccount and RBAC).
const RUN_KINDS: &[&str] = &[
    "Job",
    "Pod",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Role",
    "RoleBinding",
];

/// Services in a topological order, by repeated passes: the graph is small and config rejected
/// cycles.
fn dependency_order(services: &[RenderedService]) -> Vec<&RenderedService> {
    let mut order: Vec<&RenderedService> = Vec::new();
    let mut placed: Vec<&str> = Vec::new();
    while order.len() < services.len() {
        let before = order.len();
        for s in services {
            if !placed.contains(&s.name.as_str())
                && s.depends_on.iter().all(|d| placed.contains(&d.as_str()))
            {
                placed.push(&s.name);
                order.push(s);
            }
        }
        assert!(
            order.len() > before,
            "config validation lets no cycle through"
        );
    }
    order
}

/// The deploy graph, per service a chain: its preflight phases (the first after its
/// dependencies), its own step, and its post-install step. Dependents wait for the chain's end.
fn steps(namespace: &str, order: &[&RenderedService]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut last_step: BTreeMap<&str, usize> = BTreeMap::new();
    for s in order {
        let mut after: Vec<usize> = s.depends_on.iter().map(|d| last_step[d.as_str()]).collect();
        let mut push = |id: String, role: Role, manifests: &[Manifest], after: Vec<usize>| {
            steps.push(Step {
                id,
                service: s.name.clone(),
                role,
                after,
                objects: manifests
                    .iter()
                    .map(|m| stamp(m, namespace, &s.name, role))
                    .collect(),
            });
            vec![steps.len() - 1]
        };
        let phases = s.preflight.iter().filter(|p| !p.is_empty());
        for (i, phase) in phases.enumerate() {
            let id = match i {
                0 => format!("{}/preflight", s.name),
                _ => format!("{}/preflight-{}", s.name, i + 1),
            };
            after = push(id, Role::Preflight, phase, after);
        }
        after = push(s.name.clone(), Role::Service, &s.objects, after);
        if !s.post_install.is_empty() {
            let id = format!("{}/post-install", s.name);
            after = push(id, Role::PostInstall, &s.post_install, after);
        }
        last_step.insert(&s.name, after[0]);
    }
    steps
}

/// Set the namespace and the tool's labels on an object and on the pod template inside it.
fn stamp(m: &Manifest, namespace: &str, service: &str, role: Role) -> serde_json::Value {
    let mut object = m.object.clone();
    let labels = [
        (MANAGED_BY, MANAGED_BY_VALUE),
        (SERVICE_LABEL, service),
        (ROLE_LABEL, role.as_str()),
    ];
    let metadata = object
        .as_object_mut()
        .expect("render returns mappings")
        .entry("metadata")
        .or_insert_with(|| serde_json::json!({}));
    metadata["namespace"] = namespace.into();
    add_labels(metadata, &labels);
    // Pods inherit the labels so status, logs and failure diagnosis can find them.
    let template_path = match m.kind() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" => {
            Some("/spec/template/metadata")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template/metadata"),
        _ => None,
    };
    if let Some(path) = template_path {
        ensure_path(&mut object, path);
        if let Some(meta) = object.pointer_mut(path) {
            add_labels(meta, &labels);
        }
    }
    let hash = object_hash(&object);
    let annotations = object["metadata"]
        .as_object_mut()
        .expect("metadata is a mapping")
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    if !annotations.is_object() {
        *annotations = serde_json::json!({});
    }
    annotations[HASH_ANNOTATION] = hash.into();
    object
}

/// A short digest of an object's canonical JSON (keys sorted by serde_json's map when
/// `preserve_order` is off; here by re-serializing through a sorted map).
pub(crate) fn object_hash(object: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let b: BTreeMap<&String, serde_json::Value> =
                    m.iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(b).expect("serializable")
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let mut canonical = sorted(object);
    if let Some(a) = canonical
        .pointer_mut("/metadata/annotations")
        .and_then(|a| a.as_object_mut())
    {
        a.remove(HASH_ANNOTATION);
    }
    hex::encode(&Sha256::digest(canonical.to_string().as_bytes())[..12])
}

/// The step id and service label of the sandbox's own objects.
pub(crate) const NAMESPACE_STEP: &str = "sandbox-namespace";

impl Plan {
    /// Put `objects` (the sandbox's own: [`isolation::namespace_objects`]) first: a step that
    /// every step without another to wait for waits for, so no workload starts before them.
    pub(crate) fn with_namespace_objects(mut self, objects: Vec<Manifest>) -> Plan {
        if objects.is_empty() {
            return self;
        }
        let namespace = self.namespace.clone();
        for step in &mut self.steps {
            step.after.iter_mut().for_each(|i| *i += 1);
            if step.after.is_empty() {
                step.after.push(0);
            }
        }
        let first = Step {
            id: NAMESPACE_STEP.into(),
            service: NAMESPACE_STEP.into(),
            role: Role::Namespace,
            after: Vec::new(),
            objects: objects
                .iter()
                .map(|m| stamp(m, &namespace, NAMESPACE_STEP, Role::Namespace))
                .collect(),
        };
        self.steps.insert(0, first);
        self
    }

    /// Every object the plan deploys, steps first, then smoke.
    pub(crate) fn objects(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.steps
            .iter()
            .flat_map(|s| s.objects.iter())
            .chain(self.smoke.iter().map(|(_, o)| o))
    }
}

fn add_labels(metadata: &mut serde_json::Value, labels: &[(&str, &str)]) {
    let map = metadata
        .as_object_mut()
        .expect("metadata is a mapping")
        .entry("labels")
        .or_insert_with(|| serde_json::json!({}));
    if !map.is_object() {
        *map = serde_json::json!({});
    }
    for (k, v) in labels {
        map[*k] = (*v).into();
    }
}

fn ensure_path(object: &mut serde_json::Value, pointer: &str) {
    let mut cur = object;
    for part in pointer.trim_start_matches('/').split('/') {
        if !cur.is_object() {
            *cur = serde_json::json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(part)
            .or_insert_with(|| serde_json::json!({}));
    }
}

#[cfg(test)]
mod tests;

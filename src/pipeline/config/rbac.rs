//! `rbac:` in `sandbox.yaml`, at the top level or per service: the ClusterRoles a branch's
//! RoleBindings may name. A branch renders its own Roles and RoleBindings (checked by the plan:
//! `pipeline::plan::rbac`); a ClusterRole is the cluster's, so binding one is the product
//! owner's choice, written here, never the branch's.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{ConfigError, ConfigFile};

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rbac")]
pub(super) struct RawRbac {
    /// ClusterRoles a branch's RoleBindings may name (never `admin`, `edit`, `cluster-admin`,
    /// `system:*` or the tool's own).
    #[serde(default)]
    cluster_roles: BTreeSet<String>,
}

/// ClusterRoles no sandbox may bind, even when sandbox.yaml lists them: those that let their
/// holder write RBAC or every Secret of the namespace (Kubernetes' `admin`, `edit`,
/// `cluster-admin`), and the tool's own (deploy/serve.yaml, `sandbox reaper-manifests`), which
/// reach the sandbox's lock and its last good revision or other namespaces. Names starting with
/// `system:` are Kubernetes' own as well.
pub(crate) const NEVER_BOUND: &[(&str, &str)] = &[
    ("cluster-admin", "it grants everything in the namespace, RBAC included"),
    ("admin", "it lets its holder create Roles and RoleBindings, and so grant itself more"),
    ("edit", "it lets its holder impersonate service accounts and rewrite every Secret, the tool's included"),
    ("sandbox-serve", "it is `sandbox serve`'s own: it creates and deletes namespaces"),
    ("sandbox-serve-in-sandbox", "it is `sandbox serve`'s own in every sandbox: it holds the sandbox's lock and rewrites its last good revision"),
    ("sandbox-reaper", "it is the reaper's own: it deletes sandboxes"),
];

/// Why `name` can never be bound in a sandbox, if it cannot.
pub(crate) fn never_bound(name: &str) -> Option<&'static str> {
    if name.starts_with("system:") {
        return Some("`system:` roles are Kubernetes' own, for its components");
    }
    NEVER_BOUND
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// The ClusterRoles `raw` (written at `keys`) lists, each one that may be bound.
pub(super) fn cluster_roles(
    file: &ConfigFile<'_>,
    keys: &[&str],
    raw: RawRbac,
) -> Result<BTreeSet<String>, ConfigError> {
    for name in &raw.cluster_roles {
        let keys = [keys, &["rbac", "cluster_roles"][..]].concat();
        let refusal = match never_bound(name) {
            Some(why) => Some(format!(
                "ClusterRole `{name}` can never be bound in a sandbox: {why}"
            )),
            None if name.is_empty() || name.contains('*') => {
                Some(format!("`{name}` is not the name of a ClusterRole"))
            }
            None => None,
        };
        if let Some(message) = refusal {
            return Err(file.invalid(
                &keys,
                message,
                Some("list only ClusterRoles that grant what a sandbox's pods may do, e.g. `rbac: {cluster_roles: [view]}`; or write a ClusterRole of your own with just those rights".into()),
            ));
        }
    }
    Ok(raw.cluster_roles)
}

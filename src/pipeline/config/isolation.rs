//! The isolation-and-cost part of `sandbox.yaml`: `limits` (the sandbox's ResourceQuota and
//! container defaults, and the caps on how many sandboxes there may be), `network_policy`,
//! `pod_security` and `idle_after`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::object::is_dns1035_label;

use super::{ConfigError, ConfigFile};

/// What a sandbox may use and who may reach it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Isolation {
    /// The sandbox's ResourceQuota and LimitRange (None: no `limits` section, no quota).
    pub(crate) quota: Option<Quota>,
    pub(crate) caps: Caps,
    pub(crate) network_policy: NetworkPolicy,
    pub(crate) pod_security: PodSecurity,
    /// Put to sleep by `reap` after this long without `up`, `wake` or `extend`.
    pub(crate) idle_after: Option<Duration>,
}

/// The ResourceQuota's `spec.hard` and the LimitRange's container defaults, in Kubernetes' names.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Quota {
    /// `requests.cpu`, `limits.memory`, `pods`, `services`, `persistentvolumeclaims`,
    /// `requests.storage` → the amount as written.
    pub(crate) hard: BTreeMap<String, String>,
    /// `cpu`/`memory` → the request of a container that declares none.
    pub(crate) default_requests: BTreeMap<String, String>,
    /// `cpu`/`memory` → the limit of a container that declares none.
    pub(crate) default_limits: BTreeMap<String, String>,
}

/// How many sandboxes there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Caps {
    /// Of this product, in the whole cluster.
    pub(crate) max_sandboxes: Option<u32>,
    /// Of this product, per owner (the record's owner).
    pub(crate) max_per_owner: Option<u32>,
}

impl Caps {
    pub(crate) fn any(&self) -> bool {
        self.max_sandboxes.is_some() || self.max_per_owner.is_some()
    }
}

/// Who may reach the sandbox's pods.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkPolicy {
    pub(crate) enabled: bool,
    /// Who may reach the sandbox's pods besides its own.
    pub(crate) allow_from: Vec<AllowFrom>,
    /// Egress only within the sandbox and to DNS (else egress is open).
    pub(crate) restrict_egress: bool,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy {
            enabled: true,
            allow_from: Vec::new(),
            restrict_egress: false,
        }
    }
}

/// A source of traffic the sandbox admits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AllowFrom {
    /// The pods of the namespaces with these labels.
    Namespaces(BTreeMap<String, String>),
    /// Addresses outside the cluster's pods (a NodePort or LoadBalancer's clients), as a CIDR.
    Cidr(String),
}

/// The Pod Security Standard the namespace enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PodSecurity {
    Privileged,
    Baseline,
    Restricted,
}

impl PodSecurity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PodSecurity::Privileged => "privileged",
            PodSecurity::Baseline => "baseline",
            PodSecurity::Restricted => "restricted",
        }
    }
}

// --- as written ---------------------------------------------------------------------------------

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Limits")]
pub(super) struct RawLimits {
    /// The namespace's ResourceQuota: the sum of its pods' requests.
    requests: Option<RawResources>,
    /// The namespace's ResourceQuota: the sum of its pods' limits.
    limits: Option<RawResources>,
    /// The most pods the namespace may hold.
    pods: Option<u32>,
    /// The most Services the namespace may hold.
    services: Option<u32>,
    /// The most PersistentVolumeClaims the namespace may hold.
    persistent_volume_claims: Option<u32>,
    /// The most storage its claims may request together (e.g. `10Gi`).
    storage: Option<RawQuantity>,
    /// The LimitRange: requests and limits of containers that give none.
    container_defaults: Option<RawContainerDefaults>,
    /// The most sandboxes of this product in the cluster (`up` of a new one is refused past it).
    max_sandboxes: Option<u32>,
    /// The most sandboxes of this product one owner may have.
    max_per_owner: Option<u32>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Resources")]
struct RawResources {
    /// CPU, as Kubernetes writes it: `2`, `0.5`, `500m`.
    cpu: Option<RawQuantity>,
    /// Memory, as Kubernetes writes it: `512Mi`, `2Gi`.
    memory: Option<RawQuantity>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ContainerDefaults")]
struct RawContainerDefaults {
    /// Requests of containers that give none.
    requests: Option<RawResources>,
    /// Limits of containers that give none.
    limits: Option<RawResources>,
}

/// A Kubernetes quantity as written: `2`, `0.5`, `500m`, `1Gi`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Quantity")]
enum RawQuantity {
    Number(f64),
    Text(String),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NetworkPolicy")]
pub(super) struct RawNetworkPolicy {
    /// Isolate the sandbox's pods from other namespaces (default `true`).
    #[serde(default = "yes")]
    enabled: bool,
    /// Who else may reach the sandbox's pods.
    #[serde(default)]
    allow_from: Vec<RawAllowFrom>,
    /// Also limit where its pods may connect: the sandbox itself, DNS and `allow_from`.
    #[serde(default)]
    restrict_egress: bool,
}

fn yes() -> bool {
    true
}

/// A namespace whose pods may reach the sandbox: by name, or by its labels.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AllowFrom")]
struct RawAllowFrom {
    /// A namespace, by name.
    namespace: Option<String>,
    /// Namespaces, by their labels.
    namespace_labels: Option<BTreeMap<String, String>>,
    /// Addresses outside the cluster's pods (a NodePort's or LoadBalancer's clients).
    cidr: Option<String>,
}

/// What the raw config says about isolation, for [`isolation`].
pub(super) struct RawIsolation {
    pub(super) limits: Option<RawLimits>,
    pub(super) network_policy: Option<RawNetworkPolicy>,
    pub(super) pod_security: Option<PodSecurity>,
    pub(super) idle_after: Option<String>,
}

/// Validate the isolation fields.
pub(super) fn isolation(
    file: &ConfigFile<'_>,
    raw: RawIsolation,
) -> Result<Isolation, ConfigError> {
    let limits = raw.limits;
    let caps = limits.as_ref().map_or(Caps::default(), |l| Caps {
        max_sandboxes: l.max_sandboxes,
        max_per_owner: l.max_per_owner,
    });
    for (field, cap) in [
        ("max_sandboxes", caps.max_sandboxes),
        ("max_per_owner", caps.max_per_owner),
    ] {
        if cap == Some(0) {
            return Err(file.invalid(
                &["limits", field],
                "a cap of 0 allows no sandbox at all".into(),
                Some(format!(
                    "remove `limits.{field}` for no cap, or allow at least 1"
                )),
            ));
        }
    }
    let quota = match &limits {
        Some(l) => quota(file, l)?,
        None => None,
    };
    let network_policy = match raw.network_policy {
        Some(n) => network_policy(file, n)?,
        None => NetworkPolicy::default(),
    };
    let idle_after = match &raw.idle_after {
        Some(text) => Some(file.duration(&["idle_after"], text)?),
        None => None,
    };
    Ok(Isolation {
        quota,
        caps,
        network_policy,
        pod_security: raw.pod_security.unwrap_or(PodSecurity::Baseline),
        idle_after,
    })
}

/// Requests and limits a container gets when it declares none and the quota counts them (a
/// quota on `limits.memory` refuses every pod whose containers say nothing of memory).
const BUILT_IN_REQUESTS: [(&str, &str); 2] = [("cpu", "50m"), ("memory", "64Mi")];
const BUILT_IN_LIMITS: [(&str, &str); 2] = [("cpu", "500m"), ("memory", "256Mi")];

fn quota(file: &ConfigFile<'_>, raw: &RawLimits) -> Result<Option<Quota>, ConfigError> {
    let mut q = Quota::default();
    for (kind, resources) in [("requests", &raw.requests), ("limits", &raw.limits)] {
        let Some(r) = resources else { continue };
        for (name, value) in [("cpu", &r.cpu), ("memory", &r.memory)] {
            if let Some(v) = value {
                let text = quantity(file, &["limits", kind, name], v)?;
                q.hard.insert(format!("{kind}.{name}"), text);
            }
        }
    }
    let counts = [
        ("pods", "pods", raw.pods),
        ("services", "services", raw.services),
        (
            "persistentvolumeclaims",
            "persistent_volume_claims",
            raw.persistent_volume_claims,
        ),
    ];
    for (name, _, count) in counts {
        if let Some(n) = count {
            q.hard.insert(name.into(), n.to_string());
        }
    }
    if let Some(s) = &raw.storage {
        let text = quantity(file, &["limits", "storage"], s)?;
        q.hard.insert("requests.storage".into(), text);
    }
    let defaults = raw.container_defaults.as_ref();
    for (kind, built_in, out) in [
        ("requests", BUILT_IN_REQUESTS, &mut q.default_requests),
        ("limits", BUILT_IN_LIMITS, &mut q.default_limits),
    ] {
        let given = defaults.and_then(|d| {
            if kind == "requests" {
                d.requests.as_ref()
            } else {
                d.limits.as_ref()
            }
        });
        for (name, fallback) in built_in {
            let written = given.and_then(|r| {
                if name == "cpu" {
                    r.cpu.as_ref()
                } else {
                    r.memory.as_ref()
                }
            });
            let keys = ["limits", "container_defaults", kind, name];
            match written {
                Some(v) => {
                    out.insert(name.into(), quantity(file, &keys, v)?);
                }
                None if q.hard.keys().any(|k| k.ends_with(&format!(".{name}"))) => {
                    out.insert(name.into(), fallback.into());
                }
                None => {}
            }
        }
    }
    check_defaults_fit(file, &q)?;
    let empty = q.hard.is_empty() && q.default_requests.is_empty() && q.default_limits.is_empty();
    Ok((!empty).then_some(q))
}

/// A default request above the default limit makes every container without resources refused.
fn check_defaults_fit(file: &ConfigFile<'_>, q: &Quota) -> Result<(), ConfigError> {
    for (name, request) in &q.default_requests {
        let Some(limit) = q.default_limits.get(name) else {
            continue;
        };
        if parse_quantity(request) > parse_quantity(limit) {
            return Err(file.invalid(
                &["limits", "container_defaults", "requests", name],
                format!("the default request {request} is above the default limit {limit}"),
                Some(format!(
                    "raise `limits.container_defaults.limits.{name}` or lower the request"
                )),
            ));
        }
    }
    Ok(())
}

/// The quantity at `keys`, as Kubernetes will read it.
fn quantity(
    file: &ConfigFile<'_>,
    keys: &[&str],
    value: &RawQuantity,
) -> Result<String, ConfigError> {
    let text = match value {
        RawQuantity::Number(n) => n.to_string(),
        RawQuantity::Text(t) => t.trim().to_owned(),
    };
    match parse_quantity(&text) {
        Some(n) if n >= 0.0 => Ok(text),
        _ => Err(file.invalid(
            keys,
            format!("`{text}` is not a Kubernetes quantity"),
            Some("write CPU like `2` or `500m`, memory and storage like `512Mi` or `4Gi`".into()),
        )),
    }
}

/// The value of a Kubernetes quantity (`500m` → 0.5, `1Gi` → 1073741824), or None.
pub(crate) fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        _ => return None,
    };
    Some(number * scale)
}

fn network_policy(
    file: &ConfigFile<'_>,
    raw: RawNetworkPolicy,
) -> Result<NetworkPolicy, ConfigError> {
    let mut allow_from = Vec::new();
    for (i, from) in raw.allow_from.into_iter().enumerate() {
        let keys = ["network_policy", "allow_from"];
        let selector = match (from.namespace, from.namespace_labels, from.cidr) {
            (Some(name), None, None) if is_dns1035_label(&name) => {
                // Every namespace carries its name as this label (Kubernetes 1.21+).
                let labels = BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), name)]);
                AllowFrom::Namespaces(labels)
            }
            (None, Some(labels), None) if !labels.is_empty() => AllowFrom::Namespaces(labels),
            (None, None, Some(cidr)) if is_cidr(&cidr) => AllowFrom::Cidr(cidr),
            (None, None, Some(cidr)) => {
                return Err(file.invalid(
                    &keys,
                    format!("entry {}: `{cidr}` is not a CIDR", i + 1),
                    Some("write it like `10.0.0.0/8` or `0.0.0.0/0`".into()),
                ))
            }
            (Some(name), None, None) => {
                return Err(file.invalid(
                    &keys,
                    format!("entry {}: `{name}` is not a namespace name", i + 1),
                    None,
                ))
            }
            _ => {
                return Err(file.invalid(
                    &keys,
                    format!("entry {} must name one `namespace`, `namespace_labels` or `cidr`", i + 1),
                    Some("e.g. `allow_from: [{namespace: ingress-nginx}]`, `[{namespace_labels: {team: ingress}}]` or `[{cidr: 0.0.0.0/0}]`".into()),
                ))
            }
        };
        allow_from.push(selector);
    }
    Ok(NetworkPolicy {
        enabled: raw.enabled,
        allow_from,
        restrict_egress: raw.restrict_egress,
    })
}

/// `a.b.c.d/n` or an IPv6 address with a prefix length.
fn is_cidr(text: &str) -> bool {
    let Some((address, bits)) = text.split_once('/') else {
        return false;
    };
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 32),
        Ok(std::net::IpAddr::V6(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 128),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_reads_them() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("1.5k"), Some(1500.0));
        assert_eq!(parse_quantity("12Q"), None);
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn cidrs_are_checked() {
        assert!(is_cidr("0.0.0.0/0"));
        assert!(is_cidr("10.0.0.0/8"));
        assert!(is_cidr("fd00::/8"));
        assert!(!is_cidr("10.0.0.0"));
        assert!(!is_cidr("10.0.0.0/33"));
        assert!(!is_cidr("ten/8"));
    }
}

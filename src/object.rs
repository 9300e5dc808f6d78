//! Which object a rendered or live Kubernetes object is: [`ObjectRef`], and the accessors that
//! read it off a rendered object (`serde_json::Value`) in one place.
//!
//! Every object of a sandbox lives in the sandbox's namespace, so the namespace is not part of
//! the identity: `apiVersion/Kind/name` names an object within its sandbox, and is also how the
//! inventory annotation has always spelled it (old records keep parsing).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The identity of an object within a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectRef {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) name: String,
}

impl ObjectRef {
    pub(crate) fn new(api_version: &str, kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `kind.group/name`, as `kubectl get -o name` prints it (and `kubectl get` reads it):
    /// `deployment.apps/api`, `configmap/settings`.
    pub(crate) fn kind_name(&self) -> String {
        let kind = self.kind.to_ascii_lowercase();
        match self.api_version.split_once('/') {
            Some((group, _)) => format!("{kind}.{group}/{}", self.name),
            None => format!("{kind}/{}", self.name),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.api_version, self.kind, self.name)
    }
}

/// `apiVersion/Kind/name` (the group may hold no `/`: `v1/ConfigMap/x`, `apps/v1/Deployment/x`).
impl FromStr for ObjectRef {
    type Err = String;

    fn from_str(key: &str) -> Result<ObjectRef, String> {
        let parsed = key.rsplit_once('/').and_then(|(rest, name)| {
            let (api_version, kind) = rest.rsplit_once('/')?;
            let valid = [api_version, kind, name].iter().all(|p| !p.is_empty());
            valid.then(|| ObjectRef::new(api_version, kind, name))
        });
        parsed.ok_or_else(|| format!("`{key}` is not `apiVersion/Kind/name`"))
    }
}

impl Serialize for ObjectRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ObjectRef, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What the tool reads off a rendered object. Render and plan have checked that these fields
/// are strings; on anything else they read as empty.
pub(crate) trait Object {
    fn api_version(&self) -> &str;
    fn kind(&self) -> &str;
    fn name(&self) -> &str;
    fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(self.api_version(), self.kind(), self.name())
    }
}

impl Object for serde_json::Value {
    fn api_version(&self) -> &str {
        self["apiVersion"].as_str().unwrap_or_default()
    }

    fn kind(&self) -> &str {
        self["kind"].as_str().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// A DNS-1123 label, what Kubernetes takes for a namespace's name: lower case letters, digits
/// and `-`, at most 63, starting and ending with a letter or digit.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain, what Kubernetes takes for most objects' names (a service account's):
/// DNS-1123 labels joined by `.`, at most 253 characters.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A DNS-1035 label, what Kubernetes takes for a Service's name: a DNS-1123 label that starts
/// with a letter.
pub(crate) fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Whether `s` can start a DNS-1035 label (a name prefix): lower case letters, digits and `-`,
/// starting with a letter, at most 63.
pub(crate) fn is_dns1035_label_prefix(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes().first().is_some_and(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_kubectl_prints_them() {
        let deployment = ObjectRef::new("apps/v1", "Deployment", "api");
        assert_eq!(deployment.kind_name(), "deployment.apps/api");
        assert_eq!(
            ObjectRef::new("v1", "ConfigMap", "c").kind_name(),
            "configmap/c"
        );
    }

    #[test]
    fn refs_parse_with_grouped_and_core_versions() {
        let r: ObjectRef = "apps/v1/Deployment/web".parse().unwrap();
        assert_eq!(r, ObjectRef::new("apps/v1", "Deployment", "web"));
        let r: ObjectRef = "v1/ConfigMap/web-code".parse().unwrap();
        assert_eq!(r, ObjectRef::new("v1", "ConfigMap", "web-code"));
        assert_eq!(r.to_string(), "v1/ConfigMap/web-code");
        assert!("nonsense".parse::<ObjectRef>().is_err());
        assert!("v1//x".parse::<ObjectRef>().is_err());
    }

    #[test]
    fn refs_serialize_as_the_inventory_always_spelled_them() {
        let refs = vec![
            ObjectRef::new("batch/v1", "Job", "migrate"),
            ObjectRef::new("v1", "Service", "api"),
        ];
        let text = serde_json::to_string(&refs).unwrap();
        assert_eq!(text, r#"["batch/v1/Job/migrate","v1/Service/api"]"#);
        let back: Vec<ObjectRef> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, refs);
    }

    #[test]
    fn rendered_objects_tell_their_identity() {
        let o = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"}});
        assert_eq!(o.object_ref().to_string(), "apps/v1/Deployment/api");
        let broken = serde_json::json!({"kind": 3});
        assert_eq!((broken.kind(), broken.name()), ("", ""));
    }

    #[test]
    fn names_are_checked_as_kubernetes_checks_them() {
        for good in ["a", "web", "a-1", "1a", &"a".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(is_dns1035_label("web-1") && !is_dns1035_label("1web"));
        assert!(is_dns1123_subdomain("sandbox-serve.v2") && !is_dns1123_subdomain("a..b"));
        assert!(is_dns1035_label_prefix("sb-") && is_dns1035_label_prefix("sb"));
        for bad in ["", "1-", "Sb-", "sb_"] {
            assert!(!is_dns1035_label_prefix(bad), "{bad}");
        }
    }
}

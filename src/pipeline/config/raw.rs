//! `sandbox.yaml` as written: the serde types it is parsed into, strictly (an unknown field is an
//! error), before any value is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;

use super::privilege::allow_list;
use super::{isolation, rbac, ChartFrom, PodSecurity, Privilege};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) name: String,
    #[serde(default = "default_prefix")]
    pub(super) namespace_prefix: String,
    #[serde(default = "default_ttl")]
    pub(super) ttl: String,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    pub(super) url: RawUrl,
    #[serde(default)]
    pub(super) helm: RawHelm,
    #[serde(default)]
    pub(super) images: RawImages,
    #[serde(default)]
    pub(super) sops: RawSops,
    pub(super) repos: BTreeMap<String, RawRepo>,
    #[serde(default)]
    pub(super) repo_files: RawRepoFiles,
    pub(super) services: serde_yaml_ng::Mapping,
    #[serde(default, deserialize_with = "allow_list")]
    pub(super) allow: BTreeSet<Privilege>,
    #[serde(default)]
    pub(super) rbac: rbac::RawRbac,
    pub(super) limits: Option<isolation::RawLimits>,
    pub(super) network_policy: Option<isolation::RawNetworkPolicy>,
    pub(super) pod_security: Option<PodSecurity>,
    pub(super) idle_after: Option<String>,
}

fn default_prefix() -> String {
    "sb-".into()
}
fn default_ttl() -> String {
    "2d".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) service: Option<String>,
    pub(super) smoke: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSops {
    pub(super) binary: Option<RawSopsBinary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSopsBinary {
    #[serde(default)]
    pub(super) enabled: bool,
    pub(super) key_types: Option<Vec<String>>,
    pub(super) timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepoFiles {
    pub(super) max_file_size: Option<RawSize>,
    pub(super) max_blob_size: Option<RawSize>,
    pub(super) max_tree_files: Option<u64>,
    pub(super) max_tree_size: Option<RawSize>,
    pub(super) max_sandbox_files: Option<u64>,
    pub(super) max_sandbox_size: Option<RawSize>,
}

/// A size as written: bytes, or text like `1MiB`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImages {
    #[serde(default)]
    pub(super) insecure_registries: Vec<String>,
    #[serde(default)]
    pub(super) registries: BTreeMap<String, super::registries::RawRegistry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImage {
    pub(super) repository: String,
    pub(super) tag: Option<String>,
    pub(super) build: Option<RawBuild>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuild {
    pub(super) context: Option<PathBuf>,
    pub(super) containerfile: Option<PathBuf>,
    #[serde(default)]
    pub(super) args: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHelm {
    pub(super) kube_version: Option<String>,
    #[serde(default)]
    pub(super) api_versions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUrl {
    pub(super) service: Option<String>,
    pub(super) template: Option<String>,
    pub(super) host: Option<RawHosts>,
}

/// `url.host`: one pattern or a list.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawHosts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepo {
    pub(super) url: String,
    pub(super) fallback_branch: Option<String>,
    pub(super) github: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) repo: String,
    #[serde(default)]
    pub(super) templates: Vec<PathBuf>,
    pub(super) chart: Option<PathBuf>,
    pub(super) chart_from: Option<ChartFrom>,
    pub(super) image: Option<RawImage>,
    #[serde(default)]
    pub(super) preflight: Vec<PathBuf>,
    #[serde(default)]
    pub(super) smoke: Vec<PathBuf>,
    #[serde(default)]
    pub(super) values: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub(super) values_files: Vec<String>,
    #[serde(default)]
    pub(super) secrets_files: Vec<String>,
    #[serde(default)]
    pub(super) depends_on: Vec<String>,
    #[serde(default, deserialize_with = "allow_list")]
    pub(super) allow: BTreeSet<Privilege>,
    #[serde(default)]
    pub(super) rbac: rbac::RawRbac,
}

pub(super) const TOP_FIELDS: &[&str] = &[
    "name",
    "namespace_prefix",
    "ttl",
    "timeouts",
    "url",
    "helm",
    "images",
    "sops",
    "repos",
    "repo_files",
    "services",
    "allow",
    "rbac",
    "limits",
    "network_policy",
    "pod_security",
    "idle_after",
];

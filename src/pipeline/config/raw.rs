//! `sandbox.yaml` as written: the serde types it is parsed into, strictly (an unknown field is an
//! error), before any value is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::privilege::{allow_list, allow_schema};
use super::{isolation, rbac, ChartFrom, PodSecurity, Privilege};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sandbox.yaml")]
/// A product's `sandbox.yaml`: its repositories, its services and how each branch's copy of
/// them is isolated.
pub(super) struct RawConfig {
    /// The version of this file's format (`sandbox.dev/v1`; absent: v1). A newer version is
    /// refused by an older sandbox, which says which release it needs.
    #[serde(rename = "apiVersion", default)]
    #[allow(dead_code, reason = "read before the rest of the file: version.rs")]
    #[schemars(extend("enum" = super::version::KNOWN))]
    pub(super) api_version: Option<String>,
    /// The product's name: the value of the label that marks its sandboxes (a Kubernetes label
    /// value).
    pub(super) name: String,
    /// How the namespace of every sandbox starts (the branch's name follows); at most 20
    /// characters.
    #[serde(default = "default_prefix")]
    pub(super) namespace_prefix: String,
    /// How long a sandbox lives after its last `up` (e.g. `2d`, `12h`), unless `--ttl` says.
    #[serde(default = "default_ttl")]
    pub(super) ttl: String,
    /// How long the services and the smoke tests may take.
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    /// How the sandbox's URL is found once it is ready: exactly one of `service` and `template`.
    pub(super) url: RawUrl,
    /// What `helm template` is told about the cluster when no cluster is asked.
    #[serde(default)]
    pub(super) helm: RawHelm,
    /// Registries: which speak plain HTTP, and each one's CA.
    #[serde(default)]
    pub(super) images: RawImages,
    /// sops files the built-in (age) decryptor cannot read.
    #[serde(default)]
    pub(super) sops: RawSops,
    /// The git repositories, by the name services refer to them with.
    pub(super) repos: BTreeMap<String, RawRepo>,
    /// How large a branch's files may be (a branch is untrusted input).
    #[serde(default)]
    pub(super) repo_files: RawRepoFiles,
    /// The services, by name, deployed in the order of `depends_on`. (Read one by one, so that
    /// an error names the service.)
    #[schemars(with = "BTreeMap<String, RawService>")]
    pub(super) services: serde_yaml_ng::Mapping,
    /// Rights past the namespace that every service's objects may claim (`host_network`,
    /// `volume:nfs`, …); a service adds its own.
    #[serde(default, deserialize_with = "allow_list")]
    #[schemars(schema_with = "allow_schema")]
    pub(super) allow: BTreeSet<Privilege>,
    /// ClusterRoles every service's RoleBindings may name.
    #[serde(default)]
    pub(super) rbac: rbac::RawRbac,
    /// The sandbox's ResourceQuota and LimitRange, and the caps on how many sandboxes there are.
    pub(super) limits: Option<isolation::RawLimits>,
    /// The sandbox's NetworkPolicies (on by default): who may reach its pods, and whether they
    /// may reach out.
    pub(super) network_policy: Option<isolation::RawNetworkPolicy>,
    /// The Pod Security Standard the sandbox's namespace enforces (default `baseline`).
    pub(super) pod_security: Option<PodSecurity>,
    /// Put a sandbox to sleep when unused this long (e.g. `4h`); `reap` does it.
    pub(super) idle_after: Option<String>,
}

fn default_prefix() -> String {
    "sb-".into()
}
fn default_ttl() -> String {
    "2d".into()
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Timeouts")]
pub(super) struct RawTimeouts {
    /// How long one service (or a preflight Job) may take to become ready (default `180s`).
    pub(super) service: Option<String>,
    /// How long the smoke Jobs may take together (default `120s`).
    pub(super) smoke: Option<String>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Sops")]
pub(super) struct RawSops {
    /// Hand files the built-in decryptor cannot read to the `sops` binary (off by default).
    pub(super) binary: Option<RawSopsBinary>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SopsBinary")]
pub(super) struct RawSopsBinary {
    /// Turn it on (also `--sops-binary`): a branch's sops metadata chooses where sops sends
    /// your credentials.
    #[serde(default)]
    pub(super) enabled: bool,
    /// Every key type a file lists must be one of these (default `[age, pgp]`).
    pub(super) key_types: Option<Vec<String>>,
    /// How long `sops decrypt` may take (default `60s`).
    pub(super) timeout: Option<String>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RepoFiles")]
pub(super) struct RawRepoFiles {
    /// The largest file sandbox reads from a checkout: values and secrets files, `file`/`files`
    /// in templates (default `1MiB`).
    pub(super) max_file_size: Option<RawSize>,
    /// The largest file a checkout writes into its tree (default `100MiB`).
    pub(super) max_blob_size: Option<RawSize>,
    /// The most files and directories one repository's tree may hold (default 20000).
    pub(super) max_tree_files: Option<u64>,
    /// The most bytes one repository's tree may hold.
    pub(super) max_tree_size: Option<RawSize>,
    /// The most files and directories the trees of one sandbox may hold together.
    pub(super) max_sandbox_files: Option<u64>,
    /// The most bytes the trees of one sandbox may hold together.
    pub(super) max_sandbox_size: Option<RawSize>,
}

/// A size as written: bytes, or text like `1MiB`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Size")]
pub(super) enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Images")]
pub(super) struct RawImages {
    /// Registries spoken to over plain HTTP (`host:port`), besides localhost; `${VAR}` expanded.
    #[serde(default)]
    pub(super) insecure_registries: Vec<String>,
    /// Settings per registry host.
    #[serde(default)]
    pub(super) registries: BTreeMap<String, super::registries::RawRegistry>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Image")]
/// The service's image per commit, resolved to a digest before anything is rendered.
pub(super) struct RawImage {
    /// E.g. `registry.example.com/shop/api`; `${VAR}` expanded.
    pub(super) repository: String,
    /// A Handlebars template over `repo` and `sandbox` (default `{{repo.sha}}`).
    pub(super) tag: Option<String>,
    /// Build it with buildah from the checkout when the registry does not have it.
    pub(super) build: Option<RawBuild>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Build")]
pub(super) struct RawBuild {
    /// The build context, relative to the repository (default: its root).
    pub(super) context: Option<PathBuf>,
    /// The Containerfile, relative to the context (default `Containerfile`).
    pub(super) containerfile: Option<PathBuf>,
    /// `--build-arg`s; `${VAR}` expanded.
    #[serde(default)]
    pub(super) args: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Helm")]
pub(super) struct RawHelm {
    /// The Kubernetes version offline renders assume (default `1.33.0`).
    pub(super) kube_version: Option<String>,
    /// Extra `--api-versions` for offline renders (e.g. `monitoring.coreos.com/v1`).
    #[serde(default)]
    pub(super) api_versions: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Url")]
pub(super) struct RawUrl {
    /// The service whose Service gives the URL: its first Ingress host, LoadBalancer address
    /// or NodePort.
    pub(super) service: Option<String>,
    /// Or a Handlebars template over `sandbox` (`name`, `branch`, `namespace`).
    pub(super) template: Option<String>,
    /// The hosts a sandbox's Ingresses and HTTPRoutes may claim: templates that hold
    /// `{{sandbox.namespace}}` (`*.` allowed in front). None: no host at all.
    pub(super) host: Option<RawHosts>,
}

/// `url.host`: one pattern or a list.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Hosts")]
pub(super) enum RawHosts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Repo")]
pub(super) struct RawRepo {
    /// Where to clone it from (https, ssh or a local path); `${VAR}` expanded.
    pub(super) url: String,
    /// The branch taken when the repository has no branch of the sandbox's name (default: the
    /// repository's default branch).
    pub(super) fallback_branch: Option<String>,
    /// `owner/name` on GitHub, whose pull requests `serve` previews, when the URL does not say
    /// it (a mirror, a local path).
    pub(super) github: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Service")]
/// One service: Handlebars `templates` or a Helm `chart`, from one repository.
pub(super) struct RawService {
    /// The repository (a key of `repos`) its values, files, chart and image come from.
    pub(super) repo: String,
    /// Handlebars templates of its objects, relative to sandbox.yaml's directory.
    #[serde(default)]
    pub(super) templates: Vec<PathBuf>,
    /// Or a Helm chart's directory, relative to the repository (or see `chart_from`).
    pub(super) chart: Option<PathBuf>,
    /// What `chart` is relative to: `repo` (default) or `config` (sandbox.yaml's directory).
    pub(super) chart_from: Option<ChartFrom>,
    /// The service's image per commit.
    pub(super) image: Option<RawImage>,
    /// Job templates that must complete after the dependencies are ready and before the
    /// service's objects (e.g. migrations).
    #[serde(default)]
    pub(super) preflight: Vec<PathBuf>,
    /// Job templates run once every service is ready.
    #[serde(default)]
    pub(super) smoke: Vec<PathBuf>,
    /// Values (the lowest layer, under the repository's values files).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub(super) values: Option<serde_yaml_ng::Value>,
    /// Values files inside the repository, in order.
    #[serde(default)]
    pub(super) values_files: Vec<String>,
    /// sops-encrypted values files inside the repository, in order.
    #[serde(default)]
    pub(super) secrets_files: Vec<String>,
    /// Services that must be ready before this one starts.
    #[serde(default)]
    pub(super) depends_on: Vec<String>,
    /// Rights past the namespace its objects may claim, besides the top-level `allow`.
    #[serde(default, deserialize_with = "allow_list")]
    #[schemars(schema_with = "allow_schema")]
    pub(super) allow: BTreeSet<Privilege>,
    /// ClusterRoles its RoleBindings may name, besides the top-level `rbac`.
    #[serde(default)]
    pub(super) rbac: rbac::RawRbac,
}

pub(super) const TOP_FIELDS: &[&str] = &[
    "apiVersion",
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

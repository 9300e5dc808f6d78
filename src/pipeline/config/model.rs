//! The loaded `sandbox.yaml` as the rest of the pipeline reads it: settings already checked and
//! with their defaults, services in file order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Isolation, Privilege};

/// A loaded and validated `sandbox.yaml`.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The file it was read from.
    pub(crate) path: PathBuf,
    /// The directory that template paths are relative to.
    pub(crate) dir: PathBuf,
    pub(crate) name: String,
    pub(crate) namespace_prefix: String,
    pub(crate) ttl: Duration,
    pub(crate) timeouts: Timeouts,
    pub(crate) url: UrlRule,
    /// `url.host`: the hosts a sandbox's Ingresses and HTTPRoutes may claim, as Handlebars
    /// templates over `sandbox` (each holds `{{sandbox.namespace}}`); none: no host at all.
    pub(crate) hosts: Vec<String>,
    /// How chart services are rendered.
    pub(crate) helm: HelmSettings,
    /// Registries spoken to over plain HTTP (`host:port`), besides localhost.
    pub(crate) insecure_registries: Vec<String>,
    /// `images.registries.REGISTRY.ca_file`: the CA each registry's certificate is checked
    /// against, besides the common trust policy (src/net/).
    pub(crate) registry_ca_files: BTreeMap<String, PathBuf>,
    /// `sops.binary`: whether and how files go to the `sops` binary (off by default).
    pub(crate) sops_binary: SopsBinary,
    pub(crate) repos: BTreeMap<String, Repo>,
    /// How large the repositories' files may be.
    pub(crate) repo_files: RepoFileLimits,
    /// Services in file order.
    pub(crate) services: Vec<Service>,
    /// Quota, caps, network policy, pod security, idle time.
    pub(crate) isolation: Isolation,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// How long one service (or preflight Job) may take to become ready.
    pub(crate) service: Duration,
    /// How long the smoke Jobs may take together.
    pub(crate) smoke: Duration,
}

/// What `helm template` is told about the cluster when no cluster is asked (`render`, `values`,
/// an unreachable cluster for `validate`). Commands that talk to a cluster use its own version
/// and API versions instead.
#[derive(Debug, Clone)]
pub(crate) struct HelmSettings {
    /// E.g. `1.33.0`.
    pub(crate) kube_version: String,
    /// Extra `--api-versions` entries (e.g. CRDs' `monitoring.coreos.com/v1`).
    pub(crate) api_versions: Vec<String>,
}

/// How large a branch's files may be (`repo_files:`); a branch is untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RepoFileLimits {
    /// The largest file sandbox itself reads from a checkout: values and secrets files, and
    /// what `file`/`files` include.
    pub(crate) max_file_size: u64,
    /// The largest file (git blob) a checkout writes into its tree.
    pub(crate) max_blob_size: u64,
    /// The most files and directories one repository's tree may hold, symlinks' copies
    /// included, and their bytes.
    pub(crate) max_tree_files: u64,
    pub(crate) max_tree_size: u64,
    /// The same for the trees of one sandbox (all its repositories) together.
    pub(crate) max_sandbox_files: u64,
    pub(crate) max_sandbox_size: u64,
}

impl Default for RepoFileLimits {
    fn default() -> Self {
        RepoFileLimits {
            // Values files and included files are small text; a few are in memory per service.
            max_file_size: 1024 * 1024,
            // GitHub refuses files over 100 MiB, so this never stops a branch it accepted.
            max_blob_size: 100 * 1024 * 1024,
            // What fills the disk is a blob repeated under many paths (or a directory symlink
            // repeated): git packs it to almost nothing, the tree holds every copy. A chart may
            // have 5000 files and 64 MiB; a repository also holds sources (image build
            // contexts), so four times the files and eight times the bytes (five largest
            // blobs); a sandbox four repositories' worth.
            max_tree_files: 20_000,
            max_tree_size: 512 * 1024 * 1024,
            max_sandbox_files: 80_000,
            max_sandbox_size: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// The Kubernetes version offline renders assume unless `helm.kube_version` says otherwise:
/// the newest this tool is built against (k8s-openapi's `v1_33`).
pub(crate) const DEFAULT_KUBE_VERSION: &str = "1.33.0";

/// The hand-off of sops files the built-in (age) decryptor cannot read to the `sops` binary.
/// The user's choice, never the file's: a branch's sops metadata names the key services sops
/// contacts (e.g. hc_vault's `vault_address`), and sops sends them the user's credentials.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SopsBinary {
    /// `sops.binary.enabled` or `--sops-binary`.
    pub(crate) enabled: bool,
    /// Every key type a file lists must be one of these for it to be handed over.
    pub(crate) key_types: Vec<String>,
    /// How long `sops decrypt` may take.
    pub(crate) timeout: Duration,
}

/// The key types sops knows (the names of their lists in a file's `sops` metadata).
pub(crate) const SOPS_KEY_TYPES: [&str; 7] = [
    "age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms",
];

impl Default for SopsBinary {
    /// Off; when turned on, only keys that live with the user (age, pgp): the cloud key types
    /// send credentials to a service, and azure_kv and hc_vault to an address the file names.
    fn default() -> SopsBinary {
        SopsBinary {
            enabled: false,
            key_types: vec!["age".into(), "pgp".into()],
            timeout: Duration::from_secs(60),
        }
    }
}

/// How the sandbox's URL is found once everything is ready.
#[derive(Debug, Clone)]
pub(crate) enum UrlRule {
    /// The first Ingress host, LoadBalancer address or NodePort of this service's Service.
    Service(String),
    /// A handlebars template over `sandbox` (name, branch, namespace).
    Template(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Repo {
    pub(crate) name: String,
    /// The URL with `${VAR}` references expanded.
    pub(crate) url: String,
    pub(crate) fallback_branch: Option<String>,
    /// `owner/name` of the repository on GitHub whose pull requests `serve` previews, when the
    /// URL does not say it (a mirror, a local path); `None`: read from the URL.
    pub(crate) github: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) repo: String,
    /// Templates of the service's own objects, relative to the config's directory.
    pub(crate) templates: Vec<PathBuf>,
    /// Or a Helm chart that renders them (and its hooks: preflight, post-install, smoke).
    pub(crate) chart: Option<ChartRef>,
    /// The service's image per commit, resolved to a digest before anything is rendered.
    pub(crate) image: Option<ImageSpec>,
    /// Jobs that must complete after the dependencies are ready and before the service's objects.
    pub(crate) preflight: Vec<PathBuf>,
    /// Jobs run once every service is ready.
    pub(crate) smoke: Vec<PathBuf>,
    /// Values given in `sandbox.yaml` (the lowest layer).
    pub(crate) values: serde_json::Value,
    /// Values files inside the repo, in order.
    pub(crate) values_files: Vec<String>,
    /// sops-encrypted values files inside the repo, in order.
    pub(crate) secrets_files: Vec<String>,
    pub(crate) depends_on: Vec<String>,
    /// What its pods may do beyond the defaults (its own `allow` and the top-level one).
    pub(crate) allow: BTreeSet<Privilege>,
    /// The ClusterRoles its RoleBindings may name (its own `rbac.cluster_roles` and the
    /// top-level one).
    pub(crate) cluster_roles: BTreeSet<String>,
}

/// A service's image: `repository:tag`, the tag a template over the checkout (`{{repo.sha}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageSpec {
    /// E.g. `registry.example.com/shop/api`, `${VAR}` expanded.
    pub(crate) repository: String,
    /// A Handlebars template over `repo` and `sandbox`; default `{{repo.sha}}`.
    pub(crate) tag: String,
    /// How to build it when the registry does not have it (opt-in).
    pub(crate) build: Option<BuildSpec>,
}

/// Build an image from the checked-out tree of the commit with buildah.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildSpec {
    /// The build context, relative to the repository's root.
    pub(crate) context: PathBuf,
    /// The Containerfile (or Dockerfile), relative to the repository's root.
    pub(crate) containerfile: PathBuf,
    /// `--build-arg`s, `${VAR}` expanded.
    pub(crate) args: BTreeMap<String, String>,
}

/// The default image tag: the full commit SHA of the service's repository.
pub(crate) const DEFAULT_IMAGE_TAG: &str = "{{repo.sha}}";

/// Where a service's chart is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChartRef {
    /// The chart's directory, relative to `from`.
    pub(crate) path: PathBuf,
    pub(crate) from: ChartFrom,
}

/// What a chart path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ChartFrom {
    /// The service's repository, as checked out for the branch.
    #[default]
    Repo,
    /// The directory of `sandbox.yaml` (like `templates`).
    Config,
}

impl Config {
    pub(crate) fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

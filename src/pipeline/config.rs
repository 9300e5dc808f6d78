//! Stage 1: load and validate `sandbox.yaml`.
//!
//! Parsing is strict (unknown fields are errors with a "did you mean" hint) and every error names
//! the file, the line and the field, so a typo never turns into a half-deployed sandbox.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Hint;
use serde::Deserialize;

mod isolation;
mod rbac;
mod registries;
pub(crate) use isolation::{
    parse_quantity, AllowFrom, Caps, Isolation, NetworkPolicy, PodSecurity, Quota,
};
pub(crate) use rbac::never_bound;

/// The file name looked up in the working directory when `--config` is not given.
pub(crate) const FILE_NAME: &str = "sandbox.yaml";

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

/// A right that a rendered object may only claim when sandbox.yaml grants it (`allow:`), because
/// it reaches past the sandbox's namespace to the node or the network. The branch renders the
/// objects and is untrusted; sandbox.yaml is the product owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Privilege {
    /// `hostNetwork: true`
    HostNetwork,
    /// `hostPID: true`
    HostPid,
    /// `hostIPC: true`
    HostIpc,
    /// A `hostPath` volume.
    HostPath,
    /// A container port with a `hostPort`.
    HostPort,
    /// `securityContext.privileged: true`
    Privileged,
    /// `securityContext.capabilities.add` beyond Pod Security's baseline set.
    Capabilities,
    /// A Service's `spec.externalIPs`.
    ExternalIps,
    // What a pod spec may hold beyond the allow-list of volume types and past Pod Security's
    // baseline (each also refused by the level, unless it is `privileged`).
    /// A volume of a type other than configMap, secret, emptyDir, projected, downwardAPI,
    /// persistentVolumeClaim and ephemeral: `volume:nfs`, `volume:gitRepo`, … (read by
    /// `allow_list`; `hostPath` is `host_path`).
    #[serde(skip_deserializing)]
    Volume(VolumeType),
    /// `nodeName`: the pod skips the scheduler.
    NodeName,
    /// A toleration of the control plane's taints, or of every taint (`operator: Exists`, no key).
    ControlPlaneTolerations,
    /// A seccomp profile `Unconfined` (field or annotation).
    UnconfinedSeccomp,
    /// A sysctl outside Pod Security's safe set.
    UnsafeSysctls,
    /// A `procMount` other than `Default`.
    ProcMount,
    /// An AppArmor profile other than the runtime's default or a local one (`unconfined`).
    UnconfinedApparmor,
    /// SELinux options Pod Security's baseline refuses (a type beyond the container types, a user
    /// or a role).
    SelinuxOptions,
    /// `windowsOptions.hostProcess: true`
    HostProcess,
    // Network and routing (plan/routing.rs): what cancels the sandbox's network isolation,
    // reaches past it through a Service or an ingress controller, or costs money.
    /// A NetworkPolicy (of any API group: Calico's and Cilium's add up too).
    NetworkPolicies,
    /// A Service of `type: ExternalName`.
    ExternalNameServices,
    /// A Service of `type: LoadBalancer`.
    LoadBalancerServices,
    /// Endpoints or EndpointSlices written by hand (a Service's backends at any address).
    Endpoints,
    /// An ingress controller's snippet annotation (`nginx.ingress.kubernetes.io/server-snippet`).
    SnippetAnnotations,
}

/// A volume type a pod may use only when sandbox.yaml allows it: a field of Kubernetes' volume
/// source, spelled in sandbox.yaml as `volume:FIELD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct VolumeType(&'static str);

/// Every volume type of Kubernetes (up to 1.33) but hostPath (`host_path`) and those every
/// sandbox may use, as sandbox.yaml spells them.
const VOLUME_TYPES: &[&str] = &[
    "volume:awsElasticBlockStore",
    "volume:azureDisk",
    "volume:azureFile",
    "volume:cephfs",
    "volume:cinder",
    "volume:csi",
    "volume:fc",
    "volume:flexVolume",
    "volume:flocker",
    "volume:gcePersistentDisk",
    "volume:gitRepo",
    "volume:glusterfs",
    "volume:image",
    "volume:iscsi",
    "volume:nfs",
    "volume:photonPersistentDisk",
    "volume:portworxVolume",
    "volume:quobyte",
    "volume:rbd",
    "volume:scaleIO",
    "volume:storageos",
    "volume:vsphereVolume",
];

impl VolumeType {
    /// A key of a volume that is no volume type of Kubernetes (a typo, or one newer than
    /// sandbox): never allowed.
    pub(crate) const UNKNOWN: VolumeType = VolumeType("volume:");

    /// The type of the volume source `field` (`nfs`), if it is one sandbox.yaml can allow.
    pub(crate) fn of_field(field: &str) -> Option<VolumeType> {
        VOLUME_TYPES
            .iter()
            .find(|t| t.strip_prefix("volume:") == Some(field))
            .copied()
            .map(VolumeType)
    }

    /// As the volume source's field is named: `nfs`.
    pub(crate) fn field(self) -> &'static str {
        self.0.trim_start_matches("volume:")
    }
}

/// `allow:`: privileges by name (`host_network`) and volume types as `volume:TYPE`.
fn allow_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeSet<Privilege>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    let privilege = |name: &String| -> Result<Privilege, String> {
        if let Some(field) = name.strip_prefix("volume:") {
            return VolumeType::of_field(field)
                .map(Privilege::Volume)
                .ok_or_else(|| {
                    let expected: Vec<String> =
                        VOLUME_TYPES.iter().map(|t| format!("`{t}`")).collect();
                    format!(
                        "unknown variant `{name}`, expected one of {}",
                        expected.join(", ")
                    )
                });
        }
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.as_str().into_deserializer();
        Privilege::deserialize(name)
            .map_err(|e| format!("{e}, or `volume:TYPE` (e.g. `volume:nfs`)"))
    };
    names
        .iter()
        .map(|name| privilege(name).map_err(serde::de::Error::custom))
        .collect()
}

impl Privilege {
    /// How sandbox.yaml spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Privilege::HostNetwork => "host_network",
            Privilege::HostPid => "host_pid",
            Privilege::HostIpc => "host_ipc",
            Privilege::HostPath => "host_path",
            Privilege::HostPort => "host_port",
            Privilege::Privileged => "privileged",
            Privilege::Capabilities => "capabilities",
            Privilege::ExternalIps => "external_ips",
            Privilege::Volume(volume) => volume.0,
            Privilege::NodeName => "node_name",
            Privilege::ControlPlaneTolerations => "control_plane_tolerations",
            Privilege::UnconfinedSeccomp => "unconfined_seccomp",
            Privilege::UnsafeSysctls => "unsafe_sysctls",
            Privilege::ProcMount => "proc_mount",
            Privilege::UnconfinedApparmor => "unconfined_apparmor",
            Privilege::SelinuxOptions => "selinux_options",
            Privilege::HostProcess => "host_process",
            Privilege::NetworkPolicies => "network_policies",
            Privilege::ExternalNameServices => "external_name_services",
            Privilege::LoadBalancerServices => "load_balancer_services",
            Privilege::Endpoints => "endpoints",
            Privilege::SnippetAnnotations => "snippet_annotations",
        }
    }

    /// Whether sandbox.yaml can allow it (a key that is no volume type it cannot).
    pub(crate) fn can_be_allowed(self) -> bool {
        self != Privilege::Volume(VolumeType::UNKNOWN)
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ChartFrom {
    /// The service's repository, as checked out for the branch.
    #[default]
    Repo,
    /// The directory of `sandbox.yaml` (like `templates`).
    Config,
}

/// What went wrong in `sandbox.yaml`, with where.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("could not read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the schema (unknown field, wrong type…).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
    /// A field is present and well-formed but its value is not acceptable.
    #[error("{}:{line}: `{field}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
        hint: Option<String>,
    },
    /// `depends_on` edges form a cycle.
    #[error("{}:{line}: dependency cycle: {}", path.display(), cycle.join(" → "))]
    Cycle {
        path: PathBuf,
        line: usize,
        cycle: Vec<String>,
    },
}

impl Hint for ConfigError {
    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Read { path, .. } => Some(format!(
                "run sandbox in the directory holding {FILE_NAME}, or pass --config {}",
                path.display()
            )),
            ConfigError::Parse { hint, .. } | ConfigError::Invalid { hint, .. } => hint.clone(),
            ConfigError::Cycle { .. } => {
                Some("remove one of these `depends_on` edges so the services form a DAG".into())
            }
        }
    }
}

// --- the file as written ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    #[serde(default = "default_prefix")]
    namespace_prefix: String,
    #[serde(default = "default_ttl")]
    ttl: String,
    #[serde(default)]
    timeouts: RawTimeouts,
    url: RawUrl,
    #[serde(default)]
    helm: RawHelm,
    #[serde(default)]
    images: RawImages,
    #[serde(default)]
    sops: RawSops,
    repos: BTreeMap<String, RawRepo>,
    #[serde(default)]
    repo_files: RawRepoFiles,
    services: serde_yaml_ng::Mapping,
    #[serde(default, deserialize_with = "allow_list")]
    allow: BTreeSet<Privilege>,
    #[serde(default)]
    rbac: rbac::RawRbac,
    limits: Option<isolation::RawLimits>,
    network_policy: Option<isolation::RawNetworkPolicy>,
    pod_security: Option<PodSecurity>,
    idle_after: Option<String>,
}

fn default_prefix() -> String {
    "sb-".into()
}
fn default_ttl() -> String {
    "2d".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    service: Option<String>,
    smoke: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSops {
    binary: Option<RawSopsBinary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSopsBinary {
    #[serde(default)]
    enabled: bool,
    key_types: Option<Vec<String>>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRepoFiles {
    max_file_size: Option<RawSize>,
    max_blob_size: Option<RawSize>,
    max_tree_files: Option<u64>,
    max_tree_size: Option<RawSize>,
    max_sandbox_files: Option<u64>,
    max_sandbox_size: Option<RawSize>,
}

/// A size as written: bytes, or text like `1MiB`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawImages {
    #[serde(default)]
    insecure_registries: Vec<String>,
    #[serde(default)]
    registries: BTreeMap<String, registries::RawRegistry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    repository: String,
    tag: Option<String>,
    build: Option<RawBuild>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    context: Option<PathBuf>,
    containerfile: Option<PathBuf>,
    #[serde(default)]
    args: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHelm {
    kube_version: Option<String>,
    #[serde(default)]
    api_versions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrl {
    service: Option<String>,
    template: Option<String>,
    host: Option<RawHosts>,
}

/// `url.host`: one pattern or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawHosts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    url: String,
    fallback_branch: Option<String>,
    github: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    repo: String,
    #[serde(default)]
    templates: Vec<PathBuf>,
    chart: Option<PathBuf>,
    chart_from: Option<ChartFrom>,
    image: Option<RawImage>,
    #[serde(default)]
    preflight: Vec<PathBuf>,
    #[serde(default)]
    smoke: Vec<PathBuf>,
    #[serde(default)]
    values: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    values_files: Vec<String>,
    #[serde(default)]
    secrets_files: Vec<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default, deserialize_with = "allow_list")]
    allow: BTreeSet<Privilege>,
    #[serde(default)]
    rbac: rbac::RawRbac,
}

const TOP_FIELDS: &[&str] = &[
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

// --- loading ------------------------------------------------------------------------------------

/// Read and validate the config at `path`. `env` expands `${VAR}` in repo URLs.
pub(crate) fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, env)
}

/// Validate config `text` that was read from `path`. Checks run in this order, and the first
/// failure is reported.
pub(crate) fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    crate::yaml::check_expansion(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        line: e.line().unwrap_or(1),
        column: 1,
        message: e.to_string(),
        hint: e.hint(),
    })?;
    let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| parse_error(path, &e))?;
    let file = ConfigFile { path, text };
    let ttl = file.duration(&["ttl"], &raw.ttl)?;
    let timeouts = timeouts(&file, &raw.timeouts)?;
    check_namespace_prefix(&file, &raw.namespace_prefix)?;
    let repos = repos(&file, raw.repos, env)?;
    check_name(&file, &raw.name)?;
    let mut services = services(&file, raw.services, env)?;
    // The top-level `allow` is every service's.
    services.iter_mut().for_each(|s| s.allow.extend(&raw.allow));
    let cluster_roles = rbac::cluster_roles(&file, &[], raw.rbac)?;
    for s in &mut services {
        s.cluster_roles.extend(cluster_roles.iter().cloned());
    }
    let insecure_registries = raw
        .images
        .insecure_registries
        .iter()
        .map(|r| file.expand(&["images", "insecure_registries"], r, env))
        .collect::<Result<_, _>>()?;
    let dir = config_dir(path);
    let registry_ca_files = registries::ca_files(&file, &raw.images.registries, &dir, env)?;
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    check_references(&file, &dir, &repos, &names, &services)?;
    if let Some(cycle) = find_cycle(&services) {
        return Err(file.cycle(&cycle[0].clone(), cycle));
    }
    let hosts = host_patterns(&file, raw.url.host.as_ref())?;
    let url = url_rule(&file, raw.url, &names)?;
    let helm = helm_settings(&file, raw.helm)?;
    let sops_binary = sops_binary(&file, raw.sops.binary)?;
    let repo_files = repo_file_limits(&file, &raw.repo_files)?;
    let isolation = isolation::isolation(
        &file,
        isolation::RawIsolation {
            limits: raw.limits,
            network_policy: raw.network_policy,
            pod_security: raw.pod_security,
            idle_after: raw.idle_after,
        },
    )?;
    Ok(Config {
        path: path.to_owned(),
        dir,
        name: raw.name,
        namespace_prefix: raw.namespace_prefix,
        ttl,
        timeouts,
        url,
        hosts,
        helm,
        insecure_registries,
        registry_ca_files,
        sops_binary,
        repos,
        repo_files,
        services,
        isolation,
    })
}

/// The file being validated: what errors found after parsing point at.
struct ConfigFile<'a> {
    path: &'a Path,
    text: &'a str,
}

impl ConfigFile<'_> {
    /// The field at `keys` (e.g. `services.web.repo`) is not acceptable.
    fn invalid(&self, keys: &[&str], message: String, hint: Option<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: locate_line(self.text, keys),
            field: keys.join("."),
            message,
            hint,
        }
    }

    /// `depends_on` of `service` closes `cycle`.
    fn cycle(&self, service: &str, cycle: Vec<String>) -> ConfigError {
        ConfigError::Cycle {
            path: self.path.to_owned(),
            line: locate_line(self.text, &["services", service, "depends_on"]),
            cycle,
        }
    }

    /// `value` (written at `keys`) with `${VAR}`s from the environment.
    fn expand(
        &self,
        keys: &[&str],
        value: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        expand_env(value, env).map_err(|var| {
            self.invalid(
                keys,
                format!("`${{{var}}}` is not set in the environment"),
                Some(format!(
                    "set {var}, e.g. `export {var}=…`, or write the value out"
                )),
            )
        })
    }

    /// The size written at `keys`, at least 1 byte.
    fn size(&self, keys: &[&str], value: &RawSize) -> Result<u64, ConfigError> {
        let parsed = match value {
            RawSize::Bytes(n) => Some(*n),
            RawSize::Text(text) => parse_size(text),
        };
        parsed.filter(|n| *n > 0).ok_or_else(|| {
            let written = match value {
                RawSize::Bytes(n) => n.to_string(),
                RawSize::Text(text) => text.clone(),
            };
            self.invalid(
                keys,
                format!("`{written}` is not a size"),
                Some("write sizes like `512KiB`, `1MiB`, `100MiB` or a number of bytes".into()),
            )
        })
    }

    /// The duration written at `keys`.
    fn duration(&self, keys: &[&str], value: &str) -> Result<Duration, ConfigError> {
        humantime::parse_duration(value).map_err(|e| {
            self.invalid(
                keys,
                format!("`{value}` is not a duration ({e})"),
                Some("write durations like `90s`, `5m`, `2d`".into()),
            )
        })
    }
}

fn timeouts(file: &ConfigFile<'_>, raw: &RawTimeouts) -> Result<Timeouts, ConfigError> {
    Ok(Timeouts {
        service: match &raw.service {
            Some(v) => file.duration(&["timeouts", "service"], v)?,
            None => Duration::from_secs(180),
        },
        smoke: match &raw.smoke {
            Some(v) => file.duration(&["timeouts", "smoke"], v)?,
            None => Duration::from_secs(120),
        },
    })
}

/// The product's name is the value of the label that says whose a sandbox is, and part of the
/// label selectors that find them: it must be a valid label value (and so cannot add a selector
/// term such as `shop,x=y`).
fn check_name(file: &ConfigFile<'_>, name: &str) -> Result<(), ConfigError> {
    let valid = name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return Ok(());
    }
    Err(file.invalid(
        &["name"],
        format!("`{name}` cannot be a Kubernetes label value, which sandbox uses it as"),
        Some("use letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit, at most 63 characters".into()),
    ))
}

fn repo_file_limits(
    file: &ConfigFile<'_>,
    raw: &RawRepoFiles,
) -> Result<RepoFileLimits, ConfigError> {
    let default = RepoFileLimits::default();
    let size = |field: &str, value: &Option<RawSize>, default: u64| match value {
        Some(v) => file.size(&["repo_files", field], v),
        None => Ok(default),
    };
    let count = |field: &str, value: Option<u64>, default: u64| match value {
        Some(0) => Err(file.invalid(
            &["repo_files", field],
            "`0` would refuse every checkout".into(),
            Some("give a number of files and directories, e.g. `20000`".into()),
        )),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    Ok(RepoFileLimits {
        max_file_size: size("max_file_size", &raw.max_file_size, default.max_file_size)?,
        max_blob_size: size("max_blob_size", &raw.max_blob_size, default.max_blob_size)?,
        max_tree_files: count("max_tree_files", raw.max_tree_files, default.max_tree_files)?,
        max_tree_size: size("max_tree_size", &raw.max_tree_size, default.max_tree_size)?,
        max_sandbox_files: count(
            "max_sandbox_files",
            raw.max_sandbox_files,
            default.max_sandbox_files,
        )?,
        max_sandbox_size: size(
            "max_sandbox_size",
            &raw.max_sandbox_size,
            default.max_sandbox_size,
        )?,
    })
}

/// Bytes from `4096`, `512KiB`, `1MiB`, `2GiB` (binary units; `KB`, `MB`, `GB` are decimal).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit_bytes)
}

/// `1 MiB`, `1.5 KiB`, `100 B`: a size for messages.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let whole = bytes / size;
            let tenths = (bytes % size) * 10 / size;
            return match tenths {
                0 => format!("{whole} {unit}"),
                t => format!("{whole}.{t} {unit}"),
            };
        }
    }
    format!("{bytes} B")
}

fn check_namespace_prefix(file: &ConfigFile<'_>, prefix: &str) -> Result<(), ConfigError> {
    if is_dns_label_prefix(prefix) {
        return Ok(());
    }
    Err(file.invalid(
        &["namespace_prefix"],
        format!(
            "`{prefix}` cannot start a namespace name (lower case letters, digits and `-`, starting with a letter, at most 20 characters)"
        ),
        None,
    ))
}

/// The repos, with `${VAR}` in their URLs expanded.
fn repos(
    file: &ConfigFile<'_>,
    raw: BTreeMap<String, RawRepo>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Repo>, ConfigError> {
    let mut repos = BTreeMap::new();
    for (name, repo) in raw {
        let url = expand_env(&repo.url, env).map_err(|var| {
            file.invalid(
                &["repos", &name, "url"],
                format!("`${{{var}}}` is not set in the environment"),
                Some(format!(
                    "set {var}, e.g. `export {var}=…`, or write the URL out"
                )),
            )
        })?;
        if let Some(github) = repo.github.as_deref().filter(|g| !is_owner_name(g)) {
            return Err(file.invalid(
                &["repos", &name, "github"],
                format!("`{github}` is not a GitHub repository's `owner/name`"),
                Some("write it as GitHub shows it, e.g. `github: octo-org/backend`".into()),
            ));
        }
        repos.insert(
            name.clone(),
            Repo {
                name,
                url,
                fallback_branch: repo.fallback_branch,
                github: repo.github,
            },
        );
    }
    Ok(repos)
}

/// `owner/name` with GitHub's characters only.
fn is_owner_name(text: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(text.split_once('/'), Some((o, n)) if part(o) && part(n))
}

/// The services in file order, each parsed on its own (so an error names the service).
fn services(
    file: &ConfigFile<'_>,
    raw: serde_yaml_ng::Mapping,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Service>, ConfigError> {
    raw.into_iter()
        .map(|(key, value)| service(file, key, value, env))
        .collect()
}

fn service(
    file: &ConfigFile<'_>,
    key: serde_yaml_ng::Value,
    value: serde_yaml_ng::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Service, ConfigError> {
    let Some(name) = key.as_str().map(str::to_owned) else {
        return Err(file.invalid(&["services"], "service names must be strings".into(), None));
    };
    let raw: RawService = serde_yaml_ng::from_value(value).map_err(|e| {
        // Errors from a sub-value carry no position: point at the service instead.
        let message = e.to_string();
        let (field, hint) = unknown_field_hint(&message);
        let hint = hint.or_else(|| unknown_variant_hint(&message));
        let mut keys = vec!["services", name.as_str()];
        if let Some(f) = field.as_deref() {
            keys.push(f);
        }
        file.invalid(&keys, message, hint)
    })?;
    if !is_dns_label(&name) {
        return Err(file.invalid(
            &["services", &name],
            format!("service name `{name}` must be a DNS-1123 label (lower case letters, digits and `-`)"),
            None,
        ));
    }
    let values = service_values(file, &name, raw.values)?;
    let cluster_roles = rbac::cluster_roles(file, &["services", &name], raw.rbac)?;
    let chart = chart_ref(file, &name, raw.chart, raw.chart_from)?;
    let image = raw
        .image
        .map(|image| image_spec(file, &name, image, env))
        .transpose()?;
    Ok(Service {
        name,
        repo: raw.repo,
        templates: raw.templates,
        chart,
        image,
        preflight: raw.preflight,
        smoke: raw.smoke,
        values,
        values_files: raw.values_files,
        secrets_files: raw.secrets_files,
        depends_on: raw.depends_on,
        allow: raw.allow,
        cluster_roles,
    })
}

/// A service's `chart` and `chart_from`: a relative path that stays inside what it is relative to.
fn chart_ref(
    file: &ConfigFile<'_>,
    name: &str,
    path: Option<PathBuf>,
    from: Option<ChartFrom>,
) -> Result<Option<ChartRef>, ConfigError> {
    let Some(path) = path else {
        if from.is_some() {
            return Err(file.invalid(
                &["services", name, "chart_from"],
                "`chart_from` without `chart`".into(),
                Some("add `chart: PATH` (the chart's directory), or remove `chart_from`".into()),
            ));
        }
        return Ok(None);
    };
    if !is_inside(&path) {
        return Err(file.invalid(
            &["services", name, "chart"],
            format!("`{}` is not a relative path inside the repository", path.display()),
            Some("write the chart's directory relative to the repository's root, e.g. `chart: charts/web` (no `..`, not absolute)".into()),
        ));
    }
    Ok(Some(ChartRef {
        path,
        from: from.unwrap_or_default(),
    }))
}

/// A service's `image`: `${VAR}`s expanded, the tag a template that compiles, build paths that
/// stay in the repository.
fn image_spec(
    file: &ConfigFile<'_>,
    service: &str,
    raw: RawImage,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ImageSpec, ConfigError> {
    fn at<'a>(service: &'a str, field: &[&'a str]) -> Vec<&'a str> {
        [&["services", service, "image"][..], field].concat()
    }
    let repository = file.expand(&at(service, &["repository"]), &raw.repository, env)?;
    let tag = raw.tag.unwrap_or_else(|| DEFAULT_IMAGE_TAG.to_owned());
    if let Err(e) = handlebars::Template::compile(&tag) {
        return Err(file.invalid(
            &at(service, &["tag"]),
            format!("`{tag}` is not a valid template: {e}"),
            Some("e.g. `{{repo.sha}}`, `{{repo.short_sha}}` or `v1-{{repo.short_sha}}`".into()),
        ));
    }
    let build = match raw.build {
        None => None,
        Some(build) => {
            let in_repo = |field: &str, path: Option<PathBuf>, default: &str| {
                let path = path.unwrap_or_else(|| PathBuf::from(default));
                if is_inside(&path) {
                    return Ok(path);
                }
                Err(file.invalid(
                    &at(service, &["build", field]),
                    format!("`{}` is not a relative path inside the repository", path.display()),
                    Some("paths under `build` are relative to the repository's root (no `..`, not absolute)".into()),
                ))
            };
            let mut args = BTreeMap::new();
            for (name, value) in build.args {
                let value = file.expand(&at(service, &["build", "args", &name]), &value, env)?;
                args.insert(name, value);
            }
            Some(BuildSpec {
                context: in_repo("context", build.context, ".")?,
                containerfile: in_repo("containerfile", build.containerfile, "Containerfile")?,
                args,
            })
        }
    };
    Ok(ImageSpec {
        repository,
        tag,
        build,
    })
}

/// A relative path with no `..`: it stays inside whatever it is relative to.
fn is_inside(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

/// `helm:`: the offline Kubernetes version must be a version (helm would refuse it later,
/// with a less helpful message).
fn helm_settings(file: &ConfigFile<'_>, raw: RawHelm) -> Result<HelmSettings, ConfigError> {
    let kube_version = raw
        .kube_version
        .unwrap_or_else(|| DEFAULT_KUBE_VERSION.to_owned());
    let plain = kube_version.trim_start_matches('v');
    let numeric = plain.split('.').count() >= 2
        && plain
            .split(['.', '-', '+'])
            .take(2)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric {
        return Err(file.invalid(
            &["helm", "kube_version"],
            format!("`{kube_version}` is not a Kubernetes version"),
            Some("write it like `1.30.0`".into()),
        ));
    }
    Ok(HelmSettings {
        kube_version,
        api_versions: raw.api_versions,
    })
}

fn sops_binary(
    file: &ConfigFile<'_>,
    raw: Option<RawSopsBinary>,
) -> Result<SopsBinary, ConfigError> {
    let mut settings = SopsBinary::default();
    let Some(raw) = raw else {
        return Ok(settings);
    };
    settings.enabled = raw.enabled;
    if let Some(timeout) = &raw.timeout {
        settings.timeout = file.duration(&["sops", "binary", "timeout"], timeout)?;
    }
    if let Some(key_types) = raw.key_types {
        if let Some(unknown) = key_types
            .iter()
            .find(|k| !SOPS_KEY_TYPES.contains(&k.as_str()))
        {
            return Err(file.invalid(
                &["sops", "binary", "key_types"],
                format!("`{unknown}` is not a sops key type"),
                Some(format!("use some of {}", SOPS_KEY_TYPES.join(", "))),
            ));
        }
        settings.key_types = key_types;
    }
    Ok(settings)
}

/// A service's `values` as JSON: a mapping (empty when not given).
fn service_values(
    file: &ConfigFile<'_>,
    name: &str,
    raw: Option<serde_yaml_ng::Value>,
) -> Result<serde_json::Value, ConfigError> {
    let Some(raw) = raw else {
        return Ok(serde_json::Value::Object(Default::default()));
    };
    let keys = ["services", name, "values"];
    let json: serde_json::Value =
        serde_json::to_value(&raw).map_err(|e| file.invalid(&keys, e.to_string(), None))?;
    if !json.is_object() {
        return Err(file.invalid(&keys, "values must be a mapping".into(), None));
    }
    Ok(json)
}

/// The directory template paths are relative to: the config file's.
fn config_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// Every service's repo, dependencies and templates exist; a service depends not on itself
/// and has something to deploy.
fn check_references(
    file: &ConfigFile<'_>,
    dir: &Path,
    repos: &BTreeMap<String, Repo>,
    names: &BTreeSet<&str>,
    services: &[Service],
) -> Result<(), ConfigError> {
    for service in services {
        check_repo(file, repos, service)?;
        check_depends_on(file, names, service)?;
        check_templates_exist(file, dir, service)?;
        check_chart(file, dir, service)?;
        if service.templates.is_empty() && service.preflight.is_empty() && service.chart.is_none() {
            return Err(file.invalid(
                &["services", &service.name],
                "a service needs a `chart`, or at least one entry in `templates` or `preflight`"
                    .into(),
                None,
            ));
        }
    }
    Ok(())
}

fn check_repo(
    file: &ConfigFile<'_>,
    repos: &BTreeMap<String, Repo>,
    service: &Service,
) -> Result<(), ConfigError> {
    if repos.contains_key(&service.repo) {
        return Ok(());
    }
    let known: Vec<&str> = repos.keys().map(String::as_str).collect();
    Err(file.invalid(
        &["services", &service.name, "repo"],
        format!("repo `{}` is not defined under `repos`", service.repo),
        Some(
            suggest(&service.repo, &known)
                .unwrap_or_else(|| format!("defined repos: {}", known.join(", "))),
        ),
    ))
}

/// Each dependency is a service, and not the service itself (longer cycles: [`find_cycle`]).
fn check_depends_on(
    file: &ConfigFile<'_>,
    names: &BTreeSet<&str>,
    service: &Service,
) -> Result<(), ConfigError> {
    for dep in &service.depends_on {
        if !names.contains(dep.as_str()) {
            let known: Vec<&str> = names.iter().copied().collect();
            return Err(file.invalid(
                &["services", &service.name, "depends_on"],
                format!("`{dep}` is not a service"),
                Some(
                    suggest(dep, &known)
                        .unwrap_or_else(|| format!("services: {}", known.join(", "))),
                ),
            ));
        }
        if dep == &service.name {
            return Err(file.cycle(&service.name, vec![dep.clone(), dep.clone()]));
        }
    }
    Ok(())
}

fn check_templates_exist(
    file: &ConfigFile<'_>,
    dir: &Path,
    service: &Service,
) -> Result<(), ConfigError> {
    for (field, list) in [
        ("templates", &service.templates),
        ("preflight", &service.preflight),
        ("smoke", &service.smoke),
    ] {
        for template in list {
            if !dir.join(template).is_file() {
                return Err(file.invalid(
                    &["services", &service.name, field],
                    format!("template `{}` does not exist", template.display()),
                    Some(format!("template paths are relative to {}", dir.display())),
                ));
            }
        }
    }
    Ok(())
}

/// A service is a chart or templates, not both; a chart beside `sandbox.yaml` must exist now
/// (one in a repository is checked once the branch is checked out).
fn check_chart(file: &ConfigFile<'_>, dir: &Path, service: &Service) -> Result<(), ConfigError> {
    let Some(chart) = &service.chart else {
        return Ok(());
    };
    if !service.templates.is_empty() {
        return Err(file.invalid(
            &["services", &service.name, "templates"],
            "a service is rendered either by its `templates` or by its `chart`, not both".into(),
            Some(
                "move the extra objects into the chart, or make them a service of their own".into(),
            ),
        ));
    }
    if chart.from == ChartFrom::Config && !dir.join(&chart.path).join("Chart.yaml").is_file() {
        return Err(file.invalid(
            &["services", &service.name, "chart"],
            format!(
                "`{}` is not a chart: it has no Chart.yaml",
                chart.path.display()
            ),
            Some(format!(
                "chart paths with `chart_from: config` are relative to {}",
                dir.display()
            )),
        ));
    }
    Ok(())
}

/// Exactly one of `url.service` (which must be a service) and `url.template`.
fn url_rule(
    file: &ConfigFile<'_>,
    raw: RawUrl,
    names: &BTreeSet<&str>,
) -> Result<UrlRule, ConfigError> {
    match (raw.service, raw.template) {
        (Some(service), None) => {
            if !names.contains(service.as_str()) {
                let known: Vec<&str> = names.iter().copied().collect();
                return Err(file.invalid(
                    &["url", "service"],
                    format!("`{service}` is not a service"),
                    suggest(&service, &known),
                ));
            }
            Ok(UrlRule::Service(service))
        }
        (None, Some(template)) => Ok(UrlRule::Template(template)),
        _ => Err(file.invalid(
            &["url"],
            "give exactly one of `service` or `template`".into(),
            Some("e.g. `url: { service: gateway }`".into()),
        )),
    }
}

/// `url.host`, checked: each pattern a template that gives every sandbox hosts of its own
/// (`{{sandbox.namespace}}` in it) and renders to a host name, `*.` allowed in front.
fn host_patterns(
    file: &ConfigFile<'_>,
    raw: Option<&RawHosts>,
) -> Result<Vec<String>, ConfigError> {
    let patterns = match raw {
        None => return Ok(Vec::new()),
        Some(RawHosts::One(p)) => vec![p.clone()],
        Some(RawHosts::Many(list)) => list.clone(),
    };
    let example = serde_json::json!({"sandbox": {
        "name": "shop", "branch": "feature-x", "namespace": "sb-feature-x"}});
    for pattern in &patterns {
        let invalid = |message: String| {
            file.invalid(
                &["url", "host"],
                message,
                Some("e.g. `host: \"{{sandbox.namespace}}.preview.example.com\"` (or a list, with `\"*.{{sandbox.namespace}}.preview.example.com\"` for its subdomains)".into()),
            )
        };
        if !pattern.replace(' ', "").contains("{{sandbox.namespace}}") {
            return Err(invalid(format!(
                "`{pattern}` does not hold `{{{{sandbox.namespace}}}}`: every sandbox would claim the same host (`sandbox.name` is the product's name)"
            )));
        }
        if let Err(why) = render_host(pattern, &example) {
            return Err(invalid(format!("`{pattern}`: {why}")));
        }
    }
    Ok(patterns)
}

/// A `url.host` pattern rendered over `context` (`{"sandbox": …}`): a lowercase host name,
/// `*.` allowed in front; or why it is not one.
pub(crate) fn render_host(pattern: &str, context: &serde_json::Value) -> Result<String, String> {
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    let host = hb
        .render_template(pattern, context)
        .map_err(|e| format!("cannot be rendered ({e})"))?;
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "renders to `{host}`, which is not a lowercase host name"
        ));
    }
    Ok(host)
}

impl Config {
    pub(crate) fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// A depends_on cycle as the list of services along it (first repeated at the end), if any.
fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let index: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; services.len()];
    let mut stack: Vec<usize> = Vec::new();

    fn visit(
        i: usize,
        services: &[Service],
        index: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::Active;
        stack.push(i);
        for dep in &services[i].depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::Active => {
                    let start = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[start..]
                        .iter()
                        .map(|&k| services[k].name.clone())
                        .collect();
                    cycle.push(services[j].name.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, services, index, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }

    for i in 0..services.len() {
        if marks[i] == Mark::New {
            if let Some(c) = visit(i, services, &index, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn parse_error(path: &Path, e: &serde_yaml_ng::Error) -> ConfigError {
    let message = e.to_string();
    // serde_yaml_ng appends " at line L column C" to the message; keep the message clean.
    let clean = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let (_, hint) = unknown_field_hint(&clean);
    let mut hint = hint.or_else(|| unknown_variant_hint(&clean));
    if hint.is_none() && clean.starts_with("missing field") && line <= 1 {
        hint = Some(format!("top-level fields: {}", TOP_FIELDS.join(", ")));
    }
    ConfigError::Parse {
        path: path.to_owned(),
        line,
        column,
        message: clean,
        hint,
    }
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" take the field and a hint.
fn unknown_field_hint(message: &str) -> (Option<String>, Option<String>) {
    // Nested fields come prefixed with their path: "repo_files: unknown field `x`, …".
    let Some((_, rest)) = message.split_once("unknown field `") else {
        return (None, None);
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return (None, None);
    };
    let candidates: Vec<&str> = expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    (Some(field.to_owned()), suggest(field, &candidates))
}

/// From serde's "unknown variant `x`, expected one of `a`, `b`", a "did you mean".
fn unknown_variant_hint(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("unknown variant `")?;
    let (word, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    suggest(word, &candidates)
}

/// "did you mean `x`?" for the closest candidate within a small edit distance.
pub(crate) fn suggest(word: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The 1-based line of a nested key in block-style YAML, or of the deepest parent found.
///
/// serde forgets positions once a value is parsed, so checks made after parsing (missing
/// references, cycles) find their line again by walking the keys through the indentation.
fn locate_line(text: &str, keys: &[&str]) -> usize {
    let mut best = 1;
    let mut min_indent: isize = -1;
    let mut start = 0;
    let lines: Vec<&str> = text.lines().collect();
    'keys: for key in keys {
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = (line.len() - trimmed.len()) as isize;
            if i > start && indent <= min_indent {
                break; // left the parent's block
            }
            let bare = trimmed.trim_start_matches("- ");
            if bare.starts_with(&format!("{key}:"))
                || bare.starts_with(&format!("\"{key}\":"))
                || bare.starts_with(&format!("{{ {key}:"))
            {
                best = i + 1;
                min_indent = indent;
                start = i + 1;
                continue 'keys;
            }
        }
        break;
    }
    best
}

fn expand_env(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("valid regex");
    let mut missing = None;
    let out = re.replace_all(value, |caps: &regex::Captures| match env(&caps[1]) {
        Some(v) => v,
        None => {
            missing.get_or_insert_with(|| caps[1].to_owned());
            String::new()
        }
    });
    match missing {
        Some(var) => Err(var),
        None => Ok(out.into_owned()),
    }
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace or Service name.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_lowercase()
        && !s.ends_with('-')
}

fn is_dns_label_prefix(s: &str) -> bool {
    s.len() <= 20
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes().first().is_some_and(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        std::fs::write(dir.join("templates/a.yaml"), "kind: x").unwrap();
        let path = dir.join("sandbox.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = "\
name: shop
url: {service: web}
repos:
  app: {url: \"${BASE}/app.git\"}
services:
  db:
    repo: app
    templates: [templates/a.yaml]
  web:
    repo: app
    depends_on: [db]
    templates: [templates/a.yaml]
    values: {port: 80}
";

    fn env(var: &str) -> Option<String> {
        (var == "BASE").then(|| "/srv/git".to_owned())
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), text);
        load(&path, &env)
    }

    #[test]
    fn a_good_file_loads_with_defaults() {
        let c = load_text(GOOD).unwrap();
        assert_eq!(c.name, "shop");
        assert_eq!(c.namespace_prefix, "sb-");
        assert_eq!(c.ttl, Duration::from_secs(2 * 86400));
        assert_eq!(c.repos["app"].url, "/srv/git/app.git");
        assert_eq!(
            c.services
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["db", "web"]
        );
        assert_eq!(c.service("web").unwrap().values["port"], 80);
        assert!(matches!(c.url, UrlRule::Service(ref s) if s == "web"));
    }

    #[test]
    fn a_repos_github_name_is_checked() {
        let text = GOOD.replace(
            "app: {url: \"${BASE}/app.git\"}",
            "app: {url: \"${BASE}/app.git\", github: octo-org/app}",
        );
        assert_eq!(
            load_text(&text).unwrap().repos["app"].github.as_deref(),
            Some("octo-org/app")
        );
        let bad = text.replace("octo-org/app", "octo-org");
        let e = load_text(&bad).unwrap_err().to_string();
        assert!(
            e.contains("repos.app.github") && e.contains("owner/name"),
            "{e}"
        );
    }

    #[test]
    fn allow_is_per_service_plus_the_top_level_one() {
        let text = GOOD.replace("name: shop\n", "name: shop\nallow: [external_ips]\n");
        let text = text.replace(
            "    depends_on: [db]\n",
            "    depends_on: [db]\n    allow: [host_network, privileged]\n",
        );
        let c = load_text(&text).unwrap();
        let web: Vec<Privilege> = c.service("web").unwrap().allow.iter().copied().collect();
        assert_eq!(
            web,
            [
                Privilege::HostNetwork,
                Privilege::Privileged,
                Privilege::ExternalIps
            ]
        );
        let db: Vec<Privilege> = c.service("db").unwrap().allow.iter().copied().collect();
        assert_eq!(db, [Privilege::ExternalIps]);
        assert!(load_text(GOOD)
            .unwrap()
            .services
            .iter()
            .all(|s| s.allow.is_empty()));
        let typo = GOOD.replace(
            "    depends_on: [db]\n",
            "    depends_on: [db]\n    allow: [host_networking]\n",
        );
        let err = load_text(&typo).unwrap_err().to_string();
        assert!(
            err.contains("services.web")
                && err.contains("host_networking")
                && err.contains("host_network"),
            "{err}"
        );
    }

    #[test]
    fn volume_types_and_pod_rights_are_allowed_by_name_with_a_hint_for_typos() {
        let text = GOOD.replace(
            "name: shop\n",
            "name: shop\nallow: [volume:nfs, node_name, \"volume:gitRepo\"]\n",
        );
        let c = load_text(&text).unwrap();
        let names: Vec<&str> = c
            .service("db")
            .unwrap()
            .allow
            .iter()
            .map(|p| p.as_str())
            .collect();
        assert_eq!(names, ["volume:gitRepo", "volume:nfs", "node_name"]);
        let nfs = VolumeType::of_field("nfs").unwrap();
        assert_eq!(nfs.field(), "nfs");
        assert!(VolumeType::of_field("configMap").is_none() && VolumeType::of_field("").is_none());

        let typo = GOOD.replace("name: shop\n", "name: shop\nallow: [volume:nfss]\n");
        let err = load_text(&typo).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `volume:nfss`"),
            "{err}"
        );
        assert_eq!(err.hint().unwrap(), "did you mean `volume:nfs`?");
        let typo = GOOD.replace(
            "    depends_on: [db]\n",
            "    depends_on: [db]\n    allow: [nodename]\n",
        );
        let err = load_text(&typo).unwrap_err();
        assert!(
            err.to_string().contains("services.web") && err.to_string().contains("`volume:TYPE`"),
            "{err}"
        );
        assert_eq!(err.hint().unwrap(), "did you mean `node_name`?");
        let err =
            load_text(&GOOD.replace("name: shop\n", "name: shop\nallow: [Volume]\n")).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `Volume`"),
            "{err}"
        );
    }

    #[test]
    fn the_product_name_must_be_a_label_value() {
        let err = load_text(&GOOD.replace("name: shop", "name: \"shop,team=x\"")).unwrap_err();
        assert!(
            err.to_string()
                .contains("`name`: `shop,team=x` cannot be a Kubernetes label value"),
            "{err}"
        );
    }

    #[test]
    fn a_service_may_be_a_chart_in_its_repo_or_beside_the_config() {
        let chart = GOOD.replace(
            "    templates: [templates/a.yaml]\n    values: {port: 80}",
            "    chart: charts/web\n    values: {port: 80}",
        );
        let c = load_text(&chart).unwrap();
        let web = c.service("web").unwrap();
        assert_eq!(
            web.chart,
            Some(ChartRef {
                path: "charts/web".into(),
                from: ChartFrom::Repo
            })
        );
        assert_eq!(c.helm.kube_version, DEFAULT_KUBE_VERSION);

        // Beside sandbox.yaml, the chart must be there now.
        let beside = chart.replace(
            "chart: charts/web",
            "chart: charts/web\n    chart_from: config",
        );
        let err = load_text(&beside).unwrap_err();
        assert!(
            err.to_string().contains(
                "`services.web.chart`: `charts/web` is not a chart: it has no Chart.yaml"
            ),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &beside);
        std::fs::create_dir_all(dir.path().join("charts/web")).unwrap();
        std::fs::write(dir.path().join("charts/web/Chart.yaml"), "name: web").unwrap();
        assert_eq!(
            load(&path, &env)
                .unwrap()
                .service("web")
                .unwrap()
                .chart
                .as_ref()
                .unwrap()
                .from,
            ChartFrom::Config
        );
    }

    #[test]
    fn chart_mistakes_are_named() {
        let both = GOOD.replace(
            "    values: {port: 80}",
            "    chart: web\n    values: {port: 80}",
        );
        let err = load_text(&both).unwrap_err();
        assert!(err.to_string().contains("`services.web.templates`: a service is rendered either by its `templates` or by its `chart`, not both"), "{err}");
        for path in ["../elsewhere", "/abs/chart"] {
            let escape = GOOD.replace(
                "    templates: [templates/a.yaml]\n    values",
                &format!("    chart: {path}\n    values"),
            );
            let err = load_text(&escape).unwrap_err();
            assert!(
                err.to_string()
                    .contains("is not a relative path inside the repository"),
                "{err}"
            );
        }
        let typo = GOOD.replace(
            "    templates: [templates/a.yaml]\n    values",
            "    chrt: web\n    values",
        );
        assert_eq!(
            load_text(&typo).unwrap_err().hint().unwrap(),
            "did you mean `chart`?"
        );
        let version = format!("{GOOD}helm: {{kube_version: latest}}\n");
        let err = load_text(&version).unwrap_err();
        assert!(
            err.to_string()
                .contains("`helm.kube_version`: `latest` is not a Kubernetes version"),
            "{err}"
        );
        let version = format!("{GOOD}helm: {{kube_version: v1.20.15, api_versions: [x.io/v1]}}\n");
        assert_eq!(load_text(&version).unwrap().helm.api_versions, ["x.io/v1"]);
    }

    #[test]
    fn repo_file_limits_default_parse_and_refuse_typos() {
        assert_eq!(
            load_text(GOOD).unwrap().repo_files,
            RepoFileLimits::default()
        );
        let set = format!("{GOOD}repo_files: {{max_file_size: 256KiB, max_blob_size: 1000000}}\n");
        let limits = load_text(&set).unwrap().repo_files;
        assert_eq!(
            (limits.max_file_size, limits.max_blob_size),
            (256 * 1024, 1_000_000)
        );

        let caps = format!(
            "{GOOD}repo_files: {{max_tree_files: 100, max_tree_size: 1MiB, max_sandbox_files: 300, max_sandbox_size: 3MiB}}\n"
        );
        let limits = load_text(&caps).unwrap().repo_files;
        assert_eq!(
            (
                limits.max_tree_files,
                limits.max_tree_size,
                limits.max_sandbox_files,
                limits.max_sandbox_size
            ),
            (100, 1 << 20, 300, 3 << 20)
        );
        let zero = format!("{GOOD}repo_files: {{max_tree_files: 0}}\n");
        let err = load_text(&zero).unwrap_err();
        assert!(
            err.to_string().contains("`repo_files.max_tree_files`"),
            "{err}"
        );
        let err = load_text(&format!("{GOOD}repo_files: {{max_tree_file: 1}}\n")).unwrap_err();
        assert_eq!(
            err.hint().as_deref(),
            Some("did you mean `max_tree_files`?")
        );

        let typo = format!("{GOOD}repo_files: {{max_file_sise: 1MiB}}\n");
        let err = load_text(&typo).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_file_sise`"),
            "{err}"
        );
        assert_eq!(
            err.hint().as_deref(),
            Some("did you mean `max_file_size`?"),
            "{err:?}"
        );
        let err = load_text(&format!("{GOOD}repo_file: {{}}\n")).unwrap_err();
        assert_eq!(err.hint().unwrap(), "did you mean `repo_files`?");

        let bad = format!("{GOOD}repo_files:\n  max_blob_size: 1 lot\n");
        let err = load_text(&bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("`repo_files.max_blob_size`: `1 lot` is not a size"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("`1MiB`"));
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("42"), Some(42));
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "1 PiB",
            "-1",
            "99999999999999999999GiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(3 << 19), "1.5 MiB");
        assert_eq!(format_size(1023), "1023 B");
    }

    #[test]
    fn an_alias_bomb_in_the_config_is_refused_with_the_file() {
        let err = load_text(&crate::yaml::quadratic_alias_bomb(2_000)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sandbox.yaml:"), "{text}");
        assert!(
            text.contains("expands to more than 1000000 YAML nodes"),
            "{text}"
        );
        assert!(err.hint().unwrap().contains("alias"));
    }

    #[test]
    fn unknown_top_level_field_has_line_and_suggestion() {
        let err =
            load_text(&GOOD.replace("name: shop", "name: shop\nnamspace_prefix: x-")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sandbox.yaml:2:"), "{text}");
        assert!(text.contains("unknown field `namspace_prefix`"), "{text}");
        assert_eq!(err.hint().unwrap(), "did you mean `namespace_prefix`?");
    }

    #[test]
    fn unknown_service_field_points_at_its_line() {
        let err =
            load_text(&GOOD.replace("    depends_on: [db]", "    depend_on: [db]")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("sandbox.yaml:11: `services.web.depend_on`"),
            "{text}"
        );
        assert_eq!(err.hint().unwrap(), "did you mean `depends_on`?");
    }

    #[test]
    fn url_host_is_one_pattern_or_a_list_each_with_the_sandboxs_namespace() {
        assert!(load_text(GOOD).unwrap().hosts.is_empty());
        let one = GOOD.replace(
            "url: {service: web}",
            "url: {service: web, host: \"{{sandbox.namespace}}.preview.example.com\"}",
        );
        assert_eq!(
            load_text(&one).unwrap().hosts,
            ["{{sandbox.namespace}}.preview.example.com"]
        );
        let list = GOOD.replace(
            "url: {service: web}",
            "url:\n  service: web\n  host: [\"{{sandbox.namespace}}.a.example\", \"*.{{ sandbox.namespace }}.a.example\"]",
        );
        assert_eq!(load_text(&list).unwrap().hosts.len(), 2);
        for (pattern, why) in [
            (
                "{{sandbox.name}}.preview.example.com",
                "does not hold `{{sandbox.namespace}}`",
            ),
            ("preview.example.com", "does not hold"),
            (
                "{{sandbox.namespace}}.Preview.example.com",
                "renders to `sb-feature-x.Preview.example.com`, which is not a lowercase host name",
            ),
            (
                "{{sandbox.namespace}}.{{sandbox.nope}}",
                "cannot be rendered",
            ),
        ] {
            let text = GOOD.replace(
                "url: {service: web}",
                &format!("url: {{service: web, host: \"{pattern}\"}}"),
            );
            let err = load_text(&text).unwrap_err();
            assert!(err.to_string().contains("`url.host`"), "{err}");
            assert!(err.to_string().contains(why), "{pattern}: {err}");
            assert!(err
                .hint()
                .unwrap()
                .contains("{{sandbox.namespace}}.preview.example.com"));
        }
    }

    #[test]
    fn render_host_gives_a_host_name_or_why_not() {
        let context = serde_json::json!({"sandbox": {"namespace": "sb-x"}});
        assert_eq!(
            render_host("*.{{sandbox.namespace}}.example.com", &context).unwrap(),
            "*.sb-x.example.com"
        );
        assert!(render_host("a.*.{{sandbox.namespace}}", &context).is_err());
        assert!(render_host("{{sandbox.namespace}}..example.com", &context).is_err());
        assert!(render_host("{{sandbox.namespace}}/x", &context).is_err());
    }

    #[test]
    fn missing_references_are_named() {
        let err = load_text(&GOOD.replace("depends_on: [db]", "depends_on: [dbb]")).unwrap_err();
        assert!(
            err.to_string()
                .contains("sandbox.yaml:11: `services.web.depends_on`: `dbb` is not a service"),
            "{err}"
        );
        assert_eq!(err.hint().unwrap(), "did you mean `db`?");
        let err = load_text(&GOOD.replace(
            "    repo: app\n    depends_on",
            "    repo: ap\n    depends_on",
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("repo `ap` is not defined"),
            "{err}"
        );
        let err =
            load_text(&GOOD.replace("templates/a.yaml]\n  web", "templates/none.yaml]\n  web"))
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("template `templates/none.yaml` does not exist"),
            "{err}"
        );
        let err = load_text(&GOOD.replace("${BASE}", "${NOPE}")).unwrap_err();
        assert!(err.to_string().contains("`${NOPE}` is not set"), "{err}");
    }

    #[test]
    fn cycles_are_named_in_order() {
        let text = GOOD.replace(
            "  db:\n    repo: app\n",
            "  db:\n    repo: app\n    depends_on: [web]\n",
        );
        let err = load_text(&text).unwrap_err();
        assert!(
            err.to_string().contains("dependency cycle: db → web → db"),
            "{err}"
        );
        let err = load_text(&GOOD.replace("depends_on: [db]", "depends_on: [web]")).unwrap_err();
        assert!(
            err.to_string().contains("dependency cycle: web → web"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(
            load_text(&GOOD.replace("name: shop", "name: shop\nttl: forever"))
                .unwrap_err()
                .to_string()
                .contains("`forever` is not a duration")
        );
        assert!(
            load_text(&GOOD.replace("name: shop", "name: shop\nnamespace_prefix: Bad_")).is_err()
        );
        assert!(load_text(&GOOD.replace("url: {service: web}", "url: {}"))
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        let err = load_text(
            &GOOD
                .replace("  web:\n", "  Web:\n")
                .replace("service: web", "service: Web"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("DNS-1123"), "{err}");
    }

    #[test]
    fn isolation_defaults_and_mistakes_are_named_with_their_line() {
        let c = load_text(GOOD).unwrap();
        assert_eq!(c.isolation.quota, None);
        assert!(c.isolation.network_policy.enabled);
        assert_eq!(c.isolation.pod_security, PodSecurity::Baseline);
        assert_eq!(c.isolation.idle_after, None);
        let with = |extra: &str| load_text(&format!("{GOOD}{extra}"));
        let c = with("limits:\n  limits: {memory: 2Gi}\n  max_sandboxes: 5\nidle_after: 8h\npod_security: restricted\n").unwrap();
        let quota = c.isolation.quota.unwrap();
        assert_eq!(quota.hard["limits.memory"], "2Gi");
        // The quota caps memory: containers without resources get the built-in memory defaults.
        assert_eq!(quota.default_limits["memory"], "256Mi");
        assert!(!quota.default_limits.contains_key("cpu"));
        assert_eq!(c.isolation.caps.max_sandboxes, Some(5));
        assert_eq!(c.isolation.idle_after, Some(Duration::from_secs(8 * 3600)));
        assert_eq!(c.isolation.pod_security, PodSecurity::Restricted);

        let err = with("limits:\n  limits: {memory: lots}\n").unwrap_err();
        assert!(
            err.to_string()
                .contains(":15: `limits.limits.memory`: `lots` is not a Kubernetes quantity"),
            "{err}"
        );
        let err = with("limits:\n  max_sandbox: 3\n").unwrap_err();
        assert_eq!(
            err.hint().as_deref(),
            Some("did you mean `max_sandboxes`?"),
            "{err}"
        );
        let err = with("limits:\n  max_per_owner: 0\n").unwrap_err();
        assert!(
            err.to_string().contains("a cap of 0 allows no sandbox"),
            "{err}"
        );
        let err = with("pod_security: strict\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `strict`"),
            "{err}"
        );
        let err = with("network_policy:\n  allow_from: [{cidr: everywhere}]\n").unwrap_err();
        assert!(
            err.to_string().contains("`everywhere` is not a CIDR"),
            "{err}"
        );
        let err = with(
            "limits:\n  container_defaults:\n    requests: {cpu: '2'}\n    limits: {cpu: 500m}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("above the default limit"), "{err}");
    }

    #[test]
    fn the_sops_binary_is_off_unless_the_config_turns_it_on() {
        assert_eq!(load_text(GOOD).unwrap().sops_binary, SopsBinary::default());
        assert!(!SopsBinary::default().enabled);
        let on = "name: shop\nsops: {binary: {enabled: true, key_types: [pgp], timeout: 5s}}";
        let c = load_text(&GOOD.replace("name: shop", on)).unwrap();
        assert!(c.sops_binary.enabled);
        assert_eq!(c.sops_binary.key_types, ["pgp"]);
        assert_eq!(c.sops_binary.timeout, Duration::from_secs(5));
        let typo = "name: shop\nsops: {binary: {key_types: [vault]}}";
        let err = load_text(&GOOD.replace("name: shop", typo)).unwrap_err();
        assert!(
            err.to_string().contains("`vault` is not a sops key type"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("hc_vault"), "{err:?}");
    }

    #[test]
    fn locate_line_walks_nested_keys() {
        let text = "a:\n  b:\n    c: 1\n  d:\n    c: 2\n";
        assert_eq!(locate_line(text, &["a", "d", "c"]), 5);
        assert_eq!(locate_line(text, &["a", "b", "c"]), 3);
        assert_eq!(locate_line(text, &["a", "x"]), 1);
    }

    #[test]
    fn suggestions_only_for_close_words() {
        assert_eq!(
            suggest("depnds_on", &["depends_on", "repo"]).unwrap(),
            "did you mean `depends_on`?"
        );
        assert_eq!(suggest("zzz", &["depends_on", "repo"]), None);
    }
}

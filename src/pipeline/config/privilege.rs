//! `allow:`: the rights past the sandbox's namespace that a rendered object may claim only when
//! `sandbox.yaml` grants them, and how they are spelled there.

use std::collections::BTreeSet;

use serde::Deserialize;

/// A right that a rendered object may only claim when sandbox.yaml grants it (`allow:`), because
/// it reaches past the sandbox's namespace to the node or the network. The branch renders the
/// objects and is untrusted; sandbox.yaml is the product owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, schemars::JsonSchema)]
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
    #[schemars(skip)]
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
pub(super) fn allow_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeSet<Privilege>, D::Error> {
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

/// The schema of what [`allow_list`] reads: a list of privileges' names and `volume:TYPE`s.
pub(super) fn allow_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let privilege = generator.subschema_for::<Privilege>();
    schemars::json_schema!({
        "type": "array",
        "items": {"anyOf": [privilege, {"type": "string", "enum": VOLUME_TYPES}]},
    })
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

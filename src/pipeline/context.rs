//! What a service's templates see: a typed, serializable render context, so that the names a
//! template may use are listed here (and documented) rather than spread through `json!` calls.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::pipeline::checkout::Checkout;
use crate::pipeline::config::Service;
use crate::pipeline::settings::Settings;

/// The whole context of one service's templates.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RenderContext {
    /// The service's merged values (secrets decrypted, or redacted for display).
    pub(crate) values: serde_json::Value,
    pub(crate) sandbox: SandboxInfo,
    /// The repository the service comes from, as checked out.
    pub(crate) repo: RepoInfo,
    /// This service.
    pub(crate) service: ServiceInfo,
    /// Every service of the product, to find each other: a mapping by name, in file order.
    #[serde(serialize_with = "by_name")]
    pub(crate) services: Vec<ServiceInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SandboxInfo {
    pub(crate) name: String,
    pub(crate) branch: String,
    pub(crate) namespace: String,
    /// Absent in the URL template's context: the URL is found before the owner matters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RepoInfo {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) branch: String,
    pub(crate) requested_branch: String,
    pub(crate) sha: String,
    pub(crate) short_sha: String,
    pub(crate) fell_back: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceInfo {
    pub(crate) name: String,
    /// `NAME.NAMESPACE.svc`.
    pub(crate) host: String,
    /// Without cluster DNS, pods find Services through these environment variables.
    pub(crate) host_env: String,
    pub(crate) port_env: String,
}

fn by_name<S: Serializer>(services: &[ServiceInfo], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(services.len()))?;
    for service in services {
        map.serialize_entry(&service.name, service)?;
    }
    map.end()
}

impl ServiceInfo {
    fn new(name: &str, namespace: &str) -> ServiceInfo {
        let env = name.to_uppercase().replace('-', "_");
        ServiceInfo {
            name: name.to_owned(),
            host: format!("{name}.{namespace}.svc"),
            host_env: format!("{env}_SERVICE_HOST"),
            port_env: format!("{env}_SERVICE_PORT"),
        }
    }
}

impl SandboxInfo {
    /// What the URL template sees: the sandbox's name, branch and namespace.
    pub(crate) fn for_url(settings: &Settings) -> SandboxInfo {
        SandboxInfo {
            name: settings.config.name.clone(),
            branch: settings.branch.clone(),
            namespace: settings.namespace.clone(),
            owner: None,
        }
    }
}

impl RenderContext {
    pub(crate) fn new(
        settings: &Settings,
        service: &Service,
        checkout: &Checkout,
        values: serde_json::Value,
    ) -> RenderContext {
        let ns = settings.namespace.as_str();
        let services = settings
            .config
            .services
            .iter()
            .map(|s| ServiceInfo::new(&s.name, ns))
            .collect();
        RenderContext {
            values,
            sandbox: SandboxInfo {
                owner: Some(settings.owner.clone()),
                ..SandboxInfo::for_url(settings)
            },
            repo: RepoInfo {
                name: checkout.repo.clone(),
                url: checkout.url.clone(),
                branch: checkout.branch.clone(),
                requested_branch: checkout.requested_branch.clone(),
                sha: checkout.sha.clone(),
                short_sha: checkout.short_sha().to_owned(),
                fell_back: checkout.fell_back,
            },
            service: ServiceInfo::new(&service.name, ns),
            services,
        }
    }

    /// As the template engine takes it.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the context serializes")
    }
}

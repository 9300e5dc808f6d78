//! What a service's templates see: a typed, serializable render context, so that the names a
//! template may use are listed here (and documented) rather than spread through `json!` calls.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::pipeline::checkout::Checkout;
use crate::pipeline::config::Service;
use crate::pipeline::images::ImageInfo;
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
    /// The service's image for its commit (`image.ref` pinned by digest), when it has `image:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) image: Option<ImageInfo>,
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
            image: None,
        }
    }

    /// With the service's image.
    pub(crate) fn with_image(self, image: Option<ImageInfo>) -> RenderContext {
        RenderContext { image, ..self }
    }

    /// As the template engine takes it.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the context serializes")
    }

    /// What a chart is given: its values, with the rest of the context under
    /// `global.sandbox` (`.Values.global.sandbox.repo.sha`…), where subcharts see it too. The
    /// context is written last: it is what the sandbox is, not something to configure.
    pub(crate) fn chart_values(self) -> serde_json::Value {
        let RenderContext {
            mut values,
            sandbox,
            repo,
            service,
            services,
            image,
        } = self;
        let mut about = serde_json::to_value(&sandbox).expect("serializes");
        about["repo"] = serde_json::to_value(&repo).expect("serializes");
        about["service"] = serde_json::to_value(&service).expect("serializes");
        let by_name: serde_json::Map<String, serde_json::Value> = services
            .iter()
            .map(|s| (s.name.clone(), serde_json::to_value(s).expect("serializes")))
            .collect();
        about["services"] = by_name.into();
        if let Some(image) = image {
            about["image"] = serde_json::to_value(&image).expect("serializes");
        }
        let root = values.as_object_mut().expect("values are a mapping");
        let global = root
            .entry("global")
            .or_insert_with(|| serde_json::json!({}));
        if !global.is_object() {
            *global = serde_json::json!({});
        }
        global["sandbox"] = about;
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::settings::example;

    fn checkout() -> Checkout {
        Checkout {
            repo: "backend".into(),
            url: "/srv/backend.git".into(),
            requested_branch: "feature-x".into(),
            branch: "main".into(),
            fell_back: true,
            sha: "121dbcc0123456789".into(),
            dir: "/tmp/tree".into(),
        }
    }

    #[test]
    fn templates_see_the_sandbox_the_repo_and_every_service_in_file_order() {
        let settings = example("feature-x");
        let service = settings.config.service("order-api").unwrap().clone();
        let context = RenderContext::new(
            &settings,
            &service,
            &checkout(),
            serde_json::json!({"replicas": 2}),
        )
        .to_json();
        assert_eq!(
            context,
            serde_json::json!({
                "values": {"replicas": 2},
                "sandbox": {"name": "shop", "branch": "feature-x", "namespace": "shop-feature-x", "owner": "ada"},
                "repo": {
                    "name": "backend", "url": "/srv/backend.git", "branch": "main",
                    "requested_branch": "feature-x", "sha": "121dbcc0123456789",
                    "short_sha": "121dbcc", "fell_back": true
                },
                "service": {
                    "name": "order-api", "host": "order-api.shop-feature-x.svc",
                    "host_env": "ORDER_API_SERVICE_HOST", "port_env": "ORDER_API_SERVICE_PORT"
                },
                "services": {
                    "db": {"name": "db", "host": "db.shop-feature-x.svc", "host_env": "DB_SERVICE_HOST", "port_env": "DB_SERVICE_PORT"},
                    "order-api": {"name": "order-api", "host": "order-api.shop-feature-x.svc", "host_env": "ORDER_API_SERVICE_HOST", "port_env": "ORDER_API_SERVICE_PORT"}
                }
            })
        );
        let names: Vec<&String> = context["services"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["db", "order-api"], "file order, not sorted");
    }

    #[test]
    fn a_chart_sees_the_context_under_global_sandbox_beside_its_values() {
        let settings = example("feature-x");
        let service = settings.config.service("order-api").unwrap().clone();
        let values =
            serde_json::json!({"replicas": 2, "global": {"region": "eu", "sandbox": "mine"}});
        let chart = RenderContext::new(&settings, &service, &checkout(), values).chart_values();
        assert_eq!(chart["replicas"], 2);
        assert_eq!(
            chart["global"]["region"], "eu",
            "the chart's own globals stay"
        );
        let about = &chart["global"]["sandbox"];
        assert_eq!(about["namespace"], "shop-feature-x");
        assert_eq!(about["owner"], "ada");
        assert_eq!(about["repo"]["sha"], "121dbcc0123456789");
        assert_eq!(about["repo"]["branch"], "main");
        assert_eq!(about["service"]["name"], "order-api");
        assert_eq!(about["services"]["db"]["host_env"], "DB_SERVICE_HOST");
    }

    #[test]
    fn the_url_template_sees_no_owner() {
        let info = SandboxInfo::for_url(&example("main"));
        let json = serde_json::to_value(info).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "shop", "branch": "main", "namespace": "shop-main"})
        );
    }
}

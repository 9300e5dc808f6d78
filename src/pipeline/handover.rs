//! Stage 8: find the sandbox's URL and hand over the result: the URL as the last line of stdout,
//! or one JSON document with `--output json`.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::ListParams;
use kube::Api;
use serde::Serialize;

use crate::error::Hint;
use crate::kube::Cluster;
use crate::pipeline::config::UrlRule;

/// What `up` did, for people and machines.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpReport {
    pub(crate) sandbox: String,
    pub(crate) branch: String,
    pub(crate) namespace: String,
    pub(crate) url: String,
    pub(crate) repos: Vec<RepoReport>,
    pub(crate) services: Vec<String>,
    pub(crate) timings: Timings,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RepoReport {
    pub(crate) repo: String,
    pub(crate) branch: String,
    pub(crate) sha: String,
    pub(crate) fell_back: bool,
}

/// Seconds spent in each stage and in each step's wait (`--timings`).
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Timings {
    pub(crate) total: f64,
    /// The tool's own work before it talks to the cluster: checkout, values, render, plan.
    pub(crate) prepare: f64,
    pub(crate) checkout: f64,
    /// Resolving every image's digest (and building the missing ones).
    pub(crate) images: f64,
    pub(crate) values_render_plan: f64,
    pub(crate) deploy: f64,
    pub(crate) smoke: f64,
    /// Per step: (id, start, ready) in seconds since deploy began.
    pub(crate) steps: Vec<(String, f64, f64)>,
    /// The longest dependency chain of step durations, as measured: the limit for deploy.
    pub(crate) critical_path: f64,
}

/// An error finding the URL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoverError {
    #[error("service `{0}` has no Service object to take a URL from")]
    NoService(String),
    #[error("could not read `{what}` for the URL")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the url template is invalid")]
    Template(#[source] Box<handlebars::RenderError>),
}

impl Hint for HandoverError {
    fn hint(&self) -> Option<String> {
        match self {
            HandoverError::NoService(s) => Some(format!(
                "give service `{s}` a Service (NodePort, LoadBalancer or with an Ingress), or set `url.template` in sandbox.yaml"
            )),
            _ => None,
        }
    }
}

/// The URL by the config's rule: an Ingress host, a LoadBalancer address, a NodePort on the
/// node's address, or the template.
pub(crate) async fn url(
    cluster: &Cluster,
    rule: &UrlRule,
    namespace: &str,
    context: &serde_json::Value,
) -> Result<String, HandoverError> {
    match rule {
        UrlRule::Template(template) => {
            let mut hb = handlebars::Handlebars::new();
            hb.set_strict_mode(true);
            hb.register_escape_fn(handlebars::no_escape);
            hb.render_template(template, context)
                .map_err(|e| HandoverError::Template(Box::new(e)))
        }
        UrlRule::Service(service_name) => service_url(cluster, service_name, namespace).await,
    }
}

/// Where `service_name` is reached: the host of an Ingress that routes to it, else its
/// Service's LoadBalancer address, NodePort on a node's address, or cluster IP.
async fn service_url(
    cluster: &Cluster,
    service_name: &str,
    namespace: &str,
) -> Result<String, HandoverError> {
    if let Some(host) = ingress_host(cluster, namespace, service_name).await {
        return Ok(format!("http://{host}/"));
    }
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), namespace);
    let svc = services
        .get_opt(service_name)
        .await
        .map_err(|source| HandoverError::Api {
            what: "the Service".to_owned(),
            source,
        })?
        .ok_or_else(|| HandoverError::NoService(service_name.to_owned()))?;
    let spec = svc.spec.clone().unwrap_or_default();
    let port = spec.ports.as_ref().and_then(|p| p.first()).cloned();
    if let Some(lb) = svc
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .and_then(|i| i.into_iter().next())
    {
        let host = lb.hostname.or(lb.ip).unwrap_or_default();
        let port = port.map(|p| p.port).unwrap_or(80);
        return Ok(format!("http://{host}:{port}/"));
    }
    if let Some(node_port) = port.as_ref().and_then(|p| p.node_port) {
        let address = node_address(cluster).await?;
        return Ok(format!("http://{address}:{node_port}/"));
    }
    let ip = spec.cluster_ip.unwrap_or_default();
    let port = port.map(|p| p.port).unwrap_or(80);
    Ok(format!("http://{ip}:{port}/"))
}

/// The host of the first Ingress with a rule that routes to `service_name` (none when the
/// Ingresses cannot be listed).
async fn ingress_host(cluster: &Cluster, namespace: &str, service_name: &str) -> Option<String> {
    let ingresses: Api<Ingress> = Api::namespaced(cluster.client.clone(), namespace);
    let list = ingresses.list(&ListParams::default()).await.ok()?;
    list.items.into_iter().find_map(|ing| {
        let rules = ing.spec.and_then(|s| s.rules).unwrap_or_default();
        let routes_to_service = rules.iter().any(|r| {
            r.http.iter().flat_map(|h| &h.paths).any(|p| {
                p.backend
                    .service
                    .as_ref()
                    .is_some_and(|b| b.name == service_name)
            })
        });
        rules
            .iter()
            .find_map(|r| r.host.clone())
            .filter(|_| routes_to_service)
    })
}

/// The address a NodePort is reached on: the first node's InternalIP (`127.0.0.1` if none).
async fn node_address(cluster: &Cluster) -> Result<String, HandoverError> {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let address = nodes
        .list(&ListParams::default())
        .await
        .map_err(|source| HandoverError::Api {
            what: "the nodes".to_owned(),
            source,
        })?
        .items
        .into_iter()
        .flat_map(|n| n.status.and_then(|s| s.addresses).unwrap_or_default())
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address)
        .unwrap_or_else(|| "127.0.0.1".into());
    Ok(address)
}

/// The longest chain of measured step durations through the dependency graph.
pub(crate) fn critical_path(
    steps: &[crate::pipeline::plan::Step],
    timings: &[crate::pipeline::apply::StepTiming],
) -> f64 {
    let duration = |id: &str| {
        timings
            .iter()
            .find(|t| t.id == id)
            .map(|t| (t.ready - t.started).as_secs_f64())
            .unwrap_or(0.0)
    };
    let mut finish = vec![0.0f64; steps.len()];
    for (i, step) in steps.iter().enumerate() {
        let start = step.after.iter().map(|&d| finish[d]).fold(0.0, f64::max);
        finish[i] = start + duration(&step.id);
    }
    finish.into_iter().fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::apply::StepTiming;
    use crate::pipeline::plan::{Role, Step};
    use std::time::Duration;

    fn step(id: &str, after: Vec<usize>) -> Step {
        Step {
            id: id.into(),
            service: id.into(),
            role: Role::Service,
            after,
            objects: vec![],
        }
    }

    fn timing(id: &str, start: f64, ready: f64) -> StepTiming {
        StepTiming {
            id: id.into(),
            started: Duration::from_secs_f64(start),
            ready: Duration::from_secs_f64(ready),
        }
    }

    #[test]
    fn critical_path_is_the_longest_chain_of_measured_steps() {
        // db(2) → api(3) → gateway(1); cache(4) → gateway
        let steps = vec![
            step("db", vec![]),
            step("cache", vec![]),
            step("api", vec![0]),
            step("gateway", vec![2, 1]),
        ];
        let timings = vec![
            timing("db", 0.0, 2.0),
            timing("cache", 0.0, 4.0),
            timing("api", 2.0, 5.0),
            timing("gateway", 5.0, 6.0),
        ];
        assert!((critical_path(&steps, &timings) - 6.0).abs() < 1e-9);
    }
}

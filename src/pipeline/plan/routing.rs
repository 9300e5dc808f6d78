//! Network and routing: what a rendered object may not do to the network around the sandbox
//! unless sandbox.yaml allows it, and which hosts its Ingresses and routes may claim.
//!
//! Rendered objects come from a branch, which anyone who can push controls. NetworkPolicies add
//! up, so a branch's allow-all would cancel the sandbox's own (`sandbox-isolation`,
//! `sandbox-egress`); an ExternalName Service or hand-written Endpoints let the shared ingress
//! controller (or any pod) reach anything; a LoadBalancer costs money; snippet annotations are
//! configuration an ingress controller runs; and an Ingress host is a claim on the shared
//! controller, which must not take another sandbox's (or production's) host.

use serde_json::Value;

use super::privileges::Claim;
use super::{PlanError, RenderedService};
use crate::pipeline::config::{render_host, Privilege};
use crate::pipeline::render::Manifest;

/// The hosts this sandbox's Ingresses and routes may claim: `url.host` rendered for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts {
    patterns: Vec<String>,
}

impl Hosts {
    /// `patterns` (`url.host`) rendered over `context` (`{"sandbox": …}`).
    pub(crate) fn for_sandbox(patterns: &[String], context: &Value) -> Result<Hosts, String> {
        let patterns = patterns
            .iter()
            .map(|p| render_host(p, context).map_err(|why| format!("`url.host` `{p}` {why}")))
            .collect::<Result<_, _>>()?;
        Ok(Hosts { patterns })
    }

    /// Whether `host` is this sandbox's: a pattern itself, or one label in front of the rest of
    /// a `*.` pattern.
    fn admit(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.patterns.iter().any(|p| {
            let under = p.strip_prefix("*.").and_then(|rest| {
                host.strip_suffix(rest)
                    .and_then(|front| front.strip_suffix('.'))
            });
            *p == host
                || under.is_some_and(|label| !label.is_empty() && !label.contains(['.', '*']))
        })
    }
}

/// Refuse, in every object of every service, a network right sandbox.yaml does not allow, or a
/// host that is not this sandbox's.
pub(crate) fn check(services: &[RenderedService], hosts: &Hosts) -> Result<(), PlanError> {
    for s in services {
        let preflight = s.preflight.iter().flatten();
        for m in preflight
            .chain(&s.objects)
            .chain(&s.post_install)
            .chain(&s.smoke)
        {
            check_object(s, m, hosts)?;
        }
    }
    Ok(())
}

fn check_object(service: &RenderedService, m: &Manifest, hosts: &Hosts) -> Result<(), PlanError> {
    let object = || format!("{}: {} `{}`", m.template, m.kind(), m.name());
    let unallowed = claims(&m.object)
        .into_iter()
        .find(|c| !service.allow.contains(&c.privilege));
    if let Some(claim) = unallowed {
        return Err(PlanError::NotAllowed {
            object: object(),
            service: service.name.clone(),
            field: claim.field,
            value: claim.value,
            privilege: claim.privilege,
        });
    }
    match foreign_hosts(&m.object, hosts).into_iter().next() {
        None => Ok(()),
        Some(foreign) => Err(PlanError::ForeignHost {
            object: object(),
            service: service.name.clone(),
            foreign: Box::new(foreign),
            hosts: hosts.patterns.clone(),
        }),
    }
}

/// Every network right `object` claims, in document order.
pub(crate) fn claims(object: &Value) -> Vec<Claim> {
    let mut found = Vec::new();
    let kind = object["kind"].as_str().unwrap_or_default();
    if kind.ends_with("NetworkPolicy") {
        found.push(claim(Privilege::NetworkPolicies, "kind", kind));
    }
    if kind == "Endpoints" || kind == "EndpointSlice" {
        found.push(claim(Privilege::Endpoints, "kind", kind));
    }
    if kind == "Service" {
        match object["spec"]["type"].as_str() {
            Some("ExternalName") => found.push(claim(
                Privilege::ExternalNameServices,
                "spec.type",
                "ExternalName",
            )),
            Some("LoadBalancer") => found.push(claim(
                Privilege::LoadBalancerServices,
                "spec.type",
                "LoadBalancer",
            )),
            _ => {}
        }
    }
    let annotations = object["metadata"]["annotations"].as_object();
    for (key, value) in annotations.into_iter().flatten() {
        if is_snippet_annotation(key) {
            let field = format!("metadata.annotations[\"{key}\"]");
            found.push(claim(Privilege::SnippetAnnotations, &field, &shown(value)));
        }
    }
    // NGINX Inc.'s resources take snippets as fields (`server-snippets`, `location-snippets`).
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    if api_version.starts_with("k8s.nginx.org/") {
        snippet_fields(&object["spec"], "spec", &mut found);
    }
    found
}

/// Whether an annotation hands an ingress controller raw configuration: ingress-nginx's
/// `*-snippet`, NGINX Inc.'s `*-snippets`, HAProxy's `*-config-snippet`, under any prefix; and
/// haproxy-ingress's `config-*`.
fn is_snippet_annotation(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name = name.to_ascii_lowercase();
    let haproxy_ingress = ["haproxy-ingress.github.io", "ingress.kubernetes.io"];
    name.ends_with("snippet")
        || name.ends_with("snippets")
        || (haproxy_ingress.contains(&prefix) && name.starts_with("config-"))
}

fn snippet_fields(value: &Value, at: &str, found: &mut Vec<Claim>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let field = format!("{at}.{key}");
                if key.to_ascii_lowercase().ends_with("snippets") {
                    found.push(claim(Privilege::SnippetAnnotations, &field, &shown(child)));
                } else {
                    snippet_fields(child, &field, found);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                snippet_fields(item, &format!("{at}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// A value as the error shows it: one line, at most 60 characters.
fn shown(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &escaped[..end]),
        None => escaped,
    }
}

fn claim(privilege: Privilege, field: &str, value: &str) -> Claim {
    Claim {
        privilege,
        field: field.to_owned(),
        value: value.to_owned(),
    }
}

/// A host an object claims that is not this sandbox's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForeignHost {
    pub(crate) field: String,
    pub(crate) value: String,
    pub(crate) reason: String,
}

/// Every host `object` claims that `hosts` does not admit: an Ingress's rules and TLS hosts
/// (and a catch-all Ingress), a Gateway API route's hostnames, an NGINX VirtualServer's or a
/// Contour HTTPProxy's host.
pub(crate) fn foreign_hosts(object: &Value, hosts: &Hosts) -> Vec<ForeignHost> {
    let mut found = Vec::new();
    let mut check = |field: String, host: &Value| {
        if let Some(reason) = host_problem(host, hosts) {
            let value = host.as_str().unwrap_or("none").to_owned();
            found.push(ForeignHost {
                field,
                value,
                reason,
            });
        }
    };
    let spec = &object["spec"];
    match object["kind"].as_str().unwrap_or_default() {
        "Ingress" => {
            let rules = spec["rules"].as_array().filter(|r| !r.is_empty());
            for (i, rule) in rules.into_iter().flatten().enumerate() {
                check(format!("spec.rules[{i}].host"), &rule["host"]);
            }
            for (i, tls) in items(&spec["tls"]) {
                for (j, host) in items(&tls["hosts"]) {
                    check(format!("spec.tls[{i}].hosts[{j}]"), host);
                }
            }
            let default = ["defaultBackend", "backend"]
                .into_iter()
                .find(|f| !spec[*f].is_null());
            if let (None, Some(field)) = (rules, default) {
                found.push(ForeignHost {
                    field: format!("spec.{field}"),
                    value: "an Ingress without rules".into(),
                    reason: "a catch-all Ingress serves every host the ingress controller has no rule for".into(),
                });
            }
        }
        "HTTPRoute" | "GRPCRoute" | "TLSRoute" => {
            match spec["hostnames"].as_array().filter(|h| !h.is_empty()) {
                None => check("spec.hostnames".into(), &Value::Null),
                Some(names) => names
                    .iter()
                    .enumerate()
                    .for_each(|(i, h)| check(format!("spec.hostnames[{i}]"), h)),
            }
        }
        "VirtualServer" => check("spec.host".into(), &spec["host"]),
        "HTTPProxy" if !spec["virtualhost"].is_null() => {
            check("spec.virtualhost.fqdn".into(), &spec["virtualhost"]["fqdn"])
        }
        _ => {}
    }
    found
}

/// Why `host` may not be claimed, if it may not.
fn host_problem(host: &Value, hosts: &Hosts) -> Option<String> {
    let host = host.as_str().unwrap_or_default();
    if host.is_empty() {
        return Some("without a host it takes every host the ingress controller serves".into());
    }
    if hosts.admit(host) {
        return None;
    }
    Some(if hosts.patterns.is_empty() {
        "sandbox.yaml names no host a sandbox may claim (`url.host`)".into()
    } else if host.contains('*') {
        "a wildcard host takes every host under it, other sandboxes' too".into()
    } else {
        "it is not one of this sandbox's hosts (`url.host` in sandbox.yaml)".into()
    })
}

/// The items of a list, with their indexes; nothing when it is not a list.
fn items(value: &Value) -> impl Iterator<Item = (usize, &Value)> {
    value.as_array().into_iter().flatten().enumerate()
}

/// What a network right reaches, for the error's hint.
pub(super) fn reach(privilege: Privilege) -> &'static str {
    match privilege {
        Privilege::NetworkPolicies => "NetworkPolicies add up: a branch's policy that admits traffic (e.g. `podSelector: {}` with an empty rule) cancels the sandbox's own isolation (`sandbox-isolation`, `sandbox-egress`)",
        Privilege::ExternalNameServices => "an ExternalName Service is a DNS alias to any host: the ingress controller, or any pod, that follows it reaches another namespace, the cluster's API or the cloud's metadata service",
        Privilege::LoadBalancerServices => "a LoadBalancer Service makes the cloud provision a load balancer, which costs money and exposes the sandbox outside the cluster",
        Privilege::Endpoints => "hand-written Endpoints point a Service at any address: the ingress controller, or any pod, that follows it reaches other namespaces' pods",
        Privilege::SnippetAnnotations => "a snippet is configuration the ingress controller runs for every host it serves: it can read the controller's secrets (every namespace's TLS keys) and route other sandboxes' traffic",
        _ => "it reaches past the sandbox's namespace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn fields(object: &Value) -> Vec<(Privilege, String, String)> {
        claims(object)
            .into_iter()
            .map(|c| (c.privilege, c.field, c.value))
            .collect()
    }

    fn hosts(patterns: &[&str]) -> Hosts {
        let context =
            serde_json::json!({"sandbox": {"name": "shop", "branch": "x", "namespace": "sb-x"}});
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Hosts::for_sandbox(&patterns, &context).unwrap()
    }

    fn service(objects: Vec<Value>) -> RenderedService {
        RenderedService {
            name: "web".into(),
            depends_on: vec![],
            preflight: vec![],
            objects: objects
                .into_iter()
                .map(|object| Manifest {
                    template: "templates/web.yaml".into(),
                    object,
                })
                .collect(),
            post_install: vec![],
            smoke: vec![],
            allow: BTreeSet::new(),
            cluster_roles: BTreeSet::new(),
        }
    }

    #[test]
    fn network_policies_of_any_group_are_claims() {
        for text in [
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all}\nspec: {podSelector: {}, ingress: [{}]}",
            "apiVersion: crd.projectcalico.org/v1\nkind: NetworkPolicy\nmetadata: {name: all}",
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: all}",
        ] {
            let found = fields(&yaml(text));
            assert_eq!(found.len(), 1, "{text}");
            assert_eq!(found[0].0, Privilege::NetworkPolicies);
            assert_eq!(found[0].1, "kind");
        }
    }

    #[test]
    fn external_name_and_load_balancer_services_and_endpoints_are_claims() {
        let s = |p: Privilege, f: &str, v: &str| vec![(p, f.to_owned(), v.to_owned())];
        assert_eq!(
            fields(&yaml(
                "kind: Service\nspec: {type: ExternalName, externalName: kubernetes.default.svc}"
            )),
            s(Privilege::ExternalNameServices, "spec.type", "ExternalName")
        );
        assert_eq!(
            fields(&yaml(
                "kind: Service\nspec: {type: LoadBalancer, ports: [{port: 80}]}"
            )),
            s(Privilege::LoadBalancerServices, "spec.type", "LoadBalancer")
        );
        assert_eq!(
            fields(&yaml("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nendpoints: [{addresses: [10.0.0.1]}]")),
            s(Privilege::Endpoints, "kind", "EndpointSlice")
        );
        assert_eq!(fields(&yaml("kind: Endpoints\nsubsets: []")).len(), 1);
        for ordinary in ["ClusterIP", "NodePort"] {
            let service = yaml(&format!("kind: Service\nspec: {{type: {ordinary}}}"));
            assert!(claims(&service).is_empty(), "{ordinary}");
        }
        assert!(claims(&yaml("kind: Service\nspec: {ports: [{port: 80}]}")).is_empty());
    }

    #[test]
    fn snippet_annotations_of_every_controller_are_claims_on_any_object() {
        let object = yaml(
            r#"
kind: Ingress
metadata:
  name: web
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
    nginx.ingress.kubernetes.io/configuration-snippet: "more_set_headers \"x: y\";\nlua_code"
    nginx.ingress.kubernetes.io/server-snippet: x
    nginx.ingress.kubernetes.io/auth-snippet: x
    nginx.ingress.kubernetes.io/stream-snippet: x
    nginx.org/server-snippets: x
    haproxy.org/backend-config-snippet: x
    haproxy-ingress.github.io/config-backend: x
    example.com/description: a snippet of text
"#,
        );
        let found: Vec<String> = claims(&object).into_iter().map(|c| c.field).collect();
        let key = |k: &str| format!("metadata.annotations[\"{k}\"]");
        assert_eq!(
            found,
            [
                key("nginx.ingress.kubernetes.io/configuration-snippet"),
                key("nginx.ingress.kubernetes.io/server-snippet"),
                key("nginx.ingress.kubernetes.io/auth-snippet"),
                key("nginx.ingress.kubernetes.io/stream-snippet"),
                key("nginx.org/server-snippets"),
                key("haproxy.org/backend-config-snippet"),
                key("haproxy-ingress.github.io/config-backend"),
            ]
        );
        let first = &claims(&object)[0];
        assert_eq!(first.value, "more_set_headers \\\"x: y\\\";\\nlua_code");
        let service = yaml("kind: Service\nmetadata: {annotations: {nginx.ingress.kubernetes.io/server-snippet: x}}");
        assert_eq!(fields(&service)[0].0, Privilege::SnippetAnnotations);
        let virtual_server = yaml("apiVersion: k8s.nginx.org/v1\nkind: VirtualServer\nspec: {host: a, routes: [{path: /, location-snippets: x}]}");
        assert_eq!(
            fields(&virtual_server)[0].1,
            "spec.routes[0].location-snippets"
        );
    }

    #[test]
    fn long_values_are_shown_on_one_line_and_cut() {
        let value = Value::String(format!("{}\n{}", "a".repeat(50), "b".repeat(50)));
        let out = shown(&value);
        assert!(out.starts_with(&format!("{}\\n", "a".repeat(50))), "{out}");
        assert!(out.ends_with('…') && !out.contains('\n'), "{out}");
    }

    #[test]
    fn hosts_are_the_patterns_and_one_label_under_a_wildcard_pattern() {
        let h = hosts(&[
            "{{sandbox.namespace}}.preview.example.com",
            "*.{{sandbox.namespace}}.preview.example.com",
        ]);
        for ok in [
            "sb-x.preview.example.com",
            "api.sb-x.preview.example.com",
            "SB-X.preview.example.com",
            "*.sb-x.preview.example.com",
        ] {
            assert!(h.admit(ok), "{ok}");
        }
        for refused in [
            "sb-y.preview.example.com",
            "a.b.sb-x.preview.example.com",
            ".sb-x.preview.example.com",
            "*.preview.example.com",
            "sb-x.preview.example.com.evil",
            "xsb-x.preview.example.com",
            "shop.example.com",
        ] {
            assert!(!h.admit(refused), "{refused}");
        }
        assert!(!hosts(&["{{sandbox.namespace}}.preview.example.com"])
            .admit("api.sb-x.preview.example.com"));
        assert!(!Hosts::default().admit("sb-x.preview.example.com"));
    }

    #[test]
    fn every_host_of_an_ingress_and_a_route_is_checked() {
        let h = hosts(&["{{sandbox.namespace}}.preview.example.com"]);
        let ingress = yaml(
            "
apiVersion: networking.k8s.io/v1
kind: Ingress
spec:
  rules:
    - host: sb-x.preview.example.com
    - host: sb-y.preview.example.com
    - http: {paths: []}
    - host: '*.preview.example.com'
  tls:
    - hosts: [sb-x.preview.example.com, shop.example.com]
",
        );
        let found: Vec<(String, String)> = foreign_hosts(&ingress, &h)
            .into_iter()
            .map(|f| (f.field, f.value))
            .collect();
        let f = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            found,
            [
                f("spec.rules[1].host", "sb-y.preview.example.com"),
                f("spec.rules[2].host", "none"),
                f("spec.rules[3].host", "*.preview.example.com"),
                f("spec.tls[0].hosts[1]", "shop.example.com"),
            ]
        );
        let reasons: Vec<String> = foreign_hosts(&ingress, &h)
            .into_iter()
            .map(|f| f.reason)
            .collect();
        assert!(reasons[2].starts_with("a wildcard host"), "{reasons:?}");
        let v1beta1 = yaml("apiVersion: extensions/v1beta1\nkind: Ingress\nspec: {backend: {serviceName: web, servicePort: 80}}");
        assert_eq!(foreign_hosts(&v1beta1, &h)[0].field, "spec.backend");
        let with_rules = yaml("kind: Ingress\nspec: {defaultBackend: {service: {name: web}}, rules: [{host: sb-x.preview.example.com}]}");
        assert!(foreign_hosts(&with_rules, &h).is_empty());
        let route = yaml("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec: {hostnames: [sb-x.preview.example.com, other.example.com]}");
        assert_eq!(foreign_hosts(&route, &h)[0].field, "spec.hostnames[1]");
        let catch_all = yaml("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec: {parentRefs: [{name: shared}]}");
        assert_eq!(foreign_hosts(&catch_all, &h)[0].field, "spec.hostnames");
        let proxy = yaml("apiVersion: projectcontour.io/v1\nkind: HTTPProxy\nspec: {virtualhost: {fqdn: prod.example.com}}");
        assert_eq!(foreign_hosts(&proxy, &h)[0].field, "spec.virtualhost.fqdn");
        let included =
            yaml("apiVersion: projectcontour.io/v1\nkind: HTTPProxy\nspec: {routes: []}");
        assert!(foreign_hosts(&included, &h).is_empty());
    }

    #[test]
    fn without_url_host_no_ingress_host_is_admitted() {
        let ingress = yaml("kind: Ingress\nspec: {rules: [{host: sb-x.preview.example.com}]}");
        let found = foreign_hosts(&ingress, &Hosts::default());
        assert_eq!(
            found[0].reason,
            "sandbox.yaml names no host a sandbox may claim (`url.host`)"
        );
    }

    #[test]
    fn check_names_the_object_and_is_lifted_by_allow() {
        let policy = yaml("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: open}\nspec: {podSelector: {}, ingress: [{}]}");
        let mut web = service(vec![policy]);
        let err = check(&[web.clone()], &Hosts::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "templates/web.yaml: NetworkPolicy `open` of service `web` sets `kind` (NetworkPolicy), which sandbox.yaml does not allow"
        );
        let hint = crate::error::Hint::hint(&err).unwrap();
        assert!(hint.starts_with("NetworkPolicies add up"), "{hint}");
        assert!(
            hint.contains("add `allow: [network_policies]` under `services.web`"),
            "{hint}"
        );
        web.allow.insert(Privilege::NetworkPolicies);
        assert!(check(&[web], &Hosts::default()).is_ok());
    }

    #[test]
    fn check_names_a_foreign_host_and_the_hosts_that_are_this_sandboxs() {
        let ingress = yaml("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec: {rules: [{host: sb-y.preview.example.com}]}");
        let h = hosts(&["{{sandbox.namespace}}.preview.example.com"]);
        let err = check(&[service(vec![ingress.clone()])], &h).unwrap_err();
        assert_eq!(
            err.to_string(),
            "templates/web.yaml: Ingress `web` of service `web` sets `spec.rules[0].host` (sb-y.preview.example.com): it is not one of this sandbox's hosts (`url.host` in sandbox.yaml)"
        );
        let hint = crate::error::Hint::hint(&err).unwrap();
        assert!(hint.contains("`sb-x.preview.example.com`"), "{hint}");
        let err = check(&[service(vec![ingress])], &Hosts::default()).unwrap_err();
        let hint = crate::error::Hint::hint(&err).unwrap();
        assert!(hint.contains("url:"), "{hint}");
        let own = yaml("kind: Ingress\nmetadata: {name: web}\nspec: {rules: [{host: sb-x.preview.example.com}]}");
        assert!(check(&[service(vec![own])], &h).is_ok());
    }
}

//! Hostile branches, network and routing (issue 23, hole 4): a branch's chart or values that
//! render a NetworkPolicy allowing everything, an ExternalName or LoadBalancer Service, an
//! Ingress on another sandbox's host or a wildcard host, or a snippet annotation are refused by
//! `render`, `validate` and `up` before anything is created; a value that injects a `---`
//! document is refused the same way; an Ingress on the sandbox's own host is created.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::networking::v1::Ingress;
use kube::{Api, Client};

use crate::support::{cluster, run_failing, run_ok, Product, TestNamespace};

/// Files written into a branch: path in the repository, content.
type Files<'a> = Vec<(&'a str, String)>;

/// The hosts every sandbox of the test products may claim.
const HOST_PATTERN: &str = "{{sandbox.namespace}}.preview.example.test";

/// The example product, with `url.host` set.
fn product(name: &str) -> Product {
    let product = Product::new(name);
    product.edit_config(
        "url:\n  service: gateway\n",
        &format!("url:\n  service: gateway\n  host: \"{HOST_PATTERN}\"\n"),
    );
    product
}

/// Branch `branch` of the backend and frontend repositories, made from feature-x (so the
/// backend's image for the commit is the one feature-x has), with `files` written into the
/// frontend's (the gateway chart is the branch's).
fn frontend_branch(product: &Product, branch: &str, files: &[(&str, String)]) {
    for repo in ["backend", "frontend"] {
        let bare = product.path().join("repos").join(format!("{repo}.git"));
        run_ok(Command::new("git").arg("--git-dir").arg(bare).args([
            "branch",
            branch,
            "feature-x",
        ]));
    }
    if files.is_empty() {
        return;
    }
    product.commit("frontend", branch, "a hostile change", |dir: &Path| {
        for (path, text) in files {
            std::fs::write(dir.join(path), text).unwrap();
        }
    });
}

/// This sandbox's own host, as `url.host` gives it.
fn own_host(product: &Product, branch: &str) -> String {
    HOST_PATTERN.replace("{{sandbox.namespace}}", &product.namespace(branch))
}

fn ingress(name: &str, host: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  rules:
    - host: \"{host}\"
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {{service: {{name: gateway, port: {{number: 8000}}}}}}
"
    )
}

/// `render`, `validate` and `up` of `branch` each fail with every one of `expected` in their
/// stderr; and no namespace was made.
async fn refused_everywhere(client: &Client, product: &Product, branch: &str, expected: &[String]) {
    // Deletes what an earlier run left (one without the checks creates it).
    let namespace = TestNamespace::claim(client, &product.namespace(branch)).await;
    for command in ["render", "validate", "up"] {
        let stderr = run_failing(&mut product.sandbox(&[command, "--branch", branch]));
        for text in expected {
            assert!(
                stderr.contains(text.as_str()),
                "`{command} --branch {branch}` does not say `{text}`:\n{stderr}"
            );
        }
        assert!(
            stderr.contains("the rendered objects cannot be deployed"),
            "{stderr}"
        );
    }
    assert!(
        !namespace.exists().await,
        "{branch}: a refused up made {}",
        namespace.name
    );
}

#[tokio::test]
async fn hostile_network_branches_are_refused_by_render_validate_and_up() {
    let Some(client) = cluster("hostile network branches").await else {
        return;
    };
    let product = product("net-hostile");
    let other_sandbox = own_host(&product, "main");
    let snippet = "nginx.ingress.kubernetes.io/configuration-snippet: \"more_set_headers x;\"";
    let allow_all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: open-all}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress: [{}]\n  egress: [{}]\n";
    let alias = "apiVersion: v1\nkind: Service\nmetadata: {name: api-alias}\nspec:\n  type: ExternalName\n  externalName: kubernetes.default.svc.cluster.local\n";
    let cases: Vec<(&str, Files, Vec<String>)> = vec![
        (
            "net-policy",
            vec![("gateway/templates/open.yaml", allow_all.into())],
            vec![
                "gateway/templates/open.yaml: NetworkPolicy `open-all` of service `gateway` sets `kind` (NetworkPolicy), which sandbox.yaml does not allow".into(),
                "hint: NetworkPolicies add up".into(),
                "add `allow: [network_policies]` under `services.gateway` in sandbox.yaml".into(),
            ],
        ),
        (
            "net-external-name",
            vec![("gateway/templates/alias.yaml", alias.into())],
            vec![
                "gateway/templates/alias.yaml: Service `api-alias` of service `gateway` sets `spec.type` (ExternalName), which sandbox.yaml does not allow".into(),
                "allow: [external_name_services]".into(),
            ],
        ),
        (
            "net-load-balancer",
            vec![(
                "gateway/values.yaml",
                gateway_values(&product).replace("service_type: NodePort", "service_type: LoadBalancer"),
            )],
            vec![
                "gateway/templates/service.yaml: Service `gateway` of service `gateway` sets `spec.type` (LoadBalancer), which sandbox.yaml does not allow".into(),
                "costs money".into(),
                "allow: [load_balancer_services]".into(),
            ],
        ),
        (
            "net-foreign-host",
            vec![("gateway/templates/ingress.yaml", ingress("gateway", &other_sandbox, ""))],
            vec![
                format!("gateway/templates/ingress.yaml: Ingress `gateway` of service `gateway` sets `spec.rules[0].host` ({other_sandbox}): it is not one of this sandbox's hosts (`url.host` in sandbox.yaml)"),
                format!("hint: this sandbox may claim `{}`", own_host(&product, "net-foreign-host")),
            ],
        ),
        (
            "net-wildcard-host",
            vec![("gateway/templates/ingress.yaml", ingress("gateway", "*.preview.example.test", ""))],
            vec![
                "sets `spec.rules[0].host` (*.preview.example.test): a wildcard host takes every host under it, other sandboxes' too".into(),
            ],
        ),
        (
            "net-snippet",
            vec![(
                "gateway/templates/ingress.yaml",
                ingress("gateway", &own_host(&product, "net-snippet"), snippet),
            )],
            vec![
                "gateway/templates/ingress.yaml: Ingress `gateway` of service `gateway` sets `metadata.annotations[\"nginx.ingress.kubernetes.io/configuration-snippet\"]` (more_set_headers x;), which sandbox.yaml does not allow".into(),
                "allow: [snippet_annotations]".into(),
            ],
        ),
    ];
    for (branch, files, expected) in cases {
        frontend_branch(&product, branch, &files);
        refused_everywhere(&client, &product, branch, &expected).await;
    }
}

/// The gateway chart's values.yaml as the example's frontend repository has it.
fn gateway_values(product: &Product) -> String {
    let out = run_ok(
        Command::new("git")
            .arg("--git-dir")
            .arg(product.path().join("repos/frontend.git"))
            .args(["show", "feature-x:gateway/values.yaml"]),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("service_type: NodePort"), "{text}");
    text
}

#[tokio::test]
async fn an_ingress_on_the_sandboxs_own_host_is_created_and_gives_the_url() {
    let Some(client) = cluster("own ingress host").await else {
        return;
    };
    let product = product("net-own-host");
    let branch = "net-own";
    let ns = TestNamespace::claim(&client, &product.namespace(branch)).await;
    let host = own_host(&product, branch);
    let files = [(
        "gateway/templates/ingress.yaml",
        ingress("gateway", &host, ""),
    )];
    frontend_branch(&product, branch, &files);
    let out = run_ok(&mut product.sandbox(&["up", "--branch", branch, "--wait=false"]));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().last(),
        Some(format!("http://{host}/").as_str())
    );
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns.name);
    let created = ingresses
        .get("gateway")
        .await
        .expect("the Ingress is created");
    let rules = created.spec.unwrap().rules.unwrap();
    assert_eq!(rules[0].host.as_deref(), Some(host.as_str()));
    run_ok(&mut product.sandbox(&["down", "--branch", branch]));
}

/// A value interpolated without quotes can end its document and start another (`---` at
/// column 0). The renderer splits there, as YAML does, and the injected document is one more
/// rendered object: checked as if the template had rendered it, and refused.
#[tokio::test]
async fn a_value_that_injects_a_document_is_checked_like_any_rendered_object() {
    let Some(client) = cluster("injected document").await else {
        return;
    };
    let product = product("net-inject");
    let feature_x = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let injected = "ClusterIP\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: injected\nspec:\n  type: ExternalName\n  externalName: kubernetes.default.svc.cluster.local";
    // From `--set` into a chart (helm's `type: {{ .Values.service_type | default … }}`).
    let set = format!("gateway.service_type={injected}");
    for command in ["render", "up"] {
        let args = [command, "--branch", "feature-x", "--set-string", &set];
        let stderr = run_failing(&mut product.sandbox(&args));
        assert!(
            stderr.contains("gateway/templates/service.yaml: Service `injected` of service `gateway` sets `spec.type` (ExternalName), which sandbox.yaml does not allow"),
            "{command}: {stderr}"
        );
    }

    // From a branch's values file (the cache's, Handlebars' `type: {{default values.service_type …}}`).
    let branch = "net-inject";
    frontend_branch(&product, branch, &[]);
    let line = format!(
        "service_type: {}\n",
        serde_json::to_string(injected).unwrap()
    );
    product.commit("data", "main", "inject a document", |dir: &Path| {
        let path = dir.join("cache/values.yaml");
        let values = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{values}\n{line}")).unwrap();
    });
    let expected = ["templates/service.yaml: Service `injected` of service `cache` sets `spec.type` (ExternalName), which sandbox.yaml does not allow".to_owned()];
    refused_everywhere(&client, &product, branch, &expected).await;
    assert!(
        !feature_x.exists().await,
        "a refused up made {}",
        feature_x.name
    );
}

//! A branch's RBAC grants no identity more than the sandbox's own: each hostile Role or
//! RoleBinding a branch's chart renders is refused by `render`, `validate` and `up` with the
//! file, the object, the field and the reason, before anything is created; a ClusterRole that
//! sandbox.yaml lists is bound; and a rollback refuses a last good revision that something in
//! the sandbox rewrote.

use base64::Engine;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Patch, PatchParams};
use kube::Api;

use crate::support::{cluster, run_failing, up, up_ok, Product, TestNamespace};

/// Put `text` at web/templates/rbac.yaml in the frontend repo's feature-x branch (the web
/// chart's: what whoever pushes a branch controls).
fn commit_rbac(product: &Product, text: &str) {
    product.commit("frontend", "feature-x", "rbac", |dir| {
        std::fs::write(dir.join("web/templates/rbac.yaml"), text).unwrap();
    });
}

fn binding(name: &str, role_ref: &str, subjects: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n{role_ref}subjects:\n{subjects}"
    )
}

const CLUSTER_ROLE: &str = "  kind: ClusterRole\n  name: ";
const DEFAULT_SA: &str = "  - kind: ServiceAccount\n    name: default\n";

fn role(name: &str, rule: &str) -> String {
    format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}\nrules:\n  - {rule}\n")
}

/// What each hostile branch renders, and what the refusal must say (the object, the field and
/// its value, the reason) and hint.
fn hostile_branches() -> Vec<(String, String, &'static str)> {
    let own_role = "  kind: Role\n  name: web-reader\n";
    let reader = role(
        "web-reader",
        "{apiGroups: [''], resources: [configmaps], verbs: [get]}",
    );
    vec![
        (
            binding("web-admin", &format!("{CLUSTER_ROLE}admin\n"), DEFAULT_SA),
            "RoleBinding `web-admin` of service `web` sets `roleRef.name` (admin): ClusterRole `admin` can never be bound in a sandbox",
            "hint: bind a Role the template renders",
        ),
        (
            binding("web-serve", &format!("{CLUSTER_ROLE}sandbox-serve-in-sandbox\n"), DEFAULT_SA),
            "RoleBinding `web-serve` of service `web` sets `roleRef.name` (sandbox-serve-in-sandbox): ClusterRole `sandbox-serve-in-sandbox` can never be bound in a sandbox: it is `sandbox serve`'s own",
            "hint: bind a Role the template renders",
        ),
        (
            format!("{reader}---\n{}", binding("web-anyone", own_role, "  - kind: Group\n    apiGroup: rbac.authorization.k8s.io\n    name: system:unauthenticated\n")),
            "RoleBinding `web-anyone` of service `web` sets `subjects[0].kind` (Group): only service accounts of the sandbox may be bound: a Group is someone outside it (`system:unauthenticated`)",
            "hint: bind only service accounts of the sandbox",
        ),
        (
            format!("{reader}---\n{}", binding("web-other", own_role, "  - kind: ServiceAccount\n    name: default\n    namespace: kube-system\n")),
            "RoleBinding `web-other` of service `web` sets `subjects[0].namespace` (kube-system): service account `kube-system/default` is outside the sandbox's namespace",
            "hint: bind only service accounts of the sandbox",
        ),
        (
            role("web-escalate", "{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate]}"),
            "Role `web-escalate` of service `web` sets `rules[0].verbs[0]` (escalate): verb `escalate`: it lets its holder write Roles that grant more than it holds",
            "hint: a sandbox's Roles may grant only what stays inside the sandbox",
        ),
        (
            role("web-all", "{apiGroups: [''], resources: [configmaps], verbs: ['*']}"),
            "Role `web-all` of service `web` sets `rules[0].verbs[0]` (*): verb `*`",
            "hint: a sandbox's Roles may grant only what stays inside the sandbox",
        ),
        (
            role("web-secrets", "{apiGroups: [''], resources: [secrets], verbs: [get, update]}"),
            "Role `web-secrets` of service `web` sets `rules[0].resources[0]` (secrets): writing `secrets` without `resourceNames` reaches the tool's own (`sandbox-last-good`)",
            "hint: a sandbox's Roles may grant only what stays inside the sandbox",
        ),
    ]
    .into_iter()
    .map(|(text, expected, hint)| (text, format!("web/templates/rbac.yaml: {expected}"), hint))
    .collect()
}

#[tokio::test]
async fn hostile_rbac_from_a_branch_is_refused_by_render_validate_and_up() {
    let product = Product::new("hostile-rbac");
    let client = cluster("hostile rbac").await;
    let offline = product.path().join("no-kubeconfig");
    for (text, expected, hint) in hostile_branches() {
        commit_rbac(&product, &text);
        for command in ["render", "validate", "up"] {
            let mut cmd = product.sandbox(&[command, "--branch", "feature-x"]);
            if command == "render" {
                cmd.env("KUBECONFIG", &offline);
            }
            if command != "render" && client.is_none() {
                continue;
            }
            let stderr = run_failing(&mut cmd);
            assert!(
                stderr.contains(&expected),
                "{command}: {expected}\n{stderr}"
            );
            assert!(stderr.contains(hint), "{command}: {hint}\n{stderr}");
        }
        if let Some(client) = &client {
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            let name = product.namespace("feature-x");
            let found = namespaces.get_opt(&name).await.unwrap();
            assert!(
                found.is_none(),
                "{name} was created by a refused up:\n{text}"
            );
        }
    }
}

/// A ClusterRole sandbox.yaml lists is bound to the sandbox's own service account; and a last
/// good revision rewritten in the cluster (as a pod with rights on Secrets could) is not
/// applied by a rollback.
#[tokio::test]
async fn a_listed_cluster_role_is_bound_and_a_tampered_last_good_revision_is_not_rolled_back() {
    let Some(client) = cluster("hostile rbac allowed").await else {
        return;
    };
    let product = Product::new("hostile-rbac-ok");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    commit_rbac(
        &product,
        &binding("web-view", &format!("{CLUSTER_ROLE}view\n"), DEFAULT_SA),
    );
    // Not listed: refused, with how to list it.
    let mut render = product.sandbox(&["render", "--branch", "feature-x"]);
    let stderr = run_failing(&mut render);
    assert!(
        stderr.contains("hint: if service `web` really needs it, add `rbac: {cluster_roles: [view]}` under `services.web` in sandbox.yaml"),
        "{stderr}"
    );
    product.edit_config(
        "    chart: web\n",
        "    chart: web\n    rbac: {cluster_roles: [view]}\n",
    );
    up_ok(&product, &[]);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns.name);
    let made = bindings.get("web-view").await.unwrap();
    assert_eq!(made.role_ref.name, "view");

    // Rewrite the last good revision: the cache's image becomes one nobody checked.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let snapshot = secrets.get("sandbox-last-good").await.unwrap();
    let bytes = &snapshot.data.unwrap()["objects.json"].0;
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("docker.io/local/busybox:1"), "{text}");
    let tampered = text.replace("docker.io/local/busybox:1", "docker.io/local/tampered:1");
    let encoded = base64::engine::general_purpose::STANDARD.encode(tampered);
    let patch = serde_json::json!({"data": {"objects.json": encoded}});
    secrets
        .patch(
            "sandbox-last-good",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();

    let (ok, text) = up(
        &product,
        &[
            "--set",
            "cache.image=docker.io/local/no-such-image:1",
            "--on-failure",
            "rollback",
        ],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("the last good revision in Secret `sandbox-last-good` is not the one sandbox wrote: its digest is sha256:"),
        "{text}"
    );
    assert!(
        text.contains("refusing to apply it; nothing was restored"),
        "{text}"
    );
    assert!(
        !text.contains("rolled back to its last good revision"),
        "{text}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let cache = deployments.get("cache").await.unwrap();
    let image = serde_json::to_string(&cache.spec).unwrap();
    assert!(
        !image.contains("tampered"),
        "the tampered revision was applied"
    );
}

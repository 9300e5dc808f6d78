//! Hostile branches (issue 23, hole 3): a branch of the frontend repository adds to the web
//! chart a pod that reaches past its sandbox — a volume of the node or the network, a node of
//! its choosing, the control plane, an unconfined kernel — and `render`, `validate` and `up`
//! refuse it before anything is created, naming the file, the object, the field and why; what
//! sandbox.yaml allows runs. Pod Security's level is enforced by the tool itself, on a cluster
//! (the local 1.20 one) that ignores it.

use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::support::{cluster, describe, run_failing, run_ok, Product, TestNamespace};

/// A product whose frontend repository has the branch `branch` (from main), with `pod_spec`
/// (indented for a Pod's `spec:`) in `web/templates/hostile.yaml` of the web chart.
fn hostile_branch(name: &str, branch: &str, pod_spec: &str) -> Product {
    let product = Product::new(name);
    let bare = product.path().join("repos/frontend.git");
    run_ok(
        Command::new("git")
            .arg("--git-dir")
            .arg(&bare)
            .args(["branch", branch, "main"]),
    );
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hostile\nspec:\n  containers:\n    - name: c\n      image: docker.io/local/busybox:1\n      command: [sleep, '3600']\n{pod_spec}"
    );
    product.commit("frontend", branch, "a pod past the sandbox", |work| {
        std::fs::write(work.join("web/templates/hostile.yaml"), pod).unwrap();
    });
    product
}

/// `render` (offline), `validate` and `up` of `branch` all fail, saying each of `expected`, and
/// the sandbox's namespace was never created.
async fn refused_everywhere(product: &Product, branch: &str, expected: &[&str], test: &str) {
    let Some(client) = cluster(test).await else {
        return;
    };
    let ns = TestNamespace::claim(&client, &product.namespace(branch)).await;
    let offline = product.path().join("no-kubeconfig");
    let mut render = product.sandbox(&["render", "--branch", branch]);
    let mut validate = product.sandbox(&["validate", "--branch", branch]);
    let mut up = product.sandbox(&["up", "--branch", branch]);
    for cmd in [render.env("KUBECONFIG", &offline), &mut validate, &mut up] {
        let stderr = run_failing(cmd);
        for text in expected {
            assert!(stderr.contains(text), "`{text}` missing in:\n{stderr}");
        }
    }
    assert!(!ns.exists().await, "{} was created", ns.name);
}

/// What every refusal of the web chart's hostile Pod says.
const HOSTILE_POD: &str = "web/templates/hostile.yaml: Pod `hostile` of service `web` sets";

#[tokio::test]
async fn a_git_repo_volume_is_refused_before_anything_is_created() {
    let branch = "hostile-gitrepo";
    let spec = "  volumes: [{name: src, gitRepo: {repository: 'https://example.com/x.git'}}]\n";
    let product = hostile_branch("hp-gitrepo", branch, spec);
    let expected = [
        HOSTILE_POD,
        "`spec.volumes[0].gitRepo` ({\"repository\":\"https://example.com/x.git\"}), which sandbox.yaml does not allow",
        "CVE-2024-10220",
        "add `allow: [volume:gitRepo]` under `services.web` in sandbox.yaml",
    ];
    refused_everywhere(&product, branch, &expected, "gitRepo volume").await;
}

#[tokio::test]
async fn an_nfs_volume_is_refused_before_anything_is_created() {
    let branch = "hostile-nfs";
    let spec = "  volumes: [{name: share, nfs: {server: 10.0.0.1, path: /exports}}]\n";
    let product = hostile_branch("hp-nfs", branch, spec);
    let expected = [
        HOSTILE_POD,
        "`spec.volumes[0].nfs`",
        "the node mounts storage the branch names",
        "add `allow: [volume:nfs]` under `services.web`",
    ];
    refused_everywhere(&product, branch, &expected, "nfs volume").await;
}

#[tokio::test]
async fn a_control_plane_toleration_is_refused_before_anything_is_created() {
    let branch = "hostile-toleration";
    let spec = "  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]\n";
    let product = hostile_branch("hp-toleration", branch, spec);
    let expected = [
        HOSTILE_POD,
        "`spec.tolerations[0].key` (node-role.kubernetes.io/control-plane)",
        "add `allow: [control_plane_tolerations]`",
    ];
    refused_everywhere(&product, branch, &expected, "control-plane toleration").await;
}

#[tokio::test]
async fn an_unconfined_seccomp_profile_is_refused_before_anything_is_created() {
    let branch = "hostile-seccomp";
    let spec = "  securityContext: {seccompProfile: {type: Unconfined}}\n";
    let product = hostile_branch("hp-seccomp", branch, spec);
    let expected = [
        HOSTILE_POD,
        "`spec.securityContext.seccompProfile.type` (Unconfined)",
        "add `allow: [unconfined_seccomp]`",
    ];
    refused_everywhere(&product, branch, &expected, "unconfined seccomp").await;
}

#[tokio::test]
async fn an_unsafe_sysctl_is_refused_before_anything_is_created() {
    let branch = "hostile-sysctl";
    let spec = "  securityContext: {sysctls: [{name: kernel.msgmax, value: '65536'}]}\n";
    let product = hostile_branch("hp-sysctl", branch, spec);
    let expected = [
        HOSTILE_POD,
        "`spec.securityContext.sysctls[0].name` (kernel.msgmax)",
        "add `allow: [unsafe_sysctls]`",
    ];
    refused_everywhere(&product, branch, &expected, "unsafe sysctl").await;
}

/// `nodeName` is refused; once sandbox.yaml allows it for web, the web chart's Deployment pinned
/// to the cluster's node deploys and runs.
#[tokio::test]
async fn a_node_name_is_refused_and_runs_once_sandbox_yaml_allows_it() {
    let Some(client) = cluster("nodeName").await else {
        return;
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.list(&Default::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let branch = "hostile-node";
    let product = Product::new("hp-node");
    let bare = product.path().join("repos/frontend.git");
    run_ok(
        Command::new("git")
            .arg("--git-dir")
            .arg(&bare)
            .args(["branch", branch, "main"]),
    );
    product.commit(
        "frontend",
        branch,
        "web on a node of its choosing",
        |work| {
            let path = work.join("web/templates/deployment.yaml");
            let text = std::fs::read_to_string(&path).unwrap();
            let pinned = text.replacen(
                "      terminationGracePeriodSeconds: 2\n",
                &format!("      terminationGracePeriodSeconds: 2\n      nodeName: {node}\n"),
                1,
            );
            assert_ne!(pinned, text);
            std::fs::write(path, pinned).unwrap();
        },
    );
    let expected = [
        "web/templates/deployment.yaml: Deployment `web` of service `web` sets `spec.template.spec.nodeName`",
        "the pod skips the scheduler",
        "add `allow: [node_name]` under `services.web`",
    ];
    refused_everywhere(&product, branch, &expected, "nodeName").await;

    product.edit_config(
        "    chart: web\n",
        "    chart: web\n    allow: [node_name]\n",
    );
    let ns = TestNamespace::claim(&client, &product.namespace(branch)).await;
    let mut up = product.sandbox(&["up", "--branch", branch]);
    let out = up.output().unwrap();
    assert!(out.status.success(), "{}", describe(&up, &out));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let web = deployments.get("web").await.unwrap();
    let spec = web.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.as_str()));
    assert_eq!(web.status.unwrap().ready_replicas, Some(1));
}

/// A capability beyond baseline's, allowed by sandbox.yaml, is still refused at the sandbox's
/// Pod Security level (`baseline`, the default) — by the tool, on a server that enforces no Pod
/// Security (1.20–1.24) as on one that does.
#[tokio::test]
async fn what_pod_security_baseline_refuses_is_refused_by_the_tool_itself() {
    let branch = "hostile-capability";
    let spec = "  securityContext: {}\n  initContainers:\n    - name: i\n      image: docker.io/local/busybox:1\n      command: ['true']\n      securityContext: {capabilities: {add: [NET_ADMIN]}}\n";
    let product = hostile_branch("hp-podsec", branch, spec);
    product.edit_config(
        "    chart: web\n",
        "    chart: web\n    allow: [capabilities]\n",
    );
    let expected = [
        "web/templates/hostile.yaml: Pod `hostile` of service `web` is refused by Pod Security `baseline` (`pod_security` in sandbox.yaml):",
        "`spec.initContainers[0].securityContext.capabilities.add[0]` is NET_ADMIN: only the capabilities of baseline may be added",
        "hint: set the fields as the level asks in the template or the values; or, if the pods really need them, set `pod_security: privileged` in sandbox.yaml",
    ];
    refused_everywhere(&product, branch, &expected, "pod security baseline").await;
}

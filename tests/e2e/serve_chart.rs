//! The packaged Helm chart of serve (`scripts/release chart`), end to end: `helm install` on the
//! local cluster with the tool's image from the cluster's registry (`scripts/release image`), a
//! signed webhook to its Service ends in a preview reported to the GitHub stand-in, and a
//! `helm upgrade` that changes a value rolls the pods without losing a delivery accepted just
//! before it.
//!
//! The pods reach this test where it runs (the cluster's network namespace) at the node's
//! address: the GitHub stand-in and `git daemon` serving the product's repositories listen there.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

// What this test borrows from the other serve tests and the shared support, in one place (the
// GitHub stand-in moves to the test-support crate).
use super::serve::{node_ip, GitDaemon};
use super::serve_support::fake_github::FakeGitHub;
use super::serve_support::{
    accepted, assert_api_built_from, deliver, deployments_for, pull_request, reached, succeeded,
    success_url, REPO, SECRET, TOKEN,
};
use crate::support::{cluster, root, run_ok, Product, TestNamespace};

/// The release's name; every object of the chart is named from it (`fullnameOverride`),
/// cluster-wide ones too, so it must differ from every other test's.
const RELEASE: &str = "e2e-serve-chart";
/// Where `scripts/local-cluster` runs its registry (pods pull from it over plain HTTP).
const REGISTRY: &str = "10.200.0.2:5000/local";

#[tokio::test]
async fn serve_chart_installs_serves_a_preview_and_upgrades_without_losing_work() {
    let Some(client) = cluster("serve chart: install, preview, upgrade").await else {
        return;
    };
    let started = Instant::now();
    let product = Product::new("serve-chart");
    let system = TestNamespace::claim(&client, "e2e-serve-chart-system").await;
    let _preview = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let ip = node_ip(&client).await;
    let daemon = GitDaemon::start(&ip, &product.path().join("repos"));
    let github = FakeGitHub::start_on(&format!("{ip}:0")).await;
    let sha1 = product.sha("backend", "feature-x");
    // GitHub knows the pull request as open, so serve's start-up resync agrees with the webhooks.
    github.open_pull(REPO, 42, "feature-x", &sha1);
    // CI's part: the backend's image of the branch's commit is in the registry.
    run_ok(&mut product.sandbox(&["images", "--branch", "feature-x"]));

    // The release's artefacts: the tool's image (this build's binary) and the packaged chart
    // pointing at it by digest.
    let image = tool_image();
    let scratch = tempfile::tempdir().unwrap();
    let chart = packaged_chart(&image, scratch.path());
    let prepared = started.elapsed();

    // What the chart takes by reference: the namespace and the Secret.
    create_namespace_and_secret(&client, &system.name).await;
    let values = scratch.path().join("values.json");
    let mut settings = values_for(&product, &github.url, &daemon.url);
    std::fs::write(&values, settings.to_string()).unwrap();
    let release = HelmRelease::install(&chart, &system.name, &values);
    let serve = ChartPods {
        client: client.clone(),
        system: system.name.clone(),
    };
    serve.rolled_out(1, Duration::from_secs(120)).await;
    let webhook = format!(
        "{}/webhook",
        serve.service_url(Duration::from_secs(60)).await
    );
    let installed = started.elapsed();

    // A signed webhook to its Service: a preview, reported to GitHub.
    accepted(
        deliver(
            &webhook,
            "pull_request",
            "e2e-chart-open",
            &pull_request("opened", &sha1),
            Some(SECRET),
        )
        .await,
    );
    serve
        .reported(&github, &sha1, Duration::from_secs(240))
        .await;
    assert_api_built_from(&preview_url(&github, &sha1), &sha1);
    let first_preview = started.elapsed();

    // A push, accepted, and at once `helm upgrade` with a changed value: the pods roll (a new
    // argument in their spec), and the accepted delivery still ends in a reported preview.
    let sha2 = product.commit("backend", "feature-x", "a push before the upgrade", |dir| {
        std::fs::write(dir.join("NOTES.md"), "pushed before the upgrade\n").unwrap();
    });
    run_ok(&mut product.sandbox(&["images", "--branch", "feature-x"]));
    github.open_pull(REPO, 42, "feature-x", &sha2);
    let before = serve.pod_names().await;
    accepted(
        deliver(
            &webhook,
            "pull_request",
            "e2e-chart-sync",
            &pull_request("synchronize", &sha2),
            Some(SECRET),
        )
        .await,
    );
    settings["serve"]["concurrency"] = 3.into();
    std::fs::write(&values, settings.to_string()).unwrap();
    assert!(
        !succeeded(&github, &sha2),
        "the push was deployed before the upgrade began: nothing was pending"
    );
    release.upgrade(&chart, &values);
    serve.rolled_out(2, Duration::from_secs(180)).await;
    let after = serve.pod_names().await;
    assert!(
        after.iter().all(|pod| !before.contains(pod)),
        "the upgrade did not replace the pods: before {before:?}, after {after:?}"
    );
    serve
        .reported(&github, &sha2, Duration::from_secs(240))
        .await;
    assert_api_built_from(&preview_url(&github, &sha2), &sha2);

    let log = serve.log().await;
    for secret in [SECRET, TOKEN] {
        assert!(!log.contains(secret), "`{secret}` in the pods' log");
    }
    drop(release);
    drop(daemon);
    eprintln!(
        "serve chart: image and chart {:.1}s, installed {:.1}s, first preview {:.1}s, \
         upgraded and second preview {:.1}s (total)",
        prepared.as_secs_f64(),
        installed.as_secs_f64(),
        first_preview.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The URL of `sha`'s successful deployment (the start-up resync may have made an earlier one,
/// which the webhook's superseded).
fn preview_url(github: &FakeGitHub, sha: &str) -> String {
    let ids = deployments_for(github, sha);
    let id = ids
        .iter()
        .find(|id| github.states_of(**id).iter().any(|s| s == "success"))
        .unwrap_or_else(|| panic!("no successful deployment of {sha}:\n{}", github.dump()));
    success_url(github, *id)
}

/// The tool's image of the binary under test, pushed to the cluster's registry by
/// `scripts/release image`, as REGISTRY/sandbox@DIGEST. Its tag is the digest of what goes into
/// it (the binary, the Containerfile, the release script): an unchanged build reuses the image
/// already in the registry instead of building and pushing ~150 MB again.
fn tool_image() -> String {
    let binary = env!("CARGO_BIN_EXE_sandbox");
    let mut inputs = Sha256::new();
    for file in [
        Path::new(binary),
        &root().join("Containerfile"),
        &root().join("scripts/release"),
    ] {
        inputs.update(std::fs::read(file).unwrap());
    }
    let tag = format!("e2e-{}", &hex::encode(inputs.finalize())[..16]);
    let pushed = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{REGISTRY}/sandbox:{tag}"))
        .output();
    if let Some(out) = pushed.ok().filter(|o| o.status.success()) {
        let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        return format!("{REGISTRY}/sandbox@{digest}");
    }
    let out = Command::new(root().join("scripts/release"))
        .args([
            "image",
            "--binary",
            binary,
            "--registry",
            REGISTRY,
            "--tag",
            &tag,
        ])
        .output()
        .expect("scripts/release runs");
    assert!(
        out.status.success(),
        "scripts/release image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `scripts/release chart`: the chart packaged (.tgz) with `image` in its values.
fn packaged_chart(image: &str, out: &Path) -> std::path::PathBuf {
    let made = Command::new(root().join("scripts/release"))
        .args(["chart", "--image", image, "--out"])
        .arg(out)
        .output()
        .expect("scripts/release runs");
    assert!(
        made.status.success(),
        "scripts/release chart failed:\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let path = std::path::PathBuf::from(String::from_utf8(made.stdout).unwrap().trim());
    assert!(path.extension().is_some_and(|e| e == "tgz"), "{path:?}");
    path
}

async fn create_namespace_and_secret(client: &Client, system: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": system}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let age_key = std::fs::read_to_string(root().join("example/age-test-key.txt")).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": RELEASE},
        "stringData": {"webhook-secret": format!("{SECRET}\n"), "github-token": TOKEN, "age-keys.txt": age_key},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), system)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// The release's values: the product inline (its sandbox.yaml and templates), GitHub and the
/// repositories where the test serves them, and a reaper that never runs (in this shared cluster
/// it would reap every product's expired sandboxes).
fn values_for(product: &Product, github_url: &str, git_url: &str) -> Value {
    let mut files = serde_json::Map::new();
    for entry in std::fs::read_dir(product.path().join("templates")).unwrap() {
        let entry = entry.unwrap();
        files.insert(
            format!("templates/{}", entry.file_name().to_string_lossy()),
            std::fs::read_to_string(entry.path()).unwrap().into(),
        );
    }
    json!({
        "fullnameOverride": RELEASE,
        "product": {
            "config": std::fs::read_to_string(product.path().join("sandbox.yaml")).unwrap(),
            "files": files,
        },
        "githubApiUrl": github_url,
        "serve": {"shutdownGrace": "20s"},
        "terminationGracePeriodSeconds": 60,
        "extraEnv": [
            {"name": "SANDBOX_EXAMPLE_REPOS", "value": git_url},
            {"name": "SANDBOX_REGISTRY", "value": "10.200.0.2:5000"},
        ],
        "reaper": {"suspend": true},
    })
}

/// A Helm release of the chart in namespace `system`, uninstalled on drop (its ClusterRoles
/// and the Role in `default` outlive the test's namespace otherwise).
struct HelmRelease {
    system: String,
}

impl HelmRelease {
    fn install(chart: &Path, system: &str, values: &Path) -> HelmRelease {
        helm(&["install", RELEASE], chart, system, values);
        HelmRelease {
            system: system.to_owned(),
        }
    }

    fn upgrade(&self, chart: &Path, values: &Path) {
        helm(&["upgrade", RELEASE], chart, &self.system, values);
    }
}

impl Drop for HelmRelease {
    fn drop(&mut self) {
        let _ = Command::new("helm")
            .args(["uninstall", RELEASE, "--namespace", &self.system])
            .output();
    }
}

fn helm(action: &[&str], chart: &Path, system: &str, values: &Path) {
    let out = Command::new("helm")
        .args(action)
        .arg(chart)
        .args(["--namespace", system, "--values"])
        .arg(values)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {action:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The release's serve pods, Deployment and Service.
struct ChartPods {
    client: Client,
    system: String,
}

impl ChartPods {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.system)
    }

    async fn serve_pods(&self) -> Vec<Pod> {
        let serve = "app.kubernetes.io/component=serve";
        self.pods()
            .list(&ListParams::default().labels(serve))
            .await
            .unwrap()
            .items
    }

    /// The pods serving now: those not terminating (an old replica may still be finishing or
    /// handing back its work).
    async fn pod_names(&self) -> Vec<String> {
        let pods = self.serve_pods().await;
        pods.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    /// Every serve pod's container statuses and log.
    async fn log(&self) -> String {
        let mut out = String::new();
        for pod in self.serve_pods().await {
            let name = pod.metadata.name.clone().unwrap();
            let statuses = pod.status.and_then(|s| s.container_statuses);
            out += &format!("--- pod {name}: {statuses:?}\n");
            out += &self
                .pods()
                .logs(&name, &LogParams::default())
                .await
                .unwrap_or_default();
        }
        out
    }

    /// Wait until revision `revision` of the Deployment runs: both replicas updated and ready,
    /// no old pod left.
    async fn rolled_out(&self, revision: u32, limit: Duration) {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.system);
        let done = kube::runtime::wait::await_condition(
            deployments,
            RELEASE,
            move |d: Option<&Deployment>| {
                let Some(d) = d else { return false };
                let at_revision = d
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                    .is_some_and(|r| *r == revision.to_string());
                let observed =
                    d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation;
                let status = d.status.clone().unwrap_or_default();
                at_revision
                    && observed
                    && status.updated_replicas == Some(2)
                    && status.ready_replicas == Some(2)
                    && status.replicas == Some(2)
            },
        );
        if tokio::time::timeout(limit, done).await.is_err() {
            panic!(
                "revision {revision} of the serve Deployment did not roll out within {limit:?}:\n{}",
                self.log().await
            );
        }
    }

    /// The Service's `http://IP`, once it answers /healthz (a pod is ready before kube-proxy
    /// has programmed the Service's endpoints).
    async fn service_url(&self, limit: Duration) -> String {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.system);
        let spec = services.get(RELEASE).await.unwrap().spec.unwrap();
        let url = format!("http://{}", spec.cluster_ip.unwrap());
        let started = Instant::now();
        loop {
            let health = reqwest::get(format!("{url}/healthz")).await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return url;
            }
            if started.elapsed() > limit {
                panic!("the Service does not reach serve:\n{}", self.log().await);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Wait for a `success` for `sha` on GitHub; a `failure` ends the wait at once.
    async fn reported(&self, github: &FakeGitHub, sha: &str, limit: Duration) {
        let started = Instant::now();
        while !succeeded(github, sha) {
            if reached(github, sha, "failure") || started.elapsed() > limit {
                panic!(
                    "no success for {sha} within {limit:?}:\n{}\n{}",
                    github.dump(),
                    self.log().await
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

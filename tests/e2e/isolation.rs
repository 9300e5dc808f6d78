//! Isolation and cost: the sandbox's quota, limit range, network policies and Pod Security
//! level; the caps on how many sandboxes there may be; sleep and wake.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;

use crate::support::{cluster, up, up_ok, Product, TestNamespace};

/// Append `text` to the product's sandbox.yaml.
fn add_to_config(product: &Product, text: &str) {
    let path = product.path().join("sandbox.yaml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(text);
    std::fs::write(&path, config).unwrap();
}

/// The worker gets a template of its own whose container asks for `memory` of limit.
fn worker_asks_for(product: &Product, memory: &str) {
    let service = std::fs::read_to_string(product.path().join("templates/service.yaml")).unwrap();
    let worker = service.replace(
        "          imagePullPolicy: IfNotPresent\n",
        &format!("          imagePullPolicy: IfNotPresent\n          resources: {{limits: {{memory: {memory}}}}}\n"),
    );
    assert_ne!(worker, service);
    std::fs::write(product.path().join("templates/worker.yaml"), worker).unwrap();
    product.edit_config(
        "    templates: [templates/service.yaml]\n    values: {script: worker/run.sh}",
        "    templates: [templates/worker.yaml]\n    values: {script: worker/run.sh}",
    );
}

async fn namespace_labels(
    client: &kube::Client,
    ns: &str,
) -> std::collections::BTreeMap<String, String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .get(ns)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default()
}

/// A pod over the quota fails `up` at once with the quota, what was asked and what is left;
/// everything deployed before stays as it is. Then the namespace's objects follow the config:
/// dropped from it, they are pruned.
#[tokio::test]
async fn a_pod_over_the_quota_fails_fast_and_the_namespace_objects_follow_the_config() {
    let Some(client) = cluster("quota").await else {
        return;
    };
    let product = Product::new("quota");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    add_to_config(
        &product,
        "\nlimits:\n  limits: {memory: 3Gi}\n  pods: 40\n  container_defaults:\n    limits: {memory: 64Mi}\n    requests: {memory: 32Mi}\nnetwork_policy:\n  allow_from: [{namespace: ingress-nginx}]\n",
    );
    worker_asks_for(&product, "4Gi");
    let (ok, text) = up(&product, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("Deployment `worker` cannot create its pods: ResourceQuota `sandbox-quota` refuses them (limits.memory: asked 4Gi"),
        "{text}"
    );
    assert!(text.contains("left of 3Gi"), "{text}");
    assert!(
        !text.contains("was not ready after"),
        "a refusal is no timeout: {text}"
    );

    // What the worker waited for is there and ready.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    for name in ["db", "cache", "api"] {
        let d = deployments.get(name).await.unwrap();
        assert_eq!(d.status.unwrap().ready_replicas, Some(1), "{name}");
    }
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    let quota = quotas.get("sandbox-quota").await.unwrap();
    let hard = quota.spec.unwrap().hard.unwrap();
    assert_eq!(hard["limits.memory"].0, "3Gi");
    assert_eq!(hard["pods"].0, "40");
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &ns.name);
    let range = ranges.get("sandbox-defaults").await.unwrap();
    let limit = &range.spec.unwrap().limits[0];
    assert_eq!(limit.default.as_ref().unwrap()["memory"].0, "64Mi");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let policy = policies.get("sandbox-isolation").await.unwrap();
    let from = policy.spec.unwrap().ingress.unwrap()[0]
        .from
        .clone()
        .unwrap();
    assert_eq!(from.len(), 2, "{from:?}");
    let allowed = from[1].namespace_selector.as_ref().unwrap();
    assert_eq!(
        allowed.match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
        "ingress-nginx"
    );
    let labels = namespace_labels(&client, &ns.name).await;
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");

    // The worker fits once it asks for less; without `limits` and with the policy turned off,
    // the quota, the limit range and the policy go; a stricter Pod Security level is set.
    worker_asks_for_less(&product);
    let config = std::fs::read_to_string(product.path().join("sandbox.yaml")).unwrap();
    let (kept, _) = config.split_once("\nlimits:\n").unwrap();
    std::fs::write(
        product.path().join("sandbox.yaml"),
        format!("{kept}\nnetwork_policy: {{enabled: false}}\npod_security: privileged\n"),
    )
    .unwrap();
    let text = up_ok(&product, &[]);
    for pruned in [
        "pruned v1/ResourceQuota/sandbox-quota",
        "pruned v1/LimitRange/sandbox-defaults",
        "pruned networking.k8s.io/v1/NetworkPolicy/sandbox-isolation",
    ] {
        assert!(text.contains(pruned), "{pruned}: {text}");
    }
    assert!(quotas.get_opt("sandbox-quota").await.unwrap().is_none());
    assert!(policies
        .get_opt("sandbox-isolation")
        .await
        .unwrap()
        .is_none());
    let labels = namespace_labels(&client, &ns.name).await;
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");
}

fn worker_asks_for_less(product: &Product) {
    let path = product.path().join("templates/worker.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("memory: 4Gi", "memory: 48Mi")).unwrap();
}

/// At `pod_security: restricted` the example's pods (root, no seccomp profile) are refused by
/// the tool itself, on every server version (1.20–1.24 enforce no Pod Security): `validate` and
/// `up` name the object, each field and the level, and nothing is created.
#[tokio::test]
async fn pods_the_pod_security_level_refuses_are_refused_before_anything_is_created() {
    let Some(client) = cluster("pod security").await else {
        return;
    };
    let product = Product::new("podsec");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    add_to_config(&product, "\npod_security: restricted\n");
    let expected = [
        "templates/service.yaml: Deployment `db` of service `db` is refused by Pod Security `restricted` (`pod_security` in sandbox.yaml):",
        "`spec.template.spec.containers[0].securityContext.runAsNonRoot` is unset: restricted needs it true",
        "set `pod_security: baseline` in sandbox.yaml",
    ];
    let mut validate = product.sandbox(&["validate", "--branch", "feature-x"]);
    let mut up = product.sandbox(&["up", "--branch", "feature-x"]);
    for cmd in [&mut validate, &mut up] {
        let stderr = crate::support::run_failing(cmd);
        for text in expected {
            assert!(stderr.contains(text), "`{text}` missing in:\n{stderr}");
        }
    }
    assert!(!ns.exists().await, "{} was created", ns.name);
}

/// With `max_sandboxes: 2`, three `up`s of new branches at once: exactly two sandboxes are
/// made, and the third `up` fails with the cap's message and the sandboxes it could `down`.
#[tokio::test]
async fn concurrent_ups_never_overshoot_the_cap() {
    let Some(client) = cluster("caps").await else {
        return;
    };
    let product = Product::new("caps");
    // A product of its own: the cap counts every sandbox of the product in the cluster.
    product.edit_config("name: shop\n", "name: e2e-capped\n");
    add_to_config(&product, "\nlimits:\n  max_sandboxes: 2\n");
    let branches = ["main", "feature-x", "feature-y"];
    let mut claimed = Vec::new();
    for b in branches {
        claimed.push(TestNamespace::claim(&client, &product.namespace(b)).await);
    }
    let runs: Vec<_> = branches
        .iter()
        .map(|b| {
            product
                .sandbox(&["up", "--branch", b])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = runs
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .collect();
    let failed: Vec<String> = outputs
        .iter()
        .filter(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    let all: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    assert_eq!(failed.len(), 1, "{all:#?}");
    assert!(
        failed[0].contains("product `e2e-capped` has 2 sandboxes, and `limits.max_sandboxes` in"),
        "{}",
        failed[0]
    );
    assert!(
        failed[0].contains(
            "hint: free a place by deleting one of those, or raise `limits.max_sandboxes`"
        ),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("the oldest of them:"), "{}", failed[0]);
    assert!(failed[0].contains("(owner e2e, created "), "{}", failed[0]);
    assert!(
        failed[0].contains("`sandbox down --branch "),
        "{}",
        failed[0]
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let made = namespaces
        .list(&kube::api::ListParams::default().labels("sandbox.dev/sandbox=e2e-capped"))
        .await
        .unwrap()
        .items;
    assert_eq!(made.len(), 2, "exactly two sandboxes exist");
    let mut existing = 0;
    for ns in &claimed {
        existing += usize::from(ns.exists().await);
    }
    assert_eq!(existing, 2);
}

/// Pods of the sandbox that run or are about to (not the finished pods of Jobs).
async fn live_pods(client: &kube::Client, ns: &str) -> Vec<String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, Some("Running" | "Pending"))
        })
        .map(|p| p.metadata.name.unwrap())
        .collect()
}

async fn annotation(client: &kube::Client, ns: &str, key: &str) -> Option<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let annotations = namespaces.get(ns).await.unwrap().metadata.annotations;
    annotations.unwrap_or_default().get(key).cloned()
}

/// The CronJob API the cluster serves (`batch/v1beta1` before Kubernetes 1.21).
async fn cronjob_resource(client: &kube::Client) -> kube::discovery::ApiResource {
    for version in ["v1", "v1beta1"] {
        let gvk = kube::api::GroupVersionKind::gvk("batch", version, "CronJob");
        if let Ok((resource, _)) = kube::discovery::pinned_kind(client, &gvk).await {
            return resource;
        }
    }
    panic!("the cluster serves no CronJob API");
}

/// The worker gets two CronJobs: `nightly`, and `paused`, which its template suspends.
fn worker_has_cronjobs(product: &Product, api_version: &str) {
    let cronjob = |name: &str, suspend: &str| {
        format!(
            r#"apiVersion: {api_version}
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "0 3 * * *"{suspend}
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: report
              image: docker.io/local/busybox:1
              imagePullPolicy: IfNotPresent
              command: ["true"]
"#
        )
    };
    let text = [
        cronjob("nightly", ""),
        cronjob("paused", "\n  suspend: true"),
    ]
    .join("---\n");
    std::fs::write(product.path().join("templates/cron.yaml"), text).unwrap();
    product.edit_config(
        "    templates: [templates/service.yaml]\n    values: {script: worker/run.sh}",
        "    templates: [templates/service.yaml, templates/cron.yaml]\n    values: {script: worker/run.sh}",
    );
}

/// Each of the tool's CronJobs in `ns`: whether it is suspended, and its resourceVersion.
async fn cronjobs(
    client: &kube::Client,
    resource: &kube::discovery::ApiResource,
    ns: &str,
) -> std::collections::BTreeMap<String, (bool, String)> {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    let ours = kube::api::ListParams::default().labels(crate::support::OURS);
    let list = api.list(&ours).await.unwrap().items;
    list.into_iter()
        .map(|c| {
            let suspended = c.data["spec"]["suspend"].as_bool() == Some(true);
            let version = c.metadata.resource_version.unwrap();
            (c.metadata.name.unwrap(), (suspended, version))
        })
        .collect()
}

/// Which of the tool's CronJobs in `ns` are suspended.
async fn suspended(
    client: &kube::Client,
    resource: &kube::discovery::ApiResource,
    ns: &str,
) -> Vec<(String, bool)> {
    let all = cronjobs(client, resource, ns).await;
    all.into_iter().map(|(name, (s, _))| (name, s)).collect()
}

fn pairs(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

/// `sleep` scales every workload to zero and suspends the CronJobs, and says so in the record
/// and in `list`; `wake` brings every service back without writing a ConfigMap, Secret or
/// Service, and resumes only the CronJobs it suspended (not one the template suspends); an
/// unchanged `up` after it applies nothing; `reap` puts to sleep a sandbox unused for its
/// `idle_after`, and leaves one used within its own alone.
/// (The reaper CronJob of another test may run `reap --all-products` meanwhile: the idle
/// sandbox may be asleep already when this test's `reap` looks.)
#[tokio::test]
async fn sleep_wake_and_reap_of_idle_sandboxes() {
    let Some(client) = cluster("sleep").await else {
        return;
    };
    let product = Product::new("sleep");
    // A product of its own, so `reap` looks at no one else's sandboxes.
    product.edit_config("name: shop\n", "name: e2e-sleepy\n");
    add_to_config(&product, "\nidle_after: 1h\n");
    let cronjob_api = cronjob_resource(&client).await;
    worker_has_cronjobs(&product, &cronjob_api.api_version);
    let a = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let b = TestNamespace::claim(&client, &product.namespace("main")).await;
    // `idle_after` is recorded at each `up`: an hour for `main`, 15 s for `feature-x`.
    crate::support::run_ok(&mut product.sandbox(&["up", "--branch", "main"]));
    product.edit_config("idle_after: 1h", "idle_after: 15s");
    up_ok(&product, &[]);
    let before = crate::support::versions(&client, &a.name).await;

    let running = pairs(&[("nightly", false), ("paused", true)]);
    assert_eq!(suspended(&client, &cronjob_api, &a.name).await, running);

    let slept = crate::support::run_ok(&mut product.sandbox(&["sleep", "--branch", "feature-x"]));
    let said = String::from_utf8_lossy(&slept.stdout);
    assert!(said.contains(", 1 CronJob suspended"), "{said}");
    let asleep = pairs(&[("nightly", true), ("paused", true)]);
    assert_eq!(suspended(&client, &cronjob_api, &a.name).await, asleep);
    assert_eq!(
        annotation(&client, &a.name, "sandbox.dev/sleep-suspended").await,
        Some(r#"["nightly"]"#.to_owned()),
        "only the CronJob the sleep suspended is remembered"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &a.name);
    for d in deployments.list(&Default::default()).await.unwrap().items {
        assert_eq!(d.spec.unwrap().replicas, Some(0));
    }
    let gone = async {
        while !live_pods(&client, &a.name).await.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), gone)
        .await
        .expect("every pod of the sleeping sandbox goes");
    assert_eq!(
        annotation(&client, &a.name, "sandbox.dev/status")
            .await
            .as_deref(),
        Some("sleeping")
    );
    let list = crate::support::run_ok(&mut product.sandbox(&["list", "--output", "json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let row = rows
        .iter()
        .find(|r| r["namespace"] == a.name.as_str())
        .unwrap();
    assert_eq!(row["status"], "sleeping");
    assert!(row["sleeping_since"].is_string(), "{row}");

    let woken = crate::support::run_ok(&mut product.sandbox(&["wake", "--branch", "feature-x"]));
    let said = String::from_utf8_lossy(&woken.stdout);
    assert!(said.contains(", 1 CronJob resumed"), "{said}");
    assert_eq!(suspended(&client, &cronjob_api, &a.name).await, running);
    for d in deployments.list(&Default::default()).await.unwrap().items {
        let name = d.metadata.name.clone().unwrap();
        let want = d.spec.unwrap().replicas.unwrap();
        assert!(want > 0, "{name}");
        assert_eq!(
            d.status.unwrap().ready_replicas,
            Some(want),
            "{name} is ready"
        );
    }
    let after = crate::support::versions(&client, &a.name).await;
    for (key, version) in &before {
        if ["ConfigMap/", "Secret/", "Service/"]
            .iter()
            .any(|k| key.starts_with(k))
        {
            assert_eq!(after.get(key), Some(version), "{key} was written by wake");
        }
    }
    assert_eq!(
        annotation(&client, &a.name, "sandbox.dev/status")
            .await
            .as_deref(),
        Some("ready")
    );
    assert_eq!(
        annotation(&client, &a.name, "sandbox.dev/sleep-replicas").await,
        None
    );
    assert_eq!(
        annotation(&client, &a.name, "sandbox.dev/sleep-suspended").await,
        None
    );
    // An unchanged `up` after the wake applies nothing: no CronJob is written (or suspended).
    let woken_cronjobs = cronjobs(&client, &cronjob_api, &a.name).await;
    up_ok(&product, &[]);
    assert_eq!(
        cronjobs(&client, &cronjob_api, &a.name).await,
        woken_cronjobs
    );

    // `feature-x` unused past its 15 s, `main` within its hour: `reap` sleeps only the first.
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    let reap = crate::support::run_ok(&mut product.sandbox(&["reap"]));
    let said = String::from_utf8_lossy(&reap.stdout);
    let slept_by_another_reaper = said.is_empty() || said.contains("no expired or idle");
    assert!(
        said.contains(&format!("put to sleep: {}", a.name)) || slept_by_another_reaper,
        "{said}"
    );
    assert!(!said.contains(&b.name), "{said}");
    assert_eq!(
        annotation(&client, &a.name, "sandbox.dev/status")
            .await
            .as_deref(),
        Some("sleeping")
    );
    assert_eq!(
        annotation(&client, &b.name, "sandbox.dev/status")
            .await
            .as_deref(),
        Some("ready")
    );
    assert!(!live_pods(&client, &b.name).await.is_empty());
    assert_eq!(suspended(&client, &cronjob_api, &a.name).await, asleep);
    assert_eq!(suspended(&client, &cronjob_api, &b.name).await, running);

    // `up` wakes it too, CronJobs and all.
    up_ok(&product, &[]);
    assert_eq!(
        annotation(&client, &a.name, "sandbox.dev/sleep-replicas").await,
        None
    );
    assert!(!live_pods(&client, &a.name).await.is_empty());
    assert_eq!(suspended(&client, &cronjob_api, &a.name).await, running);
}

//! A sandbox's life after the first `up`: idempotent re-up with prune, rollback, the lock,
//! interruption, the inspection commands, and the reaper running as a CronJob in the cluster.

use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;

use crate::support::{
    apply_yaml, changed_between, cluster, describe, root, run_failing, run_ok, spawn_up, up, up_ok,
    versions, Product, TestNamespace,
};

#[tokio::test]
async fn reup_touches_nothing_then_rolls_only_the_changed_service_and_prunes() {
    let Some(client) = cluster("re-up and prune").await else {
        return;
    };
    let product = Product::new("reup");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    // The worker gets a template of its own, and the API an extra ConfigMap.
    std::fs::copy(
        product.path().join("templates/service.yaml"),
        product.path().join("templates/worker.yaml"),
    )
    .unwrap();
    std::fs::write(
        product.path().join("templates/api-extra.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: api-extra\ndata:\n  note: temporary\n",
    )
    .unwrap();
    product.edit_config(
        "    templates: [templates/service.yaml]\n    values: {script: worker/run.sh}",
        "    templates: [templates/worker.yaml]\n    values: {script: worker/run.sh}",
    );
    product.edit_config(
        "    templates: [templates/service.yaml]\n    smoke: [templates/smoke.yaml]\n    values:\n      script: api/run.sh",
        "    templates: [templates/service.yaml, templates/api-extra.yaml]\n    smoke: [templates/smoke.yaml]\n    values:\n      script: api/run.sh",
    );
    up_ok(&product, &[]);
    let first = versions(&client, &ns.name).await;
    assert!(first.contains_key("ConfigMap/api-extra"), "{first:?}");

    // Unchanged: not one object is written.
    let text = up_ok(&product, &[]);
    assert!(text.contains("nothing changed"), "{text}");
    assert_eq!(
        versions(&client, &ns.name).await,
        first,
        "an unchanged re-up changed objects"
    );

    // A template change rolls exactly the worker; a removed template's objects are pruned.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    // Pods on their way out (Terminating) no longer count.
    let worker_pods = |list: Vec<Pod>| -> Vec<String> {
        list.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    let before_pods = worker_pods(
        pods.list(&ListParams::default().labels("app=worker"))
            .await
            .unwrap()
            .items,
    );
    let worker_template = product.path().join("templates/worker.yaml");
    let text = std::fs::read_to_string(&worker_template).unwrap();
    std::fs::write(
        &worker_template,
        text.replace(
            "            - {name: SERVICE,",
            "            - {name: WORKER_BATCH, value: \"8\"}\n            - {name: SERVICE,",
        ),
    )
    .unwrap();
    product.edit_config(
        "[templates/service.yaml, templates/api-extra.yaml]",
        "[templates/service.yaml]",
    );
    let text = up_ok(&product, &[]);
    assert!(text.contains("pruned v1/ConfigMap/api-extra"), "{text}");
    let second = versions(&client, &ns.name).await;
    let changed = changed_between(&first, &second);
    // Exactly the worker changed and api-extra went; the smoke Job ran again to prove the change
    // (and the gateway's test Pod, which this list leaves out with the other pods).
    assert_eq!(
        changed,
        ["ConfigMap/api-extra", "Deployment/worker", "Job/smoke-api"],
        "{first:?}\n{second:?}"
    );
    assert!(!second.contains_key("ConfigMap/api-extra"));
    let after_pods = worker_pods(
        pods.list(&ListParams::default().labels("app=worker"))
            .await
            .unwrap()
            .items,
    );
    assert!(
        after_pods.iter().all(|p| !before_pods.contains(p)),
        "worker pods rolled: {before_pods:?} → {after_pods:?}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let worker = deployments.get("worker").await.unwrap();
    let env = &worker.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(env.iter().any(|e| e.name == "WORKER_BATCH"));
}

#[tokio::test]
async fn a_failed_update_is_rolled_back() {
    let Some(client) = cluster("rollback").await else {
        return;
    };
    let product = Product::new("rollback");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    up_ok(&product, &[]);
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
        text.contains("rolled back to its last good revision"),
        "{text}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let cache = deployments.get("cache").await.unwrap();
    let image = cache
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap();
    assert_eq!(image, "docker.io/local/busybox:1");
    let status = cache.status.unwrap();
    assert_eq!(status.ready_replicas, Some(1));
    assert_eq!(status.updated_replicas, Some(1));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let annotations = namespaces
        .get(&ns.name)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(annotations["sandbox.dev/status"], "ready");
    // Why the last up failed stays on the record (serve's status page shows it) until an up
    // succeeds.
    let last_error = &annotations["sandbox.dev/last-error"];
    assert!(
        last_error.contains("could not deploy sandbox") && last_error.contains("cache"),
        "{last_error}"
    );
    // The failed revision's stuck pod outlives the rollback for a while (its ReplicaSet is
    // scaled down after), and a pod being deleted can linger too: neither is the next run's.
    // (Found in CI.) A finalizer holds a stuck pod in deletion here for sure.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let leftover: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "cache-leftover",
            "labels": {"sandbox.dev/service": "cache", "sandbox.dev/role": "service"},
            "finalizers": ["e2e.sandbox.dev/hold"],
        },
        "spec": {"containers": [{"name": "cache", "image": "docker.io/local/no-such-image:1"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &leftover)
        .await
        .unwrap();
    let pulling_failed = |p: Option<&Pod>| {
        let statuses = p.and_then(|p| p.status.as_ref()?.container_statuses.clone());
        let reason = statuses
            .into_iter()
            .flatten()
            .find_map(|c| c.state?.waiting?.reason);
        reason.is_some_and(|r| r.contains("Image"))
    };
    let stuck =
        kube::runtime::wait::await_condition(pods.clone(), "cache-leftover", pulling_failed);
    tokio::time::timeout(Duration::from_secs(120), stuck)
        .await
        .unwrap()
        .unwrap();
    pods.delete("cache-leftover", &DeleteParams::default())
        .await
        .unwrap();
    // A change to cache makes this run wait on a new rollout, so the leftover is seen first.
    let (ok, text) = up(&product, &["--set", "cache.env.MAX_MEMORY=65mb"]);
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    pods.patch(
        "cache-leftover",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&release),
    )
    .await
    .unwrap();
    assert!(ok, "{text}");
    let annotations = namespaces
        .get(&ns.name)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert!(
        !annotations.contains_key("sandbox.dev/last-error"),
        "{annotations:?}"
    );
}

#[tokio::test]
async fn concurrent_runs_on_one_sandbox_are_serialised() {
    let Some(client) = cluster("lock").await else {
        return;
    };
    let product = Product::new("lock");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let first = spawn_up(&product, &[]);
    // Once the first run holds the lock, a --no-wait run fails at once and a waiting run queues.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let held = kube::runtime::wait::await_condition(leases, "sandbox-lock", |l: Option<&Lease>| {
        l.is_some()
    });
    tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .expect("the first up takes the lock")
        .unwrap();
    let mut no_wait = product.sandbox(&["up", "--branch", "feature-x", "--no-wait"]);
    let stderr = run_failing(&mut no_wait);
    assert!(
        stderr.contains("is locked by") && stderr.contains("(pid "),
        "{stderr}"
    );
    let second = spawn_up(&product, &[]);
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    let (e1, e2) = (
        String::from_utf8_lossy(&first.stderr),
        String::from_utf8_lossy(&second.stderr),
    );
    assert!(first.status.success(), "{e1}");
    assert!(second.status.success(), "{e2}");
    assert!(
        e2.contains("waiting for the lock"),
        "the second run waited:\n{e2}"
    );
}

#[tokio::test]
async fn an_interrupted_up_is_finished_by_the_next() {
    let Some(client) = cluster("interrupt").await else {
        return;
    };
    let product = Product::new("sigint");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let child = product
        .sandbox(&["up", "--branch", "feature-x"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt mid-deploy: once the first services exist and before the gateway does.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let started = kube::runtime::wait::await_condition(
        deployments.clone(),
        "db",
        |d: Option<&Deployment>| d.is_some(),
    );
    tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .expect("deploy starts")
        .unwrap();
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: sandbox") && stderr.contains("run `sandbox up` again"),
        "{stderr}"
    );
    assert!(
        deployments.get_opt("gateway").await.unwrap().is_none(),
        "interrupted before the end"
    );
    // The lock was given back: the next up does not wait for it to expire.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        leases.get_opt("sandbox-lock").await.unwrap().is_none(),
        "the lock was released"
    );
    let text = up_ok(&product, &["--no-wait"]);
    assert!(text.contains("is ready"), "{text}");
    let list = deployments.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 7);
    assert!(list
        .items
        .iter()
        .all(|d| d.status.as_ref().unwrap().ready_replicas == Some(1)));
}

#[tokio::test]
async fn list_status_logs_diff_validate_extend_and_down() {
    let Some(client) = cluster("inspection commands").await else {
        return;
    };
    let product = Product::new("inspect");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    up_ok(&product, &[]);
    let run = |args: &[&str]| -> String {
        let mut cmd = product.sandbox(args);
        String::from_utf8(run_ok(&mut cmd).stdout).unwrap()
    };
    let list: serde_json::Value =
        serde_json::from_str(&run(&["list", "--output", "json"])).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["namespace"] == ns.name.as_str())
        .expect("listed");
    assert_eq!(row["status"], "ready");
    assert_eq!(row["branch"], "feature-x");
    assert_eq!(row["product"], "shop");
    assert!(row["url"].as_str().unwrap().starts_with("http://"));
    assert_eq!(
        row["repos"]["data"].as_str().unwrap().len(),
        "1234567 (main)".len()
    );

    // kubectl's output flags: wide adds the owner and commits, name prints the first column.
    // Other sandboxes may be listed too (the demo's, a developer's, other tests'): their cells
    // set the columns' widths, so only the order of the columns and our own row are asserted.
    let wide = run(&["list", "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    let columns = [
        "NAMESPACE",
        "PRODUCT",
        "BRANCH",
        "STATUS",
        "AGE",
        "EXPIRES",
        "URL",
        "OWNER",
        "REPOS",
    ];
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        columns,
        "{wide}"
    );
    let line = wide
        .lines()
        .find(|l| l.starts_with(&format!("{} ", ns.name)))
        .expect("listed");
    let cell = |column: &str| {
        let start = header.find(column).unwrap();
        assert!(
            start == 0 || line[..start].ends_with(' '),
            "`{column}` starts mid-cell in {line:?}\n{wide}"
        );
        line[start..].split_whitespace().next().unwrap_or_default()
    };
    assert_eq!(cell("STATUS"), "ready", "{wide}");
    assert_eq!(cell("BRANCH"), "feature-x", "{wide}");
    assert_eq!(cell("OWNER"), "e2e", "{wide}");
    assert!(cell("REPOS").contains("data@"), "{wide}");
    assert!(
        run(&["list", "-o", "name"]).lines().any(|l| l == ns.name),
        "list -o name"
    );
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(&run(&["status", "-b", "feature-x", "-o", "yaml"])).unwrap();
    assert_eq!(yaml.as_array().unwrap().len(), 7, "{yaml}");
    let names = run(&["render", "-b", "feature-x", "-o", "name"]);
    assert!(names.lines().any(|l| l == "deployment.apps/api"), "{names}");
    assert!(names.lines().any(|l| l == "job.batch/smoke-api"), "{names}");

    let status = run(&["status", "--branch", "feature-x"]);
    for service in ["api", "cache", "db", "gateway", "orders", "web", "worker"] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(service) && l.contains("1/1")),
            "{status}"
        );
    }
    let logs = run(&["logs", "worker", "--branch", "feature-x"]);
    assert!(
        logs.lines()
            .any(|l| l.starts_with("[worker/worker-") && l.contains("worker: job")),
        "{logs}"
    );
    // kubectl's flags: a container, timestamps, a selector; and what has no log is an error.
    let stamped = run(&[
        "logs",
        "worker",
        "-b",
        "feature-x",
        "-c",
        "worker",
        "--timestamps",
    ]);
    assert!(
        stamped.lines().any(|l| l.starts_with("[worker/worker-")
            && l.split(' ')
                .nth(1)
                .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok())
            && l.contains("worker: job")),
        "{stamped}"
    );
    let selected = run(&[
        "logs",
        "-b",
        "feature-x",
        "-l",
        "sandbox.dev/service=worker",
    ]);
    assert!(
        selected.lines().all(|l| l.starts_with("[worker/worker-")),
        "{selected}"
    );
    assert!(selected.contains("worker: job"), "{selected}");
    for (args, error) in [
        (
            &["logs", "worker", "-b", "feature-x", "-c", "nope"][..],
            "no pods of service `worker` with a container `nope`",
        ),
        (
            &["logs", "worker", "-b", "feature-x", "--previous"][..],
            "no container had the logs asked for",
        ),
    ] {
        let out = product.sandbox(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(error),
            "{args:?}: {stderr}"
        );
    }

    let diff = run(&["diff", "--branch", "feature-x"]);
    assert!(
        diff.ends_with("0 to create, 0 to update, 0 to prune, 32 unchanged\n"),
        "{diff}"
    );
    // As `kubectl diff`: 0 when nothing would change (above, `run` checks), 1 when something
    // would, 2 or above for an error.
    let mut changed = product.sandbox(&[
        "diff",
        "--branch",
        "feature-x",
        "--set",
        "worker.replicas=2",
    ]);
    let out = changed.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(sandbox::error::EXIT_CHANGES),
        "{}",
        describe(&changed, &out)
    );
    let diff = String::from_utf8(out.stdout).unwrap();
    assert!(
        diff.contains(
            "--- live/apps/v1/Deployment/worker\n+++ sandbox/apps/v1/Deployment/worker\n@@"
        ) && diff.contains("-  replicas: 1\n+  replicas: 2\n"),
        "{diff}"
    );
    assert!(!diff.contains("sandbox-demo-db-password"), "{diff}");
    let out = product
        .sandbox(&[
            "diff",
            "-b",
            "feature-x",
            "--set",
            "worker.replicas=2",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(sandbox::error::EXIT_CHANGES));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = json["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{json}");
    assert_eq!(changes[0]["object"], "apps/v1/Deployment/worker");
    assert!(
        changes[0]["fields"]
            .as_array()
            .unwrap()
            .contains(&"spec.replicas: 1 → 2".into()),
        "{json}"
    );
    let mut broken = product.sandbox(&["diff", "--branch", "feature-x", "--context", "no-such"]);
    let out = broken.output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| c >= 2),
        "{}",
        describe(&broken, &out)
    );

    let validate = run(&["validate", "--branch", "feature-x"]);
    assert!(validate.contains("32 objects accepted"), "{validate}");

    let extended = run(&["extend", "--branch", "feature-x", "--ttl", "5d"]);
    assert!(extended.contains("now expires at"), "{extended}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let expires: jiff::Timestamp = namespaces
        .get(&ns.name)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap()["sandbox.dev/expires-at"]
        .parse()
        .unwrap();
    let left = expires.duration_since(jiff::Timestamp::now()).as_hours();
    assert!((119..=120).contains(&left), "{left}h");

    // `down --dry-run` names the sandbox and leaves it.
    let dry = run(&["down", "--branch", "feature-x", "--dry-run"]);
    assert!(
        dry.contains(&format!("would delete sandbox `{}`", ns.name)) && dry.contains("feature-x"),
        "{dry}"
    );
    assert!(ns.exists().await, "a dry run deletes nothing");

    let down = product
        .sandbox(&["down", "--branch", "feature-x"])
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!ns.exists().await, "down waits until the namespace is gone");
}

/// Two products with the same namespace prefix map a branch to the same namespace. Each must
/// leave the other's sandbox alone: `up` does not adopt it, `down` and `reap` do not delete it.
#[tokio::test]
async fn two_products_with_one_prefix_never_touch_each_others_sandbox() {
    let Some(client) = cluster("two products, one prefix").await else {
        return;
    };
    let shop = Product::new("twins");
    let billing = Product::new("twins");
    billing.edit_config("name: shop", "name: billing");
    assert_eq!(shop.namespace("feature-x"), billing.namespace("feature-x"));
    let ns = TestNamespace::claim(&client, &shop.namespace("feature-x")).await;
    // shop's sandbox of feature-x, expired (so a reaper would take it).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let theirs: Namespace = serde_json::from_value(serde_json::json!({"metadata": {
        "name": ns.name,
        "labels": {"app.kubernetes.io/managed-by": "sandbox", "sandbox.dev/sandbox": "shop"},
        "annotations": {"sandbox.dev/branch": "feature-x", "sandbox.dev/owner": "e2e", "sandbox.dev/expires-at": "2001-01-01T00:00:00Z"},
    }}))
    .unwrap();
    let version = namespaces
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap()
        .metadata
        .resource_version;

    let fails = |product: &Product, args: &[&str]| run_failing(&mut product.sandbox(args));
    let refused = format!(
        "namespace `{}` is a sandbox of product `shop`, not of `billing`",
        ns.name
    );
    let stderr = fails(&billing, &["up", "--branch", "feature-x"]);
    assert!(stderr.contains(&refused), "{stderr}");
    assert!(stderr.contains("namespace_prefix` of its own"), "{stderr}");
    let stderr = fails(&billing, &["down", "--branch", "feature-x"]);
    assert!(stderr.contains(&refused), "{stderr}");
    let stderr = fails(&billing, &["down", "--branch", "feature-x", "--dry-run"]);
    assert!(stderr.contains(&refused), "{stderr}");
    let stderr = fails(
        &billing,
        &["extend", "--branch", "feature-x", "--ttl", "1d"],
    );
    assert!(stderr.contains(&refused), "{stderr}");
    let reaped = run_ok(&mut billing.sandbox(&["reap"]));
    assert!(
        !String::from_utf8_lossy(&reaped.stdout).contains(&ns.name),
        "{reaped:?}"
    );
    let after = namespaces.get(&ns.name).await.unwrap();
    assert!(
        after.metadata.deletion_timestamp.is_none(),
        "billing deleted shop's sandbox"
    );
    assert_eq!(
        after.metadata.resource_version, version,
        "billing changed shop's sandbox"
    );

    // shop's own commands do see it as theirs.
    let dry = run_ok(&mut shop.sandbox(&["reap", "--dry-run"]));
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(dry.contains(&format!("would delete: {}", ns.name)), "{dry}");
    run_ok(&mut shop.sandbox(&["down", "--branch", "feature-x"]));
    assert!(!ns.exists().await, "shop's down deletes shop's sandbox");
}

#[tokio::test]
async fn the_reaper_cronjob_deletes_exactly_the_expired_sandboxes() {
    let Some(client) = cluster("reaper").await else {
        return;
    };
    let system = TestNamespace::claim(&client, "e2e-reap-system").await;
    let past = "2001-01-01T00:00:00Z";
    let future = "2999-01-01T00:00:00Z";
    let cases = [
        ("e2e-reap-expired", Some("sandbox"), past, false),
        ("e2e-reap-fresh", Some("sandbox"), future, true),
        ("e2e-reap-unowned", None, past, true),
        ("e2e-reap-expired-lookalike", None, past, true),
        ("e2e-reap-helm", Some("helm"), past, true),
    ];
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut guards = Vec::new();
    for (name, managed_by, expires, _) in cases {
        guards.push(TestNamespace::claim(&client, name).await);
        // The tool labels every sandbox with its product.
        let labels = managed_by
            .map(|m| serde_json::json!({"app.kubernetes.io/managed-by": m, "sandbox.dev/sandbox": "shop"}))
            .unwrap_or(serde_json::json!({}));
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {
            "name": name, "labels": labels,
            "annotations": {"sandbox.dev/expires-at": expires, "sandbox.dev/branch": name, "sandbox.dev/owner": "e2e"},
        }}))
        .unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }

    // The dry run names exactly the one expired sandbox of these.
    let product = Product::new("reap");
    let mut dry = product.sandbox(&["reap", "--dry-run"]);
    let out = String::from_utf8(run_ok(&mut dry).stdout).unwrap();
    let named: Vec<&str> = out.lines().filter(|l| l.contains("e2e-reap-")).collect();
    assert_eq!(named, ["would delete: e2e-reap-expired (branch e2e-reap-expired, owner e2e, expired at 2001-01-01T00:00:00Z)"], "{out}");

    // The reaper in the cluster: the sandbox binary in an image, its ServiceAccount and RBAC only.
    run_ok(Command::new(root().join("scripts/images")).args([
        "sandbox",
        env!("CARGO_BIN_EXE_sandbox"),
        "e2e",
    ]));
    let mut manifests = product.sandbox(&[
        "reaper-manifests",
        "--image",
        "docker.io/local/sandbox:e2e",
        "--namespace",
        &system.name,
        "--schedule",
        "* * * * *",
        "--confine",
        "sandbox-system/sandbox-serve",
    ]);
    let yaml = String::from_utf8(run_ok(&mut manifests).stdout).unwrap();
    assert!(
        yaml.contains("apiVersion: batch/v1beta1\nkind: CronJob"),
        "1.20 serves CronJob as batch/v1beta1:\n{yaml}"
    );
    assert!(
        !yaml.contains("ValidatingAdmissionPolicy"),
        "1.20 serves no admission policies: none is printed (it would not apply):\n{yaml}"
    );
    apply_yaml(&client, &system.name, &yaml).await;

    let gone = kube::runtime::wait::await_condition(
        namespaces.clone(),
        "e2e-reap-expired",
        |n: Option<&Namespace>| n.is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
    );
    let reaped = tokio::time::timeout(Duration::from_secs(150), gone).await;
    // The reaper prints its report when it is done: wait for its Job to complete.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &system.name);
    for _ in 0..100 {
        let done = jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0);
        if done || reaped.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &system.name);
    let mut logs = String::new();
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        logs += &pods
            .logs(pod.metadata.name.as_deref().unwrap(), &Default::default())
            .await
            .unwrap_or_default();
    }
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    let _ = roles
        .delete("sandbox-reaper", &DeleteParams::default())
        .await;
    let _ = bindings
        .delete("sandbox-reaper", &DeleteParams::default())
        .await;
    assert!(
        reaped.is_ok(),
        "the CronJob did not reap in time; jobs: {:?}\nlogs:\n{logs}",
        jobs.list(&ListParams::default()).await.unwrap().items.len()
    );
    assert!(logs.contains("deleted: e2e-reap-expired"), "{logs}");
    for (name, _, _, kept) in cases {
        let ns = namespaces.get_opt(name).await.unwrap();
        let alive = ns.is_some_and(|n| n.metadata.deletion_timestamp.is_none());
        assert_eq!(alive, kept, "{name}");
    }
}

#[test]
fn shell_completions_are_printed() {
    // `completion` is kubectl's and helm's spelling.
    for spelling in ["completions", "completion"] {
        let product_free = Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .args([spelling, "bash"])
            .output()
            .unwrap();
        assert!(product_free.status.success(), "{spelling}");
        let text = String::from_utf8(product_free.stdout).unwrap();
        assert!(
            text.contains("_sandbox()") && text.contains("reaper-manifests"),
            "{spelling}: {}",
            &text[..text.len().min(300)]
        );
    }
}

#[test]
fn version_names_the_commit_and_the_kubernetes_range_and_help_the_exit_codes() {
    let run = |arg: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .arg(arg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{arg}");
        String::from_utf8(out.stdout).unwrap()
    };
    let version = run("--version");
    let (name, rest) = version.trim_end().split_once(' ').unwrap();
    assert_eq!(name, "sandbox", "{version}");
    let sha = rest
        .strip_prefix(concat!(env!("CARGO_PKG_VERSION"), " (git "))
        .and_then(|r| r.strip_suffix(", Kubernetes 1.20–1.33)"))
        .unwrap_or_else(|| panic!("{version}"));
    assert!(
        sha == "unknown" || (sha.len() >= 7 && sha.chars().all(|c| c.is_ascii_hexdigit())),
        "{version}"
    );
    let help = run("--help");
    for line in [
        "  0    success",
        "  1    `diff`",
        "  2    a failure",
        "  70   a bug",
        "  130  interrupted",
    ] {
        assert!(help.contains(line), "{line} not in:\n{help}");
    }
}

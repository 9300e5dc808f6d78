//! `sandbox up --branch feature-x` on the example product, end to end.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::ListParams;
use kube::Api;

use crate::support::{cluster, describe, http_get, Product, TestNamespace};

#[tokio::test]
async fn up_feature_x_deploys_seven_services_from_three_repos() {
    let Some(client) = cluster("up feature-x").await else {
        return;
    };
    let product = Product::new("up");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;

    let mut cmd = product.sandbox(&["up", "--branch", "feature-x"]);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}", describe(&cmd, &out));

    // The URL is the last line of stdout, and the only thing there.
    let url = stdout.lines().last().expect("a URL on stdout").to_owned();
    assert_eq!(stdout.trim(), url, "stdout carries only the URL");
    assert!(url.starts_with("http://"), "{url}");

    // The decrypted database password never shows.
    let secret = "sandbox-demo-db-password-7f3a";
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "a secret leaked:\n{stderr}"
    );
    assert!(
        stderr.contains("data") && stderr.contains("fell back to `main`"),
        "{stderr}"
    );

    // All seven services are ready.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let list = deployments.list(&ListParams::default()).await.unwrap();
    let mut names: Vec<String> = list
        .items
        .iter()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["api", "cache", "db", "gateway", "orders", "web", "worker"]
    );
    for d in &list.items {
        let status = d.status.as_ref().unwrap();
        assert_eq!(
            status.ready_replicas,
            Some(1),
            "{} not ready",
            d.metadata.name.as_deref().unwrap()
        );
    }

    // The backend's services run the backend repo's image for feature-x's commit, pinned.
    let backend_image = format!(
        "{}/shop/backend:{}@sha256:",
        crate::support::registry(),
        product.sha("backend", "feature-x")
    );
    for d in &list.items {
        let name = d.metadata.name.as_deref().unwrap();
        let spec = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let image = spec.containers[0].image.as_deref().unwrap();
        match name {
            "api" | "orders" | "worker" => {
                assert!(image.starts_with(&backend_image), "{name}: {image}")
            }
            _ => assert!(!image.contains('@'), "{name}: {image}"),
        }
    }

    // Each migration completed before its API's pods started.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    for api in ["api", "orders"] {
        let job = jobs.get(&format!("{api}-migrate")).await.unwrap();
        let finished = job
            .status
            .unwrap()
            .completion_time
            .expect("migration completed")
            .0;
        let api_pods = pods
            .list(&ListParams::default().labels(&format!("app={api}")))
            .await
            .unwrap();
        assert!(!api_pods.items.is_empty());
        for pod in api_pods.items {
            let created = pod.metadata.creation_timestamp.unwrap().0;
            assert!(
                finished <= created,
                "{api}: migration finished at {finished}, pod created at {created}"
            );
        }
    }

    // The API's smoke Job and the gateway chart's test Pod passed, their logs streamed.
    let api_smoke = jobs.get("smoke-api").await.unwrap();
    assert_eq!(api_smoke.status.unwrap().succeeded, Some(1));
    let test_pod = pods.get("gateway-test-page").await.unwrap();
    assert_eq!(
        test_pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    for smoke in ["smoke-api", "gateway-test-page"] {
        assert!(
            stderr.contains(&format!("[smoke/{smoke}]")),
            "smoke logs streamed with a prefix:\n{stderr}"
        );
    }

    // The charts' hooks ran where helm would run them: web's pre-install Job completed before
    // web's pods were created; its post-install Job started once web was ready and finished
    // before the gateway (which depends on web) was created; the gateway's test Pod started
    // once the gateway was ready.
    let created = |p: &Pod| p.metadata.creation_timestamp.clone().unwrap().0;
    let ready_at = |p: &Pod| {
        let conditions = p.status.as_ref().unwrap().conditions.clone().unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        ready.last_transition_time.clone().unwrap().0
    };
    let pods_of = |app: &str| {
        let pods = pods.clone();
        let selector = format!("app={app},sandbox.dev/role=service");
        async move {
            pods.list(&ListParams::default().labels(&selector))
                .await
                .unwrap()
                .items
        }
    };
    let completed = |job: Job| job.status.unwrap().completion_time.expect("completed").0;
    let web_pods = pods_of("web").await;
    let gateway_pods = pods_of("gateway").await;
    let check = jobs.get("web-check-upstreams").await.unwrap();
    let warm = jobs.get("web-warm").await.unwrap();
    let warm_created = warm.metadata.creation_timestamp.clone().unwrap().0;
    let (check_done, warm_done) = (completed(check), completed(warm));
    for web in &web_pods {
        assert!(
            check_done <= created(web),
            "pre-install hook after web's pod"
        );
        assert!(
            ready_at(web) <= warm_created,
            "post-install hook before web was ready"
        );
    }
    for gateway in &gateway_pods {
        assert!(
            warm_done <= created(gateway),
            "gateway created before web's post-install finished"
        );
        assert!(
            ready_at(gateway) <= created(&test_pod),
            "test hook before the gateway was ready"
        );
    }

    // The namespace records who, what and until when.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let meta = namespaces.get(&ns.name).await.unwrap().metadata;
    let labels = meta.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "sandbox");
    let annotations = meta.annotations.unwrap();
    assert_eq!(annotations["sandbox.dev/branch"], "feature-x");
    assert_eq!(annotations["sandbox.dev/owner"], "e2e");
    assert!(annotations["sandbox.dev/repos"].contains(&product.sha("backend", "feature-x")));

    // The page behind the URL shows each service's branch and commit: feature-x where the repo
    // has it, main where it does not.
    let page = http_get(&url);
    let expect = [
        ("gateway", "frontend", "feature-x"),
        ("web", "frontend", "feature-x"),
        ("api", "backend", "feature-x"),
        ("orders", "backend", "feature-x"),
        ("worker", "backend", "feature-x"),
        ("db", "data", "main"),
        ("cache", "data", "main"),
    ];
    for (service, repo, branch) in expect {
        let line = format!(
            "service={service} repo={repo} branch={branch} sha={}",
            product.sha(repo, branch)
        );
        assert!(
            page.lines().any(|l| l == line),
            "missing `{line}` in the page:\n{page}"
        );
    }
    assert!(
        page.contains("check=api-db-auth result=ok"),
        "the secret reached the API pods:\n{page}"
    );
    assert!(!page.contains("FAILED"), "{page}");
    assert!(!page.contains(secret));
}

/// `--timeout` overrides `timeouts:` (1ms: nothing is ready that fast), and `--wait=false`
/// applies everything in dependency order and returns: the sandbox is `applied`, not `ready`.
#[tokio::test]
async fn timeout_overrides_the_config_and_wait_false_applies_and_returns() {
    let Some(client) = cluster("up --timeout, --wait=false").await else {
        return;
    };
    let product = Product::new("nowait");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let mut hurried = product.sandbox(&["up", "--branch", "feature-x", "--timeout", "1ms"]);
    let out = hurried.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("was not ready after 0s")
            && stderr.contains("up --timeout"),
        "{}",
        describe(&hurried, &out)
    );

    let mut applied = product.sandbox(&["up", "--branch", "feature-x", "--wait=false"]);
    let out = applied.output().unwrap();
    assert!(out.status.success(), "{}", describe(&applied, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--wait=false"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .starts_with("http://"));
    let list = product.sandbox(&["list", "-o", "json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["namespace"] == ns.name.as_str())
        .expect("listed");
    assert_eq!(row["status"], "applied");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    assert_eq!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        7
    );
}

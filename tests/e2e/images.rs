//! Images per commit from the local cluster's real registry: the backend's services run the
//! backend repo's image, `${SANDBOX_REGISTRY}/…/backend:<sha>`, built by buildah when missing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::Api;

use super::company_network::TestRegistry;
use crate::support::{
    cluster, describe, registry, run_failing, run_ok, up, up_ok, Product, TestNamespace,
};

/// The example product with the backend's image in a repository of its own, so that no earlier
/// run has pushed it.
fn product_with_fresh_repository(name: &str) -> (Product, String) {
    let product = Product::new(name);
    let unique = format!(
        "e2e-{name}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    product.edit_config(
        "repository: ${SANDBOX_REGISTRY}/shop/backend",
        &format!("repository: ${{SANDBOX_REGISTRY}}/{unique}/backend"),
    );
    let repository = format!("{}/{unique}/backend", registry());
    (product, repository)
}

/// A failed `up` created nothing.
async fn assert_no_namespace(client: &kube::Client, product: &Product) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let name = product.namespace("feature-x");
    assert!(
        namespaces.get_opt(&name).await.unwrap().is_none(),
        "a failed up created namespace {name}"
    );
}

/// The image of a Deployment's first container.
async fn image_of(deployments: &Api<Deployment>, name: &str) -> String {
    let d = deployments.get(name).await.unwrap();
    d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// The digest the kubelet pulled for the running pods of `app`.
async fn running_digests(pods: &Api<Pod>, app: &str) -> Vec<String> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .flat_map(|p| p.status.unwrap().container_statuses.unwrap_or_default())
        .map(|c| c.image_id.rsplit('@').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn missing_images_are_built_pinned_by_digest_and_never_rebuilt() {
    let Some(client) = cluster("images build").await else {
        return;
    };
    let (product, repository) = product_with_fresh_repository("img-build");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let text = up_ok(&product, &[]);
    let sha = product.sha("backend", "feature-x");
    let tagged = format!("{repository}:{sha}");
    assert!(text.contains(&format!("building {tagged} for ")), "{text}");
    assert!(
        text.contains(&format!("built and pushed {tagged}")),
        "{text}"
    );
    assert!(
        text.contains("[build/"),
        "the build's log is streamed:\n{text}"
    );

    // Every backend service runs the pinned digest, and the kubelet pulled exactly that.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let image = image_of(&deployments, "api").await;
    let (reference, digest) = image.split_once('@').expect("pinned by digest");
    assert_eq!(reference, tagged);
    assert!(digest.starts_with("sha256:"), "{image}");
    for service in ["api", "orders", "worker"] {
        assert_eq!(image_of(&deployments, service).await, image);
        assert_eq!(running_digests(&pods, service).await, [digest]);
    }
    assert_eq!(
        image_of(&deployments, "db").await,
        "docker.io/local/busybox:1"
    );

    // A second up builds nothing and changes nothing.
    let text = up_ok(&product, &[]);
    assert!(!text.contains("building "), "{text}");
    assert!(text.contains("nothing changed"), "{text}");

    // Re-tagging the commit's tag to other content does not change the running sandbox: a pod
    // that is replaced comes back on the pinned digest.
    run_ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/local/busybox:1", registry()),
        &format!("docker://{tagged}"),
    ]));
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=worker"),
    )
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let running = running_digests(&pods, "worker").await;
        if running == [digest] {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{running:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(image_of(&deployments, "worker").await, image);
}

#[tokio::test]
async fn a_missing_image_without_build_fails_clearly_or_is_waited_for() {
    let Some(client) = cluster("images wait").await else {
        return;
    };
    let (product, repository) = product_with_fresh_repository("img-wait");
    // A copy of the config that may build, for "CI" to publish the image with.
    let with_build = std::fs::read_to_string(product.path().join("sandbox.yaml")).unwrap();
    std::fs::write(product.path().join("ci.yaml"), &with_build).unwrap();
    product.edit_config(
        "      build:\n        containerfile: Containerfile\n        args: {BASE: \"${SANDBOX_REGISTRY}/local/busybox:1\"}\n",
        "",
    );
    let sha = product.sha("backend", "feature-x");
    let (ok, text) = up(&product, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "error: service `api`: no image {repository}:{sha} for repo `backend` at commit {sha}"
        )),
        "{text}"
    );
    assert!(text.contains("hint: CI has not published it yet"), "{text}");
    assert_no_namespace(&client, &product).await;
    let _ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;

    // Waiting: CI publishes the image 5 s later, and the same up goes through.
    let mut waiting = product.sandbox(&["up", "--branch", "feature-x", "--wait-for-images", "2m"]);
    let child = waiting
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut ci = product.sandbox(&["--config", "ci.yaml", "images", "--branch", "feature-x"]);
    let published = run_ok(&mut ci);
    assert!(
        String::from_utf8_lossy(&published.stdout).contains(&format!("{repository}:{sha}@sha256:")),
        "{}",
        describe(&ci, &published)
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&waiting, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("waiting for {repository}:{sha}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_named_with_a_hint_and_nothing_is_created() {
    let Some(client) = cluster("images registry down").await else {
        return;
    };
    let product = Product::new("img-down");
    // Nothing listens on this port of the node.
    let down = "10.200.0.2:5999";
    let mut cmd = product.sandbox(&["up", "--branch", "feature-x"]);
    cmd.env("SANDBOX_REGISTRY", down);
    let stderr = run_failing(&mut cmd);
    assert!(
        stderr.contains(&format!(
            "error: service `api`: could not resolve image {down}/shop/backend:"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("the registry {down} is unreachable")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hint: is the registry at {down} running")),
        "{stderr}"
    );
    assert_no_namespace(&client, &product).await;
}

#[tokio::test]
async fn a_registry_that_wants_credentials_gets_them_from_the_auth_file_or_says_how_to_log_in() {
    // A registry of its own, with htpasswd auth, on 127.0.0.1.
    let private = TestRegistry::start(false, Some(("ci", "e2e-registry-pass")));
    let product = Product::new("img-auth");
    // Resolving only: without `build:` a found-but-missing image is a plain "no image" error.
    product.edit_config(
        "      build:\n        containerfile: Containerfile\n        args: {BASE: \"${SANDBOX_REGISTRY}/local/busybox:1\"}\n",
        "",
    );
    let auth_file = product.path().join("auth.json");
    let images = |creds: Option<&str>| {
        let mut cmd = product.sandbox(&["images", "--branch", "feature-x"]);
        cmd.env("SANDBOX_REGISTRY", &private.address)
            .env("HOME", product.path())
            .env_remove("DOCKER_CONFIG");
        match creds {
            Some(creds) => {
                use base64::Engine as _;
                let auth = base64::engine::general_purpose::STANDARD.encode(creds);
                let json = format!(
                    r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
                    private.address
                );
                std::fs::write(&auth_file, json).unwrap();
                cmd.env("REGISTRY_AUTH_FILE", &auth_file);
            }
            None => {
                cmd.env_remove("REGISTRY_AUTH_FILE");
            }
        }
        run_failing(&mut cmd)
    };
    let registry = &private.address;
    let stderr = images(None);
    assert!(
        stderr.contains(&format!("the registry {registry} requires credentials for shop/backend, and none are configured")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "hint: log in to {registry} (`skopeo login {registry}`"
        )),
        "{stderr}"
    );
    let stderr = images(Some("ci:wrong-password"));
    assert!(
        stderr.contains(&format!(
            "the registry {registry} refused the credentials for shop/backend"
        )),
        "{stderr}"
    );
    // The right credentials get through: the registry answers that it has no such image.
    let stderr = images(Some("ci:e2e-registry-pass"));
    assert!(
        stderr.contains("error: service `api`: no image "),
        "{stderr}"
    );
    assert!(!stderr.contains("e2e-registry-pass"), "{stderr}");
}

#[tokio::test]
async fn a_failed_build_shows_its_last_lines_and_deploys_nothing() {
    let Some(client) = cluster("images build failure").await else {
        return;
    };
    let (product, repository) = product_with_fresh_repository("img-broken");
    let sha = product.commit("backend", "feature-x", "a broken Containerfile", |dir| {
        let path = dir.join("Containerfile");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(path, format!("{text}COPY no-such-dir /opt/\n")).unwrap();
    });
    let (ok, text) = up(&product, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "error: service `api`: building image {repository}:{sha} failed (build: exit status:"
        )),
        "{text}"
    );
    assert!(text.contains("its last lines:"), "{text}");
    assert!(
        text.contains("no-such-dir"),
        "the last lines name the cause:\n{text}"
    );
    assert!(text.contains("hint: the build's output is above"), "{text}");
    assert_no_namespace(&client, &product).await;
}

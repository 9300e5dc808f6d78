//! Resolving against a stand-in registry that speaks the distribution API's auth dance (a
//! Bearer token realm, Basic), indexes and manifests. The real registry (Debian's
//! docker-registry) is exercised by the end-to-end tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use base64::Engine as _;

use super::*;
use crate::error::Hint;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const ARM_DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// How the stand-in registry guards its manifests.
#[derive(Clone, Copy, PartialEq)]
enum Guard {
    Open,
    /// 401 with a Bearer challenge; the token realm wants Basic `ci:pw`.
    Bearer,
    /// 401 with a Basic challenge; wants `ci:pw`.
    Basic,
}

#[derive(Clone)]
struct Fake {
    guard: Guard,
    base: String,
    /// What was asked, for assertions: "METHOD path auth-scheme".
    seen: Arc<Mutex<Vec<String>>>,
}

fn basic_ok(headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ci:pw")
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

async fn manifest(
    State(fake): State<Fake>,
    method: Method,
    Path((repo, reference)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    fake.seen
        .lock()
        .unwrap()
        .push(format!("{method} {repo}:{reference} {auth}"));
    let allowed = match fake.guard {
        Guard::Open => true,
        Guard::Bearer => {
            headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0ken")
        }
        Guard::Basic => basic_ok(&headers),
    };
    if !allowed {
        let challenge = match fake.guard {
            Guard::Bearer => format!(
                r#"Bearer realm="{}/token",service="fake",scope="repository:{repo}:pull""#,
                fake.base
            ),
            _ => r#"Basic realm="fake""#.to_owned(),
        };
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response();
    }
    let asked = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.contains(&format!(" {repo}:{reference} ")))
        .count();
    match (repo.as_str(), reference.as_str()) {
        // Missing when first asked, there from then on: pushed by someone else during a build.
        ("shop/late", _) if asked > 1 => (
            [
                ("content-type", "application/vnd.oci.image.manifest.v1+json"),
                ("docker-content-digest", DIGEST),
            ],
            "{}",
        )
            .into_response(),
        ("shop/api", "abc") => (
            [
                ("content-type", "application/vnd.oci.image.manifest.v1+json"),
                ("docker-content-digest", DIGEST),
            ],
            "{}",
        )
            .into_response(),
        ("shop/multi", "abc") => {
            let index = serde_json::json!({"manifests": [
                {"digest": ARM_DIGEST, "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": DIGEST, "platform": {"os": "linux", "architecture": "amd64"}},
            ]});
            (
                [("content-type", "application/vnd.oci.image.index.v1+json")],
                index.to_string(),
            )
                .into_response()
        }
        // A registry that sends no digest header: the client hashes the manifest.
        ("shop/nodigest", "abc") => (
            [(
                "content-type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )],
            "manifest-body",
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn token(headers: HeaderMap) -> Response {
    if basic_ok(&headers) {
        axum::Json(serde_json::json!({"token": "t0ken"})).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

async fn start(guard: Guard) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fake = Fake {
        guard,
        base: base.clone(),
        seen: seen.clone(),
    };
    let app = Router::new()
        .route("/v2/{a}/{b}/manifests/{reference}", any(manifest_two))
        .route("/token", get(token))
        .with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base.trim_start_matches("http://").to_owned(), seen)
}

/// `/v2/shop/api/manifests/abc`: a two-component repository.
async fn manifest_two(
    state: State<Fake>,
    method: Method,
    Path((a, b, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    manifest(
        state,
        method,
        Path((format!("{a}/{b}"), reference)),
        headers,
    )
    .await
}

/// An environment whose auth file holds `creds` for `registry` (none: no file).
fn env_with(
    dir: &tempfile::TempDir,
    registry: &str,
    creds: Option<&str>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(creds) = creds {
        let file = dir.path().join("auth.json");
        let auth = base64::engine::general_purpose::STANDARD.encode(creds);
        std::fs::write(
            &file,
            format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
        env.insert("REGISTRY_AUTH_FILE".to_owned(), file.display().to_string());
    }
    env
}

async fn digest_of(
    registry: &str,
    path: &str,
    env: &BTreeMap<String, String>,
) -> Result<Option<String>, registry::RegistryError> {
    let lookup = |k: &str| env.get(k).cloned();
    let registries = Registries::new(&[registry.to_owned()], &lookup);
    let name = ImageName::parse(&format!("{registry}/{path}")).unwrap();
    let platform = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
    };
    registries.digest(&name, "abc", &platform).await
}

#[tokio::test]
async fn an_open_registry_answers_digests_indexes_and_404s() {
    let (registry, seen) = start(Guard::Open).await;
    let env = BTreeMap::new();
    assert_eq!(
        digest_of(&registry, "shop/api", &env)
            .await
            .unwrap()
            .as_deref(),
        Some(DIGEST)
    );
    assert_eq!(
        digest_of(&registry, "shop/multi", &env)
            .await
            .unwrap()
            .as_deref(),
        Some(DIGEST),
        "the index's entry for the node's platform"
    );
    let hashed = digest_of(&registry, "shop/nodigest", &env)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        hashed,
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"manifest-body"))
        )
    );
    assert_eq!(
        digest_of(&registry, "shop/missing", &env).await.unwrap(),
        None
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0], "HEAD shop/api:abc none",
        "one HEAD resolves a manifest: {seen:?}"
    );
}

#[tokio::test]
async fn bearer_and_basic_challenges_are_answered_with_the_auth_files_credentials() {
    let dir = tempfile::tempdir().unwrap();
    for guard in [Guard::Bearer, Guard::Basic] {
        let (registry, seen) = start(guard).await;
        let env = env_with(&dir, &registry, Some("ci:pw"));
        assert_eq!(
            digest_of(&registry, "shop/api", &env)
                .await
                .unwrap()
                .as_deref(),
            Some(DIGEST)
        );
        let seen = seen.lock().unwrap().clone();
        let scheme = if guard == Guard::Bearer {
            "Bearer"
        } else {
            "Basic"
        };
        assert_eq!(
            seen,
            [
                "HEAD shop/api:abc none".to_owned(),
                format!("HEAD shop/api:abc {scheme}"),
            ]
        );
    }
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_named_with_how_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = start(Guard::Bearer).await;
    let e = digest_of(&registry, "shop/api", &env_with(&dir, &registry, None))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "the registry {registry} requires credentials for shop/api, and none are configured"
        )
    );
    let e = digest_of(
        &registry,
        "shop/api",
        &env_with(&dir, &registry, Some("ci:wrong")),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    let wrapped = ImagesError::Registry {
        service: "api".into(),
        reference: "x".into(),
        source: Box::new(e),
    };
    assert!(wrapped
        .hint()
        .unwrap()
        .contains(&format!("skopeo login {registry}")));
}

#[tokio::test]
async fn an_unreachable_registry_names_its_address() {
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registry = format!("127.0.0.1:{port}");
    let e = digest_of(&registry, "shop/api", &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "the registry {registry} is unreachable (http://{registry}/v2/shop/api/manifests/abc)"
        )),
        "{e}"
    );
}

fn wanted(registry: &str, service: &str, path: &str, build: bool) -> Wanted {
    Wanted {
        service: service.into(),
        repo: "backend".into(),
        sha: "0123456789abcdef".into(),
        name: ImageName::parse(&format!("{registry}/{path}")).unwrap(),
        tag: "abc".into(),
        build: build.then(|| BuildPlan {
            context: "/nonexistent".into(),
            containerfile: "/nonexistent/Containerfile".into(),
            args: vec![],
        }),
    }
}

#[tokio::test]
async fn resolve_pins_digests_shares_lookups_and_names_a_missing_image() {
    let (registry, seen) = start(Guard::Open).await;
    let insecure = [registry.clone()];
    let registries = Registries::new(&insecure, &|_| None);
    let resolver = Resolver {
        registries: &registries,
        platform: Platform::local(),
        insecure: &insecure,
        buildah: None,
    };
    let reporter = Reporter::new(true);
    let both = [
        wanted(&registry, "api", "shop/api", false),
        wanted(&registry, "worker", "shop/api", false),
    ];
    let images = resolve(&both, Mode::Ensure { wait: None }, &resolver, &reporter)
        .await
        .unwrap();
    assert_eq!(
        images["worker"].reference,
        format!("{registry}/shop/api:abc@{DIGEST}")
    );
    assert_eq!(images["api"].digest.as_deref(), Some(DIGEST));
    assert_eq!(seen.lock().unwrap().len(), 1, "one lookup for one image");

    let offline = resolve(&both, Mode::Offline, &resolver, &reporter)
        .await
        .unwrap();
    assert_eq!(offline["api"].reference, format!("{registry}/shop/api:abc"));

    let missing = [wanted(&registry, "orders", "shop/orders", false)];
    let e = resolve(&missing, Mode::Ensure { wait: None }, &resolver, &reporter)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("service `orders`: no image {registry}/shop/orders:abc for repo `backend` at commit 0123456789abcdef")
    );
    assert!(e.hint().unwrap().contains("--wait-for-images"));
    // diff and validate leave it unpinned instead.
    let unpinned = resolve(&missing, Mode::Resolve, &resolver, &reporter)
        .await
        .unwrap();
    assert_eq!(unpinned["orders"].digest, None);

    let started = Instant::now();
    let e = resolve(
        &missing,
        Mode::Ensure {
            wait: Some(Duration::from_millis(700)),
        },
        &resolver,
        &reporter,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ImagesError::NeverAppeared { .. }), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(700));

    let to_build = [wanted(&registry, "orders", "shop/orders", true)];
    let e = resolve(&to_build, Mode::Ensure { wait: None }, &resolver, &reporter)
        .await
        .unwrap_err();
    assert!(matches!(e, ImagesError::NoBuildah { .. }), "{e}");
    // Without buildah but allowed to wait (serve in a pod), it waits for CI instead.
    let wait = Some(Duration::from_millis(300));
    let e = resolve(&to_build, Mode::Ensure { wait }, &resolver, &reporter)
        .await
        .unwrap_err();
    assert!(matches!(e, ImagesError::NeverAppeared { .. }), "{e}");
}

/// A stand-in buildah that writes what it was run with (arguments, the auth file it was given,
/// its environment) to `calls`, and succeeds.
fn fake_buildah(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let calls = dir.join("calls");
    let script = dir.join("buildah");
    let text = format!(
        "#!/bin/sh\nlog={}\necho \"CALL $*\" >> $log\nprev=\nfor a in \"$@\"; do\n  if [ \"$prev\" = --authfile ]; then echo \"AUTHFILE $(cat \"$a\")\" >> $log; fi\n  prev=$a\ndone\nenv | sed 's/^/ENV /' >> $log\n",
        calls.display()
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, calls)
}

#[tokio::test]
async fn a_build_gets_no_credentials_and_never_overwrites_a_tag() {
    let (registry, _) = start(Guard::Open).await;
    let dir = tempfile::tempdir().unwrap();
    let (buildah, calls) = fake_buildah(dir.path());
    let insecure = [registry.clone()];
    let registries = Registries::new(&insecure, &|_| None);
    let resolver = Resolver {
        registries: &registries,
        platform: Platform::local(),
        insecure: &insecure,
        buildah: Some(buildah),
    };
    let reporter = Reporter::new(true);
    let ensure = Mode::Ensure { wait: None };
    let read = || std::fs::read_to_string(&calls).unwrap_or_default();

    // The tag names the commit and appeared while building: CI (or another `up`) pushed the
    // same commit's image. It is used, not overwritten.
    let same_commit = Wanted {
        tag: "0123456".into(),
        ..wanted(&registry, "web", "shop/late", true)
    };
    let images = resolve(&[same_commit], ensure, &resolver, &reporter)
        .await
        .unwrap();
    assert_eq!(images["web"].digest.as_deref(), Some(DIGEST));
    let log = read();
    assert!(log.contains("CALL --storage-driver vfs bud "), "{log}");
    assert!(!log.contains(" push "), "overwritten:\n{log}");
    // The build reads an empty auth file and sees none of the process's environment.
    assert!(log.contains("AUTHFILE {\"auths\": {}}"), "{log}");
    assert!(log.contains("ENV PATH="), "{log}");
    assert!(
        !log.contains("ENV CARGO"),
        "the environment reached the build:\n{log}"
    );

    // A tag that does not name the commit may be another commit's image: refused.
    let other = Wanted {
        tag: "latest".into(),
        ..wanted(&registry, "web", "shop/late", true)
    };
    let e = resolve(&[other], ensure, &resolver, &reporter)
        .await
        .unwrap_err();
    assert!(matches!(e, ImagesError::TagTaken { .. }), "{e}");
    assert!(e.to_string().contains("was not overwritten"), "{e}");
    assert!(!read().contains(" push "), "overwritten:\n{}", read());

    // A tag still missing is pushed (with the process's environment: the push runs nothing of
    // the branch's).
    let fresh = wanted(&registry, "web", "shop/fresh", true);
    let _ = resolve(&[fresh], ensure, &resolver, &reporter).await;
    let log = read();
    let push = log
        .split("CALL ")
        .find(|c| c.contains(" push "))
        .expect("pushed");
    assert!(push.contains("ENV CARGO"), "{push}");
}

#[test]
fn the_build_keeps_only_where_things_are_of_the_environment() {
    let vars = [
        ("PATH", "/usr/bin"),
        ("HOME", "/root"),
        ("https_proxy", "http://proxy:3128"),
        ("BUILDAH_LAYERS", "true"),
        ("CONTAINERS_STORAGE_CONF", "/etc/s.conf"),
        ("REGISTRY_AUTH_FILE", "/run/auth.json"),
        ("DOCKER_CONFIG", "/root/.docker"),
        ("GITHUB_TOKEN", "ghp_x"),
        ("SANDBOX_GIT_TOKEN", "t"),
        ("SOPS_AGE_KEY", "AGE-SECRET-KEY-1X"),
        ("KUBECONFIG", "/root/.kube/config"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let kept: Vec<String> = build::builder_environment(vars)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kept,
        [
            "PATH",
            "HOME",
            "https_proxy",
            "BUILDAH_LAYERS",
            "CONTAINERS_STORAGE_CONF"
        ]
    );
}

#[test]
fn tags_render_from_the_checkout_and_must_be_tags() {
    let context = serde_json::json!({"repo": {"sha": "0123abc", "short_sha": "0123abc", "branch": "feature/x"}});
    assert_eq!(
        render_tag("api", "r/x", "{{repo.sha}}", &context).unwrap(),
        "0123abc"
    );
    assert_eq!(
        render_tag("api", "r/x", "v1-{{repo.short_sha}}", &context).unwrap(),
        "v1-0123abc"
    );
    let e = render_tag("api", "r/x", "{{repo.branch}}", &context).unwrap_err();
    assert!(
        e.to_string()
            .contains("renders `feature/x`, which is not a valid tag"),
        "{e}"
    );
    let e = render_tag("api", "r/x", "{{repo.nope}}", &context).unwrap_err();
    assert!(e.to_string().contains("does not render"), "{e}");
}

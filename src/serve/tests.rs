//! The service over loopback: the real HTTP server, queue and reporting, with a fake deployer
//! and the fake GitHub. (With the real cluster: `tests/e2e/serve.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::previews::Intake;
use sandbox_test_support::fake_github::FakeGitHub;

use super::github::{GitHub, COMMENT_MARKER};
use super::queue::PrRef;
use super::slack::Slack;
use super::store::tests::MemoryStore;
use super::worker::{Deployed, Destroyed, Failure};
use super::*;
use crate::pipeline::handover::RepoReport;

const SECRET: &str = "unit-webhook-secret";
const TOKEN: &str = "ghp_unittesttoken000000000000000000000";
const SHA1: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";
const SHA3: &str = "3333333333333333333333333333333333333333";

#[derive(Clone, Default)]
struct FakeDeployer {
    calls: Arc<Mutex<Vec<String>>>,
    delay: Duration,
}

impl Deployer for FakeDeployer {
    fn namespace(&self, branch: &str) -> String {
        format!("unit-{branch}")
    }

    async fn deploy(&self, branch: &str, prs: &[PrRef]) -> Result<Deployed, Failure> {
        let sha = prs.last().map(|p| p.sha.clone()).unwrap_or_default();
        self.calls
            .lock()
            .unwrap()
            .push(format!("deploy {branch} {sha}"));
        tokio::time::sleep(self.delay).await;
        if let Some(which) = branch.strip_prefix("secret-") {
            // As the real deployer: a reporter of this work's own learns what it decrypted
            // (branch `secret-a`'s chart has a value `ready`), and scrubs its error with it.
            let reporter = crate::progress::Reporter::for_one_sandbox(&tracing::Span::current());
            if which == "a" {
                reporter.add_secrets(["ready".to_owned()]);
            }
            log!(Info, "fake.waited", state = "pods not ready");
            let error = anyhow::anyhow!("deployment `web` never became ready");
            return Err(Failure::new(&error, |t| reporter.scrub(t)));
        }
        if branch == "broken" {
            let error = anyhow::anyhow!(
                "api: CrashLoopBackOff; the log said password=hunter2-decrypted and {TOKEN}; {}",
                "more ".repeat(60)
            )
            .context("could not deploy sandbox `unit-broken`");
            // The deployer scrubs what it decrypted; the service scrubs its own secrets.
            return Err(Failure::new(&error, |t| {
                t.replace("hunter2-decrypted", "<redacted>")
            }));
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("deployed {branch} {sha}"));
        Ok(Deployed {
            url: format!("http://{branch}.sandbox.test:30080/"),
            repos: vec![RepoReport {
                repo: "backend".into(),
                branch: branch.into(),
                sha,
                fell_back: false,
            }],
        })
    }

    async fn destroy(&self, branch: &str) -> Result<Destroyed, Failure> {
        // A sandbox made by hand: never deleted by the previews.
        if branch.starts_with("hand-") {
            self.calls.lock().unwrap().push(format!("kept {branch}"));
            return Ok(Destroyed::Kept {
                reason: format!("`unit-{branch}` was made by `sandbox up`"),
            });
        }
        self.calls.lock().unwrap().push(format!("destroy {branch}"));
        Ok(Destroyed::Deleted)
    }
}

/// What the status page shows: a record per branch the fake deployed.
impl status::Sandboxes for FakeDeployer {
    fn list(&self) -> futures::future::BoxFuture<'_, Result<Vec<crate::record::SandboxRecord>>> {
        let records = self
            .calls()
            .iter()
            .filter_map(|c| c.strip_prefix("deployed "))
            .filter_map(|c| c.split_once(' '))
            .map(|(branch, sha)| crate::record::SandboxRecord {
                namespace: self.namespace(branch),
                branch: branch.into(),
                status: Some(crate::record::Status::Ready),
                url: Some(format!("http://{branch}.sandbox.test:30080/")),
                prs: vec![crate::record::PrNumber {
                    repo: "octo-org/backend".into(),
                    number: 42,
                }],
                repos: [(
                    "backend".to_owned(),
                    crate::record::RepoAt {
                        branch: branch.into(),
                        sha: sha.into(),
                        fell_back: false,
                    },
                )]
                .into(),
                ..Default::default()
            })
            .collect();
        Box::pin(async move { Ok(records) })
    }
}

impl FakeDeployer {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

struct Harness {
    base: String,
    /// The status pages' listener.
    status_base: String,
    github: Arc<FakeGitHub>,
    store: Arc<MemoryStore>,
    deployer: FakeDeployer,
    queue: Arc<dyn Intake>,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<()>>,
}

impl Harness {
    async fn start(delay: Duration, max_body_bytes: usize) -> Harness {
        Harness::start_with(delay, max_body_bytes, Duration::from_secs(5)).await
    }

    async fn start_with(delay: Duration, max_body_bytes: usize, grace: Duration) -> Harness {
        let limits = http::Limits {
            max_connections: 64,
            header_read_timeout: http::Limits::DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: http::Limits::DEFAULT_REQUEST_TIMEOUT,
        };
        Harness::start_limited(delay, max_body_bytes, grace, limits).await
    }

    async fn start_limited(
        delay: Duration,
        max_body_bytes: usize,
        grace: Duration,
        limits: http::Limits,
    ) -> Harness {
        let github = Arc::new(FakeGitHub::start().await);
        let store = Arc::new(MemoryStore::default());
        Harness::launch(github, store, delay, max_body_bytes, grace, limits).await
    }

    /// Another service on the same state and GitHub: a restart, or a second replica.
    async fn another(&self, delay: Duration) -> Harness {
        let limits = http::Limits {
            max_connections: 64,
            header_read_timeout: http::Limits::DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: http::Limits::DEFAULT_REQUEST_TIMEOUT,
        };
        let (github, store) = (self.github.clone(), self.store.clone());
        Harness::launch(
            github,
            store,
            delay,
            1 << 20,
            Duration::from_secs(5),
            limits,
        )
        .await
    }

    async fn launch(
        github: Arc<FakeGitHub>,
        store: Arc<MemoryStore>,
        delay: Duration,
        max_body_bytes: usize,
        grace: Duration,
        limits: http::Limits,
    ) -> Harness {
        log::add_secret(TOKEN);
        let deployer = FakeDeployer {
            delay,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let status_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let status_base = format!("http://{}", status_listener.local_addr().unwrap());
        let options = Options {
            secret: SECRET.as_bytes().to_vec(),
            concurrency: 2,
            max_body_bytes,
            limits,
            reporting: Reporting {
                github: Some(GitHub::new(&github.url, Some(TOKEN.into())).unwrap()),
                comment: true,
                slack: Some(Slack::new(&github.slack_url()).unwrap()),
                environment_prefix: scope::ENVIRONMENT_PREFIX.into(),
            },
            shutdown_grace: grace,
            scope: scope::Scope::of(
                &[
                    ("backend", "octo-org/backend"),
                    ("frontend", "octo-org/frontend"),
                ],
                false,
                scope::ENVIRONMENT_PREFIX,
            ),
            status: status::StatusPage {
                product: "unit".into(),
                github_web: "https://github.example".into(),
                sandboxes: Arc::new(deployer.clone()),
                token: None,
            },
            status_listener: Some(status_listener),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (queue_tx, queue_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve(
            listener,
            options,
            deployer.clone(),
            store.clone(),
            move |q| {
                let _ = queue_tx.send(q);
            },
            async {
                let _ = stopped.await;
            },
        ));
        Harness {
            base,
            status_base,
            github,
            store,
            deployer,
            queue: queue_rx.await.unwrap(),
            http: reqwest::Client::new(),
            stop: Some(stop),
            server,
        }
    }

    async fn post(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> (StatusCode, Value) {
        self.post_signed("/webhook", event, delivery, body, signature)
            .await
    }

    /// A signed delivery to `path`.
    async fn post_to(
        &self,
        path: &str,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let signature = signature::sign(SECRET.as_bytes(), body);
        self.post_signed(path, event, delivery, body, Some(signature))
            .await
    }

    async fn post_signed(
        &self,
        path: &str,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("user-agent", "GitHub-Hookshot/abc1234")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A delivery signed with the right secret.
    async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> (StatusCode, Value) {
        let signature = signature::sign(SECRET.as_bytes(), body);
        self.post(event, delivery, body, Some(signature)).await
    }

    fn calls(&self) -> Vec<String> {
        self.deployer.calls()
    }

    async fn stop(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A pull_request event from the fixtures, for `branch` at `sha`.
fn pull_request(action: &str, branch: &str, sha: &str) -> Vec<u8> {
    let mut v = fixture(&format!("pull_request.{action}.json"));
    v["pull_request"]["head"]["ref"] = branch.into();
    v["pull_request"]["head"]["sha"] = sha.into();
    if action == "synchronize" {
        v["after"] = sha.into();
    }
    serde_json::to_vec(&v).unwrap()
}

/// Poll `check` for up to 5 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 5s: {what}");
}

#[tokio::test]
async fn refused_deliveries_run_nothing() {
    let mut h = Harness::start(Duration::ZERO, 64 * 1024).await;
    let body = pull_request("opened", "feature-x", SHA1);

    let health = h
        .http
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // No signature, a wrong one, a malformed one, one for another body.
    let (status, answer) = h.post("pull_request", "d-1", &body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let wrong = signature::sign(b"not the secret", &body);
    assert_eq!(
        h.post("pull_request", "d-2", &body, Some(wrong)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.post("pull_request", "d-3", &body, Some("sha256=nothex".into()))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let other = signature::sign(SECRET.as_bytes(), b"{}");
    assert_eq!(
        h.post("pull_request", "d-4", &body, Some(other)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Too large: refused before anything else, even when signed.
    let mut huge = fixture("pull_request.opened.json");
    huge["pull_request"]["body"] = "x".repeat(100 * 1024).into();
    let huge = serde_json::to_vec(&huge).unwrap();
    let (status, answer) = h.deliver("pull_request", "d-5", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");

    // Signed but not JSON, or not the shape of a pull_request event.
    assert_eq!(
        h.deliver("pull_request", "d-6", b"{\"action\": ").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.deliver("pull_request", "d-7", br#"{"action":"opened"}"#)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A refused delivery is not remembered: its redelivery, fixed, is taken... (here: still bad)
    assert_eq!(
        h.deliver("pull_request", "d-6", b"[]").await.0,
        StatusCode::BAD_REQUEST
    );

    // Form-encoded webhooks are not supported: said so.
    let form = b"payload=%7B%7D";
    let response = h
        .http
        .post(format!("{}/webhook", h.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-github-event", "pull_request")
        .header(
            "x-hub-signature-256",
            signature::sign(SECRET.as_bytes(), form),
        )
        .body(form.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.calls().is_empty(), "{:?}", h.calls());
    assert!(h.github.calls().is_empty(), "{}", h.github.dump());
    assert_eq!(h.queue.busy(), 0);
    h.stop().await;
}

#[tokio::test]
async fn ping_other_events_and_other_actions_are_acknowledged() {
    let mut h = Harness::start(Duration::ZERO, 1 << 20).await;
    let ping = serde_json::to_vec(&fixture("ping.json")).unwrap();
    let (status, answer) = h.deliver("ping", "p-1", &ping).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "pong");

    let (status, answer) = h
        .deliver("issues", "p-2", br#"{"action":"opened","issue":{}}"#)
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("ignored"))
    );

    let mut labeled = fixture("pull_request.opened.json");
    labeled["action"] = "labeled".into();
    let (status, answer) = h
        .deliver(
            "pull_request",
            "p-3",
            &serde_json::to_vec(&labeled).unwrap(),
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("ignored"))
    );

    // A fork's pull request: its branch is not in the product's repositories.
    let mut fork = fixture("pull_request.opened.json");
    fork["pull_request"]["head"]["repo"]["full_name"] = "mallory/backend".into();
    let (status, answer) = h
        .deliver("pull_request", "p-4", &serde_json::to_vec(&fork).unwrap())
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("ignored"))
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.calls().is_empty(), "{:?}", h.calls());
    h.stop().await;
}

#[tokio::test]
async fn the_status_page_and_metrics_are_on_their_own_listener_not_the_webhooks() {
    let mut h = Harness::start(Duration::ZERO, 1 << 20).await;
    let opened = pull_request("opened", "page-x", SHA1);
    // The webhook on `/` (as before the page) still takes deliveries.
    let (status, answer) = h.post_to("/", "pull_request", "page-1", &opened).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, _) = h.deliver("pull_request", "page-1", &opened).await;
    assert_eq!(status, StatusCode::OK, "a duplicate");
    h.queue.idle().await;

    // The webhook's listener (exposed to GitHub) shows none of them.
    for path in ["/", "/api/sandboxes", "/metrics"] {
        let answer = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap();
        assert!(
            matches!(answer.status().as_u16(), 404 | 405),
            "{path}: {}",
            answer.status()
        );
        assert!(!answer.text().await.unwrap().contains("page-x"), "{path}");
    }
    let page = h
        .http
        .get(format!("{}/", h.status_base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<td class="branch">page-x</td>"#), "{html}");
    assert!(html.contains(r#"href="https://github.example/octo-org/backend/pull/42""#));
    assert!(html.contains(r#"href="http://page-x.sandbox.test:30080/""#));

    let json: Value = h
        .http
        .get(format!("{}/api/sandboxes", h.status_base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["sandboxes"][0]["branch"], "page-x");
    assert_eq!(json["sandboxes"][0]["repos"][0]["sha"], SHA1);

    // The metrics are the process's: other tests count too, so only presence is certain.
    let text = h
        .http
        .get(format!("{}/metrics", h.status_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "sandbox_serve_deliveries_total{outcome=\"accepted\"}",
        "sandbox_serve_deliveries_total{outcome=\"duplicate\"}",
        "sandbox_serve_up_duration_seconds_count{outcome=\"success\"}",
        "sandbox_serve_queue{state=\"running\"}",
        "sandbox_serve_sandboxes{status=\"ready\"}",
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    h.stop().await;
}

#[tokio::test]
async fn every_line_of_a_piece_of_work_names_its_delivery_pull_request_and_branch() {
    let (subscriber, lines) = crate::logging::capturing(crate::logging::Format::Text);
    let _default = tracing::subscriber::set_default(subscriber);
    let mut h = Harness::start(Duration::ZERO, 1 << 20).await;
    let opened = pull_request("opened", "span-x", SHA1);
    let (status, answer) = h.deliver("pull_request", "span-1", &opened).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    h.queue.idle().await;
    h.stop().await;
    let log = lines();
    let work: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["event=webhook.", "event=job.", "event=github."]
                .iter()
                .any(|e| l.contains(e))
        })
        .collect();
    for event in [
        "webhook.accepted",
        "webhook.recorded",
        "job.started",
        "job.succeeded",
        "github.deployment",
    ] {
        assert!(
            work.iter().any(|l| l.contains(&format!("event={event} "))),
            "no {event} in\n{log}"
        );
    }
    for line in &work {
        for field in ["delivery=span-1", "repo=octo-org/backend", "branch=span-x"] {
            assert!(line.contains(field), "no {field} in `{line}`");
        }
        assert!(line.contains(" pr="), "no pr in `{line}`");
    }
}

#[tokio::test]
async fn a_pull_requests_life_is_reported_on_github() {
    let mut h = Harness::start(Duration::from_millis(300), 1 << 20).await;

    // Opened, and the same delivery again (GitHub retries): one deploy.
    let opened = pull_request("opened", "feature-x", SHA1);
    let (status, answer) = h.deliver("pull_request", "a-1", &opened).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, answer) = h.deliver("pull_request", "a-1", &opened).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        answer["status"].as_str().unwrap().contains("duplicate"),
        "{answer}"
    );
    h.queue.idle().await;
    assert_eq!(
        h.calls(),
        [
            format!("deploy feature-x {SHA1}"),
            format!("deployed feature-x {SHA1}")
        ]
    );
    let deployments = h.github.deployments();
    assert_eq!(deployments.len(), 1, "{}", h.github.dump());
    let first = &deployments[0];
    assert_eq!(first.repo, "octo-org/backend");
    assert_eq!(first.sha, SHA1);
    assert_eq!(first.environment, "sandbox/feature-x");
    assert_eq!(first.body["auto_merge"], false);
    assert_eq!(first.body["required_contexts"], serde_json::json!([]));
    assert_eq!(first.body["transient_environment"], true);
    assert_eq!(
        h.github.states_of(first.id),
        ["queued", "in_progress", "success"]
    );
    let success = h.github.statuses().last().unwrap().clone();
    assert_eq!(
        success.environment_url.as_deref(),
        Some("http://feature-x.sandbox.test:30080/")
    );
    for call in h
        .github
        .calls()
        .iter()
        .filter(|c| !c.path.starts_with("/slack"))
    {
        assert_eq!(
            call.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(call.accept.as_deref(), Some("application/vnd.github+json"));
        assert_eq!(call.user_agent.as_deref(), Some("sandbox"));
    }
    let comments = h.github.comments();
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.starts_with(COMMENT_MARKER));
    assert!(comments[0]
        .body
        .contains("http://feature-x.sandbox.test:30080/"));
    assert_eq!(h.github.slack_messages().len(), 1);

    // Two pushes in quick succession: the second supersedes the first, which never succeeds.
    let (s2, _) = h
        .deliver(
            "pull_request",
            "a-2",
            &pull_request("synchronize", "feature-x", SHA2),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s3, answer) = h
        .deliver(
            "pull_request",
            "a-3",
            &pull_request("synchronize", "feature-x", SHA3),
        )
        .await;
    assert_eq!((s2, s3), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(answer["superseding"], true, "{answer}");
    h.queue.idle().await;
    let calls = h.calls();
    assert!(
        calls.contains(&format!("deploy feature-x {SHA2}")),
        "{calls:?}"
    );
    assert!(
        !calls.contains(&format!("deployed feature-x {SHA2}")),
        "{calls:?}"
    );
    assert_eq!(calls.last().unwrap(), &format!("deployed feature-x {SHA3}"));
    let by_sha = |sha: &str| {
        h.github
            .deployments()
            .into_iter()
            .filter(|d| d.sha == sha)
            .map(|d| d.id)
            .collect::<Vec<_>>()
    };
    let older = by_sha(SHA2);
    assert_eq!(older.len(), 1);
    eventually("the superseded deployment is marked inactive", || {
        h.github.states_of(older[0]).last().map(String::as_str) == Some("inactive")
    })
    .await;
    assert!(!h.github.states_of(older[0]).contains(&"success".to_owned()));
    let newest = by_sha(SHA3);
    assert_eq!(h.github.states_of(newest[0]).last().unwrap(), "success");
    let comments = h.github.comments();
    assert_eq!(comments.len(), 1, "the comment is updated, not repeated");
    assert!(comments[0].edits >= 1);
    assert!(
        comments[0].body.contains(&SHA3[..7]),
        "{}",
        comments[0].body
    );

    // Closed: the sandbox goes, its deployments become inactive, the comment says so.
    let (status, _) = h
        .deliver(
            "pull_request",
            "a-4",
            &pull_request("closed", "feature-x", SHA3),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.queue.idle().await;
    assert_eq!(h.calls().last().unwrap(), "destroy feature-x");
    assert_eq!(
        h.github.states_of(newest[0]).last().unwrap(),
        "inactive",
        "{}",
        h.github.dump()
    );
    let comments = h.github.comments();
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("deleted"), "{}", comments[0].body);
    h.stop().await;
}

#[tokio::test]
async fn a_failure_is_reported_briefly_and_without_secrets() {
    let mut h = Harness::start(Duration::ZERO, 1 << 20).await;
    let (status, _) = h
        .deliver(
            "pull_request",
            "f-1",
            &pull_request("opened", "broken", SHA1),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.queue.idle().await;
    let failure = h.github.statuses().last().unwrap().clone();
    assert_eq!(failure.state, "failure");
    assert!(
        failure.description.chars().count() <= 140,
        "{}",
        failure.description
    );
    assert!(
        failure
            .description
            .starts_with("could not deploy sandbox `unit-broken`: api: CrashLoopBackOff"),
        "{}",
        failure.description
    );
    let everything = format!(
        "{}{:?}{:?}",
        h.github.dump(),
        h.github.comments(),
        h.github.slack_messages()
    );
    assert!(!everything.contains("hunter2"), "{everything}");
    assert!(!everything.contains(TOKEN), "{everything}");
    assert!(h.github.comments()[0].body.contains("failed to deploy"));
    h.stop().await;
}

/// What one branch decrypted is scrubbed from its own reports and lines only: a chart value
/// `ready` must not blank "ready" in every other pull request's comment, Slack message and log.
#[tokio::test]
async fn one_branchs_secrets_are_scrubbed_from_its_own_reports_only() {
    let (subscriber, lines) = crate::logging::capturing(crate::logging::Format::Text);
    let _default = tracing::subscriber::set_default(subscriber);
    let mut h = Harness::start(Duration::ZERO, 1 << 20).await;
    for (branch, delivery) in [("secret-a", "sa-1"), ("secret-b", "sb-1")] {
        let opened = pull_request("opened", branch, SHA1);
        let (status, _) = h.deliver("pull_request", delivery, &opened).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        h.queue.idle().await;
    }
    h.stop().await;
    let slack = h.github.slack_messages();
    let message_of = |branch: &str| {
        let found = slack.iter().find(|m| m.contains(branch));
        found.unwrap_or_else(|| panic!("no message of {branch} in {slack:?}"))
    };
    assert!(
        // Slack's text escapes `<` and `>`.
        message_of("secret-a").ends_with("deployment `web` never became &lt;redacted&gt;"),
        "{slack:?}"
    );
    assert!(
        message_of("secret-b").ends_with("deployment `web` never became ready"),
        "{slack:?}"
    );
    let log = lines();
    let lines_of = |branch: &str| -> Vec<&str> {
        let field = format!("branch={branch}");
        log.lines()
            .filter(|l| l.contains("event=fake.waited") || l.contains("event=job.failed"))
            .filter(|l| l.contains(&field))
            .collect()
    };
    assert_eq!(lines_of("secret-a").len(), 2, "{log}");
    for line in lines_of("secret-a") {
        assert!(!line.contains("ready"), "{line}");
    }
    assert_eq!(lines_of("secret-b").len(), 2, "{log}");
    for line in lines_of("secret-b") {
        assert!(line.contains("ready\""), "{line}");
    }
    assert_eq!(crate::logging::scrub("ready"), "ready");
}

#[tokio::test]
async fn shutdown_waits_for_running_work() {
    let mut h = Harness::start(Duration::from_millis(500), 1 << 20).await;
    h.deliver(
        "pull_request",
        "s-1",
        &pull_request("opened", "feature-x", SHA1),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.queue.busy(), 1);
    h.stop().await;
    assert!(h.calls().contains(&format!("deployed feature-x {SHA1}")));
    let id = h.github.deployments()[0].id;
    assert_eq!(h.github.states_of(id).last().unwrap(), "success");
    // Stopped: nothing listens any more.
    assert!(h
        .http
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn work_still_running_after_the_grace_period_is_cancelled_and_reported() {
    let mut h =
        Harness::start_with(Duration::from_secs(60), 1 << 20, Duration::from_millis(200)).await;
    h.deliver(
        "pull_request",
        "c-1",
        &pull_request("opened", "feature-x", SHA1),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    h.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !h.calls().iter().any(|c| c.starts_with("deployed")),
        "{:?}",
        h.calls()
    );
    let id = h.github.deployments()[0].id;
    assert_eq!(h.github.states_of(id), ["queued", "in_progress", "queued"]);
    let last = h.github.statuses().last().unwrap().description.clone();
    assert_eq!(
        last,
        "handed back: the preview service stopped before it finished"
    );

    // Handed back, not lost: the next service on the same state finishes it, on the same
    // GitHub deployment.
    let mut next = h.another(Duration::ZERO).await;
    eventually("the handed-back work is done", || {
        next.calls()
            .iter()
            .any(|c| c == &format!("deployed feature-x {SHA1}"))
    })
    .await;
    next.queue.idle().await;
    assert_eq!(next.github.deployments().len(), 1, "{}", next.github.dump());
    assert_eq!(
        next.github.states_of(id),
        [
            "queued",
            "in_progress",
            "queued",
            "queued",
            "in_progress",
            "success"
        ]
    );
    next.stop().await;
}

#[tokio::test]
async fn two_replicas_take_a_delivery_once_and_share_the_work() {
    let mut a = Harness::start(Duration::from_millis(100), 1 << 20).await;
    let mut b = a.another(Duration::from_millis(100)).await;
    let opened = pull_request("opened", "feature-x", SHA1);
    let (first, _) = a.deliver("pull_request", "r-1", &opened).await;
    let (second, answer) = b.deliver("pull_request", "r-1", &opened).await;
    assert_eq!((first, second), (StatusCode::ACCEPTED, StatusCode::OK));
    assert!(answer["status"].as_str().unwrap().contains("duplicate"));
    // Other branches, delivered to either replica: each deployed once, by one of them.
    for (i, branch) in ["b1", "b2", "b3", "b4"].iter().enumerate() {
        let body = pull_request("opened", branch, SHA2);
        let id = format!("r-b{i}");
        let h = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            h.deliver("pull_request", &id, &body).await.0,
            StatusCode::ACCEPTED
        );
    }
    eventually("every branch is deployed", || {
        let all: Vec<String> = a.calls().into_iter().chain(b.calls()).collect();
        ["feature-x", "b1", "b2", "b3", "b4"].iter().all(|br| {
            all.iter()
                .any(|c| c.starts_with(&format!("deployed {br} ")))
        })
    })
    .await;
    a.queue.idle().await;
    b.queue.idle().await;
    let all: Vec<String> = a.calls().into_iter().chain(b.calls()).collect();
    let deploys = all.iter().filter(|c| c.starts_with("deploy ")).count();
    assert_eq!(deploys, 5, "{all:?}");
    assert_eq!(a.github.deployments().len(), 5, "{}", a.github.dump());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn closing_one_of_two_prs_of_a_branch_keeps_the_sandbox_and_a_hand_made_one_is_kept() {
    let mut h = Harness::start(Duration::ZERO, 1 << 20).await;
    let backend = pull_request("opened", "feature-x", SHA1);
    let mut frontend: Value = serde_json::from_slice(&backend).unwrap();
    frontend["number"] = 7.into();
    frontend["repository"]["full_name"] = "octo-org/frontend".into();
    frontend["pull_request"]["head"]["repo"]["full_name"] = "octo-org/frontend".into();
    let frontend_closed = {
        let mut v = frontend.clone();
        v["action"] = "closed".into();
        serde_json::to_vec(&v).unwrap()
    };
    h.deliver("pull_request", "k-1", &backend).await;
    h.deliver(
        "pull_request",
        "k-2",
        &serde_json::to_vec(&frontend).unwrap(),
    )
    .await;
    h.queue.idle().await;
    let (status, answer) = h.deliver("pull_request", "k-3", &frontend_closed).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["status"], "kept", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("octo-org/backend#42"),
        "{answer}"
    );
    h.queue.idle().await;
    assert!(
        !h.calls().iter().any(|c| c.starts_with("destroy")),
        "{:?}",
        h.calls()
    );
    let (status, _) = h
        .deliver(
            "pull_request",
            "k-4",
            &pull_request("closed", "feature-x", SHA1),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.queue.idle().await;
    assert_eq!(h.calls().last().unwrap(), "destroy feature-x");

    // The previews never delete what they did not make.
    h.deliver(
        "pull_request",
        "k-5",
        &pull_request("opened", "hand-main", SHA2),
    )
    .await;
    h.queue.idle().await;
    h.deliver(
        "pull_request",
        "k-6",
        &pull_request("closed", "hand-main", SHA2),
    )
    .await;
    h.queue.idle().await;
    assert_eq!(h.calls().last().unwrap(), "kept hand-main");
    let last = h.github.statuses().last().unwrap().clone();
    assert_eq!(last.state, "inactive");
    assert!(
        last.description.contains("the sandbox was kept"),
        "{}",
        last.description
    );
    h.stop().await;
}

#[tokio::test]
async fn a_delivery_without_an_id_is_refused_not_run_twice() {
    let mut h = Harness::start(Duration::ZERO, 1 << 20).await;
    let body = pull_request("opened", "feature-x", SHA1);
    let send = |delivery: Option<&str>| {
        let mut request = h
            .http
            .post(format!("{}/webhook", h.base))
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header(
                "x-hub-signature-256",
                signature::sign(SECRET.as_bytes(), &body),
            )
            .body(body.clone());
        if let Some(id) = delivery {
            request = request.header("x-github-delivery", id);
        }
        request.send()
    };
    for delivery in [None, Some(""), Some("a b"), Some(&*"x".repeat(200))] {
        let response = send(delivery).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{delivery:?}");
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("X-GitHub-Delivery"),
            "{answer}"
        );
    }
    h.queue.idle().await;
    assert_eq!(h.calls(), Vec::<String>::new(), "nothing ran");
    h.stop().await;
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = http::Limits {
        max_connections: 64,
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(60),
    };
    let mut h =
        Harness::start_limited(Duration::ZERO, 1 << 20, Duration::from_secs(5), limits).await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    // One client sends half its headers, one sends nothing at all.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    for client in [&mut slow, &mut silent] {
        let mut rest = Vec::new();
        // The server closes the connection (after a 408 at most); without the timeout this
        // read would wait for as long as the client likes.
        let read =
            tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection is still open after 5s");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    h.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let limits = http::Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(60),
    };
    let mut h =
        Harness::start_limited(Duration::ZERO, 1 << 20, Duration::from_secs(5), limits).await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    let idle_1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let idle_2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Let the server accept both before the third client comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = || {
        reqwest::Client::new()
            .get(format!("{}/healthz", h.base))
            .timeout(Duration::from_millis(700))
            .send()
    };
    assert!(health().await.is_err(), "a third connection is served");
    drop(idle_1);
    let served = health().await.expect("served once a connection closed");
    assert_eq!(served.status(), StatusCode::OK);
    drop(idle_2);
    h.stop().await;
}

#[tokio::test]
async fn branch_names_are_text_in_comments_and_slack() {
    let mut h = Harness::start(Duration::ZERO, 1 << 20).await;
    // Valid as a git branch name, and it would close the comment's code span and Slack's.
    let branch = "x`<img src=https://evil.example/t.png>`<https://evil.example|docs>";
    let (status, _) = h
        .deliver("pull_request", "e-1", &pull_request("opened", branch, SHA1))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.queue.idle().await;
    let comment = h.github.comments()[0].body.clone();
    assert!(
        comment.contains(&format!("``{branch}``")),
        "the branch is one code span: {comment}"
    );
    let table_row = format!("``{}``", branch.replace('|', "\\|"));
    assert!(comment.contains(&table_row), "{comment}");
    let slack = h.github.slack_messages().join("\n");
    assert!(!slack.contains("<https://evil.example|docs>"), "{slack}");
    assert!(!slack.contains("<img"), "{slack}");
    assert!(
        slack.contains("&lt;https://evil.example|docs&gt;"),
        "{slack}"
    );
    h.stop().await;
}

#[tokio::test]
async fn encoded_forms_of_the_services_secrets_are_scrubbed_from_reports() {
    use base64::Engine as _;
    log::add_secret(TOKEN);
    let encoded = [
        base64::engine::general_purpose::STANDARD.encode(TOKEN),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("user:{TOKEN}")),
        serde_json::to_string(&format!("{TOKEN}\"")).unwrap(),
    ];
    let error = anyhow::anyhow!("the log said {}", encoded.join(" and "));
    let failure = Failure::new(&error, |t| t.to_owned());
    for shown in [&failure.summary, &failure.details] {
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains(&encoded[0]), "{shown}");
        assert!(!shown.contains(&encoded[2]), "{shown}");
    }
}

#[test]
fn the_github_token_is_read_from_gh_token_after_github_token() {
    let vars = |set: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            set.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(
        token_of(vars(&[("GH_TOKEN", " gh ")])).as_deref(),
        Some("gh")
    );
    assert_eq!(
        token_of(vars(&[("GH_TOKEN", "gh"), ("GITHUB_TOKEN", "github")])).as_deref(),
        Some("github")
    );
    assert_eq!(
        token_of(vars(&[("GH_TOKEN", "gh"), ("GITHUB_TOKEN", " ")])).as_deref(),
        Some("gh")
    );
    assert_eq!(token_of(vars(&[])), None);
}

#[tokio::test]
async fn pull_requests_of_repositories_not_in_sandbox_yaml_are_acknowledged_and_ignored() {
    let mut h = Harness::start(Duration::ZERO, 64 * 1024).await;
    let mut v = fixture("pull_request.opened.json");
    v["repository"]["full_name"] = "someone-else/backend".into();
    v["pull_request"]["head"]["repo"]["full_name"] = "someone-else/backend".into();
    let body = serde_json::to_vec(&v).unwrap();
    let (status, answer) = h.deliver("pull_request", "u-1", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "ignored");
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.contains("someone-else/backend") && reason.contains("octo-org/backend"),
        "{reason}"
    );
    // The repository's name differs only in case: the same repository.
    v["repository"]["full_name"] = "Octo-Org/Backend".into();
    v["pull_request"]["head"]["repo"]["full_name"] = "Octo-Org/Backend".into();
    let (status, _) = h
        .deliver("pull_request", "u-2", &serde_json::to_vec(&v).unwrap())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    h.queue.idle().await;
    assert_eq!(
        h.calls().len(),
        2,
        "only the configured one: {:?}",
        h.calls()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_deployment_event_is_reported_on_its_own_deployment() {
    let mut h = Harness::start(Duration::ZERO, 64 * 1024).await;
    let id = h
        .github
        .add_deployment("octo-org/backend", SHA2, "sandbox/feature-x");
    let mut v = fixture("deployment.json");
    v["deployment"]["id"] = id.into();
    v["deployment"]["sha"] = SHA2.into();
    let (status, answer) = h
        .deliver("deployment", "dep-1", &serde_json::to_vec(&v).unwrap())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["branch"], "feature-x");
    h.queue.idle().await;
    assert_eq!(h.calls()[0], format!("deploy feature-x {SHA2}"));
    assert_eq!(h.github.deployments().len(), 1, "no second deployment");
    eventually("the statuses on the event's deployment", || {
        h.github.states_of(id) == ["queued", "in_progress", "success"]
    })
    .await;
    let success = h.github.statuses().last().unwrap().clone();
    assert_eq!(
        success.environment_url.as_deref(),
        Some("http://feature-x.sandbox.test:30080/")
    );
    assert!(
        h.github.comments().is_empty(),
        "no pull request to comment on"
    );
    // Another environment is not a sandbox's.
    v["deployment"]["environment"] = "production".into();
    let (status, answer) = h
        .deliver("deployment", "dep-2", &serde_json::to_vec(&v).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "ignored");
    h.stop().await;
}

#[tokio::test]
async fn a_push_recorded_by_one_replica_cancels_the_deploy_running_on_the_other() {
    let mut a = Harness::start(Duration::from_secs(2), 1 << 20).await;
    let mut b = a.another(Duration::from_secs(2)).await;
    a.deliver(
        "pull_request",
        "x-1",
        &pull_request("opened", "feature-x", SHA1),
    )
    .await;
    eventually("replica a deploys", || {
        a.calls().contains(&format!("deploy feature-x {SHA1}"))
    })
    .await;
    let (status, answer) = b
        .deliver(
            "pull_request",
            "x-2",
            &pull_request("synchronize", "feature-x", SHA2),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["superseding"], true, "{answer}");
    eventually("the newest push is deployed", || {
        let all: Vec<String> = a.calls().into_iter().chain(b.calls()).collect();
        all.contains(&format!("deployed feature-x {SHA2}"))
    })
    .await;
    a.queue.idle().await;
    b.queue.idle().await;
    let all: Vec<String> = a.calls().into_iter().chain(b.calls()).collect();
    assert!(
        !all.contains(&format!("deployed feature-x {SHA1}")),
        "the superseded deploy ran to its end: {all:?}"
    );
    let first = a.github.deployments()[0].id;
    assert_eq!(a.github.states_of(first).last().unwrap(), "inactive");
    a.stop().await;
    b.stop().await;
}

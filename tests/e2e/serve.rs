//! `sandbox serve` end to end: the real binary receives GitHub's `pull_request` webhooks
//! (payloads shaped like GitHub's, from tests/fixtures/github) and deploys on the real cluster;
//! a local server stands in for GitHub's API and records every call.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::support::{apply_yaml, cluster, http_get, root, run_ok, Product, TestNamespace};

#[path = "../support/fake_github.rs"]
pub(crate) mod fake_github;
use fake_github::{Canned, FakeGitHub};

pub(crate) const SECRET: &str = "e2e-serve-webhook-secret-5b1f";
const TOKEN: &str = "ghp_e2eServeToken000000000000000000000000";
/// The example's decrypted database password: it must never show anywhere.
const DB_PASSWORD: &str = "sandbox-demo-db-password-7f3a";
pub(crate) const REPO: &str = "octo-org/backend";

/// `sandbox serve` as a child process; its stderr (the structured log) is collected.
pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) addr: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Serve keeping its state in namespace `state` (a test's own: replicas share it).
    pub(crate) fn start(
        product: &Product,
        github: &FakeGitHub,
        state: &str,
        extra: &[&str],
    ) -> Serve {
        let mut cmd = product.sandbox(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--github-api-url",
            &github.url,
            "--comment",
            "--state-namespace",
            state,
        ]);
        if !extra.contains(&"--shutdown-grace") {
            cmd.args(["--shutdown-grace", "20s"]);
        }
        cmd.args(extra)
            .env("SANDBOX_WEBHOOK_SECRET", SECRET)
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("SANDBOX_GITHUB_TOKEN")
            .env("SANDBOX_SLACK_WEBHOOK_URL", github.slack_url())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("event=listening") {
                    if let Some(addr) = field(&line, "addr") {
                        let _ = tx.send(addr);
                    }
                }
                // The same line with `--log-format json`.
                if let Ok(json) = serde_json::from_str::<Value>(&line) {
                    if let (Some("listening"), Some(addr)) =
                        (json["event"].as_str(), json["addr"].as_str())
                    {
                        let _ = tx.send(addr.to_owned());
                    }
                }
                collected.lock().unwrap().push_str(&line);
                collected.lock().unwrap().push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "`sandbox serve` did not start listening:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Serve { child, addr, log }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The peak resident memory of the process (VmHWM), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the serve process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// SIGKILL: no clean-up, no hand-back, as when a node dies.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, then wait for the exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        run_ok(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "`sandbox serve` did not stop after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- sandbox serve log\n{}", self.log());
        }
    }
}

/// `key=value` (or `key="value"`) from a log line.
pub(crate) fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next().map(str::to_owned);
    }
    rest.split_whitespace().next().map(str::to_owned)
}

pub(crate) fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures/github").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// GitHub's `pull_request` payload for `action` with the head at `sha`.
pub(crate) fn pull_request(action: &str, sha: &str) -> Vec<u8> {
    let mut event = fixture(&format!("pull_request.{action}.json"));
    event["pull_request"]["head"]["sha"] = sha.into();
    if action == "synchronize" {
        event["after"] = sha.into();
    }
    serde_json::to_vec(&event).unwrap()
}

/// POST a delivery the way GitHub does; `secret: None` sends no signature.
pub(crate) async fn deliver(
    url: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
    secret: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/044aadd")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-github-hook-id", "509821371")
        .body(body.to_vec());
    if let Some(secret) = secret {
        request = request.header(
            "x-hub-signature-256",
            sandbox::serve::signature::sign(secret.as_bytes(), body),
        );
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Poll `check` until it holds, or fail with everything that helps.
pub(crate) async fn wait_until(
    what: &str,
    limit: Duration,
    serve: &Serve,
    github: &FakeGitHub,
    mut check: impl FnMut() -> bool,
) {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > limit {
            panic!(
                "not within {limit:?}: {what}\n--- GitHub calls\n{}--- serve log\n{}",
                github.dump(),
                serve.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The deployments created for `sha`, and whether one of them got a `success` status.
pub(crate) fn deployments_for(github: &FakeGitHub, sha: &str) -> Vec<u64> {
    github
        .deployments()
        .into_iter()
        .filter(|d| d.sha == sha)
        .map(|d| d.id)
        .collect()
}

pub(crate) fn succeeded(github: &FakeGitHub, sha: &str) -> bool {
    deployments_for(github, sha)
        .iter()
        .any(|id| github.states_of(*id).iter().any(|s| s == "success"))
}

/// Wait for a `success` status for `sha`; a `failure` ends the wait at once, with its reason.
pub(crate) async fn wait_for_success(what: &str, serve: &Serve, github: &FakeGitHub, sha: &str) {
    wait_until(what, Duration::from_secs(300), serve, github, || {
        let ids = deployments_for(github, sha);
        if let Some(failure) = github
            .statuses()
            .into_iter()
            .find(|s| ids.contains(&s.deployment) && s.state == "failure")
        {
            panic!(
                "{what}: the deploy failed: {}\n--- comments\n{:?}\n--- serve log\n{}",
                failure.description,
                github.comments(),
                serve.log()
            );
        }
        succeeded(github, sha)
    })
    .await;
}

/// The line of the gateway's page that says where a service was built from.
fn page_line(service: &str, repo: &str, sha: &str) -> String {
    format!("service={service} repo={repo} branch=feature-x sha={sha}")
}

#[tokio::test]
async fn serve_previews_a_pull_request_from_opened_to_closed() {
    let Some(client) = cluster("serve: pull request lifecycle").await else {
        return;
    };
    let started = Instant::now();
    let product = Product::new("serve");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let state = TestNamespace::claim(&client, "e2e-serve-state").await;
    let github = FakeGitHub::start().await;
    let mut serve = Serve::start(&product, &github, &state.name, &[]);
    let webhook = serve.url("/webhook");

    let health = reqwest::get(serve.url("/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ping = serde_json::to_vec(&fixture("ping.json")).unwrap();
    let (status, answer) = deliver(&webhook, "ping", "e2e-ping", &ping, Some(SECRET)).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("pong")));

    // A bad signature, or none: 401, and nothing happens.
    let sha1 = product.sha("backend", "feature-x");
    let opened = pull_request("opened", &sha1);
    let (status, _) = deliver(
        &webhook,
        "pull_request",
        "e2e-bad-1",
        &opened,
        Some("wrong"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = deliver(&webhook, "pull_request", "e2e-bad-2", &opened, None).await;
    assert_eq!(status, 401);
    // Signed, but without a delivery id: a replay could not be told from a new event.
    let (status, answer) = deliver(&webhook, "pull_request", "", &opened, Some(SECRET)).await;
    assert_eq!(status, 400, "{answer}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!ns.exists().await, "a refused delivery created the sandbox");
    assert!(github.deployments().is_empty(), "{}", github.dump());

    // Opened, delivered twice (GitHub retries): one sandbox, one deployment, a success with the URL.
    let (status, answer) =
        deliver(&webhook, "pull_request", "e2e-open", &opened, Some(SECRET)).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) =
        deliver(&webhook, "pull_request", "e2e-open", &opened, Some(SECRET)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["status"]
            .as_str()
            .unwrap_or("")
            .contains("duplicate"),
        "{answer}"
    );
    let up_started = Instant::now();
    wait_for_success(
        "a success status for the opened head",
        &serve,
        &github,
        &sha1,
    )
    .await;
    let first_up = up_started.elapsed();
    let ids = deployments_for(&github, &sha1);
    assert_eq!(
        ids.len(),
        1,
        "one deployment for one (duplicated) delivery:\n{}",
        github.dump()
    );
    let first = github
        .deployments()
        .into_iter()
        .find(|d| d.id == ids[0])
        .unwrap();
    assert_eq!(first.repo, REPO);
    assert_eq!(first.environment, "sandbox/feature-x");
    assert_eq!(first.body["transient_environment"], true);
    assert_eq!(first.body["auto_merge"], false);
    assert_eq!(
        github.states_of(ids[0]),
        ["queued", "in_progress", "success"]
    );
    let success = github
        .statuses()
        .into_iter()
        .find(|s| s.deployment == ids[0] && s.state == "success")
        .unwrap();
    let url = success
        .environment_url
        .clone()
        .expect("the URL on the success status");
    assert!(url.starts_with("http://"), "{url}");
    let page = http_get(&url);
    let api_line = page_line("api", "backend", &sha1);
    assert!(
        page.lines().any(|l| l == api_line),
        "missing `{api_line}`:\n{page}"
    );
    for call in github
        .calls()
        .iter()
        .filter(|c| c.path.starts_with("/repos/"))
    {
        assert_eq!(
            call.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(call.accept.as_deref(), Some("application/vnd.github+json"));
        assert_eq!(call.user_agent.as_deref(), Some("sandbox"));
    }
    // The namespace records the pull request (and its author as the owner).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let annotations = namespaces
        .get(&ns.name)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(annotations["sandbox.dev/pr-repo"], REPO);
    assert_eq!(annotations["sandbox.dev/pr-number"], "42");
    assert_eq!(annotations["sandbox.dev/owner"], "octocat");
    let comments = github.comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].body.contains("<!-- sandbox-preview -->") && comments[0].body.contains(&url)
    );
    let slack = github.slack_messages();
    assert!(slack.len() == 1 && slack[0].contains(&url), "{slack:?}");

    // Two pushes in quick succession: only the newest is deployed and succeeds.
    let sha2 = product.commit("backend", "feature-x", "second push", |dir| {
        std::fs::write(dir.join("NOTES.md"), "second push\n").unwrap();
    });
    let sha3 = product.commit("backend", "feature-x", "third push", |dir| {
        std::fs::write(dir.join("NOTES.md"), "third push\n").unwrap();
    });
    let (s2, _) = deliver(
        &webhook,
        "pull_request",
        "e2e-sync-2",
        &pull_request("synchronize", &sha2),
        Some(SECRET),
    )
    .await;
    // The first update is under way (fetching, applying) when the second push arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s3, answer) = deliver(
        &webhook,
        "pull_request",
        "e2e-sync-3",
        &pull_request("synchronize", &sha3),
        Some(SECRET),
    )
    .await;
    assert_eq!((s2, s3), (202, 202), "{answer}");
    assert_eq!(
        answer["superseding"], true,
        "the second push supersedes the first: {answer}"
    );
    let sync_started = Instant::now();
    wait_for_success(
        "a success status for the newest head",
        &serve,
        &github,
        &sha3,
    )
    .await;
    let second_up = sync_started.elapsed();
    assert_eq!(
        deployments_for(&github, &sha3).len(),
        1,
        "{}",
        github.dump()
    );
    assert!(
        serve
            .log()
            .contains("event=work.superseded branch=feature-x was=running"),
        "the running update was cancelled:\n{}",
        serve.log()
    );
    assert!(
        !succeeded(&github, &sha2),
        "the superseded push got a success:\n{}",
        github.dump()
    );
    let newest = deployments_for(&github, &sha3)[0];
    let final_success = github
        .statuses()
        .into_iter()
        .rfind(|s| s.state == "success")
        .unwrap();
    assert_eq!(
        final_success.deployment, newest,
        "the last success belongs to the newest push"
    );
    for id in deployments_for(&github, &sha2) {
        wait_until(
            "the superseded deployment is inactive",
            Duration::from_secs(10),
            &serve,
            &github,
            || github.states_of(id).last().map(String::as_str) == Some("inactive"),
        )
        .await;
    }
    let page = http_get(final_success.environment_url.as_deref().unwrap());
    let api_line = page_line("api", "backend", &sha3);
    assert!(
        page.lines().any(|l| l == api_line),
        "missing `{api_line}`:\n{page}"
    );
    let comments = github.comments();
    assert_eq!(
        comments.len(),
        1,
        "the comment is updated in place: {comments:?}"
    );
    assert!(
        comments[0].body.contains(&sha3[..7]),
        "{}",
        comments[0].body
    );

    // Closed: the sandbox goes away and its deployment becomes inactive.
    let (status, _) = deliver(
        &webhook,
        "pull_request",
        "e2e-close",
        &pull_request("closed", &sha3),
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 202);
    let close_started = Instant::now();
    let gone = kube::runtime::wait::await_condition(
        namespaces.clone(),
        &ns.name,
        |n: Option<&Namespace>| n.is_none(),
    );
    if tokio::time::timeout(Duration::from_secs(240), gone)
        .await
        .is_err()
    {
        panic!(
            "the sandbox of the closed pull request is still there\n{}",
            serve.log()
        );
    }
    let teardown = close_started.elapsed();
    wait_until(
        "the closed pull request's deployment is inactive",
        Duration::from_secs(20),
        &serve,
        &github,
        || github.states_of(newest).last().map(String::as_str) == Some("inactive"),
    )
    .await;

    // SIGTERM: a clean stop.
    let status = serve.terminate();
    let log = serve.log();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("event=shutdown.started signal=SIGTERM") && log.contains("event=stopped"),
        "{log}"
    );
    for secret in [SECRET, TOKEN, DB_PASSWORD, "XXXXSECRETXXXX"] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
        let sent: Vec<String> = github
            .calls()
            .into_iter()
            .filter(|c| c.path.starts_with("/repos/"))
            .map(|c| format!("{} {:?} {}", c.path, c.query, c.body))
            .collect();
        assert!(
            !sent.concat().contains(secret),
            "`{secret}` in what was posted to GitHub"
        );
    }
    eprintln!(
        "serve lifecycle: first up {:.1}s, superseded update {:.1}s, teardown {:.1}s, total {:.1}s",
        first_up.as_secs_f64(),
        second_up.as_secs_f64(),
        teardown.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// A sandbox's namespace as `made_by` (`serve`, `up`, or none: an older version) would have
/// made it.
pub(crate) async fn create_sandbox_namespace(
    client: &Client,
    name: &str,
    branch: &str,
    pr: Option<u64>,
    made_by: Option<&str>,
) {
    let mut annotations = json!({"sandbox.dev/branch": branch, "sandbox.dev/owner": "e2e"});
    if let Some(made_by) = made_by {
        annotations["sandbox.dev/made-by"] = made_by.into();
    }
    if let Some(n) = pr {
        annotations["sandbox.dev/pr-repo"] = REPO.into();
        annotations["sandbox.dev/pr-number"] = n.to_string().into();
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {
        "name": name,
        "labels": {"app.kubernetes.io/managed-by": "sandbox", "sandbox.dev/sandbox": "shop"},
        "annotations": annotations,
    }}))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

#[tokio::test]
async fn serve_deletes_sandboxes_of_pull_requests_closed_while_it_was_away() {
    let Some(client) = cluster("serve: resync at start").await else {
        return;
    };
    let product = Product::new("serve-reconcile");
    let closed = TestNamespace::claim(&client, &product.namespace("closed-pr")).await;
    let open = TestNamespace::claim(&client, &product.namespace("open-pr")).await;
    let plain = TestNamespace::claim(&client, &product.namespace("no-pr")).await;
    // Closed too, but made by hand (`sandbox up`), or by a version that did not say: kept.
    let by_hand = TestNamespace::claim(&client, &product.namespace("by-hand")).await;
    let unsaid = TestNamespace::claim(&client, &product.namespace("unsaid")).await;
    let state = TestNamespace::claim(&client, "e2e-serve-reconcile-state").await;
    let serve_made = Some("serve");
    create_sandbox_namespace(&client, &closed.name, "closed-pr", Some(7), serve_made).await;
    create_sandbox_namespace(&client, &open.name, "open-pr", Some(8), serve_made).await;
    create_sandbox_namespace(&client, &plain.name, "no-pr", None, serve_made).await;
    create_sandbox_namespace(&client, &by_hand.name, "by-hand", Some(9), Some("up")).await;
    create_sandbox_namespace(&client, &unsaid.name, "unsaid", Some(10), None).await;
    let github = FakeGitHub::start().await;
    for closed in [7, 9, 10] {
        github.close(REPO, closed);
    }

    let serve = Serve::start(&product, &github, &state.name, &[]);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let gone = kube::runtime::wait::await_condition(
        namespaces.clone(),
        &closed.name,
        |n: Option<&Namespace>| n.is_none(),
    );
    if tokio::time::timeout(Duration::from_secs(120), gone)
        .await
        .is_err()
    {
        panic!(
            "the closed pull request's sandbox was not deleted\n{}\n{}",
            github.dump(),
            serve.log()
        );
    }
    let asked: Vec<String> = github.calls().into_iter().map(|c| c.path).collect();
    for path in [
        "/repos/octo-org/backend/pulls/7",
        "/repos/octo-org/backend/pulls/8",
    ] {
        assert!(
            asked.iter().any(|p| p == path),
            "GitHub was not asked {path}: {asked:?}"
        );
    }
    assert!(
        open.exists().await,
        "an open pull request's sandbox was deleted"
    );
    assert!(
        plain.exists().await,
        "a sandbox of no pull request was deleted"
    );
    assert!(by_hand.exists().await, "a hand-made sandbox was deleted");
    assert!(
        unsaid.exists().await,
        "a sandbox serve did not make was deleted"
    );
    assert!(
        serve
            .log()
            .lines()
            .any(|l| l.contains("event=resync.done") && field(l, "closed").as_deref() == Some("1")),
        "{}",
        serve.log()
    );
}

/// The page at `url` as headless Chromium has it after loading: its DOM, serialised.
fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(["--dump-dom", url]);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("could not run chromium ({e}): `scripts/setup` installs Debian's chromium")
    });
    assert!(
        out.status.success(),
        "{}",
        crate::support::describe(&cmd, &out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The status page lists the preview serve brought up, in a real browser, with working links;
/// `/api/sandboxes` says the same; `/metrics` counted it; and every JSON log line of the work
/// carries its delivery, repository, pull request and branch.
#[tokio::test]
async fn serve_shows_its_previews_on_the_status_page_in_chromium() {
    let Some(client) = cluster("serve: status page").await else {
        return;
    };
    let product = Product::new("serve-page");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let github = FakeGitHub::start().await;
    let state = TestNamespace::claim(&client, "e2e-serve-page-state").await;
    let serve = Serve::start(&product, &github, &state.name, &["--log-format", "json"]);
    let sha = product.sha("backend", "feature-x");
    let opened = pull_request("opened", &sha);
    let (status, answer) = deliver(
        &serve.url("/webhook"),
        "pull_request",
        "e2e-page-open",
        &opened,
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    wait_for_success("the preview is up", &serve, &github, &sha).await;
    let url = github
        .statuses()
        .into_iter()
        .find_map(|s| s.environment_url.filter(|_| s.state == "success"))
        .expect("the URL on the success status");

    // The page, as a browser renders it: the sandbox's row, its pull request and URL as links.
    let dom = chromium_dom(&serve.url("/"));
    let row_start = dom
        .find(&format!(r#"<tr id="sandbox-{}""#, ns.name))
        .unwrap_or_else(|| panic!("no row for {} in the page:\n{dom}", ns.name));
    let row = &dom[row_start..];
    let row = &row[..row.find("</tr>").expect("the row ends")];
    let pr_link = format!(
        r#"<a class="pr" href="{}/{REPO}/pull/42">{REPO}#42</a>"#,
        github.url.trim_end_matches('/')
    );
    assert!(row.contains(&pr_link), "no `{pr_link}` in the row:\n{row}");
    let url_link = format!(r#"<a class="url" href="{url}">{url}</a>"#);
    assert!(
        row.contains(&url_link),
        "no `{url_link}` in the row:\n{row}"
    );
    assert!(
        row.contains(r#"<td class="branch">feature-x</td>"#),
        "{row}"
    );
    assert!(
        row.contains(r#"<td class="status ready">ready</td>"#),
        "{row}"
    );
    assert!(row.contains(&sha[..7]), "{row}");

    let api: Value = reqwest::get(serve.url("/api/sandboxes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sandbox = api["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["namespace"] == ns.name.as_str())
        .unwrap_or_else(|| panic!("{} not in /api/sandboxes: {api}", ns.name));
    assert_eq!(sandbox["branch"], "feature-x");
    assert_eq!(sandbox["status"], "ready");
    assert_eq!(sandbox["url"], url.as_str());
    assert_eq!(sandbox["prs"][0]["repo"], REPO);
    assert_eq!(sandbox["prs"][0]["number"], 42);
    let backend = sandbox["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == "backend")
        .unwrap();
    assert_eq!(backend["sha"], sha.as_str());
    assert_eq!(sandbox["last_error"], Value::Null);

    let metrics = reqwest::get(serve.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "sandbox_serve_deliveries_total{outcome=\"accepted\"} 1",
        "sandbox_serve_up_duration_seconds_count{outcome=\"success\"} 1",
        "sandbox_serve_queue{state=\"running\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("sandbox_serve_sandboxes{status=\"ready\"}"),
        "{metrics}"
    );

    // Every line is JSON; the work's lines carry what asked for it.
    let log = serve.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|l| l["event"] == "job.succeeded")
        .unwrap_or_else(|| panic!("no job.succeeded in\n{log}"));
    assert_eq!(done["delivery"], "e2e-page-open", "{done}");
    assert_eq!(done["repo"], REPO, "{done}");
    assert_eq!(done["pr"], 42, "{done}");
    assert_eq!(done["branch"], "feature-x", "{done}");
    assert!(!log.contains(TOKEN) && !log.contains(SECRET) && !log.contains(DB_PASSWORD));

    // A push that cannot deploy (its values do not parse): the row keeps the running revision's
    // status and shows why the last deploy failed, as text.
    let broken = product.commit("backend", "feature-x", "broken values", |dir| {
        std::fs::write(dir.join("api/values.yaml"), "replicas: [1, <b>2\n").unwrap();
    });
    let (status, answer) = deliver(
        &serve.url("/webhook"),
        "pull_request",
        "e2e-page-broken",
        &pull_request("synchronize", &broken),
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    wait_until(
        "a failure status for the broken push",
        Duration::from_secs(300),
        &serve,
        &github,
        || {
            let ids = deployments_for(&github, &broken);
            github
                .statuses()
                .iter()
                .any(|s| ids.contains(&s.deployment) && s.state == "failure")
        },
    )
    .await;
    let api: Value = reqwest::get(serve.url("/api/sandboxes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sandbox = api["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["namespace"] == ns.name.as_str())
        .unwrap();
    let last_error = sandbox["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{sandbox}"));
    assert!(last_error.contains("values.yaml"), "{last_error}");
    assert_eq!(
        sandbox["status"], "ready",
        "the previous revision still runs"
    );
    let dom = chromium_dom(&serve.url("/"));
    let row = &dom[dom
        .find(&format!(r#"<tr id="sandbox-{}""#, ns.name))
        .unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(r#"<div class="error">"#), "{row}");
    assert!(!row.contains("<b>"), "the error is text, not markup: {row}");
}

/// The node's address: what a pod reaches this machine's network namespace at.
async fn node_ip(client: &Client) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .flat_map(|n| n.status.and_then(|s| s.addresses).unwrap_or_default())
        .find(|a| a.type_ == "InternalIP")
        .expect("a node with an InternalIP")
        .address
}

fn git_daemon_path() -> std::path::PathBuf {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git runs");
    std::path::PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
        .join("git-daemon")
}

/// `git daemon` serving the product's repositories over git:// (to pods), stopped on drop.
struct GitDaemon(Child);

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serve_runs_in_the_cluster_from_deploy_serve_yaml() {
    let Some(client) = cluster("serve: in the cluster").await else {
        return;
    };
    let product = Product::new("serve-pod");
    let system = TestNamespace::claim(&client, "e2e-serve-pod-system").await;
    let sandbox_ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let ip = node_ip(&client).await;

    // The repositories over git://, and the GitHub stand-in, where the pod reaches them.
    let port = free_port(&ip);
    let repos = product.path().join("repos");
    let daemon = GitDaemon(
        // git-daemon itself, not the `git daemon` wrapper: killing the wrapper would leave the
        // daemon running (and holding the test's output open).
        Command::new(git_daemon_path())
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg(format!("--listen={ip}"))
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", repos.display()))
            .arg(&repos)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon runs"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect((ip.as_str(), port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "git daemon did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let github = FakeGitHub::start_on(&format!("{ip}:0")).await;
    // CI's part: the backend's image for the branch's commit is in the registry (serve in a pod
    // resolves images but does not build them).
    run_ok(&mut product.sandbox(&["images", "--branch", "feature-x"]));

    // The sandbox binary in an image; deploy/serve.yaml with this test's names.
    run_ok(Command::new(root().join("scripts/images")).args([
        "sandbox",
        env!("CARGO_BIN_EXE_sandbox"),
        "e2e-serve",
    ]));
    let manifests = std::fs::read_to_string(root().join("deploy/serve.yaml"))
        .unwrap()
        .replace("sandbox-system", &system.name)
        .replace("sandbox-serve", "e2e-serve-pod")
        .replace(
            "docker.io/local/sandbox:dev",
            "docker.io/local/sandbox:e2e-serve",
        )
        .replace("https://api.github.com", &github.url)
        .replace("https://github.com/octo-org", &format!("git://{ip}:{port}"))
        .replace("--shutdown-grace=300s", "--shutdown-grace=20s");
    for expected in [
        "kind: ClusterRole\n",
        "kind: Deployment\n",
        "kind: Service\n",
        "kind: ServiceAccount\n",
    ] {
        assert!(
            manifests.contains(expected),
            "deploy/serve.yaml has no {expected}"
        );
    }
    // The namespace, the secret and the product's files first, so the pod starts at once.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": system.name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &system.name);
    let age_key = std::fs::read_to_string(root().join("example/age-test-key.txt")).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "e2e-serve-pod"},
        "stringData": {"webhook-secret": format!("{SECRET}\n"), "github-token": TOKEN, "age-keys.txt": age_key},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut files = serde_json::Map::new();
    files.insert(
        "sandbox.yaml".into(),
        std::fs::read_to_string(product.path().join("sandbox.yaml"))
            .unwrap()
            .into(),
    );
    for entry in std::fs::read_dir(product.path().join("templates")).unwrap() {
        let entry = entry.unwrap();
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read_to_string(entry.path()).unwrap().into(),
        );
    }
    let configmap: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "e2e-serve-pod-product"}, "data": files}),
    )
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &system.name)
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap();
    // A cluster before Kubernetes 1.21 serves PodDisruptionBudgets as policy/v1beta1 only.
    let policy_v1 = kube::Discovery::new(client.clone())
        .filter(&["policy"])
        .run()
        .await
        .unwrap()
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "policy",
            "v1",
            "PodDisruptionBudget",
        ))
        .is_some();
    let manifests = if policy_v1 {
        manifests
    } else {
        manifests.replace("apiVersion: policy/v1\n", "apiVersion: policy/v1beta1\n")
    };
    assert!(
        manifests.contains("kind: PodDisruptionBudget\n") && manifests.contains("replicas: 2\n"),
        "deploy/serve.yaml runs two replicas with a disruption budget"
    );
    apply_yaml(&client, &system.name, &manifests).await;

    let cleanup = || {
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
        let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
            Api::all(client.clone());
        async move {
            let _ = roles
                .delete("e2e-serve-pod", &DeleteParams::default())
                .await;
            let _ = roles
                .delete("e2e-serve-pod-in-sandbox", &DeleteParams::default())
                .await;
            let _ = bindings
                .delete("e2e-serve-pod", &DeleteParams::default())
                .await;
        }
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &system.name);
    let pod_log = || {
        let pods = pods.clone();
        async move {
            let mut out = String::new();
            for pod in pods.list(&ListParams::default()).await.unwrap().items {
                let name = pod.metadata.name.clone().unwrap();
                out += &format!(
                    "--- pod {name}: {:?}\n",
                    pod.status.and_then(|s| s.container_statuses)
                );
                out += &pods
                    .logs(&name, &LogParams::default())
                    .await
                    .unwrap_or_default();
            }
            out
        }
    };

    // Its rights stop at the sandboxes: no Secrets, Jobs or Leases in any other namespace.
    let account = format!("system:serviceaccount:{}:e2e-serve-pod", system.name);
    let mut outside = Vec::new();
    for (verb, group, resource) in [
        ("get", "", "secrets"),
        ("create", "batch", "jobs"),
        ("update", "coordination.k8s.io", "leases"),
    ] {
        let review: k8s_openapi::api::authorization::v1::SubjectAccessReview =
            serde_json::from_value(json!({"spec": {"user": account, "resourceAttributes": {
                "namespace": "kube-node-lease", "verb": verb, "group": group, "resource": resource}}}))
            .unwrap();
        let answer = Api::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .unwrap();
        if answer.status.is_some_and(|s| s.allowed) {
            outside.push(format!("{verb} {resource}"));
        }
    }
    if !outside.is_empty() {
        cleanup().await;
        panic!("serve may {outside:?} outside its sandboxes");
    }

    // Both replicas ready (the readiness probe is /healthz).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &system.name);
    let ready = kube::runtime::wait::await_condition(
        deployments,
        "e2e-serve-pod",
        |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.ready_replicas.unwrap_or(0) >= 2)
        },
    );
    if tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .is_err()
    {
        let log = pod_log().await;
        cleanup().await;
        panic!("the serve Deployment did not become ready:\n{log}");
    }

    // Through its Service, as GitHub would (via whatever exposes it).
    let services: Api<Service> = Api::namespaced(client.clone(), &system.name);
    let cluster_ip = services
        .get("e2e-serve-pod")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let webhook = format!("http://{cluster_ip}/webhook");
    // Ready pod, but kube-proxy may not have programmed the Service's endpoints yet.
    let started = Instant::now();
    loop {
        let health = reqwest::get(format!("http://{cluster_ip}/healthz")).await;
        if health.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let log = pod_log().await;
            cleanup().await;
            panic!("the Service does not reach the serve pod:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sha = product.sha("backend", "feature-x");
    let (status, answer) = deliver(
        &webhook,
        "pull_request",
        "e2e-pod-open",
        &pull_request("opened", &sha),
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let started = Instant::now();
    let outcome = loop {
        let done = github
            .statuses()
            .into_iter()
            .find(|s| s.state == "success" || s.state == "failure");
        if let Some(done) = done {
            break Some(done);
        }
        if started.elapsed() > Duration::from_secs(300) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let in_pod_up = started.elapsed();
    let Some(outcome) = outcome.filter(|s| s.state == "success") else {
        let log = pod_log().await;
        cleanup().await;
        panic!("no success from the pod (RBAC?):\n{}\n{log}", github.dump());
    };
    let page = http_get(outcome.environment_url.as_deref().unwrap());
    assert!(
        page.contains(&format!(
            "service=api repo=backend branch=feature-x sha={sha}"
        )),
        "{page}"
    );

    // Closed: the pod deletes the sandbox (its RBAC allows that too).
    let (status, _) = deliver(
        &webhook,
        "pull_request",
        "e2e-pod-close",
        &pull_request("closed", &sha),
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 202);
    let gone = kube::runtime::wait::await_condition(
        namespaces.clone(),
        &sandbox_ns.name,
        |n: Option<&Namespace>| n.is_none(),
    );
    let gone = tokio::time::timeout(Duration::from_secs(240), gone)
        .await
        .is_ok();
    let log = pod_log().await;
    cleanup().await;
    drop(daemon);
    assert!(
        gone,
        "the pod did not delete the closed pull request's sandbox:\n{log}"
    );
    assert!(
        log.contains("event=resync.done"),
        "the start-up resync failed (RBAC?):\n{log}"
    );
    assert!(!log.contains("level=error"), "{log}");
    for secret in [SECRET, TOKEN, DB_PASSWORD] {
        assert!(!log.contains(secret), "`{secret}` in the pod's log");
    }
    eprintln!(
        "serve in the cluster: up from the pod took {:.1}s",
        in_pod_up.as_secs_f64()
    );

    // SIGTERM in the pod (its grace period is 330 s): it stops at once when idle.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &system.name);
    deployments
        .delete("e2e-serve-pod", &DeleteParams::foreground())
        .await
        .unwrap();
    let stopping = Instant::now();
    while !pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            stopping.elapsed() < Duration::from_secs(90),
            "the serve pod did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "serve in the cluster: the pod stopped {:.1}s after its deletion",
        stopping.elapsed().as_secs_f64()
    );
}

/// The pull request's payload of `tests/fixtures/github` moved to another repository.
fn pull_request_of(repo: &str, action: &str, sha: &str) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&pull_request(action, sha)).unwrap();
    event["repository"]["full_name"] = repo.into();
    event["pull_request"]["head"]["repo"]["full_name"] = repo.into();
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test]
async fn serve_converges_to_githubs_open_pull_requests_without_webhooks() {
    let Some(client) = cluster("serve: resync without webhooks").await else {
        return;
    };
    let product = Product::new("serve-resync");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let github = FakeGitHub::start().await;
    let sha = product.sha("backend", "feature-x");
    // Opened on GitHub while no webhook reaches serve; an older push's deployment is there.
    github.open_pull(REPO, 42, "feature-x", &sha);
    let old = github.add_deployment(REPO, &"0".repeat(40), "sandbox/feature-x");
    // GitHub in a bad moment: the first list hits a spent rate limit that resets in two
    // seconds, and creating the deployment fails twice with a 500.
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let pulls = format!("/repos/{REPO}/pulls");
    github.fail_next(
        "GET",
        &pulls,
        vec![Canned::status(403)
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &reset.to_string())],
    );
    let create = format!("/repos/{REPO}/deployments");
    github.fail_next(
        "POST",
        &create,
        vec![Canned::status(500), Canned::status(500)],
    );
    let state = TestNamespace::claim(&client, "e2e-serve-resync-state").await;
    let serve = Serve::start(&product, &github, &state.name, &["--resync", "3s"]);

    // A pull request of a repository sandbox.yaml does not list: acknowledged, logged, ignored.
    let stranger = pull_request_of("someone-else/backend", "opened", &sha);
    let (status, answer) = deliver(
        &serve.url("/webhook"),
        "pull_request",
        "e2e-stranger",
        &stranger,
        Some(SECRET),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );

    let started = Instant::now();
    wait_for_success(
        "the open pull request's preview, from a resync",
        &serve,
        &github,
        &sha,
    )
    .await;
    let up = started.elapsed();
    assert!(ns.exists().await);
    let calls = github.calls();
    let listed: Vec<_> = calls.iter().filter(|c| c.path == pulls).collect();
    assert_eq!(listed[0].status, 403);
    let reset_at = std::time::UNIX_EPOCH + Duration::from_secs(reset);
    assert!(
        listed[1].at >= reset_at,
        "asked again before the rate limit's reset:\n{}",
        github.dump()
    );
    let created: Vec<u16> = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path == create)
        .map(|c| c.status)
        .collect();
    assert_eq!(created, [500, 500, 201], "{}", github.dump());
    let ids = deployments_for(&github, &sha);
    assert_eq!(ids.len(), 1, "{}", github.dump());
    let success = github
        .statuses()
        .into_iter()
        .find(|s| s.deployment == ids[0] && s.state == "success")
        .unwrap();
    let page = http_get(success.environment_url.as_deref().unwrap());
    let api_line = page_line("api", "backend", &sha);
    assert!(
        page.lines().any(|l| l == api_line),
        "missing `{api_line}`:\n{page}"
    );
    wait_until(
        "the older push's deployment is marked inactive",
        Duration::from_secs(30),
        &serve,
        &github,
        || github.states_of(old).last().map(String::as_str) == Some("inactive"),
    )
    .await;
    // Unchanged lists are asked again conditionally: GitHub answers 304.
    wait_until(
        "a conditional list answered 304",
        Duration::from_secs(30),
        &serve,
        &github,
        || {
            github
                .calls()
                .iter()
                .any(|c| c.path.ends_with("/pulls") && c.status == 304)
        },
    )
    .await;

    // What a pass costs once everything is converged: count the calls of the next two passes.
    let passes = || serve.log().matches("event=resync.done").count();
    let (before, calls_before) = (passes(), github.calls().len());
    wait_until(
        "two more resyncs",
        Duration::from_secs(30),
        &serve,
        &github,
        || passes() >= before + 2,
    )
    .await;
    let (after, calls) = (passes(), github.calls());
    let window = &calls[calls_before..];
    let unchanged = window.iter().filter(|c| c.status == 304).count();
    let per_pass = window.len() as f64 / (after - before) as f64;

    // Closed on GitHub, still no webhook: the next resync deletes the preview.
    github.close(REPO, 42);
    let closed = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let gone =
        kube::runtime::wait::await_condition(namespaces, &ns.name, |n: Option<&Namespace>| {
            n.is_none()
        });
    if tokio::time::timeout(Duration::from_secs(240), gone)
        .await
        .is_err()
    {
        panic!(
            "the closed pull request's preview is still there\n{}\n{}",
            github.dump(),
            serve.log()
        );
    }
    let down = closed.elapsed();
    wait_until(
        "the closed pull request's deployment is inactive",
        Duration::from_secs(30),
        &serve,
        &github,
        || github.states_of(ids[0]).last().map(String::as_str) == Some("inactive"),
    )
    .await;
    let log = serve.log();
    assert!(!log.contains("event=webhook.accepted"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("event=webhook.ignored")
            && l.contains("someone-else/backend is not one of sandbox.yaml's repositories")),
        "{log}"
    );
    assert!(
        github.deployments().iter().all(|d| d.repo == REPO),
        "{}",
        github.dump()
    );
    eprintln!(
        "serve resync: preview up {:.1}s after start, gone {:.1}s after the close; \
         converged, a pass made {per_pass:.1} GitHub calls ({unchanged} of {} answered 304)",
        up.as_secs_f64(),
        down.as_secs_f64(),
        window.len()
    );
}

#[tokio::test]
async fn serve_brings_a_branch_up_for_a_deployment_event_and_reports_on_it() {
    let Some(client) = cluster("serve: deployment event").await else {
        return;
    };
    let product = Product::new("serve-depev");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let github = FakeGitHub::start().await;
    let state = TestNamespace::claim(&client, "e2e-serve-depev-state").await;
    let serve = Serve::start(&product, &github, &state.name, &[]);
    let sha = product.sha("backend", "feature-x");
    // A deployment someone asked GitHub for (e.g. from chat).
    let id = github.add_deployment(REPO, &sha, "sandbox/feature-x");
    let mut event = fixture("deployment.json");
    event["deployment"]["id"] = id.into();
    event["deployment"]["sha"] = sha.clone().into();
    let (status, answer) = deliver(
        &serve.url("/webhook"),
        "deployment",
        "e2e-deployment",
        &serde_json::to_vec(&event).unwrap(),
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    wait_for_success("a success on the event's deployment", &serve, &github, &sha).await;
    assert_eq!(github.states_of(id), ["queued", "in_progress", "success"]);
    assert_eq!(
        github.deployments().len(),
        1,
        "no deployment of its own:\n{}",
        github.dump()
    );
    let success = github
        .statuses()
        .into_iter()
        .find(|s| s.deployment == id && s.state == "success")
        .unwrap();
    let page = http_get(success.environment_url.as_deref().unwrap());
    let api_line = page_line("api", "backend", &sha);
    assert!(
        page.lines().any(|l| l == api_line),
        "missing `{api_line}`:\n{page}"
    );
    assert!(ns.exists().await);
}

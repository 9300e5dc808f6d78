//! What the `sandbox serve` tests stand on, so that each reads as a story: start serve, deliver,
//! expect. The serve process and its log, GitHub's signed deliveries to it, and waits on what the
//! recording GitHub stand-in and the cluster show (each failing with both their records).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::support::{http_get, root, run_ok, Product, TestNamespace};

// The GitHub stand-in, shared with serve's unit tests (tests/support), for the serve tests here.
use fake_github::FakeGitHub;
pub(crate) use sandbox_test_support::fake_github;

pub(crate) const SECRET: &str = "e2e-serve-webhook-secret-5b1f";
pub(crate) const TOKEN: &str = "ghp_e2eServeToken000000000000000000000000";
/// The example's decrypted database password: it must never show anywhere.
pub(crate) const DB_PASSWORD: &str = "sandbox-demo-db-password-7f3a";
pub(crate) const REPO: &str = "octo-org/backend";

/// A serve test's ground: the example product, the sandbox of its branch `feature-x` (what the
/// fixtures' pull request previews), the namespace serve keeps its state in, and the GitHub
/// stand-in. Started serves are locals declared after it, so they stop before it goes.
pub(crate) struct ServeFixture {
    pub(crate) product: Product,
    pub(crate) preview: TestNamespace,
    pub(crate) state: TestNamespace,
    pub(crate) github: FakeGitHub,
}

impl ServeFixture {
    /// `name` makes the namespace prefix (`e2e-NAME-`) and the state's namespace
    /// (`e2e-NAME-state`), so parallel tests share nothing.
    pub(crate) async fn new(client: &Client, name: &str) -> ServeFixture {
        let product = Product::new(name);
        let preview = TestNamespace::claim(client, &product.namespace("feature-x")).await;
        let state = TestNamespace::claim(client, &format!("e2e-{name}-state")).await;
        let github = FakeGitHub::start().await;
        let fixture = ServeFixture {
            product,
            preview,
            state,
            github,
        };
        fixture.publish_images();
        fixture
    }

    /// `sandbox serve` of this product, on this state and GitHub, with `extra` flags.
    pub(crate) fn serve(&self, extra: &[&str]) -> Serve {
        Serve::start(&self.product, &self.github, &self.state.name, extra)
    }

    /// [`ServeFixture::serve`] with more environment variables.
    pub(crate) fn serve_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        Serve::start_with_env(&self.product, &self.github, &self.state.name, extra, env)
    }

    /// The backend's `feature-x` commit: the head of the fixtures' pull request.
    pub(crate) fn head(&self) -> String {
        self.product.sha("backend", "feature-x")
    }

    /// A push to the backend's `feature-x`, as the pull request's CI sees it: the commit, then
    /// its images built and published (`sandbox images`). serve never builds — a build runs the
    /// branch's Containerfile — so it waits for CI's image of each new commit.
    pub(crate) fn push(&self, message: &str, change: impl FnOnce(&std::path::Path)) -> String {
        let sha = self.product.commit("backend", "feature-x", message, change);
        self.publish_images();
        sha
    }

    /// CI's part: every image of `feature-x`'s commits built and in the registry.
    pub(crate) fn publish_images(&self) {
        run_ok(&mut self.product.sandbox(&["images", "--branch", "feature-x"]));
    }
}

/// `sandbox serve` as a child process; its stderr (the structured log) is collected.
pub(crate) struct Serve {
    pub(crate) child: Child,
    /// The webhook's listener.
    pub(crate) addr: String,
    /// The status page's, /api/sandboxes' and /metrics' listener.
    pub(crate) status_addr: String,
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
        Serve::start_with_env(product, github, state, extra, &[])
    }

    /// [`Serve::start`] with more environment variables.
    pub(crate) fn start_with_env(
        product: &Product,
        github: &FakeGitHub,
        state: &str,
        extra: &[&str],
        env: &[(&str, &str)],
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
        if !extra.contains(&"--status-listen") {
            cmd.args(["--status-listen", "127.0.0.1:0"]);
        }
        cmd.args(extra)
            .env("SANDBOX_WEBHOOK_SECRET", SECRET)
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("SANDBOX_GITHUB_TOKEN")
            .env("SANDBOX_SLACK_WEBHOOK_URL", github.slack_url())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let listening = collect_log(&mut child, log.clone());
        let (mut addr, mut status_addr) = (None, None);
        while addr.is_none() || status_addr.is_none() {
            match listening.recv_timeout(Duration::from_secs(30)) {
                Ok((event, at)) if event == "listening" => addr = Some(at),
                Ok((_, at)) => status_addr = Some(at),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "`sandbox serve` did not start listening:\n{}",
                        log.lock().unwrap()
                    );
                }
            }
        }
        Serve {
            child,
            addr: addr.unwrap(),
            status_addr: status_addr.unwrap(),
            log,
        }
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

    /// `path` on the webhook's listener.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `path` on the status listener (the status page, /api/sandboxes, /metrics).
    pub(crate) fn status_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.status_addr)
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

    /// GitHub's delivery of `event` to this serve's /webhook, signed with [`SECRET`].
    pub(crate) async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> (u16, Value) {
        deliver(&self.url("/webhook"), event, delivery, body, Some(SECRET)).await
    }

    /// [`Serve::deliver`] of the fixtures' pull request (#42 of [`REPO`], branch `feature-x`):
    /// `action` with the head at `sha`.
    pub(crate) async fn deliver_pr(&self, delivery: &str, action: &str, sha: &str) -> (u16, Value) {
        self.deliver("pull_request", delivery, &pull_request(action, sha))
            .await
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

/// Collect the child's stderr into `log`, from a thread; the answers are the event and address
/// of its `listening` and `status.listening` lines (in the text or the JSON log format).
fn collect_log(child: &mut Child, log: Arc<Mutex<String>>) -> mpsc::Receiver<(String, String)> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            for event in ["listening", "status.listening"] {
                if line.contains(&format!("event={event} ")) {
                    if let Some(addr) = field(&line, "addr") {
                        let _ = tx.send((event.to_owned(), addr));
                    }
                }
            }
            // The same lines with `--log-format json`.
            if let Ok(json) = serde_json::from_str::<Value>(&line) {
                if let (Some(event @ ("listening" | "status.listening")), Some(addr)) =
                    (json["event"].as_str(), json["addr"].as_str())
                {
                    let _ = tx.send((event.to_owned(), addr.to_owned()));
                }
            }
            log.lock().unwrap().push_str(&line);
            log.lock().unwrap().push('\n');
        }
    });
    rx
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

/// A `pull_request` delivery of `repo`#`number` with head `branch` at `sha`.
pub(crate) fn pr_event(action: &str, repo: &str, number: u64, branch: &str, sha: &str) -> Vec<u8> {
    let mut event = fixture("pull_request.opened.json");
    event["action"] = action.into();
    event["number"] = number.into();
    event["pull_request"]["number"] = number.into();
    event["pull_request"]["head"]["ref"] = branch.into();
    event["pull_request"]["head"]["sha"] = sha.into();
    event["pull_request"]["head"]["repo"]["full_name"] = repo.into();
    event["repository"]["full_name"] = repo.into();
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

/// A delivery's answer, which must be 202: accepted, the work is queued.
#[track_caller]
pub(crate) fn accepted((status, answer): (u16, Value)) {
    assert_eq!(status, 202, "{answer}");
}

/// Fail: `what` did not happen within `limit`; with everything GitHub and serve saw.
fn not_within(what: &str, limit: Duration, serve: &Serve, github: &FakeGitHub) -> ! {
    panic!(
        "not within {limit:?}: {what}\n--- GitHub calls\n{}--- serve log\n{}",
        github.dump(),
        serve.log()
    );
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
            not_within(what, limit, serve, github);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The deployments created for `sha`.
pub(crate) fn deployments_for(github: &FakeGitHub, sha: &str) -> Vec<u64> {
    github
        .deployments()
        .into_iter()
        .filter(|d| d.sha == sha)
        .map(|d| d.id)
        .collect()
}

/// Whether a deployment of `sha` was given the status `state` (`in_progress`, `failure`, …).
pub(crate) fn reached(github: &FakeGitHub, sha: &str, state: &str) -> bool {
    deployments_for(github, sha)
        .iter()
        .any(|id| github.states_of(*id).iter().any(|s| s == state))
}

/// Whether a deployment of `sha` got a `success` status.
pub(crate) fn succeeded(github: &FakeGitHub, sha: &str) -> bool {
    reached(github, sha, "success")
}

/// Wait until a deployment of `sha` is given the status `state`.
pub(crate) async fn wait_for_status(
    what: &str,
    limit: Duration,
    serve: &Serve,
    github: &FakeGitHub,
    sha: &str,
    state: &str,
) {
    wait_until(what, limit, serve, github, || reached(github, sha, state)).await;
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

/// Wait until deployment `id`'s latest status is `inactive`.
pub(crate) async fn wait_for_inactive(
    what: &str,
    limit: Duration,
    serve: &Serve,
    github: &FakeGitHub,
    id: u64,
) {
    wait_until(what, limit, serve, github, || {
        github.states_of(id).last().map(String::as_str) == Some("inactive")
    })
    .await;
}

/// The URL that deployment `id`'s `success` status gives.
pub(crate) fn success_url(github: &FakeGitHub, id: u64) -> String {
    github
        .statuses()
        .into_iter()
        .find(|s| s.deployment == id && s.state == "success")
        .unwrap_or_else(|| panic!("no success status for deployment {id}:\n{}", github.dump()))
        .environment_url
        .expect("the URL on the success status")
}

/// The line of the gateway's page that says where a service was built from.
pub(crate) fn page_line(service: &str, repo: &str, sha: &str) -> String {
    format!("service={service} repo={repo} branch=feature-x sha={sha}")
}

/// The preview at `url` runs the `api` service built from the backend at `sha`: its page says so.
pub(crate) fn assert_api_built_from(url: &str, sha: &str) {
    let page = http_get(url);
    let api_line = page_line("api", "backend", sha);
    assert!(
        page.lines().any(|l| l == api_line),
        "missing `{api_line}`:\n{page}"
    );
}

/// Wait until namespace `ns` exists, or fail with what serve and GitHub saw.
pub(crate) async fn wait_until_exists(
    what: &str,
    limit: Duration,
    ns: &TestNamespace,
    serve: &Serve,
    github: &FakeGitHub,
) {
    if !ns.exists_within(limit).await {
        not_within(what, limit, serve, github);
    }
}

/// Wait until namespace `ns` is gone, or fail with what serve and GitHub saw.
pub(crate) async fn wait_until_gone(
    what: &str,
    limit: Duration,
    ns: &TestNamespace,
    serve: &Serve,
    github: &FakeGitHub,
) {
    if !ns.gone_within(limit).await {
        not_within(what, limit, serve, github);
    }
}

/// Wait until the closed pull request's preview `ns` is gone (240 s at most), then until its
/// deployment `id` is marked inactive; the answer is how long the preview took to go.
pub(crate) async fn wait_for_teardown(
    serve: &Serve,
    github: &FakeGitHub,
    ns: &TestNamespace,
    id: u64,
    inactive_within: Duration,
) -> Duration {
    let closed = Instant::now();
    let what = "the closed pull request's preview is gone";
    wait_until_gone(what, Duration::from_secs(240), ns, serve, github).await;
    let teardown = closed.elapsed();
    let what = "the closed pull request's deployment is inactive";
    wait_for_inactive(what, inactive_within, serve, github, id).await;
    teardown
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

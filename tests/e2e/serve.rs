//! `sandbox serve` end to end: the real binary receives GitHub's `pull_request` webhooks
//! (payloads shaped like GitHub's, from tests/fixtures/github) and deploys on the real cluster;
//! a local server stands in for GitHub's API and records every call.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use super::serve_support::fake_github::{Canned, FakeGitHub, FakeStatus};
use super::serve_support::{
    accepted, assert_api_built_from, create_sandbox_namespace, deliver, deployments_for, field,
    fixture, page_line, pr_event, pull_request, succeeded, success_url, wait_for_inactive,
    wait_for_status, wait_for_success, wait_for_teardown, wait_until, wait_until_gone, Serve,
    ServeFixture, DB_PASSWORD, REPO, SECRET, TOKEN,
};
use crate::support::{apply_yaml, cluster, http_get, root, run_ok, Product, TestNamespace};

#[tokio::test]
async fn serve_previews_a_pull_request_from_opened_to_closed() {
    let Some(client) = cluster("serve: pull request lifecycle").await else {
        return;
    };
    let started = Instant::now();
    let fx = ServeFixture::new(&client, "serve").await;
    let (ns, github) = (&fx.preview, &fx.github);
    let mut serve = fx.serve(&[]);
    let webhook = serve.url("/webhook");

    let health = reqwest::get(serve.url("/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ping = serde_json::to_vec(&fixture("ping.json")).unwrap();
    let (status, answer) = serve.deliver("ping", "e2e-ping", &ping).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("pong")));

    // A bad signature, or none: 401, and nothing happens.
    let sha1 = fx.head();
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
    let (status, answer) = serve.deliver_pr("", "opened", &sha1).await;
    assert_eq!(status, 400, "{answer}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!ns.exists().await, "a refused delivery created the sandbox");
    assert!(github.deployments().is_empty(), "{}", github.dump());

    // Opened, delivered twice (GitHub retries): one sandbox, one deployment, a success with the URL.
    accepted(serve.deliver_pr("e2e-open", "opened", &sha1).await);
    let (status, answer) = serve.deliver_pr("e2e-open", "opened", &sha1).await;
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
        github,
        &sha1,
    )
    .await;
    let first_up = up_started.elapsed();
    let ids = deployments_for(github, &sha1);
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
    let url = success_url(github, ids[0]);
    assert!(url.starts_with("http://"), "{url}");
    assert_api_built_from(&url, &sha1);
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
    let sha2 = fx
        .product
        .commit("backend", "feature-x", "second push", |dir| {
            std::fs::write(dir.join("NOTES.md"), "second push\n").unwrap();
        });
    let sha3 = fx.push("third push", |dir| {
        std::fs::write(dir.join("NOTES.md"), "third push\n").unwrap();
    });
    let (s2, _) = serve.deliver_pr("e2e-sync-2", "synchronize", &sha2).await;
    // The first update is under way (fetching, applying) when the second push arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s3, answer) = serve.deliver_pr("e2e-sync-3", "synchronize", &sha3).await;
    assert_eq!((s2, s3), (202, 202), "{answer}");
    assert_eq!(
        answer["superseding"], true,
        "the second push supersedes the first: {answer}"
    );
    let sync_started = Instant::now();
    wait_for_success(
        "a success status for the newest head",
        &serve,
        github,
        &sha3,
    )
    .await;
    let second_up = sync_started.elapsed();
    assert_eq!(deployments_for(github, &sha3).len(), 1, "{}", github.dump());
    assert!(
        serve
            .log()
            .contains("event=work.superseded branch=feature-x was=running"),
        "the running update was cancelled:\n{}",
        serve.log()
    );
    assert!(
        !succeeded(github, &sha2),
        "the superseded push got a success:\n{}",
        github.dump()
    );
    let newest = deployments_for(github, &sha3)[0];
    let final_success = github
        .statuses()
        .into_iter()
        .rfind(|s| s.state == "success")
        .unwrap();
    assert_eq!(
        final_success.deployment, newest,
        "the last success belongs to the newest push"
    );
    for id in deployments_for(github, &sha2) {
        let what = "the superseded deployment is inactive";
        wait_for_inactive(what, Duration::from_secs(10), &serve, github, id).await;
    }
    assert_api_built_from(final_success.environment_url.as_deref().unwrap(), &sha3);
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
    accepted(serve.deliver_pr("e2e-close", "closed", &sha3).await);
    let teardown = wait_for_teardown(&serve, github, ns, newest, Duration::from_secs(20)).await;

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

#[tokio::test]
async fn serve_deletes_sandboxes_of_pull_requests_closed_while_it_was_away() {
    let Some(client) = cluster("serve: resync at start").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "serve-reconcile").await;
    let (product, github) = (&fx.product, &fx.github);
    let closed = TestNamespace::claim(&client, &product.namespace("closed-pr")).await;
    let open = TestNamespace::claim(&client, &product.namespace("open-pr")).await;
    let plain = TestNamespace::claim(&client, &product.namespace("no-pr")).await;
    // Closed too, but made by hand (`sandbox up`), or by a version that did not say: kept.
    let by_hand = TestNamespace::claim(&client, &product.namespace("by-hand")).await;
    let unsaid = TestNamespace::claim(&client, &product.namespace("unsaid")).await;
    let serve_made = Some("serve");
    create_sandbox_namespace(&client, &closed.name, "closed-pr", Some(7), serve_made).await;
    create_sandbox_namespace(&client, &open.name, "open-pr", Some(8), serve_made).await;
    create_sandbox_namespace(&client, &plain.name, "no-pr", None, serve_made).await;
    create_sandbox_namespace(&client, &by_hand.name, "by-hand", Some(9), Some("up")).await;
    create_sandbox_namespace(&client, &unsaid.name, "unsaid", Some(10), None).await;
    for closed in [7, 9, 10] {
        github.close(REPO, closed);
    }

    let serve = fx.serve(&[]);
    wait_until_gone(
        "the closed pull request's sandbox is deleted",
        Duration::from_secs(120),
        &closed,
        &serve,
        github,
    )
    .await;
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

/// The row of namespace `ns` in the status page's DOM.
fn row_of<'d>(dom: &'d str, ns: &str) -> &'d str {
    let start = dom
        .find(&format!(r#"<tr id="sandbox-{ns}""#))
        .unwrap_or_else(|| panic!("no row for {ns} in the page:\n{dom}"));
    let row = &dom[start..];
    &row[..row.find("</tr>").expect("the row ends")]
}

/// Sandbox `ns` as serve's `/api/sandboxes` lists it.
async fn listed_sandbox(serve: &Serve, ns: &str) -> Value {
    let api: Value = reqwest::get(serve.status_url("/api/sandboxes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    api["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["namespace"] == ns)
        .cloned()
        .unwrap_or_else(|| panic!("{ns} not in /api/sandboxes: {api}"))
}

/// The status page lists the preview serve brought up, in a real browser, with working links;
/// `/api/sandboxes` says the same; `/metrics` counted it; and every JSON log line of the work
/// carries its delivery, repository, pull request and branch.
#[tokio::test]
async fn serve_shows_its_previews_on_the_status_page_in_chromium() {
    let Some(client) = cluster("serve: status page").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "serve-page").await;
    let (ns, github) = (&fx.preview, &fx.github);
    let serve = fx.serve(&["--log-format", "json"]);
    let sha = fx.head();
    accepted(serve.deliver_pr("e2e-page-open", "opened", &sha).await);
    wait_for_success("the preview is up", &serve, github, &sha).await;
    let url = github
        .statuses()
        .into_iter()
        .find_map(|s| s.environment_url.filter(|_| s.state == "success"))
        .expect("the URL on the success status");

    // The page, as a browser renders it: the sandbox's row, its pull request and URL as links.
    let dom = chromium_dom(&serve.status_url("/"));
    let row = row_of(&dom, &ns.name);
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

    let sandbox = listed_sandbox(&serve, &ns.name).await;
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

    let metrics = reqwest::get(serve.status_url("/metrics"))
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
    let broken = fx
        .product
        .commit("backend", "feature-x", "broken values", |dir| {
            std::fs::write(dir.join("api/values.yaml"), "replicas: [1, <b>2\n").unwrap();
        });
    accepted(
        serve
            .deliver_pr("e2e-page-broken", "synchronize", &broken)
            .await,
    );
    wait_for_status(
        "a failure status for the broken push",
        Duration::from_secs(300),
        &serve,
        github,
        &broken,
        "failure",
    )
    .await;
    // The pages share one listing for 5 s: the error shows once it is newer.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let sandbox = listed_sandbox(&serve, &ns.name).await;
    let last_error = sandbox["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{sandbox}"));
    assert!(last_error.contains("values.yaml"), "{last_error}");
    assert_eq!(
        sandbox["status"], "ready",
        "the previous revision still runs"
    );
    let dom = chromium_dom(&serve.status_url("/"));
    let row = row_of(&dom, &ns.name);
    assert!(row.contains(r#"<div class="error">"#), "{row}");
    assert!(!row.contains("<b>"), "the error is text, not markup: {row}");
}

/// The node's address: what a pod reaches this machine's network namespace at.
pub(super) async fn node_ip(client: &Client) -> String {
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
pub(super) struct GitDaemon {
    child: Child,
    /// `git://IP:PORT`: a repository's URL is this and its name.
    pub(super) url: String,
}

impl GitDaemon {
    /// Serving the repositories in `repos` on `ip`, at a free port; listening once started.
    pub(super) fn start(ip: &str, repos: &std::path::Path) -> GitDaemon {
        let port = free_port(ip);
        let daemon = GitDaemon {
            // git-daemon itself, not the `git daemon` wrapper: killing the wrapper would leave
            // the daemon running (and holding the test's output open).
            child: Command::new(git_daemon_path())
                .arg("--export-all")
                .arg("--reuseaddr")
                .arg(format!("--listen={ip}"))
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", repos.display()))
                .arg(repos)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("git daemon runs"),
            url: format!("git://{ip}:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect((ip, port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "git daemon did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// deploy/serve.yaml with this test's names: namespace `system`, the image of this test's
/// binary, GitHub at `github_url` and the repositories at `git_url`.
fn serve_manifests(system: &str, github_url: &str, git_url: &str) -> String {
    let manifests = std::fs::read_to_string(root().join("deploy/serve.yaml"))
        .unwrap()
        .replace("sandbox-system", system)
        .replace("sandbox-serve", "e2e-serve-pod")
        .replace(
            "docker.io/local/sandbox:dev",
            "docker.io/local/sandbox:e2e-serve",
        )
        .replace("https://api.github.com", github_url)
        .replace("https://github.com/octo-org", git_url)
        .replace("--shutdown-grace=300s", "--shutdown-grace=20s")
        // The chart's reaper would reap every product's expired sandboxes in this shared
        // cluster: its CronJob is made, and never runs.
        .replace("  suspend: false\n", "  suspend: true\n");
    for expected in [
        "  suspend: true\n",
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
    manifests
}

/// What the serve pods need before they start: namespace `system`, the secret (webhook secret,
/// GitHub token, age key) and the product's files.
async fn create_serve_inputs(client: &Client, system: &str, product: &Product) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": system}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), system);
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
    Api::<ConfigMap>::namespaced(client.clone(), system)
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap();
}

/// `manifests` as this cluster takes them: before Kubernetes 1.21 it serves
/// PodDisruptionBudgets as policy/v1beta1 and CronJobs as batch/v1beta1 only.
async fn for_this_cluster(client: &Client, manifests: String) -> String {
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
    if policy_v1 {
        manifests
    } else {
        manifests
            .replace("apiVersion: policy/v1\n", "apiVersion: policy/v1beta1\n")
            .replace(
                "apiVersion: batch/v1\nkind: CronJob\n",
                "apiVersion: batch/v1beta1\nkind: CronJob\n",
            )
    }
}

/// The serve Deployment `e2e-serve-pod` of deploy/serve.yaml, in namespace `system`.
struct ServePods {
    client: Client,
    system: String,
}

impl ServePods {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.system)
    }

    /// Every pod's container statuses and log.
    async fn log(&self) -> String {
        let pods = self.pods();
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

    /// Delete its cluster-wide objects (deleting the test's namespace leaves them).
    async fn cleanup(&self) {
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(self.client.clone());
        let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
            Api::all(self.client.clone());
        let _ = roles
            .delete("e2e-serve-pod", &DeleteParams::default())
            .await;
        let _ = roles
            .delete("e2e-serve-pod-in-sandbox", &DeleteParams::default())
            .await;
        let _ = bindings
            .delete("e2e-serve-pod", &DeleteParams::default())
            .await;
        // The chart's reaper.
        let _ = roles
            .delete("e2e-serve-pod-reaper", &DeleteParams::default())
            .await;
        let _ = bindings
            .delete("e2e-serve-pod-reaper", &DeleteParams::default())
            .await;
    }

    /// The pods' log, then [`ServePods::cleanup`]: what a failure shows, and does first.
    async fn log_and_cleanup(&self) -> String {
        let log = self.log().await;
        self.cleanup().await;
        log
    }

    /// What its service account may do in a namespace that is not a sandbox's, of: get Secrets,
    /// create Jobs, update Leases.
    async fn rights_outside_sandboxes(&self) -> Vec<String> {
        let account = format!("system:serviceaccount:{}:e2e-serve-pod", self.system);
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
            let answer = Api::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .unwrap();
            if answer.status.is_some_and(|s| s.allowed) {
                outside.push(format!("{verb} {resource}"));
            }
        }
        outside
    }

    /// Whether both replicas are ready (the readiness probe is /healthz) within `limit`.
    async fn ready_within(&self, limit: Duration) -> bool {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.system);
        let ready = kube::runtime::wait::await_condition(
            deployments,
            "e2e-serve-pod",
            |d: Option<&Deployment>| {
                d.and_then(|d| d.status.as_ref())
                    .is_some_and(|s| s.ready_replicas.unwrap_or(0) >= 2)
            },
        );
        tokio::time::timeout(limit, ready).await.is_ok()
    }

    /// Its Service's `http://IP`, once it answers /healthz there within `limit` (a pod is ready
    /// before kube-proxy has programmed the Service's endpoints).
    async fn reachable_service(&self, limit: Duration) -> Option<String> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.system);
        let cluster_ip = services
            .get("e2e-serve-pod")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .unwrap();
        let started = Instant::now();
        loop {
            let health = reqwest::get(format!("http://{cluster_ip}/healthz")).await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Some(format!("http://{cluster_ip}"));
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The first final status (`success` or `failure`) GitHub is given within `limit`.
async fn first_outcome(github: &FakeGitHub, limit: Duration) -> Option<FakeStatus> {
    let started = Instant::now();
    loop {
        let done = github
            .statuses()
            .into_iter()
            .find(|s| s.state == "success" || s.state == "failure");
        if done.is_some() {
            return done;
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
    let daemon = GitDaemon::start(&ip, &product.path().join("repos"));
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
    let manifests = serve_manifests(&system.name, &github.url, &daemon.url);
    // The namespace, the secret and the product's files first, so the pod starts at once.
    create_serve_inputs(&client, &system.name, &product).await;
    let manifests = for_this_cluster(&client, manifests).await;
    assert!(
        manifests.contains("kind: PodDisruptionBudget\n") && manifests.contains("replicas: 2\n"),
        "deploy/serve.yaml runs two replicas with a disruption budget"
    );
    apply_yaml(&client, &system.name, &manifests).await;
    let serve = ServePods {
        client: client.clone(),
        system: system.name.clone(),
    };

    // Its rights stop at the sandboxes: no Secrets, Jobs or Leases in any other namespace.
    let outside = serve.rights_outside_sandboxes().await;
    if !outside.is_empty() {
        serve.cleanup().await;
        panic!("serve may {outside:?} outside its sandboxes");
    }
    if !serve.ready_within(Duration::from_secs(120)).await {
        let log = serve.log_and_cleanup().await;
        panic!("the serve Deployment did not become ready:\n{log}");
    }
    // Through its Service, as GitHub would (via whatever exposes it).
    let Some(service) = serve.reachable_service(Duration::from_secs(60)).await else {
        let log = serve.log_and_cleanup().await;
        panic!("the Service does not reach the serve pod:\n{log}");
    };
    let webhook = format!("{service}/webhook");

    let sha = product.sha("backend", "feature-x");
    let opened = pull_request("opened", &sha);
    let reply = deliver(
        &webhook,
        "pull_request",
        "e2e-pod-open",
        &opened,
        Some(SECRET),
    )
    .await;
    accepted(reply);
    let started = Instant::now();
    let outcome = first_outcome(&github, Duration::from_secs(300)).await;
    let in_pod_up = started.elapsed();
    let Some(outcome) = outcome.filter(|s| s.state == "success") else {
        let log = serve.log_and_cleanup().await;
        panic!("no success from the pod (RBAC?):\n{}\n{log}", github.dump());
    };
    let page = http_get(outcome.environment_url.as_deref().unwrap());
    assert!(page.contains(&page_line("api", "backend", &sha)), "{page}");

    // Closed: the pod deletes the sandbox (its RBAC allows that too).
    let closed = pull_request("closed", &sha);
    let reply = deliver(
        &webhook,
        "pull_request",
        "e2e-pod-close",
        &closed,
        Some(SECRET),
    )
    .await;
    accepted(reply);
    let gone = sandbox_ns.gone_within(Duration::from_secs(240)).await;
    let log = serve.log_and_cleanup().await;
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
    while !serve
        .pods()
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

#[tokio::test]
async fn serve_converges_to_githubs_open_pull_requests_without_webhooks() {
    let Some(client) = cluster("serve: resync without webhooks").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "serve-resync").await;
    let (ns, github) = (&fx.preview, &fx.github);
    let sha = fx.head();
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
    let serve = fx.serve(&["--resync", "3s"]);

    // A pull request of a repository sandbox.yaml does not list: acknowledged, logged, ignored.
    let stranger = pr_event("opened", "someone-else/backend", 42, "feature-x", &sha);
    let (status, answer) = serve
        .deliver("pull_request", "e2e-stranger", &stranger)
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
        github,
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
    let ids = deployments_for(github, &sha);
    assert_eq!(ids.len(), 1, "{}", github.dump());
    assert_api_built_from(&success_url(github, ids[0]), &sha);
    wait_for_inactive(
        "the older push's deployment is marked inactive",
        Duration::from_secs(30),
        &serve,
        github,
        old,
    )
    .await;
    // Unchanged lists are asked again conditionally: GitHub answers 304.
    wait_until(
        "a conditional list answered 304",
        Duration::from_secs(30),
        &serve,
        github,
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
        github,
        || passes() >= before + 2,
    )
    .await;
    let (after, calls) = (passes(), github.calls());
    let window = &calls[calls_before..];
    let unchanged = window.iter().filter(|c| c.status == 304).count();
    let per_pass = window.len() as f64 / (after - before) as f64;

    // Closed on GitHub, still no webhook: the next resync deletes the preview.
    github.close(REPO, 42);
    let down = wait_for_teardown(&serve, github, ns, ids[0], Duration::from_secs(30)).await;
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
    let fx = ServeFixture::new(&client, "serve-depev").await;
    let github = &fx.github;
    let serve = fx.serve(&[]);
    let sha = fx.head();
    // A deployment someone asked GitHub for (e.g. from chat).
    let id = github.add_deployment(REPO, &sha, "sandbox/feature-x");
    let mut event = fixture("deployment.json");
    event["deployment"]["id"] = id.into();
    event["deployment"]["sha"] = sha.clone().into();
    let event = serde_json::to_vec(&event).unwrap();
    accepted(serve.deliver("deployment", "e2e-deployment", &event).await);
    wait_for_success("a success on the event's deployment", &serve, github, &sha).await;
    assert_eq!(github.states_of(id), ["queued", "in_progress", "success"]);
    assert_eq!(
        github.deployments().len(),
        1,
        "no deployment of its own:\n{}",
        github.dump()
    );
    assert_api_built_from(&success_url(github, id), &sha);
    assert!(fx.preview.exists().await);
}

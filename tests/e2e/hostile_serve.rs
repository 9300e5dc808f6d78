//! `sandbox serve` against a hostile webhook sender and network client, end to end: the real
//! binary, the real cluster, the recording GitHub stand-in.
//!
//! Whoever captured a signed delivery (a log, a proxy, GitHub's delivery page) can send it
//! again under a fresh `X-GitHub-Delivery` and under another `X-GitHub-Event`: neither header
//! is signed. Whoever reaches the webhook's port (it faces the internet) must not read the
//! status page. Whoever can comment on a pull request must not have serve edit their comment.

use std::time::Duration;

use serde_json::{json, Value};

use super::serve_support::fake_github::{FakeGitHub, DEFAULT_IDENTITY};
use super::serve_support::{
    accepted, assert_api_built_from, deployments_for, fixture, pr_event, success_url,
    wait_for_success, wait_until, wait_until_gone, Serve, ServeFixture, REPO,
};
use crate::support::{cluster, TestNamespace};

/// The fixtures' pull request (#42 of [`REPO`], branch `feature-x`): `action` with the head at
/// `sha`, as GitHub would send it at `updated_at`.
fn pr_at(action: &str, sha: &str, updated_at: &str) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&pr_event(action, REPO, 42, "feature-x", sha))
        .expect("a pull request event");
    event["pull_request"]["updated_at"] = updated_at.into();
    if action == "closed" {
        event["pull_request"]["state"] = "closed".into();
    }
    serde_json::to_vec(&event).unwrap()
}

/// The answer's `status`, which must be one of `expected` with a 200: nothing was done.
#[track_caller]
fn changed_nothing((status, answer): (u16, Value), expected: &[&str]) {
    assert_eq!(status, 200, "{answer}");
    let said = answer["status"].as_str().unwrap_or_default();
    assert!(
        expected.iter().any(|e| said.starts_with(e)),
        "expected {expected:?}: {answer}"
    );
}

/// Replayed bodies change nothing: a captured `closed` sent again under a fresh delivery id
/// after a reopen leaves the preview up, an old push's `synchronize` does not roll it back, and
/// a signed body older than what the preview has seen is stale. And the PR comment that
/// someone else wrote with serve's marker is left alone: serve writes its own.
#[tokio::test]
async fn hostile_serve_replayed_deliveries_change_nothing_and_others_comments_stay() {
    let Some(client) = cluster("hostile serve: replays").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "hserve-replay").await;
    let (ns, github) = (&fx.preview, &fx.github);
    let marked = "<!-- sandbox-preview -->\nThe sandbox is up: http://phishing.example/";
    let theirs = github.add_comment(REPO, 42, "mallory", marked);
    let serve = fx.serve(&[]);

    let sha1 = fx.head();
    let old_push = pr_at("synchronize", &sha1, "2026-12-01T10:00:00Z");
    accepted(serve.deliver("pull_request", "hs-sync-1", &old_push).await);
    wait_for_success("the first push is up", &serve, github, &sha1).await;
    let sha2 = fx.push("second push", |dir| {
        std::fs::write(dir.join("NOTES.md"), "second push\n").unwrap();
    });
    let push = pr_at("synchronize", &sha2, "2026-12-01T11:00:00Z");
    accepted(serve.deliver("pull_request", "hs-sync-2", &push).await);
    wait_for_success("the second push is up", &serve, github, &sha2).await;
    let closed = pr_at("closed", &sha2, "2026-12-01T12:00:00Z");
    accepted(serve.deliver("pull_request", "hs-close", &closed).await);
    let what = "the closed pull request's preview is gone";
    wait_until_gone(what, Duration::from_secs(240), ns, &serve, github).await;
    let reopened = pr_at("reopened", &sha2, "2026-12-01T13:00:00Z");
    accepted(serve.deliver("pull_request", "hs-reopen", &reopened).await);
    let up_again = || deployments_for(github, &sha2).len() == 2;
    let what = "the reopened pull request's deployment";
    wait_until(what, Duration::from_secs(30), &serve, github, up_again).await;
    let reopen_id = *deployments_for(github, &sha2).last().unwrap();
    let what = "the reopened pull request's preview is up";
    wait_until(what, Duration::from_secs(300), &serve, github, || {
        github.states_of(reopen_id).last().map(String::as_str) == Some("success")
    })
    .await;
    let deployments = github.deployments().len();

    // The captured bodies again, under fresh ids: the same bodies, so duplicates.
    let fresh = serve
        .deliver("pull_request", "hs-close-again", &closed)
        .await;
    changed_nothing(fresh, &["duplicate"]);
    let fresh = serve
        .deliver("pull_request", "hs-old-push-again", &old_push)
        .await;
    changed_nothing(fresh, &["duplicate"]);
    // A signed body serve never took (captured elsewhere), older than what the preview saw.
    let unseen_close = pr_at("closed", &sha2, "2026-12-01T12:30:00Z");
    let stale = serve
        .deliver("pull_request", "hs-unseen", &unseen_close)
        .await;
    changed_nothing(stale, &["stale"]);
    let unseen_push = pr_at("synchronize", &sha1, "2026-12-01T12:45:00Z");
    let stale = serve
        .deliver("pull_request", "hs-unseen-2", &unseen_push)
        .await;
    changed_nothing(stale, &["stale"]);

    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(ns.exists().await, "a replay took the preview down");
    assert_eq!(
        github.deployments().len(),
        deployments,
        "a replay deployed:\n{}",
        github.dump()
    );
    assert_api_built_from(&success_url(github, reopen_id), &sha2);
    let teardowns = serve
        .log()
        .lines()
        .filter(|l| l.contains("event=job.started") && l.contains("action=destroy"))
        .count();
    assert_eq!(teardowns, 1, "only the real `closed` tore the preview down");

    // Mallory's comment carries the marker; it is not serve's, and is never edited.
    let comments = github.comments();
    let mallorys = comments.iter().find(|c| c.id == theirs).unwrap();
    assert_eq!((mallorys.edits, mallorys.body.as_str()), (0, marked));
    let own: Vec<_> = comments.iter().filter(|c| c.id != theirs).collect();
    assert_eq!(own.len(), 1, "one comment of serve's own: {comments:?}");
    assert_eq!(own[0].author, DEFAULT_IDENTITY);
    assert!(own[0].body.contains("is up") && own[0].edits > 0, "{own:?}");
}

/// A deployment event's body, for deployment `id` of `sha` to `environment`.
fn deployment(id: u64, sha: &str, environment: &str) -> Value {
    let mut event = fixture("deployment.json");
    event["deployment"]["id"] = id.into();
    event["deployment"]["sha"] = sha.into();
    event["deployment"]["environment"] = environment.into();
    event
}

/// The failure status GitHub was given for deployment `id`, once given.
async fn failure_of(id: u64, serve: &Serve, github: &FakeGitHub) -> String {
    let what = format!("a failure status on deployment {id}");
    wait_until(&what, Duration::from_secs(180), serve, github, || {
        github.states_of(id).iter().any(|s| s == "failure")
    })
    .await;
    github
        .statuses()
        .into_iter()
        .find(|s| s.deployment == id && s.state == "failure")
        .unwrap()
        .description
}

/// A `deployment_status` body sent as a `deployment` is refused; a deployment of a branch the
/// repository does not have, or of a commit that is not the branch's tip, fails with the reason
/// and deploys nothing (no fallback to the default branch, no other commit in its place).
#[tokio::test]
async fn hostile_serve_deployments_deploy_exactly_their_commit_or_fail() {
    let Some(client) = cluster("hostile serve: deployments").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "hserve-deploy").await;
    let (ns, github) = (&fx.preview, &fx.github);
    let missing = TestNamespace::claim(&client, &fx.product.namespace("no-such-branch")).await;
    let serve = fx.serve(&[]);
    let tip = fx.head();

    // serve's own deployment status, as GitHub would send it to a hook that takes
    // `deployment_status` events, relabelled `deployment`.
    let id = github.add_deployment(REPO, &tip, "sandbox/feature-x");
    let mut status = deployment(id, &tip, "sandbox/feature-x");
    status["deployment_status"] =
        json!({"id": 1, "state": "success", "environment": "sandbox/feature-x"});
    let body = serde_json::to_vec(&status).unwrap();
    let (code, answer) = serve.deliver("deployment", "hs-relabelled", &body).await;
    assert_eq!(code, 400, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not a `deployment` event") && error.contains("`deployment_status`"),
        "{answer}"
    );

    // A branch the repository does not have: no fallback to its default branch.
    let nowhere = github.add_deployment(REPO, &tip, "sandbox/no-such-branch");
    let body = serde_json::to_vec(&deployment(nowhere, &tip, "sandbox/no-such-branch")).unwrap();
    accepted(serve.deliver("deployment", "hs-no-branch", &body).await);
    let reason = failure_of(nowhere, &serve, github).await;
    assert!(
        reason.contains("no-such-branch") && reason.contains("does not have"),
        "{reason}"
    );

    // A commit that is not the branch's tip (here: the default branch's).
    let other = fx.product.sha("backend", "main");
    assert_ne!(other, tip);
    let stale = github.add_deployment(REPO, &other, "sandbox/feature-x");
    let body = serde_json::to_vec(&deployment(stale, &other, "sandbox/feature-x")).unwrap();
    accepted(serve.deliver("deployment", "hs-not-tip", &body).await);
    let reason = failure_of(stale, &serve, github).await;
    assert!(
        reason.contains(&other[..12]) || reason.contains(&other),
        "{reason}"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!ns.exists().await, "a refused deployment made the sandbox");
    assert!(
        !missing.exists().await,
        "a deployment of no branch made a sandbox"
    );
    assert!(github.states_of(id).is_empty(), "{}", github.dump());
    assert!(
        !github.statuses().iter().any(|s| s.state == "success"),
        "{}",
        github.dump()
    );
}

/// The status page, /api/sandboxes and /metrics are not on the webhook's listener (which faces
/// the internet); they are on the status listener, behind the token when one is set.
#[tokio::test]
async fn hostile_serve_status_pages_are_only_on_the_status_listener() {
    let Some(client) = cluster("hostile serve: status listener").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "hserve-status").await;
    let token = "hserve-status-token-0c51";
    let serve = fx.serve_with_env(&[], &[("SANDBOX_STATUS_TOKEN", token)]);
    let http = reqwest::Client::new();
    let health = http.get(serve.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "the probes' endpoint stays");
    for path in ["/", "/api/sandboxes", "/metrics"] {
        let answer = http.get(serve.url(path)).send().await.unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        assert!(
            matches!(status, 404 | 405),
            "webhook listener {path}: {status} {text}"
        );
        assert!(
            !text.contains("sandbox_serve_") && !text.contains("sandboxes"),
            "{text}"
        );
        let answer = http.get(serve.status_url(path)).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{path} without the token");
        let answer = http
            .get(serve.status_url(path))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{path} with another token");
        let answer = http
            .get(serve.status_url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path} with the token");
    }
    assert!(
        !serve.log().contains(token),
        "the token is scrubbed from the log"
    );
}

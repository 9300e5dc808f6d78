//! `sandbox serve` that a team can rely on, end to end: its state in the cluster survives a
//! kill -9, two replicas share one state and take each delivery once, a burst of deliveries
//! loses nothing, and a close deletes only what the previews made and no other open pull
//! request uses. The real binary, the real cluster, the recording GitHub stand-in.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

use super::serve_support::fake_github::FakeGitHub;
use super::serve_support::{
    accepted, create_sandbox_namespace, deployments_for, pr_event, pull_request, succeeded,
    wait_for_status, wait_for_success, wait_until, wait_until_exists, wait_until_gone,
    ServeFixture,
};
use crate::support::{cluster, run_ok, TestNamespace};

/// Every recorded preview state in `namespace`, by branch.
async fn states(client: &Client, namespace: &str) -> Vec<Value> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels("sandbox.dev/role=preview-state"))
        .await
        .unwrap();
    list.items
        .iter()
        .filter_map(|cm| cm.data.as_ref()?.get("state.json"))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect()
}

/// States a deployment may be left in: final ones.
fn unfinished(github: &FakeGitHub) -> Vec<(u64, String)> {
    github
        .deployments()
        .iter()
        .filter_map(|d| {
            let last = github.states_of(d.id).last().cloned().unwrap_or_default();
            matches!(last.as_str(), "" | "queued" | "in_progress").then_some((d.id, last))
        })
        .collect()
}

#[tokio::test]
async fn serve_finishes_an_up_interrupted_by_kill_9() {
    let Some(client) = cluster("serve: kill -9 in the middle of an up").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "serve-kill").await;
    let (github, state) = (&fx.github, &fx.state);
    let mut serve = fx.serve(&[]);
    let sha = fx.head();
    accepted(serve.deliver_pr("e2e-kill-open", "opened", &sha).await);

    // In the middle of the up: deploying (in_progress), its namespace made.
    wait_for_status(
        "the up is under way",
        Duration::from_secs(300),
        &serve,
        github,
        &sha,
        "in_progress",
    )
    .await;
    wait_until_exists(
        "the sandbox's namespace exists",
        Duration::from_secs(120),
        &fx.preview,
        &serve,
        github,
    )
    .await;
    serve.kill9();
    assert!(
        !succeeded(github, &sha),
        "the up finished before the kill: the test proves nothing\n{}",
        serve.log()
    );
    let killed_at = Instant::now();

    // Started again: it finds the pending work in its state and finishes it.
    let serve = fx.serve(&[]);
    wait_for_success(
        "the preview is finished after the restart",
        &serve,
        github,
        &sha,
    )
    .await;
    let recovered = killed_at.elapsed();
    let successes: Vec<u64> = github
        .statuses()
        .into_iter()
        .filter(|s| s.state == "success")
        .map(|s| s.deployment)
        .collect();
    assert_eq!(successes.len(), 1, "{}", github.dump());
    assert_eq!(
        deployments_for(github, &sha),
        successes,
        "the interrupted deployment is taken over, not made again:\n{}",
        github.dump()
    );
    assert!(unfinished(github).is_empty(), "{}", github.dump());
    assert!(
        serve.log().contains("event=github.deployment.resumed"),
        "{}",
        serve.log()
    );
    let recorded = states(&client, &state.name).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["completed"], recorded[0]["generation"]);
    assert!(
        recorded[0]["attempts"].as_u64().unwrap() >= 2,
        "{recorded:?}"
    );
    eprintln!(
        "serve kill -9: the restarted service finished the preview {:.1}s after the kill",
        recovered.as_secs_f64()
    );
}

/// What a PR of the burst ends as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Open,
    Closed,
}

/// The burst: `prs` pull requests, 10 events each, interleaved; the first `open` end open.
fn burst(prs: u64, open: u64) -> Vec<(u64, &'static str, String, End)> {
    let mut per_pr: Vec<Vec<(u64, &'static str, String, End)>> = Vec::new();
    for n in 1..=prs {
        let end = if n <= open { End::Open } else { End::Closed };
        let last = if end == End::Open {
            "synchronize"
        } else {
            "closed"
        };
        let actions = [
            "opened",
            "synchronize",
            "closed",
            "reopened",
            "synchronize",
            "synchronize",
            "closed",
            "reopened",
            "synchronize",
            last,
        ];
        per_pr.push(
            actions
                .iter()
                .enumerate()
                .map(|(i, a)| (n, *a, format!("{:040x}", n * 1000 + i as u64), end))
                .collect(),
        );
    }
    // Round by round, each round in a shuffled order (a fixed LCG: the same every run).
    let mut seed: u64 = 0x5eed;
    let mut out = Vec::new();
    for round in 0..10 {
        let mut order: Vec<usize> = (0..per_pr.len()).collect();
        for i in (1..order.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for i in order {
            out.push(per_pr[i][round].clone());
        }
    }
    out
}

#[tokio::test]
async fn serve_replicas_take_each_delivery_once_and_lose_nothing_in_a_burst() {
    let Some(client) = cluster("serve: two replicas, a burst of deliveries").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "serve-ha").await;
    // The burst's branches exist in no repository: their sandboxes run every repository's
    // default branch, whose images CI would have published too (serve never builds).
    run_ok(&mut fx.product.sandbox(&["images", "--branch", "main"]));
    let (github, state) = (&fx.github, &fx.state);
    const PRS: u64 = 20;
    const OPEN: u64 = 3;
    let mut burst_namespaces = Vec::new();
    for n in 1..=PRS {
        let name = fx.product.namespace(&format!("burst-{n}"));
        burst_namespaces.push(TestNamespace::claim(&client, &name).await);
    }
    let a = fx.serve(&[]);
    let b = fx.serve(&[]);

    // The same delivery to both replicas at once: one takes it, one deployment.
    let sha = fx.head();
    let opened = pull_request("opened", &sha);
    let (ra, rb) = tokio::join!(
        a.deliver("pull_request", "e2e-ha-open", &opened),
        b.deliver("pull_request", "e2e-ha-open", &opened),
    );
    let mut codes = [ra.0, rb.0];
    codes.sort();
    assert_eq!(codes, [200, 202], "{} {}", ra.1, rb.1);
    wait_for_success("the preview of the one delivery", &a, github, &sha).await;
    assert_eq!(
        deployments_for(github, &sha).len(),
        1,
        "one deployment for one delivery:\n{}",
        github.dump()
    );
    assert!(fx.preview.exists().await);

    // 200 signed deliveries for 20 PRs, to both replicas in turn; every fifth one also to the
    // other replica (GitHub's retry of a delivery whose answer got lost): taken once. The PRs'
    // deliveries go out side by side, each PR's in its order, as GitHub sends them.
    let events = burst(PRS, OPEN);
    assert_eq!(events.len(), 200);
    let sent_at = Instant::now();
    let streams = (1..=PRS).map(|pr| {
        let (events, a, b) = (&events, &a, &b);
        async move {
            for (i, (n, action, sha, _)) in events.iter().enumerate().filter(|e| e.1 .0 == pr) {
                let branch = format!("burst-{n}");
                let body = pr_event(action, "octo-org/backend", 100 + n, &branch, sha);
                let id = format!("e2e-burst-{i}");
                let (first, second) = if i % 2 == 0 { (a, b) } else { (b, a) };
                let (status, answer) = first.deliver("pull_request", &id, &body).await;
                assert!(status == 202 || status == 200, "{i}: {status} {answer}");
                if i % 5 == 0 {
                    let (status, answer) = second.deliver("pull_request", &id, &body).await;
                    assert_eq!(status, 200, "{i}: {answer}");
                    assert!(answer["status"].as_str().unwrap().contains("duplicate"));
                }
            }
        }
    });
    futures::future::join_all(streams).await;
    let sending = sent_at.elapsed();

    // Every PR ends as its last event asked: the open ones up at their last push, the closed
    // ones gone; every state done.
    let last_sha = |n: u64| events.iter().rfind(|e| e.0 == n).unwrap().2.clone();
    let started = Instant::now();
    loop {
        let recorded = states(&client, &state.name).await;
        let done = recorded.len() as u64 == PRS + 1
            && recorded.iter().all(|s| s["completed"] == s["generation"]);
        let open_up = (1..=OPEN).all(|n| succeeded(github, &last_sha(n)));
        let mut closed_gone = true;
        for (i, ns) in burst_namespaces.iter().enumerate() {
            if i as u64 >= OPEN && ns.exists().await {
                closed_gone = false;
            }
        }
        if done && open_up && closed_gone && unfinished(github).is_empty() {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            panic!(
                "the burst did not converge: states done {done}, open ones up {open_up}, closed ones gone {closed_gone}, unfinished deployments {:?}\n{recorded:#?}\n--- replica a\n{}\n--- replica b\n{}",
                unfinished(github),
                a.log(),
                b.log()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let converged = started.elapsed();
    for s in states(&client, &state.name).await {
        let branch = s["branch"].as_str().unwrap();
        let Some(n) = branch.strip_prefix("burst-") else {
            continue;
        };
        let n: u64 = n.parse().unwrap();
        let wanted = if n <= OPEN { "up" } else { "down" };
        assert_eq!(s["wanted"], wanted, "{s:#}");
        assert_eq!(
            s["deliveries"].as_array().unwrap().len(),
            10,
            "each of its deliveries recorded once: {s:#}"
        );
    }
    for n in 1..=OPEN {
        let ids = deployments_for(github, &last_sha(n));
        let successes = ids
            .iter()
            .filter(|id| github.states_of(**id).iter().any(|s| s == "success"))
            .count();
        assert_eq!(successes, 1, "PR {n}:\n{}", github.dump());
        assert!(burst_namespaces[n as usize - 1].exists().await);
    }
    let (rss_a, rss_b) = (a.peak_rss_kib(), b.peak_rss_kib());
    eprintln!(
        "serve burst: 200 deliveries (+40 repeated) sent in {:.1}s to 2 replicas, converged {:.1}s later; peak RSS replica a {} MiB, replica b {} MiB",
        sending.as_secs_f64(),
        converged.as_secs_f64(),
        rss_a / 1024,
        rss_b / 1024
    );
    // Generous: a bound, not a benchmark.
    for rss in [rss_a, rss_b] {
        assert!(rss < 1024 * 1024, "peak RSS {rss} KiB");
    }
}

#[tokio::test]
async fn serve_deletes_only_what_the_previews_made_and_no_other_pr_uses() {
    let Some(client) = cluster("serve: only what it owns").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "serve-own").await;
    let (product, shared, github) = (&fx.product, &fx.preview, &fx.github);
    let main = TestNamespace::claim(&client, &product.namespace("main")).await;
    // Someone's `sandbox up --branch main`, made by hand.
    create_sandbox_namespace(&client, &main.name, "main", None, Some("up")).await;
    let serve = fx.serve(&[]);

    // A pull request whose head is `main`, opened and closed: the hand-made sandbox stays.
    let main_sha = product.sha("backend", "main");
    for (id, action) in [("e2e-main-open", "opened"), ("e2e-main-close", "closed")] {
        let body = pr_event(action, "octo-org/backend", 60, "main", &main_sha);
        accepted(serve.deliver("pull_request", id, &body).await);
    }
    wait_until(
        "the close of the main pull request is done",
        Duration::from_secs(300),
        &serve,
        github,
        || serve.log().contains("event=job.kept"),
    )
    .await;
    assert!(
        main.exists().await,
        "the hand-made main sandbox was deleted"
    );
    assert!(
        serve.log().contains("was made by `sandbox up`"),
        "{}",
        serve.log()
    );

    // One branch, two pull requests (backend and frontend): closing one keeps the sandbox.
    let backend_sha = product.sha("backend", "feature-x");
    let frontend_sha = product.sha("frontend", "feature-x");
    let backend = |action| pr_event(action, "octo-org/backend", 42, "feature-x", &backend_sha);
    let frontend = |action| pr_event(action, "octo-org/frontend", 7, "feature-x", &frontend_sha);
    serve
        .deliver("pull_request", "e2e-own-b1", &backend("opened"))
        .await;
    wait_for_success("the shared preview", &serve, github, &backend_sha).await;
    serve
        .deliver("pull_request", "e2e-own-f1", &frontend("opened"))
        .await;
    wait_for_success(
        "the shared preview, for both",
        &serve,
        github,
        &frontend_sha,
    )
    .await;
    let (status, answer) = serve
        .deliver("pull_request", "e2e-own-f2", &frontend("closed"))
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("kept")),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        shared.exists().await,
        "closing one of two PRs deleted the sandbox"
    );
    accepted(
        serve
            .deliver("pull_request", "e2e-own-b2", &backend("closed"))
            .await,
    );
    wait_until_gone(
        "the sandbox of the last closed PR is gone",
        Duration::from_secs(240),
        shared,
        &serve,
        github,
    )
    .await;
}

#[tokio::test]
async fn serve_hands_running_work_to_the_other_replica_on_sigterm() {
    let Some(client) = cluster("serve: SIGTERM hands work back").await else {
        return;
    };
    let fx = ServeFixture::new(&client, "serve-handback").await;
    let github = &fx.github;
    // A grace period too short for an up: what runs at SIGTERM is handed back.
    let quick = ["--shutdown-grace", "1s"];
    let mut replicas = [fx.serve(&quick), fx.serve(&quick)];
    let sha = fx.head();
    accepted(
        replicas[0]
            .deliver_pr("e2e-handback-open", "opened", &sha)
            .await,
    );
    wait_for_status(
        "the up is under way",
        Duration::from_secs(300),
        &replicas[0],
        github,
        &sha,
        "in_progress",
    )
    .await;
    // Whichever replica works on it stops.
    let working = replicas
        .iter()
        .position(|r| r.log().contains("event=job.started"))
        .expect("a replica started the job");
    let stopped = replicas[working].terminate();
    assert!(stopped.success(), "{}", replicas[working].log());
    let log = replicas[working].log();
    assert!(log.contains("handed back"), "{log}");
    assert!(
        !succeeded(github, &sha),
        "it finished before SIGTERM: the test proves nothing"
    );
    let other = &replicas[1 - working];
    wait_for_success("the other replica finishes it", other, github, &sha).await;
    assert_eq!(deployments_for(github, &sha).len(), 1, "{}", github.dump());
    assert!(unfinished(github).is_empty(), "{}", github.dump());
    assert!(
        other.log().contains("event=github.deployment.resumed"),
        "{}",
        other.log()
    );
}

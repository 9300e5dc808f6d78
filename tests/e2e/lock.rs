//! The sandbox's lock on the real cluster, against the ways it used to fail: a waiting `up`
//! acting on the state the run before it replaced, a stale holder deleting its successor's
//! lease, and a waiter judging a lease by a clock that is not its own.

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::support::{cluster, orphans, spawn_up, up, up_ok, Product, TestNamespace};

const LEASE: &str = "sandbox-lock";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lease's holder, once one holds it.
async fn wait_for_holder(client: &Client, ns: &str, within: Duration) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + within;
    loop {
        if let Some(holder) = holder(&leases).await {
            return holder;
        }
        assert!(Instant::now() < deadline, "nobody took the lock of {ns}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt(LEASE).await.unwrap()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Hold the lease as `holder` (taking it over, at its uid, as a takeover by replace does) and
/// renew it every 2 s with renewTime = our clock + `skew`, until `stop` is set.
fn hold_lease(
    client: &Client,
    ns: &str,
    holder: &str,
    skew: jiff::SignedDuration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let holder = holder.to_owned();
    tokio::spawn(async move {
        let mut first = true;
        while !stop.load(Ordering::Relaxed) {
            let existing = leases.get_opt(LEASE).await.unwrap();
            let mut lease = existing.clone().unwrap_or_else(|| {
                serde_json::from_value(serde_json::json!({"metadata": {"name": LEASE}})).unwrap()
            });
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(holder.clone());
            spec.lease_duration_seconds = Some(20);
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now() + skew));
            if first {
                spec.acquire_time = spec.renew_time.clone();
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            let written = match existing {
                Some(_) => leases.replace(LEASE, &PostParams::default(), &lease).await,
                None => leases.create(&PostParams::default(), &lease).await,
            };
            match written {
                Ok(_) => first = false,
                // The old holder renewed in between: read again.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => panic!("holding the lease as {holder}: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

// Several threads: the test's own tasks (a lease holder, the proxy) keep running while it
// blocks on the `sandbox` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_up_prunes_from_the_inventory_the_run_before_it_left() {
    let Some(client) = cluster("lock: prune after waiting").await else {
        return;
    };
    let product = Product::new("lockprune");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    // The first run deploys an extra Deployment (slow to be ready, so that the second run
    // queues behind it); the second run's configuration no longer has it.
    std::fs::write(product.path().join("templates/slow-extra.yaml"), SLOW_EXTRA).unwrap();
    let without = "    templates: [templates/service.yaml]\n    smoke: [templates/smoke.yaml]";
    let with = "    templates: [templates/service.yaml, templates/slow-extra.yaml]\n    smoke: [templates/smoke.yaml]";
    product.edit_config(without, with);
    let first = spawn_up(&product, &[]);
    // It holds the lock once its configuration is read and rendered: change it for the second.
    wait_for_holder(&client, &ns.name, Duration::from_secs(300)).await;
    product.edit_config(with, without);
    let second = spawn_up(&product, &[]);
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    let (e1, e2) = (stderr(&first), stderr(&second));
    assert!(first.status.success(), "{e1}");
    assert!(second.status.success(), "{e2}");
    assert!(
        e2.contains("waiting for the lock"),
        "the second run waited:\n{e2}"
    );
    assert!(
        e2.contains("pruned apps/v1/Deployment/slow-extra"),
        "the second run pruned what the first deployed:\n{e2}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    assert!(deployments.get_opt("slow-extra").await.unwrap().is_none());
    assert_eq!(orphans(&client, &ns.name).await, Vec::<String>::new());
}

const SLOW_EXTRA: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: slow-extra
spec:
  replicas: 1
  selector: {matchLabels: {app: slow-extra}}
  template:
    metadata: {labels: {app: slow-extra}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
        - name: main
          image: docker.io/local/busybox:1
          imagePullPolicy: IfNotPresent
          command: ["sleep", "3600"]
          readinessProbe:
            exec: {command: ["true"]}
            initialDelaySeconds: 15
            periodSeconds: 1
"#;

// Several threads: the test's own tasks (a lease holder, the proxy) keep running while it
// blocks on the `sandbox` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lease_was_taken_over_stops_and_leaves_the_new_lease_alone() {
    let Some(client) = cluster("lock: takeover").await else {
        return;
    };
    let product = Product::new("takeover");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let run = spawn_up(&product, &[]);
    let first = wait_for_holder(&client, &ns.name, Duration::from_secs(300)).await;
    // Someone takes the lease over while its holder is alive (as after a long network
    // partition): a replace, which keeps the lease's uid.
    let stop = Arc::new(AtomicBool::new(false));
    let intruder = hold_lease(
        &client,
        &ns.name,
        "intruder #e2e",
        jiff::SignedDuration::ZERO,
        stop.clone(),
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    while holder(&leases).await.as_deref() != Some("intruder #e2e") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = run.wait_with_output().unwrap();
    let text = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(sandbox::error::EXIT_FAILURE),
        "the old holder stopped:\n{text}"
    );
    assert!(
        text.contains("lost the sandbox lock")
            && text.contains("another run may have taken over")
            && text.contains("intruder #e2e"),
        "{text}"
    );
    // Its release did not delete the new holder's lease.
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some("intruder #e2e"),
        "the lease of the new holder (taken from {first}) is gone:\n{text}"
    );
    stop.store(true, Ordering::Relaxed);
    intruder.await.unwrap();
    // Once the intruder is gone for good, the next up finishes the sandbox.
    leases.delete(LEASE, &Default::default()).await.unwrap();
    up_ok(&product, &["--lock-timeout", "0"]);
    assert_eq!(orphans(&client, &ns.name).await, Vec::<String>::new());
}

// Several threads: the test's own tasks (a lease holder, the proxy) keep running while it
// blocks on the `sandbox` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_judged_by_observed_renewals_not_by_the_clock_written_in_it() {
    let Some(client) = cluster("lock: skewed clocks").await else {
        return;
    };
    let product = Product::new("skew");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    up_ok(&product, &[]);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);

    // A live holder whose clock is an hour behind: its renewTime looks long expired.
    let stop = Arc::new(AtomicBool::new(false));
    let behind = hold_lease(
        &client,
        &ns.name,
        "behind #e2e",
        -jiff::SignedDuration::from_hours(1),
        stop.clone(),
    );
    wait_for_holder(&client, &ns.name, Duration::from_secs(10)).await;
    let (ok, text) = up(&product, &["--lock-timeout", "0"]);
    assert!(!ok, "--lock-timeout 0 took a live lease:\n{text}");
    assert!(text.contains("is locked by behind #e2e"), "{text}");
    // A timeout that runs out while the holder renews fails the same way, having waited.
    let (ok, text) = up(&product, &["--lock-timeout", "2s"]);
    assert!(!ok, "--lock-timeout 2s took a live lease:\n{text}");
    assert!(
        text.contains("waiting for the lock") && text.contains("is locked by behind #e2e"),
        "{text}"
    );
    // A waiting run waits while it renews, longer than the lease's duration…
    let waiting = spawn_up(&product, &[]);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(25) {
        assert_eq!(holder(&leases).await.as_deref(), Some("behind #e2e"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // …and takes over only after seeing it unchanged for the lease's duration.
    stop.store(true, Ordering::Relaxed);
    behind.await.unwrap();
    let silent = Instant::now();
    while holder(&leases).await.as_deref() == Some("behind #e2e") {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = silent.elapsed();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The last renewal was at most 2 s before `silent`.
    assert!(
        took >= Duration::from_secs(17),
        "taken over {took:?} after the holder stopped"
    );

    // A dead holder whose clock was an hour ahead: its lease is taken after the same silence,
    // not an hour later.
    assert!(leases.get_opt(LEASE).await.unwrap().is_none(), "released");
    write_once(&leases, "ahead #e2e", jiff::SignedDuration::from_hours(1)).await;
    let started = Instant::now();
    let mut waiting = spawn_up(&product, &[]);
    loop {
        if waiting.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = waiting.kill();
            panic!("the lease of a dead holder with a clock ahead was never taken");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "taken before its duration of silence"
    );
    assert!(leases.get_opt(LEASE).await.unwrap().is_none(), "released");
}

/// Write the lease once as `holder` with renewTime = now + `skew`, and never renew it.
async fn write_once(leases: &Api<Lease>, holder: &str, skew: jiff::SignedDuration) {
    let renewed = MicroTime(jiff::Timestamp::now() + skew);
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": LEASE},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 20,
                 "renewTime": renewed, "acquireTime": renewed},
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
}

//! `sandbox up`: the stages connected. Prepare for the cluster (asked while the repos are
//! fetched), record the sandbox on its namespace, take its lock, then [`rollout`] — and on
//! failure do what `--on-failure` says.

pub(crate) mod caps;
mod rollback;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::Hint;
use crate::kube::{connect, Cluster, ClusterOptions};
use crate::lock;
use crate::object::{Object, ObjectRef};
use crate::ops::{down, sleep};
use crate::pipeline::apply::{self, StepTiming};
use crate::pipeline::checkout::Checkout;
use crate::pipeline::config::PodSecurity;
use crate::pipeline::context::SandboxInfo;
use crate::pipeline::handover::{self, RepoReport, Timings, UpReport};
use crate::pipeline::images::Mode;
use crate::pipeline::plan::Plan;
use crate::pipeline::settings::Settings;
use crate::pipeline::{inventory, smoke, Prepared, Secrets, Target};
use crate::progress::Reporter;
use crate::record::{self, Lookup, RepoAt, SandboxRecord, Status, Update};

/// What to do with the sandbox when the deploy or the smoke tests fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// Leave everything as it is, to debug it.
    Keep,
    /// Put every object this `up` changed back to its last good revision.
    Rollback,
    /// Delete the sandbox if this `up` created it.
    Destroy,
}

/// `up` of one branch: what the run is about (product, branch, who asks, the pull requests it
/// previews, what made it — all in [`Settings`]) and how it behaves.
pub(crate) struct UpRequest {
    pub(crate) settings: Settings,
    pub(crate) options: UpOptions,
}

/// How `up` behaves around failures and other runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpOptions {
    pub(crate) on_failure: OnFailure,
    /// How long to wait for another run's lock (`None`: as long as it takes; zero: not at all).
    pub(crate) lock_timeout: Option<Duration>,
    /// Wait until the services are ready and run the smoke tests (`--wait=false`: apply, in
    /// dependency order, and return).
    pub(crate) wait: bool,
    /// How long to wait for images CI has yet to publish (else a missing image fails at once).
    pub(crate) wait_for_images: Option<Duration>,
    /// Record any failure on an existing sandbox, also one before the rollout (a checkout or
    /// render error on a re-up), for a status page (serve's). The status is left as it is: what
    /// runs may still be the previous (or rolled back) revision.
    pub(crate) record_every_failure: bool,
}

/// `up` stopped by Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: sandbox `{0}` is partly updated")]
pub(crate) struct Interrupted(pub(crate) String);

impl Hint for Interrupted {
    fn hint(&self) -> Option<String> {
        Some("run `sandbox up` again to finish it, or `sandbox down` to remove it".into())
    }
}

/// `sandbox up`: the whole pipeline.
pub(crate) async fn up(
    request: &UpRequest,
    cluster: &ClusterOptions,
    reporter: &Reporter,
) -> Result<UpReport> {
    let result = prepare_and_roll_out(request, cluster, reporter).await;
    if let Err(error) = &result {
        if request.options.record_every_failure {
            record_failure(cluster, &request.settings, error, reporter).await;
        }
    }
    result
}

async fn prepare_and_roll_out(
    request: &UpRequest,
    cluster: &ClusterOptions,
    reporter: &Reporter,
) -> Result<UpReport> {
    let UpRequest { settings, options } = request;
    let started = Instant::now();
    reporter.info(&format!(
        "sandbox {} @ {} → namespace {}",
        settings.config.name, settings.branch, settings.namespace
    ));
    // Images are resolved (built, waited for) for this cluster's nodes, and charts rendered for
    // its version and APIs, as `helm upgrade` would.
    let target = Target::Cluster {
        options: cluster,
        mode: Mode::Ensure {
            wait: options.wait_for_images,
        },
        purpose: "cannot deploy the sandbox",
    };
    let prepared = crate::pipeline::prepare(settings, Secrets::Reveal, target, reporter).await?;
    let cluster = prepared.cluster.as_ref().expect("prepared for a cluster");
    // Said before anything changes: which cluster this is about to change.
    reporter.info(&format!("  on {}", cluster.describe()));
    let prepare_time = started.elapsed();

    let outcome = locked(cluster, settings, &prepared, *options, reporter).await?;
    let total = started.elapsed();
    Ok(report(settings, &prepared, &outcome, prepare_time, total))
}

/// Record why `up` failed on the sandbox, if it has one. Best effort: the failure is reported
/// anyway.
async fn record_failure(
    options: &ClusterOptions,
    settings: &Settings,
    error: &anyhow::Error,
    reporter: &Reporter,
) {
    let summary = crate::redact::printable(&crate::logging::scrub(
        &reporter.scrub(&format!("{error:#}")),
    ));
    let recorded = async {
        let cluster = connect(options).await?;
        let config = &settings.config;
        let branch = &settings.branch;
        let namespace =
            record::locate(&cluster, &config.namespace_prefix, branch, &config.name).await?;
        let lookup = record::fetch(&cluster, &namespace, &config.name).await?;
        if matches!(lookup, Lookup::Ours(r) if !r.terminating) {
            let update = Update {
                last_error: Some(Some(summary)),
                ..Update::default()
            };
            record::update(&cluster, &namespace, update).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = recorded {
        let error = crate::logging::scrub(&format!("{e:#}"));
        tracing::warn!(branch = %settings.branch, error = %error, "{}", "record.failed");
    }
}

/// Take the sandbox's lock, and under it [`deploy`]. The lock lives in the namespace, so a new
/// sandbox's namespace is made first; its record is read (and written) only under the lock: a
/// run that waited must prune from the inventory and judge by the status that the run before
/// it left, not by what was there when it started.
async fn locked(
    cluster: &Cluster,
    settings: &Settings,
    prepared: &Prepared,
    options: UpOptions,
    reporter: &Reporter,
) -> Result<Outcome> {
    let ns = settings.namespace.as_str();
    let wanted = sandbox_record(settings, &prepared.checkouts, jiff::Timestamp::now());
    let new = make_namespace(cluster, settings, &wanted, reporter).await?;
    // The accounts that work in sandboxes get their rights here before the lock is taken in it.
    if let Some(access) = &settings.access {
        crate::access::grant(cluster, ns, access).await?;
    }
    let holder = lock::holder_identity(&settings.owner);
    let lock = lock::acquire(cluster, ns, &holder, options.lock_timeout, reporter).await?;
    let work = Locked {
        cluster,
        settings,
        prepared,
        wanted: &wanted,
        made_namespace: new,
        wait: options.wait,
    };
    // The work stops where it is when the lock is lost: another run may be deploying now, so
    // nothing more is written, not even the failure.
    let result = tokio::select! {
        result = work.rollout(reporter) => result,
        lost = lock.lost() => Err(Failed::lost(lost)),
        never = report_outages(reporter) => match never {},
    };
    let result = match result {
        Ok(done) => Ok(done),
        Err(failed) => {
            Err(handle_failed(cluster, settings, failed, options, &lock, reporter).await)
        }
    };
    lock.release().await;
    result
}

/// Whether the sandbox is new, after making its namespace if it is. Another branch's sandbox
/// under this name is refused before any grant or lock in it; a new one must fit the product's
/// caps.
async fn make_namespace(
    cluster: &Cluster,
    settings: &Settings,
    wanted: &SandboxRecord,
    reporter: &Reporter,
) -> Result<bool> {
    let ns = settings.namespace.as_str();
    let lookup = record::fetch(cluster, ns, &settings.config.name)
        .await
        .with_context(|| format!("could not prepare namespace `{ns}`"))?;
    record::check_branch(&lookup, ns, &settings.branch)?;
    let new = !matches!(lookup, Lookup::Ours(r) if !r.terminating);
    if new {
        // The count's lock is held until the namespace exists, so that it counts for whoever
        // looks next.
        let counted = caps::admit(cluster, settings, reporter).await?;
        let made = record::ensure(cluster, wanted)
            .await
            .with_context(|| format!("could not prepare namespace `{ns}`"));
        if let Some(counted) = counted {
            counted.release().await;
        }
        made?;
    }
    Ok(new)
}

/// Do what `--on-failure` says with a failed rollout (unless the lock was lost: then another
/// run may be deploying, and nothing is touched); the error says what happened.
async fn handle_failed(
    cluster: &Cluster,
    settings: &Settings,
    failed: Failed,
    options: UpOptions,
    lock: &lock::SandboxLock,
    reporter: &Reporter,
) -> anyhow::Error {
    let Some((created_now, changed)) = failed.failure else {
        return failed.error;
    };
    let failure = Failure {
        cluster,
        settings,
        created_now,
        changed: &changed,
    };
    let handled = failure.handle(failed.error, options.on_failure, reporter);
    if failure.deletes_sandbox(options.on_failure) {
        // Deleting the namespace deletes the lease in it: that is no lost lock.
        handled.await
    } else {
        tokio::select! {
            error = handled => error,
            lost = lock.lost() => lost.into(),
        }
    }
}

/// A failed rollout: the error, and unless the lock was lost, what `--on-failure` needs (whether
/// this run created the sandbox, and what it changed).
struct Failed {
    error: anyhow::Error,
    failure: Option<(bool, Vec<ObjectRef>)>,
}

impl Failed {
    fn lost(lost: lock::LockError) -> Failed {
        Failed {
            error: lost.into(),
            failure: None,
        }
    }
}

/// What `up` does under the lock.
struct Locked<'a> {
    cluster: &'a Cluster,
    settings: &'a Settings,
    prepared: &'a Prepared,
    wanted: &'a SandboxRecord,
    /// This run made the namespace (before taking the lock).
    made_namespace: bool,
    /// Wait for readiness and smoke-test (else apply and return).
    wait: bool,
}

impl Locked<'_> {
    /// Write the record and roll out.
    async fn rollout(&self, reporter: &Reporter) -> Result<Outcome, Failed> {
        let ns = self.settings.namespace.as_str();
        let previous = record::ensure(self.cluster, self.wanted)
            .await
            .with_context(|| format!("could not prepare namespace `{ns}`"))
            .map_err(|error| Failed {
                error,
                failure: None,
            })?;
        // This run made the sandbox if it made the namespace and no run deployed into it since
        // (a run that was faster to the lock leaves a status or an inventory).
        let created_now = self.made_namespace
            && previous
                .as_ref()
                .is_none_or(|r| r.status.is_none() && r.inventory.is_empty());
        let changed = Mutex::new(Vec::new());
        let result = rollout(
            self.cluster,
            self.settings,
            self.prepared,
            previous.as_ref(),
            &changed,
            self.wait,
            reporter,
        )
        .await;
        result.map_err(|error| {
            reporter.abandon();
            Failed {
                error,
                failure: Some((created_now, changed.into_inner().expect("not poisoned"))),
            }
        })
    }
}

/// Say when the API server stops answering and when it is back, while requests wait for it.
async fn report_outages(reporter: &Reporter) -> std::convert::Infallible {
    let mut outages = crate::outage::outages();
    let mut started = None;
    loop {
        let outage = outages.borrow_and_update().clone();
        match (outage, started) {
            (Some(o), None) => {
                reporter.info(&format!(
                    "the API server at {} does not answer ({}); retrying for up to {}s",
                    o.server,
                    o.error,
                    crate::outage::RETRY_FOR.as_secs()
                ));
                started = Some(o.since);
            }
            (None, Some(since)) => {
                let after: std::time::Duration = since.elapsed();
                reporter.info(&format!(
                    "the API server answers again, after {:.1}s",
                    after.as_secs_f64()
                ));
                started = None;
            }
            _ => {}
        }
        if outages.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The record `up` writes at its start. The expiry moves with each up ([`record::ensure`] keeps
/// the creation time of a sandbox that exists).
fn sandbox_record(
    settings: &Settings,
    checkouts: &[Checkout],
    now: jiff::Timestamp,
) -> SandboxRecord {
    let ttl = jiff::SignedDuration::try_from(settings.ttl)
        .unwrap_or(jiff::SignedDuration::from_hours(48));
    SandboxRecord {
        namespace: settings.namespace.clone(),
        product: settings.config.name.clone(),
        branch: settings.branch.clone(),
        owner: settings.owner.clone(),
        created_at: Some(now),
        updated_at: Some(now),
        expires_at: Some(now.checked_add(ttl).unwrap_or(now)),
        repos: checkouts
            .iter()
            .map(|c| {
                let at = RepoAt {
                    branch: c.branch.clone(),
                    sha: c.sha.clone(),
                    fell_back: c.fell_back,
                };
                (c.repo.clone(), at)
            })
            .collect(),
        prs: settings.prs.clone(),
        made_by: Some(settings.made_by.to_owned()),
        labels: pod_security_labels(settings.config.isolation.pod_security),
        idle_after: settings.config.isolation.idle_after,
        ..SandboxRecord::default()
    }
}

/// The namespace labels that make the API server (Kubernetes 1.25+) enforce `level` on the
/// sandbox's pods, and warn of what it refuses.
fn pod_security_labels(level: PodSecurity) -> BTreeMap<String, String> {
    ["enforce", "warn"]
        .into_iter()
        .map(|mode| {
            let key = format!("pod-security.kubernetes.io/{mode}");
            (key, level.as_str().to_owned())
        })
        .collect()
}

/// What a successful rollout measured and found.
struct Outcome {
    steps: Vec<StepTiming>,
    deploy: Duration,
    smoke: Duration,
    url: String,
}

/// Under the lock: deploy what changed, smoke-test, find the URL, prune what is no longer
/// rendered, and record the result.
async fn rollout(
    cluster: &Cluster,
    settings: &Settings,
    prepared: &Prepared,
    previous: Option<&SandboxRecord>,
    changed: &Mutex<Vec<ObjectRef>>,
    wait: bool,
    reporter: &Reporter,
) -> Result<Outcome> {
    let ns = settings.namespace.as_str();
    let plan = &prepared.plan;
    let before = previous.map(|r| r.inventory.clone()).unwrap_or_default();
    let rendered: BTreeSet<ObjectRef> = plan.objects().map(Object::object_ref).collect();
    let live = inventory::live(cluster, ns, plan, &before).await?;
    // Record what may exist before creating it, so an interrupted run leaves nothing untracked.
    if !before.is_superset(&rendered) {
        let union = before.union(&rendered).cloned().collect();
        record::update(cluster, ns, Update::inventory(union)).await?;
    }
    record::update(cluster, ns, Update::status(Status::Deploying)).await?;
    // An `up` wakes a sleeping sandbox: what it does not apply anew gets its replicas back here.
    let asleep = previous.and_then(|r| r.sleep.as_ref());
    if let Some(asleep) = asleep {
        reporter.info("waking the sandbox (it was asleep)");
        sleep::restore(cluster, ns, asleep).await?;
    }

    let deploy_started = Instant::now();
    let timeouts = settings.config.timeouts;
    let readiness = apply::Readiness {
        timeout: timeouts.service,
        services: wait,
    };
    let steps = apply::deploy(cluster, plan, &live, changed, readiness, reporter)
        .await
        .with_context(|| format!("could not deploy sandbox `{ns}`"))?;
    let deploy = deploy_started.elapsed();

    let stale: Vec<ObjectRef> = before.difference(&rendered).cloned().collect();
    let nothing_changed = changed.lock().expect("not poisoned").is_empty() && stale.is_empty();
    let was_ready = previous.is_some_and(|r| r.status == Some(Status::Ready));
    let smoke_started = Instant::now();
    let standing = nothing_changed && was_ready;
    smoke_tests(cluster, plan, timeouts.smoke, wait, standing, reporter).await?;
    let smoke = smoke_started.elapsed();

    let context = serde_json::json!({ "sandbox": SandboxInfo::for_url(settings) });
    let url = handover::url(cluster, &settings.config.url, ns, &context)
        .await
        .context("the sandbox is up but its URL could not be found")?;

    for pruned in inventory::delete(cluster, ns, &stale).await? {
        reporter.info(&format!("  pruned {pruned} (no longer rendered)"));
    }
    if before != rendered {
        record::update(cluster, ns, Update::inventory(rendered)).await?;
    }
    // A revision is good, and a rollback target, only once it has been seen ready.
    let good = wait && (!nothing_changed || !was_ready);
    record_done(cluster, plan, good, &url, asleep.is_some(), wait).await?;
    Ok(Outcome {
        steps,
        deploy,
        smoke,
        url,
    })
}

/// Record a finished rollout: ready (or only applied), its URL, awake, no error — and, when it
/// was seen `good` (ready after a change), its revision as the last good one.
async fn record_done(
    cluster: &Cluster,
    plan: &Plan,
    good: bool,
    url: &str,
    was_asleep: bool,
    wait: bool,
) -> Result<()> {
    let ns = plan.namespace.as_str();
    let last_good_digest = match good {
        true => Some(inventory::save_last_good(cluster, ns, plan).await?),
        false => None,
    };
    let done = Update {
        last_good_digest,
        url: Some(url.to_owned()),
        last_error: Some(None),
        sleep: was_asleep.then_some(None),
        ..Update::status(if wait { Status::Ready } else { Status::Applied })
    };
    record::update(cluster, ns, done).await?;
    Ok(())
}

/// Run the smoke tests, unless `up --wait=false` (nothing was seen ready) or nothing changed
/// since they last passed (`standing`).
async fn smoke_tests(
    cluster: &Cluster,
    plan: &Plan,
    timeout: Duration,
    wait: bool,
    standing: bool,
    reporter: &Reporter,
) -> Result<()> {
    if !wait {
        reporter.info("--wait=false: applied without waiting for readiness; no smoke tests");
    } else if standing {
        reporter.info("nothing changed since the last successful up: its smoke tests stand");
    } else {
        let ns = plan.namespace.as_str();
        smoke::run(cluster, plan, timeout, reporter)
            .await
            .with_context(|| format!("sandbox `{ns}` is up but its smoke tests failed"))?;
    }
    Ok(())
}

/// A failed rollout, and what `--on-failure` needs to act on it.
struct Failure<'a> {
    cluster: &'a Cluster,
    settings: &'a Settings,
    /// The namespace did not exist before this `up`.
    created_now: bool,
    /// Every object this `up` applied.
    changed: &'a [ObjectRef],
}

impl Failure<'_> {
    /// Whether handling the failure deletes the sandbox (and the lease in it).
    fn deletes_sandbox(&self, on_failure: OnFailure) -> bool {
        self.created_now && matches!(on_failure, OnFailure::Rollback | OnFailure::Destroy)
    }

    /// Mark the sandbox failed and keep, roll back or destroy it; the error says what happened.
    async fn handle(
        &self,
        error: anyhow::Error,
        on_failure: OnFailure,
        reporter: &Reporter,
    ) -> anyhow::Error {
        let ns = self.settings.namespace.as_str();
        // Best effort: the error being reported matters more than a failed status write.
        let failed = Update {
            last_error: Some(Some(crate::logging::scrub(
                &reporter.scrub(&format!("{error:#}")),
            ))),
            ..Update::status(Status::Failed)
        };
        let _ = record::update(self.cluster, ns, failed).await;
        match on_failure {
            OnFailure::Keep => error,
            OnFailure::Rollback => {
                let timeout = self.settings.config.timeouts.service;
                let restored = rollback::rollback(
                    self.cluster,
                    ns,
                    &self.settings.config.name,
                    self.created_now,
                    self.changed,
                    timeout,
                    reporter,
                )
                .await;
                match restored {
                    Ok(()) => {
                        error.context("the sandbox was rolled back to its last good revision")
                    }
                    // The rollback's hint (why nothing was restored) goes with its message:
                    // the chain shown is the deploy's.
                    Err(e) => {
                        let hints: Vec<String> = e.chain().flat_map(crate::ops::hints_of).collect();
                        let mut message = format!("and rolling back failed too: {e:#}");
                        for hint in hints {
                            message.push_str(&format!("; {}", hint.trim_end()));
                        }
                        error.context(message)
                    }
                }
            }
            OnFailure::Destroy if self.created_now => {
                reporter.info(&format!("--on-failure destroy: deleting `{ns}`"));
                match down::delete(self.cluster, ns, &self.settings.config.name, reporter).await {
                    Ok(()) => error,
                    Err(e) => error.context(format!(
                        "and destroying the failed sandbox failed too: {e:#}"
                    )),
                }
            }
            OnFailure::Destroy => {
                error.context("the sandbox existed before this up, so it was kept")
            }
        }
    }
}

/// What `up` did, for people and machines.
fn report(
    settings: &Settings,
    prepared: &Prepared,
    outcome: &Outcome,
    prepare_time: Duration,
    total: Duration,
) -> UpReport {
    let timings = Timings {
        total: total.as_secs_f64(),
        prepare: prepare_time.as_secs_f64(),
        checkout: prepared.checkout_time.as_secs_f64(),
        images: prepared.images_time.as_secs_f64(),
        values_render_plan: prepared.rest_time.as_secs_f64(),
        deploy: outcome.deploy.as_secs_f64(),
        smoke: outcome.smoke.as_secs_f64(),
        critical_path: handover::critical_path(&prepared.plan.steps, &outcome.steps),
        steps: outcome
            .steps
            .iter()
            .map(|t| (t.id.clone(), t.started.as_secs_f64(), t.ready.as_secs_f64()))
            .collect(),
    };
    UpReport {
        sandbox: settings.config.name.clone(),
        branch: settings.branch.clone(),
        namespace: settings.namespace.clone(),
        url: outcome.url.clone(),
        repos: prepared
            .checkouts
            .iter()
            .map(|c| RepoReport {
                repo: c.repo.clone(),
                branch: c.branch.clone(),
                sha: c.sha.clone(),
                fell_back: c.fell_back,
            })
            .collect(),
        services: settings
            .config
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        timings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::settings::example;

    #[test]
    fn the_record_says_who_what_and_until_when() {
        let mut settings = example("feature-x");
        settings.prs = vec![crate::record::PrNumber {
            repo: "o/backend".into(),
            number: 42,
        }];
        let checkout = Checkout {
            repo: "backend".into(),
            url: "/srv/backend.git".into(),
            requested_branch: "feature-x".into(),
            branch: "main".into(),
            fell_back: true,
            sha: "121dbcc".into(),
            dir: "/tmp/tree".into(),
        };
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let record = sandbox_record(&settings, &[checkout], now);
        assert_eq!(record.namespace, "shop-feature-x");
        assert_eq!(record.product, "shop");
        assert_eq!(record.owner, "ada");
        assert_eq!(record.created_at, Some(now));
        assert_eq!(
            record.expires_at.unwrap().to_string(),
            "2026-11-27T10:00:00Z",
            "ttl 2d from sandbox.yaml"
        );
        assert_eq!(
            record.repos["backend"],
            RepoAt {
                branch: "main".into(),
                sha: "121dbcc".into(),
                fell_back: true
            }
        );
        let annotations = record.to_annotations();
        assert_eq!(annotations["sandbox.dev/branch"], "feature-x");
        assert_eq!(annotations["sandbox.dev/pr-number"], "42");
        assert!(
            !annotations.contains_key("sandbox.dev/status"),
            "status is written as the run goes"
        );
    }
}

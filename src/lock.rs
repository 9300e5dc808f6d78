//! One `up` or `down` at a time per sandbox: a `coordination.k8s.io` Lease in the sandbox's
//! namespace, kept the way client-go's leader election keeps one.
//!
//! - **Every acquisition is its own holder.** The lease names the holder and a random token, and
//!   each later write — renewal, release — reads the lease, checks that it still names that
//!   holder, and writes at the resourceVersion it read. A run that lost the lease (it was taken
//!   over while it was cut off) can therefore never renew or delete its successor's lease: a
//!   takeover by replace keeps the uid, so the uid alone does not tell them apart.
//! - **Expiry is observed, not computed.** `renewTime` is the holder's wall clock, and clocks
//!   differ between machines. A waiter takes the lease over only after it has itself seen the
//!   lease unchanged for its full duration, by its own monotonic clock ([`Observer`]).
//! - **A holder that cannot renew stops.** It renews every [`RENEW_EVERY`]; when it has not
//!   managed to for [`RENEW_DEADLINE`] (shorter than the lease, so before a waiter may take
//!   over), or finds the lease taken, [`SandboxLock::lost`] resolves and the work stops.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::watch;

use crate::error::Hint;
use crate::kube::{status_code, Cluster};
use crate::progress::Reporter;
use crate::record::{MANAGED_BY, MANAGED_BY_VALUE};

pub(crate) const LEASE_NAME: &str = "sandbox-lock";
/// How long a lease holds without renewal.
const LEASE_SECONDS: i32 = 20;
/// How often the holder renews: often enough that an outage of several seconds between two
/// renewals still leaves time before [`RENEW_DEADLINE`].
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How soon the holder tries again after a failed renewal.
const RENEW_RETRY: Duration = Duration::from_secs(1);
/// How long the holder may go without renewing before it gives up the work. Shorter than the
/// lease, so that the holder has stopped before a waiter can have seen it silent for its
/// whole duration.
const RENEW_DEADLINE: Duration = Duration::from_secs(15);
/// How long giving the lock back may take before it is left to expire.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Someone else holds the lock and `--lock-timeout` ran out.
    #[error("sandbox `{namespace}` is locked by {holder} (since {since})")]
    Held {
        namespace: String,
        holder: String,
        since: String,
    },
    #[error("could not take the lock of sandbox `{namespace}`")]
    Api {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    /// The holder could not renew the lock, or found it taken: the work under it must stop.
    #[error("lost the sandbox lock of `{namespace}`: {why}; another run may have taken over")]
    Lost { namespace: String, why: String },
}

impl Hint for LockError {
    fn hint(&self) -> Option<String> {
        match self {
            LockError::Held { .. } => Some(format!(
                "another `sandbox up` or `down` is working on this sandbox; wait for it (a longer `--lock-timeout`, or none), or if it crashed the lock expires once it has been seen unchanged for {LEASE_SECONDS} s"
            )),
            LockError::Api { .. } => None,
            LockError::Lost { .. } => Some(
                "this run stopped where it was and changed nothing after that; run `sandbox up` again: it waits for the other run and finishes the sandbox".into(),
            ),
        }
    }
}

/// A held lock. Release it with [`SandboxLock::release`]; if it is dropped instead (a cancelled
/// task, Ctrl-C), it is released on the way out as well as a dropped future allows.
pub(crate) struct SandboxLock {
    api: Api<Lease>,
    namespace: String,
    /// The Lease's name: [`LEASE_NAME`] in a sandbox, another one for serve's claims or the
    /// count of a product's sandboxes (caps).
    name: String,
    /// The holder identity this acquisition wrote: who, and a token of its own.
    me: String,
    renew: tokio::task::JoinHandle<()>,
    /// `Some(why)` once the lock is lost.
    lost: watch::Receiver<Option<String>>,
    released: bool,
}

/// Who we are, for the lease and for the message of whoever waits.
pub(crate) fn holder_identity(owner: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{owner}@{} (pid {})", host.trim(), std::process::id())
}

/// A token that tells two acquisitions by one process apart (`serve` takes many locks).
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per process and per instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:08x}", hasher.finish() as u32)
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn holder_of(lease: &Lease) -> Option<&str> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    (!holder.is_empty()).then_some(holder)
}

fn duration_of(lease: &Lease) -> Duration {
    let seconds = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .unwrap_or(LEASE_SECONDS);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// What a holder writes when it renews or takes over: if any of it changed, the holder (or a new
/// one) is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renew_time: Option<String>,
    acquire_time: Option<String>,
    transitions: Option<i32>,
    duration: Duration,
}

impl Record {
    /// `None` for a free lease (no holder).
    fn of(lease: &Lease) -> Option<Record> {
        let spec = lease.spec.as_ref()?;
        Some(Record {
            holder: holder_of(lease)?.to_owned(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0.to_string()),
            transitions: spec.lease_transitions,
            duration: duration_of(lease),
        })
    }
}

/// What a waiter concludes from one look at the lease.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nobody holds it.
    Free,
    /// Held, and it may be alive: look again after `left` at the latest. `changed` says whether
    /// it changed since the previous look (a renewal or a new holder); false at the first look.
    Held { left: Duration, changed: bool },
    /// Seen unchanged for its whole duration: its holder is gone.
    Silent,
}

/// A waiter's memory of the lease: the record it last saw change, and when — by the waiter's
/// own monotonic clock, never by the times written in the lease.
#[derive(Debug, Default)]
struct Observer {
    seen: Option<(Record, Instant)>,
}

impl Observer {
    fn observe(&mut self, lease: Option<&Lease>, now: Instant) -> Verdict {
        let Some(record) = lease.and_then(Record::of) else {
            self.seen = None;
            return Verdict::Free;
        };
        match &self.seen {
            Some((seen, since)) if *seen == record => {
                let quiet = now.saturating_duration_since(*since);
                if quiet >= record.duration {
                    Verdict::Silent
                } else {
                    Verdict::Held {
                        left: record.duration - quiet,
                        changed: false,
                    }
                }
            }
            previous => {
                let changed = previous.is_some();
                let left = record.duration;
                self.seen = Some((record, now));
                Verdict::Held { left, changed }
            }
        }
    }
}

/// Whether a lease looks abandoned by the wall clock: its renewTime plus its duration is past.
/// Only a hint for `--lock-timeout 0` (whether to look longer before refusing): clocks differ, so the
/// decision to take over is the [`Observer`]'s.
fn looks_abandoned(lease: &Lease, wall_now: jiff::Timestamp) -> bool {
    let Some(renewed) = lease.spec.as_ref().and_then(|s| s.renew_time.as_ref()) else {
        return true;
    };
    let duration = jiff::SignedDuration::try_from(duration_of(lease)).unwrap_or_default();
    renewed.0 + duration < wall_now
}

fn our_lease(namespace: &str, name: &str, me: &str, existing: Option<&Lease>) -> Lease {
    let mut lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY: MANAGED_BY_VALUE}},
        "spec": {"holderIdentity": me, "leaseDurationSeconds": LEASE_SECONDS},
    }))
    .expect("a valid Lease");
    let spec = lease.spec.as_mut().expect("has spec");
    spec.acquire_time = Some(now());
    spec.renew_time = Some(now());
    if let Some(old) = existing {
        // A replace at the version we looked at: if anyone wrote since, it fails with 409.
        lease.metadata.resource_version = old.metadata.resource_version.clone();
        spec.lease_transitions = Some(
            old.spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0)
                + 1,
        );
    }
    lease
}

/// Take the sandbox's lock, waiting for another holder at most `timeout` (`None`: as long as
/// it takes; zero: not at all).
pub(crate) async fn acquire(
    cluster: &Cluster,
    namespace: &str,
    holder: &str,
    timeout: Option<Duration>,
    reporter: &Reporter,
) -> Result<SandboxLock, LockError> {
    acquire_named(cluster, namespace, LEASE_NAME, holder, timeout, reporter).await
}

/// Take the Lease `name` in `namespace`, as [`acquire`] takes a sandbox's (`serve` claims the
/// work of a sandbox with one of these in its own namespace).
pub(crate) async fn acquire_named(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    holder: &str,
    timeout: Option<Duration>,
    reporter: &Reporter,
) -> Result<SandboxLock, LockError> {
    let mut patience = Patience {
        namespace,
        name,
        started: Instant::now(),
        timeout,
        told: false,
    };
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), namespace);
    let api_err = |source| LockError::Api {
        namespace: namespace.into(),
        source,
    };
    let me = format!("{holder} #{}", token());
    let mut observer = Observer::default();
    let mut first_look = true;
    loop {
        let first = std::mem::replace(&mut first_look, false);
        let existing = api.get_opt(name).await.map_err(api_err)?;
        if existing.as_ref().and_then(holder_of) == Some(me.as_str()) {
            // Our own create or takeover got through, though its answer did not.
            return Ok(hold(api, namespace, name, me, Instant::now()));
        }
        let sent = Instant::now();
        let attempt = match (
            observer.observe(existing.as_ref(), Instant::now()),
            &existing,
        ) {
            (Verdict::Free, None) => {
                let ours = our_lease(namespace, name, &me, None);
                api.create(&PostParams::default(), &ours).await
            }
            (Verdict::Free | Verdict::Silent, Some(lease)) => {
                let ours = our_lease(namespace, name, &me, Some(lease));
                api.replace(name, &PostParams::default(), &ours).await
            }
            (Verdict::Held { left, changed }, Some(lease)) => {
                let held = Held {
                    lease,
                    left,
                    changed,
                    first,
                };
                patience.wait_out(&api, held, reporter).await?;
                continue;
            }
            (Verdict::Held { .. } | Verdict::Silent, None) => unreachable!("no lease is free"),
        };
        match attempt {
            Ok(_) => return Ok(hold(api, namespace, name, me, sent)),
            // Someone else was faster; look again.
            Err(e) if matches!(status_code(&e), Some(409)) => continue,
            // The connection broke after the request was sent: the next look tells whether it
            // got through (the lease names us) or not.
            Err(e) if status_code(&e).is_none() => continue,
            Err(e) => return Err(api_err(e)),
        }
    }
}

/// A lease someone else holds, as one look saw it.
struct Held<'a> {
    lease: &'a Lease,
    /// How long until it expires if nobody renews it.
    left: Duration,
    /// It changed since the look before.
    changed: bool,
    /// This was the first look.
    first: bool,
}

/// How long an `acquire` may still wait for another holder, and whether it said it waits.
struct Patience<'a> {
    namespace: &'a str,
    /// The Lease's name.
    name: &'a str,
    started: Instant,
    timeout: Option<Duration>,
    told: bool,
}

impl Patience<'_> {
    /// Wait for a held lease to change or to be seen abandoned; or, out of time, refuse it.
    async fn wait_out(
        &mut self,
        api: &Api<Lease>,
        held: Held<'_>,
        reporter: &Reporter,
    ) -> Result<(), LockError> {
        let namespace = self.namespace;
        let remaining = self
            .timeout
            .map(|t| t.saturating_sub(self.started.elapsed()));
        let wait = remaining.is_none_or(|r| !r.is_zero());
        let spec = held.lease.spec.clone().unwrap_or_default();
        let other = spec.holder_identity.unwrap_or_default();
        let since = spec
            .acquire_time
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        // Without waiting, refuse a lease that looks alive, or that turned out to be (it
        // changed while we looked). One that looks abandoned is watched for its duration
        // first: its holder's clock may simply be behind ours.
        let alive =
            held.changed || (held.first && !looks_abandoned(held.lease, jiff::Timestamp::now()));
        if !wait && alive {
            return Err(LockError::Held {
                namespace: namespace.into(),
                holder: other,
                since,
            });
        }
        if wait && !self.told {
            reporter.info(&format!(
                "waiting for the lock of `{namespace}`: held by {other} since {since}"
            ));
            self.told = true;
        }
        // Out of time, a lease that has not been seen to change is still watched for its
        // duration: it may be abandoned, and then it is ours.
        let patience = match remaining {
            Some(r) if !r.is_zero() => held.left.min(r),
            _ => held.left,
        };
        wait_for_change(api, self.name, held.lease, patience).await;
        Ok(())
    }
}

/// Start renewing a lease just taken by a write sent at `sent`.
fn hold(api: Api<Lease>, namespace: &str, name: &str, me: String, sent: Instant) -> SandboxLock {
    let (lost_tx, lost) = watch::channel(None);
    let renew = tokio::spawn(keep_renewed(
        api.clone(),
        name.to_owned(),
        me.clone(),
        sent,
        lost_tx,
    ));
    SandboxLock {
        api,
        namespace: namespace.into(),
        name: name.into(),
        me,
        renew,
        lost,
        released: false,
    }
}

/// Until the lease changes (renewed, released, taken over), or `left` passes.
async fn wait_for_change(api: &Api<Lease>, name: &str, lease: &Lease, left: Duration) {
    let version = lease.metadata.resource_version.clone();
    let watch = watcher(
        api.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    );
    let changed = async {
        let mut watch = std::pin::pin!(watch);
        while let Some(event) = watch.next().await {
            match event {
                Ok(watcher::Event::Delete(_)) => return,
                Ok(watcher::Event::Apply(l)) | Ok(watcher::Event::InitApply(l))
                    if l.metadata.resource_version != version =>
                {
                    return
                }
                Ok(_) => {}
                Err(_) => {
                    // Look again soon; the caller's next read decides.
                    tokio::time::sleep(RENEW_RETRY).await;
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = changed => {}
        _ = tokio::time::sleep(left + Duration::from_millis(100)) => {}
    }
}

/// What one renewal attempt found.
#[derive(Debug)]
enum Renewal {
    Renewed,
    /// The API server did not answer or refused; try again soon.
    Failed(String),
    /// The lease names someone else now.
    Taken(String),
    Gone,
}

/// The holder's side: when it last renewed, by its own clock.
#[derive(Debug)]
struct Holder {
    /// When the last successful renewal was *sent*: the lease was fresh at least from then.
    renewed: Instant,
}

impl Holder {
    /// How long the next attempt may take before the deadline.
    fn budget(&self, now: Instant) -> Duration {
        RENEW_DEADLINE.saturating_sub(now.saturating_duration_since(self.renewed))
    }

    /// After an attempt sent at `sent` ended with `outcome` at `now`: how long until the next
    /// one, or why the lock is lost.
    fn after(&mut self, sent: Instant, outcome: Renewal, now: Instant) -> Result<Duration, String> {
        match outcome {
            Renewal::Renewed => {
                self.renewed = sent;
                Ok(RENEW_EVERY)
            }
            Renewal::Taken(by) => Err(format!("{by} holds it now")),
            Renewal::Gone => Err("its lease was deleted".into()),
            Renewal::Failed(why) => {
                let since = now.saturating_duration_since(self.renewed);
                if since >= RENEW_DEADLINE {
                    Err(format!(
                        "it could not be renewed for {}s ({why})",
                        since.as_secs()
                    ))
                } else {
                    Ok(RENEW_RETRY)
                }
            }
        }
    }
}

/// Renew until the lock is lost (then say why on `lost`) or the task is aborted (released).
async fn keep_renewed(
    api: Api<Lease>,
    name: String,
    me: String,
    taken: Instant,
    lost: watch::Sender<Option<String>>,
) {
    let mut holder = Holder { renewed: taken };
    let mut pause = RENEW_EVERY;
    loop {
        tokio::time::sleep(pause).await;
        let sent = Instant::now();
        let outcome = tokio::time::timeout(holder.budget(sent), renew_once(&api, &name, &me))
            .await
            .unwrap_or_else(|_| Renewal::Failed("the API server did not answer".into()));
        match holder.after(sent, outcome, Instant::now()) {
            Ok(next) => pause = next,
            Err(why) => {
                lost.send_replace(Some(why));
                return;
            }
        }
    }
}

async fn renew_once(api: &Api<Lease>, name: &str, me: &str) -> Renewal {
    let mut lease = match api.get_opt(name).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return Renewal::Gone,
        Err(e) => return Renewal::Failed(e.to_string()),
    };
    match holder_of(&lease) {
        Some(holder) if holder == me => {}
        other => return Renewal::Taken(other.unwrap_or("nobody").to_owned()),
    }
    lease.spec.get_or_insert_with(Default::default).renew_time = Some(now());
    // At the resourceVersion just read: a takeover in between makes this fail, not overwrite it.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Renewal::Renewed,
        Err(e) => Renewal::Failed(e.to_string()),
    }
}

impl SandboxLock {
    /// Resolves when the lock is lost (never while it is held): the work under it must stop.
    pub(crate) async fn lost(&self) -> LockError {
        let mut lost = self.lost.clone();
        let why = match lost.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            // The renewing task ended without a word: only on release.
            Err(_) => None,
        };
        match why {
            Some(why) => LockError::Lost {
                namespace: self.namespace.clone(),
                why,
            },
            None => std::future::pending().await,
        }
    }

    /// Give the lock back.
    pub(crate) async fn release(mut self) {
        self.renew.abort();
        self.released = true;
        give_back(self.api.clone(), self.name.clone(), self.me.clone()).await;
    }
}

/// Delete the lease if it still names `me`, at the version read: never a successor's lease.
/// Where that cannot be done in time, the lease is left to expire.
async fn give_back(api: Api<Lease>, name: String, me: String) {
    let attempts = async {
        for _ in 0..3 {
            let Ok(Some(lease)) = api.get_opt(&name).await else {
                return;
            };
            if holder_of(&lease) != Some(me.as_str()) {
                return;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: lease.metadata.uid.clone(),
                    resource_version: lease.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                // Written in between (our own renewal still in flight): look again.
                Err(e) if status_code(&e) == Some(409) => continue,
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(RELEASE_TIMEOUT, attempts).await;
}

impl Drop for SandboxLock {
    fn drop(&mut self) {
        self.renew.abort();
        if self.released {
            return;
        }
        // A dropped holder (cancelled task, Ctrl-C) gives the lock back on the way out; where
        // that is impossible the lease simply expires.
        let release = give_back(self.api.clone(), self.name.clone(), self.me.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                tokio::task::block_in_place(|| handle.block_on(release));
            } else {
                handle.spawn(release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str) -> Lease {
        let mut l = our_lease("ns", LEASE_NAME, holder, None);
        let spec = l.spec.as_mut().unwrap();
        spec.renew_time = Some(MicroTime(renewed.parse().unwrap()));
        l
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_waiter_takes_over_only_after_seeing_no_renewal_for_the_whole_duration() {
        let t0 = Instant::now();
        let mut observer = Observer::default();
        let held = lease("a", "2026-01-01T00:00:00Z");
        assert_eq!(
            observer.observe(Some(&held), t0),
            Verdict::Held {
                left: 20 * SECOND,
                changed: false
            }
        );
        assert_eq!(
            observer.observe(Some(&held), t0 + 19 * SECOND),
            Verdict::Held {
                left: SECOND,
                changed: false
            }
        );
        // A renewal restarts the count, from when the waiter saw it.
        let renewed = lease("a", "2026-01-01T00:00:05Z");
        assert_eq!(
            observer.observe(Some(&renewed), t0 + 19 * SECOND),
            Verdict::Held {
                left: 20 * SECOND,
                changed: true
            }
        );
        assert_eq!(
            observer.observe(Some(&renewed), t0 + 38 * SECOND),
            Verdict::Held {
                left: SECOND,
                changed: false
            }
        );
        assert_eq!(
            observer.observe(Some(&renewed), t0 + 39 * SECOND),
            Verdict::Silent
        );
    }

    #[test]
    fn the_times_written_in_the_lease_do_not_decide_expiry() {
        // A live holder whose clock is an hour behind: its renewTime is long "expired" by ours,
        // but it is not taken while it keeps renewing.
        let t0 = Instant::now();
        let mut observer = Observer::default();
        let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let behind = |secs| {
            let mut l = our_lease("ns", LEASE_NAME, "skewed", None);
            l.spec.as_mut().unwrap().renew_time = Some(MicroTime(
                an_hour_ago + jiff::SignedDuration::from_secs(secs),
            ));
            l
        };
        for i in 0..10 {
            let verdict = observer.observe(Some(&behind(3 * i)), t0 + 3 * SECOND * i as u32);
            assert!(matches!(verdict, Verdict::Held { .. }), "{verdict:?}");
        }
        // A dead holder whose clock was an hour ahead: taken after its duration of silence.
        let ahead = lease(
            "ahead",
            &(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string(),
        );
        let mut observer = Observer::default();
        assert!(matches!(
            observer.observe(Some(&ahead), t0),
            Verdict::Held { .. }
        ));
        assert_eq!(
            observer.observe(Some(&ahead), t0 + 20 * SECOND),
            Verdict::Silent
        );
    }

    #[test]
    fn a_free_or_missing_lease_is_free() {
        let mut observer = Observer::default();
        assert_eq!(observer.observe(None, Instant::now()), Verdict::Free);
        let free = lease("", "2026-01-01T00:00:00Z");
        assert_eq!(observer.observe(Some(&free), Instant::now()), Verdict::Free);
    }

    #[test]
    fn no_wait_refuses_at_once_only_a_lease_that_looks_alive_by_the_wall_clock() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        assert!(!looks_abandoned(&lease("a", "2026-01-01T00:00:50Z"), now));
        assert!(looks_abandoned(&lease("a", "2026-01-01T00:00:30Z"), now));
    }

    #[test]
    fn a_holder_gives_up_when_renewal_fails_past_the_deadline_or_the_lease_is_taken() {
        let t0 = Instant::now();
        let mut holder = Holder { renewed: t0 };
        assert_eq!(
            holder.after(t0 + 3 * SECOND, Renewal::Renewed, t0 + 3 * SECOND),
            Ok(RENEW_EVERY)
        );
        // Failures are retried soon while the deadline (from the last renewal) is ahead.
        let failed = || Renewal::Failed("connection refused".into());
        assert_eq!(
            holder.after(t0 + 6 * SECOND, failed(), t0 + 6 * SECOND),
            Ok(RENEW_RETRY)
        );
        assert_eq!(holder.budget(t0 + 10 * SECOND), 8 * SECOND);
        assert_eq!(
            holder.after(t0 + 17 * SECOND, failed(), t0 + 17 * SECOND),
            Ok(RENEW_RETRY)
        );
        let lost = holder
            .after(t0 + 18 * SECOND, failed(), t0 + 18 * SECOND)
            .unwrap_err();
        assert!(
            lost.contains("could not be renewed for 15s") && lost.contains("connection refused"),
            "{lost}"
        );
        // The deadline stays below the lease's duration: the holder stops before anyone may
        // take over.
        assert!(RENEW_DEADLINE < Duration::from_secs(LEASE_SECONDS as u64));
        let mut holder = Holder { renewed: t0 };
        let taken = holder
            .after(t0, Renewal::Taken("bob #1".into()), t0)
            .unwrap_err();
        assert!(taken.contains("bob #1"), "{taken}");
        assert!(holder.after(t0, Renewal::Gone, t0).is_err());
    }

    #[test]
    fn every_acquisition_has_its_own_token() {
        assert_ne!(token(), token());
    }
}

//! The work queue: at most `concurrency` deploys or deletions at once, one at a time per
//! sandbox, and the newest request for a sandbox wins.
//!
//! Work is keyed by branch, not by pull request: a sandbox belongs to a branch, and several pull
//! requests (one per repository of a multi-repo change) can share it. Per branch there is at most
//! one piece of work running and one waiting. New work replaces the waiting one and cancels a
//! running deploy (by aborting its task, which drops its future: the `up` pipeline is
//! cancellation-safe, the next `up` repairs whatever the cancelled one left). A running deletion
//! is never cancelled; what comes next waits for it. The replaced work's pull requests are kept
//! in the new work, so each one still hears how its sandbox ended up.
//!
//! The queue gauge (`sandbox_serve_queue`) counts each piece of work from when it is submitted:
//! waiting (for its branch's running work to end, or for a free slot) until it has a slot, then
//! running until it has ended.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::log::log;
use super::metrics::{self, QueueEntry, QueueGauges};

/// A pull request that asked for the work, at the commit it asked for (or, with `number` 0 and
/// a `deployment`, a GitHub deployment that did).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PrRef {
    /// `owner/name`.
    pub(crate) repo: String,
    pub(crate) number: u64,
    /// The head commit of the event that asked.
    pub(crate) sha: String,
    /// Who opened the pull request.
    pub(crate) author: String,
    /// A deployment GitHub already has (from a `deployment` event) to report through, instead of
    /// creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deployment: Option<u64>,
    /// The webhook delivery that asked (empty: the service's own resync), for the logs.
    #[serde(default)]
    pub(crate) delivery: String,
}

impl PrRef {
    /// The same pull request (or the same deployment): newer work replaces it, not adds to it.
    pub(crate) fn same_pr(&self, other: &PrRef) -> bool {
        self.repo == other.repo
            && self.number == other.number
            && self.deployment == other.deployment
    }
}

impl fmt::Display for PrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.deployment.filter(|_| self.number == 0) {
            Some(id) => write!(f, "{} deployment {id}", self.repo)?,
            None => write!(f, "{}#{}", self.repo, self.number)?,
        }
        if !self.sha.is_empty() {
            write!(f, "@{}", &self.sha[..self.sha.len().min(7)])?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Bring the branch's sandbox up, or update it.
    Deploy,
    /// Delete it.
    Destroy,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Deploy => "deploy",
            Action::Destroy => "destroy",
        })
    }
}

/// One thing to do to one branch's sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Work {
    pub(crate) branch: String,
    pub(crate) action: Action,
    /// The pull requests to report to, oldest first; the last one asked most recently.
    pub(crate) prs: Vec<PrRef>,
}

impl Work {
    /// This (newer) work, also carrying the pull requests of `older` that it does not name.
    pub(crate) fn absorb(mut self, older: Work) -> Work {
        let mut prs: Vec<PrRef> = older
            .prs
            .into_iter()
            .filter(|o| !self.prs.iter().any(|n| n.same_pr(o)))
            .collect();
        prs.append(&mut self.prs);
        self.prs = prs;
        self
    }

    /// The pull requests, for logs: `owner/a#1@abc1234 owner/b#7@def5678`.
    pub(crate) fn prs_text(&self) -> String {
        let list: Vec<String> = self.prs.iter().map(ToString::to_string).collect();
        list.join(" ")
    }
}

/// What runs the work: the real one reports to GitHub and calls `up`/`down`; tests use fakes.
pub(crate) trait Executor: Send + Sync + 'static {
    /// Do `work`. The future may be dropped at any await point (when newer work supersedes it,
    /// or at shutdown); `job` says why. It must wait for [`Job::slot`] before touching the
    /// cluster, so that the concurrency limit holds.
    fn execute(self: Arc<Self>, work: Work, job: Job) -> BoxFuture<'static, ()>;
}

/// What a running piece of work gets from the queue.
#[derive(Clone)]
pub(crate) struct Job {
    permits: Arc<Semaphore>,
    cancelled: Arc<Mutex<Option<String>>>,
    /// A slot taken early (see [`Job::keep`]).
    kept: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    /// The work in the queue gauge; out of it once the work has ended.
    queued: Arc<Mutex<Option<QueueEntry>>>,
    /// The queue it runs in (see [`Job::queue`]).
    queue: Queue,
}

impl Job {
    /// Wait for one of the `concurrency` slots; `None` once the service is shutting down.
    pub(crate) async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let kept = self.kept.lock().expect("not poisoned").take();
        let slot = match kept {
            Some(kept) => kept,
            None => self.permits.clone().acquire_owned().await.ok()?,
        };
        if let Some(queued) = self.queued.lock().expect("not poisoned").as_mut() {
            queued.running();
        }
        Some(slot)
    }

    /// Keep a slot taken early, for the next [`Job::slot`] of this job.
    pub(crate) fn keep(&self, slot: OwnedSemaphorePermit) {
        *self.kept.lock().expect("not poisoned") = Some(slot);
    }

    /// The queue this work runs in, to put work back into it later. It comes with the job so
    /// that an executor need not hold its queue, which holds it (an `Arc` cycle).
    pub(crate) fn queue(&self) -> Queue {
        self.queue.clone()
    }

    /// Why the queue cancelled this work, once it has (for clean-up code that runs when the
    /// work's future is dropped).
    pub(crate) fn cancel_reason(&self) -> Option<String> {
        self.cancelled.lock().expect("not poisoned").clone()
    }
}

/// What became of submitted work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// It will run once the sandbox's earlier work (if any) is done and a slot is free.
    Queued,
    /// It replaced waiting work or cancelled a running deploy of the same sandbox.
    Superseding,
    /// The service is shutting down and takes no more work.
    Closed,
}

/// The queue; cheap to clone.
#[derive(Clone)]
pub(crate) struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    executor: Arc<dyn Executor>,
    permits: Arc<Semaphore>,
    state: Mutex<State>,
    /// How many branches have work waiting or running.
    busy: watch::Sender<usize>,
    gauges: QueueGauges,
}

#[derive(Default)]
struct State {
    /// A branch has a slot exactly while a worker task serves it.
    slots: HashMap<String, Slot>,
    closed: bool,
}

#[derive(Default)]
struct Slot {
    pending: Option<Pending>,
    running: Option<Running>,
}

/// Work not started yet, counted as waiting.
struct Pending {
    work: Work,
    queued: QueueEntry,
}

struct Running {
    work: Work,
    abort: tokio::task::AbortHandle,
    cancelled: Arc<Mutex<Option<String>>>,
}

impl Running {
    fn cancel(&self, reason: String) {
        *self.cancelled.lock().expect("not poisoned") = Some(reason);
        self.abort.abort();
    }
}

impl Queue {
    pub(crate) fn new(concurrency: usize, executor: Arc<dyn Executor>) -> Queue {
        Queue::counted_in(concurrency, executor, metrics::queue_gauges())
    }

    /// A queue that counts its work in `gauges`.
    fn counted_in(concurrency: usize, executor: Arc<dyn Executor>, gauges: QueueGauges) -> Queue {
        Queue {
            inner: Arc::new(Inner {
                executor,
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                state: Mutex::new(State::default()),
                busy: watch::Sender::new(0),
                gauges,
            }),
        }
    }

    /// Queue `work`; see the module's documentation for what it supersedes.
    pub(crate) fn submit(&self, work: Work) -> Submitted {
        let mut state = self.inner.state.lock().expect("not poisoned");
        if state.closed {
            return Submitted::Closed;
        }
        let branch = work.branch.clone();
        let new_worker = !state.slots.contains_key(&branch);
        let slot = state.slots.entry(branch.clone()).or_default();
        let mut work = work;
        let mut outcome = Submitted::Queued;
        if let Some(Pending { work: older, .. }) = slot.pending.take() {
            log!(
                Info,
                "work.superseded",
                branch = branch,
                was = "queued",
                action = older.action,
                prs = older.prs_text(),
                by = work.prs_text(),
            );
            work = work.absorb(older);
            outcome = Submitted::Superseding;
        }
        if let Some(running) = &slot.running {
            if running.work.action == Action::Deploy && !running.abort.is_finished() {
                log!(
                    Info,
                    "work.superseded",
                    branch = branch,
                    was = "running",
                    action = running.work.action,
                    prs = running.work.prs_text(),
                    by = work.prs_text(),
                );
                running.cancel(format!("superseded by {}", work.prs_text()));
                work = work.absorb(running.work.clone());
                outcome = Submitted::Superseding;
            }
        }
        slot.pending = Some(Pending {
            work,
            queued: QueueEntry::waiting(&self.inner.gauges),
        });
        if new_worker {
            let count = state.slots.len();
            self.inner.busy.send_replace(count);
            tokio::spawn(worker(self.inner.clone(), branch));
        }
        outcome
    }

    /// How many branches have work waiting or running.
    pub(crate) fn busy(&self) -> usize {
        *self.inner.busy.borrow()
    }

    /// Wait until no work is waiting or running.
    pub(crate) async fn idle(&self) {
        let mut rx = self.inner.busy.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Stop: take no more work, drop what waits, let what runs finish for up to `grace` (or
    /// until `hurry` completes, e.g. a second signal), then cancel the rest.
    pub(crate) async fn shutdown(
        &self,
        grace: Duration,
        hurry: impl std::future::Future<Output = ()>,
    ) {
        let dropped: Vec<Work> = {
            let mut state = self.inner.state.lock().expect("not poisoned");
            state.closed = true;
            state
                .slots
                .values_mut()
                .filter_map(|s| s.pending.take())
                .map(|p| p.work)
                .collect()
        };
        for work in dropped {
            log!(
                Warn,
                "work.dropped",
                branch = work.branch,
                action = work.action,
                prs = work.prs_text(),
                reason = "the service is stopping before it started; it stays pending in the state for whoever carries on",
            );
        }
        // Work waiting for a slot gives up now.
        self.inner.permits.close();
        if self.busy() > 0 {
            log!(
                Info,
                "shutdown.waiting",
                running = self.busy(),
                grace = humantime::format_duration(grace)
            );
        }
        let finished = tokio::select! {
            done = tokio::time::timeout(grace, self.idle()) => done.is_ok(),
            () = hurry => false,
        };
        if !finished {
            {
                let state = self.inner.state.lock().expect("not poisoned");
                for (branch, slot) in &state.slots {
                    if let Some(running) = &slot.running {
                        log!(
                            Warn,
                            "work.cancelled",
                            branch = branch,
                            action = running.work.action,
                            prs = running.work.prs_text(),
                            reason = "the service is stopping",
                        );
                        running.cancel(
                            "handed back: the preview service stopped before it finished".into(),
                        );
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), self.idle()).await;
        }
    }
}

/// Serves one branch: runs its work one piece after the other until none is left.
async fn worker(inner: Arc<Inner>, branch: String) {
    loop {
        let (handle, queued) = {
            let mut state = inner.state.lock().expect("not poisoned");
            let slot = state
                .slots
                .get_mut(&branch)
                .expect("a branch keeps its slot while its worker runs");
            slot.running = None;
            let Some(Pending { work, queued }) = slot.pending.take() else {
                state.slots.remove(&branch);
                let count = state.slots.len();
                inner.busy.send_replace(count);
                return;
            };
            let cancelled = Arc::new(Mutex::new(None));
            let queued = Arc::new(Mutex::new(Some(queued)));
            let job = Job {
                permits: inner.permits.clone(),
                cancelled: cancelled.clone(),
                kept: Arc::default(),
                queued: queued.clone(),
                queue: Queue {
                    inner: inner.clone(),
                },
            };
            let handle = tokio::spawn(inner.executor.clone().execute(work.clone(), job));
            slot.running = Some(Running {
                work,
                abort: handle.abort_handle(),
                cancelled,
            });
            (handle, queued)
        };
        match handle.await {
            Ok(()) => {}
            // Whoever cancelled it said so in the log.
            Err(e) if e.is_cancelled() => {}
            Err(e) => log!(Error, "work.panicked", branch = branch, error = e),
        }
        // Out of the gauge now that it has ended, whoever still holds a clone of its job.
        *queued.lock().expect("not poisoned") = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records what it was asked to do; each piece of work takes `delay`, or waits for the
    /// test's go-ahead when its branch is in `gated`.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) events: Mutex<Vec<String>>,
        pub(crate) delay: Duration,
        running: AtomicUsize,
        pub(crate) max_running: AtomicUsize,
        per_branch: Mutex<HashMap<String, usize>>,
        pub(crate) overlap_in_a_branch: std::sync::atomic::AtomicBool,
    }

    impl Recorder {
        pub(crate) fn with_delay(delay: Duration) -> Arc<Recorder> {
            Arc::new(Recorder {
                delay,
                ..Default::default()
            })
        }
        pub(crate) fn events(&self) -> Vec<String> {
            self.events.lock().unwrap().clone()
        }
        fn push(&self, e: String) {
            self.events.lock().unwrap().push(e);
        }
    }

    struct Running<'a>(&'a Recorder, String, String);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.running.fetch_sub(1, Ordering::SeqCst);
            *self.0.per_branch.lock().unwrap().get_mut(&self.1).unwrap() -= 1;
            if std::thread::panicking() {
                return;
            }
            self.0.push(format!("end {}", self.2));
        }
    }

    impl Executor for Recorder {
        fn execute(self: Arc<Self>, work: Work, job: Job) -> BoxFuture<'static, ()> {
            async move {
                let name = format!(
                    "{} {} {}",
                    work.action,
                    work.branch,
                    work.prs
                        .iter()
                        .map(|p| p.sha.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let Some(_permit) = job.slot().await else {
                    self.push(format!("no slot {name}"));
                    return;
                };
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_running.fetch_max(now, Ordering::SeqCst);
                {
                    let mut per = self.per_branch.lock().unwrap();
                    let n = per.entry(work.branch.clone()).or_default();
                    *n += 1;
                    if *n > 1 {
                        self.overlap_in_a_branch.store(true, Ordering::SeqCst);
                    }
                }
                self.push(format!("start {name}"));
                let guard = Running(&self, work.branch.clone(), name.clone());
                tokio::time::sleep(self.delay).await;
                self.push(format!("done {name}"));
                drop(guard);
            }
            .boxed()
        }
    }

    pub(crate) fn work(branch: &str, action: Action, repo: &str, number: u64, sha: &str) -> Work {
        Work {
            branch: branch.into(),
            action,
            prs: vec![PrRef {
                repo: repo.into(),
                number,
                sha: sha.into(),
                author: "octocat".into(),
                deployment: None,
                delivery: format!("d-{number}-{sha}"),
            }],
        }
    }

    #[tokio::test]
    async fn a_newer_push_cancels_the_running_deploy() {
        let rec = Recorder::with_delay(Duration::from_millis(300));
        let queue = Queue::new(2, rec.clone());
        assert_eq!(
            queue.submit(work("feat", Action::Deploy, "o/b", 1, "s1")),
            Submitted::Queued
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            queue.submit(work("feat", Action::Deploy, "o/b", 1, "s2")),
            Submitted::Superseding
        );
        queue.idle().await;
        assert_eq!(
            rec.events(),
            [
                "start deploy feat s1",
                "end deploy feat s1", // dropped, never done
                "start deploy feat s2",
                "done deploy feat s2",
                "end deploy feat s2",
            ]
        );
    }

    #[tokio::test]
    async fn queued_work_is_replaced_by_newer_work_and_only_the_newest_runs() {
        let rec = Recorder::with_delay(Duration::from_millis(200));
        // One slot, held by another branch: the pushes to `feat` wait in the queue.
        let queue = Queue::new(1, rec.clone());
        queue.submit(work("other", Action::Deploy, "o/b", 9, "x"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.submit(work("feat", Action::Deploy, "o/b", 1, "s1"));
        assert_eq!(
            queue.submit(work("feat", Action::Deploy, "o/b", 1, "s2")),
            Submitted::Superseding
        );
        queue.submit(work("feat", Action::Deploy, "o/b", 1, "s3"));
        queue.idle().await;
        let events = rec.events();
        assert!(
            !events.iter().any(|e| e.contains("s1") || e.contains("s2")),
            "{events:?}"
        );
        assert!(
            events.contains(&"done deploy feat s3".to_owned()),
            "{events:?}"
        );
        assert!(
            events.contains(&"done deploy other x".to_owned()),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn work_for_one_branch_runs_one_at_a_time_and_a_deletion_is_not_cancelled() {
        let rec = Recorder::with_delay(Duration::from_millis(150));
        let queue = Queue::new(4, rec.clone());
        queue.submit(work("feat", Action::Destroy, "o/b", 1, "s1"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Reopened right after closing: waits for the deletion, does not cancel it.
        assert_eq!(
            queue.submit(work("feat", Action::Deploy, "o/b", 1, "s2")),
            Submitted::Queued
        );
        queue.idle().await;
        assert_eq!(
            rec.events(),
            [
                "start destroy feat s1",
                "done destroy feat s1",
                "end destroy feat s1",
                "start deploy feat s2",
                "done deploy feat s2",
                "end deploy feat s2",
            ]
        );
        assert!(!rec.overlap_in_a_branch.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn at_most_concurrency_branches_run_at_once() {
        let rec = Recorder::with_delay(Duration::from_millis(100));
        let queue = Queue::new(2, rec.clone());
        for (i, b) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            queue.submit(work(b, Action::Deploy, "o/r", i as u64, "s"));
        }
        queue.idle().await;
        assert_eq!(rec.max_running.load(Ordering::SeqCst), 2);
        assert_eq!(
            rec.events()
                .iter()
                .filter(|e| e.starts_with("done"))
                .count(),
            5
        );
    }

    /// Holds each piece of work, once it has its slot, until the test lets one go.
    struct Held {
        started: Semaphore,
        go: Semaphore,
    }

    impl Executor for Held {
        fn execute(self: Arc<Self>, _work: Work, job: Job) -> BoxFuture<'static, ()> {
            async move {
                let Some(_slot) = job.slot().await else {
                    return;
                };
                self.started.add_permits(1);
                self.go.acquire().await.unwrap().forget();
            }
            .boxed()
        }
    }

    impl Held {
        fn new() -> Arc<Held> {
            Arc::new(Held {
                started: Semaphore::new(0),
                go: Semaphore::new(0),
            })
        }

        /// Wait until one more piece of work has started.
        async fn started(&self) {
            self.started.acquire().await.unwrap().forget();
        }
    }

    #[tokio::test]
    async fn work_held_back_behind_its_branchs_running_work_counts_as_waiting() {
        let m = metrics::Metrics::new();
        let held = Held::new();
        let queue = Queue::counted_in(2, held.clone(), m.queue_gauges());
        let counted = || {
            let scrape = m.render();
            let count = |state: &str| {
                let prefix = format!("sandbox_serve_queue{{state=\"{state}\"}} ");
                let line = scrape.lines().find_map(|l| l.strip_prefix(&prefix));
                line.unwrap_or_else(|| panic!("no {state} in:\n{scrape}"))
                    .parse::<i64>()
                    .unwrap()
            };
            (count("waiting"), count("running"))
        };
        queue.submit(work("feat", Action::Destroy, "o/b", 1, "s1"));
        held.started().await;
        assert_eq!(counted(), (0, 1));
        // A deletion is not cancelled: the push after it waits for it, and is counted so.
        assert_eq!(
            queue.submit(work("feat", Action::Deploy, "o/b", 1, "s2")),
            Submitted::Queued
        );
        assert_eq!(counted(), (1, 1));
        // Newest wins: the push after that replaces it, still one piece waiting.
        assert_eq!(
            queue.submit(work("feat", Action::Deploy, "o/b", 1, "s3")),
            Submitted::Superseding
        );
        assert_eq!(counted(), (1, 1));
        held.go.add_permits(1);
        held.started().await;
        assert_eq!(
            counted(),
            (0, 1),
            "the deletion is gone, the newest push runs"
        );
        held.go.add_permits(1);
        queue.idle().await;
        assert_eq!(counted(), (0, 0));

        // Shutting down: what waits is dropped from the gauge, what runs once it is cancelled.
        queue.submit(work("feat", Action::Destroy, "o/b", 1, "s4"));
        held.started().await;
        queue.submit(work("feat", Action::Deploy, "o/b", 1, "s5"));
        assert_eq!(counted(), (1, 1));
        queue
            .shutdown(Duration::from_secs(60), std::future::ready(()))
            .await;
        assert_eq!(counted(), (0, 0));
    }

    #[tokio::test]
    async fn pull_requests_of_superseded_work_are_kept() {
        let rec = Recorder::with_delay(Duration::from_millis(200));
        let queue = Queue::new(2, rec.clone());
        // The same branch in two repositories: two pull requests, one sandbox.
        queue.submit(work("feat", Action::Deploy, "o/backend", 4, "b1"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.submit(work("feat", Action::Deploy, "o/frontend", 7, "f1"));
        queue.idle().await;
        let events = rec.events();
        assert_eq!(
            events.last().unwrap(),
            "end deploy feat b1,f1",
            "both pull requests hear of the final deploy: {events:?}"
        );
        let w = work("f", Action::Deploy, "o/backend", 4, "b2").absorb(Work {
            prs: vec![
                work("f", Action::Deploy, "o/backend", 4, "b1").prs[0].clone(),
                work("f", Action::Deploy, "o/frontend", 7, "f1").prs[0].clone(),
            ],
            ..work("f", Action::Deploy, "o/x", 0, "")
        });
        assert_eq!(w.prs_text(), "o/frontend#7@f1 o/backend#4@b2");
    }

    #[tokio::test]
    async fn shutdown_drops_waiting_work_lets_running_work_finish_then_cancels() {
        let rec = Recorder::with_delay(Duration::from_millis(150));
        let queue = Queue::new(1, rec.clone());
        queue.submit(work("a", Action::Deploy, "o/r", 1, "s1"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.submit(work("b", Action::Deploy, "o/r", 2, "s2")); // waits for the slot
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Waiting, not yet started: dropped (never run), as `d` will be.
        queue.submit(work("d", Action::Deploy, "o/r", 4, "s4"));
        queue
            .shutdown(Duration::from_secs(5), std::future::pending())
            .await;
        assert_eq!(queue.busy(), 0);
        let events = rec.events();
        assert!(
            events.contains(&"done deploy a s1".to_owned()),
            "{events:?}"
        );
        assert!(
            events.contains(&"no slot deploy b s2".to_owned()),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| e.contains("s4")), "{events:?}");
        assert_eq!(
            queue.submit(work("c", Action::Deploy, "o/r", 3, "s3")),
            Submitted::Closed
        );

        // A grace period too short: the running work is cancelled.
        let rec = Recorder::with_delay(Duration::from_secs(30));
        let queue = Queue::new(1, rec.clone());
        queue.submit(work("a", Action::Deploy, "o/r", 1, "s1"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        queue
            .shutdown(Duration::from_millis(100), std::future::pending())
            .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(rec.events(), ["start deploy a s1", "end deploy a s1"]);
    }
}

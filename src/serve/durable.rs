//! Work driven from the recorded state ([`super::state`]) rather than from memory.
//!
//! - [`Previews::submit`] is the one way work comes in (webhooks, the start-up reconcile, and
//!   anything else that wants a preview up or down): it records the work as the branch's next
//!   generation, and only then is the delivery acknowledged.
//! - A driver follows the states (a watch, plus a full look every [`SWEEP_EVERY`] in case a
//!   watch event was missed) and hands each pending branch to the local [`Queue`], which keeps
//!   its in-process rules: at most `--concurrency` at once, newest wins, a running deploy is
//!   cancelled when a newer generation is seen — whichever replica recorded it.
//! - The queue's executor ([`Runner`]), once it has one of the `--concurrency` slots, claims the
//!   branch (a Lease per preview in serve's namespace, [`crate::lock`]): one worker per preview
//!   across every replica. A claim held by another replica is not waited for (that would idle
//!   a slot): the branch is looked at again after [`CLAIM_RETRY`]. Under the claim the state is
//!   read again and the newest generation done, unless someone already did.
//!
//! Replicas spread the work through these per-preview claims rather than electing a leader:
//! every replica takes deliveries and works, a busy or dying replica only holds the previews it
//! is working on, and there is no single point whose failover stalls every preview. A replica
//! that dies mid-`up` leaves its claim to expire; the next worker (the other replica at once,
//! or this one after its restart) takes it over and finishes the generation, reusing the GitHub
//! deployments recorded for it. A replica that stops (SIGTERM) lets running work finish within
//! `--shutdown-grace`, then hands the rest back: it releases the claim, and marks the state
//! (still pending) as handed back, a write the other replica's watch sees at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tracing::Instrument;

use super::log::log;
use super::queue::{Action, Executor, Job, PrRef, Queue, Work};
use super::state::{self, Accepted, Claim, Delivered, Desired, OpenDeployment, Store};
use super::worker::{Deployer, Journal, Outcome, Worker};

/// How often every state is looked at, besides the watch.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How soon a branch whose claim another worker held is looked at again: its holder may have
/// handed it back or died.
pub(crate) const CLAIM_RETRY: Duration = Duration::from_secs(10);

/// What became of submitted work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Submitted {
    pub(crate) accepted: Accepted,
}

/// Where work is submitted (what the webhook handler holds, whatever the store).
pub(crate) trait Intake: Send + Sync + 'static {
    /// See [`Previews::submit`].
    fn submit<'a>(
        &'a self,
        work: Work,
        delivery: Option<&'a Delivered>,
    ) -> BoxFuture<'a, Result<Submitted>>;
    /// How many branches have work waiting or running here.
    fn busy(&self) -> usize;
    /// Until no work waits or runs here.
    #[cfg(test)]
    fn idle(&self) -> BoxFuture<'_, ()>;
}

impl<S: Store> Intake for Previews<S> {
    fn submit<'a>(
        &'a self,
        work: Work,
        delivery: Option<&'a Delivered>,
    ) -> BoxFuture<'a, Result<Submitted>> {
        Previews::submit(self, work, delivery).boxed()
    }

    fn busy(&self) -> usize {
        self.queue.busy()
    }

    #[cfg(test)]
    fn idle(&self) -> BoxFuture<'_, ()> {
        self.queue.idle().boxed()
    }
}

/// The previews' desired state and the workers that converge on it; cheap to clone.
pub(crate) struct Previews<S: Store> {
    shared: Arc<Shared<S>>,
    queue: Queue,
}

impl<S: Store> Clone for Previews<S> {
    fn clone(&self) -> Self {
        Previews {
            shared: self.shared.clone(),
            queue: self.queue.clone(),
        }
    }
}

struct Shared<S> {
    store: Arc<S>,
    /// Per branch, the newest generation handed to the local queue and not yet finished.
    handed: Mutex<HashMap<String, u64>>,
    /// The local queue (set once, right after it is made: it holds the runner, which holds this).
    queue: std::sync::OnceLock<Queue>,
}

impl<S: Store> Shared<S> {
    /// Give a pending state to the local queue, unless it already has that generation.
    fn hand_out(&self, state: &Desired) {
        if !state.pending() {
            return;
        }
        {
            let mut handed = self.handed.lock().expect("not poisoned");
            if handed
                .get(&state.branch)
                .is_some_and(|g| *g >= state.generation)
            {
                return;
            }
            handed.insert(state.branch.clone(), state.generation);
        }
        let work = state.work();
        log!(
            Info,
            "work.pending",
            branch = state.branch,
            generation = state.generation,
            action = work.action,
            prs = work.prs_text(),
        );
        if let Some(queue) = self.queue.get() {
            queue.submit(work);
        }
    }

    /// Look at `branch` again after `delay`.
    fn recheck(self: &Arc<Self>, branch: &str, delay: Duration) {
        let (shared, branch) = (self.clone(), branch.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Ok(Some(current)) = shared.store.load(&branch).await {
                shared.hand_out(&current.state);
            }
        });
    }

    /// The generation was done (or found done): a later look may hand the branch out again.
    fn done(&self, branch: &str, generation: u64) {
        let mut handed = self.handed.lock().expect("not poisoned");
        if handed.get(branch).is_some_and(|g| *g <= generation) {
            handed.remove(branch);
        }
    }

    /// Note that the local queue works on `generation` (found under the claim).
    fn working_on(&self, branch: &str, generation: u64) {
        let mut handed = self.handed.lock().expect("not poisoned");
        let at = handed.entry(branch.to_owned()).or_insert(generation);
        *at = (*at).max(generation);
    }
}

impl<S: Store> Previews<S> {
    /// The previews over `store`, worked on by `worker` (`concurrency` at a time).
    pub(crate) fn new<D: Deployer>(
        store: Arc<S>,
        worker: Arc<Worker<D>>,
        concurrency: usize,
    ) -> Previews<S> {
        let shared = Arc::new(Shared {
            store,
            handed: Mutex::default(),
            queue: std::sync::OnceLock::new(),
        });
        let runner = Runner {
            shared: shared.clone(),
            worker,
        };
        let queue = Queue::new(concurrency, Arc::new(runner));
        let _ = shared.queue.set(queue.clone());
        Previews { shared, queue }
    }

    /// The local queue (for shutdown and health).
    pub(crate) fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Record `work` (from `delivery`, if it came in one) as the preview's desired state. Once
    /// this returns `Ok`, the work is durable: some replica will do it.
    pub(crate) async fn submit(
        &self,
        work: Work,
        delivery: Option<&Delivered>,
    ) -> Result<Submitted> {
        let (accepted, written) = state::record(&*self.shared.store, &work, delivery).await?;
        if let Accepted::Kept { by } = &accepted {
            let others: Vec<String> = by
                .iter()
                .map(|p| format!("{}#{}", p.repo, p.number))
                .collect();
            log!(
                Info,
                "work.kept",
                branch = work.branch,
                prs = work.prs_text(),
                reason = format!("still used by {}", others.join(" ")),
            );
        }
        if let Some(state) = written {
            self.hand_out(&state);
        }
        Ok(Submitted { accepted })
    }

    fn hand_out(&self, state: &Desired) {
        self.shared.hand_out(state);
    }

    /// Follow the states until the returned task is aborted.
    pub(crate) fn drive(&self) -> tokio::task::JoinHandle<()> {
        let previews = self.clone();
        tokio::spawn(async move {
            let mut changes = previews.shared.store.changes();
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    Some(state) = changes.next() => previews.hand_out(&state),
                    _ = sweep.tick() => previews.sweep().await,
                }
            }
        })
    }

    /// After the local queue stopped: mark every preview still pending here as handed back, a
    /// write that the other replicas' watches see at once (rather than at their next look).
    pub(crate) async fn hand_back(&self) {
        let branches: Vec<String> = {
            let handed = self.shared.handed.lock().expect("not poisoned");
            handed.keys().cloned().collect()
        };
        let note = format!("handed back by {}", crate::lock::holder_identity("serve"));
        for branch in branches {
            let written = state::update(&*self.shared.store, &branch, |s| {
                let mut s = s.filter(|s| s.pending())?.clone();
                s.worker = Some(note.clone());
                Some(s)
            });
            match tokio::time::timeout(Duration::from_secs(5), written).await {
                Ok(Ok(Some(s))) if s.pending() => {
                    log!(
                        Info,
                        "work.handed_back",
                        branch = branch,
                        generation = s.generation
                    )
                }
                Ok(Err(e)) => log!(
                    Warn,
                    "state.write_failed",
                    branch = branch,
                    error = format!("{e:#}")
                ),
                _ => {}
            }
        }
    }

    async fn sweep(&self) {
        let store = &*self.shared.store;
        let states = match store.list().await {
            Ok(states) => states,
            Err(e) => return log!(Warn, "state.list_failed", error = format!("{e:#}")),
        };
        let now = jiff::Timestamp::now();
        for v in states {
            if v.state.forgettable(now) {
                match store.forget(&v.state.branch, &v.version).await {
                    Ok(()) => log!(Info, "state.forgotten", branch = v.state.branch),
                    Err(e) => log!(Warn, "state.write_failed", error = format!("{e:#}")),
                }
                continue;
            }
            self.hand_out(&v.state);
        }
    }
}

/// The local queue's executor: claim, read, do the newest generation, record the outcome.
struct Runner<S, D> {
    shared: Arc<Shared<S>>,
    worker: Arc<Worker<D>>,
}

impl<S: Store, D: Deployer> Executor for Runner<S, D> {
    fn execute(self: Arc<Self>, work: Work, job: Job) -> BoxFuture<'static, ()> {
        let span = super::worker::work_span(&work);
        async move {
            let branch = work.branch;
            if let Err(e) = self.clone().claimed(&branch, job).await {
                log!(
                    Warn,
                    "work.failed_to_start",
                    branch = branch,
                    error = format!("{e:#}")
                );
                // Looked at again at the next sweep.
                self.shared.done(&branch, u64::MAX);
            }
        }
        .instrument(span)
        .boxed()
    }
}

impl<S: Store, D: Deployer> Runner<S, D> {
    async fn claimed(self: Arc<Self>, branch: &str, job: Job) -> Result<()> {
        let store = &*self.shared.store;
        // The slot first: a claim is held only while it is worked on.
        let Some(slot) = job.slot().await else {
            return Ok(()); // shutting down; it stays pending
        };
        job.keep(slot);
        let Some(claim) = store.claim(branch).await? else {
            log!(Info, "work.claimed_elsewhere", branch = branch);
            self.shared.done(branch, u64::MAX);
            self.shared.recheck(branch, CLAIM_RETRY);
            return Ok(());
        };
        let current = match store.load(branch).await {
            Ok(current) => current.map(|c| c.state),
            Err(e) => {
                claim.release().await;
                return Err(e);
            }
        };
        let Some(desired) = current.filter(Desired::pending) else {
            claim.release().await;
            self.shared
                .done(branch, current_generation(store, branch).await);
            return Ok(());
        };
        let generation = desired.generation;
        self.shared.working_on(branch, generation);
        let _ = state::update(store, branch, |s| {
            let mut s = s?.clone();
            (s.generation == generation).then(|| {
                s.attempts += 1;
                s.worker = Some(crate::lock::holder_identity("serve"));
                s
            })
        })
        .await;
        log!(
            Info,
            "work.claimed",
            branch = branch,
            generation = generation,
            attempt = desired.attempts + 1
        );
        let outcome = tokio::select! {
            outcome = self.run(&desired, job) => Some(outcome),
            why = claim.lost() => {
                log!(Warn, "work.claim_lost", branch = branch, generation = generation, reason = why);
                None
            }
        };
        let error = match outcome {
            Some(Outcome::Succeeded) => Some(None),
            Some(Outcome::Failed(summary)) => Some(Some(summary)),
            // Left pending for whoever carries on.
            Some(Outcome::HandedBack) | None => None,
        };
        if let Some(error) = error {
            let finished = state::update(store, branch, |s| {
                let mut s = s?.clone();
                s.finish(generation, error.as_deref());
                Some(s)
            })
            .await;
            if let Err(e) = finished {
                log!(
                    Warn,
                    "state.write_failed",
                    branch = branch,
                    error = format!("{e:#}")
                );
            }
        }
        claim.release().await;
        self.shared.done(branch, generation);
        Ok(())
    }

    /// Do the generation `desired` asks for.
    async fn run(&self, desired: &Desired, job: Job) -> Outcome {
        let work = desired.work();
        match work.action {
            Action::Deploy => {
                let journal = self.journal(desired);
                self.worker.clone().deploy(work, job, journal).await
            }
            Action::Destroy => self.worker.clone().destroy(work, job).await,
        }
    }

    /// The GitHub deployments recorded by earlier attempts, and how to record this one's.
    fn journal(&self, desired: &Desired) -> Journal {
        let generation = desired.generation;
        let (reuse, stale): (Vec<_>, Vec<_>) = desired
            .deployments
            .iter()
            .partition(|d| d.generation == generation);
        let pairs = |list: Vec<&OpenDeployment>| -> Vec<(PrRef, u64)> {
            list.into_iter().map(|d| (d.pr.clone(), d.id)).collect()
        };
        let store = self.shared.store.clone();
        let branch = desired.branch.clone();
        Journal {
            reuse: pairs(reuse),
            stale: pairs(stale),
            record: Some(Box::new(move |made: Vec<(PrRef, u64)>| {
                let store = store.clone();
                let branch = branch.clone();
                async move {
                    let written = state::update(&*store, &branch, |s| {
                        let mut s = s?.clone();
                        // This attempt's deployments replace what earlier ones left: those are
                        // reused or marked inactive by now.
                        s.deployments.retain(|d| d.generation > generation);
                        s.deployments
                            .extend(made.iter().map(|(pr, id)| OpenDeployment {
                                pr: pr.clone(),
                                id: *id,
                                generation,
                            }));
                        Some(s)
                    })
                    .await;
                    if let Err(e) = written {
                        log!(
                            Warn,
                            "state.write_failed",
                            branch = branch,
                            error = format!("{e:#}")
                        );
                    }
                }
                .boxed()
            })),
        }
    }
}

/// The branch's generation now (0 when unknown).
async fn current_generation<S: Store>(store: &S, branch: &str) -> u64 {
    match store.load(branch).await {
        Ok(Some(v)) => v.state.generation,
        _ => 0,
    }
}

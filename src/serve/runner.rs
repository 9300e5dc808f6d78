//! The local queue's executor ([`Runner`]): for each branch the queue runs, take a slot, claim
//! the branch across replicas ([`super::claim`]), read its state again, do the newest pending
//! generation ([`Worker`]) and record the outcome. And the ledger of what this replica was
//! handed ([`Handed`]), so that a branch is not queued twice for the same generation.
//!
//! A claim held by another replica is not waited for (that would idle a slot): the branch is
//! looked at again after [`CLAIM_RETRY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::Instrument;

use super::claim::Claim;
use super::desired::{Desired, OpenDeployment};
use super::log::log;
use super::queue::{Action, Executor, Job, PrRef, Queue, Work};
use super::store::{self, Store};
use super::worker::{Deployer, Journal, Outcome, Worker};

/// How soon a branch whose claim another worker held is looked at again: its holder may have
/// handed it back or died.
pub(crate) const CLAIM_RETRY: Duration = Duration::from_secs(10);

/// Per branch, the newest generation handed to the local queue and not yet finished: what this
/// replica has taken on (and hands back when it stops).
#[derive(Default)]
pub(crate) struct Handed(Mutex<HashMap<String, u64>>);

impl Handed {
    /// Give a pending state to `queue`, unless it already has that generation.
    pub(crate) fn hand_out(&self, state: &Desired, queue: &Queue) {
        if !state.pending() {
            return;
        }
        {
            let mut handed = self.0.lock().expect("not poisoned");
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
        queue.submit(work);
    }

    /// The generation was done (or found done): a later look may hand the branch out again.
    pub(crate) fn done(&self, branch: &str, generation: u64) {
        let mut handed = self.0.lock().expect("not poisoned");
        if handed.get(branch).is_some_and(|g| *g <= generation) {
            handed.remove(branch);
        }
    }

    /// Note that the local queue works on `generation` (found under the claim).
    fn working_on(&self, branch: &str, generation: u64) {
        let mut handed = self.0.lock().expect("not poisoned");
        let at = handed.entry(branch.to_owned()).or_insert(generation);
        *at = (*at).max(generation);
    }

    /// The branches handed out and not yet finished.
    pub(crate) fn branches(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect()
    }
}

/// The local queue's executor: claim, read, do the newest generation, record the outcome.
///
/// It holds what it needs and no more: the store, the ledger, the worker. Not the queue it runs
/// in: the queue holds it, and a runner holding its queue would keep both alive forever (an
/// `Arc` cycle). The queue comes with each job instead ([`Job::queue`]), for the one thing the
/// runner puts back into it: a branch claimed elsewhere, looked at again later.
pub(crate) struct Runner<S, D> {
    store: Arc<S>,
    handed: Arc<Handed>,
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
                self.handed.done(&branch, u64::MAX);
            }
        }
        .instrument(span)
        .boxed()
    }
}

impl<S: Store, D: Deployer> Runner<S, D> {
    pub(crate) fn new(store: Arc<S>, handed: Arc<Handed>, worker: Arc<Worker<D>>) -> Self {
        Runner {
            store,
            handed,
            worker,
        }
    }

    /// Take a slot, claim the branch, and do its pending generation under the claim.
    async fn claimed(self: Arc<Self>, branch: &str, job: Job) -> Result<()> {
        let store = &*self.store;
        // The slot first: a claim is held only while it is worked on.
        let Some(slot) = job.slot().await else {
            return Ok(()); // shutting down; it stays pending
        };
        job.keep(slot);
        let Some(claim) = store.claim(branch).await? else {
            log!(Info, "work.claimed_elsewhere", branch = branch);
            self.handed.done(branch, u64::MAX);
            self.recheck(branch, job.queue(), CLAIM_RETRY);
            return Ok(());
        };
        let pending = match store.load(branch).await {
            Ok(current) => current.map(|c| c.state).filter(Desired::pending),
            Err(e) => {
                claim.release().await;
                return Err(e);
            }
        };
        let Some(desired) = pending else {
            claim.release().await;
            self.handed
                .done(branch, current_generation(store, branch).await);
            return Ok(());
        };
        let generation = desired.generation;
        self.begin(branch, &desired).await;
        let outcome = tokio::select! {
            outcome = self.run(&desired, job) => Some(outcome),
            why = claim.lost() => {
                log!(Warn, "work.claim_lost", branch = branch, generation = generation, reason = why);
                None
            }
        };
        self.record(branch, generation, outcome).await;
        claim.release().await;
        self.handed.done(branch, generation);
        Ok(())
    }

    /// Look at `branch` again after `delay`, and hand it to `queue` if it is still pending.
    fn recheck(&self, branch: &str, queue: Queue, delay: Duration) {
        let (store, handed) = (self.store.clone(), self.handed.clone());
        let branch = branch.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Ok(Some(current)) = store.load(&branch).await {
                handed.hand_out(&current.state, &queue);
            }
        });
    }

    /// Note that this replica works on the pending generation `desired`: in the ledger, and in
    /// the state (one attempt more, and by whom).
    async fn begin(&self, branch: &str, desired: &Desired) {
        let generation = desired.generation;
        self.handed.working_on(branch, generation);
        let _ = store::update(&*self.store, branch, |s| {
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
    }

    /// Record the outcome of the attempt at `generation` (`None`: the claim was lost); work
    /// handed back or cut off stays pending for whoever carries on.
    async fn record(&self, branch: &str, generation: u64, outcome: Option<Outcome>) {
        let error = match outcome {
            Some(Outcome::Succeeded) => None,
            Some(Outcome::Failed(summary)) => Some(summary),
            Some(Outcome::HandedBack) | None => return,
        };
        let finished = store::update(&*self.store, branch, |s| {
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
        let store = self.store.clone();
        let branch = desired.branch.clone();
        Journal {
            reuse: pairs(reuse),
            stale: pairs(stale),
            record: Some(Box::new(move |made: Vec<(PrRef, u64)>| {
                let store = store.clone();
                let branch = branch.clone();
                async move {
                    let written = store::update(&*store, &branch, |s| {
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

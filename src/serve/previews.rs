//! The previews: work driven from the recorded state ([`super::desired`], kept in
//! [`super::store`]) rather than from memory.
//!
//! - [`Previews::submit`] is the one way work comes in (webhooks, the start-up reconcile, and
//!   anything else that wants a preview up or down): it records the work as the branch's next
//!   generation, and only then is the delivery acknowledged.
//! - A driver follows the states (a watch, plus a full look every [`SWEEP_EVERY`] in case a
//!   watch event was missed) and hands each pending branch to the local [`Queue`], which keeps
//!   its in-process rules: at most `--concurrency` at once, newest wins, a running deploy is
//!   cancelled when a newer generation is seen — whichever replica recorded it.
//! - The queue's executor ([`Runner`]), once it has one of the `--concurrency` slots, claims the
//!   branch (a Lease per preview in serve's namespace, [`super::claim`]): one worker per preview
//!   across every replica. A claim held by another replica is not waited for (that would idle
//!   a slot): the branch is looked at again after [`CLAIM_RETRY`](super::runner::CLAIM_RETRY).
//!   Under the claim the state is read again and the newest generation done, unless someone
//!   already did.
//!
//! Replicas spread the work through these per-preview claims rather than electing a leader:
//! every replica takes deliveries and works, a busy or dying replica only holds the previews it
//! is working on, and there is no single point whose failover stalls every preview. A replica
//! that dies mid-`up` leaves its claim to expire; the next worker (the other replica at once,
//! or this one after its restart) takes it over and finishes the generation, reusing the GitHub
//! deployments recorded for it. A replica that stops (SIGTERM) lets running work finish within
//! `--shutdown-grace`, then hands the rest back: it releases the claim, and marks the state
//! (still pending) as handed back, a write the other replica's watch sees at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::desired::{Accepted, Delivered, Desired};
use super::log::log;
use super::queue::{Queue, Work};
use super::runner::{Handed, Runner};
use super::store::{self, Store};
use super::worker::{Deployer, Worker};

/// How often every state is looked at, besides the watch.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(30);

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
    store: Arc<S>,
    /// What the local queue was handed and has not finished (shared with its [`Runner`]).
    handed: Arc<Handed>,
    queue: Queue,
}

impl<S: Store> Clone for Previews<S> {
    fn clone(&self) -> Self {
        Previews {
            store: self.store.clone(),
            handed: self.handed.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<S: Store> Previews<S> {
    /// The previews over `store`, worked on by `worker` (`concurrency` at a time).
    pub(crate) fn new<D: Deployer>(
        store: Arc<S>,
        worker: Arc<Worker<D>>,
        concurrency: usize,
    ) -> Previews<S> {
        let handed = Arc::new(Handed::default());
        let runner = Runner::new(store.clone(), handed.clone(), worker);
        let queue = Queue::new(concurrency, Arc::new(runner));
        Previews {
            store,
            handed,
            queue,
        }
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
        let (accepted, written) = store::record(&*self.store, &work, delivery).await?;
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

    /// Give a pending state to the local queue, unless it already has that generation.
    fn hand_out(&self, state: &Desired) {
        self.handed.hand_out(state, &self.queue);
    }

    /// Follow the states until the returned task is aborted.
    pub(crate) fn drive(&self) -> tokio::task::JoinHandle<()> {
        let previews = self.clone();
        tokio::spawn(async move {
            let mut changes = previews.store.changes();
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
        let branches = self.handed.branches();
        let note = format!("handed back by {}", crate::lock::holder_identity("serve"));
        for branch in branches {
            let written = store::update(&*self.store, &branch, |s| {
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

    /// Look at every state: hand out what is pending, forget what was torn down long ago.
    async fn sweep(&self) {
        let store = &*self.store;
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

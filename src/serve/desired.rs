//! The desired state of each preview: what every accepted delivery asked for, so that a
//! restart or another replica carries on exactly where the service left off. Pure: the whole
//! decision of what a piece of work changes ([`accept`]), tested without a cluster; where the
//! states are kept is [`super::store`].
//!
//! One state per preview sandbox (per branch: several pull requests can share one): the branch,
//! what is wanted (up or down), the pull requests that use it, a generation counter bumped by
//! every accepted change, the generation last completed, the attempts at it, the last error, the
//! ids of recent deliveries (for deduplication) and the GitHub deployments of the attempt under
//! way (so that a successor reuses or closes them).

use serde::{Deserialize, Serialize};

use super::queue::{Action, PrRef, Work};

/// Delivery ids remembered per preview: GitHub's retries and redeliveries come within minutes,
/// and a preview sees a few deliveries per push.
pub(crate) const REMEMBERED_DELIVERIES: usize = 64;
/// The last error is kept this short: it is for a status page and a log line, not a report.
const MAX_ERROR_CHARS: usize = 1000;
/// How long the state of a preview that was torn down is kept (for deduplication of late
/// redeliveries) before it is deleted: otherwise every branch ever previewed would keep one.
pub(crate) const KEEP_DONE_DOWN: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// What is wanted of a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Wanted {
    #[default]
    Up,
    Down,
}

/// A webhook delivery, as the state remembers it.
///
/// Its id (`X-GitHub-Delivery`) is not signed, so a captured body replayed under a fresh id
/// would pass as new: the SHA-256 of the body (which the signature covers) is remembered too,
/// and the pull request's `updated_at` in it orders it against what the preview has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) id: String,
    /// Hex SHA-256 of the body.
    pub(crate) digest: String,
    /// The pull request's `updated_at` in the body (RFC 3339), when it has one.
    pub(crate) updated_at: Option<String>,
}

/// The newest `updated_at` of the deliveries taken for one pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub(crate) repo: String,
    pub(crate) number: u64,
    pub(crate) updated_at: String,
}

/// Whether `a` is an earlier time than `b` (RFC 3339; as text when either does not parse).
fn earlier(a: &str, b: &str) -> bool {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(a), Ok(b)) => a < b,
        _ => a < b,
    }
}

/// A GitHub deployment made for a generation, not yet given its final status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenDeployment {
    pub(crate) pr: PrRef,
    pub(crate) id: u64,
    pub(crate) generation: u64,
}

/// The recorded desired state of one branch's preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct Desired {
    pub(crate) branch: String,
    pub(crate) wanted: Wanted,
    /// Up: the open pull requests that use the preview, oldest first. Down: the closed ones
    /// that asked for it, to report to.
    pub(crate) prs: Vec<PrRef>,
    /// Bumped by every accepted change that needs work.
    pub(crate) generation: u64,
    /// The last generation a worker finished (successfully or not).
    pub(crate) completed: u64,
    /// Attempts at the current generation (more than one: a worker was interrupted).
    #[serde(default)]
    pub(crate) attempts: u32,
    /// The last attempt's error, scrubbed and truncated.
    #[serde(default)]
    pub(crate) last_error: Option<String>,
    /// Recent delivery ids, oldest first.
    #[serde(default)]
    pub(crate) deliveries: Vec<String>,
    /// The SHA-256 of recent deliveries' bodies, oldest first: a body replayed under a fresh
    /// delivery id is still the same body.
    #[serde(default)]
    pub(crate) digests: Vec<String>,
    /// Per pull request, the newest `updated_at` of the deliveries taken: a delivery older than
    /// that is a replay (or arrived after a newer one) and changes nothing.
    #[serde(default)]
    pub(crate) seen: Vec<Seen>,
    /// GitHub deployments of attempts not finished.
    #[serde(default)]
    pub(crate) deployments: Vec<OpenDeployment>,
    /// Who works on it now (for people reading the object).
    #[serde(default)]
    pub(crate) worker: Option<String>,
    /// When the last attempt finished (RFC 3339).
    #[serde(default)]
    pub(crate) finished_at: Option<String>,
}

impl Desired {
    /// Whether a generation waits for a worker.
    pub(crate) fn pending(&self) -> bool {
        self.generation > self.completed
    }

    /// The work the current generation asks for.
    pub(crate) fn work(&self) -> Work {
        Work {
            branch: self.branch.clone(),
            action: match self.wanted {
                Wanted::Up => Action::Deploy,
                Wanted::Down => Action::Destroy,
            },
            prs: self.prs.clone(),
        }
    }

    fn remember(&mut self, work: &Work, delivery: Option<&Delivered>) {
        let Some(delivery) = delivery else {
            return;
        };
        for (list, item) in [
            (&mut self.deliveries, &delivery.id),
            (&mut self.digests, &delivery.digest),
        ] {
            list.push(item.clone());
            let extra = list.len().saturating_sub(REMEMBERED_DELIVERIES);
            list.drain(..extra);
        }
        let Some(at) = &delivery.updated_at else {
            return;
        };
        for pr in work.prs.iter().filter(|p| p.number != 0) {
            match self
                .seen
                .iter_mut()
                .find(|s| s.repo == pr.repo && s.number == pr.number)
            {
                Some(seen) if earlier(&seen.updated_at, at) => seen.updated_at = at.clone(),
                Some(_) => {}
                None => self.seen.push(Seen {
                    repo: pr.repo.clone(),
                    number: pr.number,
                    updated_at: at.clone(),
                }),
            }
        }
        let extra = self.seen.len().saturating_sub(REMEMBERED_DELIVERIES);
        self.seen.drain(..extra);
    }

    /// Whether `delivery` was taken before: its id, or its body under another id.
    fn taken(&self, delivery: &Delivered) -> bool {
        self.deliveries.contains(&delivery.id) || self.digests.contains(&delivery.digest)
    }

    /// The newer `updated_at` already seen of a pull request `work` is for, when `delivery` is
    /// older than that.
    fn newer_seen(&self, work: &Work, delivery: &Delivered) -> Option<String> {
        let at = delivery.updated_at.as_deref()?;
        work.prs.iter().find_map(|pr| {
            self.seen
                .iter()
                .find(|s| s.repo == pr.repo && s.number == pr.number && pr.number != 0)
                .filter(|s| earlier(at, &s.updated_at))
                .map(|s| s.updated_at.clone())
        })
    }

    /// Record the outcome of an attempt at `generation`.
    pub(crate) fn finish(&mut self, generation: u64, error: Option<&str>) {
        self.completed = self.completed.max(generation);
        self.last_error = error.map(|e| super::text::truncate(e, MAX_ERROR_CHARS));
        self.worker = None;
        self.deployments.retain(|d| d.generation > generation);
        self.finished_at = Some(jiff::Timestamp::now().to_string());
    }

    /// Whether the state is of a preview torn down long enough ago to be forgotten.
    pub(crate) fn forgettable(&self, now: jiff::Timestamp) -> bool {
        let finished = self.finished_at.as_deref().and_then(|t| t.parse().ok());
        self.wanted == Wanted::Down
            && !self.pending()
            && finished.is_some_and(|at: jiff::Timestamp| at + KEEP_DONE_DOWN < now)
    }
}

/// What became of submitted work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// Recorded as generation `generation`; `superseding`: an earlier one was still pending.
    Pending { generation: u64, superseding: bool },
    /// A closed pull request was taken off, but others still use the preview: it stays.
    Kept { by: Vec<PrRef> },
    /// Already what is wanted (e.g. a resync that found nothing new).
    Unchanged,
    /// This delivery was recorded before (a retry, a redelivery, another replica), or its body
    /// was, under another delivery id (a replay).
    Duplicate,
    /// The delivery is older than one already taken for its pull request (`newer`: that one's
    /// `updated_at`): a replay, or a delivery overtaken by a newer one. Nothing changes.
    Stale { newer: String },
}

/// The state after `work` (from `delivery`, if it came in one), and what that means. Pure: the
/// whole decision, tested without a cluster.
pub(crate) fn accept(
    current: Option<&Desired>,
    work: &Work,
    delivery: Option<&Delivered>,
) -> (Accepted, Option<Desired>) {
    let mut next = current.cloned().unwrap_or_else(|| Desired {
        branch: work.branch.clone(),
        ..Desired::default()
    });
    if let Some(delivery) = delivery {
        if next.taken(delivery) {
            return (Accepted::Duplicate, None);
        }
        if let Some(newer) = next.newer_seen(work, delivery) {
            return (Accepted::Stale { newer }, None);
        }
    }
    let was_pending = current.is_some_and(Desired::pending);
    let before = Before {
        wanted: current.map(|c| c.wanted),
        pending: was_pending,
        delivered: delivery.is_some(),
    };
    let change = match work.action {
        Action::Deploy => next.want_up(work, &before),
        Action::Destroy => next.want_down(work, &before),
    };
    match change {
        Change::Nothing => return (Accepted::Unchanged, None),
        Change::Kept => {
            next.remember(work, delivery);
            let by = next.prs.clone();
            return (Accepted::Kept { by }, Some(next));
        }
        Change::Generation => {}
    }
    next.remember(work, delivery);
    next.generation += 1;
    next.attempts = 0;
    let accepted = Accepted::Pending {
        generation: next.generation,
        superseding: was_pending,
    };
    (accepted, Some(next))
}

/// What [`accept`] knows of the state before the work, and of how the work came.
struct Before {
    /// What was wanted (`None`: no state yet).
    wanted: Option<Wanted>,
    /// Whether a generation was still waiting for a worker.
    pending: bool,
    /// Whether the work came in a delivery (else: a resync or an expiry).
    delivered: bool,
}

/// What a piece of work changes of a state's pull requests and wish.
enum Change {
    /// Nothing: the state already says so.
    Nothing,
    /// The closed pull requests are taken off, but others still use the preview: it stays up,
    /// with no work to do.
    Kept,
    /// A new generation: work to do.
    Generation,
}

impl Desired {
    /// `work` asks for the preview up: its pull requests join (or replace their older heads).
    fn want_up(&mut self, work: &Work, before: &Before) -> Change {
        let same = before.wanted == Some(Wanted::Up)
            && work.prs.iter().all(|p| self.prs.iter().any(|q| q == p));
        if same && !before.delivered {
            return Change::Nothing;
        }
        if before.wanted == Some(Wanted::Down) {
            self.prs.clear(); // those were closed
        }
        // A deployment event asks once, for its own commit: newer work is not its to report.
        let mut prs: Vec<PrRef> = std::mem::take(&mut self.prs)
            .into_iter()
            .filter(|o| o.deployment.is_none() || o.number != 0)
            .filter(|o| !work.prs.iter().any(|n| n.same_pr(o)))
            .collect();
        prs.extend(work.prs.iter().cloned());
        self.prs = prs;
        self.wanted = Wanted::Up;
        Change::Generation
    }

    /// `work` asks for the preview down (its pull requests closed, or the preview expired): it
    /// goes only when no other pull request still uses it.
    fn want_down(&mut self, work: &Work, before: &Before) -> Change {
        let count = self.prs.len();
        self.prs.retain(|o| !work.prs.iter().any(|n| n.same_pr(o)));
        if work.prs.is_empty() {
            // The preview expired: the deployments that asked for it no longer keep it.
            self.prs.retain(|o| o.number != 0);
        }
        if !self.prs.is_empty() && before.wanted == Some(Wanted::Up) {
            if self.prs.len() == count && !before.delivered {
                return Change::Nothing; // a resync: not one of its PRs
            }
            return Change::Kept;
        }
        if before.wanted == Some(Wanted::Down) && !before.pending && !before.delivered {
            return Change::Nothing;
        }
        if before.wanted != Some(Wanted::Down) {
            self.prs.clear();
        }
        self.prs.extend(work.prs.iter().cloned());
        self.wanted = Wanted::Down;
        Change::Generation
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn pr(repo: &str, number: u64, sha: &str) -> PrRef {
        PrRef {
            repo: repo.into(),
            number,
            sha: sha.into(),
            author: "octocat".into(),
            ..PrRef::default()
        }
    }

    /// A delivery whose body is unique to its id.
    pub(crate) fn d(id: &str) -> Delivered {
        Delivered {
            id: id.into(),
            digest: format!("digest of {id}"),
            updated_at: None,
        }
    }

    fn work(action: Action, prs: Vec<PrRef>) -> Work {
        Work {
            branch: "feat".into(),
            action,
            prs,
        }
    }

    #[test]
    fn a_delivery_is_taken_once() {
        let open = work(Action::Deploy, vec![pr("o/b", 1, "s1")]);
        let (accepted, state) = accept(None, &open, Some(&d("d-1")));
        assert_eq!(
            accepted,
            Accepted::Pending {
                generation: 1,
                superseding: false
            }
        );
        let state = state.unwrap();
        assert!(state.pending());
        assert_eq!(state.deliveries, ["d-1"]);
        assert_eq!(
            accept(Some(&state), &open, Some(&d("d-1"))),
            (Accepted::Duplicate, None)
        );
        // Without a delivery (a resync): nothing new, nothing to do.
        assert_eq!(
            accept(Some(&state), &open, None),
            (Accepted::Unchanged, None)
        );
        let other_closed = work(Action::Destroy, vec![pr("o/other", 9, "x")]);
        assert_eq!(
            accept(Some(&state), &other_closed, None),
            (Accepted::Unchanged, None)
        );
    }

    #[test]
    fn every_change_is_a_new_generation_and_the_newest_wins() {
        let (_, s1) = accept(
            None,
            &work(Action::Deploy, vec![pr("o/b", 1, "s1")]),
            Some(&d("d-1")),
        );
        let (accepted, s2) = accept(
            s1.as_ref(),
            &work(Action::Deploy, vec![pr("o/b", 1, "s2")]),
            Some(&d("d-2")),
        );
        assert_eq!(
            accepted,
            Accepted::Pending {
                generation: 2,
                superseding: true
            }
        );
        let mut s2 = s2.unwrap();
        assert_eq!(s2.prs, [pr("o/b", 1, "s2")], "the PR's newest head only");
        s2.finish(2, None);
        assert!(!s2.pending());
        // A finished older attempt never marks a newer generation done.
        let mut s3 = accept(
            Some(&s2),
            &work(Action::Deploy, vec![pr("o/f", 7, "f1")]),
            Some(&d("d-3")),
        )
        .1
        .unwrap();
        assert_eq!(
            s3.prs,
            [pr("o/b", 1, "s2"), pr("o/f", 7, "f1")],
            "two PRs, one branch"
        );
        s3.finish(2, Some("late"));
        assert!(s3.pending());
        assert_eq!(s3.generation, 3);
    }

    #[test]
    fn a_body_replayed_under_a_fresh_delivery_id_is_a_duplicate() {
        let open = work(Action::Deploy, vec![pr("o/b", 1, "s1")]);
        let first = Delivered {
            id: "d-1".into(),
            digest: "body-1".into(),
            updated_at: Some("2026-11-23T10:00:00Z".into()),
        };
        let (_, state) = accept(None, &open, Some(&first));
        let state = state.unwrap();
        assert_eq!(state.digests, ["body-1"]);
        let replay = Delivered {
            id: "fresh-id".into(),
            ..first.clone()
        };
        assert_eq!(
            accept(Some(&state), &open, Some(&replay)),
            (Accepted::Duplicate, None)
        );
    }

    #[test]
    fn a_delivery_older_than_one_taken_for_its_pull_request_changes_nothing() {
        let at = |id: &str, time: &str| Delivered {
            id: id.into(),
            digest: format!("body of {id}"),
            updated_at: Some(time.into()),
        };
        let open = at("open", "2026-11-23T10:00:00Z");
        let close = at("close", "2026-11-23T11:00:00Z");
        let reopen = at("reopen", "2026-11-23T12:00:00Z");
        let (_, s) = accept(
            None,
            &work(Action::Deploy, vec![pr("o/b", 1, "s1")]),
            Some(&open),
        );
        let (_, s) = accept(
            s.as_ref(),
            &work(Action::Destroy, vec![pr("o/b", 1, "s1")]),
            Some(&close),
        );
        let (_, s) = accept(
            s.as_ref(),
            &work(Action::Deploy, vec![pr("o/b", 1, "s2")]),
            Some(&reopen),
        );
        let s = s.unwrap();
        assert_eq!(s.wanted, Wanted::Up);
        // The `closed` body again, under a new id and with its digest forgotten: older than the
        // reopen, so the preview stays.
        let mut forgetful = s.clone();
        forgetful.digests.clear();
        let replayed_close = Delivered {
            id: "fresh".into(),
            ..close.clone()
        };
        let (accepted, next) = accept(
            Some(&forgetful),
            &work(Action::Destroy, vec![pr("o/b", 1, "s1")]),
            Some(&replayed_close),
        );
        assert_eq!(
            accepted,
            Accepted::Stale {
                newer: "2026-11-23T12:00:00Z".into()
            }
        );
        assert_eq!(next, None);
        // An old push of the same pull request: no roll-back.
        let (accepted, _) = accept(
            Some(&forgetful),
            &work(Action::Deploy, vec![pr("o/b", 1, "s1")]),
            Some(&at("old-push", "2026-11-23T10:30:00Z")),
        );
        assert!(matches!(accepted, Accepted::Stale { .. }), "{accepted:?}");
        // Another pull request's events are not ordered against this one's.
        let (accepted, _) = accept(
            Some(&forgetful),
            &work(Action::Deploy, vec![pr("o/f", 7, "f1")]),
            Some(&at("other", "2026-11-23T09:00:00Z")),
        );
        assert!(matches!(accepted, Accepted::Pending { .. }), "{accepted:?}");
        // A delivery of the same second is taken (GitHub's times are whole seconds).
        let (accepted, _) = accept(
            Some(&forgetful),
            &work(Action::Deploy, vec![pr("o/b", 1, "s3")]),
            Some(&at("same-second", "2026-11-23T12:00:00Z")),
        );
        assert!(matches!(accepted, Accepted::Pending { .. }), "{accepted:?}");
    }

    #[test]
    fn a_deployment_asks_once_and_an_expiry_takes_only_deployments_previews() {
        let deployment = PrRef {
            deployment: Some(77),
            ..pr("o/b", 0, "s1")
        };
        let (_, s) = accept(
            None,
            &work(Action::Deploy, vec![deployment.clone()]),
            Some(&d("d-1")),
        );
        let mut s = s.unwrap();
        s.finish(1, None);
        // The expiry (a resync's Destroy naming nobody) takes a deployment's preview down.
        let (accepted, down) = accept(Some(&s), &work(Action::Destroy, vec![]), None);
        assert!(matches!(accepted, Accepted::Pending { .. }), "{accepted:?}");
        assert_eq!(down.unwrap().wanted, Wanted::Down);
        // A push to a pull request of the branch: the deployment is not reported on again.
        let (_, up) = accept(
            Some(&s),
            &work(Action::Deploy, vec![pr("o/b", 3, "s2")]),
            Some(&d("d-2")),
        );
        let mut up = up.unwrap();
        assert_eq!(up.prs, [pr("o/b", 3, "s2")]);
        up.finish(2, None);
        // …and an expiry leaves a preview a pull request uses.
        let (accepted, _) = accept(Some(&up), &work(Action::Destroy, vec![]), None);
        assert_eq!(accepted, Accepted::Unchanged);
    }

    #[test]
    fn the_deliveries_remembered_are_bounded() {
        let mut state: Option<Desired> = None;
        for i in 0..(REMEMBERED_DELIVERIES + 10) {
            let w = work(Action::Deploy, vec![pr("o/b", 1, &format!("s{i}"))]);
            state = accept(state.as_ref(), &w, Some(&d(&format!("d-{i}")))).1;
        }
        let state = state.unwrap();
        assert_eq!(state.deliveries.len(), REMEMBERED_DELIVERIES);
        assert_eq!(state.deliveries[0], "d-10");
    }

    #[test]
    fn a_close_takes_the_preview_down_only_when_no_other_pr_uses_it() {
        let (_, s) = accept(
            None,
            &work(Action::Deploy, vec![pr("o/b", 1, "s1")]),
            Some(&d("d-1")),
        );
        let (_, s) = accept(
            s.as_ref(),
            &work(Action::Deploy, vec![pr("o/f", 7, "f1")]),
            Some(&d("d-2")),
        );
        let mut s = s.unwrap();
        s.finish(2, None);
        let (accepted, kept) = accept(
            Some(&s),
            &work(Action::Destroy, vec![pr("o/b", 1, "s1")]),
            Some(&d("d-3")),
        );
        assert_eq!(
            accepted,
            Accepted::Kept {
                by: vec![pr("o/f", 7, "f1")]
            }
        );
        let kept = kept.unwrap();
        assert!(!kept.pending(), "nothing to do");
        assert_eq!(kept.wanted, Wanted::Up);
        let (accepted, down) = accept(
            Some(&kept),
            &work(Action::Destroy, vec![pr("o/f", 7, "f1")]),
            Some(&d("d-4")),
        );
        assert!(matches!(accepted, Accepted::Pending { generation: 3, .. }));
        let down = down.unwrap();
        assert_eq!(down.wanted, Wanted::Down);
        assert_eq!(down.prs, [pr("o/f", 7, "f1")], "told of the deletion");
        // Reopened: up again, for that pull request only.
        let (_, up) = accept(
            Some(&down),
            &work(Action::Deploy, vec![pr("o/f", 7, "f2")]),
            Some(&d("d-5")),
        );
        let up = up.unwrap();
        assert_eq!((up.wanted, up.prs), (Wanted::Up, vec![pr("o/f", 7, "f2")]));
    }

    #[test]
    fn a_torn_down_preview_is_forgotten_after_a_week() {
        let (_, s) = accept(
            None,
            &work(Action::Destroy, vec![pr("o/b", 1, "s1")]),
            Some(&d("d-1")),
        );
        let mut s = s.unwrap();
        let now = jiff::Timestamp::now();
        assert!(!s.forgettable(now + KEEP_DONE_DOWN * 2), "pending");
        s.finish(1, None);
        assert!(!s.forgettable(now));
        assert!(s.forgettable(now + KEEP_DONE_DOWN + jiff::SignedDuration::from_secs(60)));
        let (_, up) = accept(
            Some(&s),
            &work(Action::Deploy, vec![pr("o/b", 1, "s2")]),
            Some(&d("d-2")),
        );
        let mut up = up.unwrap();
        up.finish(2, None);
        assert!(
            !up.forgettable(now + KEEP_DONE_DOWN * 2),
            "an open preview's"
        );
    }
}

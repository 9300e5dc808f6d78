//! Self-healing: at start and then every `--resync`, the open pull requests of every configured
//! repository are listed from GitHub and the previews converged to them, so previews work with
//! no webhook at all (webhooks only make them fast), and a missed delivery is made up for.
//!
//! - An open pull request whose preview is missing, or deployed from an older head commit, is
//!   brought up.
//! - A preview whose pull requests are all closed is deleted: only a sandbox that previews made
//!   ([`made_by_serve`]), only when no open pull request (of any configured repository) still
//!   uses its branch, and only once GitHub confirmed each of them closed, one by one (a list that
//!   lags behind a just-opened pull request deletes nothing).
//! - GitHub deployments of older commits to a current preview's environment get `inactive`.
//!
//! Lists are asked conditionally (a 304 when nothing changed costs no rate limit), and every
//! call goes through the client's retries and rate-limit waits. Work is submitted as a
//! webhook's is, into the recorded desired state ([`Intake`]): what the state already wants
//! changes nothing, so a pass never restarts a running deploy.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::desired::Accepted;
use super::github::{valid_repo, GitHub, ListCost, OpenPull, State};
use super::log::log;
use super::previews::Intake;
use super::queue::{Action, PrRef, Work};
use super::scope::Scope;
use crate::kube::{connect, ClusterOptions};
use crate::pipeline::config::Config;
use crate::record::{self, PrNumber, SandboxRecord};

/// What a resync needs.
#[derive(Clone)]
pub(crate) struct Resync {
    pub(crate) cluster: ClusterOptions,
    pub(crate) config: Config,
    pub(crate) github: GitHub,
    pub(crate) scope: Scope,
    /// Whether statuses may be posted (a token is set).
    pub(crate) report: bool,
    /// Between passes; zero: only the pass at start.
    pub(crate) every: Duration,
    /// Whether to run a pass at start (`--no-reconcile` turns it off).
    pub(crate) at_start: bool,
}

/// Run the passes in the background.
pub(crate) fn spawn(resync: Resync, previews: Arc<dyn Intake>) {
    if !resync.at_start && resync.every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut marked = Marked::default();
        if !resync.at_start {
            tokio::time::sleep(resync.every).await;
        }
        loop {
            match pass(&resync, &*previews, &mut marked).await {
                Ok(s) => log!(
                    Info,
                    "resync.done",
                    repos = s.repos,
                    open = s.open,
                    pages = s.cost.pages,
                    not_modified = s.cost.not_modified,
                    up = s.up,
                    closed = s.down,
                    inactive = s.inactive,
                ),
                Err(e) => log!(Error, "resync.failed", error = format!("{e:#}")),
            }
            if resync.every.is_zero() {
                return;
            }
            tokio::time::sleep(resync.every).await;
        }
    });
}

/// Whether serve made this sandbox (and may therefore delete it), as its record says.
pub(crate) fn made_by_serve(sandbox: &SandboxRecord) -> bool {
    sandbox.made_by_serve()
}

/// The one place resync hands work over: into the recorded state, like a webhook's. Whether it
/// changed what is wanted.
async fn submit(previews: &dyn Intake, work: Work) -> bool {
    let (action, branch, prs) = (work.action, work.branch.clone(), work.prs_text());
    match previews.submit(work, None).await {
        Ok(submitted) => {
            let pending = matches!(submitted.accepted, Accepted::Pending { .. });
            if pending {
                log!(
                    Info,
                    "resync.queued",
                    action = action,
                    branch = branch,
                    prs = prs
                );
            }
            pending
        }
        Err(e) => {
            log!(
                Error,
                "resync.submit_failed",
                branch = branch,
                error = format!("{e:#}")
            );
            false
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
struct Summary {
    repos: usize,
    open: usize,
    cost: ListCost,
    up: usize,
    down: usize,
    inactive: usize,
}

/// Deployments known to be inactive already, so each is asked about once (bounded).
#[derive(Default)]
struct Marked(HashSet<u64>);

impl Marked {
    fn insert(&mut self, id: u64) {
        if self.0.len() >= 10_000 {
            self.0.clear();
        }
        self.0.insert(id);
    }
}

/// The open pull requests of the configured repositories that could be listed.
#[derive(Debug, Default)]
pub(crate) struct OpenLists {
    pub(crate) pulls: Vec<OpenPull>,
    /// The repositories listed (lower case); a repository that failed is not in it, and nothing
    /// of its pull requests is decided from the list.
    pub(crate) listed: HashSet<String>,
}

impl OpenLists {
    fn find(&self, pr: &PrNumber) -> Option<&OpenPull> {
        self.pulls
            .iter()
            .find(|p| p.number == pr.number && p.repo.eq_ignore_ascii_case(&pr.repo))
    }
}

async fn list_open(resync: &Resync, summary: &mut Summary) -> OpenLists {
    let mut lists = OpenLists::default();
    for repo in &resync.scope.repos {
        match resync.github.open_pulls(&repo.full_name).await {
            Ok((pulls, cost)) => {
                summary.repos += 1;
                summary.cost.pages += cost.pages;
                summary.cost.not_modified += cost.not_modified;
                lists.listed.insert(repo.full_name.to_ascii_lowercase());
                lists.pulls.extend(pulls);
            }
            Err(e) => log!(
                Warn,
                "resync.list_failed",
                repo = repo.full_name,
                error = format!("{e:#}"),
                consequence = "its pull requests are left as they are until the next resync"
            ),
        }
    }
    summary.open = lists.pulls.len();
    lists
}

async fn pass(resync: &Resync, previews: &dyn Intake, marked: &mut Marked) -> Result<Summary> {
    let mut summary = Summary::default();
    let open = list_open(resync, &mut summary).await;
    let cluster = connect(&resync.cluster)
        .await
        .context("cannot compare the previews with the open pull requests")?;
    let sandboxes: Vec<SandboxRecord> = record::list(&cluster, Some(&resync.config.name))
        .await
        .context("could not list the sandbox namespaces")?
        .into_iter()
        .filter(|s| is_this_products(&resync.config, s))
        .collect();
    let plan = plan(&resync.scope, &open, &sandboxes);
    for work in plan.up {
        summary.up += usize::from(submit(previews, work).await);
    }
    for candidate in plan.down {
        if all_closed(&resync.github, &candidate).await {
            log!(
                Info,
                "resync.closed",
                namespace = candidate.namespace,
                prs = candidate.work.prs_text()
            );
            summary.down += usize::from(submit(previews, candidate.work).await);
        }
    }
    // Only while no work runs here: a deploy that started after the list may be of a newer
    // commit than the list's, and its deployment must not be marked inactive.
    if resync.report && previews.busy() == 0 {
        for pull in &plan.current {
            summary.inactive +=
                deactivate_superseded(&resync.github, &resync.scope, pull, marked).await;
        }
    }
    Ok(summary)
}

/// Only this product's sandboxes: the name must be what this sandbox.yaml makes of the branch
/// (or made of it before the hash was lengthened).
fn is_this_products(config: &Config, sandbox: &SandboxRecord) -> bool {
    let prefix = &config.namespace_prefix;
    let names = [
        Some(record::namespace_for(prefix, &sandbox.branch)),
        record::legacy_namespace_for(prefix, &sandbox.branch),
    ];
    names.contains(&Some(sandbox.namespace.clone()))
}

/// A preview that may go, once GitHub confirms `confirm` closed.
#[derive(Debug, PartialEq)]
pub(crate) struct DownCandidate {
    pub(crate) namespace: String,
    pub(crate) work: Work,
    /// The pull requests not seen open in a list: each is asked about before anything goes.
    pub(crate) confirm: Vec<PrNumber>,
}

/// What a pass should do.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    pub(crate) up: Vec<Work>,
    pub(crate) down: Vec<DownCandidate>,
    /// Open pull requests whose preview is at their head: their older deployments go inactive.
    pub(crate) current: Vec<OpenPull>,
}

/// Compare the open pull requests with the sandboxes.
pub(crate) fn plan(scope: &Scope, open: &OpenLists, sandboxes: &[SandboxRecord]) -> Plan {
    let wanted = wanted_by_branch(scope, open);
    let mut plan = Plan::default();
    for (branch, pulls) in &wanted {
        let sandbox = sandboxes.iter().find(|s| &s.branch == branch);
        if sandbox.is_some_and(|s| s.terminating) {
            continue; // going; the next pass brings it back
        }
        let outdated = |p: &&OpenPull| match sandbox {
            None => true,
            Some(s) => scope
                .configured(&p.repo)
                .and_then(|c| s.repos.get(&c.name))
                .is_some_and(|at| at.sha != p.head_sha),
        };
        if pulls.iter().any(outdated) {
            plan.up.push(Work {
                branch: branch.clone(),
                action: Action::Deploy,
                prs: pulls.iter().map(|p| pr_ref(p)).collect(),
            });
        } else {
            plan.current.extend(pulls.iter().map(|p| (*p).clone()));
        }
    }
    let now = jiff::Timestamp::now();
    for sandbox in sandboxes {
        if sandbox.terminating || !made_by_serve(sandbox) || wanted.contains_key(&sandbox.branch) {
            continue;
        }
        // A preview that records no pull request (a `deployment` event's) has nothing GitHub
        // could say is closed: it lives until its expiry (each deployment renews it), then
        // goes like any expired sandbox (`sandbox reap` deletes it too).
        if sandbox.prs.is_empty() {
            if sandbox.expired(now) {
                plan.down.push(expired(sandbox));
            }
            continue;
        }
        if let Some(candidate) = down_candidate(scope, open, sandbox) {
            plan.down.push(candidate);
        }
    }
    plan
}

/// The open pull requests that want a preview, by head branch: not from a fork, and not a draft
/// when drafts are skipped.
fn wanted_by_branch<'a>(scope: &Scope, open: &'a OpenLists) -> BTreeMap<String, Vec<&'a OpenPull>> {
    let mut wanted: BTreeMap<String, Vec<&OpenPull>> = BTreeMap::new();
    for pull in &open.pulls {
        let own = pull
            .head_repo
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(&pull.repo));
        if own && !(scope.skip_drafts && pull.draft) && scope.configured(&pull.repo).is_some() {
            wanted.entry(pull.head_ref.clone()).or_default().push(pull);
        }
    }
    wanted
}

/// The preview goes if none of its pull requests is open (a draft skipped counts as not
/// wanting it); those not in any list are confirmed one by one.
fn down_candidate(
    scope: &Scope,
    open: &OpenLists,
    sandbox: &SandboxRecord,
) -> Option<DownCandidate> {
    let mut confirm = Vec::new();
    for pr in &sandbox.prs {
        match open.find(pr) {
            Some(pull) if scope.skip_drafts && pull.draft => {}
            // Open, and its head is elsewhere now (or a fork): still not this preview's to drop
            // on a guess.
            Some(_) => return None,
            None => confirm.push(pr.clone()),
        }
    }
    Some(DownCandidate {
        namespace: sandbox.namespace.clone(),
        work: Work {
            branch: sandbox.branch.clone(),
            action: Action::Destroy,
            prs: sandbox
                .prs
                .iter()
                .map(|p| PrRef {
                    repo: p.repo.clone(),
                    number: p.number,
                    ..PrRef::default()
                })
                .collect(),
        },
        confirm,
    })
}

/// An expired deployment's preview: it goes, whatever deployments asked for it (a Destroy that
/// names nobody).
fn expired(sandbox: &SandboxRecord) -> DownCandidate {
    DownCandidate {
        namespace: sandbox.namespace.clone(),
        work: Work {
            branch: sandbox.branch.clone(),
            action: Action::Destroy,
            prs: Vec::new(),
        },
        confirm: Vec::new(),
    }
}

fn pr_ref(pull: &OpenPull) -> PrRef {
    PrRef {
        repo: pull.repo.clone(),
        number: pull.number,
        sha: pull.head_sha.clone(),
        author: pull.author.clone(),
        ..PrRef::default()
    }
}

/// Whether GitHub says each pull request to confirm is closed. Anything unclear (an unusable
/// repository name, an error from GitHub, an open one) keeps the preview: nothing is deleted on
/// a guess.
async fn all_closed(github: &GitHub, candidate: &DownCandidate) -> bool {
    for PrNumber { repo, number } in &candidate.confirm {
        let kept = |reason: String| {
            log!(
                Info,
                "resync.kept",
                namespace = candidate.namespace,
                pr = format!("{repo}#{number}"),
                reason = reason
            );
            false
        };
        if !valid_repo(repo) {
            return kept(format!("unusable repository `{repo}`"));
        }
        match github.pull_is_closed(repo, *number).await {
            Ok(true) => {}
            Ok(false) => return kept("GitHub says it is open".into()),
            Err(e) => return kept(format!("{e:#}")),
        }
    }
    true
}

/// Mark the deployments of older commits to `pull`'s preview environment inactive; how many.
async fn deactivate_superseded(
    gh: &GitHub,
    scope: &Scope,
    pull: &OpenPull,
    marked: &mut Marked,
) -> usize {
    let environment = scope.environment(&pull.head_ref);
    let deployments = match gh.environment_deployments(&pull.repo, &environment).await {
        Ok(list) => list,
        Err(e) => {
            log!(
                Warn,
                "github.failed",
                repo = pull.repo,
                call = "list deployments",
                error = format!("{e:#}")
            );
            return 0;
        }
    };
    let short = &pull.head_sha[..pull.head_sha.len().min(7)];
    let mut count = 0;
    let stale: Vec<u64> = deployments
        .iter()
        .filter(|d| d.sha != pull.head_sha && !marked.0.contains(&d.id))
        .map(|d| d.id)
        .collect();
    for id in stale {
        let done = match gh.latest_state(&pull.repo, id).await {
            Ok(Some(state)) if state == State::Inactive.as_str() => true,
            Ok(_) => {
                let description = format!("superseded by {short}");
                let posted = gh
                    .set_status(&pull.repo, id, State::Inactive, &description, None)
                    .await;
                count += usize::from(posted.is_ok());
                posted.is_ok()
            }
            Err(_) => false,
        };
        if done {
            marked.insert(id);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RepoAt;

    fn pull(repo: &str, number: u64, branch: &str, sha: &str) -> OpenPull {
        OpenPull {
            repo: repo.into(),
            number,
            head_ref: branch.into(),
            head_sha: sha.into(),
            head_repo: Some(repo.into()),
            draft: false,
            author: "octocat".into(),
        }
    }

    fn sandbox(branch: &str, prs: &[(&str, u64)], backend_sha: &str) -> SandboxRecord {
        SandboxRecord {
            namespace: format!("shop-{branch}"),
            branch: branch.into(),
            prs: prs
                .iter()
                .map(|(repo, number)| PrNumber {
                    repo: (*repo).into(),
                    number: *number,
                })
                .collect(),
            repos: [(
                "backend".to_owned(),
                RepoAt {
                    branch: branch.into(),
                    sha: backend_sha.into(),
                    fell_back: false,
                },
            )]
            .into(),
            // In these tests a sandbox with pull requests is a preview's; one without, made by
            // hand.
            made_by: Some(
                if prs.is_empty() {
                    "up"
                } else {
                    record::MADE_BY_SERVE
                }
                .into(),
            ),
            ..SandboxRecord::default()
        }
    }

    fn lists(pulls: Vec<OpenPull>) -> OpenLists {
        OpenLists {
            listed: ["o/backend".to_owned(), "o/frontend".to_owned()].into(),
            pulls,
        }
    }

    fn scope(skip_drafts: bool) -> Scope {
        Scope::of(
            &[("backend", "o/backend"), ("frontend", "O/Frontend")],
            skip_drafts,
            "sandbox/",
        )
    }

    #[test]
    fn missing_and_outdated_previews_come_up_current_ones_are_left() {
        let open = lists(vec![
            pull("o/backend", 1, "new", "n1"),
            pull("o/backend", 2, "moved", "m2"),
            pull("o/backend", 3, "same", "s1"),
            // The same branch in two repositories: one sandbox, both pull requests.
            pull("o/frontend", 9, "new", "f9"),
        ]);
        let sandboxes = [
            sandbox("moved", &[("o/backend", 2)], "m1"),
            sandbox("same", &[("o/backend", 3)], "s1"),
        ];
        let plan = plan(&scope(false), &open, &sandboxes);
        let up: Vec<(String, String)> = plan
            .up
            .iter()
            .map(|w| (w.branch.clone(), w.prs_text()))
            .collect();
        assert_eq!(
            up,
            [
                ("moved".into(), "o/backend#2@m2".into()),
                ("new".into(), "o/backend#1@n1 o/frontend#9@f9".into()),
            ]
        );
        assert_eq!(plan.current, [pull("o/backend", 3, "same", "s1")]);
        assert!(plan.down.is_empty());
    }

    #[test]
    fn previews_of_pull_requests_not_open_are_candidates_to_go_hand_made_ones_never() {
        let open = lists(vec![pull("o/backend", 5, "shared", "x")]);
        let sandboxes = [
            sandbox("gone", &[("o/backend", 1)], "a"),
            // Another open pull request still uses the branch.
            sandbox("shared", &[("o/frontend", 2)], "x"),
            // Made by hand (`sandbox up`): never serve's to delete.
            sandbox("main", &[], "m"),
            // Made by serve for a `deployment` event: no pull request to be closed.
            SandboxRecord {
                made_by: Some(record::MADE_BY_SERVE.into()),
                ..sandbox("deployed", &[], "d")
            },
            SandboxRecord {
                terminating: true,
                ..sandbox("going", &[("o/backend", 3)], "g")
            },
        ];
        let plan = plan(&scope(false), &open, &sandboxes);
        assert_eq!(plan.down.len(), 1, "{plan:?}");
        // …until it has expired: then it goes, with no pull request to confirm.
        let expired = SandboxRecord {
            made_by: Some(record::MADE_BY_SERVE.into()),
            expires_at: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)),
            ..sandbox("deployed", &[], "d")
        };
        let by_hand = SandboxRecord {
            expires_at: expired.expires_at,
            ..sandbox("main", &[], "m")
        };
        let gone = super::plan(&scope(false), &open, &[expired, by_hand]);
        assert_eq!(gone.down.len(), 1, "only serve's: {gone:?}");
        assert_eq!(gone.down[0].work.branch, "deployed");
        assert!(gone.down[0].work.prs.is_empty() && gone.down[0].confirm.is_empty());
        let down = &plan.down[0];
        assert_eq!(down.work.branch, "gone");
        assert_eq!(down.work.action, Action::Destroy);
        assert_eq!(
            down.confirm,
            [PrNumber {
                repo: "o/backend".into(),
                number: 1
            }]
        );
        // A preview whose pull request is open (listed under another head) stays.
        let open = lists(vec![pull("o/backend", 1, "renamed", "a")]);
        let plan = super::plan(&scope(false), &open, &sandboxes[..1]);
        assert!(plan.down.is_empty(), "{plan:?}");
    }

    #[test]
    fn drafts_forks_and_unconfigured_repositories_want_no_preview() {
        let mut draft = pull("o/backend", 1, "wip", "w");
        draft.draft = true;
        let mut fork = pull("o/backend", 2, "forked", "f");
        fork.head_repo = Some("mallory/backend".into());
        let other = pull("x/elsewhere", 3, "other", "o");
        let open = lists(vec![draft.clone(), fork, other]);
        let plan_skip = plan(&scope(true), &open, &[]);
        assert!(plan_skip.up.is_empty(), "{plan_skip:?}");
        let plan_keep = plan(&scope(false), &open, &[]);
        assert_eq!(plan_keep.up.len(), 1);
        assert_eq!(plan_keep.up[0].branch, "wip");
        // A draft's serve-made preview goes when drafts are skipped, with no confirmation.
        let sandboxes = [sandbox("wip", &[("o/backend", 1)], "w")];
        let plan = plan(&scope(true), &open, &sandboxes);
        assert_eq!(plan.down.len(), 1);
        assert!(plan.down[0].confirm.is_empty());
    }

    #[tokio::test]
    async fn older_deployments_go_inactive_once_and_closed_pull_requests_are_confirmed() {
        use sandbox_test_support::fake_github::{Canned, FakeGitHub};
        let fake = FakeGitHub::start().await;
        let gh = GitHub::new(&fake.url, Some("t".into())).unwrap();
        let old = fake.add_deployment("o/backend", "s1", "sandbox/feat");
        let done = fake.add_deployment("o/backend", "s0", "sandbox/feat");
        gh.set_status("o/backend", done, State::Inactive, "gone", None)
            .await
            .unwrap();
        let current = fake.add_deployment("o/backend", "s2", "sandbox/feat");
        let elsewhere = fake.add_deployment("o/backend", "s1", "sandbox/other");
        let open = pull("o/backend", 1, "feat", "s2");
        let mut marked = Marked::default();
        let n = deactivate_superseded(&gh, &scope(false), &open, &mut marked).await;
        assert_eq!(n, 1);
        assert_eq!(fake.states_of(old), ["inactive"]);
        assert_eq!(fake.states_of(done), ["inactive"], "not posted twice");
        assert!(fake.states_of(current).is_empty());
        assert!(fake.states_of(elsewhere).is_empty());
        // Known now: the next pass asks nothing about them.
        let asked = fake.calls().len();
        assert_eq!(
            deactivate_superseded(&gh, &scope(false), &open, &mut marked).await,
            0
        );
        let again: Vec<_> = fake.calls()[asked..]
            .iter()
            .map(|c| c.path.clone())
            .collect();
        assert_eq!(
            again,
            ["/repos/o/backend/deployments"],
            "one conditional list"
        );

        fake.open_pull("o/backend", 7, "x", "a");
        fake.close("o/backend", 8);
        let candidate = |numbers: &[u64]| DownCandidate {
            namespace: "shop-x".into(),
            work: Work {
                branch: "x".into(),
                action: Action::Destroy,
                prs: Vec::new(),
            },
            confirm: numbers
                .iter()
                .map(|n| PrNumber {
                    repo: "o/backend".into(),
                    number: *n,
                })
                .collect(),
        };
        assert!(all_closed(&gh, &candidate(&[8])).await);
        assert!(!all_closed(&gh, &candidate(&[8, 7])).await, "7 is open");
        fake.fail_next("GET", "/repos/o/backend/pulls/8", vec![Canned::status(404)]);
        assert!(!all_closed(&gh, &candidate(&[8])).await, "unclear: kept");
    }
}

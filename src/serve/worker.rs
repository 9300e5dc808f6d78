//! One piece of work, done and reported: the GitHub deployment and its statuses, the pull
//! request comment, the Slack message, around a [`Deployer`] that does the cluster's part.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::json;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::github::{self, GitHub, State, COMMENT_MARKER};
use super::log::{log, scrub};
use super::metrics;
use super::queue::{Job, PrRef, Work};
use super::slack::Slack;
use super::text::{self, markdown_cell_code, markdown_code, markdown_url, slack_code, slack_text};
use crate::pipeline::handover::RepoReport;

/// A sandbox that came up.
#[derive(Debug, Clone)]
pub(crate) struct Deployed {
    pub(crate) url: String,
    /// What each repository was deployed from.
    pub(crate) repos: Vec<RepoReport>,
}

/// Why a deploy or a deletion failed, safe to show: no decrypted value, no token.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The error and its causes on one line.
    pub(crate) summary: String,
    /// The error as the CLI would print it (causes and hints on lines of their own).
    pub(crate) details: String,
}

impl Failure {
    /// From an error, with `scrub_secrets` (the secrets this work came across) and the
    /// process's own applied, and terminal control sequences (a chart's `fail` may print them)
    /// stripped.
    pub(crate) fn new(error: &anyhow::Error, scrub_secrets: impl Fn(&str) -> String) -> Failure {
        let shown = |text: &str| crate::redact::printable(&scrub(&scrub_secrets(text)));
        Failure {
            summary: shown(&format!("{error:#}")),
            details: shown(&crate::error::render(error, super::hints_of)),
        }
    }
}

/// The cluster's part of the work. The real one runs `up` and `down`; tests use fakes.
pub(crate) trait Deployer: Send + Sync + 'static {
    /// The namespace of a branch's sandbox.
    fn namespace(&self, branch: &str) -> String;
    /// Bring the branch's sandbox up (or update it); `prs` asked for it (the last most recently).
    fn deploy(
        &self,
        branch: &str,
        prs: &[PrRef],
    ) -> impl Future<Output = Result<Deployed, Failure>> + Send;
    /// Delete the branch's sandbox and wait until it is gone, if the previews made it.
    fn destroy(&self, branch: &str) -> impl Future<Output = Result<Destroyed, Failure>> + Send;
}

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destroyed {
    /// Gone (or was not there).
    Deleted,
    /// Left alone: not the previews' to delete (e.g. made by `sandbox up` by hand).
    Kept { reason: String },
}

/// Records a deploy's GitHub deployments in the state (see [`Journal::record`]).
pub(crate) type RecordDeployments =
    Box<dyn Fn(Vec<(PrRef, u64)>) -> BoxFuture<'static, ()> + Send + Sync>;

/// What the recorded state knows of a deploy's GitHub deployments.
#[derive(Default)]
pub(crate) struct Journal {
    /// Made by an interrupted attempt at the same work: reported on again, not made anew.
    pub(crate) reuse: Vec<(PrRef, u64)>,
    /// Made for work that was superseded when no one was left to say so: marked inactive.
    pub(crate) stale: Vec<(PrRef, u64)>,
    /// Told of this attempt's deployments as soon as they exist, before any status.
    pub(crate) record: Option<RecordDeployments>,
}

/// How a piece of work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    /// With the failure's summary (scrubbed).
    Failed(String),
    /// Not done: the service stops; whoever carries on does it.
    HandedBack,
}

/// How the service reports: where, and whether to comment.
#[derive(Clone)]
pub(crate) struct Reporting {
    /// `None` without a token: nothing is reported to GitHub.
    pub(crate) github: Option<GitHub>,
    pub(crate) comment: bool,
    pub(crate) slack: Option<Slack>,
    /// The GitHub environment of a branch's sandbox is this prefix and the branch.
    pub(crate) environment_prefix: String,
}

/// Tasks that outlive the work that started them (reports about cancelled work), so that
/// shutdown can wait for them.
#[derive(Default)]
pub(crate) struct Background {
    tasks: Mutex<JoinSet<()>>,
}

impl Background {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // A cancelled task's clean-up may run while the runtime itself stops; then it is skipped.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut tasks = self.tasks.lock().expect("not poisoned");
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(task, &handle);
    }

    /// Wait up to `limit` for every background task.
    pub(crate) async fn drain(&self, limit: Duration) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("not poisoned"));
        let _ =
            tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await;
    }
}

/// One deploy's facts, for its reports.
struct Run<'a> {
    work: &'a Work,
    namespace: &'a str,
    deployments: &'a [(PrRef, u64)],
    took: &'a str,
}

pub(crate) struct Worker<D> {
    deployer: D,
    reporting: Reporting,
    pub(crate) background: Arc<Background>,
}

impl<D: Deployer> Worker<D> {
    pub(crate) fn new(deployer: D, reporting: Reporting) -> Worker<D> {
        Worker {
            deployer,
            reporting,
            background: Arc::default(),
        }
    }

    pub(crate) async fn deploy(self: Arc<Self>, work: Work, job: Job, journal: Journal) -> Outcome {
        let branch = work.branch.as_str();
        let namespace = self.deployer.namespace(branch);
        // Each deployment is in `unfinished` as soon as it exists, so a cancellation from here
        // on reports it.
        let mut unfinished = Unfinished {
            github: self.reporting.github.clone(),
            deployments: Vec::new(),
            job: job.clone(),
            background: self.background.clone(),
            armed: true,
            span: tracing::Span::current(),
        };
        self.end_stale(journal.stale);
        self.create_deployments(&work, &namespace, &journal.reuse, &mut unfinished)
            .await;
        let deployments = unfinished.deployments.clone();
        if let Some(record) = &journal.record {
            record(deployments.clone()).await;
        }
        let Some(_slot) = job.slot().await else {
            // Shutting down; `unfinished` reports it.
            return Outcome::HandedBack;
        };
        let started = Instant::now();
        log!(
            Info,
            "job.started",
            action = "deploy",
            branch = branch,
            namespace = namespace,
            prs = work.prs_text()
        );
        let deploying = format!("deploying {branch}");
        for (pr, id) in &deployments {
            self.status(&pr.repo, *id, State::InProgress, &deploying, None)
                .await;
        }
        let result = self.deployer.deploy(branch, &work.prs).await;
        let took = format!("{:.1}s", started.elapsed().as_secs_f64());
        let run = Run {
            work: &work,
            namespace: &namespace,
            deployments: &deployments,
            took: &took,
        };
        metrics::up_finished(
            if result.is_ok() { "success" } else { "failure" },
            started.elapsed(),
        );
        let outcome = match result {
            Ok(deployed) => {
                self.report_success(&run, &deployed).await;
                Outcome::Succeeded
            }
            Err(failure) => {
                self.report_failure(&run, &failure).await;
                Outcome::Failed(failure.summary)
            }
        };
        unfinished.armed = false;
        outcome
    }

    /// Mark inactive, in the background, deployments of superseded work that nobody closed.
    fn end_stale(&self, stale: Vec<(PrRef, u64)>) {
        let Some(gh) = self.reporting.github.clone().filter(|_| !stale.is_empty()) else {
            return;
        };
        self.background.spawn(async move {
            for (pr, id) in stale {
                let reason = "superseded: a newer push was deployed";
                if let Err(e) = gh
                    .set_status(&pr.repo, id, State::Inactive, reason, None)
                    .await
                {
                    log!(
                        Warn,
                        "github.failed",
                        pr = pr,
                        deployment = id,
                        call = "status inactive",
                        error = format!("{e:#}")
                    );
                }
            }
        });
    }

    /// The GitHub environment of a branch's sandbox: the same in every repository, as the
    /// sandbox is the same.
    fn environment(&self, branch: &str) -> String {
        format!("{}{branch}", self.reporting.environment_prefix)
    }

    /// A deployment per pull request, for the commit it asked for: that is what GitHub shows on
    /// the pull request. Made before waiting for a slot, so a queued one shows as queued. One an
    /// interrupted attempt made for the same commit (`reuse`) is taken over instead.
    async fn create_deployments(
        &self,
        work: &Work,
        namespace: &str,
        reuse: &[(PrRef, u64)],
        unfinished: &mut Unfinished,
    ) {
        let Some(gh) = &self.reporting.github else {
            return;
        };
        let branch = work.branch.as_str();
        let environment = self.environment(branch);
        for pr in &work.prs {
            if let Some(id) = pr.deployment {
                unfinished.deployments.push((pr.clone(), id));
                self.status(&pr.repo, id, State::Queued, "waiting for its turn", None)
                    .await;
                continue;
            }
            if let Some((_, id)) = reuse.iter().find(|(p, _)| p == pr) {
                log!(
                    Info,
                    "github.deployment.resumed",
                    pr = pr,
                    id = id,
                    environment = environment
                );
                unfinished.deployments.push((pr.clone(), *id));
                self.status(
                    &pr.repo,
                    *id,
                    State::Queued,
                    "resumed after an interruption",
                    None,
                )
                .await;
                continue;
            }
            let made = gh
                .create_deployment(
                    &pr.repo,
                    &pr.sha,
                    &environment,
                    &format!("sandbox of branch {branch}"),
                    json!({ "pull_request": pr.number, "namespace": namespace }),
                )
                .await;
            match made {
                Ok(id) => {
                    log!(
                        Info,
                        "github.deployment",
                        pr = pr,
                        id = id,
                        environment = environment
                    );
                    unfinished.deployments.push((pr.clone(), id));
                    self.status(&pr.repo, id, State::Queued, "waiting for its turn", None)
                        .await;
                }
                Err(e) => log!(
                    Warn,
                    "github.failed",
                    pr = pr,
                    call = "create deployment",
                    error = format!("{e:#}")
                ),
            }
        }
    }

    async fn report_success(&self, run: &Run<'_>, deployed: &Deployed) {
        let (branch, namespace, prs) = (run.work.branch.as_str(), run.namespace, &run.work.prs);
        let shas = repos_text(&deployed.repos);
        log!(
            Info,
            "job.succeeded",
            action = "deploy",
            branch = branch,
            namespace = namespace,
            url = deployed.url,
            repos = shas,
            took = run.took
        );
        let description = format!("{branch} is up: {shas}");
        for (pr, id) in run.deployments {
            self.status(
                &pr.repo,
                *id,
                State::Success,
                &description,
                Some(&deployed.url),
            )
            .await;
        }
        // The branch, and what is derived from it, is the pusher's text: escaped for each target.
        let body = format!(
            "{COMMENT_MARKER}\n### Sandbox preview\n\n\
             ✅ The sandbox of {branch} is up: **{url}**\n\n\
             {table}\n<sub>namespace `{namespace}` · updated for {prs} · `sandbox serve`</sub>\n",
            branch = markdown_code(branch),
            url = markdown_url(&deployed.url),
            table = repos_table(&deployed.repos),
            prs = prs_markdown(prs),
        );
        self.comment(prs, &body).await;
        self.slack(&format!(
            ":white_check_mark: Sandbox {} is up at {} ({})",
            slack_code(branch),
            slack_text(&deployed.url),
            prs_plain(prs)
        ))
        .await;
    }

    async fn report_failure(&self, run: &Run<'_>, failure: &Failure) {
        let (branch, namespace, prs) = (run.work.branch.as_str(), run.namespace, &run.work.prs);
        log!(
            Error,
            "job.failed",
            action = "deploy",
            branch = branch,
            namespace = namespace,
            error = failure.summary,
            took = run.took
        );
        for (pr, id) in run.deployments {
            self.status(&pr.repo, *id, State::Failure, &failure.summary, None)
                .await;
        }
        let body = format!(
            "{COMMENT_MARKER}\n### Sandbox preview\n\n\
             ❌ The sandbox of {branch} failed to deploy.\n\n```\n{details}\n```\n\
             <sub>namespace `{namespace}` · for {prs} · `sandbox serve`</sub>\n",
            branch = markdown_code(branch),
            details = text::truncate(failure.details.trim_end(), 3000).replace("```", "'''"),
            prs = prs_markdown(prs),
        );
        self.comment(prs, &body).await;
        self.slack(&format!(
            ":x: Sandbox {} failed to deploy ({}): {}",
            slack_code(branch),
            prs_plain(prs),
            slack_text(&text::truncate(&failure.summary, 300))
        ))
        .await;
    }

    pub(crate) async fn destroy(self: Arc<Self>, work: Work, job: Job) -> Outcome {
        let branch = work.branch.as_str();
        let namespace = self.deployer.namespace(branch);
        let Some(_slot) = job.slot().await else {
            return Outcome::HandedBack;
        };
        let started = Instant::now();
        log!(
            Info,
            "job.started",
            action = "destroy",
            branch = branch,
            namespace = namespace,
            prs = work.prs_text()
        );
        let result = self.deployer.destroy(branch).await;
        let took = format!("{:.1}s", started.elapsed().as_secs_f64());
        metrics::deletion(match &result {
            Ok(Destroyed::Kept { .. }) => "kept",
            Ok(Destroyed::Deleted) => "deleted",
            Err(_) => "failed",
        });
        match result {
            Ok(Destroyed::Kept { reason }) => {
                log!(
                    Info,
                    "job.kept",
                    action = "destroy",
                    branch = branch,
                    namespace = namespace,
                    reason = reason
                );
                self.deactivate(
                    &work.prs,
                    branch,
                    &format!("the sandbox was kept: {reason}"),
                )
                .await;
                Outcome::Succeeded
            }
            Ok(Destroyed::Deleted) => {
                self.report_deleted(&work, &namespace, &took).await;
                Outcome::Succeeded
            }
            Err(failure) => {
                log!(
                    Error,
                    "job.failed",
                    action = "destroy",
                    branch = branch,
                    namespace = namespace,
                    error = failure.summary,
                    took = took
                );
                self.slack(&format!(
                    ":x: Sandbox {} could not be deleted: {}",
                    slack_code(branch),
                    slack_text(&text::truncate(&failure.summary, 300))
                ))
                .await;
                Outcome::Failed(failure.summary)
            }
        }
    }

    /// A preview deleted: its deployments inactive, the comment and Slack told.
    async fn report_deleted(&self, work: &Work, namespace: &str, took: &str) {
        let branch = work.branch.as_str();
        log!(
            Info,
            "job.succeeded",
            action = "destroy",
            branch = branch,
            namespace = namespace,
            took = took
        );
        self.deactivate(&work.prs, branch, "the sandbox was deleted")
            .await;
        let body = format!(
            "{COMMENT_MARKER}\n### Sandbox preview\n\n\
             The sandbox of {} was deleted: the pull request was closed.\n",
            markdown_code(branch)
        );
        self.comment(&work.prs, &body).await;
        self.slack(&format!(
            ":wastebasket: Sandbox {} deleted ({} closed)",
            slack_code(branch),
            prs_plain(&work.prs)
        ))
        .await;
    }

    /// Mark the environment's latest deployments inactive in each pull request's repository.
    async fn deactivate(&self, prs: &[PrRef], branch: &str, why: &str) {
        let Some(gh) = &self.reporting.github else {
            return;
        };
        let environment = self.environment(branch);
        let mut repos: Vec<&str> = prs.iter().map(|p| p.repo.as_str()).collect();
        repos.dedup();
        for repo in repos {
            match gh.deployments(repo, &environment).await {
                Ok(ids) => {
                    for id in ids {
                        let why = text::truncate(why, github::DESCRIPTION_LIMIT);
                        self.status(repo, id, State::Inactive, &why, None).await;
                    }
                }
                Err(e) => log!(
                    Warn,
                    "github.failed",
                    repo = repo,
                    call = "list deployments",
                    error = format!("{e:#}")
                ),
            }
        }
    }

    async fn status(
        &self,
        repo: &str,
        id: u64,
        state: State,
        description: &str,
        url: Option<&str>,
    ) {
        let Some(gh) = &self.reporting.github else {
            return;
        };
        if let Err(e) = gh.set_status(repo, id, state, description, url).await {
            log!(
                Warn,
                "github.failed",
                repo = repo,
                deployment = id,
                call = format!("status {}", state.as_str()),
                error = format!("{e:#}")
            );
        }
    }

    async fn comment(&self, prs: &[PrRef], body: &str) {
        let Some(gh) = self
            .reporting
            .github
            .as_ref()
            .filter(|_| self.reporting.comment)
        else {
            return;
        };
        // A deployment event's work has no pull request to comment on.
        for pr in prs.iter().filter(|p| p.number != 0) {
            if let Err(e) = gh.upsert_comment(&pr.repo, pr.number, body).await {
                log!(
                    Warn,
                    "github.failed",
                    pr = pr,
                    call = "comment",
                    error = format!("{e:#}")
                );
            }
        }
    }

    async fn slack(&self, text: &str) {
        let Some(slack) = &self.reporting.slack else {
            return;
        };
        if let Err(e) = slack.post(text).await {
            log!(Warn, "slack.failed", error = format!("{e:#}"));
        }
    }
}

/// Every line of a piece of work carries the delivery that asked for it (none: the service's
/// own reconcile), the newest pull request's repository and number, and the branch. At the
/// error level so that no filter drops these fields from the lines it lets through.
pub(crate) fn work_span(work: &Work) -> tracing::Span {
    let newest = work.prs.last();
    tracing::error_span!(
        "work",
        delivery = newest
            .map(|p| p.delivery.as_str())
            .filter(|d| !d.is_empty()),
        repo = newest.map(|p| p.repo.as_str()),
        pr = newest.map(|p| p.number),
        branch = work.branch.as_str(),
        action = %work.action,
    )
}

/// Reports the deployments of work that ends before it reported an outcome: superseded by a
/// newer push (`inactive`: the newer deployment takes over) or cancelled (`error`).
struct Unfinished {
    github: Option<GitHub>,
    deployments: Vec<(PrRef, u64)>,
    job: Job,
    background: Arc<Background>,
    armed: bool,
    /// The work's span: its reports run after it, and their lines still say whose they are.
    span: tracing::Span,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(gh) = self.github.clone().filter(|_| self.armed) else {
            return;
        };
        if self.deployments.is_empty() {
            return;
        }
        let reason = self
            .job
            .cancel_reason()
            .unwrap_or_else(|| "cancelled: the preview service stopped".into());
        // Handed back at shutdown: queued again, for whoever carries on (another replica, or
        // this service after its restart), which takes the deployment over.
        let state = if reason.starts_with("superseded") {
            State::Inactive
        } else if reason.starts_with("handed back") {
            State::Queued
        } else {
            State::Error
        };
        let deployments = std::mem::take(&mut self.deployments);
        let span = self.span.clone();
        self.background.spawn(
            async move {
                for (pr, id) in deployments {
                    log!(
                        Info,
                        "github.deployment.ended",
                        pr = pr,
                        id = id,
                        state = state.as_str(),
                        reason = reason
                    );
                    if let Err(e) = gh.set_status(&pr.repo, id, state, &reason, None).await {
                        log!(
                            Warn,
                            "github.failed",
                            pr = pr,
                            deployment = id,
                            call = "status",
                            error = format!("{e:#}")
                        );
                    }
                }
            }
            .instrument(span),
        );
    }
}

/// The first 7 characters (a webhook's SHA is its sender's text: cut on a character boundary).
fn short(sha: &str) -> &str {
    sha.char_indices()
        .nth(7)
        .map_or(sha, |(end, _)| &sha[..end])
}

/// `backend@abc1234 data@0123456(main)`: where each repository came from.
fn repos_text(repos: &[RepoReport]) -> String {
    let list: Vec<String> = repos
        .iter()
        .map(|r| {
            let fallback = if r.fell_back {
                format!("({})", r.branch)
            } else {
                String::new()
            };
            format!("{}@{}{fallback}", r.repo, short(&r.sha))
        })
        .collect();
    list.join(" ")
}

fn repos_table(repos: &[RepoReport]) -> String {
    let mut out = String::from("| repository | branch | commit |\n|---|---|---|\n");
    for r in repos {
        let note = if r.fell_back { " (fallback)" } else { "" };
        out.push_str(&format!(
            "| {} | {}{note} | {} |\n",
            markdown_cell_code(&r.repo),
            markdown_cell_code(&r.branch),
            markdown_cell_code(short(&r.sha))
        ));
    }
    out
}

fn prs_markdown(prs: &[PrRef]) -> String {
    let list: Vec<String> = prs
        .iter()
        .map(|p| format!("{}#{} @ {}", p.repo, p.number, markdown_code(short(&p.sha))))
        .collect();
    list.join(", ")
}

fn prs_plain(prs: &[PrRef]) -> String {
    let list: Vec<String> = prs
        .iter()
        .map(|p| format!("{}#{}", p.repo, p.number))
        .collect();
    list.join(", ")
}

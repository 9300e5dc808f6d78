//! `sandbox serve`: pull-request preview environments.
//!
//! GitHub sends `pull_request` webhooks; opening, reopening or pushing to a pull request brings
//! the sandbox of its head branch up (or updates it), closing it deletes the sandbox, and the
//! outcome goes back to the pull request as a GitHub deployment (with the URL), optionally a
//! comment, and optionally a Slack message.
//!
//! - [`http`]: the webhook endpoint: size limit, signature ([`signature`]), duplicates, parsing
//!   ([`event`]); it only records work.
//! - [`desired`]: each preview's desired state, and what a piece of work changes of it
//!   ([`desired::accept`], pure); deliveries are deduplicated there.
//! - [`store`]: where the states are kept, in the cluster (a ConfigMap per branch in serve's
//!   namespace), written by compare-and-swap.
//! - [`previews`]: the one entry point for work ([`previews::Previews::submit`]), and the driver
//!   that hands pending states to the queue.
//! - [`queue`]: concurrency limit, one piece of work at a time per sandbox, newest wins.
//! - [`runner`]: the queue's executor: one worker per preview across replicas (a [`claim`], a
//!   Lease per preview), so several replicas can run and a crashed one's work is finished by
//!   the next.
//! - [`worker`]: one piece of work, reported to GitHub ([`github`]) and Slack ([`slack`])
//!   around a [`Deployer`]; the real one ([`deployer`]) calls the `up` pipeline and `down`.
//! - [`scope`]: only pull requests and deployments of `sandbox.yaml`'s repositories; drafts.
//! - [`resync`]: at start and periodically, previews converged to GitHub's open pull
//!   requests, through the state like a webhook's work (closes by the same rule: never a
//!   sandbox made by hand, never one another open pull request still uses).
//! - [`github`]: the GitHub REST client; [`slack`]: Slack's incoming webhook; both over
//!   [`caller`], the general retrying HTTP caller, which asks [`retry`] when a call is tried
//!   again (5xx, rate limits).
//! - [`text`]: branch names and errors made safe for Markdown and Slack, and cut to a length.
//! - [`prune`]: the checkout cache pruned periodically, as `sandbox cache prune` does.
//! - [`status`]: the status page `/` and `/api/sandboxes` (from the sandboxes' records in the
//!   cluster) and `/metrics` ([`metrics`]).
//! - [`log`]: one structured event per thing that happens, through `tracing`
//!   ([`crate::logging`] writes it as `key=value` text or JSON, secrets scrubbed).

pub(crate) mod app_auth;
pub(crate) mod caller;
pub(crate) mod claim;
pub(crate) mod deployer;
pub(crate) mod desired;
pub(crate) mod event;
pub(crate) mod github;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod previews;
pub(crate) mod prune;
pub(crate) mod queue;
pub(crate) mod resync;
pub(crate) mod retry;
pub(crate) mod runner;
pub(crate) mod scope;
pub mod signature;
pub(crate) mod slack;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod text;
pub(crate) mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use self::deployer::ClusterDeployer;
use self::github::GitHub;
use self::log::log;
use self::previews::{Intake, Previews};
use self::slack::Slack;
use self::store::{ConfigMapStore, Store};
pub(crate) use self::worker::{Deployer, Reporting, Worker};
use crate::kube::ClusterOptions;
use crate::ops::OnFailure;
use crate::pipeline::config::Config;
use crate::pipeline::values::SetValue;
use crate::pipeline::{Environment, Settings};

/// `sandbox serve` as the command line and the environment configured it.
pub(crate) struct ServeSettings {
    pub(crate) listen: SocketAddr,
    /// Where the status page, `/api/sandboxes` and `/metrics` are served.
    pub(crate) status_listen: SocketAddr,
    pub(crate) webhook_secret_file: Option<std::path::PathBuf>,
    pub(crate) concurrency: std::num::NonZeroUsize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_connections: std::num::NonZeroUsize,
    pub(crate) github_api_url: String,
    /// A GitHub App's id and private key file, instead of a personal token.
    pub(crate) github_app: Option<(String, std::path::PathBuf)>,
    pub(crate) comment: bool,
    pub(crate) slack_webhook_url: Option<String>,
    /// Overrides for every preview.
    pub(crate) sets: Vec<SetValue>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) on_failure: OnFailure,
    pub(crate) shutdown_grace: Duration,
    /// How long a deploy or teardown waits for another holder of a sandbox's lock.
    pub(crate) lock_timeout: Duration,
    /// Converge the previews at start (`--no-reconcile`: not).
    pub(crate) reconcile: bool,
    /// How often to converge the previews to GitHub's open pull requests (zero: only at start).
    pub(crate) resync: Duration,
    pub(crate) skip_drafts: bool,
    pub(crate) environment_prefix: String,
    /// Where the previews' desired state is kept (and their claims).
    pub(crate) state_namespace: String,
    /// How often to prune the checkout cache (zero: never), and the age of what goes.
    pub(crate) prune_cache_every: Duration,
    pub(crate) prune_cache_older_than: Duration,
    /// Cache directory and owner of the machine it runs on.
    pub(crate) env: Environment,
}

/// What the service needs besides a listener and a deployer.
pub(crate) struct Options {
    pub(crate) secret: Vec<u8>,
    pub(crate) concurrency: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) limits: http::Limits,
    pub(crate) reporting: Reporting,
    pub(crate) shutdown_grace: Duration,
    pub(crate) scope: scope::Scope,
    /// What `/`, `/api/sandboxes` and `/metrics` show, and where (`None`: nowhere).
    pub(crate) status: status::StatusPage,
    pub(crate) status_listener: Option<tokio::net::TcpListener>,
}

/// The webhook secret: from `--webhook-secret-file`, else `$SANDBOX_WEBHOOK_SECRET`.
fn webhook_secret(file: Option<&Path>) -> Result<String> {
    let secret = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("could not read the webhook secret from {}", path.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        None => std::env::var("SANDBOX_WEBHOOK_SECRET").unwrap_or_default(),
    };
    if secret.is_empty() {
        anyhow::bail!(
            "no webhook secret: set SANDBOX_WEBHOOK_SECRET or pass --webhook-secret-file \
             (the same secret as in the GitHub webhook's settings)"
        );
    }
    Ok(secret)
}

/// Where the GitHub token is read from, first set wins (`GH_TOKEN`: the GitHub CLI's spelling).
const GITHUB_TOKEN_VARS: [&str; 3] = ["SANDBOX_GITHUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN"];

/// The GitHub token: `$SANDBOX_GITHUB_TOKEN`, else `$GITHUB_TOKEN`, else `$GH_TOKEN`.
fn github_token() -> Option<String> {
    token_of(|v| std::env::var(v).ok())
}

/// The first non-blank token of [`GITHUB_TOKEN_VARS`], as `var` reads them.
fn token_of(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    GITHUB_TOKEN_VARS
        .iter()
        .filter_map(|v| var(v))
        .find(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_owned())
}

/// Resolves on SIGTERM or SIGINT, with the signal's name.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Say which repositories' pull requests the service acts on.
fn log_scope(scope: &scope::Scope) {
    let repos: Vec<String> = scope
        .repos
        .iter()
        .map(|r| format!("{}={}", r.name, r.full_name))
        .collect();
    log!(
        Info,
        "scope",
        repos = repos.join(","),
        skip_drafts = scope.skip_drafts,
        environments = format!("{}BRANCH", scope.environment_prefix)
    );
    if !scope.elsewhere.is_empty() {
        log!(
            Warn,
            "scope.not_on_github",
            repos = scope.elsewhere.join(","),
            reason = "their URLs are not GitHub's: pull requests of them are ignored; set `github: owner/name` on them in sandbox.yaml"
        );
    }
}

/// `sandbox serve`.
pub(crate) async fn run(
    args: ServeSettings,
    config: Config,
    cluster: ClusterOptions,
) -> Result<()> {
    let (secret, token) = read_secrets(&args)?;
    // Check --set and --ttl once, now, rather than on every pull request.
    Settings::new(
        config.clone(),
        "serve",
        args.sets.clone(),
        args.ttl,
        &args.env,
    )?;
    let (github, app) = github_client(&args, token.clone())?;
    let reports = token.is_some() || app;
    let reporting = reporting(&args, reports, &github)?;
    let scope = scope::Scope::new(
        &config,
        &args.github_api_url,
        args.skip_drafts,
        &args.environment_prefix,
    );
    log_scope(&scope);
    let deployer = deployer(&config, &cluster, &args, &scope);
    let connected = crate::kube::connect(&cluster)
        .await
        .context("serve keeps its previews' state in the cluster")?;
    let store = ConfigMapStore::open(connected, &args.state_namespace, &config.name).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    log_listening(&listener, &config, &args, &reporting)?;
    let (status_listener, status_token) = status_listener(args.status_listen).await?;
    let status_page = status_page(&config, &cluster, &args.github_api_url, status_token);
    let mut options = options(&args, secret, reporting, scope.clone(), status_page);
    options.status_listener = Some(status_listener);
    prune::spawn(prune::PruneSchedule {
        cache_dir: args.env.cache_dir.clone(),
        cluster: cluster.clone(),
        every: args.prune_cache_every,
        older_than: args.prune_cache_older_than,
    });
    let resync = resync::Resync {
        cluster,
        config,
        github,
        scope,
        report: reports,
        every: args.resync,
        at_start: args.reconcile,
    };
    let on_start = move |previews: Arc<dyn Intake>| resync::spawn(resync, previews);
    serve(
        listener,
        options,
        deployer,
        Arc::new(store),
        on_start,
        async {
            let signal = stop_signal().await;
            log!(Info, "shutdown.started", signal = signal);
        },
    )
    .await
}

/// The GitHub client: with a personal token, or as the GitHub App of `--github-app-id`, whose
/// installation tokens also clone over HTTPS (true: an app).
fn github_client(args: &ServeSettings, token: Option<String>) -> Result<(GitHub, bool)> {
    // Only comments by the token's login are serve's to update (a GitHub App's token cannot
    // ask GitHub who it is: its bot's login is given).
    let login = std::env::var("SANDBOX_GITHUB_LOGIN").ok();
    let github = GitHub::new(&args.github_api_url, token)?.with_login(login);
    let Some((app_id, key_file)) = &args.github_app else {
        return Ok((github, false));
    };
    let app = Arc::new(app_auth::GitHubApp::new(
        app_id,
        key_file,
        &args.github_api_url,
    )?);
    crate::pipeline::checkout::use_https_token_from(app.latest_tokens());
    log!(Info, "github.app", app_id = app_id);
    Ok((github.with_app(app), true))
}

/// Say where the webhook is served, for which product, and where serve reports.
fn log_listening(
    listener: &tokio::net::TcpListener,
    config: &Config,
    args: &ServeSettings,
    reporting: &Reporting,
) -> Result<()> {
    log!(
        Info,
        "listening",
        addr = listener.local_addr()?,
        sandbox = config.name,
        config = config.path.display(),
        concurrency = args.concurrency,
        github = args.github_api_url,
        reporting = reporting.github.is_some(),
        comment = args.comment,
        slack = reporting.slack.is_some(),
        state_namespace = args.state_namespace,
    );
    Ok(())
}

/// The webhook secret and the GitHub token, each registered to be scrubbed from every log line
/// (the Slack webhook URL too: it is a credential).
fn read_secrets(args: &ServeSettings) -> Result<(String, Option<String>)> {
    let secret = webhook_secret(args.webhook_secret_file.as_deref())?;
    log::add_secret(&secret);
    if secret.chars().count() < 16 {
        log!(
            Warn,
            "webhook.weak_secret",
            reason = "the webhook secret is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)"
        );
    }
    let token = github_token();
    if let Some(token) = &token {
        log::add_secret(token);
    }
    if let Some(url) = &args.slack_webhook_url {
        log::add_secret(url);
    }
    Ok((secret, token))
}

/// Where serve reports: GitHub when there is a token, a comment, Slack.
fn reporting(args: &ServeSettings, has_token: bool, github: &GitHub) -> Result<Reporting> {
    if !has_token {
        log!(
            Warn,
            "github.disabled",
            reason =
                "no SANDBOX_GITHUB_TOKEN, GITHUB_TOKEN, GH_TOKEN or --github-app-id: nothing is reported to pull requests"
        );
    }
    Ok(Reporting {
        github: has_token.then(|| github.clone()),
        comment: args.comment,
        slack: args
            .slack_webhook_url
            .as_deref()
            .map(Slack::new)
            .transpose()?,
        environment_prefix: args.environment_prefix.clone(),
    })
}

/// The status pages' listener (never the webhook's) and the token they require, if any.
async fn status_listener(addr: SocketAddr) -> Result<(tokio::net::TcpListener, Option<String>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr} (--status-listen)"))?;
    let token = status_token();
    log!(
        Info,
        "status.listening",
        addr = listener.local_addr()?,
        token = token.is_some(),
        paths = "/ /api/sandboxes /metrics",
    );
    Ok((listener, token))
}

/// `$SANDBOX_STATUS_TOKEN`, registered to be scrubbed: the bearer token the status pages
/// require, when set.
fn status_token() -> Option<String> {
    let token = std::env::var("SANDBOX_STATUS_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())?;
    log::add_secret(&token);
    Some(token)
}

/// The status page, read from the sandboxes' records in the cluster (one listing every few
/// seconds at most, whatever the number of requests).
fn status_page(
    config: &Config,
    cluster: &ClusterOptions,
    github_api_url: &str,
    token: Option<String>,
) -> status::StatusPage {
    let listing = Arc::new(status::ClusterSandboxes {
        cluster: cluster.clone(),
        product: config.name.clone(),
        connected: tokio::sync::OnceCell::new(),
    });
    status::StatusPage {
        product: config.name.clone(),
        github_web: status::github_web_url(github_api_url),
        sandboxes: Arc::new(status::CachedSandboxes::new(listing, status::LISTING_TTL)),
        token,
    }
}

/// What runs `up` and `down` for the previews: the same pipeline as the CLI's.
fn deployer(
    config: &Config,
    cluster: &ClusterOptions,
    args: &ServeSettings,
    scope: &scope::Scope,
) -> ClusterDeployer {
    ClusterDeployer {
        scope: scope.clone(),
        config: config.clone(),
        cluster: cluster.clone(),
        sets: args.sets.clone(),
        ttl: args.ttl,
        on_failure: args.on_failure,
        lock_timeout: args.lock_timeout,
        env: args.env.clone(),
    }
}

/// How the webhook server, its queue and its reporting behave.
fn options(
    args: &ServeSettings,
    secret: String,
    reporting: Reporting,
    scope: scope::Scope,
    status: status::StatusPage,
) -> Options {
    Options {
        secret: secret.into_bytes(),
        concurrency: args.concurrency.get(),
        max_body_bytes: args.max_body_bytes,
        limits: http::Limits {
            max_connections: args.max_connections.get(),
            header_read_timeout: http::Limits::DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: http::Limits::DEFAULT_REQUEST_TIMEOUT,
        },
        reporting,
        shutdown_grace: args.shutdown_grace,
        scope,
        status,
        status_listener: None,
    }
}

/// Serve webhooks on `listener` until `shutdown` resolves, then stop gracefully: no new
/// connections or work, running work gets the grace period (a second signal cuts it short),
/// then whatever still runs is handed back: left pending in `store` for whoever carries on.
pub(crate) async fn serve<D: Deployer, S: Store>(
    listener: tokio::net::TcpListener,
    options: Options,
    deployer: D,
    store: Arc<S>,
    on_start: impl FnOnce(Arc<dyn Intake>),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let worker = Arc::new(Worker::new(deployer, options.reporting));
    let previews = Previews::new(store, worker.clone(), options.concurrency);
    let intake: Arc<dyn Intake> = Arc::new(previews.clone());
    let state = Arc::new(http::AppState::new(
        options.secret,
        intake.clone(),
        options.max_body_bytes,
        options.scope,
    ));
    let driver = previews.drive();
    on_start(intake);
    // The webhook's listener faces GitHub (the internet): it serves the webhook and /healthz
    // only. The status pages are on their own listener, stopped with it.
    let shutdown = futures::FutureExt::shared(shutdown);
    let status_server = options.status_listener.map(|listener| {
        let router = status::router(options.status);
        tokio::spawn(http::serve_http(
            listener,
            router,
            options.limits,
            shutdown.clone(),
        ))
    });
    http::serve_http(listener, http::router(state), options.limits, shutdown).await;
    if let Some(status_server) = status_server {
        let _ = status_server.await;
    }
    driver.abort();
    previews
        .queue()
        .shutdown(options.shutdown_grace, async {
            let signal = stop_signal().await;
            log!(Warn, "shutdown.hurried", signal = signal);
        })
        .await;
    previews.hand_back().await;
    worker.background.drain(Duration::from_secs(10)).await;
    log!(Info, "stopped");
    Ok(())
}

crate::error::hint_registry!(
    hints_of,
    REGISTERED,
    fallback = crate::ops::hints_of,
    [
        event::EventError,
        github::ApiError,
        signature::SignatureError
    ]
);

#[cfg(test)]
mod tests;

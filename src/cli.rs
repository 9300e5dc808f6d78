//! The command line, as typed: clap types and validation of the arguments alone. Nothing here
//! reads `sandbox.yaml` or talks to a cluster.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pipeline::values::SetValue;

#[derive(Debug, Parser)]
#[command(
    name = "sandbox",
    version,
    about = "Every branch its own complete, isolated copy of the product on Kubernetes"
)]
pub struct Cli {
    /// The product's sandbox.yaml.
    #[arg(long, global = true, default_value = crate::pipeline::config::FILE_NAME, env = "SANDBOX_CONFIG")]
    pub config: PathBuf,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Print only results and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy (or update) the sandbox of a branch and print its URL.
    Up(UpArgs),
    /// Delete the sandbox of a branch (or every expired one) and wait until it is gone.
    Down(DownArgs),
    /// Render every service's objects offline (secrets redacted).
    Render(RenderArgs),
    /// Show the merged values a service gets (secrets redacted unless --reveal).
    Values(ValuesArgs),
    /// List the sandboxes in the cluster.
    List(OutputArg),
    /// Per service: ready replicas, restarts and the last event.
    Status(StatusArgs),
    /// Logs of one service or all, prefixed by where they come from.
    Logs(LogsArgs),
    /// What `up` would change, from a server-side dry run (secrets redacted).
    Diff(DiffArgs),
    /// Check sandbox.yaml and the templates (and a server-side dry run when a cluster answers).
    Validate(DiffArgs),
    /// Move a sandbox's expiry: now + TTL.
    Extend(ExtendArgs),
    /// Delete every sandbox whose expiry has passed (never anything without the tool's label).
    Reap(ReapArgs),
    /// Print the manifests that run `sandbox reap` in the cluster on a schedule.
    ReaperManifests(ReaperArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Pull-request previews: a webhook service that brings PR branches' sandboxes up and down.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The branch whose sandbox to delete.
    #[arg(long, short, required_unless_present = "all_expired")]
    pub branch: Option<String>,
    /// Delete every sandbox whose expiry has passed.
    #[arg(long, conflicts_with = "branch")]
    pub all_expired: bool,
    /// Fail at once if an `up` holds the sandbox's lock (default: wait).
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub branch: BranchArg,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this service (default: all).
    pub service: Option<String>,
    #[command(flatten)]
    pub branch: BranchArg,
    /// Keep streaming new lines.
    #[arg(long, short)]
    pub follow: bool,
    /// Only lines newer than this, e.g. `10m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Lines per container to start from.
    #[arg(long)]
    pub tail: Option<i64>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub branch: BranchArg,
    #[arg(long = "set", value_name = "SERVICE.KEY=VALUE")]
    pub sets: Vec<SetValue>,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    #[command(flatten)]
    pub branch: BranchArg,
    /// The new time to live, from now.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Only say what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub struct ReaperArgs {
    /// The image holding the `sandbox` binary.
    #[arg(long, default_value = "docker.io/local/sandbox:dev")]
    pub image: String,
    /// Cron schedule.
    #[arg(long, default_value = "*/10 * * * *")]
    pub schedule: String,
    /// The namespace the reaper runs in.
    #[arg(long, default_value = "sandbox-system")]
    pub namespace: String,
    /// CronJob API version (default: what the cluster serves, else batch/v1).
    #[arg(long)]
    pub cronjob_api_version: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct BranchArg {
    /// The branch whose sandbox this is.
    #[arg(long, short)]
    pub branch: String,
}

#[derive(Debug, Args)]
pub struct OutputArg {
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub branch: BranchArg,
    /// Override a value: SERVICE.key.path=value (repeatable).
    #[arg(long = "set", value_name = "SERVICE.KEY=VALUE")]
    pub sets: Vec<SetValue>,
    /// How long the sandbox lives (default: `ttl` in sandbox.yaml).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    #[command(flatten)]
    pub output: OutputArg,
    /// Print how long each stage and each service took.
    #[arg(long)]
    pub timings: bool,
    /// Fail at once if another `up` or `down` holds the sandbox's lock (default: wait).
    #[arg(long)]
    pub no_wait: bool,
    /// What to do with the sandbox when the deploy or the smoke tests fail.
    #[arg(long, value_enum, default_value_t = OnFailure::Keep)]
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFailure {
    /// Leave everything as it is, to debug it.
    Keep,
    /// Put every object this `up` changed back to its last good revision.
    Rollback,
    /// Delete the sandbox if this `up` created it.
    Destroy,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub branch: BranchArg,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long = "set", value_name = "SERVICE.KEY=VALUE")]
    pub sets: Vec<SetValue>,
    /// Render with the decrypted secrets (for piping into another tool; never into a file).
    #[arg(long)]
    pub reveal: bool,
    /// `json`: the plan — steps in dependency order with their objects, then the smoke Jobs.
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub struct ValuesArgs {
    /// The service.
    pub service: String,
    #[command(flatten)]
    pub branch: BranchArg,
    #[arg(long = "set", value_name = "SERVICE.KEY=VALUE")]
    pub sets: Vec<SetValue>,
    /// Show decrypted secrets too.
    #[arg(long)]
    pub reveal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `sandbox serve`. Secrets come from the environment (or a file), never from flags:
/// `SANDBOX_WEBHOOK_SECRET`, `SANDBOX_GITHUB_TOKEN` or `GITHUB_TOKEN`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the bound address is logged).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// File holding the webhook secret (default: $SANDBOX_WEBHOOK_SECRET).
    #[arg(long, value_name = "PATH")]
    pub webhook_secret_file: Option<PathBuf>,
    /// How many sandboxes may be deployed or deleted at the same time.
    #[arg(long, default_value = "2")]
    pub concurrency: std::num::NonZeroUsize,
    /// Largest webhook body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// GitHub REST API base URL (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(
        long,
        env = "SANDBOX_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
    /// Also keep one comment with the sandbox's URL (or failure) up to date on the pull request.
    #[arg(long)]
    pub comment: bool,
    /// Slack incoming-webhook URL to notify (prefer the environment variable: it is a secret).
    #[arg(
        long,
        env = "SANDBOX_SLACK_WEBHOOK_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub slack_webhook_url: Option<String>,
    /// Override a value in every preview: SERVICE.key.path=value (repeatable).
    #[arg(long = "set", value_name = "SERVICE.KEY=VALUE")]
    pub sets: Vec<SetValue>,
    /// How long a preview lives without a push (default: `ttl` in sandbox.yaml).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// What to do with a preview whose deploy or smoke tests fail.
    #[arg(long, value_enum, default_value_t = OnFailure::Keep)]
    pub on_failure: OnFailure,
    /// On SIGTERM/SIGINT, how long running deploys may finish before they are cancelled.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub shutdown_grace: Duration,
    /// Do not delete, at start, the previews of pull requests closed while the service was down.
    #[arg(long)]
    pub no_reconcile: bool,
}

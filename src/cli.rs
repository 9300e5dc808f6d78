//! The command line, as typed: clap types and validation of the arguments alone. Nothing here
//! reads `sandbox.yaml` or talks to a cluster.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::values::SetValue;

#[derive(Debug, Parser)]
#[command(
    name = "sandbox",
    version,
    about = "Every branch its own complete, isolated copy of the product on Kubernetes"
)]
pub struct Cli {
    /// The product's sandbox.yaml.
    #[arg(long, global = true, default_value = crate::config::FILE_NAME, env = "SANDBOX_CONFIG")]
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
    /// Delete the sandbox of a branch and wait until it is gone.
    Down(BranchArg),
    /// Render every service's objects offline (secrets redacted).
    Render(RenderArgs),
    /// Show the merged values a service gets (secrets redacted unless --reveal).
    Values(ValuesArgs),
    /// List the sandboxes in the cluster.
    List(OutputArg),
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
    /// What to do with the sandbox when the deploy or the smoke tests fail.
    #[arg(long, value_enum, default_value_t = OnFailure::Keep)]
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFailure {
    /// Leave everything as it is, to debug it.
    Keep,
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

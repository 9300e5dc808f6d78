//! The command layer: turn a parsed command line into settings (with the environment's
//! defaults), run the pipeline or a lifecycle operation, and print the result to stdout.
//! Progress and errors go to stderr. [`run`] is a dispatch table; each command is one small
//! function in [`commands`].

mod commands;
mod print;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::kube::ClusterOptions;
use crate::pipeline::config::{self, Config};
use crate::pipeline::values::SetValue;
use crate::pipeline::{Environment, Settings};
use crate::progress::Reporter;

/// Run one command.
pub async fn run(cli: Cli) -> Result<()> {
    let app = App {
        config_path: cli.config,
        cluster: ClusterOptions {
            kubeconfig: cli.kubeconfig,
            context: cli.context,
        },
        reporter: Reporter::new(cli.quiet),
        env: environment(),
    };
    match cli.command {
        Command::Up(args) => commands::up(&app, args).await,
        Command::Down(args) => commands::down(&app, args).await,
        Command::Render(args) => commands::render(&app, args).await,
        Command::Values(args) => commands::values(&app, args).await,
        Command::List(args) => commands::list(&app, args).await,
        Command::Status(args) => commands::status(&app, args).await,
        Command::Logs(args) => commands::logs(&app, args).await,
        Command::Diff(args) => commands::diff(&app, args).await,
        Command::Validate(args) => commands::validate(&app, args).await,
        Command::Extend(args) => commands::extend(&app, args).await,
        Command::Reap(args) => commands::reap(&app, args).await,
        Command::ReaperManifests(args) => commands::reaper_manifests(&app, args).await,
        Command::Completions(args) => commands::completions(args),
        Command::Serve(args) => commands::serve(&app, args).await,
    }
}

/// What every command shares.
struct App {
    config_path: PathBuf,
    cluster: ClusterOptions,
    reporter: Reporter,
    env: Environment,
}

impl App {
    fn load_config(&self) -> Result<Config> {
        Ok(config::load(&self.config_path, &|var| {
            std::env::var(var).ok()
        })?)
    }

    /// The settings of a command that runs the pipeline (or its offline part) for one branch.
    fn settings(
        &self,
        branch: &str,
        sets: Vec<SetValue>,
        ttl: Option<Duration>,
    ) -> Result<Settings> {
        Settings::new(self.load_config()?, branch, sets, ttl, &self.env)
    }

    fn namespace_of(&self, branch: &str) -> Result<String> {
        let config = self.load_config()?;
        Ok(crate::record::namespace_for(
            &config.namespace_prefix,
            branch,
        ))
    }
}

/// The machine's defaults: where the cache is, and who is asking.
fn environment() -> Environment {
    Environment {
        cache_dir: default_cache_dir(),
        owner: std::env::var("SANDBOX_OWNER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into()),
    }
}

/// `$SANDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/sandbox`, else `~/.cache/sandbox`.
fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SANDBOX_CACHE_DIR") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sandbox")
}

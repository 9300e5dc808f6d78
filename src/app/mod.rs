//! The command layer: turn a parsed command line into settings (with the environment's
//! defaults), run the pipeline or a lifecycle operation, and print the result to stdout.
//! Progress and errors go to stderr. [`run`] is a dispatch table; each command is one small
//! function in [`commands`].

mod branch;
mod commands;
mod owner;
mod print;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::cli::{CacheCommand, Cli, Command, RbacCommand};
use crate::kube::ClusterOptions;
use crate::pipeline::config::{self, Config};
use crate::pipeline::values::SetValue;
use crate::pipeline::{Environment, Settings};
use crate::progress::Reporter;

/// Run one command: its exit code ([`crate::error::EXIT_OK`], or `diff`'s
/// [`crate::error::EXIT_CHANGES`]). A failure comes back as the text the binary shows for it.
pub async fn run(cli: Cli) -> std::result::Result<i32, Failed> {
    crate::logging::learn_environment_credentials(&|name| std::env::var(name).ok());
    let reporter = Reporter::new(cli.quiet);
    if let Err(error) = init_logging(&cli) {
        return Err(Failed::of(&error.into(), &reporter));
    }
    if let Err(error) = crate::net::trust_ca_files(cli.ca_files.clone()) {
        return Err(Failed::of(&error.into(), &reporter));
    }
    let app = App {
        config_path: cli.config,
        sops_binary: cli.sops_binary,
        cluster: ClusterOptions {
            kubeconfig: cli.kubeconfig,
            context: cli.context,
        },
        reporter,
        env: environment(),
    };
    dispatch(&app, cli.command)
        .await
        .map_err(|error| Failed::of(&error, &app.reporter))
}

/// Diagnostics as `-v`, `--debug`, `RUST_LOG` and serve's `--log-format` ask.
fn init_logging(cli: &Cli) -> std::result::Result<(), crate::logging::FilterError> {
    let (service, format) = match &cli.command {
        Command::Serve(args) => (true, args.log_format),
        _ => (false, crate::logging::Format::Text),
    };
    let verbosity = crate::logging::Verbosity {
        verbose: cli.verbose,
        api_requests: cli.debug,
        service,
    };
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = crate::logging::filter(rust_log.as_deref(), verbosity)?;
    crate::logging::init(filter, format);
    Ok(())
}

/// Run a command; its exit code when it succeeds.
async fn dispatch(app: &App, command: Command) -> Result<i32> {
    let done = match command {
        // The one command whose success has two outcomes, as `kubectl diff`.
        Command::Diff(args) => {
            let changed = commands::diff(app, args).await?;
            return Ok(if changed {
                crate::error::EXIT_CHANGES
            } else {
                crate::error::EXIT_OK
            });
        }
        Command::Up(args) => commands::up(app, args).await,
        Command::Down(args) => commands::down(app, args).await,
        Command::Render(args) => commands::render(app, args).await,
        Command::Values(args) => commands::values(app, args).await,
        Command::Images(args) => commands::images(app, args).await,
        Command::List(args) => commands::list(app, args).await,
        Command::Status(args) => commands::status(app, args).await,
        Command::Logs(args) => commands::logs(app, args).await,
        Command::Validate(args) => commands::validate(app, args).await,
        Command::Extend(args) => commands::extend(app, args).await,
        Command::Sleep(args) => commands::sleep(app, args).await,
        Command::Wake(args) => commands::wake(app, args).await,
        Command::Reap(args) => commands::reap(app, args).await,
        Command::ReaperManifests(args) => commands::reaper_manifests(app, args).await,
        Command::Cache(CacheCommand::Prune(args)) => commands::cache_prune(app, args).await,
        Command::Completions(args) => commands::completions(args),
        Command::Man(args) => commands::man(args),
        Command::Schema(args) => commands::schema(args),
        Command::Init(args) => commands::init(app, args).await,
        Command::Rbac(RbacCommand::User(args)) => commands::rbac_user(args),
        Command::Serve(args) => commands::serve(app, *args).await,
    };
    done.map(|()| crate::error::EXIT_OK)
}

/// A failed command, as the binary shows it.
#[derive(Debug)]
pub struct Failed {
    /// For stderr: the error, its causes and hints, every secret the command decrypted
    /// scrubbed in every form (an error may quote a rendered line or a container's log).
    pub message: String,
    /// The exit code (documented in `--help` and the README).
    pub code: i32,
}

impl Failed {
    fn of(error: &anyhow::Error, reporter: &Reporter) -> Failed {
        // A closed stdout (e.g. `sandbox render | head`) is not a failure.
        let broken_pipe = error.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            return Failed {
                message: String::new(),
                code: crate::error::EXIT_OK,
            };
        }
        // The command's secrets, the process's credentials, and no terminal control sequence
        // (a chart's `fail` message is the branch's text).
        let message = crate::logging::scrub(&reporter.scrub(&render_error(error)));
        Failed {
            message: crate::redact::printable(&message),
            code: exit_code(error),
        }
    }
}

/// What every command shares.
struct App {
    config_path: PathBuf,
    /// `--sops-binary`: hand files the built-in decryptor cannot read to `sops`.
    sops_binary: bool,
    cluster: ClusterOptions,
    reporter: Reporter,
    env: Environment,
}

impl App {
    fn load_config(&self) -> Result<Config> {
        let mut config = config::load(&self.config_path, &|var| std::env::var(var).ok())?;
        if self.sops_binary {
            config.sops_binary.enabled = true;
        }
        Ok(config)
    }

    /// The branch a command is about: `--branch`, else the checkout's or the CI's (said).
    fn branch(&self, arg: &crate::cli::BranchArg) -> Result<String> {
        let here = std::env::current_dir().unwrap_or_default();
        let env = |var: &str| std::env::var(var).ok();
        let chosen = branch::choose(arg.branch.as_deref(), &here, &env)?;
        if let Some(from) = &chosen.from {
            self.reporter
                .info(&format!("branch `{}` (from {from})", chosen.branch));
        }
        Ok(chosen.branch)
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
}

/// The machine's defaults: where the cache is, and who is asking.
fn environment() -> Environment {
    Environment {
        cache_dir: default_cache_dir(),
        owner: owner::current(),
        access: None,
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

/// How a failed command is shown: the error, its causes, and the hints of every layer.
fn render_error(error: &anyhow::Error) -> String {
    crate::error::render(error, crate::serve::hints_of)
}

/// The exit code of a failed command (documented in `--help` and the README).
fn exit_code(error: &anyhow::Error) -> i32 {
    if error.chain().any(|c| c.is::<crate::ops::Interrupted>()) {
        crate::error::EXIT_INTERRUPTED
    } else {
        crate::error::EXIT_FAILURE
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_error_causes_and_each_hint_once() {
        let err = crate::record::RecordError::NotOurs("team-db".into());
        let error = anyhow::Error::new(err)
            .context("could not prepare namespace `team-db`")
            .context("could not deploy");
        let text = crate::error::render(&error, crate::serve::hints_of);
        assert_eq!(
            text,
            "error: could not deploy\ncaused by: could not prepare namespace `team-db`\ncaused by: namespace `team-db` exists and is not managed by sandbox\nhint: sandbox only changes namespaces labelled app.kubernetes.io/managed-by=sandbox; choose another namespace_prefix, or delete `team-db` yourself if it is yours\n"
        );
    }

    #[test]
    fn details_above_the_advice_are_indented() {
        let err = crate::lock::LockError::Held {
            namespace: "sb-x".into(),
            holder: "ada@laptop".into(),
            since: "now".into(),
        };
        let text = crate::error::render(&anyhow::Error::new(err), crate::serve::hints_of);
        assert!(
            text.starts_with("error: sandbox `sb-x` is locked by ada@laptop"),
            "{text}"
        );
        assert!(text.contains("\nhint: "), "{text}");
    }
    /// Every error type the crate defines implements `Hint` and is in a layer's registry: read
    /// the sources, so that a new error type fails this test instead of losing its hint.
    #[test]
    fn every_error_type_offers_its_hint() {
        let sources = crate_sources();
        let registered: Vec<&str> = [
            crate::pipeline::REGISTERED,
            crate::ops::REGISTERED,
            crate::serve::REGISTERED,
        ]
        .concat()
        .into_iter()
        .map(|p| p.rsplit("::").next().unwrap().trim())
        .collect();
        let types = error_types(&sources);
        assert!(types.len() >= 10, "found only {types:?}");
        for name in &types {
            assert!(
                sources.contains(&format!("impl Hint for {name} ")),
                "error type `{name}` does not implement `error::Hint`"
            );
            assert!(
                registered.contains(&name.as_str()),
                "error type `{name}` is in no `hint_registry!` (src/pipeline/mod.rs, src/serve/mod.rs)"
            );
        }
    }

    fn crate_sources() -> String {
        let mut sources = String::new();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut stack = vec![std::path::PathBuf::from(root)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    sources.push_str(&std::fs::read_to_string(path).unwrap());
                }
            }
        }
        sources
    }

    /// The names of the types that derive `thiserror::Error`.
    fn error_types(sources: &str) -> Vec<String> {
        let mut types = Vec::new();
        let mut lines = sources.lines();
        while let Some(line) = lines.next() {
            if line.trim_start().starts_with("#[derive(") && line.contains("thiserror::Error") {
                let definition = lines
                    .by_ref()
                    .find(|l| l.contains("enum ") || l.contains("struct "))
                    .unwrap();
                let name = definition
                    .split_whitespace()
                    .skip_while(|w| *w != "enum" && *w != "struct")
                    .nth(1)
                    .unwrap()
                    .split(['(', '{', '<'])
                    .next()
                    .unwrap();
                types.push(name.to_owned());
            }
        }
        types
    }
}

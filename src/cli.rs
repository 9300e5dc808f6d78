//! The command line, as typed: clap types and validation of the arguments alone. Nothing here
//! reads `sandbox.yaml` or talks to a cluster.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pipeline::values::{SetKind, SetValue};

/// What `--version` prints after the name: the version, the commit it was built from (`build.rs`)
/// and the Kubernetes versions it supports (the oldest it is tested on, the newest k8s-openapi
/// knows: its feature `v1_33`).
pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SANDBOX_GIT_SHA"),
    ", Kubernetes 1.20–1.33)"
);

/// Each command's examples, shown at the end of its `--help`.
mod examples {
    pub(super) const CACHE_PRUNE: &str = "Examples:\n  sandbox cache prune --dry-run         # what would go\n  sandbox cache prune --older-than 3d";
    pub(super) const UP: &str = "Examples:\n  sandbox up                                              # the branch checked out here (or the CI's)\n  sandbox up --branch feature-x --timings                 # …and where the time went\n  sandbox up -b feature-x --set api.replicas=2 --ttl 3d   # values and expiry for this run\n  sandbox up -b feature-x --on-failure rollback           # a failed update goes back to the last good one\n  sandbox up -b feature-x -o json | jq -r .url            # for scripts";
    pub(super) const DOWN: &str = "Examples:\n  sandbox down --branch feature-x             # delete it and wait until it is gone\n  sandbox down --branch feature-x --dry-run   # say what would be deleted\n  sandbox down --all-expired                  # every expired sandbox of this product";
    pub(super) const RENDER: &str = "Examples:\n  sandbox render                                                      # every object, secrets redacted\n  sandbox render -b feature-x --service api -o name                   # one service's objects, by name\n  sandbox render -b feature-x | kubectl apply --dry-run=client -f -   # YAML for other tools";
    pub(super) const VALUES: &str = "Examples:\n  sandbox values api                                             # what api's templates see\n  sandbox values api -b feature-x --set api.replicas=2 -o json   # with a --set applied";
    pub(super) const IMAGES: &str = "Examples:\n  sandbox images -b feature-x                                 # build or resolve every image; print the pinned refs\n  sandbox images -b feature-x --wait-for-images 10m -o json   # wait for CI to publish";
    pub(super) const LIST: &str = "Examples:\n  sandbox list           # every sandbox in the cluster\n  sandbox list -o wide   # …with owners and commits\n  sandbox list -o name   # namespaces only";
    pub(super) const STATUS: &str = "Examples:\n  sandbox status                        # the sandbox of the branch checked out here\n  sandbox status -b feature-x -o json";
    pub(super) const LOGS: &str = "Examples:\n  sandbox logs api -f                                # follow api's pods\n  sandbox logs -b feature-x --since 10m --tail 100   # every service, recent lines\n  sandbox logs -b feature-x -l job-name=api-smoke    # a smoke Job's pods";
    pub(super) const DIFF: &str = "Examples:\n  sandbox diff                        # what `up` would change (exit 1 if anything)\n  sandbox diff -b feature-x -o name   # only which objects";
    pub(super) const VALIDATE: &str = "Examples:\n  sandbox validate                                     # config and templates; a server-side dry run if a cluster answers\n  sandbox validate -b feature-x --set api.replicas=2";
    pub(super) const EXTEND: &str = "Examples:\n  sandbox extend --ttl 2d                 # expire two days from now\n  sandbox extend -b feature-x --ttl 12h";
    pub(super) const SLEEP: &str =
        "Examples:\n  sandbox sleep -b feature-x   # scale to zero; `wake` or `up` brings it back";
    pub(super) const WAKE: &str = "Examples:\n  sandbox wake -b feature-x                 # scale back and wait until every service is ready\n  sandbox wake -b feature-x --timeout 10m";
    pub(super) const REAP: &str = "Examples:\n  sandbox reap --dry-run        # what would be deleted or put to sleep\n  sandbox reap --all-products   # as the reaper CronJob runs it";
    pub(super) const REAPER_MANIFESTS: &str = "Examples:\n  sandbox reaper-manifests --image registry.example.com/sandbox:0.1.0 | kubectl apply -f -";
    pub(super) const COMPLETIONS: &str = "Examples:\n  sandbox completions bash > /etc/bash_completion.d/sandbox\n  sandbox completions zsh > \"${fpath[1]}/_sandbox\"";
    pub(super) const MAN: &str = "Examples:\n  sandbox man | man -l -                        # read it now\n  sandbox man --dir /usr/local/share/man/man1   # install one page per command";
    pub(super) const INIT: &str = "Examples:\n  sandbox init                                   # the git repository here\n  sandbox init --repo api=https://git.example.com/shop/api.git --repo web=../web   # several\n  sandbox init --registry registry.example.com/shop && sandbox validate";
    pub(super) const RBAC_USER: &str = "Examples:\n  sandbox rbac user --user alice@example.com | kubectl apply -f -   # as a cluster admin\n  sandbox rbac user --group developers > sandbox-user.yaml";
    pub(super) const SCHEMA: &str = "Examples:\n  sandbox schema > sandbox.schema.json   # for editors: `# yaml-language-server: $schema=sandbox.schema.json`\n  sandbox schema --markdown              # the field reference (docs/reference/sandbox-yaml.md)";
    pub(super) const SERVE: &str = "Examples:\n  sandbox serve --listen 0.0.0.0:8080 --resync 5m --concurrency 4\n  SANDBOX_GITHUB_TOKEN=… sandbox serve --webhook-secret-file /run/secrets/webhook";
}

#[derive(Debug, Parser)]
#[command(
    name = "sandbox",
    version = VERSION,
    about = "Every branch its own complete, isolated copy of the product on Kubernetes",
    after_help = crate::error::EXIT_CODES_HELP
)]
pub struct Cli {
    /// The product's sandbox.yaml.
    #[arg(long, global = true, default_value = crate::pipeline::config::FILE_NAME, env = "SANDBOX_CONFIG")]
    pub(crate) config: PathBuf,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, global = true)]
    pub(crate) context: Option<String>,
    /// Print only results and errors.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    /// Diagnostics on stderr: `-v` the tool's and the Kubernetes client's events, `-vv` debug,
    /// `-vvv` trace (RUST_LOG, when set, chooses instead). Never headers or secret values.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Print a line per Kubernetes API request: method, path, status, duration.
    #[arg(long, global = true)]
    pub(crate) debug: bool,
    /// Hand sops files the built-in decryptor cannot read (PGP, cloud KMS, Vault keys) to the
    /// `sops` binary on PATH, for the key types `sops.binary.key_types` in sandbox.yaml allows
    /// (default: age and pgp). Off by default: a branch's sops metadata chooses where sops sends
    /// your credentials.
    #[arg(long, global = true, env = "SANDBOX_SOPS_BINARY")]
    pub(crate) sops_binary: bool,
    /// Also trust this CA certificate (PEM) on every HTTPS connection: registries, GitHub and
    /// GitHub Enterprise, Slack, git. Added to the system store, SSL_CERT_FILE and SSL_CERT_DIR;
    /// repeatable (SANDBOX_CA_FILE: a `:`-separated list). One registry's own CA:
    /// `images.registries.HOST.ca_file` in sandbox.yaml.
    #[arg(
        long = "ca-file",
        global = true,
        env = "SANDBOX_CA_FILE",
        value_delimiter = ':',
        value_name = "FILE"
    )]
    pub(crate) ca_files: Vec<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Deploy (or update) the sandbox of a branch and print its URL.
    #[command(after_help = examples::UP)]
    Up(UpArgs),
    /// Delete the sandbox of a branch (or every expired one) and wait until it is gone.
    #[command(after_help = examples::DOWN)]
    Down(DownArgs),
    /// Render every service's objects offline (secrets redacted).
    #[command(after_help = examples::RENDER)]
    Render(RenderArgs),
    /// Show the merged values a service gets (secrets redacted unless --reveal).
    #[command(after_help = examples::VALUES)]
    Values(ValuesArgs),
    /// Resolve every service's image for the branch's commits, build the missing ones that have
    /// `build:`, and print the pinned references (what CI runs before previews need them).
    #[command(after_help = examples::IMAGES)]
    Images(ImagesArgs),
    /// List the sandboxes in the cluster.
    #[command(after_help = examples::LIST)]
    List(TableOutputArg),
    /// Per service: ready replicas, restarts and the last event.
    #[command(after_help = examples::STATUS)]
    Status(StatusArgs),
    /// Logs of one service or all, prefixed by where they come from.
    #[command(after_help = examples::LOGS)]
    Logs(LogsArgs),
    /// What `up` would change, from a server-side dry run (secrets redacted).
    #[command(after_help = examples::DIFF)]
    Diff(DiffArgs),
    /// Check sandbox.yaml and the templates (and a server-side dry run when a cluster answers).
    #[command(after_help = examples::VALIDATE)]
    Validate(ValidateArgs),
    /// Move a sandbox's expiry: now + TTL.
    #[command(after_help = examples::EXTEND)]
    Extend(ExtendArgs),
    /// Scale a sandbox's Deployments and StatefulSets to zero and suspend its CronJobs
    /// (remembering their replicas, and which CronJobs ran).
    #[command(after_help = examples::SLEEP)]
    Sleep(SleepArgs),
    /// Scale a sleeping sandbox back, resume the CronJobs its sleep suspended, and wait until
    /// every service is ready (`up` wakes too).
    #[command(after_help = examples::WAKE)]
    Wake(WakeArgs),
    /// Delete every sandbox whose expiry has passed, and put to sleep those unused for their
    /// `idle_after` (never anything without the tool's label).
    #[command(after_help = examples::REAP)]
    Reap(ReapArgs),
    /// Print the manifests that run `sandbox reap` in the cluster on a schedule.
    #[command(after_help = examples::REAPER_MANIFESTS)]
    ReaperManifests(ReaperArgs),
    /// Write a first sandbox.yaml (and its schema) from the charts, Containerfiles and
    /// Kubernetes manifests in the product's repositories; never overwrites a file.
    #[command(after_help = examples::INIT)]
    Init(InitArgs),
    /// Print the JSON Schema of sandbox.yaml (for editors and CI), or its field reference.
    #[command(after_help = examples::SCHEMA)]
    Schema(SchemaArgs),
    /// Print the RBAC a person or a CI job needs to use sandbox on a cluster.
    #[command(subcommand)]
    Rbac(RbacCommand),
    /// Manage the local cache of repository mirrors and checked-out trees.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print shell completions.
    #[command(after_help = examples::COMPLETIONS)]
    #[command(visible_alias = "completion")]
    Completions(CompletionsArgs),
    /// Print the manual page, or write one per command into --dir (sandbox.1, sandbox-up.1, …).
    #[command(after_help = examples::MAN)]
    Man(ManArgs),
    /// Pull-request previews: a webhook service that brings PR branches' sandboxes up and down.
    #[command(after_help = examples::SERVE)]
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// The branch whose sandbox to delete.
    #[arg(long, short, required_unless_present = "all_expired")]
    pub(crate) branch: Option<String>,
    /// Delete every sandbox whose expiry has passed.
    #[arg(long, conflicts_with = "branch")]
    pub(crate) all_expired: bool,
    #[command(flatten)]
    pub(crate) lock: LockArgs,
    /// How long the namespace may take to be gone (default: 3m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Only say what would be deleted (after the same checks that it is this product's).
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    #[command(flatten)]
    pub(crate) output: TableOutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Only this service (default: all).
    pub(crate) service: Option<String>,
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    /// Keep streaming new lines.
    #[arg(long, short)]
    pub(crate) follow: bool,
    /// Only lines newer than this, e.g. `10m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) since: Option<Duration>,
    /// Lines per container to start from.
    #[arg(long)]
    pub(crate) tail: Option<i64>,
    /// Only this container of each pod.
    #[arg(long, short = 'c')]
    pub(crate) container: Option<String>,
    /// The previous instance of each container (the one before its last restart).
    #[arg(long, short = 'p')]
    pub(crate) previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    pub(crate) timestamps: bool,
    /// Label selector (`key=value,...`): those pods of the sandbox instead of its services'
    /// (e.g. `-l job-name=smoke-api`).
    #[arg(long, short = 'l')]
    pub(crate) selector: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    /// Wait up to DURATION for images that have no `build:` and are not published yet.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) wait_for_images: Option<std::time::Duration>,
    #[command(flatten)]
    pub(crate) output: OutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    #[command(flatten)]
    pub(crate) sets: SetArgs,
    /// `text`: a unified diff of each object's YAML (live against what `up` would make), then a
    /// summary; `json`/`yaml`: the changes and their changed fields; `name`: what changes.
    #[command(flatten)]
    pub(crate) output: ObjectsOutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    #[command(flatten)]
    pub(crate) sets: SetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Where to write sandbox.yaml.
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// A repository of the product (a URL or a path), repeatable; default: the git repository
    /// DIR is in.
    #[arg(long = "repo", value_name = "NAME=URL", value_parser = parse_repo)]
    pub(crate) repos: Vec<(String, String)>,
    /// The branch to read (default: each repository's default branch).
    #[arg(long, short)]
    pub(crate) branch: Option<String>,
    /// Where images built from the repositories' Containerfiles go (default:
    /// `${SANDBOX_REGISTRY}` when that is set, else registry.example.com).
    #[arg(long)]
    pub(crate) registry: Option<String>,
    /// That registry speaks plain HTTP (written into `images.insecure_registries`).
    #[arg(long)]
    pub(crate) insecure_registry: bool,
    /// The product's name (default: DIR's name).
    #[arg(long)]
    pub(crate) name: Option<String>,
}

fn parse_repo(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => {
            Ok((name.to_owned(), url.to_owned()))
        }
        _ => Err(format!("`{text}` is not NAME=URL")),
    }
}

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// The field reference in Markdown instead (docs/reference/sandbox-yaml.md).
    #[arg(long)]
    pub(crate) markdown: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExtendArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    /// The new time to live, from now.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) ttl: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ReapArgs {
    /// Only say what would be deleted.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Every product's expired sandboxes, not only those of the product in sandbox.yaml.
    #[arg(long)]
    pub(crate) all_products: bool,
    #[command(flatten)]
    pub(crate) output: OutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct ReaperArgs {
    /// The image holding the `sandbox` binary.
    #[arg(long, default_value = "docker.io/local/sandbox:dev")]
    pub(crate) image: String,
    /// Cron schedule.
    #[arg(long, default_value = "*/10 * * * *")]
    pub(crate) schedule: String,
    /// The namespace the reaper runs in.
    #[arg(long, default_value = "sandbox-system")]
    pub(crate) namespace: String,
    /// CronJob API version (default: what the cluster serves, else batch/v1).
    #[arg(long)]
    pub(crate) cronjob_api_version: Option<String>,
    /// Another account (NAMESPACE/NAME, e.g. serve's) that the admission policy holds to the
    /// tool's labelled namespaces, with the reaper. The policy is printed only for a cluster that
    /// serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (Kubernetes 1.30+).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = crate::access::parse_account)]
    pub(crate) confine: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RbacCommand {
    /// The ClusterRole `sandbox-user` (what up, down, sleep, wake, status, logs, list and reap
    /// call), and its ClusterRoleBinding for --user and --group.
    #[command(after_help = examples::RBAC_USER)]
    User(RbacUserArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RbacUserArgs {
    /// A user to bind it to (as the cluster authenticates them), repeatable.
    #[arg(long = "user", value_name = "NAME")]
    pub(crate) users: Vec<String>,
    /// A group to bind it to, repeatable.
    #[arg(long = "group", value_name = "NAME")]
    pub(crate) groups: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Delete checked-out trees no live sandbox runs (unused for an hour) and mirrors unused
    /// for --older-than. Without a cluster to ask, trees also go by --older-than alone.
    #[command(after_help = examples::CACHE_PRUNE)]
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Mirrors (and, when the cluster cannot be asked, trees) unused this long are deleted.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "14d")]
    pub(crate) older_than: Duration,
    /// Only say what would be deleted.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) output: OutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct SleepArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    #[command(flatten)]
    pub(crate) lock: LockArgs,
}

#[derive(Debug, Args)]
pub(crate) struct WakeArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    #[command(flatten)]
    pub(crate) lock: LockArgs,
    /// How long the workloads may take to be ready again: overrides `timeouts.service`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write every command's page into this directory (e.g. /usr/local/share/man/man1).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

/// Waiting for another run's lock on the sandbox.
#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    /// How long to wait while another `up` or `down` holds the sandbox's lock (`0`: fail at
    /// once; default: as long as it takes).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) lock_timeout: Option<Duration>,
    /// Old spelling of `--lock-timeout 0`.
    #[arg(long, hide = true, conflicts_with = "lock_timeout")]
    pub(crate) no_wait: bool,
}

impl LockArgs {
    pub(crate) fn timeout(&self) -> Option<Duration> {
        if self.no_wait {
            Some(Duration::ZERO)
        } else {
            self.lock_timeout
        }
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BranchArg {
    /// The branch whose sandbox this is [default: the branch checked out in the working
    /// directory, else the CI's: GITHUB_HEAD_REF, GITHUB_REF_NAME, CI_COMMIT_REF_NAME,
    /// BRANCH_NAME]
    #[arg(long, short)]
    pub(crate) branch: Option<String>,
}

/// `-o/--output` of a command that prints data: text for people, JSON or YAML for tools.
#[derive(Debug, Args)]
pub(crate) struct OutputArg {
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

/// `-o/--output` of a command that prints a table (`list`, `status`), as kubectl's: `wide` adds
/// columns, `name` prints only the first.
#[derive(Debug, Args)]
pub(crate) struct TableOutputArg {
    #[arg(long, short, value_enum, default_value_t = TableOutput::Text)]
    pub(crate) output: TableOutput,
}

/// `-o/--output` of a command that prints Kubernetes objects (`render`, `diff`); `name` prints
/// `kind/name` per object, as `kubectl -o name`.
#[derive(Debug, Args)]
pub(crate) struct ObjectsOutputArg {
    #[arg(long, short, value_enum, default_value_t = ObjectsOutput::Text)]
    pub(crate) output: ObjectsOutput,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    #[command(flatten)]
    pub(crate) sets: SetArgs,
    /// How long the sandbox lives (default: `ttl` in sandbox.yaml).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) ttl: Option<Duration>,
    #[command(flatten)]
    pub(crate) output: OutputArg,
    /// Print how long each stage and each service took.
    #[arg(long)]
    pub(crate) timings: bool,
    #[command(flatten)]
    pub(crate) lock: LockArgs,
    /// How long each service (and preflight Job) may take to become ready, and the smoke tests
    /// together: overrides `timeouts:` in sandbox.yaml.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// `--wait=false`: apply everything in dependency order and return, without waiting for the
    /// services to be ready or running the smoke tests (Jobs others depend on are still waited
    /// for, as helm waits for hooks). The sandbox's status is then `applied`.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub(crate) wait: bool,
    /// Wait up to DURATION (e.g. `10m`) for images CI has yet to publish, polling with backoff
    /// (default: a missing image without `build:` fails at once).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) wait_for_images: Option<std::time::Duration>,
    /// What to do with the sandbox when the deploy or the smoke tests fail.
    #[arg(long, value_enum, default_value_t = OnFailure::Keep)]
    pub(crate) on_failure: OnFailure,
}

#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    /// Only this service.
    #[arg(long)]
    pub(crate) service: Option<String>,
    #[command(flatten)]
    pub(crate) sets: SetArgs,
    /// Render with the decrypted secrets (for piping into another tool; never into a file).
    #[arg(long)]
    pub(crate) reveal: bool,
    /// `text`/`yaml`: the objects as multi-document YAML (like `helm template`, for `kubectl
    /// apply -f -`); `json`: the plan — steps in dependency order with their objects, then the
    /// smoke Jobs; `name`: `kind/name` per object.
    #[command(flatten)]
    pub(crate) output: ObjectsOutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct ValuesArgs {
    /// The service.
    pub(crate) service: String,
    #[command(flatten)]
    pub(crate) branch: BranchArg,
    #[command(flatten)]
    pub(crate) sets: SetArgs,
    /// Show decrypted secrets too.
    #[arg(long)]
    pub(crate) reveal: bool,
    /// `text` is YAML; `json` is exactly what a chart service's `helm template` reads on stdin.
    #[command(flatten)]
    pub(crate) output: OutputArg,
}

/// `--on-failure`: what to do with the sandbox when the deploy or the smoke tests fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnFailure {
    /// Leave everything as it is, to debug it.
    Keep,
    /// Put every object this `up` changed back to its last good revision.
    Rollback,
    /// Delete the sandbox if this `up` created it.
    Destroy,
}

impl From<OnFailure> for crate::ops::OnFailure {
    fn from(choice: OnFailure) -> Self {
        match choice {
            OnFailure::Keep => crate::ops::OnFailure::Keep,
            OnFailure::Rollback => crate::ops::OnFailure::Rollback,
            OnFailure::Destroy => crate::ops::OnFailure::Destroy,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TableOutput {
    Text,
    Wide,
    Name,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ObjectsOutput {
    Text,
    Name,
    Json,
    Yaml,
}

/// `sandbox serve`. Secrets come from the environment (or a file), never from flags:
/// `SANDBOX_WEBHOOK_SECRET`, `SANDBOX_GITHUB_TOKEN`, `GITHUB_TOKEN` or `GH_TOKEN`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on for GitHub's webhooks and /healthz (port 0: any free port; the
    /// bound address is logged).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Address of the status page, /api/sandboxes and /metrics: never the webhook's, which
    /// faces the internet. Keep it internal (loopback, or the pod's port behind a
    /// cluster-internal Service); $SANDBOX_STATUS_TOKEN also requires a bearer token.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub(crate) status_listen: std::net::SocketAddr,
    /// File holding the webhook secret (default: $SANDBOX_WEBHOOK_SECRET).
    #[arg(long, value_name = "PATH")]
    pub(crate) webhook_secret_file: Option<PathBuf>,
    /// How many sandboxes may be deployed or deleted at the same time.
    #[arg(long, default_value = "2")]
    pub(crate) concurrency: std::num::NonZeroUsize,
    /// Largest webhook body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub(crate) max_body_bytes: usize,
    /// Most HTTP connections open at once; more wait until one closes.
    #[arg(long, default_value = "256")]
    pub(crate) max_connections: std::num::NonZeroUsize,
    /// GitHub REST API base URL (GitHub Enterprise Server: https://HOST/api/v3).
    #[arg(
        long,
        env = "SANDBOX_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub(crate) github_api_url: String,
    /// Authenticate as this GitHub App (its numeric id) instead of a personal token: with
    /// --github-app-key-file, serve buys an installation token per repository's installation.
    #[arg(long, env = "SANDBOX_GITHUB_APP_ID", requires = "github_app_key_file")]
    pub(crate) github_app_id: Option<String>,
    /// The GitHub App's private key (the PEM file GitHub gives, e.g. a mounted Secret).
    #[arg(
        long,
        env = "SANDBOX_GITHUB_APP_KEY_FILE",
        requires = "github_app_id",
        value_name = "PEM"
    )]
    pub(crate) github_app_key_file: Option<std::path::PathBuf>,
    /// Also keep one comment with the sandbox's URL (or failure) up to date on the pull request.
    #[arg(long)]
    pub(crate) comment: bool,
    /// Slack incoming-webhook URL to notify (prefer the environment variable: it is a secret).
    #[arg(
        long,
        env = "SANDBOX_SLACK_WEBHOOK_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) slack_webhook_url: Option<String>,
    #[command(flatten)]
    pub(crate) sets: SetArgs,
    /// How long a preview lives without a push (default: `ttl` in sandbox.yaml).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) ttl: Option<Duration>,
    /// What to do with a preview whose deploy or smoke tests fail.
    #[arg(long, value_enum, default_value_t = OnFailure::Keep)]
    pub(crate) on_failure: OnFailure,
    /// On SIGTERM/SIGINT, how long running deploys may finish before they are cancelled.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub(crate) shutdown_grace: Duration,
    /// How long a preview's deploy or teardown waits for another holder of the sandbox's lock
    /// (someone's `sandbox up`, or a pod of the sandbox that took it) before it fails with who
    /// holds it: a concurrency slot is never held forever.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10m")]
    pub(crate) lock_timeout: Duration,
    /// Do not converge the previews at start (the first resync then waits for --resync).
    #[arg(long)]
    pub(crate) no_reconcile: bool,
    /// How often to converge the previews to GitHub's open pull requests of sandbox.yaml's
    /// repositories: missing or outdated ones come up, closed ones go (`0s`: only at start).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5m")]
    pub(crate) resync: Duration,
    /// Preview no draft pull request: `ready_for_review` brings one up, `converted_to_draft`
    /// takes down the preview serve made.
    #[arg(long)]
    pub(crate) skip_drafts: bool,
    /// A `deployment` event for environment PREFIX+BRANCH brings BRANCH up and reports through
    /// that deployment; previews' deployments use these environments too.
    #[arg(long, value_name = "PREFIX", default_value = crate::serve::scope::ENVIRONMENT_PREFIX)]
    pub(crate) deployment_environment_prefix: String,
    /// The namespace that keeps the previews' desired state and claims (ConfigMaps and Leases;
    /// made if missing). Replicas that share it share the work.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "sandbox-system",
        value_name = "NAMESPACE"
    )]
    pub(crate) state_namespace: String,
    /// A service account (NAMESPACE/NAME, usually serve's own) to bind to --sandbox-role in each
    /// sandbox namespace it creates, so that it needs no rights in any other namespace.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = crate::access::parse_account, requires = "sandbox_role")]
    pub(crate) service_account: Vec<(String, String)>,
    /// The ClusterRole of what --service-account may do inside a sandbox.
    #[arg(long, value_name = "CLUSTERROLE", requires = "service_account")]
    pub(crate) sandbox_role: Option<String>,
    /// Log lines as `key=value` text or as one JSON object per line (RUST_LOG filters them;
    /// default: the service's events at info, everything else at warn).
    #[arg(long, value_parser = log_format(), default_value = "text", env = "SANDBOX_LOG_FORMAT")]
    pub(crate) log_format: crate::logging::Format,
    /// How often to prune the checkout cache, as `sandbox cache prune` does (`0s`: never).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1h")]
    pub(crate) prune_cache_every: Duration,
    /// What the periodic prune deletes: mirrors unused this long (see `cache prune --older-than`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "14d")]
    pub(crate) prune_cache_older_than: Duration,
}

/// `--log-format`'s values, as the command line spells them.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// `time=… level=… event=… key=value…`; values with spaces or quotes are quoted.
    Text,
    /// One JSON object per line with the same keys.
    Json,
}

/// `--log-format` read as the [`crate::logging::Format`] it names.
fn log_format() -> impl clap::builder::TypedValueParser<Value = crate::logging::Format> {
    use clap::builder::TypedValueParser as _;
    clap::builder::EnumValueParser::<LogFormat>::new().map(|format| match format {
        LogFormat::Text => crate::logging::Format::Text,
        LogFormat::Json => crate::logging::Format::Json,
    })
}

/// `-f/--values FILE`, `--set`, `--set-string`, `--set-file` and `--set-json`, in the order they
/// layer: every values file first (in order), then the `--set` family in command-line order.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetArgs(pub(crate) Vec<SetValue>);

const SET_FLAGS: [(&str, SetKind, &str); 4] = [
    (
        "set",
        SetKind::Typed,
        "Override values: SERVICE.key.path=VALUE[,...] typed as helm's --set types them (`1.10` stays a string, `k=` is \"\"), with lists `{a,b}`, indexes `k[0]=x` and `\\.`/`\\,` escapes (repeatable)",
    ),
    (
        "set-string",
        SetKind::String,
        "Like --set, but every value is a string (repeatable)",
    ),
    (
        "set-file",
        SetKind::File,
        "SERVICE.key.path=PATH: the value is the content of that file on this machine (repeatable)",
    ),
    (
        "set-json",
        SetKind::Json,
        "SERVICE.key.path=JSON: the value is parsed as JSON (repeatable)",
    ),
];

impl clap::FromArgMatches for SetArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut out: Vec<SetValue> = matches
            .get_many::<SetValue>("values_files")
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let mut sets: Vec<(usize, SetValue)> = Vec::new();
        for (id, _, _) in SET_FLAGS {
            if let (Some(values), Some(indices)) =
                (matches.get_many::<SetValue>(id), matches.indices_of(id))
            {
                sets.extend(indices.zip(values.cloned()));
            }
        }
        sets.sort_by_key(|(i, _)| *i);
        out.extend(sets.into_iter().map(|(_, s)| s));
        Ok(SetArgs(out))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for SetArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let mut cmd = cmd.arg(
            clap::Arg::new("values_files")
                .long("values")
                .short('f')
                .value_name("FILE")
                .action(clap::ArgAction::Append)
                .value_parser(|s: &str| SetValue::values_file(std::path::Path::new(s)))
                .help("A YAML file on this machine mapping SERVICE to values (`api: {replicas: 2}`), layered after the repos' values and secrets files, before --set (repeatable)"),
        );
        for (id, kind, help) in SET_FLAGS {
            cmd = cmd.arg(
                clap::Arg::new(id)
                    .long(id)
                    .value_name("SERVICE.KEY=VALUE")
                    .action(clap::ArgAction::Append)
                    .value_parser(move |s: &str| SetValue::parse(s, kind))
                    .help(help),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn verbosity_and_the_log_format_are_flags() {
        let cli = Cli::try_parse_from(["sandbox", "list"]).unwrap();
        assert_eq!((cli.verbose, cli.debug), (0, false));
        let cli = Cli::try_parse_from(["sandbox", "-vv", "list", "--debug"]).unwrap();
        assert_eq!((cli.verbose, cli.debug), (2, true));
        let cli = Cli::try_parse_from(["sandbox", "serve", "-v", "--log-format", "json"]).unwrap();
        assert_eq!(cli.verbose, 1);
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.log_format, crate::logging::Format::Json);
        let Command::Serve(args) = Cli::try_parse_from(["sandbox", "serve"]).unwrap().command
        else {
            panic!("serve")
        };
        assert_eq!(args.log_format, crate::logging::Format::Text);
        let bad = Cli::try_parse_from(["sandbox", "serve", "--log-format", "xml"]).unwrap_err();
        assert!(
            bad.to_string().contains("[possible values: text, json]"),
            "{bad}"
        );
    }

    #[test]
    fn completion_is_an_alias_and_down_has_a_dry_run() {
        let cli = Cli::try_parse_from(["sandbox", "completion", "zsh"]).unwrap();
        assert!(matches!(cli.command, Command::Completions(_)));
        let cli = Cli::try_parse_from(["sandbox", "down", "-b", "x", "--dry-run"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Down(DownArgs { dry_run: true, .. })
        ));
    }

    /// One page per command, each naming it and carrying its options from the clap definitions.
    #[test]
    fn man_pages_cover_every_command() {
        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(Cli::command(), dir.path()).unwrap();
        let up = std::fs::read_to_string(dir.path().join("sandbox-up.1")).unwrap();
        assert!(up.contains(".TH sandbox-up 1"), "{up}");
        assert!(up.contains("\\-\\-on\\-failure"), "{up}");
        for command in Cli::command().get_subcommands() {
            let page = dir.path().join(format!("sandbox-{}.1", command.get_name()));
            assert!(page.exists(), "{}", page.display());
        }
        assert!(dir.path().join("sandbox-cache-prune.1").exists());
    }

    /// `--lock-timeout` (with `--no-wait` its old spelling of 0), `--timeout`, `--wait=false`.
    #[test]
    fn waiting_flags_read_as_helm_and_kubectl_users_expect() {
        let up = |args: &[&str]| match Cli::try_parse_from(
            [&["sandbox", "up", "-b", "x"], args].concat(),
        )
        .map(|c| c.command)
        {
            Ok(Command::Up(a)) => Ok(a),
            Ok(_) => panic!("up"),
            Err(e) => Err(e.to_string()),
        };
        let plain = up(&[]).unwrap();
        assert_eq!(
            (plain.lock.timeout(), plain.timeout, plain.wait),
            (None, None, true)
        );
        let set = up(&["--lock-timeout", "0", "--timeout", "10m", "--wait=false"]).unwrap();
        assert_eq!(set.lock.timeout(), Some(Duration::ZERO));
        assert_eq!(set.timeout, Some(Duration::from_secs(600)));
        assert!(!set.wait);
        assert!(up(&["--wait"]).unwrap().wait);
        assert_eq!(
            up(&["--no-wait"]).unwrap().lock.timeout(),
            Some(Duration::ZERO)
        );
        assert_eq!(
            up(&["--lock-timeout", "90s"]).unwrap().lock.timeout(),
            Some(Duration::from_secs(90))
        );
        assert!(up(&["--no-wait", "--lock-timeout", "5s"]).is_err());
        let wake = Cli::try_parse_from(["sandbox", "wake", "-b", "x", "--timeout", "2m"]).unwrap();
        let Command::Wake(wake) = wake.command else {
            panic!("wake");
        };
        assert_eq!(wake.timeout, Some(Duration::from_secs(120)));
        let sleep = Cli::try_parse_from(["sandbox", "sleep", "-b", "x", "--lock-timeout", "0"]);
        assert!(matches!(
            sleep.unwrap().command,
            Command::Sleep(SleepArgs { ref lock, .. }) if lock.timeout() == Some(Duration::ZERO)
        ));
        assert!(
            up(&["--wait", "false"]).is_err(),
            "`--wait false` is not `--wait=false`"
        );
    }

    #[test]
    fn the_version_names_the_commit_and_the_kubernetes_range() {
        let version = Cli::command().render_version();
        assert!(version.starts_with(&format!("sandbox {} (git ", env!("CARGO_PKG_VERSION"))));
        assert!(
            version.trim_end().ends_with(", Kubernetes 1.20–1.33)"),
            "{version}"
        );
    }

    /// The `--set` family keeps command-line order across its flags; `-f` files come first.
    #[test]
    fn values_flags_layer_files_first_then_sets_in_command_line_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.yaml");
        std::fs::write(&file, "api: {tag: from-file}\n").unwrap();
        let cli = Cli::try_parse_from([
            "sandbox",
            "values",
            "api",
            "--branch",
            "feature-x",
            "--set-json",
            "api.tag=1.10",
            "--set",
            "api.tag=1.10,api.n=2",
            "-f",
            file.to_str().unwrap(),
            "--set-string",
            "api.n=2",
        ])
        .unwrap();
        let Command::Values(args) = cli.command else {
            panic!("values");
        };
        let got: Vec<(&str, Vec<Value>)> = args
            .sets
            .0
            .iter()
            .map(|s| {
                (
                    s.origin.as_str(),
                    s.assignments.iter().map(|a| a.value.clone()).collect(),
                )
            })
            .collect();
        let file_origin = format!("values file `{}`", file.display());
        assert_eq!(
            got,
            [
                (file_origin.as_str(), vec![json!({"tag": "from-file"})]),
                ("--set-json", vec![json!(1.1)]),
                ("--set", vec![json!("1.10"), json!(2)]),
                ("--set-string", vec![json!("2")]),
            ]
        );
        let e = Cli::try_parse_from(["sandbox", "values", "api", "-b", "x", "--set", "api.x[a]=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("index `[a]` of `api.x` is not a number"), "{e}");
    }

    /// Every command's `--help` ends with examples of its use.
    #[test]
    fn every_command_has_examples() {
        fn leaves(command: &clap::Command, path: String, out: &mut Vec<(String, String)>) {
            let subcommands: Vec<&clap::Command> = command.get_subcommands().collect();
            if subcommands.is_empty() {
                let help = command.get_after_help().map(|h| h.to_string());
                out.push((path.clone(), help.unwrap_or_default()));
            }
            for sub in subcommands {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut found = Vec::new();
        let cli = <Cli as clap::CommandFactory>::command();
        for sub in cli.get_subcommands() {
            leaves(sub, sub.get_name().to_owned(), &mut found);
        }
        let without: Vec<&String> = found
            .iter()
            .filter(|(_, help)| !help.starts_with("Examples:\n  sandbox "))
            .map(|(path, _)| path)
            .collect();
        assert!(found.len() >= 19, "{found:?}");
        assert!(without.is_empty(), "commands without examples: {without:?}");
    }
}

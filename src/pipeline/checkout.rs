//! Checkout stage: bring every repository of the product to the requested branch.
//!
//! For each [`RepoSpec`] the stage, in parallel (one `spawn_blocking` task per repository,
//! since git2 is blocking):
//!
//! 1. takes an exclusive lock on the repository's mirror (`std::fs::File::lock`, released by
//!    the OS even when the process is killed), so concurrent runs on one cache never corrupt it;
//! 2. connects to the remote once, reads its advertised branches and its default branch (HEAD)
//!    and chooses the branch: the requested one if the remote has it, else the configured
//!    `fallback_branch`, else the remote's default branch (then [`Checkout::fell_back`] is set);
//! 3. fetches **only that branch** into a bare mirror under the cache, shallow (`depth 1`) where
//!    the transport supports it (every transport but local paths and `file://`), and skips the
//!    fetch altogether when the mirror already has the advertised commit;
//! 4. exports the commit's tree (plain files, no `.git`) into `trees/<key>/<sha>`, written to a
//!    temporary directory first and renamed into place, so a directory that exists is complete
//!    and is reused as it is by later runs.
//!
//! # Cache layout
//!
//! ```text
//! <cache_dir>/git/<key>.git      bare mirror of one repository URL (only fetched branches)
//! <cache_dir>/git/<key>.lock     lock file of that mirror and of its trees (never deleted)
//! <cache_dir>/trees/<key>/<sha>  exported working tree of one commit
//! <cache_dir>/trees/<key>/.tmp-<sha>   a tree being written (removed when found stale)
//! ```
//!
//! `<key>` is the URL without scheme, user info and `.git` suffix, reduced to
//! `[A-Za-z0-9._-]` (at most 64 characters), then `-` and the first 12 hex digits of the
//! SHA-256 of the URL as given: `github.com-acme-api-3f2a9c1b0d4e`.
//!
//! # Credentials
//!
//! For SSH URLs the SSH agent (`SSH_AUTH_SOCK`); for HTTPS URLs a token from
//! `SANDBOX_GIT_TOKEN`, else `GITHUB_TOKEN`, sent as user `x-access-token`. Each is offered
//! once per connection phase; when libgit2 asks again, the callback fails instead of looping.

use std::cell::RefCell;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Hint;
use git2::{
    AutotagOption, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions,
    ObjectType, Oid, ProxyOptions, RemoteCallbacks, Repository, RepositoryInitOptions, Tree,
};
use sha2::{Digest, Sha256};

/// Environment variable holding a token for HTTPS remotes (preferred over `GITHUB_TOKEN`).
pub const TOKEN_ENV: &str = "SANDBOX_GIT_TOKEN";
/// Second choice for the HTTPS token.
pub const GITHUB_TOKEN_ENV: &str = "GITHUB_TOKEN";
/// How many branch names an error message lists at most.
const MAX_LISTED_BRANCHES: usize = 10;
/// Hard cap on credential requests per connection phase, whatever libgit2 asks for.
const MAX_CREDENTIAL_REQUESTS: u32 = 4;

/// One repository of the product, as configured in `sandbox.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RepoSpec {
    /// Short name of the repository (used in messages and by later stages).
    pub name: String,
    /// Clone URL: `https://…`, `ssh://…`, `git@host:path`, `git://…`, `file://…` or a local path.
    pub url: String,
    /// Branch to use when the requested branch does not exist; `None`: the remote's HEAD.
    #[serde(default)]
    pub fallback_branch: Option<String>,
}

/// The outcome of checking out one repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkout {
    /// [`RepoSpec::name`].
    pub repo: String,
    /// [`RepoSpec::url`], as configured.
    pub url: String,
    /// The branch that was asked for.
    pub requested_branch: String,
    /// The branch actually used.
    pub branch: String,
    /// `true` when `branch` is the fallback because `requested_branch` does not exist.
    pub fell_back: bool,
    /// Full hex SHA of the checked-out commit.
    pub sha: String,
    /// Directory holding the files of `sha` (no `.git`); shared by all runs that use this commit.
    pub dir: PathBuf,
}

impl Checkout {
    /// The first 7 hex digits of [`Checkout::sha`].
    pub fn short_sha(&self) -> &str {
        self.sha.get(..7).unwrap_or(&self.sha)
    }
}

/// Why one repository could not be checked out.
///
/// URLs in these errors have any password (and, for HTTP(S), any user info) replaced by `***`.
/// The underlying git or I/O error is the [`source`](std::error::Error::source) and is not
/// repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The remote could not be reached or read: wrong URL, host down, network, server error.
    #[error("could not fetch repository `{repo}` from {url}")]
    Fetch {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// What libgit2 reported.
        #[source]
        source: git2::Error,
    },
    /// The remote asked for credentials and refused every one that could be offered.
    #[error("authentication failed for repository `{repo}` at {url} ({})", tried_text(.tried))]
    Auth {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The credentials that were offered, e.g. `SSH agent`; empty when none was available.
        tried: Vec<String>,
        /// What libgit2 reported.
        #[source]
        source: git2::Error,
    },
    /// The remote has neither the requested branch nor the fallback branch.
    #[error(
        "repository `{repo}` ({url}) has neither branch `{requested}` nor fallback branch \
         `{fallback}`; its branches: {}",
        branch_list(.available)
    )]
    BranchMissing {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The branch that was asked for.
        requested: String,
        /// The fallback that was tried: configured, or the remote's default branch.
        fallback: String,
        /// Every branch the remote advertises, sorted (the message shows the first 10).
        available: Vec<String>,
    },
    /// The requested branch does not exist, no fallback is configured, and the remote's HEAD
    /// names no branch (an empty repository, or a detached HEAD).
    #[error(
        "repository `{repo}` ({url}) has no branch `{requested}`, no `fallback_branch` is \
         configured, and the remote has no default branch; its branches: {}",
        branch_list(.available)
    )]
    NoDefaultBranch {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The branch that was asked for.
        requested: String,
        /// Every branch the remote advertises, sorted.
        available: Vec<String>,
    },
    /// The local mirror in the cache could not be read or written by libgit2.
    #[error("the local mirror of `{repo}` ({url}) at {} is unusable", .path.display())]
    Cache {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The mirror's directory.
        path: PathBuf,
        /// What libgit2 reported.
        #[source]
        source: git2::Error,
    },
    /// Reading or writing the cache directory failed.
    #[error("I/O error on {} while checking out `{repo}` ({url})", .path.display())]
    Io {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The blocking task checking out the repository panicked or was cancelled.
    #[error("checking out `{repo}` ({url}) stopped unexpectedly")]
    Task {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl CheckoutError {
    /// [`RepoSpec::name`] of the repository that failed.
    pub fn repo(&self) -> &str {
        match self {
            Self::Fetch { repo, .. }
            | Self::Auth { repo, .. }
            | Self::BranchMissing { repo, .. }
            | Self::NoDefaultBranch { repo, .. }
            | Self::Cache { repo, .. }
            | Self::Io { repo, .. }
            | Self::Task { repo, .. } => repo,
        }
    }

    /// The URL of the repository that failed (credentials redacted).
    pub fn url(&self) -> &str {
        match self {
            Self::Fetch { url, .. }
            | Self::Auth { url, .. }
            | Self::BranchMissing { url, .. }
            | Self::NoDefaultBranch { url, .. }
            | Self::Cache { url, .. }
            | Self::Io { url, .. }
            | Self::Task { url, .. } => url,
        }
    }
}

impl Hint for CheckoutError {
    /// What the user can do about it, when there is something to suggest.
    fn hint(&self) -> Option<String> {
        match self {
            Self::Fetch { repo, url, .. } => Some(format!(
                "check the URL of repo `{repo}` in sandbox.yaml and that {url} is reachable from \
                 here; for a private repository {}",
                credentials_advice(url)
            )),
            Self::Auth { url, .. } => Some(credentials_advice(url)),
            Self::BranchMissing {
                repo,
                requested,
                fallback,
                ..
            } => Some(format!(
                "push the branch `{requested}`, or set `fallback_branch` for repo `{repo}` in \
                 sandbox.yaml to one of its branches (`{fallback}` does not exist)"
            )),
            Self::NoDefaultBranch {
                repo, requested, ..
            } => Some(format!(
                "push the branch `{requested}`, or set `fallback_branch` for repo `{repo}` in \
                 sandbox.yaml"
            )),
            Self::Cache { path, .. } => Some(format!(
                "delete {} (it is only a cache and is fetched again)",
                path.display()
            )),
            Self::Io { path, .. } => Some(format!(
                "check the permissions of {} and the free space on its disk",
                path.display()
            )),
            Self::Task { .. } => None,
        }
    }
}

/// Every repository that could not be checked out (never empty), in input order.
///
/// With exactly one error, [`source`](std::error::Error::source) is that error; with more,
/// there is no single cause: iterate [`CheckoutErrors::errors`] and print each one's chain.
#[derive(Debug)]
pub struct CheckoutErrors(pub Vec<CheckoutError>);

impl CheckoutErrors {
    /// The individual errors, in input order.
    pub fn errors(&self) -> &[CheckoutError] {
        &self.0
    }

    /// The individual errors, in input order.
    pub fn into_errors(self) -> Vec<CheckoutError> {
        self.0
    }
}

impl fmt::Display for CheckoutErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        let names: Vec<String> = self.0.iter().map(|e| format!("`{}`", e.repo())).collect();
        write!(
            f,
            "{n} {} could not be checked out: {}",
            if n == 1 { "repository" } else { "repositories" },
            names.join(", ")
        )
    }
}

impl std::error::Error for CheckoutErrors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.0.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

impl IntoIterator for CheckoutErrors {
    type Item = CheckoutError;
    type IntoIter = std::vec::IntoIter<CheckoutError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a CheckoutErrors {
    type Item = &'a CheckoutError;
    type IntoIter = std::slice::Iter<'a, CheckoutError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Check out `branch` of every repo in parallel. `cache_dir` holds mirrors and trees.
/// On failure returns every failing repo's error, not just the first.
///
/// The result is in the order of `specs`. Credentials come from the environment: see the
/// module documentation.
pub async fn checkout_all(
    specs: &[RepoSpec],
    branch: &str,
    cache_dir: &Path,
) -> Result<Vec<Checkout>, CheckoutErrors> {
    checkout_all_with(specs, branch, cache_dir, Credentials::from_env()).await
}

async fn checkout_all_with(
    specs: &[RepoSpec],
    branch: &str,
    cache_dir: &Path,
    credentials: Credentials,
) -> Result<Vec<Checkout>, CheckoutErrors> {
    let credentials = Arc::new(credentials);
    let tasks = specs.iter().map(|spec| {
        let (spec, branch, cache_dir) = (spec.clone(), branch.to_owned(), cache_dir.to_owned());
        let credentials = Arc::clone(&credentials);
        tokio::task::spawn_blocking(move || checkout_one(&spec, &branch, &cache_dir, &credentials))
    });
    let results = futures::future::join_all(tasks).await;

    let mut done = Vec::with_capacity(specs.len());
    let mut errors = Vec::new();
    for (spec, result) in specs.iter().zip(results) {
        match result {
            Ok(Ok(checkout)) => done.push(checkout),
            Ok(Err(e)) => errors.push(e),
            Err(join) => errors.push(CheckoutError::Task {
                repo: spec.name.clone(),
                url: redact_url(&spec.url),
                source: join,
            }),
        }
    }
    if errors.is_empty() {
        Ok(done)
    } else {
        Err(CheckoutErrors(errors))
    }
}

// ---------------------------------------------------------------------------------------------
// One repository

/// Names the repository in errors.
struct Ctx<'a> {
    repo: &'a str,
    url: String,
}

impl Ctx<'_> {
    fn io(&self, path: &Path, source: io::Error) -> CheckoutError {
        CheckoutError::Io {
            repo: self.repo.to_owned(),
            url: self.url.clone(),
            path: path.to_owned(),
            source,
        }
    }

    fn cache(&self, path: &Path, source: git2::Error) -> CheckoutError {
        CheckoutError::Cache {
            repo: self.repo.to_owned(),
            url: self.url.clone(),
            path: path.to_owned(),
            source,
        }
    }

    /// A failed connect or fetch: an authentication failure if the credentials ran out.
    fn remote(&self, source: git2::Error, auth: &RefCell<AuthState<'_>>) -> CheckoutError {
        let auth = auth.borrow();
        let is_auth = source.code() == ErrorCode::Auth
            || auth.exhausted
            || (source.class() == ErrorClass::Ssh && auth.offered.iter().any(|o| o == SSH_AGENT));
        if is_auth {
            CheckoutError::Auth {
                repo: self.repo.to_owned(),
                url: self.url.clone(),
                tried: auth.offered.clone(),
                source,
            }
        } else {
            CheckoutError::Fetch {
                repo: self.repo.to_owned(),
                url: self.url.clone(),
                source,
            }
        }
    }
}

/// What the remote advertised.
struct Advertisement {
    /// Branch name (without `refs/heads/`) → tip.
    branches: std::collections::BTreeMap<String, Oid>,
    /// The branch HEAD points at, if any.
    default_branch: Option<String>,
}

fn checkout_one(
    spec: &RepoSpec,
    requested: &str,
    cache_dir: &Path,
    credentials: &Credentials,
) -> Result<Checkout, CheckoutError> {
    let ctx = Ctx {
        repo: &spec.name,
        url: redact_url(&spec.url),
    };
    let git_dir = cache_dir.join("git");
    fs::create_dir_all(&git_dir).map_err(|e| ctx.io(&git_dir, e))?;
    // Absolute paths in `Checkout::dir`, whatever the caller's working directory becomes.
    let cache_dir = cache_dir.canonicalize().map_err(|e| ctx.io(cache_dir, e))?;
    let git_dir = cache_dir.join("git");
    let key = cache_key(&spec.url);

    let lock_path = git_dir.join(format!("{key}.lock"));
    let _lock = lock_exclusive(&lock_path).map_err(|e| ctx.io(&lock_path, e))?;

    let mirror_path = git_dir.join(format!("{key}.git"));
    let repo = open_or_init_mirror(&mirror_path, &ctx)?;
    remove_stale_git_locks(&mirror_path).map_err(|e| ctx.io(&mirror_path, e))?;

    let mut remote = repo
        .remote_anonymous(&spec.url)
        .map_err(|e| CheckoutError::Fetch {
            repo: spec.name.clone(),
            url: ctx.url.clone(),
            source: e,
        })?;

    // Phase 1: connect and read the advertisement.
    let connect_auth = RefCell::new(AuthState::new(credentials));
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    let mut connection = remote
        .connect_auth(
            Direction::Fetch,
            Some(callbacks(&connect_auth)),
            Some(proxy),
        )
        .map_err(|e| ctx.remote(e, &connect_auth))?;
    let advert = {
        let heads = connection
            .list()
            .map_err(|e| ctx.remote(e, &connect_auth))?;
        let mut branches = std::collections::BTreeMap::new();
        let mut head_oid = None;
        for head in heads {
            if let Some(name) = head.name().strip_prefix("refs/heads/") {
                branches.insert(name.to_owned(), head.oid());
            } else if head.name() == "HEAD" {
                head_oid = Some(head.oid());
            }
        }
        let default_branch = connection
            .default_branch()
            .ok()
            .and_then(|b| b.as_str().ok().map(str::to_owned))
            .and_then(|b| b.strip_prefix("refs/heads/").map(str::to_owned))
            .filter(|b| branches.contains_key(b))
            .or_else(|| guess_default_branch(&branches, head_oid));
        Advertisement {
            branches,
            default_branch,
        }
    };

    // Choose the branch.
    let (branch, fell_back) = if advert.branches.contains_key(requested) {
        (requested.to_owned(), false)
    } else {
        let available: Vec<String> = advert.branches.keys().cloned().collect();
        let fallback = match (&spec.fallback_branch, &advert.default_branch) {
            (Some(configured), _) => configured.clone(),
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(CheckoutError::NoDefaultBranch {
                    repo: spec.name.clone(),
                    url: ctx.url.clone(),
                    requested: requested.to_owned(),
                    available,
                })
            }
        };
        if !advert.branches.contains_key(&fallback) {
            return Err(CheckoutError::BranchMissing {
                repo: spec.name.clone(),
                url: ctx.url.clone(),
                requested: requested.to_owned(),
                fallback,
                available,
            });
        }
        (fallback, true)
    };
    let advertised = advert.branches[&branch];
    let refname = format!("refs/heads/{branch}");

    // Phase 2: fetch that one branch, unless the mirror already has its tip.
    let up_to_date = repo.refname_to_id(&refname).ok() == Some(advertised)
        && repo.find_commit(advertised).is_ok();
    if !up_to_date {
        let refspec = format!("+{refname}:{refname}");
        let mut shallow = !is_local_url(&spec.url);
        loop {
            let fetch_auth = RefCell::new(AuthState::new(credentials));
            let mut options = FetchOptions::new();
            let mut proxy = ProxyOptions::new();
            proxy.auto();
            options
                .remote_callbacks(callbacks(&fetch_auth))
                .proxy_options(proxy)
                .download_tags(AutotagOption::None)
                .update_fetchhead(false);
            if shallow {
                options.depth(1);
            }
            match connection
                .remote()
                .fetch(&[refspec.as_str()], Some(&mut options), None)
            {
                Ok(()) => break,
                // A local path libgit2 recognised but `is_local_url` did not: fetch it whole.
                Err(e) if shallow && is_shallow_unsupported(&e) => shallow = false,
                Err(e) => return Err(ctx.remote(e, &fetch_auth)),
            }
        }
    }
    drop(connection);

    let oid = repo
        .refname_to_id(&refname)
        .map_err(|e| ctx.cache(&mirror_path, e))?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| ctx.cache(&mirror_path, e))?;
    let sha = oid.to_string();
    let dir = materialize(&repo, &tree, &cache_dir.join("trees").join(&key), &sha).map_err(
        |e| match e {
            ExportError::Io(path, e) => ctx.io(&path, e),
            ExportError::Git(e) => ctx.cache(&mirror_path, e),
        },
    )?;

    Ok(Checkout {
        repo: spec.name.clone(),
        url: spec.url.clone(),
        requested_branch: requested.to_owned(),
        branch,
        fell_back,
        sha,
        dir,
    })
}

/// Without a `symref` capability: the one branch whose tip is HEAD's (main or master first).
fn guess_default_branch(
    branches: &std::collections::BTreeMap<String, Oid>,
    head: Option<Oid>,
) -> Option<String> {
    let head = head?;
    let candidates: Vec<&String> = branches
        .iter()
        .filter(|(_, oid)| **oid == head)
        .map(|(name, _)| name)
        .collect();
    ["main", "master"]
        .iter()
        .find_map(|pref| candidates.iter().find(|c| c.as_str() == *pref))
        .or(if candidates.len() == 1 {
            candidates.first()
        } else {
            None
        })
        .map(|s| (*s).clone())
}

fn is_shallow_unsupported(e: &git2::Error) -> bool {
    let msg = e.message();
    msg.contains("shallow") && msg.contains("not supported")
}

/// Open the bare mirror, or create it (in a temporary directory renamed into place). A mirror
/// libgit2 cannot open is deleted and created anew: it is only a cache.
fn open_or_init_mirror(path: &Path, ctx: &Ctx<'_>) -> Result<Repository, CheckoutError> {
    if path.exists() {
        if let Ok(repo) = Repository::open_bare(path) {
            return Ok(repo);
        }
        fs::remove_dir_all(path).map_err(|e| ctx.io(path, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".tmp-{name}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| ctx.io(&tmp, e))?;
    }
    let mut options = RepositoryInitOptions::new();
    options.bare(true).no_reinit(true).mkpath(true);
    drop(Repository::init_opts(&tmp, &options).map_err(|e| ctx.cache(&tmp, e))?);
    fs::rename(&tmp, path).map_err(|e| ctx.io(path, e))?;
    Repository::open_bare(path).map_err(|e| ctx.cache(path, e))
}

/// libgit2's own `*.lock` files (refs, packed-refs, shallow, config) left by a killed run would
/// make every later update fail. We hold the mirror's lock, so any such file is stale.
fn remove_stale_git_locks(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if entry.file_name() != "objects" {
                remove_stale_git_locks(&path)?;
            }
        } else if path.extension().is_some_and(|e| e == "lock") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// An exclusive advisory lock (`flock`) held until the returned file is dropped. The OS
/// releases it when the process dies, so a killed run never leaves a stale lock.
fn lock_exclusive(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

// ---------------------------------------------------------------------------------------------
// Credentials

const SSH_AGENT: &str = "SSH agent";

/// Credentials available to the callbacks, read once from the environment.
#[derive(Debug, Clone, Default)]
struct Credentials {
    /// `(variable name, token)`.
    token: Option<(&'static str, String)>,
}

impl Credentials {
    fn from_env() -> Self {
        let token = [TOKEN_ENV, GITHUB_TOKEN_ENV].into_iter().find_map(|var| {
            std::env::var(var)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(|t| (var, t.trim().to_owned()))
        });
        Credentials { token }
    }
}

/// Offers each kind of credential once; libgit2 calls the callback again after every rejected
/// credential, so without this it would ask forever.
struct AuthState<'c> {
    credentials: &'c Credentials,
    requests: u32,
    tried_username: bool,
    tried_agent: bool,
    tried_token: bool,
    /// Human-readable descriptions of the credentials offered, for error messages.
    offered: Vec<String>,
    /// The callback refused to answer (nothing left to offer).
    exhausted: bool,
}

impl<'c> AuthState<'c> {
    fn new(credentials: &'c Credentials) -> Self {
        AuthState {
            credentials,
            requests: 0,
            tried_username: false,
            tried_agent: false,
            tried_token: false,
            offered: Vec::new(),
            exhausted: false,
        }
    }

    fn next(
        &mut self,
        username_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        self.requests += 1;
        let user = username_from_url.unwrap_or("git");
        if self.requests <= MAX_CREDENTIAL_REQUESTS {
            // SSH without a user in the URL: libgit2 first asks for the user name.
            if allowed.contains(CredentialType::USERNAME) && !self.tried_username {
                self.tried_username = true;
                return Cred::username(user);
            }
            if allowed.contains(CredentialType::SSH_KEY) && !self.tried_agent {
                self.tried_agent = true;
                if let Ok(cred) = Cred::ssh_key_from_agent(user) {
                    self.offered.push(SSH_AGENT.to_owned());
                    return Ok(cred);
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !self.tried_token {
                self.tried_token = true;
                if let Some((var, token)) = &self.credentials.token {
                    if let Ok(cred) = Cred::userpass_plaintext("x-access-token", token) {
                        self.offered.push(format!("token from {var}"));
                        return Ok(cred);
                    }
                }
            }
        }
        self.exhausted = true;
        Err(git2::Error::new(
            ErrorCode::Auth,
            ErrorClass::Callback,
            "no further credentials to offer",
        ))
    }
}

fn callbacks<'a>(state: &'a RefCell<AuthState<'_>>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks
        .credentials(move |_url, username, allowed| state.borrow_mut().next(username, allowed));
    callbacks
}

fn tried_text(tried: &[String]) -> String {
    if tried.is_empty() {
        "no credentials were available".to_owned()
    } else {
        format!("tried: {}", tried.join(", "))
    }
}

fn branch_list(branches: &[String]) -> String {
    if branches.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<String> = branches
        .iter()
        .take(MAX_LISTED_BRANCHES)
        .map(|b| format!("`{b}`"))
        .collect();
    let mut s = shown.join(", ");
    if branches.len() > MAX_LISTED_BRANCHES {
        s.push_str(&format!(
            " and {} more",
            branches.len() - MAX_LISTED_BRANCHES
        ));
    }
    s
}

fn credentials_advice(url: &str) -> String {
    if is_http_url(url) {
        format!("set {TOKEN_ENV} (or {GITHUB_TOKEN_ENV}) to a token that can read the repository")
    } else if is_local_url(url) {
        "check that the path exists and is readable".to_owned()
    } else {
        "add a key that can read the repository to the SSH agent (`ssh-add`) and check that \
         SSH_AUTH_SOCK is set"
            .to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Working trees

enum ExportError {
    Io(PathBuf, io::Error),
    Git(git2::Error),
}

impl From<git2::Error> for ExportError {
    fn from(e: git2::Error) -> Self {
        ExportError::Git(e)
    }
}

trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, ExportError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, ExportError> {
        self.map_err(|e| ExportError::Io(path.to_owned(), e))
    }
}

/// `trees_dir/<sha>`, exported unless it already exists. The caller holds the mirror's lock,
/// which also guards `trees_dir`.
fn materialize(
    repo: &Repository,
    tree: &Tree<'_>,
    trees_dir: &Path,
    sha: &str,
) -> Result<PathBuf, ExportError> {
    let target = trees_dir.join(sha);
    if target.is_dir() {
        return Ok(target);
    }
    fs::create_dir_all(trees_dir).at(trees_dir)?;
    // Leftovers of interrupted runs (we hold the lock, so nobody is writing them).
    for entry in fs::read_dir(trees_dir).at(trees_dir)? {
        let entry = entry.at(trees_dir)?;
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            fs::remove_dir_all(entry.path()).at(&entry.path())?;
        }
    }
    let tmp = trees_dir.join(format!(".tmp-{sha}"));
    fs::create_dir(&tmp).at(&tmp)?;
    export_tree(repo, tree, &tmp)?;
    fs::rename(&tmp, &target).at(&target)?;
    Ok(target)
}

fn export_tree(repo: &Repository, tree: &Tree<'_>, dir: &Path) -> Result<(), ExportError> {
    for entry in tree.iter() {
        let name = entry_name(entry.name_bytes());
        let Some(name) = name.filter(|n| is_safe_entry_name(n)) else {
            return Err(ExportError::Io(
                dir.to_owned(),
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "refusing tree entry {:?}",
                        String::from_utf8_lossy(entry.name_bytes())
                    ),
                ),
            ));
        };
        let path = dir.join(&name);
        match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) => {
                fs::create_dir(&path).at(&path)?;
                let subtree = repo.find_tree(entry.id())?;
                export_tree(repo, &subtree, &path)?;
            }
            (Some(ObjectType::Blob), 0o120000) => {
                let blob = repo.find_blob(entry.id())?;
                write_symlink(blob.content(), &path).at(&path)?;
            }
            (Some(ObjectType::Blob), mode) => {
                let blob = repo.find_blob(entry.id())?;
                write_file(blob.content(), mode & 0o111 != 0, &path).at(&path)?;
            }
            // A submodule (a commit entry): an empty directory, as `git checkout` leaves it.
            _ => fs::create_dir(&path).at(&path)?,
        }
    }
    Ok(())
}

#[cfg(unix)]
fn entry_name(bytes: &[u8]) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    Some(std::ffi::OsStr::from_bytes(bytes).to_owned())
}

#[cfg(not(unix))]
fn entry_name(bytes: &[u8]) -> Option<std::ffi::OsString> {
    std::str::from_utf8(bytes).ok().map(Into::into)
}

/// One path component, never escaping the directory nor planting a `.git`.
fn is_safe_entry_name(name: &std::ffi::OsStr) -> bool {
    let s = name.to_string_lossy();
    !(s.is_empty()
        || s == "."
        || s == ".."
        || s.eq_ignore_ascii_case(".git")
        || s.contains(['/', '\\', '\0']))
}

fn write_file(content: &[u8], executable: bool, path: &Path) -> io::Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o755 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    options.open(path)?.write_all(content)
}

#[cfg(unix)]
fn write_symlink(target: &[u8], path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path)
}

#[cfg(not(unix))]
fn write_symlink(target: &[u8], path: &Path) -> io::Result<()> {
    write_file(target, false, path)
}

// ---------------------------------------------------------------------------------------------
// URLs

/// Whether libgit2 uses its local transport (no shallow fetch) for `url`: `file://` URLs and
/// plain paths, as opposed to `scheme://…` and scp-like `[user@]host:path`.
fn is_local_url(url: &str) -> bool {
    if let Some((scheme, _)) = url.split_once("://") {
        return scheme.eq_ignore_ascii_case("file");
    }
    match url.find(':') {
        None => true,
        Some(colon) => {
            let before_any_slash = url.find('/').is_none_or(|slash| colon < slash);
            let drive_letter = colon == 1 && url.as_bytes()[0].is_ascii_alphabetic();
            !before_any_slash || drive_letter
        }
    }
}

fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// `url` with the password replaced by `***`; for HTTP(S), the whole user info (a token may
/// stand there alone).
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let userinfo = if is_http_url(url) {
        "***".to_owned()
    } else {
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => userinfo.to_owned(),
        }
    };
    format!("{scheme}://{userinfo}@{host}{path}")
}

/// Directory name of a URL's mirror: readable part + 12 hex digits of the URL's SHA-256.
fn cache_key(url: &str) -> String {
    let mut readable = url.split_once("://").map_or(url, |(_, rest)| rest);
    if let Some((authority, _)) = readable.split_once('/') {
        if let Some(at) = authority.rfind('@') {
            readable = &readable[at + 1..];
        }
    } else if let Some(at) = readable.rfind('@') {
        readable = &readable[at + 1..];
    }
    let readable = readable.trim_end_matches('/');
    let readable = readable.strip_suffix(".git").unwrap_or(readable);

    let mut name = String::new();
    for c in readable.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let mut name: String = name.trim_matches(['-', '.']).chars().take(64).collect();
    name = name.trim_end_matches(['-', '.']).to_owned();
    if name.is_empty() {
        name.push_str("repo");
    }
    let digest = Sha256::digest(url.as_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}-{hash}")
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use git2::build::TreeUpdateBuilder;
    use git2::{FileMode, Signature};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use tempfile::TempDir;

    // -- fixtures: real bare repositories built with git2 -------------------------------------

    /// A bare repository whose HEAD points at `refs/heads/<head>`.
    fn bare_repo(path: &Path, head: &str) -> Repository {
        let mut options = RepositoryInitOptions::new();
        options.bare(true).initial_head(head).mkpath(true);
        Repository::init_opts(path, &options).unwrap()
    }

    /// Commit `files` (path → content; `None` deletes) on `branch`, on top of the branch's tip,
    /// else of `from`'s tip, else as a root commit. Paths may be nested; a path ending in
    /// `.sh` is executable.
    fn commit(
        repo: &Repository,
        branch: &str,
        from: Option<&str>,
        files: &[(&str, Option<&str>)],
    ) -> Oid {
        let refname = format!("refs/heads/{branch}");
        let parent_ref = repo
            .refname_to_id(&refname)
            .ok()
            .or_else(|| from.map(|f| repo.refname_to_id(&format!("refs/heads/{f}")).unwrap()));
        let parent = parent_ref.map(|oid| repo.find_commit(oid).unwrap());
        let baseline = match &parent {
            Some(p) => p.tree().unwrap(),
            None => {
                let empty = repo.treebuilder(None).unwrap().write().unwrap();
                repo.find_tree(empty).unwrap()
            }
        };
        let mut update = TreeUpdateBuilder::new();
        for (path, content) in files {
            match content {
                Some(content) => {
                    let blob = repo.blob(content.as_bytes()).unwrap();
                    let mode = if path.ends_with(".sh") {
                        FileMode::BlobExecutable
                    } else {
                        FileMode::Blob
                    };
                    update.upsert(*path, blob, mode);
                }
                None => {
                    update.remove(*path);
                }
            }
        }
        let tree = repo
            .find_tree(update.create_updated(repo, &baseline).unwrap())
            .unwrap();
        let sig = Signature::now("Test", "test@example.com").unwrap();
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        repo.commit(Some(&refname), &sig, &sig, "test commit", &tree, &parents)
            .unwrap()
    }

    /// A remote with `main` (README.md, config/app.yaml, run.sh) and, if asked, `feature-x`.
    fn product_repo(path: &Path, with_feature: bool) -> Repository {
        let repo = bare_repo(path, "main");
        commit(
            &repo,
            "main",
            None,
            &[
                ("README.md", Some("main readme\n")),
                ("config/app.yaml", Some("replicas: 1\n")),
                ("run.sh", Some("#!/bin/sh\necho hi\n")),
            ],
        );
        if with_feature {
            commit(
                &repo,
                "feature-x",
                Some("main"),
                &[("README.md", Some("feature readme\n"))],
            );
        }
        repo
    }

    fn spec(name: &str, url: impl Into<String>) -> RepoSpec {
        RepoSpec {
            name: name.to_owned(),
            url: url.into(),
            fallback_branch: None,
        }
    }

    fn tip(repo: &Repository, branch: &str) -> String {
        repo.refname_to_id(&format!("refs/heads/{branch}"))
            .unwrap()
            .to_string()
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    fn url_of(path: &Path) -> String {
        path.to_str().unwrap().to_owned()
    }

    async fn checkout_one_async(spec: RepoSpec, branch: &str, cache: &Path) -> Checkout {
        let mut all = checkout_all(&[spec], branch, cache).await.unwrap();
        all.pop().unwrap()
    }

    fn mirror(cache: &Path, url: &str) -> Repository {
        Repository::open_bare(cache.join("git").join(format!("{}.git", cache_key(url)))).unwrap()
    }

    /// A port on 127.0.0.1 nobody listens on (right now).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    // -- branch selection ---------------------------------------------------------------------

    #[tokio::test]
    async fn requested_branch_present() {
        let tmp = TempDir::new().unwrap();
        let remote = product_repo(&tmp.path().join("api.git"), true);
        let url = url_of(&tmp.path().join("api.git"));
        let cache = tmp.path().join("cache");

        let c = checkout_one_async(spec("api", &url), "feature-x", &cache).await;

        assert_eq!(c.repo, "api");
        assert_eq!(c.url, url);
        assert_eq!(c.requested_branch, "feature-x");
        assert_eq!(c.branch, "feature-x");
        assert!(!c.fell_back);
        assert_eq!(c.sha, tip(&remote, "feature-x"));
        assert_eq!(c.short_sha(), &c.sha[..7]);
        assert!(c.dir.is_absolute());
        assert!(c.dir.starts_with(cache.canonicalize().unwrap()));
        assert_eq!(read(&c.dir, "README.md"), "feature readme\n");
        assert_eq!(read(&c.dir, "config/app.yaml"), "replicas: 1\n");
        assert!(!c.dir.join(".git").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| fs::metadata(c.dir.join(f)).unwrap().permissions().mode();
            assert_ne!(mode("run.sh") & 0o111, 0, "run.sh should be executable");
            assert_eq!(mode("README.md") & 0o111, 0);
        }
        // Only the requested branch was fetched, and a local remote is fetched in full.
        let m = mirror(&cache, &url);
        assert!(m.find_reference("refs/heads/feature-x").is_ok());
        assert!(m.find_reference("refs/heads/main").is_err());
        assert!(!m.is_shallow());
    }

    #[tokio::test]
    async fn falls_back_to_the_remote_default_branch() {
        let tmp = TempDir::new().unwrap();
        // The default branch is `trunk`, to show it comes from HEAD, not from a guess.
        let remote = bare_repo(&tmp.path().join("web.git"), "trunk");
        commit(
            &remote,
            "trunk",
            None,
            &[("index.html", Some("<p>trunk</p>"))],
        );
        commit(
            &remote,
            "other",
            Some("trunk"),
            &[("index.html", Some("other"))],
        );
        let url = url_of(&tmp.path().join("web.git"));
        let cache = tmp.path().join("cache");

        let c = checkout_one_async(spec("web", &url), "feature-x", &cache).await;

        assert_eq!(c.requested_branch, "feature-x");
        assert_eq!(c.branch, "trunk");
        assert!(c.fell_back);
        assert_eq!(c.sha, tip(&remote, "trunk"));
        assert_eq!(read(&c.dir, "index.html"), "<p>trunk</p>");
        let m = mirror(&cache, &url);
        assert!(m.find_reference("refs/heads/other").is_err());
    }

    #[tokio::test]
    async fn configured_fallback_branch_wins_over_head() {
        let tmp = TempDir::new().unwrap();
        let remote = product_repo(&tmp.path().join("worker.git"), false);
        commit(
            &remote,
            "develop",
            Some("main"),
            &[("README.md", Some("develop\n"))],
        );
        let cache = tmp.path().join("cache");
        let mut s = spec("worker", url_of(&tmp.path().join("worker.git")));
        s.fallback_branch = Some("develop".into());

        let c = checkout_one_async(s, "feature-x", &cache).await;

        assert_eq!(c.branch, "develop");
        assert!(c.fell_back);
        assert_eq!(c.sha, tip(&remote, "develop"));
        assert_eq!(read(&c.dir, "README.md"), "develop\n");
    }

    #[tokio::test]
    async fn missing_branch_and_missing_fallback_lists_the_branches() {
        let tmp = TempDir::new().unwrap();
        let remote = product_repo(&tmp.path().join("db.git"), false);
        for i in 0..12 {
            commit(
                &remote,
                &format!("b{i:02}"),
                Some("main"),
                &[("x", Some("x"))],
            );
        }
        let cache = tmp.path().join("cache");
        let mut s = spec("db", url_of(&tmp.path().join("db.git")));
        s.fallback_branch = Some("develop".into());

        let errors = checkout_all(&[s], "feature-x", &cache).await.unwrap_err();

        assert_eq!(errors.errors().len(), 1);
        let e = &errors.errors()[0];
        match e {
            CheckoutError::BranchMissing {
                requested,
                fallback,
                available,
                ..
            } => {
                assert_eq!(requested, "feature-x");
                assert_eq!(fallback, "develop");
                assert_eq!(available.len(), 13);
            }
            other => panic!("unexpected error {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("`db`"), "{msg}");
        assert!(
            msg.contains("`feature-x`") && msg.contains("`develop`"),
            "{msg}"
        );
        assert!(msg.contains("b00") && msg.contains("b09"), "{msg}");
        assert!(msg.contains("and 3 more"), "{msg}");
        let hint = e.hint().unwrap();
        assert!(
            hint.contains("fallback_branch") && hint.contains("`db`"),
            "{hint}"
        );
        assert!(errors
            .to_string()
            .contains("1 repository could not be checked out"));
        // One error: it is the source, so the cause chain reaches it.
        assert!(std::error::Error::source(&errors).is_some());
    }

    #[tokio::test]
    async fn empty_remote_has_no_default_branch() {
        let tmp = TempDir::new().unwrap();
        bare_repo(&tmp.path().join("empty.git"), "main");
        let cache = tmp.path().join("cache");

        let errors = checkout_all(
            &[spec("empty", url_of(&tmp.path().join("empty.git")))],
            "feature-x",
            &cache,
        )
        .await
        .unwrap_err();

        assert!(
            matches!(&errors.errors()[0], CheckoutError::NoDefaultBranch { requested, .. } if requested == "feature-x"),
            "{:?}",
            errors.errors()[0]
        );
        assert!(errors.errors()[0]
            .hint()
            .unwrap()
            .contains("fallback_branch"));
    }

    // -- cache behaviour ----------------------------------------------------------------------

    #[tokio::test]
    async fn second_run_fetches_the_new_commit_and_updates_the_tree() {
        let tmp = TempDir::new().unwrap();
        let remote = product_repo(&tmp.path().join("api.git"), true);
        let url = url_of(&tmp.path().join("api.git"));
        let cache = tmp.path().join("cache");

        let first = checkout_one_async(spec("api", &url), "feature-x", &cache).await;
        commit(
            &remote,
            "feature-x",
            None,
            &[
                ("README.md", Some("second\n")),
                ("config/app.yaml", None),
                ("new/file.txt", Some("new\n")),
            ],
        );
        let second = checkout_one_async(spec("api", &url), "feature-x", &cache).await;

        assert_ne!(first.sha, second.sha);
        assert_eq!(second.sha, tip(&remote, "feature-x"));
        assert_ne!(first.dir, second.dir);
        assert_eq!(read(&second.dir, "README.md"), "second\n");
        assert_eq!(read(&second.dir, "new/file.txt"), "new\n");
        assert!(!second.dir.join("config/app.yaml").exists());
        // The first tree is untouched (a concurrent run may still read it).
        assert_eq!(read(&first.dir, "README.md"), "feature readme\n");
    }

    #[tokio::test]
    async fn unchanged_second_run_reuses_the_tree() {
        let tmp = TempDir::new().unwrap();
        product_repo(&tmp.path().join("api.git"), true);
        let url = url_of(&tmp.path().join("api.git"));
        let cache = tmp.path().join("cache");

        let first = checkout_one_async(spec("api", &url), "feature-x", &cache).await;
        fs::write(first.dir.join("marker"), "still here").unwrap();
        // A half-written tree of an interrupted run is cleaned away, never used.
        let stale = first.dir.parent().unwrap().join(".tmp-0000");
        fs::create_dir_all(stale.join("sub")).unwrap();
        let second = checkout_one_async(spec("api", &url), "feature-x", &cache).await;

        assert_eq!(first, second);
        assert_eq!(read(&second.dir, "marker"), "still here");
        assert!(stale.exists(), "nothing new to write, so nothing to clean");
    }

    #[tokio::test]
    async fn interrupted_tree_is_never_taken_as_complete() {
        let tmp = TempDir::new().unwrap();
        let remote = product_repo(&tmp.path().join("api.git"), false);
        let url = url_of(&tmp.path().join("api.git"));
        let cache = tmp.path().join("cache");
        let sha = tip(&remote, "main");
        // What a killed run leaves: a temp dir with part of the files.
        let trees = cache.join("trees").join(cache_key(&url));
        fs::create_dir_all(trees.join(format!(".tmp-{sha}"))).unwrap();
        fs::write(trees.join(format!(".tmp-{sha}")).join("README.md"), "half").unwrap();

        let c = checkout_one_async(spec("api", &url), "main", &cache).await;

        assert_eq!(c.sha, sha);
        assert_eq!(read(&c.dir, "README.md"), "main readme\n");
        assert!(!trees.join(format!(".tmp-{sha}")).exists());
    }

    #[tokio::test]
    async fn stale_git_lock_files_in_the_mirror_are_removed() {
        let tmp = TempDir::new().unwrap();
        let remote = product_repo(&tmp.path().join("api.git"), false);
        let url = url_of(&tmp.path().join("api.git"));
        let cache = tmp.path().join("cache");
        checkout_one_async(spec("api", &url), "main", &cache).await;
        let m = cache.join("git").join(format!("{}.git", cache_key(&url)));
        fs::write(m.join("refs/heads/main.lock"), "").unwrap();
        commit(&remote, "main", None, &[("README.md", Some("v2\n"))]);

        let c = checkout_one_async(spec("api", &url), "main", &cache).await;

        assert_eq!(read(&c.dir, "README.md"), "v2\n");
    }

    #[tokio::test]
    async fn parallel_checkout_of_three_repos_keeps_input_order() {
        let tmp = TempDir::new().unwrap();
        let a = product_repo(&tmp.path().join("a.git"), true);
        let b = product_repo(&tmp.path().join("b.git"), false);
        let c = product_repo(&tmp.path().join("c.git"), true);
        let cache = tmp.path().join("cache");
        let specs = [
            spec("a", url_of(&tmp.path().join("a.git"))),
            spec("b", url_of(&tmp.path().join("b.git"))),
            spec("c", url_of(&tmp.path().join("c.git"))),
        ];

        let out = checkout_all(&specs, "feature-x", &cache).await.unwrap();

        let summary: Vec<(&str, &str, bool)> = out
            .iter()
            .map(|c| (c.repo.as_str(), c.branch.as_str(), c.fell_back))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", "feature-x", false),
                ("b", "main", true),
                ("c", "feature-x", false)
            ]
        );
        assert_eq!(out[0].sha, tip(&a, "feature-x"));
        assert_eq!(out[1].sha, tip(&b, "main"));
        assert_eq!(out[2].sha, tip(&c, "feature-x"));
        assert_eq!(read(&out[1].dir, "README.md"), "main readme\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_runs_on_one_cache_agree() {
        let tmp = TempDir::new().unwrap();
        let mut tips = Vec::new();
        let mut specs = Vec::new();
        for name in ["a", "b", "c"] {
            let repo = product_repo(&tmp.path().join(format!("{name}.git")), true);
            tips.push(tip(&repo, "feature-x"));
            specs.push(spec(name, url_of(&tmp.path().join(format!("{name}.git")))));
        }
        // The same URL twice in one run shares one mirror, too.
        specs.push(spec("a-again", specs[0].url.clone()));
        tips.push(tips[0].clone());
        let cache = tmp.path().join("cache");

        let runs = (0..4).map(|_| checkout_all(&specs, "feature-x", &cache));
        let results = futures::future::join_all(runs).await;

        for result in results {
            let out = result.unwrap();
            let shas: Vec<&str> = out.iter().map(|c| c.sha.as_str()).collect();
            assert_eq!(shas, tips);
            for c in &out {
                assert_eq!(read(&c.dir, "README.md"), "feature readme\n");
            }
        }
    }

    // -- failures -----------------------------------------------------------------------------

    #[tokio::test]
    async fn unreachable_urls_fail_naming_the_repo_and_all_errors_are_reported() {
        let tmp = TempDir::new().unwrap();
        product_repo(&tmp.path().join("ok.git"), true);
        let cache = tmp.path().join("cache");
        let refused = format!("git://127.0.0.1:{}/nothing.git", free_port());
        let specs = [
            spec("gone", &refused),
            spec("ok", url_of(&tmp.path().join("ok.git"))),
            spec("nowhere", url_of(&tmp.path().join("does-not-exist.git"))),
        ];

        let errors = checkout_all(&specs, "feature-x", &cache).await.unwrap_err();

        assert_eq!(
            errors.to_string(),
            "2 repositories could not be checked out: `gone`, `nowhere`"
        );
        assert!(std::error::Error::source(&errors).is_none());
        let [gone, nowhere] = errors.errors() else {
            panic!("{errors:?}")
        };
        assert!(matches!(gone, CheckoutError::Fetch { .. }), "{gone:?}");
        assert!(
            matches!(nowhere, CheckoutError::Fetch { .. }),
            "{nowhere:?}"
        );
        assert_eq!(gone.repo(), "gone");
        let msg = gone.to_string();
        assert!(msg.contains("`gone`") && msg.contains(&refused), "{msg}");
        // The cause is the source, not repeated in the message.
        let source = std::error::Error::source(gone).unwrap().to_string();
        assert!(!msg.contains(&source), "{msg} / {source}");
        assert!(gone.hint().unwrap().contains("sandbox.yaml"));
    }

    /// An HTTP server answering every request with 401: the credentials callback must give up
    /// after offering the token once instead of letting libgit2 ask forever.
    struct Always401 {
        port: u16,
        requests: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Always401 {
        fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let requests = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                use std::io::{Read, Write};
                while !s.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            stream
                                .set_read_timeout(Some(Duration::from_secs(5)))
                                .unwrap();
                            let mut buf = Vec::new();
                            let mut chunk = [0u8; 1024];
                            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                match stream.read(&mut chunk) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                }
                            }
                            r.fetch_add(1, Ordering::SeqCst);
                            let _ = stream.write_all(
                                b"HTTP/1.1 401 Unauthorized\r\n\
                                  WWW-Authenticate: Basic realm=\"test\"\r\n\
                                  Content-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            Always401 {
                port,
                requests,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Always401 {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[tokio::test]
    async fn rejected_token_fails_as_auth_error_without_looping() {
        let server = Always401::start();
        let tmp = TempDir::new().unwrap();
        let url = format!("http://127.0.0.1:{}/acme/private.git", server.port);
        let credentials = Credentials {
            token: Some((TOKEN_ENV, "wrong".into())),
        };

        let errors = checkout_all_with(&[spec("private", &url)], "main", tmp.path(), credentials)
            .await
            .unwrap_err();

        let e = &errors.errors()[0];
        match e {
            CheckoutError::Auth { tried, .. } => {
                assert_eq!(tried, &[format!("token from {TOKEN_ENV}")])
            }
            other => panic!("expected an auth error, got {other:?}"),
        }
        assert!(e.hint().unwrap().contains(TOKEN_ENV));
        assert!(e.to_string().contains("`private`"));
        let n = server.requests.load(Ordering::SeqCst);
        assert!((2..=4).contains(&n), "{n} requests");
    }

    #[tokio::test]
    async fn no_token_fails_as_auth_error_at_once() {
        let server = Always401::start();
        let tmp = TempDir::new().unwrap();
        let url = format!("http://127.0.0.1:{}/acme/private.git", server.port);

        let errors = checkout_all_with(
            &[spec("private", &url)],
            "main",
            tmp.path(),
            Credentials::default(),
        )
        .await
        .unwrap_err();

        let e = &errors.errors()[0];
        assert!(
            matches!(e, CheckoutError::Auth { tried, .. } if tried.is_empty()),
            "{e:?}"
        );
        assert!(e.to_string().contains("no credentials were available"));
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn credentials_are_offered_once_each() {
        let creds = Credentials {
            token: Some((GITHUB_TOKEN_ENV, "t".into())),
        };
        // SSH: user name, then the agent once, then give up.
        let mut ssh = AuthState::new(&creds);
        assert!(ssh.next(None, CredentialType::USERNAME).is_ok());
        assert!(ssh.next(Some("git"), CredentialType::SSH_KEY).is_ok());
        assert_eq!(ssh.offered, [SSH_AGENT]);
        let Err(err) = ssh.next(Some("git"), CredentialType::SSH_KEY) else {
            panic!("the agent must be offered only once")
        };
        assert_eq!(err.code(), ErrorCode::Auth);
        assert!(ssh.exhausted);
        // HTTPS: the token once, then give up.
        let mut https = AuthState::new(&creds);
        assert!(https
            .next(None, CredentialType::USER_PASS_PLAINTEXT)
            .is_ok());
        assert_eq!(https.offered, [format!("token from {GITHUB_TOKEN_ENV}")]);
        assert!(https
            .next(None, CredentialType::USER_PASS_PLAINTEXT)
            .is_err());
        // No token: nothing to offer at all.
        let none = Credentials::default();
        let mut https = AuthState::new(&none);
        assert!(https
            .next(None, CredentialType::USER_PASS_PLAINTEXT)
            .is_err());
        assert!(https.offered.is_empty());
        // Whatever libgit2 asks, a bounded number of answers.
        let mut any = AuthState::new(&creds);
        let answered = (0..100)
            .filter(|_| any.next(None, CredentialType::all()).is_ok())
            .count();
        assert_eq!(answered, 3);
    }

    // -- shallow fetch over git:// ------------------------------------------------------------

    /// `git daemon` serving `base` on 127.0.0.1; killed on drop.
    struct GitDaemon {
        child: Child,
        port: u16,
    }

    impl GitDaemon {
        fn start(base: &Path) -> Self {
            let port = free_port();
            // Run `git-daemon` itself: `git daemon` would fork it as a child that killing
            // `git` leaves running.
            let exec_path = Command::new("git")
                .arg("--exec-path")
                .output()
                .expect("git is needed (Debian package `git`)");
            let exec_path = String::from_utf8(exec_path.stdout).unwrap();
            let daemon = Path::new(exec_path.trim()).join("git-daemon");
            assert!(
                daemon.exists(),
                "{} is missing (Debian package `git` ships it)",
                daemon.display()
            );
            let child = Command::new(daemon)
                .arg("--reuseaddr")
                .arg(format!("--base-path={}", base.display()))
                .arg("--export-all")
                .arg(format!("--port={port}"))
                .arg("--listen=127.0.0.1")
                .arg(base)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("could not start git-daemon");
            let mut daemon = GitDaemon { child, port };
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    panic!("git daemon exited: {status}");
                }
                assert!(Instant::now() < deadline, "git daemon did not listen");
                std::thread::sleep(Duration::from_millis(50));
            }
            daemon
        }

        fn url(&self, repo: &str) -> String {
            format!("git://127.0.0.1:{}/{repo}", self.port)
        }
    }

    impl Drop for GitDaemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn shallow_fetch_over_git_daemon() {
        let tmp = TempDir::new().unwrap();
        let served = tmp.path().join("served");
        let remote = product_repo(&served.join("api.git"), true);
        for i in 0..3 {
            commit(&remote, "main", None, &[("n", Some(&i.to_string()))]);
        }
        let daemon = GitDaemon::start(&served);
        let url = daemon.url("api.git");
        let cache = tmp.path().join("cache");

        let c = checkout_one_async(spec("api", &url), "feature-x", &cache).await;
        assert_eq!(c.sha, tip(&remote, "feature-x"));
        assert_eq!(read(&c.dir, "README.md"), "feature readme\n");
        let m = mirror(&cache, &url);
        assert!(m.is_shallow());
        let shallow = fs::read_to_string(m.path().join("shallow")).unwrap();
        assert_eq!(shallow.lines().count(), 1, "one commit deep: {shallow}");

        // Fallback over git:// uses the advertised HEAD symref; a new commit is fetched.
        let fb = checkout_one_async(spec("api", &url), "nope", &cache).await;
        assert_eq!((fb.branch.as_str(), fb.fell_back), ("main", true));
        assert_eq!(read(&fb.dir, "n"), "2");
        commit(&remote, "main", None, &[("n", Some("3"))]);
        let again = checkout_one_async(spec("api", &url), "nope", &cache).await;
        assert_eq!(again.sha, tip(&remote, "main"));
        assert_eq!(read(&again.dir, "n"), "3");
        assert!(mirror(&cache, &url).is_shallow());
        // The mirror holds the fetched tips, not main's 5-commit history: the walk stops at
        // the shallow boundary (the previous tip, already present, may be reached too).
        let m = mirror(&cache, &url);
        let mut walk = m.revwalk().unwrap();
        walk.push(Oid::from_str(&again.sha).unwrap()).unwrap();
        let depth = walk.count();
        assert!((1..=2).contains(&depth), "{depth} commits reachable");
        drop(daemon);
    }

    // -- helpers ------------------------------------------------------------------------------

    #[test]
    fn local_urls_are_detected() {
        for local in [
            "/srv/git/api.git",
            "./api",
            "../x/api.git",
            "api.git",
            "file:///srv/git/api.git",
            "FILE:///x",
            "C:\\repos\\api",
            "some/dir:with-colon",
        ] {
            assert!(is_local_url(local), "{local}");
        }
        for remote in [
            "https://github.com/acme/api.git",
            "ssh://git@github.com/acme/api.git",
            "git@github.com:acme/api.git",
            "github.com:acme/api.git",
            "git://127.0.0.1:9418/api.git",
        ] {
            assert!(!is_local_url(remote), "{remote}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://x-access-token:s3cr3t@github.com/acme/api.git"),
            "https://***@github.com/acme/api.git"
        );
        assert_eq!(
            redact_url("https://ghp_token@github.com/acme/api.git"),
            "https://***@github.com/acme/api.git"
        );
        assert_eq!(
            redact_url("ssh://git:pw@host/acme/api.git"),
            "ssh://git:***@host/acme/api.git"
        );
        assert_eq!(
            redact_url("ssh://git@host/acme/api.git"),
            "ssh://git@host/acme/api.git"
        );
        assert_eq!(
            redact_url("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
        assert_eq!(redact_url("/srv/a@b/c"), "/srv/a@b/c");
    }

    #[test]
    fn cache_keys_are_readable_and_distinct() {
        let k = cache_key("https://user:pw@github.com/acme/api.git");
        assert!(k.starts_with("github.com-acme-api-"), "{k}");
        assert!(!k.contains("pw"), "{k}");
        assert_eq!(k.len(), "github.com-acme-api-".len() + 12);
        assert!(cache_key("git@github.com:acme/api.git").starts_with("github.com-acme-api-"));
        assert_ne!(
            cache_key("https://github.com/acme/api.git"),
            cache_key("ssh://git@github.com/acme/api.git")
        );
        assert_eq!(
            cache_key("https://github.com/acme/api.git"),
            cache_key("https://github.com/acme/api.git")
        );
        let long = format!("https://h/{}", "x".repeat(300));
        assert!(cache_key(&long).len() <= 64 + 13);
        assert!(cache_key("/../..").starts_with("repo-"));
        let weird = cache_key("/tmp/ä b/../c");
        assert!(
            weird
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{weird}"
        );
        assert!(
            !weird.starts_with('.') && !weird.starts_with('-'),
            "{weird}"
        );
    }

    #[test]
    fn branch_lists_are_capped() {
        let few: Vec<String> = ["main", "dev"].iter().map(|s| s.to_string()).collect();
        assert_eq!(branch_list(&few), "`main`, `dev`");
        assert_eq!(branch_list(&[]), "none");
        let many: Vec<String> = (0..25).map(|i| format!("b{i}")).collect();
        assert!(branch_list(&many).ends_with("`b9` and 15 more"));
    }

    #[test]
    fn unsafe_entry_names_are_refused() {
        for bad in ["", ".", "..", ".git", ".GIT", "a/b", "a\\b"] {
            assert!(!is_safe_entry_name(std::ffi::OsStr::new(bad)), "{bad:?}");
        }
        assert!(is_safe_entry_name(std::ffi::OsStr::new(".gitignore")));
    }
}

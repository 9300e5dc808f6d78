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
//! 4. exports the commit's tree (plain files, no `.git`, no symlinks: each is resolved in the
//!    commit and copied, or refused; see `tree_plan`) into `trees-v2/<key>/<sha>`, within the
//!    caps of `repo_files:` per repository and per sandbox, written to a temporary directory
//!    first and renamed into place, so a directory that exists is complete and is reused as it
//!    is by later runs.
//!
//! # Cache layout
//!
//! `<dir>` is the directory given to [`checkout_all`] (the connector passes
//! `<cache_dir>/git`); the stage adds no segment of its own before the mirrors:
//!
//! ```text
//! <dir>/<key>.git                bare mirror of one repository URL (only fetched branches)
//! <dir>/<key>.lock               lock file of that mirror and of its trees (never deleted)
//! <dir>/trees-v2/<key>/<sha>        exported working tree of one commit
//! <dir>/trees-v2/<key>/.tmp-<sha>   a tree being written (removed when found stale)
//! <dir>/trees/<key>/<sha>           a tree of older versions, which wrote symlinks as
//!                                   symlinks: never used, pruned an hour after its last use
//! ```
//!
//! Each checkout sets the modification time of `<key>.lock` and of the tree it uses to now:
//! `prune` (`sandbox cache prune`) reads them as the time of last use.
//!
//! `<key>` is the URL without scheme, user info and `.git` suffix, reduced to
//! `[A-Za-z0-9._-]` (at most 64 characters), then `-` and the first 12 hex digits of the
//! SHA-256 of the URL as given: `github.com-acme-api-3f2a9c1b0d4e` (so no key is `trees` or `trees-v2`).
//!
//! # Credentials
//!
//! For SSH URLs the SSH agent (`SSH_AUTH_SOCK`), then `SANDBOX_GIT_SSH_KEY` and the default keys
//! in `~/.ssh`; for HTTPS URLs a token from `SANDBOX_GIT_TOKEN`, else `SANDBOX_GITHUB_TOKEN`,
//! `GITHUB_TOKEN`, `GH_TOKEN`, sent as user `x-access-token`, then the user's git credential
//! helpers. Each is offered once per connection phase; when libgit2 asks again, the callback
//! fails instead of looping.
//!
//! # Files
//!
//! This file holds the stage's interface and the steps of one repository's checkout, in order;
//! `fetch` talks to the remote and keeps the mirror, `credentials` answers libgit2's
//! credential requests, `tree_plan` decides what a tree's export writes (symlinks, caps),
//! `export` writes it, `url` reads URLs, `error` holds the errors.

mod credentials;
mod error;
mod export;
mod fetch;
mod files;
mod prune;
mod tree_plan;
mod url;

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::Repository;

pub(crate) use self::credentials::use_https_token_from;
use self::credentials::{AuthState, Credentials};
use self::error::ErrorContext;
pub(crate) use self::error::{CheckoutError, CheckoutErrors};
use self::export::{mark_used, materialize, ExportError, SandboxBudget};
use self::fetch::{
    connect, fetch_branch, lock_exclusive, mirror_has_tip, open_or_init_mirror, read_advertisement,
    remove_stale_git_locks, Advertisement,
};
pub(crate) use self::files::{resolves_inside, FileProblem, RepoFileError, RepoTree};
pub(crate) use self::prune::{prune, EntryKind, PruneError, PrunePolicy, PruneReport};
use self::url::{cache_key, redact_url};
use crate::pipeline::config::RepoFileLimits;

/// The directory of exported trees under the checkout cache. Its name changes when what a tree
/// holds does (`trees`, before symlinks were resolved), so no tree of another kind is reused.
pub(crate) const TREES_DIR: &str = "trees-v2";

/// Where older versions exported trees; only pruned.
pub(crate) const LEGACY_TREES_DIR: &str = "trees";

/// Where checkouts keep their mirrors and trees under the tool's cache directory.
pub(crate) fn cache_under(cache_dir: &Path) -> PathBuf {
    cache_dir.join("git")
}

/// One repository of the product, as configured in `sandbox.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct RepoSpec {
    /// Short name of the repository (used in messages and by later stages).
    pub(crate) name: String,
    /// Clone URL: `https://…`, `ssh://…`, `git@host:path`, `git://…`, `file://…` or a local path.
    pub(crate) url: String,
    /// Branch to use when the requested branch does not exist; `None`: the remote's HEAD.
    #[serde(default)]
    pub(crate) fallback_branch: Option<String>,
}

/// The outcome of checking out one repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Checkout {
    /// [`RepoSpec::name`].
    pub(crate) repo: String,
    /// [`RepoSpec::url`], as configured.
    pub(crate) url: String,
    /// The branch that was asked for.
    pub(crate) requested_branch: String,
    /// The branch actually used.
    pub(crate) branch: String,
    /// `true` when `branch` is the fallback because `requested_branch` does not exist.
    pub(crate) fell_back: bool,
    /// Full hex SHA of the checked-out commit.
    pub(crate) sha: String,
    /// Directory holding the files of `sha` (no `.git`); shared by all runs that use this commit.
    pub(crate) dir: PathBuf,
}

impl Checkout {
    /// The first 7 hex digits of [`Checkout::sha`].
    pub(crate) fn short_sha(&self) -> &str {
        self.sha.get(..7).unwrap_or(&self.sha)
    }
}

/// Check out `branch` of every repo in parallel. `cache_dir` directly holds the mirrors and
/// the trees (see "Cache layout" in the module documentation); it is created if missing.
/// A tree over one of `limits` (a file over `max_blob_size`, a tree over its caps, the trees
/// together over the sandbox's) fails its repository's checkout, as a symlink leading out of
/// its tree does. On failure returns every failing repo's error, not just the first.
///
/// The result is in the order of `specs`. Credentials come from the environment: see the
/// module documentation.
pub(crate) async fn checkout_all(
    specs: &[RepoSpec],
    branch: &str,
    cache_dir: &Path,
    limits: &RepoFileLimits,
) -> Result<Vec<Checkout>, CheckoutErrors> {
    checkout_all_with(specs, branch, cache_dir, limits, Credentials::from_env()).await
}

/// [`checkout_all`] with the given credentials instead of the environment's.
async fn checkout_all_with(
    specs: &[RepoSpec],
    branch: &str,
    cache_dir: &Path,
    limits: &RepoFileLimits,
    credentials: Credentials,
) -> Result<Vec<Checkout>, CheckoutErrors> {
    let credentials = Arc::new(credentials);
    let budget = Arc::new(SandboxBudget::new(limits));
    let tasks = specs.iter().map(|spec| {
        let (spec, branch, cache_dir) = (spec.clone(), branch.to_owned(), cache_dir.to_owned());
        let (credentials, budget, limits) =
            (Arc::clone(&credentials), Arc::clone(&budget), *limits);
        tokio::task::spawn_blocking(move || {
            let export = ExportLimits {
                limits: &limits,
                budget: &budget,
            };
            checkout_one(&spec, &branch, &cache_dir, &export, &credentials)
        })
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

/// Where one repository's files live in the cache; absolute, so [`Checkout::dir`] stays valid
/// whatever the caller's working directory becomes.
struct CachePaths {
    /// The lock file held while the mirror and the trees are in use.
    lock: PathBuf,
    /// The bare mirror.
    mirror: PathBuf,
    /// The exported trees, one directory per commit.
    trees: PathBuf,
}

impl CachePaths {
    /// The paths for `url` under `cache_dir`, which is created if missing.
    fn create(cache_dir: &Path, url: &str, ctx: &ErrorContext<'_>) -> Result<Self, CheckoutError> {
        fs::create_dir_all(cache_dir).map_err(|e| ctx.io(cache_dir, e))?;
        let dir = cache_dir.canonicalize().map_err(|e| ctx.io(cache_dir, e))?;
        let key = cache_key(url);
        Ok(CachePaths {
            lock: dir.join(format!("{key}.lock")),
            mirror: dir.join(format!("{key}.git")),
            trees: dir.join(TREES_DIR).join(key),
        })
    }
}

/// What one repository's export must stay within.
struct ExportLimits<'a> {
    limits: &'a RepoFileLimits,
    /// Shared by the repositories of one `checkout_all`.
    budget: &'a SandboxBudget,
}

/// The steps of the module documentation, for one repository.
fn checkout_one(
    spec: &RepoSpec,
    requested: &str,
    cache_dir: &Path,
    export: &ExportLimits<'_>,
    credentials: &Credentials,
) -> Result<Checkout, CheckoutError> {
    let ctx = ErrorContext::new(spec);
    let paths = CachePaths::create(cache_dir, &spec.url, &ctx)?;
    let _lock = lock_exclusive(&paths.lock).map_err(|e| ctx.io(&paths.lock, e))?;
    mark_used(&paths.lock).map_err(|e| ctx.io(&paths.lock, e))?;
    let repo = open_or_init_mirror(&paths.mirror, &ctx)?;
    remove_stale_git_locks(&paths.mirror).map_err(|e| ctx.io(&paths.mirror, e))?;

    // Phase 1: connect and read the advertisement.
    let mut remote = repo.remote_anonymous(&spec.url).map_err(|e| ctx.fetch(e))?;
    let connect_auth = RefCell::new(AuthState::new(credentials, &spec.url));
    let mut connection =
        connect(&mut remote, &connect_auth).map_err(|e| ctx.remote(e, &connect_auth))?;
    let advert = read_advertisement(&connection).map_err(|e| ctx.remote(e, &connect_auth))?;
    let (branch, fell_back) = choose_branch(spec, requested, &advert, &ctx)?;

    // Phase 2: fetch that one branch, unless the mirror already has its tip.
    let refname = format!("refs/heads/{branch}");
    if !mirror_has_tip(&repo, &refname, advert.branches[&branch]) {
        fetch_branch(&mut connection, &refname, &spec.url, credentials, &ctx)?;
    }
    drop(connection);

    let (sha, dir) = export_tip(&repo, &refname, &paths, export, &ctx)?;
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

/// The requested branch if the remote has it, else the fallback: the configured one, else the
/// remote's default branch. Returns the branch and whether it is the fallback.
fn choose_branch(
    spec: &RepoSpec,
    requested: &str,
    advert: &Advertisement,
    ctx: &ErrorContext<'_>,
) -> Result<(String, bool), CheckoutError> {
    if advert.branches.contains_key(requested) {
        return Ok((requested.to_owned(), false));
    }
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
    Ok((fallback, true))
}

/// Export the tree of the commit `refname` points at in the mirror: its SHA and directory.
fn export_tip(
    repo: &Repository,
    refname: &str,
    paths: &CachePaths,
    export: &ExportLimits<'_>,
    ctx: &ErrorContext<'_>,
) -> Result<(String, PathBuf), CheckoutError> {
    let oid = repo
        .refname_to_id(refname)
        .map_err(|e| ctx.cache(&paths.mirror, e))?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| ctx.cache(&paths.mirror, e))?;
    let sha = oid.to_string();
    let dir = materialize(
        repo,
        &tree,
        &paths.trees,
        &sha,
        export.limits,
        export.budget,
    )
    .map_err(|e| match e {
        ExportError::Io(path, e) => ctx.io(&path, e),
        ExportError::Git(e) => ctx.cache(&paths.mirror, e),
        ExportError::TooLarge(path, size) => CheckoutError::BlobTooLarge {
            repo: ctx.repo.to_owned(),
            url: ctx.url.clone(),
            sha: sha.clone(),
            path,
            size,
            limit: export.limits.max_blob_size,
        },
        ExportError::Link(link) => CheckoutError::Symlink {
            repo: ctx.repo.to_owned(),
            url: ctx.url.clone(),
            sha: sha.clone(),
            link: Box::new(link),
        },
        ExportError::Cap(crossed) => CheckoutError::OverCap {
            repo: ctx.repo.to_owned(),
            url: ctx.url.clone(),
            sha: sha.clone(),
            cap: crossed.cap,
            reached: crossed.reached,
            limit: crossed.limit,
            at: crossed.at,
        },
    })?;
    Ok((sha, dir))
}

#[cfg(test)]
mod tests;

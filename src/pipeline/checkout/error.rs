//! Why a checkout failed: one [`CheckoutError`] per repository, gathered in [`CheckoutErrors`],
//! each with a hint; and [`ErrorContext`], which names the repository in every error.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use git2::{ErrorClass, ErrorCode};

use super::credentials::{
    AuthState, GH_TOKEN_ENV, GITHUB_TOKEN_ENV, SERVE_TOKEN_ENV, SSH_AGENT, TOKEN_ENV,
};
use super::tree_plan::{Cap, LinkError, LinkProblem, MAX_LINKS};
use super::url::{is_http_url, is_local_url, redact_url};
use super::RepoSpec;
use crate::error::Hint;
use crate::text::format_size;

/// How many branch names an error message lists at most.
const MAX_LISTED_BRANCHES: usize = 10;

/// Why one repository could not be checked out.
///
/// URLs in these errors have any password (and, for HTTP(S), any user info) replaced by `***`.
/// The underlying git or I/O error is the [`source`](std::error::Error::source) and is not
/// repeated in the message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckoutError {
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
    #[error(
        "authentication failed for repository `{repo}` at {url} ({})",
        tried_text(.tried, .withheld.as_deref())
    )]
    Auth {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The credentials that were offered, e.g. `SSH agent`; empty when none was available.
        tried: Vec<String>,
        /// Why the credentials there are were not offered (wrong host or scheme), if so.
        withheld: Option<String>,
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
    /// A file of the commit is larger than `repo_files.max_blob_size`.
    #[error(
        "`{path}` in repository `{repo}` ({url}) at {sha} is {}, over the {} limit for a file",
        format_size(*.size),
        format_size(*.limit)
    )]
    BlobTooLarge {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The commit.
        sha: String,
        /// The file's path in the commit.
        path: String,
        size: u64,
        limit: u64,
    },
    /// A symlink of the commit leads out of its tree, to nothing, or into a loop: the exported
    /// tree holds no symlinks, each is copied from what it leads to in the commit or refused.
    #[error(
        "symlink `{}` in repository `{repo}` ({url}) at {sha} leads {}: {}",
        .link.path,
        .link.problem,
        chain_text(&.link.chain)
    )]
    Symlink {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The commit.
        sha: String,
        /// The link's path in the commit, its target, the chain and what is wrong.
        link: Box<LinkError>,
    },
    /// The tree, or the trees of the sandbox together, would be over a cap of `repo_files:`.
    #[error("{}", over_cap_text(.repo, .url, .sha, *.cap, *.reached, *.limit, .at.as_deref()))]
    OverCap {
        /// [`RepoSpec::name`].
        repo: String,
        /// The URL (credentials redacted).
        url: String,
        /// The commit.
        sha: String,
        cap: Cap,
        /// Files and directories, or bytes, counted when the cap was crossed.
        reached: u64,
        limit: u64,
        /// The path in the tree that crossed a tree's cap.
        at: Option<String>,
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
    pub(super) fn repo(&self) -> &str {
        match self {
            Self::Fetch { repo, .. }
            | Self::Auth { repo, .. }
            | Self::BranchMissing { repo, .. }
            | Self::NoDefaultBranch { repo, .. }
            | Self::Cache { repo, .. }
            | Self::Io { repo, .. }
            | Self::BlobTooLarge { repo, .. }
            | Self::Symlink { repo, .. }
            | Self::OverCap { repo, .. }
            | Self::Task { repo, .. } => repo,
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
            Self::Auth {
                repo,
                withheld: Some(_),
                ..
            } => Some(format!(
                "give repo `{repo}` an https:// or ssh URL in sandbox.yaml, on the host that \
                 serves it (a redirect elsewhere gets no credentials)"
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
            Self::BlobTooLarge { path, .. } => Some(format!(
                "remove `{path}` from the branch (store large files outside git), or raise \
                 `repo_files.max_blob_size` in sandbox.yaml"
            )),
            Self::Symlink { link, .. } if matches!(link.problem, LinkProblem::Missing(_)) => {
                Some(format!(
                    "make `{}` point to a file or directory of the commit, or remove it: \
                     dangling symlinks are refused",
                    link.path
                ))
            }
            Self::Symlink { link, .. } => Some(format!(
                "make `{}` point to a file or directory inside the repository (by a relative \
                 path), or commit a copy of the file instead: sandbox copies what a symlink \
                 leads to within the commit and refuses any other, since helm, builds and \
                 sandbox itself would follow it to the host's files",
                link.path
            )),
            Self::OverCap { cap, .. } => Some(format!(
                "a blob repeated under many paths, or a symlink copying a directory many times, \
                 packs small in git but is written out whole each time; if the branch really \
                 needs this, raise `repo_files.{}` in sandbox.yaml",
                cap.setting()
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
pub(crate) struct CheckoutErrors(pub(super) Vec<CheckoutError>);

impl CheckoutErrors {
    /// The individual errors, in input order.
    pub(crate) fn errors(&self) -> &[CheckoutError] {
        &self.0
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

/// Names the repository being checked out in the errors made while doing so.
pub(super) struct ErrorContext<'a> {
    /// [`RepoSpec::name`].
    pub(super) repo: &'a str,
    /// [`RepoSpec::url`], credentials redacted.
    pub(super) url: String,
}

impl<'a> ErrorContext<'a> {
    pub(super) fn new(spec: &'a RepoSpec) -> Self {
        ErrorContext {
            repo: &spec.name,
            url: redact_url(&spec.url),
        }
    }

    pub(super) fn io(&self, path: &Path, source: io::Error) -> CheckoutError {
        CheckoutError::Io {
            repo: self.repo.to_owned(),
            url: self.url.clone(),
            path: path.to_owned(),
            source,
        }
    }

    pub(super) fn cache(&self, path: &Path, source: git2::Error) -> CheckoutError {
        CheckoutError::Cache {
            repo: self.repo.to_owned(),
            url: self.url.clone(),
            path: path.to_owned(),
            source,
        }
    }

    pub(super) fn fetch(&self, source: git2::Error) -> CheckoutError {
        CheckoutError::Fetch {
            repo: self.repo.to_owned(),
            url: self.url.clone(),
            source,
        }
    }

    /// A failed connect or fetch: an authentication failure if the credentials ran out.
    pub(super) fn remote(
        &self,
        source: git2::Error,
        auth: &RefCell<AuthState<'_>>,
    ) -> CheckoutError {
        let auth = auth.borrow();
        let is_auth = source.code() == ErrorCode::Auth
            || auth.exhausted
            || (source.class() == ErrorClass::Ssh && auth.offered.iter().any(|o| o == SSH_AGENT));
        if is_auth {
            CheckoutError::Auth {
                repo: self.repo.to_owned(),
                url: self.url.clone(),
                tried: auth.offered.clone(),
                withheld: auth.withheld.clone(),
                source,
            }
        } else {
            self.fetch(source)
        }
    }
}

/// `a` -> `b`, then `b` -> `c`: the links followed.
fn chain_text(chain: &[(String, String)]) -> String {
    let hops: Vec<String> = chain
        .iter()
        .map(|(path, target)| format!("`{path}` -> `{target}`"))
        .collect();
    hops.join(", then ")
}

fn over_cap_text(
    repo: &str,
    url: &str,
    sha: &str,
    cap: Cap,
    reached: u64,
    limit: u64,
    at: Option<&str>,
) -> String {
    let amount = |n: u64| {
        if cap.counts_bytes() {
            format_size(n)
        } else {
            format!("{n} files and directories")
        }
    };
    let setting = format!("`repo_files.{}`", cap.setting());
    if cap.is_per_sandbox() {
        format!(
            "the repositories of this sandbox would write more than {} to the cache together \
             (the per-sandbox cap {setting}): {} with repository `{repo}` ({url}) at {sha}",
            amount(limit),
            amount(reached)
        )
    } else {
        let at = at.map(|p| format!(" at `{p}`")).unwrap_or_default();
        format!(
            "repository `{repo}` ({url}) at {sha} would write more than {} to the cache (the \
             per-repository cap {setting}), counting every copy of a file: {} reached{at}",
            amount(limit),
            amount(reached)
        )
    }
}

fn tried_text(tried: &[String], withheld: Option<&str>) -> String {
    match (tried.is_empty(), withheld) {
        (_, Some(why)) => format!("credentials withheld: {why}"),
        (true, None) => "no credentials were available".to_owned(),
        (false, None) => format!("tried: {}", tried.join(", ")),
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
        format!(
            "set {TOKEN_ENV} (or {SERVE_TOKEN_ENV}, {GITHUB_TOKEN_ENV} or {GH_TOKEN_ENV}) to a \
             token that can read the repository, or configure a git credential helper \
             (`git config --global credential.helper ...`)"
        )
    } else if is_local_url(url) {
        "check that the path exists and is readable".to_owned()
    } else {
        "add a key that can read the repository to the SSH agent (`ssh-add`, with SSH_AUTH_SOCK \
         set), or put it in ~/.ssh (id_ed25519, id_ecdsa, id_rsa) or in SANDBOX_GIT_SSH_KEY \
         (unencrypted: nothing prompts for a passphrase)"
            .to_owned()
    }
}

impl fmt::Display for LinkProblem {
    /// What follows "leads" in [`CheckoutError::Symlink`]'s message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkProblem::Absolute => f.write_str("out of the repository (to an absolute path)"),
            LinkProblem::Escapes => f.write_str("out of the repository (`..` goes past its root)"),
            LinkProblem::Missing(path) => {
                write!(f, "to nothing: `{path}` does not exist in the commit")
            }
            LinkProblem::NotADirectory(path) => {
                write!(f, "through `{path}`, a file, as if it were a directory")
            }
            LinkProblem::TooManyLinks => {
                write!(f, "through more than {MAX_LINKS} symlinks (a loop)")
            }
            LinkProblem::ContainsItself => f.write_str(
                "to a directory that holds the link itself (copying it would never end)",
            ),
            LinkProblem::TargetTooLong => f.write_str("nowhere: its target is too long a path"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_lists_are_capped() {
        let few: Vec<String> = ["main", "dev"].iter().map(|s| s.to_string()).collect();
        assert_eq!(branch_list(&few), "`main`, `dev`");
        assert_eq!(branch_list(&[]), "none");
        let many: Vec<String> = (0..25).map(|i| format!("b{i}")).collect();
        assert!(branch_list(&many).ends_with("`b9` and 15 more"));
    }
}

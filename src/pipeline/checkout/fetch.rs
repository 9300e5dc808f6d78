//! Talking to the remote and keeping the mirror: the lock, the bare mirror, the remote's
//! advertisement, and the fetch of one branch.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use git2::{
    AutotagOption, Direction, FetchOptions, Oid, ProxyOptions, Remote, RemoteConnection,
    Repository, RepositoryInitOptions,
};

use super::credentials::{callbacks, AuthState, Credentials};
use super::error::{CheckoutError, ErrorContext};
use super::url::is_local_url;

/// An exclusive advisory lock (`flock`) held until the returned file is dropped. The OS
/// releases it when the process dies, so a killed run never leaves a stale lock.
pub(super) fn lock_exclusive(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// Open the bare mirror, or create it (in a temporary directory renamed into place). A mirror
/// libgit2 cannot open is deleted and created anew: it is only a cache.
pub(super) fn open_or_init_mirror(
    path: &Path,
    ctx: &ErrorContext<'_>,
) -> Result<Repository, CheckoutError> {
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
pub(super) fn remove_stale_git_locks(dir: &Path) -> io::Result<()> {
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

/// What the remote advertised.
pub(super) struct Advertisement {
    /// Branch name (without `refs/heads/`) → tip.
    pub(super) branches: BTreeMap<String, Oid>,
    /// The branch HEAD points at, if any.
    pub(super) default_branch: Option<String>,
}

/// Connect to `remote` for fetching, offering credentials from `auth`.
pub(super) fn connect<'repo, 'conn, 'cb>(
    remote: &'conn mut Remote<'repo>,
    auth: &'cb RefCell<AuthState<'_>>,
) -> Result<RemoteConnection<'repo, 'conn, 'cb>, git2::Error> {
    remote.connect_auth(Direction::Fetch, Some(callbacks(auth)), Some(auto_proxy()))
}

/// The branches the remote advertises, and its default branch.
pub(super) fn read_advertisement(
    connection: &RemoteConnection<'_, '_, '_>,
) -> Result<Advertisement, git2::Error> {
    let mut branches = BTreeMap::new();
    let mut head_oid = None;
    for head in connection.list()? {
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
    Ok(Advertisement {
        branches,
        default_branch,
    })
}

/// Without a `symref` capability: the one branch whose tip is HEAD's (main or master first).
fn guess_default_branch(branches: &BTreeMap<String, Oid>, head: Option<Oid>) -> Option<String> {
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

/// Whether the mirror already has `refname` at the advertised tip (then there is nothing to
/// fetch).
pub(super) fn mirror_has_tip(repo: &Repository, refname: &str, advertised: Oid) -> bool {
    repo.refname_to_id(refname).ok() == Some(advertised) && repo.find_commit(advertised).is_ok()
}

/// Fetch only `refname` into the mirror, shallow (`depth 1`) where the transport supports it.
/// Each attempt offers the credentials anew.
pub(super) fn fetch_branch(
    connection: &mut RemoteConnection<'_, '_, '_>,
    refname: &str,
    url: &str,
    credentials: &Credentials,
    ctx: &ErrorContext<'_>,
) -> Result<(), CheckoutError> {
    let refspec = format!("+{refname}:{refname}");
    let mut shallow = !is_local_url(url);
    loop {
        let fetch_auth = RefCell::new(AuthState::new(credentials, url));
        let mut options = fetch_options(&fetch_auth, shallow);
        match connection
            .remote()
            .fetch(&[refspec.as_str()], Some(&mut options), None)
        {
            Ok(()) => return Ok(()),
            // A local path libgit2 recognised but `is_local_url` did not: fetch it whole.
            Err(e) if shallow && is_shallow_unsupported(&e) => shallow = false,
            Err(e) => return Err(ctx.remote(e, &fetch_auth)),
        }
    }
}

/// Fetch one refspec, no tags, no `FETCH_HEAD`; one commit deep when `shallow`.
fn fetch_options<'a>(auth: &'a RefCell<AuthState<'_>>, shallow: bool) -> FetchOptions<'a> {
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks(auth))
        .proxy_options(auto_proxy())
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    if shallow {
        options.depth(1);
    }
    options
}

/// Proxy settings that libgit2 detects itself, from git's configuration.
fn auto_proxy<'a>() -> ProxyOptions<'a> {
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    proxy
}

fn is_shallow_unsupported(e: &git2::Error) -> bool {
    let msg = e.message();
    msg.contains("shallow") && msg.contains("not supported")
}

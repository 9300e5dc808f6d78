//! Pruning the cache: exported trees no live sandbox runs, and mirrors nobody fetched lately.
//! Without it a long-running `sandbox serve` exports a tree per push and fills its volume.
//!
//! Last use is the modification time: of `trees-v2/<key>/<sha>` for a tree (set each time a
//! checkout exports or reuses it) and of `<key>.lock` for a mirror (set each time a checkout
//! takes the mirror's lock). Each key is pruned under its lock, taken without waiting: a key a
//! checkout is using is skipped and pruned next time. Lock files stay (an empty file per
//! repository URL): deleting one while another process waits on it would let two hold "the"
//! lock. Trees of older versions (`trees/`, which held symlinks) are never used: each goes an
//! hour after its last use (an older binary may still be reading it), live or not.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{LEGACY_TREES_DIR, TREES_DIR};
use crate::error::Hint;

/// A tree no live sandbox runs is kept this long after its last use: `render`, `diff` and an
/// `up` that has not written its record yet use trees no record names.
pub(crate) const TREE_GRACE: Duration = Duration::from_secs(60 * 60);

/// What to prune.
#[derive(Debug, Clone)]
pub(crate) struct PrunePolicy {
    /// The commits (full SHAs) of every live sandbox; `None` when the cluster could not be
    /// asked: then trees are pruned by age alone, like mirrors.
    pub(crate) live_commits: Option<BTreeSet<String>>,
    /// Mirrors (and, without `live_commits`, trees) unused for longer than this go.
    pub(crate) older_than: Duration,
    /// Only report what would go.
    pub(crate) dry_run: bool,
    pub(crate) now: SystemTime,
}

/// What a cache entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EntryKind {
    Mirror,
    Tree,
}

/// One entry removed (or that would be, with `dry_run`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Pruned {
    pub(crate) kind: EntryKind,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    /// How long ago it was last used (whole seconds).
    #[serde(rename = "unused_for_seconds", serialize_with = "seconds")]
    pub(crate) unused_for: Duration,
}

/// What a prune did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct PruneReport {
    pub(crate) pruned: Vec<Pruned>,
    /// Repositories skipped because a checkout held their lock.
    pub(crate) busy: Vec<PathBuf>,
}

impl PruneReport {
    pub(crate) fn bytes(&self) -> u64 {
        self.pruned.iter().map(|p| p.bytes).sum()
    }
}

/// The cache could not be read or an entry not removed.
#[derive(Debug, thiserror::Error)]
#[error("could not prune the cache at {}", .path.display())]
pub(crate) struct PruneError {
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: io::Error,
}

impl Hint for PruneError {
    fn hint(&self) -> Option<String> {
        Some(format!(
            "check the permissions of {}; the cache may also be deleted by hand while no \
             sandbox command runs",
            self.path.display()
        ))
    }
}

trait At<T> {
    fn at(self, path: &Path) -> Result<T, PruneError>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, PruneError> {
        self.map_err(|source| PruneError {
            path: path.to_owned(),
            source,
        })
    }
}

/// Prune the checkout cache at `cache_dir` (the directory `checkout_all` was given).
pub(crate) fn prune(cache_dir: &Path, policy: &PrunePolicy) -> Result<PruneReport, PruneError> {
    let mut report = PruneReport::default();
    if !cache_dir.is_dir() {
        return Ok(report);
    }
    for key in keys(cache_dir)? {
        let lock_path = cache_dir.join(format!("{key}.lock"));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        // Last use is read before locking: taking the lock does not change it.
        let mirror_used = modified(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                report.busy.push(cache_dir.join(format!("{key}.git")));
                continue;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).at(&lock_path),
        }
        for (trees, legacy) in [(TREES_DIR, false), (LEGACY_TREES_DIR, true)] {
            let dir = cache_dir.join(trees).join(&key);
            prune_trees(&dir, legacy, policy, &mut report)?;
        }
        let mirror = cache_dir.join(format!("{key}.git"));
        let unused_for = age(policy.now, mirror_used);
        if mirror.is_dir() && unused_for > policy.older_than {
            remove(&mirror, EntryKind::Mirror, unused_for, policy, &mut report)?;
        }
        drop(lock);
    }
    Ok(report)
}

/// Every repository key of the cache: of the mirrors, and of the trees (a mirror may be gone).
fn keys(cache_dir: &Path) -> Result<BTreeSet<String>, PruneError> {
    let mut keys = BTreeSet::new();
    for entry in fs::read_dir(cache_dir).at(cache_dir)? {
        let name = entry
            .at(cache_dir)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(key) = name
            .strip_suffix(".git")
            .filter(|k| !k.starts_with(".tmp-"))
        {
            keys.insert(key.to_owned());
        }
    }
    for trees in [TREES_DIR, LEGACY_TREES_DIR] {
        let trees = cache_dir.join(trees);
        if !trees.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&trees).at(&trees)? {
            let entry = entry.at(&trees)?;
            if entry.file_type().at(&trees)?.is_dir() {
                keys.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    Ok(keys)
}

/// The trees of one repository (its lock held): a leftover `.tmp-*` always goes; a commit's
/// tree goes when no live sandbox runs it and it is past the grace, or, when nobody could say
/// what is live, when it is older than the policy's age. A `legacy` tree (never used) goes
/// past the grace.
fn prune_trees(
    dir: &Path,
    legacy: bool,
    policy: &PrunePolicy,
    report: &mut PruneReport,
) -> Result<(), PruneError> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let unused_for = age(policy.now, modified(&path)?);
        let expired = match &policy.live_commits {
            _ if name.starts_with(".tmp-") => true, // we hold the lock: nobody is writing it
            _ if legacy => unused_for > TREE_GRACE,
            Some(live) => !live.contains(&name) && unused_for > TREE_GRACE,
            None => unused_for > policy.older_than,
        };
        if expired {
            remove(&path, EntryKind::Tree, unused_for, policy, report)?;
        }
    }
    if !policy.dry_run && fs::read_dir(dir).at(dir)?.next().is_none() {
        fs::remove_dir(dir).at(dir)?;
    }
    Ok(())
}

fn remove(
    path: &Path,
    kind: EntryKind,
    unused_for: Duration,
    policy: &PrunePolicy,
    report: &mut PruneReport,
) -> Result<(), PruneError> {
    let bytes = disk_usage(path)?;
    if !policy.dry_run {
        // `remove_dir_all` does not follow symlinks: a legacy tree's links stay harmless.
        fs::remove_dir_all(path).at(path)?;
    }
    report.pruned.push(Pruned {
        kind,
        path: path.to_owned(),
        bytes,
        unused_for: Duration::from_secs(unused_for.as_secs()),
    });
    Ok(())
}

fn modified(path: &Path) -> Result<SystemTime, PruneError> {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .at(path)
}

/// How long ago `then` was (zero when it is in the future: clocks move).
fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// The bytes of the files under `path`, symlinks not followed.
fn disk_usage(path: &Path) -> Result<u64, PruneError> {
    let meta = fs::symlink_metadata(path).at(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path).at(path)? {
        total += disk_usage(&entry.at(path)?.path())?;
    }
    Ok(total)
}

/// A duration in JSON: whole seconds.
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

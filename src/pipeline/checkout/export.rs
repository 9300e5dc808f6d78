//! Exporting a commit's tree as plain files (no `.git`, no symlinks) into the cache: planned
//! from git first (`tree_plan`: symlinks resolved, caps counted), then written to a temporary
//! directory and renamed into place, so a tree directory that exists is complete.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use git2::{Repository, Tree};

use super::tree_plan::{self, Cap, CapExceeded, LinkError, Step, TreePlan};
use crate::pipeline::config::RepoFileLimits;

/// Why a tree could not be exported; the caller names the repository.
pub(super) enum ExportError {
    /// Writing the file or directory failed.
    Io(PathBuf, io::Error),
    /// Reading an object from the mirror failed.
    Git(git2::Error),
    /// A file is larger than the limit: its path in the commit and its size.
    TooLarge(String, u64),
    /// A symlink leads out of the tree, to nothing, or into a loop.
    Link(LinkError),
    /// The tree, or the sandbox's trees together, would be over a cap.
    Cap(CapExceeded),
}

impl From<git2::Error> for ExportError {
    fn from(e: git2::Error) -> Self {
        ExportError::Git(e)
    }
}

/// Attaches the path to an I/O error.
trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, ExportError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, ExportError> {
        self.map_err(|e| ExportError::Io(path.to_owned(), e))
    }
}

/// What the trees of one sandbox (all its repositories, checked out in parallel) may hold
/// together, and what they hold so far. A reused tree counts as much as one written, so
/// whether a sandbox fits does not depend on what the cache holds.
pub(super) struct SandboxBudget {
    max_files: u64,
    max_bytes: u64,
    files: AtomicU64,
    bytes: AtomicU64,
}

impl SandboxBudget {
    pub(super) fn new(limits: &RepoFileLimits) -> SandboxBudget {
        SandboxBudget {
            max_files: limits.max_sandbox_files,
            max_bytes: limits.max_sandbox_size,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Take a tree's files and bytes from the budget, or nothing if they do not fit.
    fn reserve(&self, plan: &TreePlan) -> Result<(), ExportError> {
        let files = self.files.fetch_add(plan.files, Ordering::SeqCst) + plan.files;
        let bytes = self.bytes.fetch_add(plan.bytes, Ordering::SeqCst) + plan.bytes;
        let crossed = match (files > self.max_files, bytes > self.max_bytes) {
            (true, _) => Some((Cap::SandboxFiles, files, self.max_files)),
            (false, true) => Some((Cap::SandboxSize, bytes, self.max_bytes)),
            (false, false) => None,
        };
        let Some((cap, reached, limit)) = crossed else {
            return Ok(());
        };
        self.files.fetch_sub(plan.files, Ordering::SeqCst);
        self.bytes.fetch_sub(plan.bytes, Ordering::SeqCst);
        Err(ExportError::Cap(CapExceeded {
            cap,
            reached,
            limit,
            at: None,
        }))
    }
}

/// `trees_dir/<sha>`, exported unless it already exists, within `limits` and `budget`. The
/// tree is planned either way (it is what the caps count). The caller holds the mirror's lock,
/// which also guards `trees_dir`. The tree's modification time is set to now: `cache prune`
/// reads it as the time of last use.
pub(super) fn materialize(
    repo: &Repository,
    tree: &Tree<'_>,
    trees_dir: &Path,
    sha: &str,
    limits: &RepoFileLimits,
    budget: &SandboxBudget,
) -> Result<PathBuf, ExportError> {
    let plan = tree_plan::plan(repo, tree, limits)?;
    budget.reserve(&plan)?;
    let target = trees_dir.join(sha);
    if target.is_dir() {
        mark_used(&target).at(&target)?;
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
    if let Err(e) = write(repo, &plan, &tmp) {
        let _ = fs::remove_dir_all(&tmp); // the error that matters is the first
        return Err(e);
    }
    fs::rename(&tmp, &target).at(&target)?;
    mark_used(&target).at(&target)?;
    Ok(target)
}

/// Set a directory's modification time to now (the record of its last use).
pub(super) fn mark_used(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.set_modified(std::time::SystemTime::now())
}

/// Write `plan`'s directories and files under `dir`.
fn write(repo: &Repository, plan: &TreePlan, dir: &Path) -> Result<(), ExportError> {
    for step in &plan.steps {
        match step {
            Step::Dir(path) => {
                let path = dir.join(path);
                fs::create_dir(&path).at(&path)?;
            }
            Step::File {
                path,
                id,
                executable,
            } => {
                let path = dir.join(path);
                let blob = repo.find_blob(*id)?;
                write_file(blob.content(), *executable, &path).at(&path)?;
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
pub(super) fn entry_name(bytes: &[u8]) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    Some(std::ffi::OsStr::from_bytes(bytes).to_owned())
}

#[cfg(not(unix))]
pub(super) fn entry_name(bytes: &[u8]) -> Option<std::ffi::OsString> {
    std::str::from_utf8(bytes).ok().map(Into::into)
}

/// One path component, never escaping the directory nor planting a `.git`.
pub(super) fn is_safe_entry_name(name: &std::ffi::OsStr) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_entry_names_are_refused() {
        for bad in ["", ".", "..", ".git", ".GIT", "a/b", "a\\b"] {
            assert!(!is_safe_entry_name(std::ffi::OsStr::new(bad)), "{bad:?}");
        }
        assert!(is_safe_entry_name(std::ffi::OsStr::new(".gitignore")));
    }
}

//! Exporting a commit's tree as plain files (no `.git`) into the cache: written to a temporary
//! directory first and renamed into place, so a tree directory that exists is complete.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Repository, Tree};

/// Why a tree could not be exported; the caller names the repository.
pub(super) enum ExportError {
    /// Writing the file or directory failed.
    Io(PathBuf, io::Error),
    /// Reading an object from the mirror failed.
    Git(git2::Error),
    /// A file is larger than the limit: its path in the commit and its size.
    TooLarge(String, u64),
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

/// `trees_dir/<sha>`, exported unless it already exists; no file may be over `max_blob_size`
/// bytes. The caller holds the mirror's lock, which also guards `trees_dir`. The tree's
/// modification time is set to now either way: `cache prune` reads it as the time of last use.
pub(super) fn materialize(
    repo: &Repository,
    tree: &Tree<'_>,
    trees_dir: &Path,
    sha: &str,
    max_blob_size: u64,
) -> Result<PathBuf, ExportError> {
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
    let export = Export {
        repo,
        odb: repo.odb()?,
        max_blob_size,
    };
    export.tree(tree, &tmp, "")?;
    fs::rename(&tmp, &target).at(&target)?;
    mark_used(&target).at(&target)?;
    Ok(target)
}

/// Set a directory's modification time to now (the record of its last use).
pub(super) fn mark_used(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.set_modified(std::time::SystemTime::now())
}

/// One tree's export.
struct Export<'r> {
    repo: &'r Repository,
    /// To learn a blob's size before reading it (a blob is read into memory whole).
    odb: git2::Odb<'r>,
    max_blob_size: u64,
}

impl Export<'_> {
    /// Write `tree`'s entries into `dir` (`prefix` is its path in the commit), recursively:
    /// files with their executable bit, symlinks, and an empty directory for each submodule.
    fn tree(&self, tree: &Tree<'_>, dir: &Path, prefix: &str) -> Result<(), ExportError> {
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
            let in_commit = format!("{prefix}{}", name.to_string_lossy());
            match (entry.kind(), entry.filemode()) {
                (Some(ObjectType::Tree), _) => {
                    fs::create_dir(&path).at(&path)?;
                    let subtree = self.repo.find_tree(entry.id())?;
                    self.tree(&subtree, &path, &format!("{in_commit}/"))?;
                }
                (Some(ObjectType::Blob), 0o120000) => {
                    let blob = self.blob(entry.id(), &in_commit)?;
                    write_symlink(blob.content(), &path).at(&path)?;
                }
                (Some(ObjectType::Blob), mode) => {
                    let blob = self.blob(entry.id(), &in_commit)?;
                    write_file(blob.content(), mode & 0o111 != 0, &path).at(&path)?;
                }
                // A submodule (a commit entry): an empty directory, as `git checkout` leaves it.
                _ => fs::create_dir(&path).at(&path)?,
            }
        }
        Ok(())
    }

    /// The blob `id` (at `path` in the commit), unless it is over the limit.
    fn blob(&self, id: git2::Oid, path: &str) -> Result<git2::Blob<'_>, ExportError> {
        let (size, _) = self.odb.read_header(id)?;
        if size as u64 > self.max_blob_size {
            return Err(ExportError::TooLarge(path.to_owned(), size as u64));
        }
        Ok(self.repo.find_blob(id)?)
    }
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

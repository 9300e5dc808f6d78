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

/// `trees_dir/<sha>`, exported unless it already exists. The caller holds the mirror's lock,
/// which also guards `trees_dir`.
pub(super) fn materialize(
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

/// Write `tree`'s entries into `dir`, recursively: files with their executable bit, symlinks,
/// and an empty directory for each submodule.
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

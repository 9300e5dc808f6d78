//! Reading the files of an exported tree. A branch's files are untrusted input, so every file
//! sandbox reads from a repository (values and secrets files, `file`/`files` in templates) goes
//! through [`RepoTree`], which:
//!
//! - takes only relative paths without `..`, and resolves symlinks: the file must be inside the
//!   tree (a committed `values.yaml -> ~/.docker/config.json` would otherwise merge the user's
//!   credentials into values that a template can render into the sandbox). An exported tree
//!   holds no symlinks (`tree_plan` copies or refuses them); this is the second line, and the
//!   first for trees that are no checkout (the config's directory);
//! - reads only regular files (not `/dev/zero`, a fifo, or a directory);
//! - reads at most `max_file_size` bytes (plus one, to know it is more), so a huge file is never
//!   loaded;
//! - walks directories for `files` without following symlinked directories, so `l -> .` cannot
//!   make a glob loop or explode.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::error::Hint;
use crate::text::format_size;

/// Why a file of the tree could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileProblem {
    /// There is no tree to read (the renderer was built without one, or it is gone).
    NoRepoRoot,
    /// The path is absolute, contains `..`, or resolves (through a symlink) outside the tree.
    OutsideRepo,
    /// Nothing exists at the path.
    NotFound,
    /// The path exists but is not a regular file (a directory, a device, a fifo).
    NotAFile,
    /// The file is not valid UTF-8 text.
    NotUtf8,
    /// The file is larger than the limit (the error's source says which).
    TooLarge,
    /// The file or a directory could not be read (permissions, I/O error).
    Unreadable,
    /// The glob pattern given to `files` is malformed.
    InvalidGlob,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::NoRepoRoot => f.write_str("no repository checkout to read"),
            FileProblem::OutsideRepo => f.write_str("path is outside the repository"),
            FileProblem::NotFound => f.write_str("no such file in the repository"),
            FileProblem::NotAFile => f.write_str("not a regular file"),
            FileProblem::NotUtf8 => f.write_str("file is not UTF-8 text"),
            FileProblem::TooLarge => f.write_str("file is too large"),
            FileProblem::Unreadable => f.write_str("cannot read"),
            FileProblem::InvalidGlob => f.write_str("invalid glob pattern"),
        }
    }
}

impl FileProblem {
    /// What to do about it (callers that know more, like the `file` helper, say more).
    pub(crate) fn advice(self) -> String {
        match self {
            FileProblem::NoRepoRoot => "check the repository out again (remove the cache)".into(),
            FileProblem::OutsideRepo => "sandbox reads only files inside the repository: give a \
                path relative to its root, without `..`, that is no symlink leading out of it"
                .into(),
            FileProblem::NotFound => "paths are relative to the repository's root".into(),
            FileProblem::NotAFile => {
                "give the path of a regular file (not a directory, device or pipe)".into()
            }
            FileProblem::NotUtf8 => "only text files can be read; store binary data \
                base64-encoded in the repository"
                .into(),
            FileProblem::TooLarge => "keep the file smaller, or raise `repo_files.max_file_size` \
                in sandbox.yaml"
                .into(),
            FileProblem::Unreadable => "check the file's permissions".into(),
            FileProblem::InvalidGlob => {
                "glob syntax: `*` `?` `[abc]` within a directory, `**` for any depth".into()
            }
        }
    }
}

/// A file of the tree that could not be read; `path` as the caller gave it.
#[derive(Debug, thiserror::Error)]
#[error("{problem}: `{path}`")]
pub(crate) struct RepoFileError {
    pub(crate) path: String,
    pub(crate) problem: FileProblem,
    #[source]
    pub(crate) source: Option<io::Error>,
}

impl Hint for RepoFileError {
    fn hint(&self) -> Option<String> {
        Some(self.problem.advice())
    }
}

impl RepoFileError {
    fn new(path: &str, problem: FileProblem) -> RepoFileError {
        RepoFileError {
            path: path.to_owned(),
            problem,
            source: None,
        }
    }

    fn io(path: &str, e: io::Error) -> RepoFileError {
        let problem = match e.kind() {
            io::ErrorKind::NotFound => FileProblem::NotFound,
            _ => FileProblem::Unreadable,
        };
        RepoFileError {
            path: path.to_owned(),
            problem,
            source: Some(e),
        }
    }
}

/// One file `glob` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeFile {
    /// Relative to the tree's root, `/`-separated.
    pub(crate) path: String,
    pub(crate) content: String,
}

/// The exported tree of one commit (or another directory of untrusted files), to read from.
#[derive(Debug, Clone)]
pub(crate) struct RepoTree {
    dir: PathBuf,
    max_file_size: u64,
}

impl RepoTree {
    /// The tree at `dir`, whose files are read up to `max_file_size` bytes each.
    pub(crate) fn new(dir: impl Into<PathBuf>, max_file_size: u64) -> RepoTree {
        RepoTree {
            dir: dir.into(),
            max_file_size,
        }
    }

    /// The tree's directory, as given.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The text of the file at `path`, relative to the tree's root.
    pub(crate) fn read_to_string(&self, path: &str) -> Result<String, RepoFileError> {
        check_relative(path)?;
        let root = self.canonical_root(path)?;
        self.read_inside(&root, &root.join(path), path)
    }

    /// The regular files whose paths (relative to the root) match `pattern`, read, sorted by
    /// path. `*` and `?` do not match `/` (`**` matches any depth), and dot-named files or
    /// directories match only where the pattern spells the leading `.` (e.g. `conf/.env*`).
    /// Symlinks to files inside the tree are read; symlinked directories are not entered.
    pub(crate) fn glob(&self, pattern: &str) -> Result<Vec<TreeFile>, RepoFileError> {
        let invalid = |e: glob::PatternError| RepoFileError {
            path: pattern.to_owned(),
            problem: FileProblem::InvalidGlob,
            source: Some(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
        };
        check_relative(pattern)?;
        let components: Vec<&str> = pattern
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let compiled = glob::Pattern::new(&components.join("/")).map_err(invalid)?;
        let root = self.canonical_root(pattern)?;
        // Walk only below the pattern's literal directories (`conf/` of `conf/*.yaml`).
        let literal = components[..components.len().saturating_sub(1)]
            .iter()
            .take_while(|c| !c.contains(['*', '?', '[']))
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let start = root.join(&literal);
        let walk = GlobWalk {
            tree: self,
            root: &root,
            pattern: &compiled,
            components: &components,
        };
        let mut found = Vec::new();
        match fs::symlink_metadata(&start) {
            Ok(meta) if meta.is_dir() => walk.visit(&start, &literal, &mut found)?,
            _ => {} // no such directory (or a symlink to one): nothing matches
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    fn canonical_root(&self, shown: &str) -> Result<PathBuf, RepoFileError> {
        self.dir.canonicalize().map_err(|e| RepoFileError {
            path: shown.to_owned(),
            problem: FileProblem::NoRepoRoot,
            source: Some(e),
        })
    }

    /// Resolve `full`, make sure it is a regular file inside `root` and small enough, read it.
    fn read_inside(&self, root: &Path, full: &Path, shown: &str) -> Result<String, RepoFileError> {
        let canonical = full
            .canonicalize()
            .map_err(|e| RepoFileError::io(shown, e))?;
        if !canonical.starts_with(root) {
            return Err(RepoFileError::new(shown, FileProblem::OutsideRepo));
        }
        // Checked before opening: opening a fifo would wait for a writer.
        let meta = fs::metadata(&canonical).map_err(|e| RepoFileError::io(shown, e))?;
        if !meta.is_file() {
            return Err(RepoFileError::new(shown, FileProblem::NotAFile));
        }
        let too_large = || RepoFileError {
            path: shown.to_owned(),
            problem: FileProblem::TooLarge,
            source: Some(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "it is over the {} limit of `repo_files.max_file_size`",
                    format_size(self.max_file_size)
                ),
            )),
        };
        if meta.len() > self.max_file_size {
            return Err(too_large());
        }
        let file = fs::File::open(&canonical).map_err(|e| RepoFileError::io(shown, e))?;
        // The length may have changed since; read one byte over the limit at most to know.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(self.max_file_size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| RepoFileError::io(shown, e))?;
        if bytes.len() as u64 > self.max_file_size {
            return Err(too_large());
        }
        String::from_utf8(bytes).map_err(|e| RepoFileError {
            path: shown.to_owned(),
            problem: FileProblem::NotUtf8,
            source: Some(io::Error::new(io::ErrorKind::InvalidData, e.utf8_error())),
        })
    }
}

/// One `glob` call's walk.
struct GlobWalk<'a> {
    tree: &'a RepoTree,
    root: &'a Path,
    pattern: &'a glob::Pattern,
    /// The pattern's components, for [`dots_allowed`].
    components: &'a [&'a str],
}

impl GlobWalk<'_> {
    /// Visit `dir` (`rel` from the root): match its files, enter its real directories.
    fn visit(&self, dir: &Path, rel: &str, found: &mut Vec<TreeFile>) -> Result<(), RepoFileError> {
        let unreadable = |e| RepoFileError::io(if rel.is_empty() { "." } else { rel }, e);
        for entry in fs::read_dir(dir).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // The entry itself, not what a symlink points at.
            let file_type = entry.file_type().map_err(|e| RepoFileError::io(&path, e))?;
            if file_type.is_dir() {
                self.visit(&entry.path(), &path, found)?;
            } else if self.matches(&path) {
                let full = entry.path();
                if file_type.is_symlink() && full.is_dir() {
                    continue; // not entered (wherever it leads), and no file to return
                }
                match self.tree.read_inside(self.root, &full, &path) {
                    Ok(content) => found.push(TreeFile { path, content }),
                    Err(e) if e.problem == FileProblem::NotFound => {} // a dangling symlink
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn matches(&self, path: &str) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            // Dot files are decided by `dots_allowed` (glob's own option drops every dot
            // entry, even when the pattern names it).
            require_literal_leading_dot: false,
        };
        self.pattern.matches_with(path, options) && dots_allowed(self.components, path)
    }
}

/// Whether `path` (e.g. a symlink found in a walk) resolves to something inside the directory
/// `root`, symlinks followed. False when either cannot be resolved (a dangling symlink).
pub(crate) fn resolves_inside(root: &Path, path: &Path) -> bool {
    match (root.canonicalize(), path.canonicalize()) {
        (Ok(root), Ok(target)) => target.starts_with(root),
        _ => false,
    }
}

/// Reject absolute paths and `..` (lexically; symlinks are checked once resolved).
fn check_relative(path: &str) -> Result<(), RepoFileError> {
    if path.is_empty() {
        return Err(RepoFileError::new(path, FileProblem::NotFound));
    }
    let relative = Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if relative && !path.starts_with('/') && !path.starts_with('\\') {
        Ok(())
    } else {
        Err(RepoFileError::new(path, FileProblem::OutsideRepo))
    }
}

/// Whether a match may contain dot-named components: only where the pattern names them with a
/// literal leading `.` (component by component; with `**`, anywhere in the pattern).
fn dots_allowed(pattern: &[&str], path: &str) -> bool {
    let names: Vec<&str> = path.split('/').collect();
    if pattern.contains(&"**") || pattern.len() != names.len() {
        let pattern_names_a_dot = pattern.iter().any(|p| p.starts_with('.'));
        return pattern_names_a_dot || !names.iter().any(|n| n.starts_with('.'));
    }
    pattern
        .iter()
        .zip(&names)
        .all(|(p, n)| !n.starts_with('.') || p.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const ONE_MIB: u64 = 1 << 20;

    fn tree(max: u64) -> (tempfile::TempDir, RepoTree) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        fs::create_dir_all(root.join("config/sub")).unwrap();
        fs::write(root.join("values.yaml"), "a: 1\n").unwrap();
        fs::write(root.join("config/app.toml"), "port = 1\n").unwrap();
        fs::write(root.join("config/sub/deep.toml"), "deep = 1\n").unwrap();
        fs::write(dir.path().join("secret.json"), "{\"auths\": {}}").unwrap();
        let tree = RepoTree::new(&root, max);
        (dir, tree)
    }

    fn problem(result: Result<String, RepoFileError>) -> FileProblem {
        result.unwrap_err().problem
    }

    #[test]
    fn relative_path_checks() {
        assert!(check_relative("a/b.txt").is_ok());
        assert!(check_relative("./a").is_ok());
        assert!(check_relative("../a").is_err());
        assert!(check_relative("a/../../b").is_err());
        assert!(check_relative("/etc/passwd").is_err());
        assert!(check_relative("").is_err());
    }

    #[test]
    fn reads_files_inside_and_symlinks_that_stay_inside() {
        let (_dir, tree) = tree(ONE_MIB);
        assert_eq!(tree.read_to_string("values.yaml").unwrap(), "a: 1\n");
        assert_eq!(
            tree.read_to_string("./config/app.toml").unwrap(),
            "port = 1\n"
        );
        symlink("config/app.toml", tree.dir().join("app.toml")).unwrap();
        assert_eq!(tree.read_to_string("app.toml").unwrap(), "port = 1\n");
    }

    #[test]
    fn symlinks_leading_out_of_the_tree_are_refused() {
        let (dir, tree) = tree(ONE_MIB);
        symlink(dir.path().join("secret.json"), tree.dir().join("abs.yaml")).unwrap();
        symlink("../secret.json", tree.dir().join("rel.yaml")).unwrap();
        for path in ["abs.yaml", "rel.yaml", "../secret.json", "/etc/hostname"] {
            assert_eq!(
                problem(tree.read_to_string(path)),
                FileProblem::OutsideRepo,
                "{path}"
            );
        }
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let (_dir, tree) = tree(ONE_MIB);
        // Inside the tree, but not regular files (git cannot make these; a tree on disk can).
        let fifo = tree.dir().join("fifo.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert_eq!(
                problem(tree.read_to_string("fifo.yaml")),
                FileProblem::NotAFile
            );
        }
        assert_eq!(
            problem(tree.read_to_string("config")),
            FileProblem::NotAFile
        );
        // `/dev/zero` is refused before its kind matters: it is outside.
        symlink("/dev/zero", tree.dir().join("zero.yaml")).unwrap();
        assert_eq!(
            problem(tree.read_to_string("zero.yaml")),
            FileProblem::OutsideRepo
        );
    }

    #[test]
    fn files_over_the_limit_are_refused_and_at_the_limit_read() {
        let (_dir, tree) = tree(16);
        fs::write(tree.dir().join("16.txt"), "x".repeat(16)).unwrap();
        fs::write(tree.dir().join("17.txt"), "x".repeat(17)).unwrap();
        assert_eq!(tree.read_to_string("16.txt").unwrap().len(), 16);
        let refused = tree.read_to_string("17.txt").unwrap_err();
        assert_eq!(refused.problem, FileProblem::TooLarge);
        assert_eq!(refused.to_string(), "file is too large: `17.txt`");
        assert_eq!(
            refused.source.as_ref().unwrap().to_string(),
            "it is over the 16 B limit of `repo_files.max_file_size`"
        );
        assert!(refused.hint().unwrap().contains("repo_files.max_file_size"));
    }

    #[test]
    fn glob_matches_files_and_reads_them() {
        let (_dir, tree) = tree(ONE_MIB);
        let paths = |pattern: &str| -> Vec<String> {
            tree.glob(pattern)
                .unwrap()
                .into_iter()
                .map(|f| f.path)
                .collect()
        };
        assert_eq!(paths("config/*"), ["config/app.toml"]);
        assert_eq!(
            paths("config/**"),
            ["config/app.toml", "config/sub/deep.toml"]
        );
        assert_eq!(
            paths("**/*.toml"),
            ["config/app.toml", "config/sub/deep.toml"]
        );
        assert_eq!(paths("./config/sub/*.toml"), ["config/sub/deep.toml"]);
        assert!(paths("nothing/*").is_empty());
        assert_eq!(tree.glob("config/*").unwrap()[0].content, "port = 1\n");
        assert_eq!(
            tree.glob("[").unwrap_err().problem,
            FileProblem::InvalidGlob
        );
    }

    #[test]
    fn glob_does_not_follow_symlinked_directories_and_loops_end_fast() {
        let (dir, tree) = tree(ONE_MIB);
        // Two loops: following them would visit 2^40 paths before the kernel's ELOOP.
        symlink(".", tree.dir().join("config/a")).unwrap();
        symlink("..", tree.dir().join("config/b")).unwrap();
        symlink(dir.path(), tree.dir().join("outside-dir")).unwrap();
        // The listing itself is the check: following a loop never ends (or ends in ELOOP).
        let found = tree.glob("**").unwrap();
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["config/app.toml", "config/sub/deep.toml", "values.yaml"]
        );
    }

    #[test]
    fn glob_refuses_a_matched_symlink_leading_out() {
        let (dir, tree) = tree(ONE_MIB);
        symlink(
            dir.path().join("secret.json"),
            tree.dir().join("config/x.toml"),
        )
        .unwrap();
        let refused = tree.glob("config/*.toml").unwrap_err();
        assert_eq!(refused.problem, FileProblem::OutsideRepo);
        assert_eq!(refused.path, "config/x.toml");
    }
}

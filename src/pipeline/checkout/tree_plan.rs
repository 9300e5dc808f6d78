//! What exporting a commit's tree writes, decided from the git tree alone before anything is
//! written: every directory and file, symlinks resolved, everything counted against the caps.
//!
//! A branch is untrusted input, and helm, buildah and sandbox's own readers follow symlinks. So
//! an exported tree holds none. Each symlink is resolved against the commit's tree the way the
//! kernel would resolve it in a checkout (`..` from where a link really is, chains and
//! symlinked directories followed, at most [`MAX_LINKS`] links as Linux's ELOOP), and what it
//! leads to is copied in its place: a file's content, or a directory recursively. A link that
//! leads out of the tree (an absolute target, `..` past the root, by itself or through a
//! chain), to nothing, or to a directory holding the link itself is refused, naming it and the
//! chain. A dangling link is refused too rather than skipped: whatever reads it later would
//! fail with a vaguer "not found", or silently miss a file.
//!
//! The caps count what is written, copies included: a blob repeated under many paths (or a
//! directory link repeated many times) packs to almost nothing in git but not on disk.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};

use super::export::{entry_name, is_safe_entry_name, ExportError};
use crate::pipeline::config::RepoFileLimits;

/// Links followed at most while resolving one symlink (Linux's `MAXSYMLINKS`).
pub(super) const MAX_LINKS: usize = 40;

/// A symlink's target longer than this is refused (Linux's `PATH_MAX`).
const MAX_TARGET_LEN: usize = 4096;

/// One thing to write, at a path relative to the tree's root.
pub(super) enum Step {
    Dir(PathBuf),
    File {
        path: PathBuf,
        id: Oid,
        executable: bool,
    },
}

/// Everything an export writes, in order (a directory before its entries), and its totals.
#[derive(Default)]
pub(super) struct TreePlan {
    pub(super) steps: Vec<Step>,
    /// Files and directories.
    pub(super) files: u64,
    pub(super) bytes: u64,
}

/// Why a symlink of the commit is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkProblem {
    /// An absolute target (here or further down the chain).
    Absolute,
    /// `..` goes past the tree's root.
    Escapes,
    /// Nothing is at the path (in the commit).
    Missing(String),
    /// The path goes through a file as if it were a directory.
    NotADirectory(String),
    /// More than [`MAX_LINKS`] links: a loop, or a chain made to exhaust us.
    TooManyLinks,
    /// The link leads to a directory that holds it: its copy would never end.
    ContainsItself,
    /// The target is longer than any path.
    TargetTooLong,
}

/// A refused symlink: its path in the commit, and each link followed (path, target), the
/// first being this one with its own target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkError {
    pub(crate) path: String,
    pub(crate) chain: Vec<(String, String)>,
    pub(crate) problem: LinkProblem,
}

/// The caps on what an export writes (`repo_files:` in sandbox.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    TreeFiles,
    TreeSize,
    SandboxFiles,
    SandboxSize,
}

impl Cap {
    /// Its setting under `repo_files:`.
    pub(crate) fn setting(self) -> &'static str {
        match self {
            Cap::TreeFiles => "max_tree_files",
            Cap::TreeSize => "max_tree_size",
            Cap::SandboxFiles => "max_sandbox_files",
            Cap::SandboxSize => "max_sandbox_size",
        }
    }

    pub(crate) fn counts_bytes(self) -> bool {
        matches!(self, Cap::TreeSize | Cap::SandboxSize)
    }

    pub(crate) fn is_per_sandbox(self) -> bool {
        matches!(self, Cap::SandboxFiles | Cap::SandboxSize)
    }
}

/// A cap was crossed: the count (files, or bytes) reached, and where (for a tree's caps: the
/// path, in the tree, of the file that crossed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CapExceeded {
    pub(crate) cap: Cap,
    pub(crate) reached: u64,
    pub(crate) limit: u64,
    pub(crate) at: Option<String>,
}

/// The plan of exporting `tree` (the commit's root) within `limits`.
pub(super) fn plan<'r>(
    repo: &'r Repository,
    tree: &Tree<'r>,
    limits: &RepoFileLimits,
) -> Result<TreePlan, ExportError> {
    let mut planner = Planner {
        repo,
        odb: repo.odb()?,
        root: tree.clone(),
        limits,
        plan: TreePlan::default(),
    };
    planner.copy_dir(tree, &[], Path::new(""), &mut vec![Vec::new()])?;
    Ok(planner.plan)
}

/// A path in the commit, one name per component (names are bytes in git).
type RealPath = Vec<Vec<u8>>;

/// What a tree entry is, as far as resolving paths goes.
enum Entry {
    /// A directory, or a submodule (exported as an empty directory).
    Dir,
    File {
        id: Oid,
        executable: bool,
    },
    Link(Oid),
}

/// Where a symlink leads, in the commit.
enum Resolved {
    File {
        id: Oid,
        executable: bool,
        real: RealPath,
    },
    Dir(RealPath),
}

struct Planner<'r> {
    repo: &'r Repository,
    /// To learn a blob's size without reading it.
    odb: git2::Odb<'r>,
    root: Tree<'r>,
    limits: &'r RepoFileLimits,
    plan: TreePlan,
}

impl<'r> Planner<'r> {
    /// Plan `tree`, which is at `real` in the commit, written at `out`. `copying` holds the
    /// commit paths of the directories being copied, outermost first: a directory link to one
    /// of them (or to a directory holding one) would copy itself forever.
    fn copy_dir(
        &mut self,
        tree: &Tree<'_>,
        real: &[Vec<u8>],
        out: &Path,
        copying: &mut Vec<RealPath>,
    ) -> Result<(), ExportError> {
        for entry in tree.iter() {
            let name = entry.name_bytes();
            let Some(os_name) = entry_name(name).filter(|n| is_safe_entry_name(n)) else {
                let shown = show(&child(real, name));
                return Err(ExportError::Io(
                    PathBuf::from(&shown),
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("refusing tree entry {shown:?}"),
                    ),
                ));
            };
            let out = out.join(os_name);
            let here: RealPath = child(real, name);
            match (entry.kind(), entry.filemode()) {
                (Some(ObjectType::Tree), _) => {
                    self.add_dir(&out)?;
                    let subtree = self.repo.find_tree(entry.id())?;
                    copying.push(here.clone());
                    self.copy_dir(&subtree, &here, &out, copying)?;
                    copying.pop();
                }
                (Some(ObjectType::Blob), 0o120000) => {
                    self.copy_link(entry.id(), &here, &out, copying)?;
                }
                (Some(ObjectType::Blob), mode) => {
                    self.add_file(&out, entry.id(), mode & 0o111 != 0, &here)?;
                }
                // A submodule (a commit entry): an empty directory, as `git checkout` leaves it.
                _ => self.add_dir(&out)?,
            }
        }
        Ok(())
    }

    /// Plan the symlink `link` (blob `id`) as a copy of what it leads to, written at `out`.
    fn copy_link(
        &mut self,
        id: Oid,
        link: &[Vec<u8>],
        out: &Path,
        copying: &mut Vec<RealPath>,
    ) -> Result<(), ExportError> {
        let target = self.link_target(id, link, &[])?;
        match self.resolve(link, target.clone())? {
            Resolved::File {
                id,
                executable,
                real,
            } => self.add_file(out, id, executable, &real),
            Resolved::Dir(real) => {
                if copying.iter().any(|dir| dir.starts_with(&real)) {
                    return Err(link_error(
                        link,
                        vec![(show(link), show_bytes(&target))],
                        LinkProblem::ContainsItself,
                    ));
                }
                self.add_dir(out)?;
                if let Some(tree) = self.tree_at(&real)? {
                    copying.push(real.clone());
                    self.copy_dir(&tree, &real, out, copying)?;
                    copying.pop();
                }
                Ok(())
            }
        }
    }

    /// Where the symlink at `link` with `target` leads, following every link on the way.
    fn resolve(&self, link: &[Vec<u8>], target: Vec<u8>) -> Result<Resolved, ExportError> {
        let mut chain = vec![(show(link), show_bytes(&target))];
        let refuse =
            |chain: &[(String, String)], problem| Err(link_error(link, chain.to_vec(), problem));
        // Resolution starts in the link's directory; `dir` is always a real directory.
        let mut dir: RealPath = link[..link.len() - 1].to_vec();
        let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
        let mut next_target = Some(target.clone());
        while let Some(t) = next_target.take() {
            if t.starts_with(b"/") {
                return refuse(&chain, LinkProblem::Absolute);
            }
            if t.is_empty() {
                return refuse(&chain, LinkProblem::Missing(show(link)));
            }
            // The target's components come before what was left of the path.
            for name in components(&t).into_iter().rev() {
                pending.push_front(name);
            }
            while let Some(name) = pending.pop_front() {
                if name == b".." {
                    if dir.pop().is_none() {
                        return refuse(&chain, LinkProblem::Escapes);
                    }
                    continue;
                }
                let here: RealPath = child(&dir, &name);
                match self.entry_at(&dir, &name)? {
                    None => return refuse(&chain, LinkProblem::Missing(show(&here))),
                    Some(Entry::Dir) => dir.push(name),
                    Some(Entry::File { id, executable }) if pending.is_empty() => {
                        return Ok(Resolved::File {
                            id,
                            executable,
                            real: here,
                        })
                    }
                    Some(Entry::File { .. }) => {
                        return refuse(&chain, LinkProblem::NotADirectory(show(&here)))
                    }
                    Some(Entry::Link(id)) => {
                        if chain.len() >= MAX_LINKS {
                            return refuse(&chain, LinkProblem::TooManyLinks);
                        }
                        let t = self.link_target(id, &here, &chain)?;
                        chain.push((show(&here), show_bytes(&t)));
                        next_target = Some(t);
                        break;
                    }
                }
            }
        }
        Ok(Resolved::Dir(dir))
    }

    /// The entry `name` in the directory `dir` of the commit; `None` when there is none (or
    /// `dir` is a submodule, whose content is not in this repository).
    fn entry_at(&self, dir: &[Vec<u8>], name: &[u8]) -> Result<Option<Entry>, ExportError> {
        let Some(tree) = self.tree_at(dir)? else {
            return Ok(None);
        };
        if !entry_name(name).is_some_and(|n| is_safe_entry_name(&n)) {
            return Ok(None); // `get_name_bytes` panics on NUL; `.git` is never exported
        }
        let Some(entry) = tree.get_name_bytes(name) else {
            return Ok(None);
        };
        Ok(Some(match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Blob), 0o120000) => Entry::Link(entry.id()),
            (Some(ObjectType::Blob), mode) => Entry::File {
                id: entry.id(),
                executable: mode & 0o111 != 0,
            },
            _ => Entry::Dir,
        }))
    }

    /// The tree at `dir` in the commit; `None` for a submodule or a missing path.
    fn tree_at(&self, dir: &[Vec<u8>]) -> Result<Option<Tree<'r>>, ExportError> {
        let mut tree = self.root.clone();
        for name in dir {
            let id = match tree.get_name_bytes(name) {
                Some(entry) if entry.kind() == Some(ObjectType::Tree) => entry.id(),
                _ => return Ok(None),
            };
            tree = self.repo.find_tree(id)?;
        }
        Ok(Some(tree))
    }

    /// The target of the symlink at `link` (blob `id`); `chain`: the links followed to it.
    fn link_target(
        &self,
        id: Oid,
        link: &[Vec<u8>],
        chain: &[(String, String)],
    ) -> Result<Vec<u8>, ExportError> {
        let (size, _) = self.odb.read_header(id)?;
        if size > MAX_TARGET_LEN {
            let target = format!("({size} bytes)");
            let mut chain = chain.to_vec();
            chain.push((show(link), target.clone()));
            return Err(ExportError::Link(LinkError {
                path: chain[0].0.clone(),
                chain,
                problem: LinkProblem::TargetTooLong,
            }));
        }
        Ok(self.repo.find_blob(id)?.content().to_vec())
    }

    fn add_dir(&mut self, out: &Path) -> Result<(), ExportError> {
        self.count(out, 0)?;
        self.plan.steps.push(Step::Dir(out.to_owned()));
        Ok(())
    }

    /// Plan the blob `id` (at `real` in the commit) written at `out`.
    fn add_file(
        &mut self,
        out: &Path,
        id: Oid,
        executable: bool,
        real: &[Vec<u8>],
    ) -> Result<(), ExportError> {
        let (size, _) = self.odb.read_header(id)?;
        let size = size as u64;
        if size > self.limits.max_blob_size {
            return Err(ExportError::TooLarge(show(real), size));
        }
        self.count(out, size)?;
        self.plan.steps.push(Step::File {
            path: out.to_owned(),
            id,
            executable,
        });
        Ok(())
    }

    /// Count one more file (or directory) of `bytes`, written at `out`, against the caps.
    fn count(&mut self, out: &Path, bytes: u64) -> Result<(), ExportError> {
        self.plan.files += 1;
        self.plan.bytes += bytes;
        let crossed = |cap, reached, limit| {
            Err(ExportError::Cap(CapExceeded {
                cap,
                reached,
                limit,
                at: Some(out.to_string_lossy().into_owned()),
            }))
        };
        if self.plan.files > self.limits.max_tree_files {
            return crossed(Cap::TreeFiles, self.plan.files, self.limits.max_tree_files);
        }
        if self.plan.bytes > self.limits.max_tree_size {
            return crossed(Cap::TreeSize, self.plan.bytes, self.limits.max_tree_size);
        }
        Ok(())
    }
}

fn link_error(link: &[Vec<u8>], chain: Vec<(String, String)>, problem: LinkProblem) -> ExportError {
    ExportError::Link(LinkError {
        path: show(link),
        chain,
        problem,
    })
}

/// A target's path components; `.` and empty ones (`a//b`, a trailing `/`) dropped.
fn components(target: &[u8]) -> Vec<Vec<u8>> {
    target
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// The path of `name` in the directory `dir`.
fn child(dir: &[Vec<u8>], name: &[u8]) -> RealPath {
    let mut path = dir.to_vec();
    path.push(name.to_vec());
    path
}

/// A commit path as messages show it.
fn show(path: &[Vec<u8>]) -> String {
    let names: Vec<String> = path.iter().map(|n| show_bytes(n)).collect();
    names.join("/")
}

fn show_bytes(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

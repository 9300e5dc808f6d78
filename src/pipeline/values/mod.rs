//! Stage 3: the values each service's templates see, layered Helm-style:
//! defaults in `sandbox.yaml` → values files from the repo → sops-encrypted files → the
//! caller's `-f/--values` files → the `--set` family in command-line order (see [`set`]).
//!
//! Decrypted values stay in memory. [`Values`] remembers which leaves came from sops so that
//! everything shown to a person ([`Values::redacted`], `Debug`) hides them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::Hint;
use crate::pipeline::checkout::{FileProblem, RepoFileError, RepoTree};
use crate::pipeline::config::Service;
use crate::pipeline::sops::{self, Format, Identities};
use crate::yaml::YamlTooLarge;

pub(crate) use crate::redact::REDACTED;

mod set;

pub(crate) use set::{Segment, SetKind, SetValue};

/// The merged values of one service.
#[derive(Clone)]
pub(crate) struct Values {
    tree: Value,
    /// Paths of the leaves that were decrypted from sops files (and not overridden by `--set`).
    secret_paths: Vec<Vec<String>>,
}

impl Values {
    /// The values as templates see them, secrets included. Never print this.
    pub(crate) fn reveal(&self) -> &Value {
        &self.tree
    }

    /// The values with every secret leaf replaced by `<redacted>`.
    pub(crate) fn redacted(&self) -> Value {
        let mut tree = self.tree.clone();
        for path in &self.secret_paths {
            if let Some(leaf) = pointer_mut(&mut tree, path) {
                *leaf = Value::String(REDACTED.into());
            }
        }
        tree
    }

    /// Every decrypted secret value as text (for scrubbing output of anything that might echo
    /// it), however short: the scrubber decides how a short one is matched.
    pub(crate) fn secret_strings(&self) -> Vec<String> {
        self.secret_paths
            .iter()
            .filter_map(|p| pointer(&self.tree, p))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Values")
            .field("tree", &self.redacted())
            .finish()
    }
}

/// A values layer that could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValuesError {
    /// A values or secrets file listed in `sandbox.yaml` is not in the repo.
    #[error("values file `{file}` of service `{service}` is not in repo `{repo}` at {branch}")]
    Missing {
        service: String,
        repo: String,
        branch: String,
        file: String,
        #[source]
        source: Box<RepoFileError>,
    },
    /// A values or secrets file is in the repo but may not be read: a symlink leading out of
    /// it, not a regular file, too large, not UTF-8.
    #[error(
        "cannot read values file `{file}` of service `{service}` from repo `{repo}` at {branch}"
    )]
    Unreadable {
        service: String,
        repo: String,
        branch: String,
        file: String,
        #[source]
        source: Box<RepoFileError>,
    },
    /// A values or secrets file expands (through YAML aliases) or nests beyond the bounds.
    #[error("{file}: values of service `{service}` are too large")]
    TooLarge {
        service: String,
        file: String,
        #[source]
        source: YamlTooLarge,
    },
    /// A values file is not valid YAML or not a mapping.
    #[error("{file}:{line}: values of service `{service}` are not a YAML mapping")]
    Parse {
        service: String,
        file: String,
        line: usize,
        #[source]
        source: Option<serde_yaml_ng::Error>,
    },
    /// A sops file could not be decrypted.
    #[error("could not decrypt `{file}` of service `{service}`")]
    Decrypt {
        service: String,
        file: String,
        #[source]
        source: Box<sops::SopsError>,
    },
    /// A listed secrets file is not a sops file.
    #[error("`{file}` of service `{service}` is listed under `secrets_files` but is not encrypted with sops")]
    NotEncrypted { service: String, file: String },
}

impl Hint for ValuesError {
    fn hint(&self) -> Option<String> {
        match self {
            ValuesError::Missing { file, repo, .. } => Some(format!(
                "commit `{file}` to repo `{repo}`, or remove it from the service in sandbox.yaml"
            )),
            ValuesError::Unreadable { source, .. } => source.hint(),
            // The bound's own hint (its error is the cause) says what to do.
            ValuesError::TooLarge { .. } => None,
            ValuesError::Parse { .. } => Some("a values file holds one YAML mapping".into()),
            ValuesError::Decrypt { source, .. } => source.hint(),
            ValuesError::NotEncrypted { file, .. } => Some(format!(
                "encrypt it: sops encrypt --age <recipient> -i {file}; a plaintext secret must never be committed"
            )),
        }
    }
}

/// Where a service's repo files are, for reading its values files.
pub(crate) struct RepoFiles<'a> {
    pub(crate) repo: &'a str,
    pub(crate) branch: &'a str,
    /// The checkout's tree, read with its size limit.
    pub(crate) tree: RepoTree,
}

/// Merge every layer of `service`'s values.
pub(crate) fn layer(
    service: &Service,
    repo: &RepoFiles<'_>,
    identities: &Identities,
    sets: &[SetValue],
) -> Result<Values, ValuesError> {
    let mut tree = service.values.clone();
    let mut secret_paths: Vec<Vec<String>> = Vec::new();

    for file in &service.values_files {
        let text = read_repo_file(service, repo, file)?;
        let layer = parse_mapping(service, file, &text)?;
        merge(&mut tree, layer);
    }
    for file in &service.secrets_files {
        let text = read_repo_file(service, repo, file)?;
        let format = Format::from_path(Path::new(file));
        if !sops::is_sops_document(&text, format) {
            return Err(ValuesError::NotEncrypted {
                service: service.name.clone(),
                file: file.clone(),
            });
        }
        let origin = PathBuf::from(format!("{}:{}", repo.repo, file));
        let decrypted = sops::decrypt(&text, format, &origin, identities).map_err(|source| {
            ValuesError::Decrypt {
                service: service.name.clone(),
                file: file.clone(),
                source: Box::new(source),
            }
        })?;
        secret_paths.extend(decrypted.secret_paths.iter().cloned());
        merge(&mut tree, decrypted.tree);
    }
    let assignments = sets
        .iter()
        .flat_map(|s| &s.assignments)
        .filter(|a| a.service == service.name);
    for a in assignments {
        if a.merge {
            secret_paths.retain(|p| !replaced_by(&a.value, p));
            merge(&mut tree, a.value.clone());
        } else {
            set_path(&mut tree, &a.path, a.value.clone());
            let path: Vec<String> = a.path.iter().map(Segment::as_string).collect();
            // A secret at or below the path is replaced, and one above it is now a mapping.
            secret_paths.retain(|p| !p.starts_with(&path) && !path.starts_with(p));
        }
    }
    Ok(Values { tree, secret_paths })
}

/// The text of a values or secrets file, read through the tree's checks and limits (the branch
/// is untrusted), and checked not to expand beyond `crate::yaml`'s bounds.
fn read_repo_file(
    service: &Service,
    repo: &RepoFiles<'_>,
    file: &str,
) -> Result<String, ValuesError> {
    let text = repo.tree.read_to_string(file).map_err(|source| {
        let source = Box::new(source);
        let (service, repo, branch, file) = (
            service.name.clone(),
            repo.repo.to_owned(),
            repo.branch.to_owned(),
            file.to_owned(),
        );
        match source.problem {
            FileProblem::NotFound => ValuesError::Missing {
                service,
                repo,
                branch,
                file,
                source,
            },
            _ => ValuesError::Unreadable {
                service,
                repo,
                branch,
                file,
                source,
            },
        }
    })?;
    // Values files are YAML whatever their name (JSON is YAML, aliases included).
    crate::yaml::check_expansion(&text).map_err(|source| ValuesError::TooLarge {
        service: service.name.clone(),
        file: file.to_owned(),
        source,
    })?;
    Ok(text)
}

fn parse_mapping(service: &Service, file: &str, text: &str) -> Result<Value, ValuesError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| ValuesError::Parse {
        service: service.name.clone(),
        file: file.into(),
        line: e.location().map(|l| l.line()).unwrap_or(1),
        source: Some(e),
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Default::default())),
        _ => Err(ValuesError::Parse {
            service: service.name.clone(),
            file: file.into(),
            line: 1,
            source: None,
        }),
    }
}

/// Helm's merge: mappings merge key by key, anything else is replaced by the upper layer.
pub(crate) fn merge(base: &mut Value, upper: Value) {
    match (base, upper) {
        (Value::Object(b), Value::Object(u)) => {
            for (k, v) in u {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, u) => *b = u,
    }
}

/// Set the value at `path`, making mappings and lists (padded with nulls) on the way and
/// replacing whatever is in the way, as `--set` does.
fn set_path(tree: &mut Value, path: &[Segment], value: Value) {
    let mut cur = tree;
    for segment in path {
        cur = match segment {
            Segment::Key(key) => {
                if !cur.is_object() {
                    *cur = Value::Object(Default::default());
                }
                cur.as_object_mut()
                    .expect("made an object")
                    .entry(key.clone())
                    .or_insert(Value::Null)
            }
            Segment::Index(i) => {
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                let list = cur.as_array_mut().expect("made a list");
                if list.len() <= *i {
                    list.resize(i + 1, Value::Null);
                }
                &mut list[*i]
            }
        };
    }
    *cur = value;
}

/// Whether merging `upper` replaces the leaf at `path` (it reaches it, or a non-mapping
/// replaces one of its parents).
fn replaced_by(upper: &Value, path: &[String]) -> bool {
    let mut cur = upper;
    for key in path {
        match cur {
            Value::Object(m) => match m.get(key) {
                Some(v) => cur = v,
                None => return false,
            },
            _ => return true,
        }
    }
    true
}

fn pointer<'v>(tree: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(tree, |cur, key| match cur {
        Value::Object(m) => m.get(key),
        Value::Array(a) => a.get(key.parse::<usize>().ok()?),
        _ => None,
    })
}

fn pointer_mut<'v>(tree: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(tree, |cur, key| match cur {
        Value::Object(m) => m.get_mut(key),
        Value::Array(a) => a.get_mut(key.parse::<usize>().ok()?),
        _ => None,
    })
}

#[cfg(test)]
mod tests;

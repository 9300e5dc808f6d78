//! Why rendering failed: [`RenderError`] (where) and [`RenderErrorKind`] (what), with the hint
//! each kind offers.

use std::error::Error as StdError;
use std::fmt;
use std::path::Path;

use handlebars::RenderErrorReason;

use super::helpers::{self, FileProblem};
use crate::error::Hint;

/// Why rendering failed, and where: the template and, when known, a 1-based position.
/// Underlying causes are kept as the error's `source` (not repeated in the message).
///
/// Not derived with thiserror: the kinds own the causes, and `source()` must return the cause
/// itself (not the kind), so that the chain reads as before.
#[derive(Debug)]
pub(crate) struct RenderError {
    pub(crate) template: String,
    /// The line: in the template for rendering errors, in the rendered text for
    /// [`RenderErrorKind::Yaml`] and [`RenderErrorKind::InvalidObject`] (where it is always set,
    /// as the line where the document starts).
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    pub(crate) kind: RenderErrorKind,
}

/// What went wrong (see [`RenderError`] for where).
#[derive(Debug)]
pub(crate) enum RenderErrorKind {
    /// The template is not valid Handlebars.
    Syntax {
        /// The template line at `line`, for the hint.
        source_line: Option<String>,
        source: Box<handlebars::TemplateError>,
    },

    /// Strict mode: the template refers to a value that is not in the context.
    MissingValue {
        /// The path as written in the template, e.g. `values.database.host` (None when a
        /// helper produced no value).
        path: Option<String>,
        /// The deepest existing object on the way to `path` and its keys, to spot typos (None
        /// when the path is relative to a block's context or nothing on the way exists).
        nearest: Option<Box<Nearest>>,
    },

    /// A block helper got a value that exists but that it cannot use, and the block has no
    /// `{{else}}`: `#each` over a scalar or null, `#with` over a falsy value.
    UnusableValue {
        path: String,
        /// What the value is, e.g. "a number", "null".
        found: String,
    },

    /// `{{required value "message"}}` got a missing or empty value.
    Required {
        path: Option<String>,
        /// The template author's message.
        message: String,
    },

    /// `file` / `files` could not read from the repository.
    File {
        /// The path or glob as given in the template.
        path: String,
        problem: FileProblem,
        /// Where the files are read from (None when the renderer has no repository root).
        repo_root: Option<Box<Path>>,
        source: Option<Box<dyn StdError + Send + Sync>>,
    },

    /// A helper was called with the wrong number or type of arguments.
    Helper {
        helper: &'static str,
        message: String,
        /// How the helper is meant to be called.
        usage: &'static str,
    },

    /// Any other Handlebars rendering failure (unknown helper, `each` over a non-list…).
    Template { source: Box<RenderErrorReason> },

    /// The rendered text is not valid YAML. `document` counts the non-empty documents of the
    /// output from 1.
    Yaml {
        document: usize,
        /// The rendered line at `line`, for the hint.
        rendered_line: Option<String>,
        source: serde_yaml_ng::Error,
    },

    /// The rendered text expands (through YAML aliases) or nests beyond what sandbox reads.
    TooLarge {
        document: usize,
        source: crate::yaml::YamlTooLarge,
    },

    /// A rendered document is not a Kubernetes object (not a mapping, or no string
    /// `apiVersion` / `kind` / `metadata.name`).
    InvalidObject { document: usize, problem: String },
}

/// For a missing value: the deepest object that exists on the way to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nearest {
    /// Its path, e.g. `values.database` (`""` = the context's top level).
    pub(crate) path: String,
    /// Its keys, in order.
    pub(crate) keys: Vec<String>,
}

impl RenderError {
    /// Where, as the message's prefix: `template:line:column` in the template, or the document
    /// (and its line) in the rendered text.
    fn place(&self) -> String {
        let template = &self.template;
        match (&self.kind, self.line, self.column) {
            (
                RenderErrorKind::Yaml { document, .. }
                | RenderErrorKind::TooLarge { document, .. }
                | RenderErrorKind::InvalidObject { document, .. },
                line,
                _,
            ) => {
                let at = line
                    .map(|l| format!(" (rendered line {l})"))
                    .unwrap_or_default();
                format!("{template}: rendered document {document}{at}")
            }
            (_, Some(l), Some(c)) => format!("{template}:{l}:{c}"),
            (_, Some(l), None) => format!("{template}:{l}"),
            _ => template.clone(),
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place(), self.kind)
    }
}

/// What went wrong, without where (the message's part after the place).
impl fmt::Display for RenderErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderErrorKind::Syntax { .. } => f.write_str("invalid template syntax"),
            RenderErrorKind::MissingValue { path, .. } => {
                write!(f, "missing value{}", backticked(path))
            }
            RenderErrorKind::UnusableValue { path, found } => {
                write!(f, "`{path}` is {found}, which this block cannot use")
            }
            RenderErrorKind::Required { path, message } => {
                write!(
                    f,
                    "required value{} is missing: {message}",
                    backticked(path)
                )
            }
            RenderErrorKind::File { path, problem, .. } => write!(f, "{problem}: `{path}`"),
            RenderErrorKind::Helper {
                helper, message, ..
            } => write!(f, "helper `{helper}`: {message}"),
            RenderErrorKind::Template { .. } => f.write_str("rendering failed"),
            RenderErrorKind::Yaml { .. } => f.write_str("invalid YAML"),
            RenderErrorKind::TooLarge { source, .. } => write!(f, "{source}"),
            RenderErrorKind::InvalidObject { problem, .. } => f.write_str(problem),
        }
    }
}

fn backticked(path: &Option<String>) -> String {
    path.as_ref().map(|p| format!(" `{p}`")).unwrap_or_default()
}

impl StdError for RenderError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            RenderErrorKind::Syntax { source, .. } => Some(source.as_ref()),
            RenderErrorKind::File { source, .. } => {
                source.as_deref().map(|s| s as &(dyn StdError + 'static))
            }
            RenderErrorKind::Template { source } => Some(source.as_ref()),
            RenderErrorKind::Yaml { source, .. } => Some(source),
            RenderErrorKind::TooLarge { .. } => None, // its text is the message
            RenderErrorKind::MissingValue { .. }
            | RenderErrorKind::UnusableValue { .. }
            | RenderErrorKind::Required { .. }
            | RenderErrorKind::Helper { .. }
            | RenderErrorKind::InvalidObject { .. } => None,
        }
    }
}

impl Hint for RenderError {
    /// What to do about it, for humans.
    fn hint(&self) -> Option<String> {
        match &self.kind {
            RenderErrorKind::Syntax { source_line, .. } => match (self.line, source_line) {
                (Some(l), Some(text)) => Some(format!("template line {l}: {}", text.trim_end())),
                _ => None,
            },
            RenderErrorKind::MissingValue { path, nearest } => {
                Some(missing_value_hint(path.as_deref(), nearest.as_deref()))
            }
            RenderErrorKind::UnusableValue { .. } => Some(UNUSABLE_VALUE_HINT.to_owned()),
            RenderErrorKind::Required { path, .. } => Some(required_hint(path.as_deref())),
            RenderErrorKind::File {
                problem, repo_root, ..
            } => Some(file_hint(*problem, repo_root.as_deref())),
            RenderErrorKind::Helper { usage, .. } => Some(format!("usage: {usage}")),
            RenderErrorKind::Template { source } => template_hint(source),
            RenderErrorKind::Yaml { rendered_line, .. } => {
                Some(yaml_hint(self.line, rendered_line.as_deref()))
            }
            RenderErrorKind::TooLarge { source, .. } => source.hint(),
            RenderErrorKind::InvalidObject { .. } => Some(INVALID_OBJECT_HINT.to_owned()),
        }
    }
}

const UNUSABLE_VALUE_HINT: &str = "`#each` needs a list or an object and `#with` a non-empty \
     value; guard the block with `{{#if …}}` or add an `{{else}}` branch";

const INVALID_OBJECT_HINT: &str = "every YAML document a template renders must be a Kubernetes \
     object with `apiVersion`, `kind` and `metadata.name`; run `sandbox render` to see the \
     rendered output";

/// How many keys of the nearest existing object a hint lists.
const NEAREST_KEYS_SHOWN: usize = 20;

/// Where to add the missing value, then what the nearest existing object has (to spot typos).
fn missing_value_hint(path: Option<&str>, nearest: Option<&Nearest>) -> String {
    let Some(path) = path else {
        return "a helper or lookup produced no value".to_owned();
    };
    let mut hint = match values_key(path) {
        Some(key) => format!(
            "add `{key}` to the service's values in sandbox.yaml or a values file, \
             or use `{{{{default {path} \"…\"}}}}`"
        ),
        None => format!(
            "`{path}` is not in the render context (it has `values`, `sandbox`, \
             `repo`, `services`, `service`)"
        ),
    };
    if let Some(nearest) = nearest {
        hint.push_str(&nearest_keys(nearest));
    }
    hint
}

/// `; `values.database` has: url, port` (or `… is empty`).
fn nearest_keys(Nearest { path, keys }: &Nearest) -> String {
    let shown = if path.is_empty() {
        "the context's top level".to_owned()
    } else {
        format!("`{path}`")
    };
    if keys.is_empty() {
        return format!("; {shown} is empty");
    }
    let mut listed: Vec<&str> = keys
        .iter()
        .take(NEAREST_KEYS_SHOWN)
        .map(String::as_str)
        .collect();
    if keys.len() > NEAREST_KEYS_SHOWN {
        listed.push("…");
    }
    format!("; {shown} has: {}", listed.join(", "))
}

fn required_hint(path: Option<&str>) -> String {
    match path.and_then(values_key) {
        Some(key) => {
            format!("set `{key}` in the service's values in sandbox.yaml or a values file")
        }
        None => "give the required value a non-empty value".to_owned(),
    }
}

fn file_hint(problem: FileProblem, repo_root: Option<&Path>) -> String {
    let root = repo_root
        .map(|r| format!(" ({})", r.display()))
        .unwrap_or_default();
    match problem {
        FileProblem::NoRepoRoot => {
            "`file`/`files` need the service's repository checked out; this render has none"
                .to_owned()
        }
        FileProblem::OutsideRepo => format!(
            "`file`/`files` only read inside the repository{root}: give a path relative to its \
             root, without `..`"
        ),
        FileProblem::NotFound => format!("paths are relative to the repository root{root}"),
        FileProblem::NotAFile => "give the path of a file, not a directory".to_owned(),
        FileProblem::NotUtf8 => "only text files can be included; store binary data \
                                 base64-encoded in the repository"
            .to_owned(),
        FileProblem::TooLarge | FileProblem::Unreadable => problem.advice(),
        FileProblem::InvalidGlob => {
            "glob syntax: `*` `?` `[abc]` within a directory, `**` for any depth".to_owned()
        }
    }
}

fn template_hint(reason: &RenderErrorReason) -> Option<String> {
    match reason {
        RenderErrorReason::HelperNotFound(_) => Some(format!(
            "available helpers: {} and Handlebars' built-ins (if, unless, each, with, lookup, eq, \
             ne, lt, gt, and, or, not, len)",
            helpers::HELPER_NAMES.join(", ")
        )),
        RenderErrorReason::ParamNotFoundForIndex(helper, _)
        | RenderErrorReason::ParamNotFoundForName(helper, _) => Some(format!(
            "a value given to `{helper}` is missing (or an argument is left out); give a \
             fallback with `(default values.x \"…\")`"
        )),
        _ => None,
    }
}

fn yaml_hint(line: Option<usize>, rendered_line: Option<&str>) -> String {
    let mut hint = String::new();
    if let (Some(l), Some(text)) = (line, rendered_line) {
        hint.push_str(&format!("rendered line {l}: {}\n", text.trim_end()));
    }
    hint.push_str(
        "run `sandbox render` to see the rendered output; check the indentation of inserted \
         values (`nindent`) and quote strings (`quote`)",
    );
    hint
}

/// `values.database.host` → `database.host`.
fn values_key(path: &str) -> Option<&str> {
    let p = path.strip_prefix("@root.").unwrap_or(path);
    p.strip_prefix("values.").filter(|k| !k.is_empty())
}

//! Render stage: Handlebars templates (strict mode, Helm-like helpers) → Kubernetes objects.
//!
//! A template is rendered against a JSON context shaped like
//! `{ values, sandbox: {name, branch, namespace}, repo: {name, branch, sha, short_sha, fell_back},
//!    services: {<name>: {host, port}}, service: {name} }`
//! (built by the caller). The output text is split into YAML documents; empty documents are
//! skipped and every other document must be a Kubernetes object (`apiVersion`, `kind`,
//! `metadata.name`).
//!
//! Helpers (semantics in `helpers.rs`):
//! `default`, `required`, `quote`, `b64enc`, `toYaml`, `toJson`, `indent`, `nindent`, `sha256`,
//! `trunc`, `trimSuffix`, `lower`, `upper`, `replace`, `file`, `files`, plus Handlebars'
//! built-ins (`if`, `unless`, `each`, `with`, `lookup`, `eq`, `ne`, `gt`, `and`, `or`, `not`, `len`…).

pub(crate) mod helpers;

use std::path::{Path, PathBuf};

use handlebars::{
    Handlebars, RenderContext, RenderErrorReason, Renderable, StringOutput, Template,
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::Hint;
pub use helpers::FileProblem;
use helpers::HelperError;

/// One template file to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    /// Path shown in errors, e.g. `templates/api.yaml`.
    pub name: String,
    /// The Handlebars source.
    pub text: String,
}

impl TemplateSource {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> TemplateSource {
        TemplateSource {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// One Kubernetes object produced by a template.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Name of the template that produced it.
    pub template: String,
    /// The object; guaranteed to be a mapping with string `apiVersion`, `kind`, `metadata.name`.
    pub object: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
}

/// Renders templates: a Handlebars registry in strict mode, without HTML escaping, with the
/// Helm-like helpers registered.
#[derive(Debug, Clone)]
pub struct Renderer {
    registry: Handlebars<'static>,
    repo_root: Option<PathBuf>,
}

impl Renderer {
    /// `repo_root`: where `file`/`files` read from (None = the helpers fail with a clear error).
    pub fn new(repo_root: Option<PathBuf>) -> Renderer {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        helpers::register(&mut registry, repo_root.clone());
        Renderer {
            registry,
            repo_root,
        }
    }

    /// The directory `file`/`files` read from.
    pub fn repo_root(&self) -> Option<&Path> {
        self.repo_root.as_deref()
    }

    /// Render `template` and parse the output into Kubernetes objects.
    pub fn render(
        &self,
        template: &TemplateSource,
        context: &Value,
    ) -> Result<Vec<Manifest>, RenderError> {
        let text = self.render_text(template, context)?;
        parse_manifests(&template.name, &text)
    }

    /// Render to text only (no YAML parsing): used by `sandbox render`.
    pub fn render_text(
        &self,
        template: &TemplateSource,
        context: &Value,
    ) -> Result<String, RenderError> {
        let compiled = Template::compile_with_name(&template.text, template.name.clone()).map_err(
            |source| {
                let pos = source.pos().or_else(|| match source.reason() {
                    // Handlebars gives no position for a bad parameter: find it.
                    handlebars::TemplateErrorReason::InvalidParam(param) => {
                        locate(&template.text, param)
                    }
                    _ => None,
                });
                let (line, column) = match pos {
                    Some((l, c)) => (Some(l), Some(c)),
                    None => (None, None),
                };
                RenderError::Syntax {
                    template: template.name.clone(),
                    line,
                    column,
                    source_line: line.and_then(|l| nth_line(&template.text, l)),
                    source: Box::new(source),
                }
            },
        )?;
        let ctx = handlebars::Context::from(context.clone());
        let mut rc = RenderContext::new(compiled.name.as_ref());
        let mut out = StringOutput::new();
        compiled
            .render(&self.registry, &ctx, &mut rc, &mut out)
            .map_err(|e| from_handlebars(e, &template.name, context, self.repo_root()))?;
        out.into_string()
            .map_err(|e| from_handlebars(e.into(), &template.name, context, self.repo_root()))
    }
}

/// For a missing value: the deepest object that exists on the way to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nearest {
    /// Its path, e.g. `values.database` (`""` = the context's top level).
    pub path: String,
    /// Its keys, in order.
    pub keys: Vec<String>,
}

/// Why rendering failed. Every variant names the template; positions are 1-based.
/// Underlying causes are kept as `source` (not repeated in the message).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template is not valid Handlebars.
    #[error("{}: invalid template syntax", at(template, line, column))]
    Syntax {
        template: String,
        line: Option<usize>,
        column: Option<usize>,
        /// The template line at `line`, for the hint.
        source_line: Option<String>,
        #[source]
        source: Box<handlebars::TemplateError>,
    },

    /// Strict mode: the template refers to a value that is not in the context.
    #[error("{}: missing value{}", at(template, line, column), backticked(path))]
    MissingValue {
        template: String,
        line: Option<usize>,
        column: Option<usize>,
        /// The path as written in the template, e.g. `values.database.host` (None when a
        /// helper produced no value).
        path: Option<String>,
        /// The deepest existing object on the way to `path` and its keys, to spot typos (None
        /// when the path is relative to a block's context or nothing on the way exists).
        nearest: Option<Box<Nearest>>,
    },

    /// A block helper got a value that exists but that it cannot use, and the block has no
    /// `{{else}}`: `#each` over a scalar or null, `#with` over a falsy value.
    #[error(
        "{}: `{path}` is {found}, which this block cannot use",
        at(template, line, column)
    )]
    UnusableValue {
        template: String,
        line: Option<usize>,
        column: Option<usize>,
        path: String,
        /// What the value is, e.g. "a number", "null".
        found: String,
    },

    /// `{{required value "message"}}` got a missing or empty value.
    #[error(
        "{}: required value{} is missing: {message}",
        at(template, line, column),
        backticked(path)
    )]
    Required {
        template: String,
        line: Option<usize>,
        column: Option<usize>,
        path: Option<String>,
        /// The template author's message.
        message: String,
    },

    /// `file` / `files` could not read from the repository.
    #[error("{}: {problem}: `{path}`", at(template, line, column))]
    File {
        template: String,
        line: Option<usize>,
        column: Option<usize>,
        /// The path or glob as given in the template.
        path: String,
        problem: FileProblem,
        /// Where the files are read from (None when the renderer has no repository root).
        repo_root: Option<Box<Path>>,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A helper was called with the wrong number or type of arguments.
    #[error("{}: helper `{helper}`: {message}", at(template, line, column))]
    Helper {
        template: String,
        line: Option<usize>,
        column: Option<usize>,
        helper: &'static str,
        message: String,
        /// How the helper is meant to be called.
        usage: &'static str,
    },

    /// Any other Handlebars rendering failure (unknown helper, `each` over a non-list…).
    #[error("{}: rendering failed", at(template, line, column))]
    Template {
        template: String,
        line: Option<usize>,
        column: Option<usize>,
        #[source]
        source: Box<RenderErrorReason>,
    },

    /// The rendered text is not valid YAML. `document` counts the non-empty documents of the
    /// output from 1; `line`/`column` are positions in the rendered text.
    #[error(
        "{template}: rendered document {document}{}: invalid YAML",
        rendered_at(line)
    )]
    Yaml {
        template: String,
        document: usize,
        line: Option<usize>,
        column: Option<usize>,
        /// The rendered line at `line`, for the hint.
        rendered_line: Option<String>,
        #[source]
        source: serde_yaml_ng::Error,
    },

    /// A rendered document is not a Kubernetes object (not a mapping, or no string
    /// `apiVersion` / `kind` / `metadata.name`). `line` is where the document starts in the
    /// rendered text.
    #[error("{template}: rendered document {document}{}: {problem}", rendered_at(&Some(*line)))]
    InvalidObject {
        template: String,
        document: usize,
        line: usize,
        problem: String,
    },
}

fn at(template: &str, line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{template}:{l}:{c}"),
        (Some(l), None) => format!("{template}:{l}"),
        _ => template.to_owned(),
    }
}

fn backticked(path: &Option<String>) -> String {
    path.as_ref().map(|p| format!(" `{p}`")).unwrap_or_default()
}

fn rendered_at(line: &Option<usize>) -> String {
    line.map(|l| format!(" (rendered line {l})"))
        .unwrap_or_default()
}

impl RenderError {
    /// The template the error is about.
    pub fn template(&self) -> &str {
        match self {
            RenderError::Syntax { template, .. }
            | RenderError::MissingValue { template, .. }
            | RenderError::UnusableValue { template, .. }
            | RenderError::Required { template, .. }
            | RenderError::File { template, .. }
            | RenderError::Helper { template, .. }
            | RenderError::Template { template, .. }
            | RenderError::Yaml { template, .. }
            | RenderError::InvalidObject { template, .. } => template,
        }
    }

    /// The line: in the template for rendering errors, in the rendered text for
    /// `Yaml` / `InvalidObject`.
    pub fn line(&self) -> Option<usize> {
        match self {
            RenderError::Syntax { line, .. }
            | RenderError::MissingValue { line, .. }
            | RenderError::UnusableValue { line, .. }
            | RenderError::Required { line, .. }
            | RenderError::File { line, .. }
            | RenderError::Helper { line, .. }
            | RenderError::Template { line, .. }
            | RenderError::Yaml { line, .. } => *line,
            RenderError::InvalidObject { line, .. } => Some(*line),
        }
    }
}

impl Hint for RenderError {
    /// What to do about it, for humans.
    fn hint(&self) -> Option<String> {
        match self {
            RenderError::Syntax {
                line, source_line, ..
            } => match (line, source_line) {
                (Some(l), Some(text)) => Some(format!("template line {l}: {}", text.trim_end())),
                _ => None,
            },
            RenderError::MissingValue { path, nearest, .. } => {
                let Some(path) = path else {
                    return Some("a helper or lookup produced no value".to_owned());
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
                if let Some(Nearest {
                    path: parent,
                    keys: parent_keys,
                }) = nearest.as_deref()
                {
                    let shown = if parent.is_empty() {
                        "the context's top level".to_owned()
                    } else {
                        format!("`{parent}`")
                    };
                    if parent_keys.is_empty() {
                        hint.push_str(&format!("; {shown} is empty"));
                    } else {
                        let mut keys: Vec<&str> =
                            parent_keys.iter().take(20).map(String::as_str).collect();
                        if parent_keys.len() > 20 {
                            keys.push("…");
                        }
                        hint.push_str(&format!("; {shown} has: {}", keys.join(", ")));
                    }
                }
                Some(hint)
            }
            RenderError::UnusableValue { .. } => Some(
                "`#each` needs a list or an object and `#with` a non-empty value; guard the \
                 block with `{{#if …}}` or add an `{{else}}` branch"
                    .to_owned(),
            ),
            RenderError::Required { path, .. } => {
                Some(match path.as_deref().and_then(values_key) {
                    Some(key) => format!(
                        "set `{key}` in the service's values in sandbox.yaml or a values file"
                    ),
                    None => "give the required value a non-empty value".to_owned(),
                })
            }
            RenderError::File {
                problem, repo_root, ..
            } => {
                let root = repo_root
                    .as_ref()
                    .map(|r| format!(" ({})", r.display()))
                    .unwrap_or_default();
                Some(match problem {
                    FileProblem::NoRepoRoot => {
                        "`file`/`files` need the service's repository checked out; this render \
                         has none"
                            .to_owned()
                    }
                    FileProblem::OutsideRepo => format!(
                        "`file`/`files` only read inside the repository{root}: give a path \
                         relative to its root, without `..`"
                    ),
                    FileProblem::NotFound => {
                        format!("paths are relative to the repository root{root}")
                    }
                    FileProblem::NotAFile => "give the path of a file, not a directory".to_owned(),
                    FileProblem::NotUtf8 => {
                        "only text files can be included; store binary data base64-encoded in \
                         the repository"
                            .to_owned()
                    }
                    FileProblem::Unreadable => "check the file's permissions".to_owned(),
                    FileProblem::InvalidGlob => {
                        "glob syntax: `*` `?` `[abc]` within a directory, `**` for any depth"
                            .to_owned()
                    }
                })
            }
            RenderError::Helper { usage, .. } => Some(format!("usage: {usage}")),
            RenderError::Template { source, .. } => match source.as_ref() {
                RenderErrorReason::HelperNotFound(_) => Some(format!(
                    "available helpers: {} and Handlebars' built-ins (if, unless, each, with, \
                     lookup, eq, ne, lt, gt, and, or, not, len)",
                    helpers::HELPER_NAMES.join(", ")
                )),
                RenderErrorReason::ParamNotFoundForIndex(helper, _)
                | RenderErrorReason::ParamNotFoundForName(helper, _) => Some(format!(
                    "a value given to `{helper}` is missing (or an argument is left out); give \
                     a fallback with `(default values.x \"…\")`"
                )),
                _ => None,
            },
            RenderError::Yaml {
                line,
                rendered_line,
                ..
            } => {
                let mut hint = String::new();
                if let (Some(l), Some(text)) = (line, rendered_line) {
                    hint.push_str(&format!("rendered line {l}: {}\n", text.trim_end()));
                }
                hint.push_str(
                    "run `sandbox render` to see the rendered output; check the indentation \
                     of inserted values (`nindent`) and quote strings (`quote`)",
                );
                Some(hint)
            }
            RenderError::InvalidObject { .. } => Some(
                "every YAML document a template renders must be a Kubernetes object with \
                 `apiVersion`, `kind` and `metadata.name`; run `sandbox render` to see the \
                 rendered output"
                    .to_owned(),
            ),
        }
    }
}

/// `values.database.host` → `database.host`.
fn values_key(path: &str) -> Option<&str> {
    let p = path.strip_prefix("@root.").unwrap_or(path);
    p.strip_prefix("values.").filter(|k| !k.is_empty())
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
fn locate(text: &str, needle: &str) -> Option<(usize, usize)> {
    let at = text.find(needle)?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Some((line, column))
}

/// The `n`th (1-based) line of `text`.
fn nth_line(text: &str, n: usize) -> Option<String> {
    n.checked_sub(1)
        .and_then(|i| text.lines().nth(i))
        .map(str::to_owned)
}

/// Split a Handlebars path (`values.a.[b.c]`) into segments; None if it is not resolvable
/// from the context root (`../x`, `@index`, …).
fn path_segments(path: &str) -> Option<Vec<String>> {
    let p = path.strip_prefix("@root.").unwrap_or(path);
    if p.starts_with('@') || p.starts_with("..") || p.contains("../") || p.contains('/') {
        return None;
    }
    let mut segs = Vec::new();
    let mut cur = String::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '[' => {
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '.' => segs.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    segs.push(cur);
    if segs.iter().any(String::is_empty) {
        return None;
    }
    Some(segs)
}

/// The value at a root-relative `path`, if it exists.
fn resolve<'v>(context: &'v Value, path: &str) -> Option<&'v Value> {
    if path.starts_with("this.") || path.starts_with("./") {
        return None;
    }
    let mut cur = context;
    for seg in path_segments(path)? {
        cur = cur.as_object()?.get(&seg)?;
    }
    Some(cur)
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) if s.is_empty() => "an empty string".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "an empty list".to_owned(),
        Value::Object(_) => "an empty object".to_owned(),
    }
}

/// For a missing `path`, the deepest existing object on the way and its keys. Only for paths
/// that resolve from the context root: inside `each`/`with` a path is relative to the block's
/// context, which is not known here, so the first segment must exist at the root.
fn nearest_parent(context: &Value, path: &str) -> Option<Nearest> {
    let rooted = path.starts_with("@root.");
    if path.starts_with("this.") || path.starts_with("./") {
        return None;
    }
    let segs = path_segments(path)?;
    let mut cur = context;
    let mut walked: Vec<&str> = Vec::new();
    for seg in &segs {
        let obj = cur.as_object()?;
        match obj.get(seg) {
            Some(next) => {
                cur = next;
                walked.push(seg);
            }
            None if walked.is_empty() && !rooted => return None,
            None => {
                return Some(Nearest {
                    path: walked.join("."),
                    keys: obj.keys().cloned().collect(),
                })
            }
        }
    }
    None
}

/// Map a Handlebars error to ours.
fn from_handlebars(
    e: handlebars::RenderError,
    template: &str,
    context: &Value,
    repo_root: Option<&Path>,
) -> RenderError {
    let template = e
        .template_name
        .clone()
        .unwrap_or_else(|| template.to_owned());
    let (line, column) = (e.line_no, e.column_no);
    let reason: RenderErrorReason = e.into();
    let missing = |template: String, path: Option<String>| {
        // `each`/`with` report an unusable value like a missing one: tell them apart.
        if let Some(found) = path.as_deref().and_then(|p| resolve(context, p)) {
            let usable = match found {
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => false,
            };
            if !usable {
                return RenderError::UnusableValue {
                    template,
                    line,
                    column,
                    path: path.unwrap_or_default(),
                    found: describe_value(found),
                };
            }
        }
        let nearest = path
            .as_deref()
            .and_then(|p| nearest_parent(context, p))
            .map(Box::new);
        RenderError::MissingValue {
            template,
            line,
            column,
            path,
            nearest,
        }
    };
    match reason {
        RenderErrorReason::MissingVariable(path) => missing(template, path),
        RenderErrorReason::NestedError(inner) => match inner.downcast::<HelperError>() {
            Ok(he) => match *he {
                HelperError::Missing { path } => missing(template, path),
                HelperError::Required { path, message } => RenderError::Required {
                    template,
                    line,
                    column,
                    path,
                    message,
                },
                HelperError::BadArgument {
                    helper,
                    usage,
                    message,
                } => RenderError::Helper {
                    template,
                    line,
                    column,
                    helper,
                    message,
                    usage,
                },
                HelperError::File {
                    path,
                    problem,
                    source,
                } => RenderError::File {
                    template,
                    line,
                    column,
                    path,
                    problem,
                    repo_root: repo_root.map(Box::from),
                    source,
                },
            },
            Err(other) => RenderError::Template {
                template,
                line,
                column,
                source: Box::new(RenderErrorReason::NestedError(other)),
            },
        },
        source => RenderError::Template {
            template,
            line,
            column,
            source: Box::new(source),
        },
    }
}

/// One `---`-delimited chunk of the rendered text.
struct Chunk<'a> {
    /// 1-based line of the chunk's first line in the rendered text.
    start_line: usize,
    text: &'a str,
}

/// `---` (or `...`) at column 0, followed by whitespace or end of line.
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
}

/// Split the rendered text at document markers. YAML forbids `---` / `...` at column 0 inside
/// any scalar, so this matches the parser's own document boundaries, and gives each document's
/// line in the rendered text.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0usize; // byte offset of the current chunk
    let mut start_line = 1usize;
    let mut offset = 0usize;
    let mut line_no = 1usize;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        if is_marker(content, "---") && offset > start {
            chunks.push(Chunk {
                start_line,
                text: &text[start..offset],
            });
            start = offset;
            start_line = line_no;
        }
        offset += line.len();
        line_no += 1;
        if is_marker(content, "...") {
            chunks.push(Chunk {
                start_line,
                text: &text[start..offset],
            });
            start = offset;
            start_line = line_no;
        }
    }
    if offset > start {
        chunks.push(Chunk {
            start_line,
            text: &text[start..offset],
        });
    }
    chunks
}

/// Line (1-based, in the rendered text) of the first line with content in the chunk, if any.
fn first_content_line(chunk: &Chunk<'_>) -> Option<usize> {
    chunk.text.lines().enumerate().find_map(|(i, line)| {
        let t = line.trim();
        let t = if is_marker(t, "---") {
            t[3..].trim()
        } else {
            t
        };
        let blank = t.is_empty() || t.starts_with('#') || is_marker(t, "...");
        (!blank).then_some(chunk.start_line + i)
    })
}

/// Parse rendered text into Kubernetes objects (see [`Renderer::render`]).
fn parse_manifests(template: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    let mut manifests = Vec::new();
    let mut document = 0usize;
    for chunk in split_documents(text) {
        let Some(content_line) = first_content_line(&chunk) else {
            continue; // empty document
        };
        document += 1;
        // Pad with newlines so the parser's positions are positions in the whole output.
        let padded = format!("{}{}", "\n".repeat(chunk.start_line - 1), chunk.text);
        for doc in serde_yaml_ng::Deserializer::from_str(&padded) {
            let object = Value::deserialize(doc).map_err(|source| {
                let location = source.location();
                let line = location.as_ref().map(|l| l.line());
                RenderError::Yaml {
                    template: template.to_owned(),
                    document,
                    line,
                    column: location.as_ref().map(|l| l.column()),
                    rendered_line: line.and_then(|l| nth_line(text, l)),
                    source,
                }
            })?;
            if object.is_null() {
                continue; // e.g. a document holding only `~`
            }
            if let Some(problem) = object_problem(&object) {
                return Err(RenderError::InvalidObject {
                    template: template.to_owned(),
                    document,
                    line: content_line,
                    problem,
                });
            }
            manifests.push(Manifest {
                template: template.to_owned(),
                object,
            });
        }
    }
    Ok(manifests)
}

/// Why `object` is not a Kubernetes object, if it is not.
fn object_problem(object: &Value) -> Option<String> {
    let Some(map) = object.as_object() else {
        return Some(format!(
            "expected a Kubernetes object (a mapping), got {}",
            match object {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "something else",
            }
        ));
    };
    let mut missing = Vec::new();
    for key in ["apiVersion", "kind"] {
        match map.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) => missing.push(format!("`{key}` is empty")),
            Some(_) => missing.push(format!("`{key}` is not a string")),
            None => missing.push(format!("no `{key}`")),
        }
    }
    match map.get("metadata") {
        Some(Value::Object(meta)) => match meta.get("name") {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) => missing.push("`metadata.name` is empty".to_owned()),
            Some(_) => missing.push("`metadata.name` is not a string".to_owned()),
            None => missing.push("no `metadata.name`".to_owned()),
        },
        Some(_) => missing.push("`metadata` is not a mapping".to_owned()),
        None => missing.push("no `metadata.name`".to_owned()),
    }
    if missing.is_empty() {
        return None;
    }
    let mut problem = missing.join(", ");
    if let Some(kind) = map.get("kind").and_then(Value::as_str) {
        problem = format!("{kind}: {problem}");
    }
    Some(problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::error::Error as _;

    fn ctx() -> Value {
        json!({
            "values": {
                "replicas": 2,
                "zero": 0,
                "empty": "",
                "nothing": null,
                "image": {"repository": "registry.example.com/api"},
                "database": {"url": "postgres://db:5432/app", "port": 5432},
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}},
                "list": ["a", "b"],
                "secret": "s3cr3t",
                "multi": "a\n\nb\n"
            },
            "sandbox": {"name": "feature-x", "branch": "feature/x", "namespace": "sb-feature-x"},
            "repo": {"name": "api", "branch": "feature/x", "sha": "0123456789abcdef", "short_sha": "0123456", "fell_back": false},
            "services": {"api": {"host": "api.sb-feature-x.svc", "port": 8080}, "db": {"host": "db", "port": 5432}},
            "service": {"name": "api"}
        })
    }

    fn tpl(text: &str) -> TemplateSource {
        TemplateSource::new("templates/test.yaml", text)
    }

    fn text(template: &str) -> Result<String, RenderError> {
        Renderer::new(None).render_text(&tpl(template), &ctx())
    }

    fn ok(template: &str) -> String {
        text(template).unwrap_or_else(|e| panic!("{template}: {e} ({:?})", e.source()))
    }

    fn err(template: &str) -> RenderError {
        match text(template) {
            Ok(out) => panic!("{template}: expected an error, got {out:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn error_type_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<RenderError>();
        check::<Renderer>();
        // Small enough for `Result<_, RenderError>` (clippy::result_large_err).
        assert!(std::mem::size_of::<RenderError>() < 128);
    }

    #[test]
    fn plain_values_and_no_html_escaping() {
        assert_eq!(ok("{{sandbox.name}}/{{values.replicas}}"), "feature-x/2");
        assert_eq!(ok("{{values.database.url}}"), "postgres://db:5432/app");
        assert_eq!(
            Renderer::new(None)
                .render_text(
                    &tpl("{{values.x}}"),
                    &json!({"values": {"x": "<a href='x'>&</a>"}})
                )
                .unwrap(),
            "<a href='x'>&</a>"
        );
    }

    #[test]
    fn strict_mode_missing_value_names_template_line_and_path() {
        let e = err("a: 1\nb: {{values.database.host}}\n");
        match &e {
            RenderError::MissingValue {
                template,
                line,
                column,
                path,
                nearest,
            } => {
                assert_eq!(template, "templates/test.yaml");
                assert_eq!(*line, Some(2));
                assert!(column.is_some());
                assert_eq!(path.as_deref(), Some("values.database.host"));
                let nearest = nearest.as_deref().unwrap();
                assert_eq!(nearest.path, "values.database");
                assert_eq!(nearest.keys, ["url", "port"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.starts_with("templates/test.yaml:2:"), "{msg}");
        assert!(msg.contains("`values.database.host`"), "{msg}");
        let hint = e.hint().unwrap();
        assert!(hint.contains("add `database.host`"), "{hint}");
        assert!(
            hint.contains("{{default values.database.host \"…\"}}"),
            "{hint}"
        );
        assert!(hint.contains("`values.database` has: url, port"), "{hint}");

        // A missing intermediate object.
        match err("{{values.cache.host}}") {
            RenderError::MissingValue { path, nearest, .. } => {
                assert_eq!(path.as_deref(), Some("values.cache.host"));
                assert_eq!(nearest.unwrap().path, "values");
            }
            other => panic!("unexpected {other:?}"),
        }
        // Outside `values`.
        let e = err("{{services.redis.host}}");
        let hint = e.hint().unwrap();
        assert!(hint.contains("`services` has: api, db"), "{hint}");
    }

    #[test]
    fn missing_value_inside_blocks_reports_inner_line() {
        let e = err("x:\n{{#each values.list}}\n  - {{this}}\n  - {{values.nope}}\n{{/each}}\n");
        assert_eq!(e.line(), Some(4), "{e}");
        let e = err("{{#if values.replicas}}\n\n{{values.nope}}{{/if}}");
        assert_eq!(e.line(), Some(3), "{e}");
        // `if` on a missing value is false, not an error.
        assert_eq!(ok("{{#if values.nope}}yes{{else}}no{{/if}}"), "no");
        // `each` over a missing value is an error.
        assert!(matches!(
            err("{{#each values.nope}}{{this}}{{/each}}"),
            RenderError::MissingValue { .. }
        ));
        // `each` over a scalar or null, `with` over null: the value exists but is unusable.
        let e = err("{{#each values.replicas}}{{this}}{{/each}}");
        assert!(
            matches!(&e, RenderError::UnusableValue { path, found, .. } if path == "values.replicas" && found == "a number (2)"),
            "{e:?}"
        );
        assert!(e.hint().unwrap().contains("{{else}}"));
        assert!(matches!(
            err("{{#with values.nothing}}x{{/with}}"),
            RenderError::UnusableValue { .. }
        ));
        assert_eq!(ok("{{#each values.nothing}}x{{else}}none{{/each}}"), "none");
        assert_eq!(ok("{{#with values.database}}{{port}}{{/with}}"), "5432");
    }

    #[test]
    fn default_helper() {
        assert_eq!(ok("{{default values.missing \"fallback\"}}"), "fallback");
        assert_eq!(ok("{{default values.a.b.c \"deep\"}}"), "deep");
        assert_eq!(ok("{{default values.nothing \"n\"}}"), "n");
        assert_eq!(ok("{{default values.empty \"e\"}}"), "e");
        assert_eq!(ok("{{default values.replicas 1}}"), "2");
        assert_eq!(ok("{{default values.zero 1}}"), "0");
        assert_eq!(ok("{{default values.missing repo.short_sha}}"), "0123456");
        // Composes as a subexpression.
        assert_eq!(ok("{{quote (default values.missing 3)}}"), "\"3\"");
        // A missing fallback is still strict.
        assert!(matches!(
            err("{{default values.missing values.alsoMissing}}"),
            RenderError::MissingValue { path: Some(p), .. } if p == "values.alsoMissing"
        ));
        assert!(matches!(
            err("{{default values.missing}}"),
            RenderError::Helper { .. }
        ));
    }

    #[test]
    fn quote_helper() {
        assert_eq!(ok("{{quote sandbox.name}}"), "\"feature-x\"");
        assert_eq!(ok("{{quote values.replicas}}"), "\"2\"");
        assert_eq!(
            Renderer::new(None)
                .render_text(&tpl("{{quote x}}"), &json!({"x": "a \"b\"\n\\c"}))
                .unwrap(),
            r#""a \"b\"\n\\c""#
        );
        assert_eq!(ok("{{quote \"a\" \"b\"}}"), "\"a\" \"b\"");
        assert!(matches!(
            err("{{quote values.nope}}"),
            RenderError::MissingValue { path: Some(p), .. } if p == "values.nope"
        ));
        let e = err("{{quote values.resources}}");
        assert!(
            matches!(&e, RenderError::Helper { helper, .. } if *helper == "quote"),
            "{e:?}"
        );
        assert!(e.to_string().contains("`values.resources`"), "{e}");
        assert!(e.hint().unwrap().starts_with("usage: {{quote"));
    }

    #[test]
    fn required_helper() {
        assert_eq!(
            ok("{{required values.database.url \"need db\"}}"),
            "postgres://db:5432/app"
        );
        let e = err("a: 1\n{{required values.database.host \"the api needs a database host\"}}");
        match &e {
            RenderError::Required {
                line,
                path,
                message,
                ..
            } => {
                assert_eq!(*line, Some(2));
                assert_eq!(path.as_deref(), Some("values.database.host"));
                assert_eq!(message, "the api needs a database host");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("the api needs a database host"));
        assert!(e.hint().unwrap().contains("`database.host`"));
        assert!(matches!(
            err("{{required values.empty \"m\"}}"),
            RenderError::Required { .. }
        ));
        assert!(matches!(
            err("{{required values.nothing \"m\"}}"),
            RenderError::Required { .. }
        ));
        assert_eq!(ok("{{required values.zero \"m\"}}"), "0");
    }

    #[test]
    fn b64enc_helper() {
        assert_eq!(ok("{{b64enc values.secret}}"), "czNjcjN0");
        assert_eq!(ok("{{b64enc values.replicas}}"), "Mg==");
        assert!(matches!(
            err("{{b64enc values.nothing}}"),
            RenderError::Helper { .. }
        ));
        assert!(matches!(
            err("{{b64enc values.nope}}"),
            RenderError::MissingValue { .. }
        ));
    }

    #[test]
    fn to_yaml_and_to_json_helpers() {
        assert_eq!(
            ok("{{toYaml values.resources}}"),
            "limits:\n  cpu: 500m\n  memory: 256Mi\nrequests:\n  cpu: 100m"
        );
        assert_eq!(ok("{{toYaml values.list}}"), "- a\n- b");
        assert_eq!(ok("{{toYaml values.replicas}}"), "2");
        assert_eq!(ok("{{toJson values.list}}"), "[\"a\",\"b\"]");
        assert_eq!(
            ok("{{toJson values.resources}}"),
            r#"{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m"}}"#
        );
        assert!(matches!(
            err("{{toYaml values.nope}}"),
            RenderError::MissingValue { .. }
        ));
        assert!(matches!(
            err("{{toJson values.nope}}"),
            RenderError::MissingValue { .. }
        ));
    }

    #[test]
    fn indent_and_nindent_helpers() {
        assert_eq!(ok("{{indent 2 values.multi}}"), "  a\n\n  b\n");
        assert_eq!(ok("{{nindent 2 values.multi}}"), "\n  a\n\n  b\n");
        assert_eq!(ok("{{indent 0 values.multi}}"), "a\n\nb\n");
        assert_eq!(ok("{{indent \"3\" \"a\"}}"), "   a");
        let e = err("{{indent -1 \"a\"}}");
        assert!(
            matches!(&e, RenderError::Helper { helper, .. } if *helper == "indent"),
            "{e:?}"
        );
        assert!(matches!(
            err("{{indent \"x\" \"a\"}}"),
            RenderError::Helper { .. }
        ));
        assert!(matches!(err("{{nindent 4}}"), RenderError::Helper { .. }));
    }

    #[test]
    fn to_yaml_with_nindent_produces_valid_nested_yaml() {
        let template = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      resources:{{nindent 8 (toYaml values.resources)}}\n      args:{{nindent 8 (toYaml values.list)}}\n";
        let out = Renderer::new(None).render(&tpl(template), &ctx()).unwrap();
        assert_eq!(out.len(), 1);
        let container = &out[0].object["spec"]["containers"][0];
        assert_eq!(container["resources"], ctx()["values"]["resources"]);
        assert_eq!(container["args"], json!(["a", "b"]));
    }

    #[test]
    fn sha256_helper_is_stable() {
        assert_eq!(
            ok("{{sha256 \"abc\"}}"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let a = ok("{{sha256 values}}");
        assert_eq!(a.len(), 64);
        assert_eq!(a, ok("{{sha256 values}}"));
        // Same values inserted in another order hash the same.
        let mut reordered = ctx();
        let values = reordered["values"].as_object().unwrap().clone();
        let mut rev = serde_json::Map::new();
        for (k, v) in values.into_iter().rev() {
            rev.insert(k, v);
        }
        reordered["values"] = Value::Object(rev);
        let b = Renderer::new(None)
            .render_text(&tpl("{{sha256 values}}"), &reordered)
            .unwrap();
        assert_eq!(a, b);
        // A change changes it.
        let mut changed = ctx();
        changed["values"]["replicas"] = json!(3);
        let c = Renderer::new(None)
            .render_text(&tpl("{{sha256 values}}"), &changed)
            .unwrap();
        assert_ne!(a, c);
        assert!(matches!(
            err("{{sha256 values.nope}}"),
            RenderError::MissingValue { .. }
        ));
    }

    #[test]
    fn string_helpers() {
        assert_eq!(ok("{{trunc 3 sandbox.name}}"), "fea");
        assert_eq!(ok("{{trunc -1 sandbox.name}}"), "x");
        assert_eq!(ok("{{trunc 63 sandbox.name}}"), "feature-x");
        assert!(matches!(
            err("{{trunc \"a\" sandbox.name}}"),
            RenderError::Helper { .. }
        ));
        assert_eq!(ok("{{lower \"AbC\"}}"), "abc");
        assert_eq!(ok("{{upper sandbox.name}}"), "FEATURE-X");
        assert!(matches!(
            err("{{upper values.list}}"),
            RenderError::Helper { .. }
        ));
        assert_eq!(ok("{{replace \"/\" \"-\" sandbox.branch}}"), "feature-x");
        assert!(matches!(
            err("{{replace \"/\" sandbox.branch}}"),
            RenderError::Helper { .. }
        ));
        assert!(matches!(
            err("{{replace \"\" \"-\" sandbox.branch}}"),
            RenderError::Helper { .. }
        ));
        assert_eq!(ok("{{trimSuffix \"-\" \"abc-\"}}"), "abc");
        assert_eq!(ok("{{trimSuffix \"-\" \"abc\"}}"), "abc");
    }

    #[test]
    fn syntax_error_and_unknown_helper() {
        let e = err("a: 1\nb: {{#if x}}\n");
        assert!(
            matches!(&e, RenderError::Syntax { template, .. } if template == "templates/test.yaml"),
            "{e:?}"
        );
        assert!(e.source().is_some());
        let e = err("a: 1\nb: {{#each}}{{/if}}\n");
        assert!(
            matches!(e, RenderError::Syntax { line: Some(2), .. }),
            "{e:?}"
        );
        assert!(e.hint().unwrap().contains("b: {{#each}}"));

        // No position from Handlebars for a bad parameter: located in the text.
        let e = err("a: 1\nb: {{quote \"x\ny\"}}\n");
        assert!(
            matches!(
                e,
                RenderError::Syntax {
                    line: Some(2),
                    column: Some(12),
                    ..
                }
            ),
            "{e:?}"
        );

        let e = err("{{#if (eq values.nope \"prod\")}}x{{/if}}");
        assert!(matches!(e, RenderError::Template { .. }), "{e:?}");
        assert!(e.hint().unwrap().contains("`eq`"), "{:?}", e.hint());

        let e = err("a: {{nosuchhelper values.replicas}}");
        assert!(matches!(e, RenderError::Template { .. }), "{e:?}");
        assert!(e.hint().unwrap().contains("nindent"));
    }

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::create_dir_all(root.join("scripts/sub")).unwrap();
        std::fs::write(root.join("config/app.toml"), "[server]\nport = 8080\n").unwrap();
        std::fs::write(root.join("scripts/b.sh"), "echo b\n").unwrap();
        std::fs::write(root.join("scripts/a.sh"), "echo \"a\"\n").unwrap();
        std::fs::write(root.join("scripts/.hidden.sh"), "hidden\n").unwrap();
        std::fs::write(root.join("scripts/notes.txt"), "not a script").unwrap();
        std::fs::write(root.join("scripts/sub/c.sh"), "echo c\n").unwrap();
        std::fs::write(root.join("binary.bin"), [0xff, 0xfe, 0x00]).unwrap();
        std::fs::write(
            dir.path().parent().unwrap().join("outside-secret.txt"),
            "nope",
        )
        .ok();
        dir
    }

    fn in_repo(root: &Path, template: &str) -> Result<String, RenderError> {
        Renderer::new(Some(root.to_path_buf())).render_text(&tpl(template), &ctx())
    }

    #[test]
    fn file_helper() {
        let dir = repo();
        let root = dir.path();
        assert_eq!(
            in_repo(root, "{{file \"config/app.toml\"}}").unwrap(),
            "[server]\nport = 8080\n"
        );
        assert_eq!(
            in_repo(root, "{{file \"./config/app.toml\"}}").unwrap(),
            "[server]\nport = 8080\n"
        );

        let e = in_repo(root, "x\n{{file \"config/missing.toml\"}}").unwrap_err();
        match &e {
            RenderError::File {
                line,
                path,
                problem,
                ..
            } => {
                assert_eq!(*line, Some(2));
                assert_eq!(path, "config/missing.toml");
                assert_eq!(*problem, FileProblem::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("`config/missing.toml`"), "{e}");
        assert!(e.source().is_some());

        for escape in [
            "../outside-secret.txt",
            "config/../../outside-secret.txt",
            "/etc/passwd",
        ] {
            let e = in_repo(root, &format!("{{{{file \"{escape}\"}}}}")).unwrap_err();
            assert!(
                matches!(&e, RenderError::File { problem: FileProblem::OutsideRepo, path, .. } if path == escape),
                "{escape}: {e:?}"
            );
            assert!(e.hint().unwrap().contains("without `..`"));
        }

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
            let e = in_repo(root, "{{file \"etc-link/hostname\"}}").unwrap_err();
            assert!(
                matches!(
                    &e,
                    RenderError::File {
                        problem: FileProblem::OutsideRepo | FileProblem::NotFound,
                        ..
                    }
                ),
                "{e:?}"
            );
        }

        let e = in_repo(root, "{{file \"config\"}}").unwrap_err();
        assert!(
            matches!(
                e,
                RenderError::File {
                    problem: FileProblem::NotAFile,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = in_repo(root, "{{file \"binary.bin\"}}").unwrap_err();
        assert!(
            matches!(
                e,
                RenderError::File {
                    problem: FileProblem::NotUtf8,
                    ..
                }
            ),
            "{e:?}"
        );

        let e = err("{{file \"config/app.toml\"}}");
        assert!(
            matches!(
                e,
                RenderError::File {
                    problem: FileProblem::NoRepoRoot,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(matches!(
            err("{{file values.nope}}"),
            RenderError::MissingValue { .. }
        ));
    }

    #[test]
    fn files_helper() {
        let dir = repo();
        let root = dir.path();
        let out = in_repo(
            root,
            "{{#each (files \"scripts/*.sh\")}}{{this.path}}|{{this.name}}|{{quote this.content}};{{/each}}",
        )
        .unwrap();
        assert_eq!(
            out,
            r#"scripts/a.sh|a.sh|"echo \"a\"\n";scripts/b.sh|b.sh|"echo b\n";"#
        );
        let out = in_repo(
            root,
            "{{#each (files \"scripts/**/*.sh\")}}{{this.path}} {{/each}}",
        )
        .unwrap();
        assert_eq!(out, "scripts/a.sh scripts/b.sh scripts/sub/c.sh ");
        let out = in_repo(
            root,
            "{{#each (files \"scripts/.*.sh\")}}{{this.path}}{{/each}}",
        )
        .unwrap();
        assert_eq!(out, "scripts/.hidden.sh");
        assert_eq!(in_repo(root, "{{len (files \"nothing/*\")}}").unwrap(), "0");

        let e = in_repo(root, "{{files \"../*\"}}").unwrap_err();
        assert!(
            matches!(
                e,
                RenderError::File {
                    problem: FileProblem::OutsideRepo,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = in_repo(root, "{{files \"/etc/*\"}}").unwrap_err();
        assert!(
            matches!(
                e,
                RenderError::File {
                    problem: FileProblem::OutsideRepo,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = in_repo(root, "{{files \"scripts/[\"}}").unwrap_err();
        assert!(
            matches!(
                e,
                RenderError::File {
                    problem: FileProblem::InvalidGlob,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = err("{{files \"*\"}}");
        assert!(
            matches!(
                e,
                RenderError::File {
                    problem: FileProblem::NoRepoRoot,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn multi_document_parsing() {
        let r = Renderer::new(None);
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n...\n---\n";
        let m = r.render(&tpl(text), &ctx()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].kind(), m[0].name(), m[0].api_version()),
            ("ConfigMap", "a", "v1")
        );
        assert_eq!((m[1].kind(), m[1].name()), ("Secret", "b"));
        assert_eq!(m[1].template, "templates/test.yaml");
        assert!(r.render(&tpl(""), &ctx()).unwrap().is_empty());
        assert!(r.render(&tpl("\n---\n---\n"), &ctx()).unwrap().is_empty());

        // A document without kind: index among non-empty documents and its rendered line.
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\n---\n# hi\napiVersion: v1\nmetadata:\n  name: b\n";
        let e = r.render(&tpl(text), &ctx()).unwrap_err();
        match &e {
            RenderError::InvalidObject {
                document,
                line,
                problem,
                ..
            } => {
                assert_eq!(*document, 2);
                assert_eq!(*line, 10);
                assert!(problem.contains("no `kind`"), "{problem}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("document 2"), "{e}");

        let e = r.render(&tpl("- a\n- b\n"), &ctx()).unwrap_err();
        assert!(
            matches!(e, RenderError::InvalidObject { document: 1, .. }),
            "{e:?}"
        );
        let e = r
            .render(
                &tpl("apiVersion: v1\nkind: X\nmetadata:\n  name: 5\n"),
                &ctx(),
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("`metadata.name` is not a string"),
            "{e}"
        );
    }

    #[test]
    fn invalid_yaml_reports_rendered_line() {
        let r = Renderer::new(None);
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  key: a: b\n";
        let e = r.render(&tpl(text), &ctx()).unwrap_err();
        match &e {
            RenderError::Yaml {
                document,
                line,
                rendered_line,
                ..
            } => {
                assert_eq!(*document, 2);
                assert_eq!(*line, Some(11));
                assert_eq!(rendered_line.as_deref(), Some("  key: a: b"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            e.hint().unwrap().contains("rendered line 11:   key: a: b"),
            "{:?}",
            e.hint()
        );
        // render_text does not parse.
        assert!(r.render_text(&tpl(text), &ctx()).is_ok());
    }

    #[test]
    fn realistic_template_from_fixture() {
        let dir = repo();
        let r = Renderer::new(Some(dir.path().to_path_buf()));
        let source = TemplateSource::new(
            "templates/api.yaml",
            include_str!("../../../tests/fixtures/render/api.yaml"),
        );
        let m = r
            .render(&source, &ctx())
            .unwrap_or_else(|e| panic!("{e}: {:?} hint {:?}", e.source(), e.hint()));
        let kinds: Vec<_> = m.iter().map(|m| (m.kind(), m.name())).collect();
        assert_eq!(
            kinds,
            [
                ("ConfigMap", "api-config"),
                ("Deployment", "api"),
                ("Service", "api")
            ]
        );
        let cm = &m[0].object;
        assert_eq!(cm["data"]["app.toml"], "[server]\nport = 8080\n");
        assert_eq!(cm["data"]["a.sh"], "echo \"a\"\n");
        assert_eq!(cm["data"]["b.sh"], "echo b\n");
        let deploy = &m[1].object;
        assert_eq!(deploy["spec"]["replicas"], 2);
        assert_eq!(deploy["metadata"]["labels"]["sandbox"], "feature-x");
        let pod = &deploy["spec"]["template"];
        let checksum = pod["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .unwrap();
        assert_eq!(checksum.len(), 64);
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.example.com/api:0123456");
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        assert_eq!(c["env"][0]["value"], "postgres://db:5432/app");
        assert_eq!(c["env"][2]["value"], "INFO");
        assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
        assert_eq!(m[2].object["spec"]["ports"][0]["port"], 8080);

        // Without resources the block disappears; without the database url it fails.
        let mut c2 = ctx();
        c2["values"].as_object_mut().unwrap().remove("resources");
        let m = r.render(&source, &c2).unwrap();
        assert!(m[1].object["spec"]["template"]["spec"]["containers"][0]
            .get("resources")
            .is_none());
        c2["values"]["database"]
            .as_object_mut()
            .unwrap()
            .remove("url");
        let e = r.render(&source, &c2).unwrap_err();
        assert!(
            matches!(&e, RenderError::Required { template, .. } if template == "templates/api.yaml"),
            "{e:?}"
        );
        assert!(e.to_string().contains("the api needs a database"), "{e}");
    }
}

//! Handlebars' errors → [`RenderError`]: positions for syntax errors, and for a missing value
//! whether it exists but is unusable, or else the nearest object that does exist.

use std::path::Path;

use handlebars::{RenderErrorReason, TemplateErrorReason};
use serde_json::Value;

use super::error::{Nearest, RenderError, RenderErrorKind};
use super::helpers::HelperError;
use super::{nth_line, TemplateSource};

/// The template does not compile.
pub(super) fn syntax_error(
    template: &TemplateSource,
    source: handlebars::TemplateError,
) -> RenderError {
    let pos = source.pos().or_else(|| match source.reason() {
        // Handlebars gives no position for a bad parameter: find it.
        TemplateErrorReason::InvalidParam(param) => locate(&template.text, param),
        _ => None,
    });
    let (line, column) = pos.unzip();
    RenderError {
        template: template.name.clone(),
        line,
        column,
        kind: RenderErrorKind::Syntax {
            source_line: line.and_then(|l| nth_line(&template.text, l)),
            source: Box::new(source),
        },
    }
}

/// Rendering failed: say where and why, in our terms.
pub(super) fn from_handlebars(
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
    let kind = match e.into() {
        RenderErrorReason::MissingVariable(path) => missing(context, path),
        RenderErrorReason::NestedError(inner) => match inner.downcast::<HelperError>() {
            Ok(helper_error) => from_helper(*helper_error, context, repo_root),
            Err(other) => RenderErrorKind::Template {
                source: Box::new(RenderErrorReason::NestedError(other)),
            },
        },
        source => RenderErrorKind::Template {
            source: Box::new(source),
        },
    };
    RenderError {
        template,
        line,
        column,
        kind,
    }
}

/// A helper's failure (the caller adds where).
fn from_helper(e: HelperError, context: &Value, repo_root: Option<&Path>) -> RenderErrorKind {
    match e {
        HelperError::Missing { path } => missing(context, path),
        HelperError::Required { path, message } => RenderErrorKind::Required { path, message },
        HelperError::BadArgument {
            helper,
            usage,
            message,
        } => RenderErrorKind::Helper {
            helper,
            message,
            usage,
        },
        HelperError::File {
            path,
            problem,
            source,
        } => RenderErrorKind::File {
            path,
            problem,
            repo_root: repo_root.map(Box::from),
            source,
        },
    }
}

/// A value Handlebars reports missing. `each`/`with` report an unusable value like a missing
/// one: tell them apart.
fn missing(context: &Value, path: Option<String>) -> RenderErrorKind {
    let unusable = path
        .as_deref()
        .and_then(|p| resolve(context, p))
        .filter(|found| !is_usable_in_block(found));
    if let Some(found) = unusable {
        return RenderErrorKind::UnusableValue {
            found: describe_value(found),
            path: path.unwrap_or_default(),
        };
    }
    let nearest = path
        .as_deref()
        .and_then(|p| nearest_parent(context, p))
        .map(Box::new);
    RenderErrorKind::MissingValue { path, nearest }
}

/// Whether `#each` / `#with` can use the value: a non-empty list or object.
fn is_usable_in_block(value: &Value) -> bool {
    match value {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => false,
    }
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
fn locate(text: &str, needle: &str) -> Option<(usize, usize)> {
    let at = text.find(needle)?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Some((line, column))
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

//! Rendered text → Kubernetes objects: split at document markers, parse each document, check
//! that it is a Kubernetes object. Positions are lines of the rendered text.

use serde::Deserialize;
use serde_json::Value;

use super::error::{RenderError, RenderErrorKind};
use super::{nth_line, Manifest};

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

/// Parse rendered text into Kubernetes objects (see [`super::Renderer::render`]).
pub(crate) fn parse_manifests(template: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    let mut manifests = Vec::new();
    let mut document = 0usize;
    for chunk in split_documents(text) {
        let Some(content_line) = first_content_line(&chunk) else {
            continue; // empty document
        };
        document += 1;
        // Pad with newlines so the parser's positions are positions in the whole output.
        let padded = format!("{}{}", "\n".repeat(chunk.start_line - 1), chunk.text);
        crate::yaml::check_expansion(&padded).map_err(|source| RenderError {
            template: template.to_owned(),
            line: source.line(),
            column: None,
            kind: RenderErrorKind::TooLarge { document, source },
        })?;
        for doc in serde_yaml_ng::Deserializer::from_str(&padded) {
            let object = Value::deserialize(doc)
                .map_err(|source| yaml_error(template, text, document, source))?;
            if object.is_null() {
                continue; // e.g. a document holding only `~`
            }
            if let Some(problem) = object_problem(&object) {
                return Err(RenderError {
                    template: template.to_owned(),
                    line: Some(content_line),
                    column: None,
                    kind: RenderErrorKind::InvalidObject { document, problem },
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

/// Rendered `document` of `text` is not valid YAML.
fn yaml_error(
    template: &str,
    text: &str,
    document: usize,
    source: serde_yaml_ng::Error,
) -> RenderError {
    let (line, column) = source.location().map(|l| (l.line(), l.column())).unzip();
    RenderError {
        template: template.to_owned(),
        line,
        column,
        kind: RenderErrorKind::Yaml {
            document,
            rendered_line: line.and_then(|l| nth_line(text, l)),
            source,
        },
    }
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

//! What can be wrong in `sandbox.yaml`, always with the file and the line: [`ConfigError`], and
//! serde's messages turned into one (position, "did you mean").

use std::path::{Path, PathBuf};

use crate::error::Hint;
use crate::text::suggest;

use super::raw::TOP_FIELDS;
use super::FILE_NAME;

/// What went wrong in `sandbox.yaml`, with where.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("could not read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the schema (unknown field, wrong type…).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
    /// A field is present and well-formed but its value is not acceptable.
    #[error("{}:{line}: `{field}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
        hint: Option<String>,
    },
    /// `depends_on` edges form a cycle.
    #[error("{}:{line}: dependency cycle: {}", path.display(), cycle.join(" → "))]
    Cycle {
        path: PathBuf,
        line: usize,
        cycle: Vec<String>,
    },
}

impl Hint for ConfigError {
    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Read { path, .. } => Some(format!(
                "run sandbox in the directory holding {FILE_NAME}, or pass --config {}",
                path.display()
            )),
            ConfigError::Parse { hint, .. } | ConfigError::Invalid { hint, .. } => hint.clone(),
            ConfigError::Cycle { .. } => {
                Some("remove one of these `depends_on` edges so the services form a DAG".into())
            }
        }
    }
}

pub(super) fn parse_error(path: &Path, e: &serde_yaml_ng::Error) -> ConfigError {
    let message = e.to_string();
    // serde_yaml_ng appends " at line L column C" to the message; keep the message clean.
    let clean = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let (_, hint) = unknown_field_hint(&clean);
    let mut hint = hint.or_else(|| unknown_variant_hint(&clean));
    if hint.is_none() && clean.starts_with("missing field") && line <= 1 {
        hint = Some(format!("top-level fields: {}", TOP_FIELDS.join(", ")));
    }
    ConfigError::Parse {
        path: path.to_owned(),
        line,
        column,
        message: clean,
        hint,
    }
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" take the field and a hint.
pub(super) fn unknown_field_hint(message: &str) -> (Option<String>, Option<String>) {
    // Nested fields come prefixed with their path: "repo_files: unknown field `x`, …".
    let Some((_, rest)) = message.split_once("unknown field `") else {
        return (None, None);
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return (None, None);
    };
    let candidates: Vec<&str> = expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    (Some(field.to_owned()), suggest(field, &candidates))
}

/// From serde's "unknown variant `x`, expected one of `a`, `b`", a "did you mean".
pub(super) fn unknown_variant_hint(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("unknown variant `")?;
    let (word, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    suggest(word, &candidates)
}

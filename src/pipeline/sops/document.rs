//! The document around the sops metadata: its format, and parsing it into a JSON tree as sops
//! sees it.

use std::fmt;
use std::path::Path;

use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::SopsError;

/// Serialization format of a sops file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` (any case) is JSON, anything else YAML — as sops decides.
    pub(crate) fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }

    /// The name sops' `--input-type` takes.
    pub(super) fn sops_type(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

/// Whether a parsed document looks like a sops file (has a top-level `sops` map with `mac`).
pub(crate) fn is_sops_document(content: &str, format: Format) -> bool {
    match format {
        Format::Json => serde_json::from_str::<Value>(content).is_ok_and(|doc| {
            doc.get("sops")
                .and_then(Value::as_object)
                .is_some_and(|sops| sops.contains_key("mac"))
        }),
        Format::Yaml => {
            // Too large to look at is not a sops file; the caller checks the bounds first to
            // say why (`crate::yaml`).
            if crate::yaml::check_expansion(content).is_err() {
                return false;
            }
            let Some(first) = serde_yaml_ng::Deserializer::from_str(content).next() else {
                return false;
            };
            serde_yaml_ng::Value::deserialize(first).is_ok_and(|doc| {
                doc.get("sops")
                    .and_then(serde_yaml_ng::Value::as_mapping)
                    .is_some_and(|sops| sops.contains_key("mac"))
            })
        }
    }
}

/// Parses the document and returns its top-level map.
pub(super) fn parse_document(
    content: &str,
    format: Format,
    origin: &Path,
) -> Result<Map<String, Value>, SopsError> {
    let parse_error = |source: Box<dyn std::error::Error + Send + Sync>| SopsError::Parse {
        origin: origin.to_owned(),
        format,
        source,
    };
    let document = match format {
        Format::Json => {
            serde_json::from_str::<Value>(content).map_err(|e| parse_error(e.into()))?
        }
        Format::Yaml => {
            crate::yaml::check_expansion(content).map_err(|e| parse_error(e.into()))?;
            let mut documents = serde_yaml_ng::Deserializer::from_str(content);
            let Some(first) = documents.next() else {
                return Err(SopsError::NotSops {
                    origin: origin.to_owned(),
                });
            };
            let first =
                serde_yaml_ng::Value::deserialize(first).map_err(|e| parse_error(e.into()))?;
            if documents.next().is_some() {
                return Err(SopsError::MultiDocument {
                    origin: origin.to_owned(),
                });
            }
            yaml_to_json(first, &mut Vec::new(), origin)?
        }
    };
    match document {
        Value::Object(map) => Ok(map),
        _ => Err(SopsError::NotSops {
            origin: origin.to_owned(),
        }),
    }
}

/// Converts a YAML value to JSON as sops sees it: string keys only, finite numbers, explicit
/// `!!timestamp` tags as RFC 3339 strings, other tags ignored.
pub(super) fn yaml_to_json(
    value: serde_yaml_ng::Value,
    path: &mut Vec<String>,
    origin: &Path,
) -> Result<Value, SopsError> {
    use serde_yaml_ng::Value as Yaml;
    let unsupported = |path: &[String], what| SopsError::UnsupportedValue {
        origin: origin.to_owned(),
        path: path.join(":"),
        what,
    };
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| unsupported(path, "an infinite or NaN number"))?
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                path.push(index.to_string());
                let item = yaml_to_json(item, path, origin);
                path.pop();
                out.push(item?);
            }
            Value::Array(out)
        }
        Yaml::Mapping(mapping) => {
            let mut out = Map::with_capacity(mapping.len());
            for (key, item) in mapping {
                let Yaml::String(key) = key else {
                    return Err(unsupported(path, "a map with a non-string key"));
                };
                path.push(key);
                let item = yaml_to_json(item, path, origin);
                let key = path.pop().expect("pushed above");
                out.insert(key, item?);
            }
            Value::Object(out)
        }
        Yaml::Tagged(tagged) => {
            let tagged = *tagged;
            match tagged.value {
                Yaml::String(text) if tagged.tag.to_string().ends_with("timestamp") => {
                    Value::String(normalize_timestamp(text))
                }
                inner => yaml_to_json(inner, path, origin)?,
            }
        }
    })
}

/// A YAML date (`2024-01-02`) as Go's `time.Time` text form (`2024-01-02T00:00:00Z`).
fn normalize_timestamp(text: String) -> String {
    let is_date = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if is_date {
        format!("{text}T00:00:00Z")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn not_sops_files_are_recognised() {
        for (name, content) in [
            ("plain.yaml", read("all-types.plain.yaml")),
            ("plain.json", read("app.plain.json")),
            ("empty.yaml", String::new()),
            ("list.yaml", "- a\n- b\n".to_owned()),
            ("sops-no-mac.yaml", "a: 1\nsops: plain\n".to_owned()),
        ] {
            let format = Format::from_path(Path::new(name));
            assert!(!is_sops_document(&content, format), "{name}");
            let err = decrypt_text(name, &content, &main_ids()).unwrap_err();
            assert!(matches!(err, SopsError::NotSops { .. }), "{name}: {err:?}");
        }
        for name in [
            "all-types.enc.yaml",
            "app.enc.json",
            "pgp-only.enc.yaml",
            "tampered.enc.yaml",
        ] {
            assert!(
                is_sops_document(&read(name), Format::from_path(Path::new(name))),
                "{name}"
            );
        }
        assert!(!is_sops_document("{not json", Format::Json));
        assert!(!is_sops_document("a: [", Format::Yaml));
        let err = decrypt_text("broken.json", "{not json", &main_ids()).unwrap_err();
        assert!(matches!(err, SopsError::Parse { .. }), "{err:?}");
        assert!(std::error::Error::source(&err).is_some());
        assert!(
            !err.to_string().contains("line 1"),
            "the cause stays in the source: {err}"
        );
    }

    #[test]
    fn format_from_path() {
        assert_eq!(Format::from_path(Path::new("a/b.json")), Format::Json);
        assert_eq!(Format::from_path(Path::new("b.JSON")), Format::Json);
        assert_eq!(Format::from_path(Path::new("b.yaml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("b.yml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("secrets")), Format::Yaml);
    }
}

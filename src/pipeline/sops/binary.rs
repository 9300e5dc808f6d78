//! The hand-off to the `sops` binary, for files only it can decrypt: the content goes to its
//! stdin, the plaintext comes back on its stdout.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use age::secrecy::zeroize::Zeroizing;
use regex::Regex;
use serde_json::Value;

use super::metadata::Metadata;
use super::walk::Walker;
use super::{Decrypted, Format, SopsError};

/// How to reach the `sops` binary for files this module cannot decrypt natively.
#[derive(Debug, Clone, Default)]
pub(super) struct SopsCli {
    /// `None`: look `sops` up on PATH when needed; `Some(None)`: there is none.
    pub(super) binary: Option<Option<PathBuf>>,
    /// Extra environment for the child process.
    pub(super) env: Vec<(OsString, OsString)>,
}

impl SopsCli {
    pub(super) fn from_path() -> SopsCli {
        SopsCli::default()
    }

    fn binary(&self) -> Option<PathBuf> {
        match &self.binary {
            Some(fixed) => fixed.clone(),
            None => find_on_path(if cfg!(windows) { "sops.exe" } else { "sops" }),
        }
    }
}

pub(super) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// A parsed sops file, for handing it to the `sops` binary.
pub(super) struct SopsFile<'a> {
    pub(super) content: &'a str,
    pub(super) format: Format,
    pub(super) origin: &'a Path,
    pub(super) data: &'a Value,
    pub(super) metadata: &'a Metadata,
}

impl SopsFile<'_> {
    /// Decrypts with the `sops` binary, or fails with `otherwise` when there is none.
    pub(super) fn delegate(
        &self,
        cli: &SopsCli,
        otherwise: SopsError,
    ) -> Result<Decrypted, SopsError> {
        let Some(binary) = cli.binary() else {
            return Err(otherwise);
        };
        // Classify the leaves first: this validates the structure and yields the secret paths.
        let mut walker = Walker::new(self.origin, self.metadata, None);
        walker.walk(self.data)?;
        let tree = run_sops_binary(&binary, cli, self)?;
        Ok(Decrypted {
            tree,
            secret_paths: walker.secret_paths,
        })
    }
}

fn run_sops_binary(binary: &Path, cli: &SopsCli, file: &SopsFile<'_>) -> Result<Value, SopsError> {
    let origin = file.origin;
    let spawn_error = |source| SopsError::SopsBinarySpawn {
        origin: origin.to_owned(),
        binary: binary.to_owned(),
        source,
    };
    let mut child = Command::new(binary)
        .args(["--disable-version-check", "decrypt", "--input-type"])
        .arg(file.format.sops_type())
        .args(["--output-type", "json"])
        .envs(cli.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let content = file.content;
    let output = std::thread::scope(|scope| {
        // Write from another thread so a child that answers before reading everything cannot
        // dead-lock us; a failed write shows up as the child's failure.
        scope.spawn(move || {
            let _ = stdin.write_all(content.as_bytes());
        });
        child.wait_with_output()
    })
    .map_err(spawn_error)?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(SopsError::SopsBinaryFailed {
            origin: origin.to_owned(),
            status: output.status.to_string(),
            stderr: sanitize_stderr(&output.stderr),
            recipients: file
                .metadata
                .age
                .iter()
                .map(|a| a.recipient.clone())
                .collect(),
            key_types: file.metadata.other_key_types.clone(),
        });
    }
    serde_json::from_slice(&stdout).map_err(|source| SopsError::SopsBinaryOutput {
        origin: origin.to_owned(),
        source,
    })
}

/// sops' error output, minus the places where it quotes a value from the file (a value that
/// should have been encrypted may be plaintext), shortened to a sensible length.
fn sanitize_stderr(stderr: &[u8]) -> String {
    static QUOTED: OnceLock<Regex> = OnceLock::new();
    let quoted = QUOTED.get_or_init(|| {
        Regex::new(r"(?s)(Input string |Could not convert )(.*?)( does not match| to bytes|$)")
            .expect("valid regex")
    });
    let text = String::from_utf8_lossy(stderr);
    let text = quoted.replace_all(text.trim(), "$1<redacted>$3");
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    const MAX: usize = 2000;
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::decrypt_with;
    use super::super::document::parse_document;
    use super::super::testing::*;
    use super::*;
    use crate::error::Hint as _;

    #[test]
    fn other_key_types_without_sops_name_the_key_types() {
        let err = decrypt_fixture("pgp-only.enc.yaml", &main_ids()).unwrap_err();
        let SopsError::OtherKeyTypesOnly { key_types, .. } = &err else {
            panic!("expected OtherKeyTypesOnly, got {err:?}");
        };
        assert_eq!(key_types, &["pgp"]);
        assert!(err.to_string().contains("pgp"), "{err}");
        assert!(err.hint().unwrap().contains("install sops"));
    }

    #[test]
    fn other_key_types_are_handed_to_the_sops_binary() {
        let Some(sops) = real_sops("decrypting pgp-only.enc.yaml through the sops binary") else {
            return;
        };
        // An empty keyring of our own, kept until the end of the test.
        let gnupg_home = tempfile::tempdir().unwrap();
        let cli = SopsCli {
            binary: Some(Some(sops)),
            env: vec![("GNUPGHOME".into(), gnupg_home.path().into())],
        };
        let name = "pgp-only.enc.yaml";
        let err = decrypt_with(
            &read(name),
            Format::Yaml,
            Path::new(name),
            &main_ids(),
            &cli,
        )
        .unwrap_err();
        // The throwaway PGP key is gone, so sops must fail, saying why.
        let SopsError::SopsBinaryFailed {
            stderr, key_types, ..
        } = &err
        else {
            panic!("expected SopsBinaryFailed, got {err:?}");
        };
        assert_eq!(key_types, &["pgp"]);
        assert!(!stderr.is_empty());
        assert!(!err.to_string().contains("pgp-only-fake"));
        assert!(err.hint().unwrap().contains("pgp"));
    }

    #[test]
    fn the_sops_binary_decrypts_to_the_same_result() {
        let Some(sops) = real_sops("decrypting through the sops binary") else {
            return;
        };
        let cli = SopsCli {
            binary: Some(Some(sops)),
            env: vec![("SOPS_AGE_KEY_FILE".into(), main_key_file().into())],
        };
        for (name, _) in DECRYPTABLE {
            let content = read(name);
            let origin = Path::new(name);
            let format = Format::from_path(origin);
            let mut document = parse_document(&content, format, origin).unwrap();
            let metadata =
                Metadata::parse(&document.shift_remove("sops").unwrap(), origin).unwrap();
            let data = Value::Object(document);
            let file = SopsFile {
                content: &content,
                format,
                origin,
                data: &data,
                metadata: &metadata,
            };
            let delegated = file
                .delegate(
                    &cli,
                    SopsError::NotSops {
                        origin: origin.to_owned(),
                    },
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let native = decrypt_fixture(name, &main_ids()).unwrap();
            assert_eq!(delegated, native, "{name}");
        }
    }

    #[test]
    fn sops_stderr_is_sanitized() {
        let stderr = b"Error walking tree: Could not decrypt value: Input string hunter2-fake does not match sops' data format\n";
        let clean = sanitize_stderr(stderr);
        assert!(!clean.contains("hunter2-fake"), "{clean}");
        assert!(clean.contains("<redacted>"), "{clean}");
    }
}

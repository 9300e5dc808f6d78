//! The hand-off to the `sops` binary, for files only it can decrypt: the content goes to its
//! stdin, the plaintext comes back on its stdout.
//!
//! A branch writes the file, and with it the `sops` metadata that tells sops which key services
//! to ask: an `hc_vault` entry with an attacker's `vault_address` would make the user's sops send
//! its VAULT_TOKEN there. So the hand-off is the user's decision (`sops.binary` in sandbox.yaml,
//! `--sops-binary`), off by default; every key type the file lists must be one the user allowed;
//! the child sees only the environment those key types need; it runs with a time limit; and
//! `sops` is looked up only in absolute PATH directories (a relative entry such as `.` would run
//! whatever the branch put there).

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use age::secrecy::zeroize::Zeroizing;
use regex::Regex;
use serde_json::Value;

use super::metadata::Metadata;
use super::walk::Walker;
use super::{Decrypted, Format, SopsError};
use crate::pipeline::config::SopsBinary;

/// Whether and how files this module cannot decrypt natively go to the `sops` binary.
#[derive(Debug, Clone, Default)]
pub(super) struct SopsCli {
    /// `None`: the hand-off is off (the default).
    pub(super) hand_off: Option<HandOff>,
}

/// The hand-off, once the user turned it on.
#[derive(Debug, Clone)]
pub(super) struct HandOff {
    /// The binary; `None` when no absolute PATH directory has one.
    pub(super) binary: Option<PathBuf>,
    /// The key types a file may list to be handed over.
    pub(super) key_types: Vec<String>,
    pub(super) timeout: Duration,
    /// Environment given to the child on top of what its key types need (tests: a keyring).
    pub(super) env: Vec<(OsString, OsString)>,
}

impl SopsCli {
    /// The hand-off as the user's settings say, `sops` from the process's PATH.
    pub(super) fn from_settings(settings: &SopsBinary) -> SopsCli {
        let path = std::env::var_os("PATH");
        SopsCli {
            hand_off: settings.enabled.then(|| HandOff {
                binary: crate::program::on_path("sops", path.as_deref()),
                key_types: settings.key_types.clone(),
                timeout: settings.timeout,
                env: Vec::new(),
            }),
        }
    }
}

/// Variables every `sops` run may see: where things are, the locale, the proxy and CA settings
/// a key service is reached through. Entries ending in `_` are prefixes.
const BASE_ENV: &[&str] = &[
    "HOME",
    "USER",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "XDG_CONFIG_HOME",
    "XDG_RUNTIME_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The variables each key type's credentials come from. A key type the file does not list does
/// not get its credentials into the child, whatever else goes wrong.
const KEY_TYPE_ENV: &[(&str, &[&str])] = &[
    ("age", &["SOPS_AGE_"]),
    ("pgp", &["GNUPGHOME", "GPG_TTY", "SOPS_GPG_", "SOPS_PGP_"]),
    ("kms", &["AWS_"]),
    ("gcp_kms", &["GOOGLE_", "CLOUDSDK_"]),
    ("azure_kv", &["AZURE_", "MSI_", "IDENTITY_"]),
    ("hc_vault", &["VAULT_"]),
    ("hckms", &["HUAWEICLOUD_"]),
];

/// What the `sops` child may see of `vars` (the process's environment) for a file listing
/// `key_types`: [`BASE_ENV`], each key type's variables, and PATH without relative entries.
pub(super) fn child_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    key_types: &[String],
) -> Vec<(OsString, OsString)> {
    let mut wanted: Vec<&str> = BASE_ENV.to_vec();
    for (key_type, names) in KEY_TYPE_ENV {
        if key_types.iter().any(|k| k == key_type) {
            wanted.extend_from_slice(names);
        }
    }
    let allowed = |name: &str| {
        wanted.iter().any(|w| match w.strip_suffix('_') {
            Some(_) => name.starts_with(w),
            None => name == *w,
        })
    };
    let mut env = Vec::new();
    for (name, value) in vars {
        let Some(text) = name.to_str() else { continue };
        if text == "PATH" {
            let absolute = std::env::split_paths(&value).filter(|d| d.is_absolute());
            if let Ok(path) = std::env::join_paths(absolute) {
                env.push((name, path));
            }
        } else if allowed(text) {
            env.push((name, value));
        }
    }
    env
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
    /// Decrypts with the `sops` binary when the user allows it for every key type the file
    /// lists. `otherwise` is the error when the hand-off is on but there is no binary.
    pub(super) fn delegate(
        &self,
        cli: &SopsCli,
        otherwise: SopsError,
    ) -> Result<Decrypted, SopsError> {
        let key_types = self.metadata.key_types();
        let Some(hand_off) = &cli.hand_off else {
            return Err(SopsError::SopsBinaryOff {
                origin: self.origin.to_owned(),
                key_types,
            });
        };
        if let Some(refused) = key_types.iter().find(|k| !hand_off.key_types.contains(k)) {
            return Err(SopsError::KeyTypeNotAllowed {
                origin: self.origin.to_owned(),
                key_type: refused.clone(),
                allowed: hand_off.key_types.clone(),
            });
        }
        let Some(binary) = &hand_off.binary else {
            return Err(otherwise);
        };
        // Classify the leaves first: this validates the structure and yields the secret paths.
        let mut walker = Walker::new(self.origin, self.metadata, None);
        walker.walk(self.data)?;
        let mut env = child_env(std::env::vars_os(), &key_types);
        env.extend(hand_off.env.iter().cloned());
        let tree = run_sops_binary(binary, &env, hand_off.timeout, self)?;
        Ok(Decrypted {
            tree,
            secret_paths: walker.secret_paths,
        })
    }
}

/// What the child printed, and how it ended.
struct Finished {
    status: ExitStatus,
    stdout: Zeroizing<Vec<u8>>,
    stderr: Vec<u8>,
}

fn run_sops_binary(
    binary: &Path,
    env: &[(OsString, OsString)],
    timeout: Duration,
    file: &SopsFile<'_>,
) -> Result<Value, SopsError> {
    let origin = file.origin;
    let spawn_error = |source| SopsError::SopsBinarySpawn {
        origin: origin.to_owned(),
        binary: binary.to_owned(),
        source,
    };
    let child = Command::new(binary)
        .args(["--disable-version-check", "decrypt", "--input-type"])
        .arg(file.format.sops_type())
        .args(["--output-type", "json"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let Some(output) = wait_with_deadline(child, file.content, timeout).map_err(spawn_error)?
    else {
        return Err(SopsError::SopsBinaryTimeout {
            origin: origin.to_owned(),
            seconds: timeout.as_secs(),
            key_types: file.metadata.key_types(),
        });
    };
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
    serde_json::from_slice(&output.stdout).map_err(|source| SopsError::SopsBinaryOutput {
        origin: origin.to_owned(),
        source,
    })
}

/// Feed `input` to the child and collect its output, killing it at `timeout`: `None` then.
/// Reading and writing happen on threads of their own, so a child that answers before reading
/// everything (or never reads) cannot dead-lock us.
fn wait_with_deadline(
    mut child: std::process::Child,
    input: &str,
    timeout: Duration,
) -> std::io::Result<Option<Finished>> {
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let deadline = Instant::now() + timeout;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // A failed write shows up as the child's failure.
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = scope.spawn(move || {
            let mut buf = Zeroizing::new(Vec::new());
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let err = scope.spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                // Killing closes the pipes, so the reader threads end too.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = out.join().expect("the reader does not panic");
        let stderr = err.join().expect("the reader does not panic");
        Ok(status.map(|status| Finished {
            status,
            stdout,
            stderr,
        }))
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
    use super::super::fixtures::*;
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
            hand_off: Some(hand_off_to(sops, &[("GNUPGHOME", gnupg_home.path())])),
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
            hand_off: Some(hand_off_to(
                sops,
                &[("SOPS_AGE_KEY_FILE", &main_key_file())],
            )),
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

    /// A stand-in `sops`: a shell script with `body`, in its own directory (kept by the caller).
    fn fake_sops(body: &str) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("sops");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, script)
    }

    /// pgp-only.enc.yaml with its pgp key replaced by a Vault key at `address`.
    fn vault_file(address: &str) -> String {
        let pgp = read("pgp-only.enc.yaml");
        let start = pgp.find("    pgp:").expect("the fixture lists a pgp key");
        let end = pgp[start..]
            .find("    unencrypted_suffix")
            .map_or(pgp.len(), |e| start + e);
        let vault = format!(
            "    hc_vault:\n        - vault_address: {address}\n          engine_path: sops\n          key_name: k\n          created_at: \"2024-01-01T00:00:00Z\"\n          enc: vault:v1:abc\n"
        );
        format!("{}{vault}{}", &pgp[..start], &pgp[end..])
    }

    fn decrypt_vault_file(cli: &SopsCli) -> SopsError {
        let name = "vault.enc.yaml";
        let content = vault_file("https://vault.attacker.example");
        decrypt_with(&content, Format::Yaml, Path::new(name), &main_ids(), cli).unwrap_err()
    }

    #[test]
    fn the_hand_off_is_off_unless_the_user_turns_it_on() {
        let err = decrypt_vault_file(&SopsCli::default());
        assert!(
            matches!(&err, SopsError::SopsBinaryOff { key_types, .. } if key_types == &["hc_vault"]),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("vault.enc.yaml: "), "{err}");
        assert!(err.to_string().contains("hc_vault"), "{err}");
        assert!(err.hint().unwrap().contains("--sops-binary"));
    }

    #[test]
    fn a_key_type_the_user_did_not_allow_is_not_handed_over() {
        let (dir, sops) = fake_sops("touch \"$(dirname \"$0\")/ran\"; exit 1");
        let settings = SopsBinary {
            enabled: true,
            ..SopsBinary::default()
        };
        let mut cli = SopsCli::from_settings(&settings);
        cli.hand_off.as_mut().unwrap().binary = Some(sops);
        let err = decrypt_vault_file(&cli);
        let SopsError::KeyTypeNotAllowed {
            key_type, allowed, ..
        } = &err
        else {
            panic!("expected KeyTypeNotAllowed, got {err:?}");
        };
        assert_eq!(key_type, "hc_vault");
        assert_eq!(allowed, &["age", "pgp"]);
        assert!(err.to_string().contains("vault.enc.yaml"), "{err}");
        assert!(err.hint().unwrap().contains("sops.binary.key_types"));
        assert!(!dir.path().join("ran").exists(), "sops must not run");
    }

    #[test]
    fn the_child_sees_only_what_its_key_types_need() {
        let vars = [
            ("PATH", "/usr/bin:.:bin:/bin"),
            ("HOME", "/home/u"),
            ("VAULT_TOKEN", "hvs.secret"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("SOPS_AGE_KEY_FILE", "/k.txt"),
            ("GNUPGHOME", "/g"),
            ("GITHUB_TOKEN", "ghp_x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = child_env(vars.clone(), &["age".into(), "pgp".into()]);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(names, ["PATH", "HOME", "SOPS_AGE_KEY_FILE", "GNUPGHOME"]);
        assert_eq!(
            env[0].1, "/usr/bin:/bin",
            "relative PATH entries are dropped"
        );
        let env = child_env(vars, &["hc_vault".into()]);
        assert!(env.iter().any(|(k, _)| k == "VAULT_TOKEN"));
        assert!(!env.iter().any(|(k, _)| k == "AWS_SECRET_ACCESS_KEY"));

        // And the real child: nothing else of this process's environment reaches it.
        let (_dir, sops) = fake_sops("env >&2; exit 3");
        let cli = SopsCli {
            hand_off: Some(hand_off_to(sops, &[])),
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
        let SopsError::SopsBinaryFailed { stderr, .. } = &err else {
            panic!("expected SopsBinaryFailed, got {err:?}");
        };
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        assert!(!stderr.contains("CARGO_MANIFEST_DIR"), "{stderr}");
    }

    #[test]
    fn a_sops_that_hangs_is_stopped_at_the_timeout() {
        let (_dir, sops) = fake_sops("exec sleep 30");
        let mut hand_off = hand_off_to(sops, &[]);
        hand_off.timeout = Duration::from_millis(300);
        let cli = SopsCli {
            hand_off: Some(hand_off),
        };
        let started = Instant::now();
        let name = "pgp-only.enc.yaml";
        let err = decrypt_with(
            &read(name),
            Format::Yaml,
            Path::new(name),
            &main_ids(),
            &cli,
        )
        .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(&err, SopsError::SopsBinaryTimeout { key_types, .. } if key_types == &["pgp"]),
            "{err:?}"
        );
        assert!(err.hint().unwrap().contains("sops.binary.timeout"));
    }

    #[test]
    fn sops_stderr_is_sanitized() {
        let stderr = b"Error walking tree: Could not decrypt value: Input string hunter2-fake does not match sops' data format\n";
        let clean = sanitize_stderr(stderr);
        assert!(!clean.contains("hunter2-fake"), "{clean}");
        assert!(clean.contains("<redacted>"), "{clean}");
    }
}

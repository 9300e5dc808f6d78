//! Why a sops file could not be decrypted, and what the user can do about it.

use std::path::PathBuf;

use super::Format;
use crate::error::Hint;

/// Why a sops file could not be decrypted. Messages name the file and, where it applies, the
/// key path (`database:password`, list indexes included); they never contain plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SopsError {
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

    /// Only the `sops` binary can decrypt the file, and the user has not turned the hand-off on.
    #[error(
        "{}: encrypted for {} keys, which only the `sops` binary decrypts, and handing files to it is off",
        origin.display(),
        key_types.join(", ")
    )]
    SopsBinaryOff {
        origin: PathBuf,
        key_types: Vec<String>,
    },

    /// The file lists a key type the user has not allowed to be handed to `sops`.
    #[error(
        "{}: lists a `{key_type}` key, which is not among the key types handed to the `sops` binary ({})",
        origin.display(),
        allowed.join(", ")
    )]
    KeyTypeNotAllowed {
        origin: PathBuf,
        key_type: String,
        allowed: Vec<String>,
    },

    /// `sops decrypt` did not finish in time (and was killed).
    #[error("{}: `sops decrypt` did not finish within {seconds}s and was stopped", origin.display())]
    SopsBinaryTimeout {
        origin: PathBuf,
        seconds: u64,
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
            SopsError::SopsBinaryOff { .. } => Some(
                "if you trust the keys this file lists, pass --sops-binary or set `sops.binary.enabled: true` in sandbox.yaml (age and pgp keys are handed over by default; others need `sops.binary.key_types`), or re-encrypt the file for an age recipient"
                    .to_owned(),
            ),
            SopsError::KeyTypeNotAllowed { key_type, .. } => Some(format!(
                "the branch's sops metadata chooses where sops sends your `{key_type}` credentials (e.g. hc_vault's vault_address); if you trust every branch's files, add `{key_type}` to `sops.binary.key_types` in sandbox.yaml, else re-encrypt the file for an allowed key type"
            )),
            SopsError::SopsBinaryTimeout { key_types, .. } => Some(format!(
                "check that the key services of {} answer from here (and that sops does not wait for a passphrase), or raise `sops.binary.timeout` in sandbox.yaml",
                key_types.join(", ")
            )),
            SopsError::SopsBinarySpawn { .. } => {
                Some("check that the `sops` on PATH is executable".to_owned())
            }
            SopsError::SopsBinaryFailed {
                recipients,
                key_types,
                ..
            } => Some(make_a_key_available(recipients, key_types)),
            SopsError::Parse { .. } | SopsError::SopsBinaryOutput { .. } => None,
        }
    }
}

/// The hint when `sops decrypt` failed: the keys it could have used.
fn make_a_key_available(recipients: &[String], key_types: &[String]) -> String {
    let mut keys: Vec<String> = key_types.to_vec();
    if !recipients.is_empty() {
        keys.push(format!("age ({})", recipients.join(", ")));
    }
    format!(
        "make one of the file's keys available to sops: {}",
        if keys.is_empty() {
            "none are listed".to_owned()
        } else {
            keys.join(", ")
        }
    )
}

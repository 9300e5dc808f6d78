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
//! keys, plugins, `SOPS_AGE_KEY_CMD`) — are handed to the `sops` binary when the user turned that
//! on and allows every key type the file lists (see `binary`): the content goes to its stdin and
//! the plaintext comes back on its stdout, never touching the disk.
//!
//! Plaintext never appears in an error message or in `Debug` output.

mod binary; // the hand-off to the `sops` binary
mod crypto; // the data key (age) and AES-GCM values
mod document; // Format; the YAML/JSON document as a JSON tree
mod error; // SopsError and its hints
mod identity; // age identities from the environment
mod leaf; // leaf values as sops prints and hashes them
mod mac; // the MAC's start and its check
mod metadata; // the `sops` map: recipients, MAC, encryption rule
mod walk; // the walk that decrypts, hashes and classifies every leaf

#[cfg(test)]
mod fixtures;

use std::fmt;
use std::path::Path;

use aes_gcm::KeyInit as _;
use serde_json::Value;

use binary::{SopsCli, SopsFile};
use crypto::{data_key, SopsGcm};
use document::parse_document;
use identity::is_x25519_recipient;
use mac::verify_mac;
use metadata::Metadata;
use walk::Walker;

pub(crate) use document::{is_sops_document, Format};
pub(crate) use error::SopsError;
pub(crate) use identity::Identities;

/// A decrypted sops document.
#[derive(Clone, PartialEq)]
pub(crate) struct Decrypted {
    /// The document without the top-level `sops` key, key order preserved, typed values
    /// (int/float/bool/str/null, nested maps/lists). Integral floats are integers, as in the
    /// output of `sops decrypt`.
    pub(crate) tree: serde_json::Value,
    /// Paths (map keys; list indexes as decimal strings) of every leaf the file's rules encrypt:
    /// the values stored as `ENC[…]`, plus empty strings under such keys (sops stores those as
    /// they are). Nulls and comments are not leaves.
    pub(crate) secret_paths: Vec<Vec<String>>,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("tree", &format_args!("<redacted>"))
            .field("secret_paths", &self.secret_paths)
            .finish()
    }
}

/// Decrypt a sops file held in memory. `origin` names the file in errors.
pub(crate) fn decrypt(
    content: &str,
    format: Format,
    origin: &Path,
    identities: &Identities,
) -> Result<Decrypted, SopsError> {
    decrypt_with(content, format, origin, identities, &identities.sops_binary)
}

/// Decrypts natively where it can, else through `cli`'s `sops` binary.
fn decrypt_with(
    content: &str,
    format: Format,
    origin: &Path,
    identities: &Identities,
    cli: &SopsCli,
) -> Result<Decrypted, SopsError> {
    let (data, metadata) = split_metadata(content, format, origin)?;
    let file = SopsFile {
        content,
        format,
        origin,
        data: &data,
        metadata: &metadata,
    };
    if let Some(unsupported) = beyond_native(&metadata, origin)? {
        return file.delegate(cli, unsupported);
    }
    let data_key = match data_key(&metadata, identities, origin) {
        Ok(key) => key,
        Err(err @ (SopsError::NoIdentities { .. } | SopsError::WrongKey { .. }))
            if sops_could_decrypt(&metadata, identities) =>
        {
            return file.delegate(cli, err);
        }
        Err(err) => return Err(err),
    };
    decrypt_natively(&data, &metadata, &data_key, origin)
}

/// Parses the document into its data tree and its `sops` metadata.
fn split_metadata(
    content: &str,
    format: Format,
    origin: &Path,
) -> Result<(Value, Metadata), SopsError> {
    let mut document = parse_document(content, format, origin)?;
    let metadata = match document.shift_remove("sops") {
        Some(sops) if sops.get("mac").is_some() => Metadata::parse(&sops, origin)?,
        _ => {
            return Err(SopsError::NotSops {
                origin: origin.to_owned(),
            })
        }
    };
    Ok((Value::Object(document), metadata))
}

/// Why only the `sops` binary can decrypt the file (key groups, no age recipient), if so: the
/// error to report when it is not on PATH.
fn beyond_native(metadata: &Metadata, origin: &Path) -> Result<Option<SopsError>, SopsError> {
    if metadata.key_groups {
        return Ok(Some(SopsError::Unsupported {
            origin: origin.to_owned(),
            feature: "a file with key groups (Shamir secret sharing)".to_owned(),
        }));
    }
    if metadata.age.is_empty() {
        if metadata.other_key_types.is_empty() {
            return Err(SopsError::InvalidMetadata {
                origin: origin.to_owned(),
                detail: "it lists no keys at all".to_owned(),
            });
        }
        return Ok(Some(SopsError::OtherKeyTypesOnly {
            origin: origin.to_owned(),
            key_types: metadata.other_key_types.clone(),
        }));
    }
    Ok(None)
}

/// Whether sops may succeed where our identities did not, with what it alone can use: other key
/// types, SSH or plugin identities, or a key command.
fn sops_could_decrypt(metadata: &Metadata, identities: &Identities) -> bool {
    !metadata.other_key_types.is_empty()
        || !identities.unsupported.is_empty()
        || metadata
            .age
            .iter()
            .any(|a| !is_x25519_recipient(&a.recipient))
}

/// Decrypts every value with the data key and checks the MAC.
fn decrypt_natively(
    data: &Value,
    metadata: &Metadata,
    data_key: &[u8],
    origin: &Path,
) -> Result<Decrypted, SopsError> {
    let cipher = SopsGcm::new_from_slice(data_key).map_err(|_| SopsError::InvalidMetadata {
        origin: origin.to_owned(),
        detail: "the data key is not 32 bytes long".to_owned(),
    })?;
    let mut walker = Walker::new(origin, metadata, Some(&cipher));
    let tree = walker.walk(data)?.unwrap_or(Value::Null);
    verify_mac(&cipher, metadata, walker.mac, origin)?;
    Ok(Decrypted {
        tree,
        secret_paths: walker.secret_paths,
    })
}

#[cfg(test)]
mod tests;

//! The cryptography: the data key from its age-encrypted copies, and AES-GCM decryption of
//! `ENC[AES256_GCM,…]` values with it.

use std::io::Read as _;
use std::path::Path;
use std::sync::OnceLock;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use age::secrecy::zeroize::Zeroizing;
use base64::Engine as _;
use regex::Regex;

use super::metadata::Metadata;
use super::{Identities, SopsError};

/// AES-256-GCM with the 32-byte nonce sops uses.
pub(super) type SopsGcm = AesGcm<Aes256, U32>;

/// Decrypts the data key with the first age entry an identity matches.
pub(super) fn data_key(
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
pub(super) struct EncValue<'a> {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    pub(super) kind: &'a str,
}

pub(super) fn parse_enc(text: &str) -> Result<EncValue<'_>, &'static str> {
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
pub(super) fn open(
    cipher: &SopsGcm,
    value: &EncValue<'_>,
    aad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::error::Hint as _;

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
}

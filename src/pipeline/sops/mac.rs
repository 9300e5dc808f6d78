//! The MAC over the content: how it starts, and checking it against the stored one.

use std::path::Path;

use age::secrecy::zeroize::Zeroizing;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::crypto::{open, parse_enc, SopsGcm};
use super::metadata::Metadata;
use super::SopsError;

/// The fixed bytes a `mac_only_encrypted` MAC starts with (`sha256("sops")`), so that such a MAC
/// always differs from a MAC over all values.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The hash the MAC is computed with, before the first leaf.
pub(super) fn hasher(mac_only_encrypted: bool) -> Sha512 {
    let mut mac = Sha512::new();
    if mac_only_encrypted {
        mac.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    mac
}

/// Checks the MAC over the content against the stored one, in constant time.
pub(super) fn verify_mac(
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
    use std::process::{Command, Stdio};

    use super::super::fixtures::*;
    use super::*;
    use crate::error::Hint as _;

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
}

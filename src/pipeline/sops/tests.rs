use super::fixtures::*;
use crate::error::Hint as _;

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

//! The walk over the data tree in document order: decrypting each leaf, hashing it into the MAC,
//! recording the secret paths.

use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha512};

use super::crypto::{open, parse_enc, SopsGcm};
use super::leaf::{normalize_number, plain_mac_bytes, typed_value};
use super::mac;
use super::metadata::{Metadata, Rule};
use super::SopsError;

/// Walks the data tree in document order: decrypts (or, without a cipher, only classifies) the
/// leaves, hashes them into the MAC, records the secret paths.
pub(super) struct Walker<'a> {
    origin: &'a Path,
    rule: &'a Rule,
    mac_only_encrypted: bool,
    cipher: Option<&'a SopsGcm>,
    pub(super) mac: Sha512,
    /// Map keys to the current node (the encryption rules and the additional data use these).
    keys: Vec<String>,
    /// Full path to the current node in the output tree, list indexes included.
    path: Vec<String>,
    pub(super) secret_paths: Vec<Vec<String>>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(
        origin: &'a Path,
        metadata: &'a Metadata,
        cipher: Option<&'a SopsGcm>,
    ) -> Walker<'a> {
        Walker {
            origin,
            rule: &metadata.rule,
            mac_only_encrypted: metadata.mac_only_encrypted,
            cipher,
            mac: mac::hasher(metadata.mac_only_encrypted),
            keys: Vec::new(),
            path: Vec::new(),
            secret_paths: Vec::new(),
        }
    }

    /// The node, decrypted; `None` for a node to drop (a comment stored as a list item).
    pub(super) fn walk(&mut self, value: &Value) -> Result<Option<Value>, SopsError> {
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

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
}

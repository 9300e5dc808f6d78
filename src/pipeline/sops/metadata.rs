//! The `sops` metadata: the age recipients, the MAC, and the rule that says which leaves are
//! encrypted.

use std::path::Path;

use regex::Regex;
use serde_json::Value;

use super::SopsError;

/// The unencrypted suffix sops applies when the metadata names no rule.
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// Metadata keys of the key types sops supports besides age.
const OTHER_KEY_TYPES: [&str; 6] = ["kms", "gcp_kms", "azure_kv", "hc_vault", "pgp", "hckms"];

/// The parts of the `sops` metadata this module uses.
#[derive(Debug)]
pub(super) struct Metadata {
    pub(super) age: Vec<AgeKey>,
    pub(super) other_key_types: Vec<String>,
    /// `key_groups` is present (Shamir secret sharing over several groups).
    pub(super) key_groups: bool,
    /// The key types listed inside `key_groups`, `age` included.
    pub(super) key_group_types: Vec<String>,
    pub(super) last_modified: String,
    pub(super) mac: String,
    pub(super) rule: Rule,
    pub(super) mac_only_encrypted: bool,
}

/// One `sops.age[]` entry: a recipient and the data key encrypted for it.
#[derive(Debug)]
pub(super) struct AgeKey {
    pub(super) recipient: String,
    pub(super) enc: String,
}

/// Which leaves sops encrypted.
#[derive(Debug)]
pub(super) enum Rule {
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
    pub(super) fn encrypts(&self, keys: &[String], value: &Value) -> bool {
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
    /// Every key type the file lists, top-level or in a key group (`age` included): what sops
    /// would try, and so contact, to decrypt it.
    pub(super) fn key_types(&self) -> Vec<String> {
        let mut types = self.key_group_types.clone();
        if !self.age.is_empty() {
            types.push("age".to_owned());
        }
        types.extend(self.other_key_types.iter().cloned());
        types.sort();
        types.dedup();
        types
    }

    pub(super) fn parse(sops: &Value, origin: &Path) -> Result<Metadata, SopsError> {
        let fields = Fields { sops, origin };
        let age = fields.age_keys()?;
        let other_key_types = OTHER_KEY_TYPES
            .iter()
            .filter(|name| fields.non_empty_list(name))
            .map(|name| (*name).to_owned())
            .collect();
        let last_modified = fields
            .string("lastmodified")?
            .ok_or_else(|| fields.invalid("sops.lastmodified is missing".to_owned()))?;
        let mac = fields
            .string("mac")?
            .ok_or_else(|| fields.invalid("sops.mac is missing".to_owned()))?;
        let mac_only_encrypted = fields.mac_only_encrypted()?;
        let rule = fields.rule()?;
        Ok(Metadata {
            age,
            other_key_types,
            key_groups: fields.non_empty_list("key_groups"),
            key_group_types: fields.key_group_types(),
            last_modified,
            mac,
            rule,
            mac_only_encrypted,
        })
    }
}

/// The `sops` map being parsed, and the file it came from (for errors).
struct Fields<'a> {
    sops: &'a Value,
    origin: &'a Path,
}

impl Fields<'_> {
    fn invalid(&self, detail: String) -> SopsError {
        SopsError::InvalidMetadata {
            origin: self.origin.to_owned(),
            detail,
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>, SopsError> {
        match self.sops.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(format!("sops.{name} is not a string"))),
        }
    }

    fn non_empty_list(&self, name: &str) -> bool {
        self.sops
            .get(name)
            .and_then(Value::as_array)
            .is_some_and(|list| !list.is_empty())
    }

    fn key_group_types(&self) -> Vec<String> {
        let groups = self.sops.get("key_groups").and_then(Value::as_array);
        let mut types: Vec<String> = groups
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|group| group.iter())
            .filter(|(_, keys)| keys.as_array().is_some_and(|k| !k.is_empty()))
            .map(|(name, _)| name.clone())
            .collect();
        types.sort();
        types.dedup();
        types
    }

    fn age_keys(&self) -> Result<Vec<AgeKey>, SopsError> {
        let mut age = Vec::new();
        match self.sops.get("age") {
            None | Some(Value::Null) => {}
            Some(Value::Array(entries)) => {
                for (index, entry) in entries.iter().enumerate() {
                    let field = |name: &str| {
                        entry
                            .get(name)
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                self.invalid(format!("sops.age[{index}] has no string `{name}`"))
                            })
                    };
                    age.push(AgeKey {
                        recipient: field("recipient")?,
                        enc: field("enc")?,
                    });
                }
            }
            Some(_) => return Err(self.invalid("sops.age is not a list".to_owned())),
        }
        Ok(age)
    }

    fn mac_only_encrypted(&self) -> Result<bool, SopsError> {
        match self.sops.get("mac_only_encrypted") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
            Some(_) => Err(self.invalid("sops.mac_only_encrypted is not a boolean".to_owned())),
        }
    }

    /// The one encryption rule the metadata names, the default suffix when it names none.
    fn rule(&self) -> Result<Rule, SopsError> {
        let mut rules = Vec::new();
        for field in [
            "unencrypted_suffix",
            "encrypted_suffix",
            "unencrypted_regex",
            "encrypted_regex",
            "unencrypted_comment_regex",
            "encrypted_comment_regex",
        ] {
            if let Some(value) = self.string(field)?.filter(|v| !v.is_empty()) {
                rules.push((field, value));
            }
        }
        if rules.len() > 1 {
            let names: Vec<&str> = rules.iter().map(|(field, _)| *field).collect();
            return Err(self.invalid(format!("only one of {} may be set", names.join(", "))));
        }
        let compile = |field: &'static str, pattern: &str| {
            Regex::new(pattern).map_err(|source| SopsError::InvalidRegex {
                origin: self.origin.to_owned(),
                field,
                source,
            })
        };
        Ok(match rules.pop() {
            None => Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.to_owned()),
            Some(("unencrypted_suffix", v)) => Rule::UnencryptedSuffix(v),
            Some(("encrypted_suffix", v)) => Rule::EncryptedSuffix(v),
            Some((field @ "unencrypted_regex", v)) => Rule::UnencryptedRegex(compile(field, &v)?),
            Some((field @ "encrypted_regex", v)) => Rule::EncryptedRegex(compile(field, &v)?),
            Some(_) => Rule::Comments,
        })
    }
}

//! Keeping secrets out of what is shown: the placeholder, and the one scrubber that replaces
//! known secret texts in any text (progress lines, container logs, errors, diffs, pull-request
//! comments, statuses, Slack messages, the service's log).
//!
//! A secret rarely leaks as itself only: a container prints the Secret it mounted in base64, an
//! error quotes it JSON- or Debug-escaped, a URL carries it percent-encoded, YAML quotes it. So
//! each secret is expanded into its [`encodings`], and one aho-corasick automaton finds all of
//! them in a single pass over the text.
//!
//! Length rule: every secret is scrubbed, however short. A value of at least
//! [`SHORT_SECRET_LEN`] bytes is replaced wherever it (or an encoding) occurs. A shorter one
//! (sops encrypts every leaf by default, so `3`, `on` or `abc` do occur) is replaced only where
//! it stands alone — not inside a longer word of letters, digits, `-` and `_` — because
//! replacing every `on` in a log would make it unreadable while hiding nothing: such a value is
//! found by guessing anyway, and a security review should flag it as a weak secret rather than
//! rely on the scrubber.

use std::sync::RwLock;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a secret is shown as.
pub(crate) const REDACTED: &str = "<redacted>";

/// Secrets shorter than this (in bytes) are replaced only where they stand alone.
pub(crate) const SHORT_SECRET_LEN: usize = 4;

/// Base64 of a secret embedded in a longer text is only partly its own (the 4-character groups
/// at its edges mix in the neighbours' bytes); the groups in between are matched when they are
/// at least this long, so that short runs of base64 do not match by chance.
const MIN_EMBEDDED_BASE64: usize = 8;

/// A set of texts that must never be shown.
pub(crate) struct Scrubber {
    inner: RwLock<Inner>,
}

struct Inner {
    /// The secrets as added (deduplicated), to rebuild the automata from.
    secrets: Vec<String>,
    /// Every encoding of the secrets of at least [`SHORT_SECRET_LEN`] bytes.
    long: Option<AhoCorasick>,
    /// The literal and quoted forms of the shorter ones (matched as whole words).
    short: Option<AhoCorasick>,
}

impl Scrubber {
    pub(crate) const fn new() -> Scrubber {
        Scrubber {
            inner: RwLock::new(Inner {
                secrets: Vec::new(),
                long: None,
                short: None,
            }),
        }
    }

    /// Never show any of `secrets` (empty texts are ignored: there is nothing to hide).
    pub(crate) fn add(&self, secrets: impl IntoIterator<Item = String>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let before = inner.secrets.len();
        for secret in secrets {
            if !secret.is_empty() && !inner.secrets.contains(&secret) {
                inner.secrets.push(secret);
            }
        }
        if inner.secrets.len() != before {
            inner.rebuild();
        }
    }

    /// Whether `text` shows any secret in any form.
    pub(crate) fn reveals(&self, text: &str) -> bool {
        self.scrub(text) != text
    }

    /// `text` with every known secret, in every encoding, replaced by [`REDACTED`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let text = match &inner.long {
            // Leftmost-longest: a secret that contains another is replaced whole.
            Some(ac) => ac.replace_all(text, &vec![REDACTED; ac.patterns_len()]),
            None => text.to_owned(),
        };
        match &inner.short {
            Some(ac) => replace_whole_words(ac, &text),
            None => text,
        }
    }
}

impl Inner {
    fn rebuild(&mut self) {
        let (long, short): (Vec<&String>, Vec<&String>) = self
            .secrets
            .iter()
            .partition(|s| s.len() >= SHORT_SECRET_LEN);
        let long_forms = dedup(long.iter().flat_map(|s| encodings(s)));
        let short_forms = dedup(short.iter().flat_map(|s| quoted_forms(s)));
        self.long = automaton(&long_forms);
        self.short = automaton(&short_forms);
    }
}

fn automaton(patterns: &[String]) -> Option<AhoCorasick> {
    if patterns.is_empty() {
        return None;
    }
    let built = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(patterns)
        // Only a pattern set beyond aho-corasick's size limits fails: far more secret text
        // than a sandbox has. Failing closed would stop every output, so say it loudly instead.
        .expect("the secrets fit an aho-corasick automaton");
    Some(built)
}

fn dedup(forms: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for form in forms {
        if !form.is_empty() && !out.contains(&form) {
            out.push(form);
        }
    }
    out
}

/// Replace the matches of `ac` in `text` that are not part of a longer word: a run of letters,
/// digits, `-` and `_` (so a secret `x` leaves `feature-x` alone).
fn replace_whole_words(ac: &AhoCorasick, text: &str) -> String {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in ac.find_iter(text) {
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if is_word(before) || is_word(after) {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        out.push_str(REDACTED);
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// `encodeURIComponent` leaves these alone; everything else is percent-encoded.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');
/// RFC 3986's unreserved characters stay; everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Every form in which `secret` is likely to be shown: as itself, quoted (JSON, YAML, Rust's
/// `Debug`), percent-encoded (as `encodeURIComponent`, RFC 3986 and HTML forms write it, hex in
/// upper and lower case), and base64 (standard and URL-safe, with and without padding, whole and
/// at each of the three offsets it may have inside a longer encoded text).
pub(crate) fn encodings(secret: &str) -> Vec<String> {
    let mut forms = quoted_forms(secret);
    for set in [URI_COMPONENT, UNRESERVED] {
        let encoded = utf8_percent_encode(secret, set).to_string();
        forms.push(lowercase_hex(&encoded));
        // HTML forms write a space as `+`.
        forms.push(encoded.replace("%20", "+"));
        forms.push(encoded);
    }
    let bytes = secret.as_bytes();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(bytes));
    }
    // Inside a longer encoded text the secret starts at some offset modulo 3; the 3-byte groups
    // made only of its own bytes always encode to the same characters.
    for start in 0..3.min(bytes.len()) {
        let whole_groups = (bytes.len() - start) / 3 * 3;
        let middle = &bytes[start..start + whole_groups];
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(middle);
            if encoded.len() >= MIN_EMBEDDED_BASE64 {
                forms.push(encoded);
            }
        }
    }
    forms
}

/// The secret as itself and as quoting writes it inside quotes: JSON (and YAML double quotes,
/// which accept JSON's escapes), Rust's `Debug`, YAML single quotes.
fn quoted_forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).expect("a string is JSON");
    let debug = format!("{secret:?}");
    vec![
        secret.to_owned(),
        json[1..json.len() - 1].to_owned(),
        debug[1..debug.len() - 1].to_owned(),
        secret.replace('\'', "''"),
    ]
}

fn lowercase_hex(percent_encoded: &str) -> String {
    let mut out = String::with_capacity(percent_encoded.len());
    let mut rest = percent_encoded;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&code.to_ascii_lowercase());
        rest = &rest[i + code.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber(secrets: &[&str]) -> Scrubber {
        let s = Scrubber::new();
        s.add(secrets.iter().map(|s| s.to_string()));
        s
    }

    #[test]
    fn the_longest_secret_is_replaced_first() {
        let s = scrubber(&["abcd", "abcdef", "abcd"]);
        assert_eq!(s.scrub("x abcdef abcd y"), "x <redacted> <redacted> y");
    }

    #[test]
    fn every_encoding_of_a_secret_is_scrubbed() {
        let secret = "p@ss: w/rd\"+x?é'";
        let s = scrubber(&[secret]);
        let shown = [
            secret.to_owned(),
            serde_json::to_string(secret).unwrap(),
            serde_json::to_string(&serde_json::json!({ "password": secret })).unwrap(),
            format!("{secret:?}"),
            serde_yaml_ng::to_string(&serde_json::json!({ "password": secret })).unwrap(),
            format!("'{}'", secret.replace('\'', "''")),
            format!(
                "https://host/?p={}",
                utf8_percent_encode(secret, URI_COMPONENT)
            ),
            format!(
                "https://host/?p={}",
                utf8_percent_encode(secret, UNRESERVED)
            ),
            lowercase_hex(&utf8_percent_encode(secret, UNRESERVED).to_string()),
            STANDARD.encode(secret),
            STANDARD_NO_PAD.encode(secret),
            URL_SAFE.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
        ];
        for text in shown {
            let scrubbed = s.scrub(&text);
            assert!(scrubbed.contains(REDACTED), "{text} → {scrubbed}");
            assert!(!scrubbed.contains("w/rd"), "{text} → {scrubbed}");
        }
    }

    #[test]
    fn base64_of_a_secret_inside_a_longer_text_is_scrubbed_at_every_offset() {
        let secret = "correct-horse-battery-staple";
        let s = scrubber(&[secret]);
        for prefix in ["", "p=", "pw=", "pass=", "DB_PASSWORD="] {
            for suffix in ["", "\n", "\nuser=admin\n"] {
                let plain = format!("{prefix}{secret}{suffix}");
                for encoded in [STANDARD.encode(&plain), URL_SAFE_NO_PAD.encode(&plain)] {
                    let middle = STANDARD_NO_PAD.encode(&secret.as_bytes()[3..24]);
                    let scrubbed = s.scrub(&encoded);
                    assert!(scrubbed.contains(REDACTED), "{plain:?}: {scrubbed}");
                    // At most the groups at the edges of the secret survive.
                    assert!(
                        !scrubbed.contains(&middle[4..middle.len() - 4]),
                        "{plain:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_secret_that_breaks_yaml_is_scrubbed_from_the_quoted_line() {
        let s = scrubber(&["hunter2: oops"]);
        let hint = "line 7 of the rendered output: `  password: hunter2: oops`";
        assert_eq!(
            s.scrub(hint),
            "line 7 of the rendered output: `  password: <redacted>`"
        );
    }

    #[test]
    fn short_secrets_are_scrubbed_where_they_stand_alone() {
        let s = scrubber(&["on", "x9"]);
        assert_eq!(s.scrub("enabled: on"), "enabled: <redacted>");
        assert_eq!(s.scrub(r#"{"pin":"x9"}"#), r#"{"pin":"<redacted>"}"#);
        assert_eq!(
            s.scrub("one done x9y feature-x9 on_call"),
            "one done x9y feature-x9 on_call"
        );
        assert_eq!(
            s.scrub("pin=x9; mode=on."),
            "pin=<redacted>; mode=<redacted>."
        );
        assert!(s.reveals("x9"));
        assert!(!s.reveals("config=/product/sandbox.yaml"));
    }

    #[test]
    fn nothing_is_scrubbed_without_secrets() {
        let s = Scrubber::new();
        s.add([String::new()]);
        assert_eq!(s.scrub("a b"), "a b");
    }
}

//! Keeping secrets out of what is shown: the placeholder, and the one scrubber that replaces
//! known secret texts in any text (progress lines, container logs, errors, diffs, pull-request
//! comments, statuses, Slack messages, the service's log).
//!
//! A secret rarely leaks as itself only: a container prints the Secret it mounted in base64, an
//! error quotes it JSON- or Debug-escaped, a URL carries it percent-encoded, YAML quotes it. So
//! each secret is expanded into its [`encodings`], and one aho-corasick automaton finds all of
//! them in a single pass over the text.
//!
//! A chart can transform a value before printing it (a `fail` message, a rendered object): the
//! [`encodings`] include what helm's common functions make of it — `upper`, `lower`, `b64enc`
//! once and twice, `b64enc | upper`, `quote` and `toJson` (the quoted forms). Any other
//! transform (a secret cut in pieces, printed a character per line, reversed, hashed then
//! compared, XORed) is not recognised: whoever can render a chart can show its own sandbox's
//! secrets, by design; the scrubber only keeps honest output clean.
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
        let short_forms = dedup(short.iter().flat_map(|s| cased_forms(s)));
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
    forms.extend(transformed(secret));
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

/// What helm's template functions commonly make of a value before it is printed: `upper` and
/// `lower` (quoted too), `b64enc` of those, `b64enc | b64enc`, `b64enc | upper`.
fn transformed(secret: &str) -> Vec<String> {
    let mut forms = Vec::new();
    for cased in [secret.to_uppercase(), secret.to_lowercase()] {
        forms.push(STANDARD.encode(&cased));
        forms.extend(quoted_forms(&cased));
    }
    let once = STANDARD.encode(secret);
    forms.push(once.to_uppercase());
    forms.push(once.to_lowercase());
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(&once));
        forms.push(engine.encode(engine.encode(secret)));
    }
    forms
}

/// A short secret as itself and quoted, in its own, upper and lower case.
fn cased_forms(secret: &str) -> Vec<String> {
    [
        secret.to_owned(),
        secret.to_uppercase(),
        secret.to_lowercase(),
    ]
    .iter()
    .flat_map(|s| quoted_forms(s))
    .collect()
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

/// The lines of a private key file (PEM or OpenSSH) that carry key material: the base64 body,
/// without its `-----BEGIN …-----` frame. Each is long and random, so each is a secret of its own.
pub(crate) fn key_lines(key: &str) -> Vec<String> {
    key.lines()
        .map(str::trim)
        .filter(|line| line.len() >= 16 && !line.starts_with("-----") && !line.contains(':'))
        .map(str::to_owned)
        .collect()
}

/// `text` as a terminal shows it harmlessly: without escape sequences (colours, cursor moves,
/// window titles, hyperlinks, clipboard writes: CSI, OSC, DCS and the rest, in their 7- and
/// 8-bit forms) and without any other control character but newline and tab (a carriage return
/// or a backspace could hide what came before it). For text a container, a build or a chart
/// printed, before it reaches a terminal or a pull request's comment.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            '\u{1b}' => skip_escape(&mut chars),
            // 8-bit CSI; then OSC, DCS, SOS, PM and APC, which run to a terminator.
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// The rest of a sequence that began with ESC.
fn skip_escape(chars: &mut Chars<'_>) {
    match chars.peek() {
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            skip_string(chars);
        }
        // Intermediate bytes, then one final byte (e.g. `ESC ( B`); or just the final byte.
        Some(_) => {
            while chars.next_if(|c| (' '..='/').contains(c)).is_some() {}
            chars.next_if(|c| ('0'..='~').contains(c));
        }
        None => {}
    }
}

/// A CSI's parameter and intermediate bytes, then its final byte.
fn skip_csi(chars: &mut Chars<'_>) {
    while chars.next_if(|c| (' '..='?').contains(c)).is_some() {}
    chars.next_if(|c| ('@'..='~').contains(c));
}

/// A control string up to its terminator (BEL, ESC and backslash, or ST), or to the end of the line.
fn skip_string(chars: &mut Chars<'_>) {
    while let Some(c) = chars.next_if(|c| *c != '\n') {
        match c {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' => {
                chars.next_if_eq(&'\\');
                return;
            }
            _ => {}
        }
    }
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

    /// What a chart's `fail "{{ .Values.password | b64enc | b64enc }}"` and the like print.
    #[test]
    fn what_helm_functions_make_of_a_secret_is_scrubbed() {
        let secret = "Sup3r-Secret-Pw";
        let s = scrubber(&[secret]);
        let once = STANDARD.encode(secret);
        let shown = [
            STANDARD.encode(&once),
            STANDARD_NO_PAD.encode(&once),
            URL_SAFE.encode(URL_SAFE.encode(secret)),
            secret.to_uppercase(),
            secret.to_lowercase(),
            STANDARD.encode(secret.to_uppercase()),
            once.to_uppercase(),
            once.clone(),
        ];
        // As printed, `quote`d and `squote`d.
        for text in shown {
            for (open, close) in [("", ""), ("\"", "\""), ("'", "'")] {
                let line =
                    format!("execution error at (web/templates/x.yaml:3:4): {open}{text}{close}!");
                let scrubbed = s.scrub(&line);
                assert!(
                    scrubbed.ends_with(&format!(": {open}<redacted>{close}!")),
                    "{text} → {scrubbed}"
                );
            }
        }
        // Upper and lower case of a short secret, where it stands alone.
        assert_eq!(
            scrubber(&["on"]).scrub("ON On on one"),
            "<redacted> On <redacted> one"
        );
    }

    #[test]
    fn terminal_control_sequences_are_stripped() {
        let cases = [
            ("\u{1b}[31mred\u{1b}[0m plain", "red plain"),
            ("\u{1b}]0;owned title\u{7}after", "after"),
            (
                "\u{1b}]8;;https://evil.example\u{1b}\\link\u{1b}]8;;\u{1b}\\",
                "link",
            ),
            ("\u{1b}]52;c;Y3VybCBldmls\u{7}clip", "clip"),
            ("\u{1b}P+q544e\u{1b}\\dcs", "dcs"),
            ("\u{9b}2Jc1 \u{9d}title\u{9c}x", "c1 x"),
            ("\u{1b}(Bcharset \u{1b}7saved", "charset saved"),
            ("over\rwrite\u{8}\u{7f}\u{0}", "overwrite"),
            ("tab\tand\nnewline stay, é ✓", "tab\tand\nnewline stay, é ✓"),
            ("\u{1b}]0;unterminated\nnext line", "\nnext line"),
            ("trailing \u{1b}", "trailing "),
        ];
        for (raw, shown) in cases {
            assert_eq!(printable(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn nothing_is_scrubbed_without_secrets() {
        let s = Scrubber::new();
        s.add([String::new()]);
        assert_eq!(s.scrub("a b"), "a b");
    }
}

//! Keeping secrets out of what is shown: the placeholder, and the one scrubber that replaces
//! known secret texts in any text (progress lines, container logs, error excerpts, service logs).

use std::sync::RwLock;

/// What a secret is shown as.
pub(crate) const REDACTED: &str = "<redacted>";

/// A set of texts that must never be shown.
pub(crate) struct Scrubber {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: RwLock<Vec<String>>,
    /// Shorter texts are not scrubbed (see the constructors).
    min_len: usize,
}

impl Scrubber {
    /// Scrubs every non-empty secret: for decrypted values, where even a short one is a secret.
    pub(crate) const fn every_secret() -> Scrubber {
        Scrubber::with_min_len(1)
    }

    /// Scrubs secrets of at least `min_len` bytes: a very short text would garble every line it
    /// happens to occur in (a one-letter secret is in most words).
    pub(crate) const fn with_min_len(min_len: usize) -> Scrubber {
        Scrubber {
            secrets: RwLock::new(Vec::new()),
            min_len,
        }
    }

    pub(crate) fn add(&self, secrets: impl IntoIterator<Item = String>) {
        let mut list = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        for secret in secrets {
            if secret.len() >= self.min_len && !list.contains(&secret) {
                list.push(secret);
            }
        }
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        let list = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_owned();
        for secret in list.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_secret_is_replaced_first() {
        let s = Scrubber::every_secret();
        s.add(["abc".to_owned(), "abcdef".to_owned(), "abc".to_owned()]);
        assert_eq!(s.scrub("x abcdef abc y"), "x <redacted> <redacted> y");
    }

    #[test]
    fn short_texts_are_left_alone_when_asked() {
        let s = Scrubber::with_min_len(6);
        s.add(["a".to_owned(), "hunter2".to_owned()]);
        assert_eq!(s.scrub("a hunter2"), "a <redacted>");
    }
}

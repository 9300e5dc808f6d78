//! The service's logs: one line per event on stderr, `time level event key=value…`, easy to
//! grep and to parse. Values with spaces, quotes or line breaks are quoted and escaped, so one
//! event is always one line. Every text the service knows to be secret (the webhook secret, the
//! GitHub token, the Slack URL) is replaced before a line is written, whatever field carries it.

use std::fmt::{Display, Write};
use std::io::Write as _;

use crate::redact::Scrubber;

/// The service's own secrets; a short one is matched only where it stands alone (see
/// [`crate::redact`]), so it cannot garble every line.
static SECRETS: Scrubber = Scrubber::new();

/// Never show `secret` in a log line or in anything [`scrub`] cleans.
pub(crate) fn add_secret(secret: &str) {
    SECRETS.add([secret.to_owned()]);
}

/// `text` with every known secret replaced by `<redacted>`.
pub(crate) fn scrub(text: &str) -> String {
    SECRETS.scrub(text)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One event as a line (without the time), e.g. `level=info event=job.started branch=feature-x`.
pub(crate) fn format_line(level: Level, event: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut line = format!("level={} event={event}", level.as_str());
    for (key, value) in fields {
        let value = scrub(&value.to_string());
        let _ = write!(line, " {key}={}", quote(&value));
    }
    line
}

/// Bare when it is one simple word, else a double-quoted string with escapes.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

/// Write one event to stderr.
pub(crate) fn write(level: Level, event: &str, fields: &[(&str, &dyn Display)]) {
    let line = format!(
        "time={:.3} {}\n",
        jiff::Timestamp::now(),
        format_line(level, event, fields)
    );
    // One write per line, so lines of concurrent jobs never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `log!(Info, "job.started", branch = b, sha = s)`: one structured line on stderr.
macro_rules! log {
    ($level:ident, $event:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::serve::log::write(
            $crate::serve::log::Level::$level,
            $event,
            &[$((stringify!($key), &$value as &dyn std::fmt::Display)),*],
        )
    };
}
pub(crate) use log;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_key_value_pairs_with_quoting_where_needed() {
        let branch = "feature-x";
        let error = "could not deploy: \"api\" failed\nline two";
        let line = format_line(
            Level::Warn,
            "job.failed",
            &[("branch", &branch), ("error", &error), ("empty", &"")],
        );
        assert_eq!(
            line,
            r#"level=warn event=job.failed branch=feature-x error="could not deploy: \"api\" failed\nline two" empty="""#
        );
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn secrets_never_reach_a_line() {
        add_secret("ghp_log_test_token_0123456789");
        let text = "fetch https://x-access-token:ghp_log_test_token_0123456789@example.com failed";
        let line = format_line(Level::Error, "job.failed", &[("error", &text)]);
        assert!(!line.contains("ghp_log_test_token"), "{line}");
        assert!(line.contains("<redacted>"), "{line}");
        assert!(!scrub(text).contains("ghp_log_test_token"));
    }

    #[test]
    fn very_short_secrets_do_not_garble_the_log() {
        add_secret("x");
        assert_eq!(
            scrub("config=/product/sandbox.yaml"),
            "config=/product/sandbox.yaml"
        );
    }
}

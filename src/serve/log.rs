//! The service's log events: `log!(Info, "job.started", branch = b, sha = s)`, one `tracing`
//! event whose message is the event's name and whose fields are the pairs. [`crate::logging`]
//! writes them (text `time level event key=value…` or JSON, `--log-format`), adds the fields of
//! the spans they happen in (delivery, repository, pull request, branch), and scrubs every text
//! the service knows to be secret (the webhook secret, the GitHub token, the Slack URL, the
//! cluster's token) from every line, whatever field carries it — and what a deploy decrypted
//! from the lines of that deploy's work only.

use std::fmt::Display;

/// Never show `secret` in a log line or in anything [`scrub`] cleans. A short one is matched only
/// where it stands alone (see [`crate::redact`]), so it cannot garble every line.
pub(crate) fn add_secret(secret: &str) {
    crate::logging::add_secrets([secret.to_owned()]);
}

/// `text` with every known secret replaced by `<redacted>`.
pub(crate) fn scrub(text: &str) -> String {
    crate::logging::scrub(text)
}

/// The level of a [`write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the API for events with run-time field names; `log!` is the usual way
pub(crate) enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// The `tracing` levels of [`log!`]'s level names (constants: a callsite's level is static).
#[allow(non_upper_case_globals, dead_code)]
pub(crate) mod levels {
    pub(crate) const Debug: tracing::Level = tracing::Level::DEBUG;
    pub(crate) const Info: tracing::Level = tracing::Level::INFO;
    pub(crate) const Warn: tracing::Level = tracing::Level::WARN;
    pub(crate) const Error: tracing::Level = tracing::Level::ERROR;
}

/// One event whose field names are only known at run time: the pairs become one `fields` text
/// (`key=value …`). [`log!`] is the usual way, with real fields.
#[allow(dead_code)]
pub(crate) fn write(level: Level, event: &str, fields: &[(&str, &dyn Display)]) {
    let pairs: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{key}={}", crate::logging::quote(&value.to_string())))
        .collect();
    let pairs = pairs.join(" ");
    match level {
        Level::Debug => tracing::debug!(fields = pairs, "{event}"),
        Level::Info => tracing::info!(fields = pairs, "{event}"),
        Level::Warn => tracing::warn!(fields = pairs, "{event}"),
        Level::Error => tracing::error!(fields = pairs, "{event}"),
    }
}

/// `log!(Info, "job.started", branch = b, sha = s)`: one structured event; each value is shown
/// with its `Display`.
macro_rules! log {
    ($level:ident, $event:expr $(, $key:ident = $value:expr)* $(,)?) => {
        ::tracing::event!(
            $crate::serve::log::levels::$level,
            $($key = %$value,)*
            "{}",
            $event
        )
    };
}
pub(crate) use log;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::{capture, Format};

    /// The line without its time.
    fn untimed(line: &str) -> &str {
        line.split_once(' ').unwrap().1.trim_end()
    }

    #[test]
    fn a_line_is_key_value_pairs_with_quoting_where_needed() {
        let branch = "feature-x";
        let error = "could not deploy: \"api\" failed\nline two";
        let line = capture(Format::Text, || {
            log!(
                Warn,
                "job.failed",
                branch = branch,
                error = error,
                empty = ""
            );
        });
        assert_eq!(
            untimed(&line),
            r#"level=warn event=job.failed branch=feature-x error="could not deploy: \"api\" failed\nline two" empty="""#
        );
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn json_lines_carry_the_same_fields() {
        let line = capture(Format::Json, || {
            log!(Info, "job.succeeded", branch = "feature-x", took = "1.5s");
        });
        let line: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(line["event"], "job.succeeded");
        assert_eq!(line["level"], "info");
        assert_eq!(line["branch"], "feature-x");
        assert_eq!(line["took"], "1.5s");
    }

    #[test]
    fn secrets_never_reach_a_line() {
        add_secret("ghp_log_test_token_0123456789");
        let text = "fetch https://x-access-token:ghp_log_test_token_0123456789@example.com failed";
        for format in [Format::Text, Format::Json] {
            let line = capture(format, || {
                log!(Error, "job.failed", error = text);
                write(Level::Debug, "dynamic", &[("error", &text)]);
            });
            assert!(!line.contains("ghp_log_test_token"), "{line}");
            assert!(line.contains("<redacted>"), "{line}");
        }
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

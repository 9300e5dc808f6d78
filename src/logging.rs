//! The process's diagnostics: every `tracing` event — the tool's own and those of the crates it
//! builds on (kube's requests, watches, retries) — as one line on stderr, in text
//! (`time=… level=info event=job.started branch=feature-x …`) or JSON (one object a line, the same
//! keys), filtered by `RUST_LOG` or the verbosity flags.
//!
//! Every line carries the fields of the spans it happened in (a webhook's delivery id, a piece
//! of work's repository, pull request and branch), after its own; a key already on the line is
//! not repeated. Every known secret is scrubbed from the finished line, whatever field or level
//! carries it, before it is written: one place, so no event can bypass it. The process's own
//! credentials (serve's webhook secret and tokens, the API server's, the git and registry
//! tokens, the age keys) are scrubbed from every line; what one sandbox decrypted only from the
//! lines logged inside its work's span ([`scrub_within`]): in serve, a branch's values must not
//! blank words in other pull requests' lines (a secret `ready` would hide every "ready").
//!
//! Why our own layer rather than `tracing-subscriber`'s `fmt`: the text format stays exactly
//! serve's existing `key=value` lines (operators grep them), JSON is flat (a log pipeline indexes
//! `branch`, not `fields.branch`), and both come from the same collected fields.

use std::io::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::Hint;
use crate::redact::Scrubber;

/// Every text no line may show. One per process: the secrets are learnt where they are read
/// (serve's environment, the kubeconfig, decryption), the lines are written here.
static SECRETS: Scrubber = Scrubber::new();

/// Never show any of `secrets` in a line (or in what [`scrub`] cleans).
pub(crate) fn add_secrets(secrets: impl IntoIterator<Item = String>) {
    SECRETS.add(secrets);
}

/// `text` with every known secret replaced by `<redacted>`.
pub(crate) fn scrub(text: &str) -> String {
    SECRETS.scrub(text)
}

/// A program's stderr as one line for an error (a credential helper's, an exec plugin's): every
/// known secret scrubbed, at most 10 non-empty lines of 300 characters.
pub(crate) fn stderr_excerpt(stderr: &str) -> String {
    let lines: Vec<String> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(10)
        .map(|l| scrub(l).chars().take(300).collect())
        .collect();
    match lines.is_empty() {
        true => "nothing on stderr".into(),
        false => lines.join(" / "),
    }
}

/// The credentials the process's environment holds (tokens, the webhook secret, the Slack URL,
/// age keys, the git SSH key's lines), whichever of them a command ends up using: never shown.
pub(crate) fn learn_environment_credentials(env: &dyn Fn(&str) -> Option<String>) {
    const TOKENS: [&str; 6] = [
        "SANDBOX_GIT_TOKEN",
        "SANDBOX_GITHUB_TOKEN",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "SANDBOX_WEBHOOK_SECRET",
        "SANDBOX_SLACK_WEBHOOK_URL",
    ];
    let mut secrets: Vec<String> = TOKENS
        .iter()
        .filter_map(|name| env(name))
        .map(|value| value.trim().to_owned())
        .collect();
    if let Some(keys) = env("SOPS_AGE_KEY") {
        secrets.extend(keys.split_whitespace().map(str::to_owned));
    }
    if let Some(key) = env("SANDBOX_GIT_SSH_KEY").and_then(|p| std::fs::read_to_string(p).ok()) {
        secrets.extend(crate::redact::key_lines(&key));
    }
    add_secrets(secrets);
}

/// A sandbox's secrets, kept in its work's span for the lines logged inside it.
struct SpanSecrets(Arc<Scrubber>);

/// Scrub `secrets` from every line logged inside `span` (and the spans within it), and from no
/// other line. Nothing happens when `span` is disabled or another subscriber records it.
pub(crate) fn scrub_within(span: &tracing::Span, secrets: Arc<Scrubber>) {
    use tracing_subscriber::registry::{LookupSpan as _, SpanData as _};
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>();
        if let Some(data) = registry.and_then(|r| r.span_data(id)) {
            data.extensions_mut().replace(SpanSecrets(secrets));
        }
    });
}

/// How lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// `time=… level=… event=… key=value…`; values with spaces or quotes are quoted.
    #[default]
    Text,
    /// One JSON object per line with the same keys.
    Json,
}

/// What to show when `RUST_LOG` is not set.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Verbosity {
    /// `-v` given this many times: 1 the tool's and kube's info, 2 debug, 3 and more trace.
    pub(crate) verbose: u8,
    /// `--debug`: one line per Kubernetes API request (method, path, status, duration).
    pub(crate) api_requests: bool,
    /// A service (`serve`): its own events at info and everyone's warnings even without `-v`.
    pub(crate) service: bool,
}

/// The target of the API request summaries (`--debug`; `RUST_LOG=sandbox::api=debug`).
pub(crate) const API_TARGET: &str = "sandbox::api";

impl Verbosity {
    /// The filter directives these flags stand for (`RUST_LOG`'s syntax).
    pub(crate) fn directives(self) -> String {
        let level = match self.verbose {
            0 => None,
            1 => Some("info"),
            2 => Some("debug"),
            _ => Some("trace"),
        };
        let mut out = vec![if self.service { "warn" } else { "off" }.to_owned()];
        if self.service {
            out.push("sandbox=info".into());
        }
        if let Some(level) = level {
            // The crates' own targets only: hyper's and rustls's traces would show headers.
            out.push(format!("sandbox={level},kube={level}"));
        }
        if self.api_requests {
            out.push(format!("{API_TARGET}=debug"));
        }
        out.join(",")
    }
}

/// `RUST_LOG` is not a filter.
#[derive(Debug, thiserror::Error)]
#[error("RUST_LOG=`{value}` is not a log filter: {reason}")]
pub(crate) struct FilterError {
    value: String,
    reason: String,
}

impl Hint for FilterError {
    fn hint(&self) -> Option<String> {
        Some("RUST_LOG takes comma-separated LEVEL or TARGET=LEVEL directives, e.g. `info,kube=debug` (or unset it and use -v, -vv, --debug)".into())
    }
}

/// The filter: `RUST_LOG` when set (with `--debug`'s directive added), else what `verbosity`
/// stands for.
pub(crate) fn filter(
    rust_log: Option<&str>,
    verbosity: Verbosity,
) -> Result<EnvFilter, FilterError> {
    let directives = match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) if verbosity.api_requests => format!("{value},{API_TARGET}=debug"),
        Some(value) => value.to_owned(),
        None => verbosity.directives(),
    };
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| FilterError {
            value: rust_log.unwrap_or_default().to_owned(),
            reason: e.to_string(),
        })
}

/// Install the process's subscriber: lines in `format` on stderr, as `filter` lets through. A
/// second call (tests, a library user with its own subscriber) changes nothing.
pub(crate) fn init(filter: EnvFilter, format: Format) {
    let layer = Lines::new(format, Arc::new(write_stderr)).with_filter(filter);
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

fn write_stderr(line: &[u8]) {
    // One write per line, so lines of concurrent jobs never interleave.
    let _ = std::io::stderr().lock().write_all(line);
}

/// Where finished lines go (stderr; a buffer in tests).
pub(crate) type Sink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The layer that writes lines.
pub(crate) struct Lines {
    format: Format,
    sink: Sink,
}

impl Lines {
    pub(crate) fn new(format: Format, sink: Sink) -> Lines {
        Lines { format, sink }
    }
}

/// A span's fields, kept in its extensions for the lines inside it.
struct SpanFields(Vec<(&'static str, Value)>);

/// Collects fields as JSON values: numbers and booleans stay what they are, the rest is text.
struct Collect<'a>(&'a mut Vec<(&'static str, Value)>);

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        // A field recorded later (declared `Empty`) replaces its placeholder.
        match self.0.iter_mut().find(|(k, _)| *k == field.name()) {
            Some(slot) => slot.1 = value,
            None => self.0.push((field.name(), value)),
        }
    }
}

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The error and its causes, on one line, as `{:#}` shows an anyhow error.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        self.put(field, Value::String(text));
    }
}

impl<S> Layer<S> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Vec::new();
        attrs.record(&mut Collect(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Collect(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        event.record(&mut Collect(&mut fields));
        let mut sandbox_secrets = Vec::new();
        // The innermost span's fields first: they are the most specific.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let extensions = span.extensions();
                if let Some(own) = extensions.get::<SpanFields>() {
                    for (key, value) in &own.0 {
                        if !fields.iter().any(|(k, _)| k == key) {
                            fields.push((key, value.clone()));
                        }
                    }
                }
                if let Some(SpanSecrets(secrets)) = extensions.get::<SpanSecrets>() {
                    sandbox_secrets.push(secrets.clone());
                }
            }
        }
        let line = format_line(
            self.format,
            event.metadata(),
            jiff::Timestamp::now(),
            fields,
        );
        let line = sandbox_secrets
            .iter()
            .fold(scrub(&line), |line, secrets| secrets.scrub(&line));
        (self.sink)(line.as_bytes());
    }
}

/// Keys every line has; an event's field of the same name is left out of JSON (the line's own
/// value wins) and shown after them in text.
const RESERVED: [&str; 4] = ["time", "level", "event", "target"];

/// One line, ending in `\n`. The event's name is its message (`log!`'s event, or a crate's text).
fn format_line(
    format: Format,
    meta: &tracing::Metadata<'_>,
    time: jiff::Timestamp,
    fields: Vec<(&'static str, Value)>,
) -> String {
    let level = meta.level().as_str().to_ascii_lowercase();
    let mut name = String::new();
    let mut rest = Vec::new();
    for (key, value) in fields {
        match (key, value) {
            ("message", Value::String(text)) if name.is_empty() => name = text,
            (key, value) => rest.push((key, value)),
        }
    }
    // Other crates' lines say whose they are; the tool's own lines keep their familiar shape.
    let target = (!meta.target().starts_with("sandbox")).then(|| meta.target());
    match format {
        Format::Text => {
            let mut line = format!("time={time:.3} level={level} event={}", quote(&name));
            for (key, value) in &rest {
                line.push_str(&format!(" {key}={}", text_value(value)));
            }
            if let Some(target) = target {
                line.push_str(&format!(" target={target}"));
            }
            line.push('\n');
            line
        }
        Format::Json => {
            let mut object = Map::new();
            object.insert("time".into(), format!("{time:.3}").into());
            object.insert("level".into(), level.into());
            object.insert("event".into(), name.into());
            object.insert("target".into(), meta.target().into());
            for (key, value) in rest {
                if !RESERVED.contains(&key) {
                    object.entry(key).or_insert(value);
                }
            }
            let mut line = Value::Object(object).to_string();
            line.push('\n');
            line
        }
    }
}

fn text_value(value: &Value) -> String {
    match value {
        Value::String(text) => quote(text),
        other => other.to_string(),
    }
}

/// Bare when it is one simple word, else a double-quoted string with escapes: one event is
/// always one line.
pub(crate) fn quote(value: &str) -> String {
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

/// The lines `body` logs, in `format`, with every level let through (for tests).
#[cfg(test)]
pub(crate) fn capture(format: Format, body: impl FnOnce()) -> String {
    let (subscriber, lines) = capturing(format);
    tracing::subscriber::with_default(subscriber, body);
    lines()
}

/// A subscriber that keeps every line, and what it has kept so far (for tests; async ones set
/// it as the thread's default, which a current-thread runtime's tasks share).
#[cfg(test)]
pub(crate) fn capturing(format: Format) -> (impl Subscriber + Send + Sync, impl Fn() -> String) {
    let out = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = out.clone();
    let layer = Lines::new(
        format,
        Arc::new(move |line: &[u8]| sink.lock().unwrap().extend_from_slice(line)),
    );
    let lines = move || String::from_utf8(out.lock().unwrap().clone()).unwrap();
    (tracing_subscriber::registry().with(layer), lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line without its time.
    fn untimed(line: &str) -> &str {
        line.split_once(' ').unwrap().1.trim_end()
    }

    #[test]
    fn text_lines_are_key_value_with_span_fields_after_the_events_own() {
        let out = capture(Format::Text, || {
            let span = tracing::error_span!("work", delivery = "d-1", branch = "feature-x");
            let _in = span.enter();
            tracing::info!(
                branch = "feature-x",
                error = "could not deploy: \"api\" failed\nline two",
                attempts = 2u64,
                empty = "",
                "job.failed"
            );
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.starts_with("time=20"), "{out}");
        assert_eq!(
            untimed(&out),
            r#"level=info event=job.failed branch=feature-x error="could not deploy: \"api\" failed\nline two" attempts=2 empty="" delivery=d-1"#
        );
    }

    #[test]
    fn json_lines_are_flat_objects_with_the_same_keys() {
        let out = capture(Format::Json, || {
            let span =
                tracing::error_span!("webhook", delivery = "d-2", pr = tracing::field::Empty);
            let _in = span.enter();
            span.record("pr", "o/backend#42");
            tracing::warn!(status = 401u64, time = "not the line's", "webhook.refused");
        });
        let line: Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(line["level"], "warn");
        assert_eq!(line["event"], "webhook.refused");
        assert_eq!(line["status"], 401);
        assert_eq!(line["delivery"], "d-2");
        assert_eq!(line["pr"], "o/backend#42");
        assert_eq!(line["target"], module_path!());
        assert_ne!(line["time"], "not the line's");
        assert_eq!(out.lines().count(), 1);
    }

    #[test]
    fn other_crates_lines_say_whose_they_are() {
        let out = capture(Format::Text, || {
            tracing::debug!(target: "kube_client::client", "requesting");
        });
        assert_eq!(
            untimed(&out),
            "level=debug event=requesting target=kube_client::client"
        );
    }

    #[test]
    fn secrets_never_reach_a_line_at_any_level_or_format() {
        add_secrets(["ghp_logging_test_token_0123456789".to_owned()]);
        for format in [Format::Text, Format::Json] {
            let out = capture(format, || {
                let span = tracing::error_span!(
                    "work",
                    url = "https://x-access-token:ghp_logging_test_token_0123456789@example.com"
                );
                let _in = span.enter();
                tracing::trace!("token ghp_logging_test_token_0123456789 in the message");
                tracing::error!(header = "Bearer ghp_logging_test_token_0123456789", "x");
            });
            assert_eq!(out.lines().count(), 2, "{out}");
            assert!(!out.contains("ghp_logging_test_token"), "{out}");
            assert!(out.contains("<redacted>"), "{out}");
        }
    }

    #[test]
    fn verbosity_flags_stand_for_filters() {
        let cli = Verbosity::default();
        assert_eq!(cli.directives(), "off");
        let serve = Verbosity {
            service: true,
            ..cli
        };
        assert_eq!(serve.directives(), "warn,sandbox=info");
        let vv_debug = Verbosity {
            verbose: 2,
            api_requests: true,
            ..cli
        };
        assert_eq!(
            vv_debug.directives(),
            "off,sandbox=debug,kube=debug,sandbox::api=debug"
        );
        assert!(filter(None, vv_debug).is_ok());
        assert!(filter(Some("info,kube=debug"), cli).is_ok());
        let bad = filter(Some("kube=loud"), cli).unwrap_err();
        assert!(bad.to_string().contains("RUST_LOG=`kube=loud`"), "{bad}");
        assert!(bad.hint().unwrap().contains("-vv"));
    }
}

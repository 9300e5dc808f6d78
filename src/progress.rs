//! The one place that writes progress to stderr: an indicatif line per step on a terminal,
//! plain lines otherwise (CI logs, pipes). It also scrubs decrypted secrets from any text that
//! passes through it, such as container logs, so that a secret a service echoes never reaches
//! the screen.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::redact::Scrubber;

pub(crate) struct Reporter {
    bars: Option<MultiProgress>,
    lines: Mutex<BTreeMap<String, ProgressBar>>,
    secrets: Arc<Scrubber>,
    quiet: bool,
    /// The command runs one sandbox, so its secrets are the process's: scrubbed from every
    /// diagnostic line. False in serve, where each piece of work has a reporter of its own.
    process_wide: bool,
}

impl Reporter {
    /// A command's: bars when stderr is a terminal, plain lines when it is not.
    pub(crate) fn new(quiet: bool) -> Reporter {
        let fancy = !quiet && std::io::stderr().is_terminal();
        Reporter {
            bars: fancy.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            lines: Mutex::new(BTreeMap::new()),
            secrets: Arc::new(Scrubber::new()),
            quiet,
            process_wide: true,
        }
    }

    /// One sandbox's among many in one process (serve's work): quiet, and the secrets it learns
    /// are scrubbed from its own texts and from the lines logged inside `span` only, so that
    /// one branch's values never blank words in another's comments and lines.
    pub(crate) fn for_one_sandbox(span: &tracing::Span) -> Reporter {
        let reporter = Reporter {
            process_wide: false,
            ..Reporter::new(true)
        };
        crate::logging::scrub_within(span, reporter.secrets.clone());
        reporter
    }

    /// Texts that must never be shown (decrypted values): not here, nor in a diagnostic line
    /// (`-v`; serve's lines of this work).
    pub(crate) fn add_secrets(&self, secrets: impl IntoIterator<Item = String>) {
        let secrets: Vec<String> = secrets.into_iter().collect();
        if self.process_wide {
            crate::logging::add_secrets(secrets.iter().cloned());
        }
        self.secrets.add(secrets);
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    /// A line of status, e.g. what the checkout found.
    pub(crate) fn info(&self, text: &str) {
        if self.quiet {
            return;
        }
        let text = self.scrub(text);
        match &self.bars {
            Some(bars) => bars.println(text).unwrap_or(()),
            None => eprintln!("{text}"),
        }
    }

    /// A line of a container's (or a build's) log, prefixed by where it comes from, without
    /// the terminal control sequences it may carry.
    pub(crate) fn log_line(&self, prefix: &str, line: &str) {
        self.info(&format!("[{prefix}] {}", crate::redact::printable(line)));
    }

    fn set(&self, id: &str, message: String, finish: bool) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let mut lines = self.lines.lock().expect("not poisoned");
                let bar = lines.entry(id.to_owned()).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner:.cyan} {prefix:<20} {wide_msg} {elapsed:>4}",
                        )
                        .expect("valid template"),
                    );
                    bar.set_prefix(id.to_owned());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                if finish {
                    bar.set_style(
                        ProgressStyle::with_template("  {prefix:<20} {wide_msg}")
                            .expect("valid template"),
                    );
                    bar.finish_with_message(message);
                } else {
                    bar.set_message(message);
                }
            }
            None => eprintln!("  {id:<20} {message}"),
        }
    }

    pub(crate) fn step_started(&self, id: &str) {
        self.set(id, "applying".into(), false);
    }

    pub(crate) fn step_applied(&self, id: &str) {
        self.set(id, "waiting until ready".into(), false);
    }

    pub(crate) fn step_ready(&self, id: &str, took: Duration) {
        self.set(id, format!("ready ({:.1}s)", took.as_secs_f64()), true);
    }

    pub(crate) fn step_failed(&self, id: &str) {
        self.set(id, "FAILED".into(), true);
    }

    /// Stop every spinner still running (on error or interruption).
    pub(crate) fn abandon(&self) {
        for bar in self.lines.lock().expect("not poisoned").values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_secret_longest_first() {
        let r = Reporter::new(true);
        r.add_secrets(["pass".to_string(), "password-123".to_string()]);
        assert_eq!(
            r.scrub("a password-123 b pass c cGFzc3dvcmQtMTIz"),
            "a <redacted> b <redacted> c <redacted>"
        );
        assert_eq!(r.scrub("nothing here"), "nothing here");
    }
}

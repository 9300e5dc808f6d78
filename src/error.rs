//! How a failure is shown: `error:` with the top message, `caused by:` for each cause, then the
//! `hint:` lines that the typed errors in the chain offer — in the manner of cargo.
//!
//! Every typed error of the crate implements [`Hint`]. `anyhow` keeps only `dyn Error`, so each
//! layer lists its error types once, with [`hint_registry!`]: the foundations here, then
//! `pipeline::hints_of`, then `serve::hints_of`, each falling back to the layer below, so no
//! module names a type above it. A unit test (`app::tests`) reads the sources and fails when an
//! error type does not implement `Hint` or is in no registry: a new error cannot silently lose
//! its hint.

use std::fmt::Write;

// The exit codes, in one place (listed in `--help` by `EXIT_CODES_HELP` and in the README).
/// Exit code of success (`diff`: nothing would change).
pub const EXIT_OK: i32 = 0;
/// Exit code of `diff` when the sandbox would change (as `kubectl diff`).
pub const EXIT_CHANGES: i32 = 1;
/// Exit code for failures caused by usage, input, configuration or the cluster (clap's own
/// code for a usage error, and `kubectl diff`'s "2 or above" for an error).
pub const EXIT_FAILURE: i32 = 2;
/// Exit code for a bug: the program panicked (EX_SOFTWARE of sysexits.h).
pub const EXIT_BUG: i32 = 70;
/// Exit code when Ctrl-C stopped the command (the shell's own code for SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// The exit codes as `--help` lists them (a unit test checks them against the constants).
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0    success; `diff`: nothing would change
  1    `diff`: the sandbox would change
  2    a failure caused by usage, input, configuration or the cluster (the message says which)
  70   a bug in sandbox (a crash): please report it
  130  interrupted (Ctrl-C)";

/// An error that can tell the user what to do about it. The last line of a hint is the advice;
/// lines above it are details (events, log lines) shown indented.
pub(crate) trait Hint: std::error::Error + 'static {
    fn hint(&self) -> Option<String>;
}

/// The hints one error of a chain offers (empty when it is not a typed error of ours).
pub(crate) type HintsOf = fn(&(dyn std::error::Error + 'static)) -> Vec<String>;

/// Render an error and its chain for a terminal; `hints_of` is the registry of the caller's layer.
pub(crate) fn render(error: &anyhow::Error, hints_of: HintsOf) -> String {
    let mut out = format!("error: {error}\n");
    let mut hints = Vec::new();
    let mut previous = error.to_string();
    for (i, cause) in error.chain().enumerate() {
        let text = cause.to_string();
        // Some libraries repeat their cause's text in their own message; say it once.
        if i > 0 && !previous.contains(&text) {
            let _ = writeln!(out, "caused by: {text}");
        }
        previous = text;
        // A wrapper and its cause may offer the same hint; say it once.
        for h in hints_of(cause) {
            if !hints.contains(&h) {
                hints.push(h);
            }
        }
    }
    for h in hints {
        let lines: Vec<&str> = h.trim_end().lines().collect();
        let Some((advice, details)) = lines.split_last() else {
            continue;
        };
        for d in details {
            let _ = writeln!(out, "  {d}");
        }
        let _ = writeln!(out, "hint: {advice}");
    }
    out
}

/// Make a panic read like the other errors, say it is a bug, and exit with [`EXIT_BUG`].
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        eprint!("{}", crash_report(&message, place.as_deref()));
        std::process::exit(EXIT_BUG);
    }));
}

/// What a panic prints: one `error:` line with where it happened, and a hint that it is a bug.
fn crash_report(message: &str, place: Option<&str>) -> String {
    // Short: the first line, at most 200 characters.
    let first = message.lines().next().unwrap_or_default();
    let mut short: String = first.chars().take(200).collect();
    if short.len() < message.trim_end().len() {
        short.push('…');
    }
    let message = short;
    let place = place.map(|p| format!(" at {p}")).unwrap_or_default();
    format!(
        "error: sandbox crashed: {message}{place}\nhint: this is a bug in sandbox; please report it with the command you ran (exit code {EXIT_BUG})\n"
    )
}

/// Define `$name`, the hints of one layer's error types, falling back to `$fallback` (the layer
/// below) for any other error; and, for the completeness test, `$registered`: the type names.
macro_rules! hint_registry {
    ($name:ident, $registered:ident, fallback = $fallback:expr, [$($t:path),* $(,)?]) => {
        pub(crate) fn $name(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
            $(
                if let Some(e) = e.downcast_ref::<$t>() {
                    return $crate::error::Hint::hint(e).into_iter().collect();
                }
            )*
            $fallback(e)
        }

        #[cfg(test)]
        pub(crate) const $registered: &[&str] = &[$(stringify!($t)),*];
    };
}
pub(crate) use hint_registry;

/// The registry below the lowest layer: no typed error there.
pub(crate) fn no_hints(_: &(dyn std::error::Error + 'static)) -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_crash_message_is_cut_short() {
        let report = crash_report(&format!("{}\nsecond line", "x".repeat(500)), None);
        assert!(report.starts_with(&format!("error: sandbox crashed: {}…\n", "x".repeat(200))));
        assert!(!report.contains("second line"), "{report}");
    }

    #[test]
    fn the_help_lists_every_exit_code() {
        for code in [
            EXIT_OK,
            EXIT_CHANGES,
            EXIT_FAILURE,
            EXIT_BUG,
            EXIT_INTERRUPTED,
        ] {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {code:<4} ")),
                "{code} is not in {EXIT_CODES_HELP}"
            );
        }
    }

    #[test]
    fn a_crash_says_it_is_a_bug_and_where() {
        assert_eq!(
            crash_report("index out of bounds", Some("src/pipeline/plan.rs:12")),
            "error: sandbox crashed: index out of bounds at src/pipeline/plan.rs:12\nhint: this is a bug in sandbox; please report it with the command you ran (exit code 70)\n"
        );
    }
}

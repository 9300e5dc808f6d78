//! How a failure is shown: `error:` with the top message, `caused by:` for each cause, then the
//! `hint:` lines that the typed errors in the chain offer — in the manner of cargo.
//!
//! Every typed error of the crate implements [`Hint`] and is listed in [`hints_of`]; a unit test
//! below reads the sources and fails when an error type is missing from either, so a new error
//! cannot silently lose its hint.

use std::fmt::Write;

/// Exit code for failures caused by input, configuration or the cluster.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code when Ctrl-C stopped the command (the shell's own code for SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code for a bug: the program panicked (EX_SOFTWARE of sysexits.h).
pub const EXIT_BUG: i32 = 70;

/// An error that can tell the user what to do about it. The last line of a hint is the advice;
/// lines above it are details (events, log lines) shown indented.
pub(crate) trait Hint: std::error::Error + 'static {
    fn hint(&self) -> Option<String>;
}

/// Render an error and its chain for a terminal.
pub fn render(error: &anyhow::Error) -> String {
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

/// The exit code for a failed command.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error
        .chain()
        .any(|c| c.is::<crate::pipeline::Interrupted>())
    {
        EXIT_INTERRUPTED
    } else {
        EXIT_FAILURE
    }
}

/// Make a panic read like the other errors, say it is a bug, and exit with [`EXIT_BUG`].
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: sandbox crashed: {message}{place}\nhint: this is a bug in sandbox; please report it with the command you ran (exit code {EXIT_BUG})"
        );
        std::process::exit(EXIT_BUG);
    }));
}

macro_rules! registered_hints {
    ($($t:path),* $(,)?) => {
        fn hints_of(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
            $(
                if let Some(e) = e.downcast_ref::<$t>() {
                    return Hint::hint(e).into_iter().collect();
                }
            )*
            // Several repos may fail at once: each offers its own hint.
            if let Some(errors) = e.downcast_ref::<crate::pipeline::checkout::CheckoutErrors>() {
                return errors.errors().iter().filter_map(Hint::hint).collect();
            }
            Vec::new()
        }

        #[cfg(test)]
        const REGISTERED: &[&str] = &[$(stringify!($t)),*];
    };
}

registered_hints!(
    crate::pipeline::config::ConfigError,
    crate::pipeline::checkout::CheckoutError,
    crate::pipeline::sops::SopsError,
    crate::pipeline::values::ValuesError,
    crate::pipeline::render::RenderError,
    crate::pipeline::render::helpers::HelperError,
    crate::pipeline::plan::PlanError,
    crate::kube::ClusterError,
    crate::pipeline::wait::WaitError,
    crate::pipeline::inventory::InventoryError,
    crate::pipeline::apply::ApplyError,
    crate::pipeline::smoke::SmokeError,
    crate::pipeline::handover::HandoverError,
    crate::lock::LockError,
    crate::record::RecordError,
    crate::pipeline::Interrupted,
    crate::serve::event::EventError,
    crate::serve::github::ApiError,
    crate::serve::signature::SignatureError,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_error_causes_and_each_hint_once() {
        let err = crate::pipeline::config::ConfigError::Cycle {
            path: "sandbox.yaml".into(),
            line: 3,
            cycle: vec!["a".into(), "b".into(), "a".into()],
        };
        let error = anyhow::Error::new(err).context("could not load the config");
        let text = render(&error);
        assert_eq!(
            text,
            "error: could not load the config\ncaused by: sandbox.yaml:3: dependency cycle: a → b → a\nhint: remove one of these `depends_on` edges so the services form a DAG\n"
        );
    }

    /// Every error type the crate defines implements `Hint` and is registered above: read the
    /// sources, so that a new error type fails this test instead of losing its hint.
    #[test]
    fn every_error_type_offers_its_hint() {
        let mut sources = String::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    sources.push_str(&std::fs::read_to_string(path).unwrap());
                }
            }
        }
        let registered: Vec<&str> = REGISTERED
            .iter()
            .map(|p| p.rsplit("::").next().unwrap().trim())
            .collect();
        let mut types = Vec::new();
        let mut lines = sources.lines();
        while let Some(line) = lines.next() {
            if line.trim_start().starts_with("#[derive(") && line.contains("thiserror::Error") {
                let definition = lines
                    .by_ref()
                    .find(|l| l.contains("enum ") || l.contains("struct "))
                    .unwrap();
                let name = definition
                    .split_whitespace()
                    .skip_while(|w| *w != "enum" && *w != "struct")
                    .nth(1)
                    .unwrap()
                    .split(['(', '{', '<'])
                    .next()
                    .unwrap();
                types.push(name.to_owned());
            }
        }
        assert!(types.len() >= 10, "found only {types:?}");
        for name in &types {
            assert!(
                sources.contains(&format!("impl Hint for {name} ")),
                "error type `{name}` does not implement `error::Hint`"
            );
            assert!(
                registered.contains(&name.as_str()),
                "error type `{name}` is not listed in `registered_hints!` in src/error.rs"
            );
        }
    }
}

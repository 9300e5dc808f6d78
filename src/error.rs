//! How a failure is shown: `error:` with the top message, `caused by:` for each cause, then the
//! `hint:` lines that the typed errors in the chain offer — in the manner of cargo.

use std::fmt::Write;

/// Exit code for failures caused by input, configuration or the cluster.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for bugs (panics).
pub const EXIT_BUG: i32 = 2;

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
        // A multi-line hint carries details (events, log lines) above its one line of advice.
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

fn hints_of(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    macro_rules! try_hint {
        ($($t:ty),*) => {$(
            if let Some(e) = e.downcast_ref::<$t>() {
                return e.hint().into_iter().collect();
            }
        )*};
    }
    try_hint!(
        crate::config::ConfigError,
        crate::checkout::CheckoutError,
        crate::values::ValuesError,
        crate::render::RenderError,
        crate::plan::PlanError,
        crate::kube::ClusterError,
        crate::apply::ApplyError,
        crate::smoke::SmokeError,
        crate::handover::HandoverError,
        crate::lock::LockError,
        crate::commands::Interrupted
    );
    if let Some(errors) = e.downcast_ref::<crate::checkout::CheckoutErrors>() {
        return errors.errors().iter().filter_map(|e| e.hint()).collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_error_causes_and_each_hint_once() {
        let err = crate::config::ConfigError::Cycle {
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
}

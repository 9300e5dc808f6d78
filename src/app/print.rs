//! What commands print to stdout (and the `--timings` block on stderr).

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Output, TableOutput};
use crate::object::Object;
use crate::ops::inspect::{SandboxRow, ServiceStatus};
use crate::ops::reap::Reaped;
use crate::pipeline::checkout::{EntryKind, PruneReport};
use crate::pipeline::handover::Timings;
use crate::pipeline::plan::Plan;
use crate::table::Table;
use crate::text::format_size;

/// The `--timings` block: stages, then every step, then the critical path.
pub(super) fn timings(t: &Timings) -> String {
    let mut out = format!(
        "timings: total {:.2}s = prepare {:.2}s (checkout {:.2}s, values+render+plan {:.3}s) + deploy {:.2}s + smoke {:.2}s\n",
        t.total, t.prepare, t.checkout, t.values_render_plan, t.deploy, t.smoke
    );
    for (id, start, ready) in &t.steps {
        out.push_str(&format!(
            "  {id:<20} {start:>6.2}s → {ready:>6.2}s  ({:.2}s)\n",
            ready - start
        ));
    }
    let share = if t.deploy > 0.0 {
        100.0 * t.critical_path / t.deploy
    } else {
        0.0
    };
    out.push_str(&format!(
        "  critical path {:.2}s of deploy {:.2}s ({share:.0}%)",
        t.critical_path, t.deploy
    ));
    out
}

/// `render --output json`: the steps of the wanted services in dependency order, then smoke.
pub(super) fn plan_json(plan: &Plan, wanted: impl Fn(&str) -> bool) -> Result<String> {
    let steps: Vec<serde_json::Value> = plan
        .steps
        .iter()
        .filter(|s| wanted(&s.service))
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "service": s.service,
                "role": s.role.as_str(),
                "after": s.after.iter().map(|&i| plan.steps[i].id.clone()).collect::<Vec<_>>(),
                "objects": s.objects,
            })
        })
        .collect();
    let smoke: Vec<&serde_json::Value> = plan
        .smoke
        .iter()
        .filter(|(s, _)| wanted(s))
        .map(|(_, o)| o)
        .collect();
    let json = serde_json::json!({"namespace": plan.namespace, "steps": steps, "smoke": smoke});
    Ok(serde_json::to_string_pretty(&json)?)
}

/// `list`/`status` in the format `-o` asked for: the table (wide or not), its first column,
/// or the rows as JSON/YAML.
pub(super) fn table(table: &Table, rows: &impl Serialize, output: TableOutput) -> Result<()> {
    match output {
        TableOutput::Text => print!("{}", table.render(false)),
        TableOutput::Wide => print!("{}", table.render(true)),
        TableOutput::Name => print!("{}", table.names()),
        TableOutput::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        TableOutput::Yaml => print!("{}", serde_yaml_ng::to_string(rows)?),
    }
    Ok(())
}

/// `render -o name`: `kind/name` per object, as `kubectl get -o name` prints them.
pub(super) fn plan_names(plan: &Plan, wanted: impl Fn(&str) -> bool) -> String {
    plan.steps
        .iter()
        .filter(|s| wanted(&s.service))
        .flat_map(|s| s.objects.iter())
        .chain(plan.smoke.iter().filter(|(s, _)| wanted(s)).map(|(_, o)| o))
        .map(|o| format!("{}\n", o.object_ref().kind_name()))
        .collect()
}

/// `render`: every object of the wanted services as multi-document YAML.
pub(super) fn plan_yaml(plan: &Plan, wanted: impl Fn(&str) -> bool) -> Result<String> {
    let objects = plan
        .steps
        .iter()
        .filter(|s| wanted(&s.service))
        .flat_map(|s| s.objects.iter())
        .chain(plan.smoke.iter().filter(|(s, _)| wanted(s)).map(|(_, o)| o));
    let mut out = String::new();
    for object in objects {
        out.push_str(&format!("---\n{}", serde_yaml_ng::to_string(object)?));
    }
    Ok(out)
}

pub(super) fn reaped(rows: &[Reaped], output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(rows)?),
        Output::Text => {
            if rows.is_empty() {
                println!("no expired or idle sandboxes");
            }
            for r in rows {
                let when = match &r.idle_since {
                    Some(used) => format!("unused since {used}"),
                    None => format!("expired at {}", r.expired_at),
                };
                println!(
                    "{}: {} (branch {}, owner {}, {when})",
                    r.action, r.namespace, r.branch, r.owner
                );
            }
        }
    }
    Ok(())
}

/// `cache prune`: one line per entry removed (or that would be), then the total.
pub(super) fn pruned(report: &PruneReport, dry_run: bool, output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(report)?),
        Output::Text => pruned_text(report, dry_run),
    }
    Ok(())
}

fn pruned_text(report: &PruneReport, dry_run: bool) {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for entry in &report.pruned {
        let kind = match entry.kind {
            EntryKind::Mirror => "mirror",
            EntryKind::Tree => "tree",
        };
        println!(
            "{verb} {kind} {} ({}, unused for {})",
            entry.path.display(),
            format_size(entry.bytes),
            humantime::format_duration(entry.unused_for)
        );
    }
    for busy in &report.busy {
        println!("skipped {} (a checkout is using it)", busy.display());
    }
    println!(
        "{verb} {} entries, {}",
        report.pruned.len(),
        format_size(report.bytes())
    );
}

/// "3h", "2d", "-5m" (in the past).
pub(super) fn human_delta(from: jiff::Timestamp, to: jiff::Timestamp) -> String {
    let secs = to.duration_since(from).as_secs();
    let (sign, secs) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    let text = match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    };
    format!("{sign}{text}")
}

/// `list`'s table: `-o wide` adds the owner and each repo's commit.
pub(super) fn list_table(rows: &[SandboxRow]) -> Table {
    let now = jiff::Timestamp::now();
    let delta = |t: &str, ago: bool| {
        t.parse::<jiff::Timestamp>()
            .map(|t| {
                if ago {
                    human_delta(t, now)
                } else {
                    human_delta(now, t)
                }
            })
            .unwrap_or_default()
    };
    let mut table = Table::new(&[
        ("NAMESPACE", false),
        ("PRODUCT", false),
        ("BRANCH", false),
        ("STATUS", false),
        ("AGE", false),
        ("EXPIRES", false),
        ("URL", false),
        ("OWNER", true),
        ("REPOS", true),
    ]);
    for r in rows {
        let repos: Vec<String> = r.repos.iter().map(|(k, v)| format!("{k}@{v}")).collect();
        // `sleeping 2h`: since when.
        let status = match &r.sleeping_since {
            Some(since) if r.status == "sleeping" => format!("sleeping {}", delta(since, true)),
            _ => r.status.clone(),
        };
        table.row(vec![
            r.namespace.clone(),
            r.product.clone(),
            r.branch.clone(),
            status,
            delta(&r.created_at, true),
            delta(&r.expires_at, false),
            r.url.clone(),
            r.owner.clone(),
            repos.join(","),
        ]);
    }
    table
}

/// `status`'s table.
pub(super) fn status_table(rows: &[ServiceStatus]) -> Table {
    let mut table = Table::new(&[
        ("SERVICE", false),
        ("READY", false),
        ("RESTARTS", false),
        ("LAST EVENT", false),
    ]);
    for r in rows {
        table.row(vec![
            r.service.clone(),
            format!("{}/{}", r.ready, r.desired),
            r.restarts.to_string(),
            r.last_event.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_read_like_kubectl_ages() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        assert_eq!(human_delta(t0, at(42)), "42s");
        assert_eq!(human_delta(t0, at(3 * 60)), "3m");
        assert_eq!(human_delta(t0, at(5 * 3600)), "5h");
        assert_eq!(human_delta(t0, at(3 * 86400)), "3d");
        assert_eq!(human_delta(at(600), t0), "-10m");
    }
}

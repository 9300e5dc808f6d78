//! The periodic prune of the checkout cache (`--prune-cache-every`, hourly by default): what
//! `sandbox cache prune` does, so that a service exporting a tree per push does not fill its
//! volume. A failed prune is logged and tried again at the next tick.

use std::path::PathBuf;
use std::time::Duration;

use super::log::log;
use crate::kube::ClusterOptions;
use crate::ops::cache;

/// When and what to prune.
#[derive(Debug, Clone)]
pub(crate) struct PruneSchedule {
    pub(crate) cache_dir: PathBuf,
    pub(crate) cluster: ClusterOptions,
    /// Zero: never.
    pub(crate) every: Duration,
    pub(crate) older_than: Duration,
}

/// Start pruning in the background: now, then every `schedule.every`.
pub(crate) fn spawn(schedule: PruneSchedule) {
    if schedule.every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(schedule.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            prune_once(&schedule).await;
        }
    });
}

async fn prune_once(schedule: &PruneSchedule) {
    let live = match cache::live_commits(&schedule.cluster).await {
        Ok(live) => Some(live),
        Err(e) => {
            log!(
                Warn,
                "cache.prune_by_age",
                reason = format!("cannot list the live sandboxes: {e:#}")
            );
            None
        }
    };
    match cache::prune(&schedule.cache_dir, live, schedule.older_than, false).await {
        Ok(report) => log!(
            Info,
            "cache.pruned",
            entries = report.pruned.len(),
            bytes = report.bytes(),
            busy = report.busy.len()
        ),
        Err(e) => log!(Error, "cache.prune_failed", error = format!("{e:#}")),
    }
}

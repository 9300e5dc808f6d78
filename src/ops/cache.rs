//! `sandbox cache prune` (and `sandbox serve`'s periodic prune): the checkout cache as a whole.
//! The checkout stage owns the cache's layout and prunes it ([`checkout::prune`]); this adds
//! which commits live sandboxes run (their records on the cluster).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::kube::{self, ClusterOptions};
use crate::pipeline::checkout::{self, PruneError, PrunePolicy, PruneReport};
use crate::record;

/// The commits of every sandbox the tool labelled in the cluster `options` name, of any
/// product (one cache may serve several configs). An error means the cluster could not be
/// asked (unreachable, or listing refused): callers then prune by age alone.
pub(crate) async fn live_commits(options: &ClusterOptions) -> anyhow::Result<BTreeSet<String>> {
    let cluster = kube::connect(options).await?;
    let records = record::list(&cluster, None).await?;
    Ok(records
        .into_iter()
        .flat_map(|r| r.repos.into_values().map(|at| at.sha))
        .collect())
}

/// Prune the checkout cache under `cache_dir`: trees that none of `live` runs (after an hour's
/// grace), and mirrors unused for `older_than`. `live` is None when the cluster could not be
/// asked: then trees go by age alone, like mirrors.
pub(crate) async fn prune(
    cache_dir: &Path,
    live: Option<BTreeSet<String>>,
    older_than: Duration,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let dir = checkout::cache_under(cache_dir);
    let policy = PrunePolicy {
        live_commits: live,
        older_than,
        dry_run,
        now: SystemTime::now(),
    };
    tokio::task::spawn_blocking(move || checkout::prune(&dir, &policy))
        .await
        .expect("the prune task does not panic")
}

/// `sandbox cache prune`.
pub(crate) struct PruneRequest<'a> {
    pub(crate) cache_dir: &'a Path,
    /// Mirrors (and, without a cluster, trees) unused for longer go.
    pub(crate) older_than: Duration,
    /// Say what would go, delete nothing.
    pub(crate) dry_run: bool,
}

/// `sandbox cache prune`: trees no live sandbox of the cluster runs, and old mirrors. Without
/// a cluster that answers, trees go by age too (said as a warning).
pub(crate) async fn prune_cache(
    request: &PruneRequest<'_>,
    options: &ClusterOptions,
    reporter: &crate::progress::Reporter,
) -> Result<PruneReport, PruneError> {
    let live = match live_commits(options).await {
        Ok(live) => Some(live),
        Err(e) => {
            reporter.info(&format!(
                "warning: cannot ask the cluster which sandboxes are live ({e:#}); \
                 deleting trees unused for {} as well as mirrors",
                humantime::format_duration(request.older_than)
            ));
            None
        }
    };
    prune(request.cache_dir, live, request.older_than, request.dry_run).await
}

//! The checkout cache as a whole: what `sandbox cache prune` and `sandbox serve`'s periodic
//! prune do. The checkout stage owns the cache's layout and prunes it
//! ([`checkout::prune`]); this adds what only the connector knows: where the cache is under
//! the cache directory, and which commits live sandboxes run (their records on the cluster).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::kube::{self, ClusterOptions};
use crate::pipeline::checkout::{self, PruneError, PrunePolicy, PruneReport};
use crate::record;

/// Where checkouts keep their mirrors and trees under the cache directory.
pub(crate) fn checkout_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("git")
}

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
    let dir = checkout_dir(cache_dir);
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

//! `sandbox down`, the pipeline's inverse: take the sandbox's lock (so it never pulls the floor
//! from under an `up`), then delete its namespace — only if the tool made it — and wait.

use std::time::Duration;

use anyhow::Result;

use crate::kube::Cluster;
use crate::lock;
use crate::progress::Reporter;
use crate::record::{self, Deleted, Lookup};

/// How long a namespace may take to go.
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);

/// `sandbox down` of one sandbox of `product`. With `wait_for_lock` false, fail at once if an
/// `up` holds it.
pub(crate) async fn down(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
    wait_for_lock: bool,
    reporter: &Reporter,
) -> Result<()> {
    let live_and_ours = matches!(
        record::fetch(cluster, namespace, product).await?,
        Lookup::Ours(r) if !r.terminating
    );
    // Held until the namespace is gone. Its `lost()` is not watched: deleting the namespace
    // deletes the lease in it, and once the deletion is under way there is nothing to stop.
    let _lock = if live_and_ours {
        let holder = lock::holder_identity("down");
        Some(lock::acquire(cluster, namespace, &holder, wait_for_lock, reporter).await?)
    } else {
        None
    };
    delete(cluster, namespace, product, reporter).await
}

/// Delete a sandbox of `product` (no lock: the caller holds it or owns the run) and say so.
pub(crate) async fn delete(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
    reporter: &Reporter,
) -> Result<()> {
    match record::delete(cluster, namespace, product).await? {
        Deleted::WasAbsent => reporter.info(&format!(
            "sandbox `{namespace}` does not exist; nothing to do"
        )),
        Deleted::Deleting => {
            reporter.info(&format!("deleting `{namespace}`…"));
            record::wait_gone(cluster, namespace, DELETE_TIMEOUT).await?;
            reporter.info(&format!("sandbox `{namespace}` is gone"));
        }
    }
    Ok(())
}

//! `sandbox down`, the pipeline's inverse: take the sandbox's lock (so it never pulls the floor
//! from under an `up`), then delete its namespace — only if the tool made it — and wait.

use std::time::Duration;

use anyhow::Result;

use crate::kube::Cluster;
use crate::lock;
use crate::progress::Reporter;
use crate::record::{self, Deleted, Lookup};

/// How long a namespace may take to go, unless `down --timeout` says otherwise.
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);

/// How `down` waits: for another run's lock, and for the namespace to be gone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownOptions {
    /// `None`: as long as it takes; zero: fail at once if an `up` holds the lock.
    pub(crate) lock_timeout: Option<Duration>,
    pub(crate) timeout: Duration,
}

impl Default for DownOptions {
    fn default() -> Self {
        DownOptions {
            lock_timeout: None,
            timeout: DELETE_TIMEOUT,
        }
    }
}

/// `sandbox down` of one sandbox of `product`.
pub(crate) async fn down(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
    options: DownOptions,
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
        Some(lock::acquire(cluster, namespace, &holder, options.lock_timeout, reporter).await?)
    } else {
        None
    };
    delete_within(cluster, namespace, product, options.timeout, reporter).await
}

/// `sandbox down --dry-run`: print what `down` would delete, after the same checks (the
/// namespace is the tool's and `product`'s), and change nothing.
pub(crate) async fn down_dry_run(cluster: &Cluster, namespace: &str, product: &str) -> Result<()> {
    let lookup = record::fetch(cluster, namespace, product).await?;
    println!("{}", dry_run_line(namespace, product, lookup)?);
    Ok(())
}

/// What `down --dry-run` says about `namespace`, or why `down` would refuse it.
fn dry_run_line(
    namespace: &str,
    product: &str,
    lookup: Lookup,
) -> Result<String, record::RecordError> {
    Ok(match lookup {
        Lookup::Absent => format!("sandbox `{namespace}` does not exist; nothing would be deleted"),
        Lookup::Ours(r) if r.terminating => {
            format!("sandbox `{namespace}` is already being deleted; `down` would wait until it is gone")
        }
        Lookup::Ours(r) => format!(
            "would delete sandbox `{namespace}` (product {product}, branch {}, owner {})",
            r.branch, r.owner
        ),
        other => return Err(other.refusal(namespace, product).expect("not ours")),
    })
}

/// Delete a sandbox of `product` (no lock: the caller holds it or owns the run) and say so.
pub(crate) async fn delete(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
    reporter: &Reporter,
) -> Result<()> {
    delete_within(cluster, namespace, product, DELETE_TIMEOUT, reporter).await
}

/// [`delete`], waiting at most `timeout` for the namespace to be gone.
async fn delete_within(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
    timeout: Duration,
    reporter: &Reporter,
) -> Result<()> {
    match record::delete(cluster, namespace, product).await? {
        Deleted::WasAbsent => reporter.info(&format!(
            "sandbox `{namespace}` does not exist; nothing to do"
        )),
        Deleted::Deleting => {
            reporter.info(&format!("deleting `{namespace}`…"));
            record::wait_gone(cluster, namespace, timeout).await?;
            reporter.info(&format!("sandbox `{namespace}` is gone"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_names_what_it_would_delete_and_refuses_what_down_refuses() {
        let absent = dry_run_line("sb-x", "shop", Lookup::Absent).unwrap();
        assert_eq!(
            absent,
            "sandbox `sb-x` does not exist; nothing would be deleted"
        );
        assert!(matches!(
            dry_run_line("team-db", "shop", Lookup::NotOurs),
            Err(record::RecordError::NotOurs(ns)) if ns == "team-db"
        ));
        assert!(matches!(
            dry_run_line("sb-x", "shop", Lookup::OtherProduct(Some("blog".into()))),
            Err(record::RecordError::OtherProduct { .. })
        ));
    }
}

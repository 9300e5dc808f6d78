//! `--on-failure rollback`: put every object a failed `up` changed back to its last good
//! revision (or remove it when it has none), and wait until the restored workloads are ready.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::kube::Cluster;
use crate::object::{Object, ObjectRef};
use crate::ops::down;
use crate::pipeline::{apply, inventory, wait};
use crate::progress::Reporter;
use crate::record::{self, Status, Update};

pub(crate) async fn rollback(
    cluster: &Cluster,
    ns: &str,
    product: &str,
    created_now: bool,
    changed: &[ObjectRef],
    timeout: Duration,
    reporter: &Reporter,
) -> Result<()> {
    if created_now {
        reporter.info(&format!(
            "--on-failure rollback: `{ns}` did not exist before; deleting it"
        ));
        return down::delete(cluster, ns, product, reporter).await;
    }
    // Read first: an unreadable revision, or one that is not what the tool wrote, stops the
    // rollback before anything is deleted.
    let recorded = record::last_good_digest(cluster, ns).await?;
    let last_good = inventory::load_last_good(cluster, ns, recorded.as_deref()).await?;
    reporter.info(&format!(
        "--on-failure rollback: restoring {} objects of `{ns}`",
        changed.len()
    ));
    let mut restored = Vec::new();
    for key in changed {
        match last_good.get(key) {
            Some(object) => {
                apply::apply_object(cluster, ns, object).await?;
                restored.push(object);
            }
            None => {
                inventory::delete(cluster, ns, [key]).await?;
            }
        }
    }
    let waits = restored
        .iter()
        .map(|o| wait::until_ready(&cluster.client, ns, o.kind(), o.name(), timeout));
    futures::future::try_join_all(waits)
        .await
        .context("the restored revision did not become ready")?;
    record::update(cluster, ns, Update::status(Status::Ready)).await?;
    Ok(())
}

//! `sandbox down`, the pipeline's inverse: take the sandbox's lock (so it never pulls the floor
//! from under an `up`), then delete its namespace — only if the tool made it — and wait.

use std::time::Duration;

use anyhow::Result;

use crate::access::Access;
use crate::kube::{Cluster, ClusterOptions};
use crate::lock;
use crate::pipeline::config::Config;
use crate::progress::Reporter;
use crate::record::{self, Deleted, Lookup, SandboxRecord};

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

/// `down` of the product's sandbox of a branch.
pub(crate) struct DownRequest<'a> {
    pub(crate) config: &'a Config,
    pub(crate) branch: &'a str,
    /// Say what would be deleted (after the same checks), delete nothing.
    pub(crate) dry_run: bool,
    pub(crate) options: DownOptions,
    pub(crate) asked_by: AskedBy,
}

/// Who asks for a `down`, which decides what it may delete.
pub(crate) enum AskedBy {
    /// A person (`sandbox down`): any sandbox of the product.
    User,
    /// The previews (`sandbox serve`, a pull request closed): only a sandbox they made. Their
    /// accounts are granted access first (`access`), as a sandbox made by an older serve may
    /// lack the binding serve needs to take its lock.
    Previews { access: Option<Access> },
}

/// What a `down` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Downed {
    /// Deleted and gone (or it was not there).
    Deleted { namespace: String },
    /// Left alone, and why: not the previews' to delete.
    Kept { reason: String },
    /// `--dry-run`: what `down` would do.
    WouldDelete { line: String },
}

/// `sandbox down`: delete the product's sandbox of a branch, under its lock.
pub(crate) async fn down(
    request: &DownRequest<'_>,
    cluster: &ClusterOptions,
    reporter: &Reporter,
) -> Result<Downed> {
    let DownRequest { config, branch, .. } = request;
    let purpose = match request.asked_by {
        AskedBy::User => "cannot delete sandboxes",
        AskedBy::Previews { .. } => "cannot delete the sandbox",
    };
    let (cluster, namespace) = super::locate(cluster, config, branch, purpose).await?;
    let product = &config.name;
    reporter.info(&format!("`{namespace}` on {}", cluster.describe()));
    if request.dry_run {
        let lookup = record::fetch(&cluster, &namespace, product).await?;
        let line = dry_run_line(&namespace, product, lookup)?;
        return Ok(Downed::WouldDelete { line });
    }
    if let AskedBy::Previews { access } = &request.asked_by {
        if let Lookup::Ours(found) = record::fetch(&cluster, &namespace, product).await? {
            if let Some(reason) = not_the_previews(&found) {
                return Ok(Downed::Kept { reason });
            }
            if let Some(access) = access {
                crate::access::grant(&cluster, &namespace, access).await?;
            }
        }
    }
    down_namespace(&cluster, &namespace, product, request.options, reporter).await?;
    Ok(Downed::Deleted { namespace })
}

/// Why the previews must leave a sandbox alone when its pull requests close, if they must:
/// they delete only what they made.
pub(crate) fn not_the_previews(sandbox: &SandboxRecord) -> Option<String> {
    if sandbox.terminating || sandbox.made_by_serve() {
        return None;
    }
    Some(match sandbox.made_by.as_deref() {
        Some(record::MADE_BY_UP) => format!(
            "`{}` was made by `sandbox up`, not by the previews: serve never deletes it (`sandbox down` does)",
            sandbox.namespace
        ),
        Some(other) => format!(
            "`{}` was made by `{other}`, not by the previews: serve never deletes it",
            sandbox.namespace
        ),
        None => format!(
            "`{}` does not record that the previews made it (made by hand, or by an older serve): serve leaves it to `sandbox down` or its expiry",
            sandbox.namespace
        ),
    })
}

/// Take the lock of one sandbox of `product` and delete it.
async fn down_namespace(
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

/// What `down --dry-run` says about `namespace` (after the same checks: the namespace is the
/// tool's and `product`'s), or why `down` would refuse it.
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

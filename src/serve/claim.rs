//! A claim on one preview's work: one worker per preview across every replica. In the cluster
//! a claim is a Lease beside the preview's state ([`crate::lock`]): taken without waiting (a
//! branch another replica works on is looked at again later), renewed while held, lost when it
//! could not be renewed, and taken over by the next worker once a dead holder's has expired.

use std::future::Future;

use crate::kube::Cluster;
use crate::lock::{self, LockError, SandboxLock};
use crate::progress::Reporter;

/// A held claim on a preview's work: one worker per preview across all replicas.
pub(crate) trait Claim: Send + 'static {
    /// Resolves (with why) if the claim was lost: the work under it must stop.
    fn lost(&self) -> impl Future<Output = String> + Send;
    fn release(self) -> impl Future<Output = ()> + Send;
}

/// A claim held as a Lease (see [`crate::lock`]).
pub(crate) struct LeaseClaim(SandboxLock);

impl LeaseClaim {
    /// The Lease `name` in `namespace`, taken as `holder` if it is free (or its holder's has
    /// expired); `None` while someone else holds it.
    pub(crate) async fn take(
        cluster: &Cluster,
        namespace: &str,
        name: &str,
        holder: &str,
    ) -> Result<Option<LeaseClaim>, LockError> {
        let taken = lock::acquire_named(
            cluster,
            namespace,
            name,
            holder,
            Some(std::time::Duration::ZERO),
            &Reporter::new(true),
        )
        .await;
        match taken {
            Ok(lock) => Ok(Some(LeaseClaim(lock))),
            Err(LockError::Held { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Claim for LeaseClaim {
    async fn lost(&self) -> String {
        self.0.lost().await.to_string()
    }

    async fn release(self) {
        self.0.release().await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A claim in memory (the test store's): held while the guard lives, never lost.
    pub(crate) struct LocalClaim(
        #[allow(dead_code)] // held, never read: the claim lasts as long as the guard
        pub(crate)  tokio::sync::OwnedMutexGuard<()>,
    );

    impl Claim for LocalClaim {
        async fn lost(&self) -> String {
            std::future::pending().await
        }

        async fn release(self) {}
    }
}

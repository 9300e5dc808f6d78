//! One `up` or `down` at a time per sandbox: a `coordination.k8s.io` Lease in the sandbox's
//! namespace. The holder renews it while it works; a crashed holder stops renewing and the
//! lease expires, so nobody waits forever.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::Api;

use crate::error::Hint;
use crate::kube::{status_code, Cluster};
use crate::progress::Reporter;
use crate::record::{MANAGED_BY, MANAGED_BY_VALUE};

pub(crate) const LEASE_NAME: &str = "sandbox-lock";
/// How long a lease holds without renewal.
const LEASE_SECONDS: i32 = 20;
const RENEW_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Someone else holds the lock and `--no-wait` was given.
    #[error("sandbox `{namespace}` is locked by {holder} (since {since})")]
    Held {
        namespace: String,
        holder: String,
        since: String,
    },
    #[error("could not take the lock of sandbox `{namespace}`")]
    Api {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

impl Hint for LockError {
    fn hint(&self) -> Option<String> {
        match self {
            LockError::Held { .. } => Some(
                "another `sandbox up` or `down` is working on this sandbox; wait for it (drop --no-wait), or if it crashed the lock expires within 20 s".into(),
            ),
            LockError::Api { .. } => None,
        }
    }
}

/// A held lock. Release it with [`SandboxLock::release`]; if it is dropped instead (a cancelled
/// task, Ctrl-C), it is released on the way out as well as a dropped future allows.
pub(crate) struct SandboxLock {
    api: Api<Lease>,
    uid: String,
    renew: tokio::task::JoinHandle<()>,
    released: bool,
}

/// Who we are, for the lease and for the message of whoever waits.
pub(crate) fn holder_identity(owner: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{owner}@{} (pid {})", host.trim(), std::process::id())
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    if spec.holder_identity.as_deref().unwrap_or("").is_empty() {
        return true;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    match &spec.renew_time {
        Some(t) => t.0 + jiff::SignedDuration::from_secs(duration) < jiff::Timestamp::now(),
        None => true,
    }
}

fn our_lease(namespace: &str, holder: &str, existing: Option<&Lease>) -> Lease {
    let mut lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": LEASE_NAME, "namespace": namespace, "labels": {MANAGED_BY: MANAGED_BY_VALUE}},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": LEASE_SECONDS},
    }))
    .expect("a valid Lease");
    let spec = lease.spec.as_mut().expect("has spec");
    spec.acquire_time = Some(now());
    spec.renew_time = Some(now());
    if let Some(old) = existing {
        lease.metadata.resource_version = old.metadata.resource_version.clone();
        spec.lease_transitions = Some(
            old.spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0)
                + 1,
        );
    }
    lease
}

/// Take the sandbox's lock, waiting for another holder unless `wait` is false.
pub(crate) async fn acquire(
    cluster: &Cluster,
    namespace: &str,
    holder: &str,
    wait: bool,
    reporter: &Reporter,
) -> Result<SandboxLock, LockError> {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), namespace);
    let api_err = |source| LockError::Api {
        namespace: namespace.into(),
        source,
    };
    let mut told = false;
    loop {
        let existing = api.get_opt(LEASE_NAME).await.map_err(api_err)?;
        let attempt = match &existing {
            None => {
                api.create(&PostParams::default(), &our_lease(namespace, holder, None))
                    .await
            }
            Some(lease) if expired(lease) => {
                api.replace(
                    LEASE_NAME,
                    &PostParams::default(),
                    &our_lease(namespace, holder, Some(lease)),
                )
                .await
            }
            Some(lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let other = spec.holder_identity.unwrap_or_default();
                let since = spec
                    .acquire_time
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                if !wait {
                    return Err(LockError::Held {
                        namespace: namespace.into(),
                        holder: other,
                        since,
                    });
                }
                if !told {
                    reporter.info(&format!(
                        "waiting for the lock of `{namespace}`: held by {other} since {since}"
                    ));
                    told = true;
                }
                wait_for_change(&api, lease).await;
                continue;
            }
        };
        match attempt {
            Ok(lease) => {
                let uid = lease.metadata.uid.clone().unwrap_or_default();
                let renew = tokio::spawn(renew(api.clone(), holder.to_owned()));
                return Ok(SandboxLock {
                    api,
                    uid,
                    renew,
                    released: false,
                });
            }
            // Someone else was faster; look again.
            Err(e) if matches!(status_code(&e), Some(409)) => continue,
            Err(e) => return Err(api_err(e)),
        }
    }
}

/// Until the lease changes (released, taken over) or its holder's time is up.
async fn wait_for_change(api: &Api<Lease>, lease: &Lease) {
    let spec = lease.spec.clone().unwrap_or_default();
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    let expiry = spec
        .renew_time
        .map(|t| t.0 + jiff::SignedDuration::from_secs(duration))
        .unwrap_or_else(jiff::Timestamp::now);
    let until_expiry = expiry
        .duration_since(jiff::Timestamp::now())
        .unsigned_abs()
        .min(Duration::from_secs(60))
        + Duration::from_millis(100);
    let version = lease.metadata.resource_version.clone();
    let watch = watcher(
        api.clone(),
        watcher::Config::default().fields(&format!("metadata.name={LEASE_NAME}")),
    );
    let changed = async {
        let mut watch = std::pin::pin!(watch);
        while let Some(event) = watch.next().await {
            match event {
                Ok(watcher::Event::Delete(_)) => return,
                Ok(watcher::Event::Apply(l)) | Ok(watcher::Event::InitApply(l))
                    if l.metadata.resource_version != version =>
                {
                    return
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    tokio::select! {
        _ = changed => {}
        _ = tokio::time::sleep(until_expiry) => {}
    }
}

async fn renew(api: Api<Lease>, holder: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Ok(Some(mut lease)) = api.get_opt(LEASE_NAME).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(holder.as_str()) {
            return;
        }
        spec.renew_time = Some(now());
        if api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
            .is_err()
        {
            return;
        }
    }
}

impl SandboxLock {
    /// Give the lock back.
    pub(crate) async fn release(mut self) {
        self.renew.abort();
        self.released = true;
        delete(self.api.clone(), self.uid.clone()).await;
    }
}

async fn delete(api: Api<Lease>, uid: String) {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    let _ = api.delete(LEASE_NAME, &params).await;
}

impl Drop for SandboxLock {
    fn drop(&mut self) {
        self.renew.abort();
        if self.released {
            return;
        }
        // A dropped holder (cancelled task, Ctrl-C) gives the lock back on the way out; where
        // that is impossible the lease simply expires.
        let release = delete(self.api.clone(), self.uid.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                tokio::task::block_in_place(|| handle.block_on(release));
            } else {
                handle.spawn(release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
        let mut l = our_lease("ns", holder, None);
        let spec = l.spec.as_mut().unwrap();
        spec.renew_time = Some(MicroTime(
            jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago),
        ));
        l
    }

    #[test]
    fn a_lease_expires_after_its_duration_without_renewal() {
        assert!(!expired(&lease("me", 1)));
        assert!(expired(&lease("me", 60)));
        assert!(expired(&lease("", 1)), "an empty holder is free");
    }
}

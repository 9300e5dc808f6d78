//! Where the previews' desired states ([`super::desired`]) are kept: in the cluster, one
//! ConfigMap per preview in serve's own namespace (`--state-namespace`), labelled as the tool's
//! and holding [`Desired`] as JSON; the claims on their work ([`super::claim`]) are Leases
//! beside them.
//!
//! Every write is a compare-and-swap at the resourceVersion read ([`update`]): two replicas that
//! take the same delivery at once cannot both record it (the second sees its id and stops), and
//! no accepted change is lost to a concurrent write (the loser reads again and reapplies).
//!
//! Why a ConfigMap: it needs no CRD to install (serve keeps working with a Role in its own
//! namespace), and its watch is what every replica follows. Why per branch: the unit of work is
//! a sandbox, and so is the unit of conflict.

use std::future::Future;

use anyhow::{Context, Result};
use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use super::claim::{Claim, LeaseClaim};
use super::desired::{accept, Accepted, Delivered, Desired};
use super::log::log;
use super::queue::Work;
use crate::kube::{status_code, Cluster};
use crate::lock;
use crate::record::{self, MANAGED_BY, MANAGED_BY_VALUE, PRODUCT_LABEL, ROLE_LABEL};

/// How often a write is tried again after losing a race with another writer.
const MAX_CONFLICTS: usize = 20;
/// The key of the JSON in the ConfigMap.
const DATA_KEY: &str = "state.json";
/// `sandbox.dev/role` of the state objects.
pub(crate) const STATE_ROLE: &str = "preview-state";

/// A state as read, with the version a write must name.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    pub(crate) state: Desired,
    pub(crate) version: String,
}

/// Whether a compare-and-swap write went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saved {
    Saved,
    /// Someone wrote since the read (or created it first): read again.
    Conflict,
}

/// Where the states live: the cluster, or memory in tests.
pub(crate) trait Store: Send + Sync + 'static {
    type Claim: Claim;
    fn load(&self, branch: &str) -> impl Future<Output = Result<Option<Versioned>>> + Send;
    /// Create (`version` None) or replace at `version`.
    fn save(
        &self,
        state: &Desired,
        version: Option<&str>,
    ) -> impl Future<Output = Result<Saved>> + Send;
    fn list(&self) -> impl Future<Output = Result<Vec<Versioned>>> + Send;
    /// Delete the state if it is still at `version`.
    fn forget(&self, branch: &str, version: &str) -> impl Future<Output = Result<()>> + Send;
    /// Every state as it changes (by any replica), from now on.
    fn changes(&self) -> BoxStream<'static, Desired>;
    /// Claim the preview's work; `None` while another worker holds it. A holder that died is
    /// taken over once its claim has expired.
    fn claim(&self, branch: &str) -> impl Future<Output = Result<Option<Self::Claim>>> + Send;
}

/// Read, change with `change`, write at the version read; again on a conflict. `change` returns
/// false to write nothing. Returns the state written (or read, when nothing was written).
pub(crate) async fn update<S: Store>(
    store: &S,
    branch: &str,
    mut change: impl FnMut(Option<&Desired>) -> Option<Desired>,
) -> Result<Option<Desired>> {
    for _ in 0..MAX_CONFLICTS {
        let current = store.load(branch).await?;
        let Some(next) = change(current.as_ref().map(|c| &c.state)) else {
            return Ok(current.map(|c| c.state));
        };
        let version = current.as_ref().map(|c| c.version.as_str());
        if store.save(&next, version).await? == Saved::Saved {
            return Ok(Some(next));
        }
    }
    anyhow::bail!(
        "the state of branch `{branch}` kept changing while it was written ({MAX_CONFLICTS} conflicts)"
    )
}

/// Record `work` (from `delivery`): the one way work enters the state.
pub(crate) async fn record<S: Store>(
    store: &S,
    work: &Work,
    delivery: Option<&Delivered>,
) -> Result<(Accepted, Option<Desired>)> {
    let mut accepted = Accepted::Unchanged;
    let written = update(store, &work.branch, |current| {
        let (outcome, next) = accept(current, work, delivery);
        accepted = outcome;
        next
    })
    .await?;
    Ok((accepted, written))
}

/// The states as ConfigMaps in serve's namespace, claims as Leases beside them.
pub(crate) struct ConfigMapStore {
    cluster: Cluster,
    namespace: String,
    product: String,
    holder: String,
}

impl ConfigMapStore {
    /// The store in `namespace`, which is created when missing.
    pub(crate) async fn open(
        cluster: Cluster,
        namespace: &str,
        product: &str,
    ) -> Result<ConfigMapStore> {
        ensure_namespace(&cluster, namespace).await?;
        Ok(ConfigMapStore {
            cluster,
            namespace: namespace.to_owned(),
            product: product.to_owned(),
            holder: lock::holder_identity("serve"),
        })
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.cluster.client.clone(), &self.namespace)
    }

    /// The object's name: product and branch, hashed into a valid name (never two branches on
    /// one object).
    fn name_of(&self, branch: &str) -> String {
        record::namespace_for("preview-", &format!("{}/{branch}", self.product))
    }

    fn selector(&self) -> String {
        format!(
            "{MANAGED_BY}={MANAGED_BY_VALUE},{ROLE_LABEL}={STATE_ROLE},{PRODUCT_LABEL}={}",
            self.product
        )
    }

    fn object(&self, state: &Desired, version: Option<&str>) -> ConfigMap {
        let json = serde_json::to_string(state).expect("serializable");
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": self.name_of(&state.branch),
                "namespace": self.namespace,
                "resourceVersion": version,
                "labels": {MANAGED_BY: MANAGED_BY_VALUE, ROLE_LABEL: STATE_ROLE, PRODUCT_LABEL: self.product},
                "annotations": {"sandbox.dev/branch": state.branch},
            },
            "data": {DATA_KEY: json},
        }))
        .expect("a valid ConfigMap")
    }
}

/// The state in a ConfigMap, if it is one of ours and readable.
fn state_of(cm: &ConfigMap) -> Option<Versioned> {
    if !record::is_managed(&cm.metadata) {
        return None;
    }
    let json = cm.data.as_ref()?.get(DATA_KEY)?;
    let state = match serde_json::from_str(json) {
        Ok(state) => state,
        Err(e) => {
            log!(
                Warn,
                "state.unreadable",
                object = cm.metadata.name.clone().unwrap_or_default(),
                error = e
            );
            return None;
        }
    };
    Some(Versioned {
        state,
        version: cm.metadata.resource_version.clone().unwrap_or_default(),
    })
}

/// Make serve's namespace if it is missing (with a clear error if that is not allowed).
async fn ensure_namespace(cluster: &Cluster, namespace: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let hint = "create it (`kubectl create namespace NAME`), or name another with --state-namespace (default: $POD_NAMESPACE, else sandbox-system)";
    match api.get_opt(namespace).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        // Not allowed to look at namespaces: find out by using it.
        Err(e) if status_code(&e) == Some(403) => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("could not read serve's state namespace `{namespace}`"))
        }
    }
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
            .expect("a valid Namespace");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {
            log!(Info, "state.namespace_created", namespace = namespace);
            Ok(())
        }
        Err(e) if status_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(e).with_context(|| {
            format!("serve's state namespace `{namespace}` does not exist and could not be created; {hint}")
        }),
    }
}

impl Store for ConfigMapStore {
    type Claim = LeaseClaim;

    async fn load(&self, branch: &str) -> Result<Option<Versioned>> {
        let name = self.name_of(branch);
        let cm =
            self.api().get_opt(&name).await.with_context(|| {
                format!("could not read the state of branch `{branch}` ({name})")
            })?;
        match cm {
            None => Ok(None),
            Some(cm) => match state_of(&cm) {
                Some(v) if v.state.branch == branch => Ok(Some(v)),
                _ => anyhow::bail!(
                    "ConfigMap `{}/{name}` is not a preview state of branch `{branch}` made by sandbox; delete or rename it",
                    self.namespace
                ),
            },
        }
    }

    async fn save(&self, state: &Desired, version: Option<&str>) -> Result<Saved> {
        let object = self.object(state, version);
        let name = self.name_of(&state.branch);
        let written = match version {
            None => self.api().create(&PostParams::default(), &object).await,
            Some(_) => {
                self.api()
                    .replace(&name, &PostParams::default(), &object)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(Saved::Saved),
            Err(e) if status_code(&e) == Some(409) => Ok(Saved::Conflict),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "could not write the state of branch `{}` ({name})",
                    state.branch
                )
            }),
        }
    }

    async fn list(&self) -> Result<Vec<Versioned>> {
        let list = self
            .api()
            .list(&ListParams::default().labels(&self.selector()))
            .await
            .context("could not list the previews' states")?;
        Ok(list.items.iter().filter_map(state_of).collect())
    }

    async fn forget(&self, branch: &str, version: &str) -> Result<()> {
        let name = self.name_of(branch);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: None,
                resource_version: Some(version.to_owned()),
            }),
            ..DeleteParams::default()
        };
        match self.api().delete(&name, &params).await {
            // Gone already, or written since: nothing to forget now.
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("could not delete the state of `{branch}`")),
            Ok(_) => Ok(()),
        }
    }

    fn changes(&self) -> BoxStream<'static, Desired> {
        let config = watcher::Config::default().labels(&self.selector());
        watcher(self.api(), config)
            .default_backoff()
            .filter_map(|event| async move {
                match event {
                    Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                        state_of(&cm).map(|v| v.state)
                    }
                    Ok(_) => None,
                    Err(e) => {
                        log!(Warn, "state.watch_failed", error = e);
                        None
                    }
                }
            })
            .boxed()
    }

    async fn claim(&self, branch: &str) -> Result<Option<LeaseClaim>> {
        let name = self.name_of(branch);
        LeaseClaim::take(&self.cluster, &self.namespace, &name, &self.holder)
            .await
            .with_context(|| format!("could not claim the work of branch `{branch}`"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::super::claim::tests::LocalClaim;
    use super::super::desired::tests::{d, pr};
    use super::super::queue::Action;
    use super::*;

    /// The states in memory, for tests: the same compare-and-swap and claims, in one process.
    #[derive(Default)]
    pub(crate) struct MemoryStore {
        states: Mutex<HashMap<String, (Desired, u64)>>,
        claims: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
        changes: Mutex<Vec<futures::channel::mpsc::UnboundedSender<Desired>>>,
    }

    impl Store for MemoryStore {
        type Claim = LocalClaim;

        async fn load(&self, branch: &str) -> Result<Option<Versioned>> {
            let states = self.states.lock().expect("not poisoned");
            Ok(states.get(branch).map(|(state, version)| Versioned {
                state: state.clone(),
                version: version.to_string(),
            }))
        }

        async fn save(&self, state: &Desired, version: Option<&str>) -> Result<Saved> {
            {
                let mut states = self.states.lock().expect("not poisoned");
                let now = states.get(&state.branch).map(|(_, v)| v.to_string());
                if now.as_deref() != version {
                    return Ok(Saved::Conflict);
                }
                let next = now.map_or(1, |v| v.parse::<u64>().unwrap_or(0) + 1);
                states.insert(state.branch.clone(), (state.clone(), next));
            }
            self.changes
                .lock()
                .expect("not poisoned")
                .retain(|tx| tx.unbounded_send(state.clone()).is_ok());
            Ok(Saved::Saved)
        }

        async fn list(&self) -> Result<Vec<Versioned>> {
            let states = self.states.lock().expect("not poisoned");
            Ok(states
                .values()
                .map(|(state, version)| Versioned {
                    state: state.clone(),
                    version: version.to_string(),
                })
                .collect())
        }

        async fn forget(&self, branch: &str, version: &str) -> Result<()> {
            let mut states = self.states.lock().expect("not poisoned");
            if states
                .get(branch)
                .is_some_and(|(_, v)| v.to_string() == version)
            {
                states.remove(branch);
            }
            Ok(())
        }

        fn changes(&self) -> BoxStream<'static, Desired> {
            let (tx, rx) = futures::channel::mpsc::unbounded();
            self.changes.lock().expect("not poisoned").push(tx);
            rx.boxed()
        }

        async fn claim(&self, branch: &str) -> Result<Option<LocalClaim>> {
            let mutex = self
                .claims
                .lock()
                .expect("not poisoned")
                .entry(branch.to_owned())
                .or_default()
                .clone();
            Ok(mutex.try_lock_owned().ok().map(LocalClaim))
        }
    }

    #[tokio::test]
    async fn concurrent_writers_lose_nothing_and_take_a_delivery_once() {
        let store = Arc::new(MemoryStore::default());
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let w = Work {
                    branch: "feat".into(),
                    action: Action::Deploy,
                    prs: vec![pr("o/b", i, "s")],
                };
                // Every delivery twice, as two replicas would get it.
                let a = record(&*store, &w, Some(&d(&format!("d-{i}"))))
                    .await
                    .unwrap();
                let b = record(&*store, &w, Some(&d(&format!("d-{i}"))))
                    .await
                    .unwrap();
                (a.0, b.0)
            }));
        }
        let mut pending = 0;
        for t in tasks {
            let (a, b) = t.await.unwrap();
            assert!(matches!(a, Accepted::Pending { .. }), "{a:?}");
            assert_eq!(b, Accepted::Duplicate);
            pending += 1;
        }
        let state = store.load("feat").await.unwrap().unwrap().state;
        assert_eq!(state.generation, pending);
        assert_eq!(state.prs.len(), 20, "no PR lost to a concurrent write");
    }

    #[tokio::test]
    async fn a_write_at_an_old_version_conflicts() {
        let store = MemoryStore::default();
        let state = Desired {
            branch: "feat".into(),
            ..Desired::default()
        };
        assert_eq!(store.save(&state, None).await.unwrap(), Saved::Saved);
        assert_eq!(store.save(&state, None).await.unwrap(), Saved::Conflict);
        let v = store.load("feat").await.unwrap().unwrap().version;
        assert_eq!(store.save(&state, Some(&v)).await.unwrap(), Saved::Saved);
        assert_eq!(store.save(&state, Some(&v)).await.unwrap(), Saved::Conflict);
    }
}

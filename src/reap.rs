//! Expiry: which sandboxes have outlived their TTL, `sandbox reap` that deletes them, and the
//! manifests that run the reaper in the cluster on a schedule. Only namespaces carrying the
//! tool's label are ever looked at — the label selector is applied by the API server, and
//! checked again here.

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams};
use kube::Api;
use serde::Serialize;

use crate::kube::Cluster;
use crate::lock::{self, LockError};
use crate::pipeline::plan::{ANNOTATION_PREFIX, MANAGED_BY, MANAGED_BY_VALUE};
use crate::progress::Reporter;

/// Whether a namespace carries the tool's label.
pub fn is_ours(ns: &Namespace) -> bool {
    crate::pipeline::plan::is_managed(&ns.metadata)
}

pub fn annotation<'n>(ns: &'n Namespace, key: &str) -> Option<&'n str> {
    ns.metadata
        .annotations
        .as_ref()?
        .get(&format!("{ANNOTATION_PREFIX}{key}"))
        .map(String::as_str)
}

/// When a sandbox expires, if it says.
pub fn expiry(ns: &Namespace) -> Option<jiff::Timestamp> {
    annotation(ns, "expires-at")?.parse().ok()
}

/// Every namespace the tool manages (one LIST, filtered by label on the server).
pub async fn sandboxes(cluster: &Cluster) -> Result<Vec<Namespace>> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("{MANAGED_BY}={MANAGED_BY_VALUE}")))
        .await
        .context("could not list the sandboxes' namespaces")?;
    Ok(list.items.into_iter().filter(is_ours).collect())
}

/// One line of what `reap` did.
#[derive(Debug, Clone, Serialize)]
pub struct Reaped {
    pub namespace: String,
    pub branch: String,
    pub owner: String,
    pub expired_at: String,
    /// `deleted`, `would delete`, `skipped: …`
    pub action: String,
}

/// Delete (or with `dry_run` only list) every expired sandbox. A sandbox whose lock is held by
/// a running `up` is skipped; the next run takes it.
pub async fn reap(cluster: &Cluster, dry_run: bool) -> Result<Vec<Reaped>> {
    let now = jiff::Timestamp::now();
    let expired: Vec<(Namespace, jiff::Timestamp)> = sandboxes(cluster)
        .await?
        .into_iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .filter_map(|ns| {
            let at = expiry(&ns)?;
            (at < now).then_some((ns, at))
        })
        .collect();
    let holder = lock::holder_identity("reaper");
    let work = expired.into_iter().map(|(ns, at)| {
        let holder = holder.clone();
        async move {
            let name = ns.metadata.name.clone().unwrap_or_default();
            let mut row = Reaped {
                namespace: name.clone(),
                branch: annotation(&ns, "branch").unwrap_or_default().to_owned(),
                owner: annotation(&ns, "owner").unwrap_or_default().to_owned(),
                expired_at: at.to_string(),
                action: String::new(),
            };
            row.action = if dry_run {
                "would delete".into()
            } else {
                match delete_expired(cluster, &name, &holder).await {
                    Ok(()) => "deleted".into(),
                    Err(e) => format!("skipped: {e:#}"),
                }
            };
            row
        }
    });
    // Deletions are independent; a few at a time keeps the API server comfortable.
    let mut rows: Vec<Reaped> = futures::stream::iter(work)
        .buffer_unordered(16)
        .collect()
        .await;
    rows.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    Ok(rows)
}

async fn delete_expired(cluster: &Cluster, name: &str, holder: &str) -> Result<()> {
    let quiet = Reporter::new(true);
    let held = lock::acquire(cluster, name, holder, false, &quiet).await;
    let _lock = match held {
        Ok(lock) => lock,
        Err(LockError::Held { holder, .. }) => anyhow::bail!("in use by {holder}"),
        Err(e) => return Err(e.into()),
    };
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    // Look again under the lock: an `up` may have extended it meanwhile.
    let ns = api
        .get(name)
        .await
        .context("could not read the namespace")?;
    if !is_ours(&ns) || expiry(&ns).is_none_or(|at| at >= jiff::Timestamp::now()) {
        anyhow::bail!("no longer expired");
    }
    api.delete(name, &DeleteParams::background())
        .await
        .context("could not delete the namespace")?;
    Ok(())
}

/// The manifests that run `sandbox reap` on a schedule: a ServiceAccount with only the rights
/// reaping needs, and a CronJob.
pub fn reaper_manifests(
    image: &str,
    schedule: &str,
    namespace: &str,
    cronjob_api_version: &str,
) -> String {
    format!(
        r#"# `sandbox reap` on a schedule. The reaper lists namespaces by the tool's label, takes each
# expired sandbox's lock (so an `up` in progress is never reaped from under it) and deletes it.
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: sandbox-reaper
  namespace: {namespace}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: sandbox-reaper
rules:
  # Find the sandboxes (by label) and delete the expired ones.
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [list, get, delete]
  # The lock of each sandbox is a Lease in its namespace.
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, create, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: sandbox-reaper
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: sandbox-reaper
subjects:
  - kind: ServiceAccount
    name: sandbox-reaper
    namespace: {namespace}
---
apiVersion: {cronjob_api_version}
kind: CronJob
metadata:
  name: sandbox-reaper
  namespace: {namespace}
spec:
  schedule: "{schedule}"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 3
  jobTemplate:
    spec:
      backoffLimit: 1
      template:
        spec:
          serviceAccountName: sandbox-reaper
          restartPolicy: Never
          containers:
            - name: reap
              image: {image}
              imagePullPolicy: IfNotPresent
              args: ["reap"]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(labels: serde_json::Value, annotations: serde_json::Value) -> Namespace {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "x", "labels": labels, "annotations": annotations}})).unwrap()
    }

    #[test]
    fn only_labelled_namespaces_are_ours() {
        assert!(is_ours(&ns(
            serde_json::json!({MANAGED_BY: "sandbox"}),
            serde_json::json!({})
        )));
        assert!(!is_ours(&ns(
            serde_json::json!({MANAGED_BY: "helm"}),
            serde_json::json!({})
        )));
        assert!(!is_ours(&ns(
            serde_json::json!({}),
            serde_json::json!({"sandbox.dev/expires-at": "2000-01-01T00:00:00Z"})
        )));
    }

    #[test]
    fn expiry_is_read_from_the_annotation() {
        let n = ns(
            serde_json::json!({}),
            serde_json::json!({"sandbox.dev/expires-at": "2000-01-01T00:00:00Z"}),
        );
        assert_eq!(expiry(&n).unwrap().to_string(), "2000-01-01T00:00:00Z");
        assert!(expiry(&ns(
            serde_json::json!({}),
            serde_json::json!({"sandbox.dev/expires-at": "soon"})
        ))
        .is_none());
    }

    #[test]
    fn reaper_manifests_parse_and_grant_little() {
        let text = reaper_manifests("img:1", "*/5 * * * *", "ops", "batch/v1beta1");
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "CronJob"
            ]
        );
        let rules = docs[2]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        for rule in rules {
            for field in ["apiGroups", "resources", "verbs"] {
                let values = rule[field].as_array().unwrap();
                assert!(
                    !values.iter().any(|v| v == "*"),
                    "no wildcard rights: {rule}"
                );
            }
        }
        assert_eq!(docs[4]["apiVersion"], "batch/v1beta1");
    }
}

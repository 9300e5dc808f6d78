//! Expiry and idleness: which sandboxes have outlived their TTL, `sandbox reap` that deletes
//! them and puts to sleep those unused for their `idle_after`, and the manifests that run the
//! reaper in the cluster on a schedule. Only namespaces carrying the
//! tool's label are ever looked at — the label selector is applied by the API server, and
//! checked again here.

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;

use crate::access;
use crate::kube::{connect, Cluster, ClusterOptions};
use crate::lock::{self, LockError};
use crate::progress::Reporter;
use crate::record::{self, Lookup, SandboxRecord};

/// One line of what `reap` did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reaped {
    pub(crate) namespace: String,
    pub(crate) branch: String,
    pub(crate) owner: String,
    pub(crate) expired_at: String,
    /// For a sandbox put to sleep: when it was last used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idle_since: Option<String>,
    /// `deleted`, `would delete`, `put to sleep`, `would put to sleep`, `skipped: …`
    pub(crate) action: String,
}

/// What reaping does to one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Delete,
    Sleep,
}

/// What is due for `sandbox` at `now`: deletion once expired, sleep once idle (and awake).
fn due(sandbox: &SandboxRecord, now: jiff::Timestamp) -> Option<Due> {
    if sandbox.terminating {
        None
    } else if sandbox.expired(now) {
        Some(Due::Delete)
    } else if sandbox.idle(now) {
        Some(Due::Sleep)
    } else {
        None
    }
}

/// Delete (or with `dry_run` only list) every expired sandbox of `product` (None: of every
/// product), and put to sleep every one unused for its `idle_after`. A sandbox whose lock is
/// held by a running `up` is skipped; the next run takes it. So is one that names no product:
/// it was not made by the tool as it is now.
pub(crate) async fn reap(
    options: &ClusterOptions,
    product: Option<&str>,
    dry_run: bool,
) -> Result<Vec<Reaped>> {
    let cluster = connect(options).await.context("cannot reap sandboxes")?;
    reap_in(&cluster, product, dry_run).await
}

async fn reap_in(cluster: &Cluster, product: Option<&str>, dry_run: bool) -> Result<Vec<Reaped>> {
    let now = jiff::Timestamp::now();
    let due: Vec<(SandboxRecord, Due)> = record::list(cluster, product)
        .await?
        .into_iter()
        .filter_map(|r| due(&r, now).map(|d| (r, d)))
        .collect();
    let holder = lock::holder_identity("reaper");
    let work = due.into_iter().map(|(sandbox, due)| {
        let holder = holder.clone();
        async move {
            let action = match (due, dry_run) {
                (Due::Delete, true) => "would delete".into(),
                (Due::Sleep, true) => "would put to sleep".into(),
                (due, false) => match act(cluster, &sandbox, due, &holder).await {
                    Ok(()) if due == Due::Delete => "deleted".into(),
                    Ok(()) => "put to sleep".into(),
                    Err(e) => format!("skipped: {e:#}"),
                },
            };
            Reaped {
                idle_since: (due == Due::Sleep)
                    .then(|| sandbox.used_at().map(|t| t.to_string()).unwrap_or_default()),
                expired_at: sandbox
                    .expires_at
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                namespace: sandbox.namespace,
                branch: sandbox.branch,
                owner: sandbox.owner,
                action,
            }
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

/// Delete or sleep one sandbox, under its lock, if that is still due once the lock is held.
async fn act(cluster: &Cluster, listed: &SandboxRecord, due: Due, holder: &str) -> Result<()> {
    let name = listed.namespace.as_str();
    if listed.product.is_empty() {
        anyhow::bail!("it names no product (no {} label)", record::PRODUCT_LABEL);
    }
    let quiet = Reporter::new(true);
    let held = lock::acquire(
        cluster,
        name,
        holder,
        Some(std::time::Duration::ZERO),
        &quiet,
    )
    .await;
    let _lock = match held {
        Ok(lock) => lock,
        Err(LockError::Held { holder, .. }) => anyhow::bail!("in use by {holder}"),
        Err(e) => return Err(e.into()),
    };
    // Look again under the lock: an `up` may have extended or used it meanwhile.
    let now = jiff::Timestamp::now();
    let sandbox = match record::fetch(cluster, name, &listed.product).await? {
        Lookup::Ours(r) if self::due(&r, now) == Some(due) => r,
        _ => anyhow::bail!("no longer due"),
    };
    match due {
        // Deleting is the reaper's whole job: it does not wait for the namespace to go.
        Due::Delete => record::delete_ours(cluster, &sandbox).await?,
        Due::Sleep => {
            super::sleep::sleep_locked(cluster, name, &listed.product).await?;
        }
    }
    Ok(())
}

/// What the reaper may do: no more than reaping needs, and less where RBAC can say so.
const REAPER_RULES: &str = r#"rules:
  # Find the sandboxes (by label) and delete the expired ones. RBAC cannot limit this to the
  # tool's labelled namespaces: the reaper checks the label (and the admission policy below, on
  # clusters that have one, enforces it).
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [list, get, delete]
  # Put idle sandboxes to sleep: their Deployments and StatefulSets scaled to zero, the replicas
  # and the time recorded on the namespace (a merge patch of the `sandbox.dev/*` annotations).
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [patch]
  - apiGroups: [apps]
    resources: [deployments, statefulsets]
    verbs: [list, patch]
  # …and their CronJobs suspended (`spec.suspend`), those not suspended already recorded too.
  - apiGroups: [batch]
    resources: [cronjobs]
    verbs: [list, patch]
  # The lock of each sandbox is the Lease `sandbox-lock` in its namespace: only that name may be
  # read, renewed and released (so not the nodes' heartbeats in kube-node-lease)…
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    resourceNames: [sandbox-lock]
    verbs: [get, update, delete]
  # …but RBAC cannot limit `create` by name: the reaper may create Leases anywhere (it creates
  # only `sandbox-lock`, in expired sandboxes).
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [create]"#;

/// The manifests that run `sandbox reap` on a schedule: a ServiceAccount with only the rights
/// reaping needs, and a CronJob. With `confine` (on clusters that enforce them), the
/// ValidatingAdmissionPolicy that keeps the reaper and these other accounts to the tool's
/// labelled namespaces.
/// What the reaper's manifests are made for.
pub(crate) struct ReaperRequest<'a> {
    pub(crate) image: &'a str,
    pub(crate) schedule: &'a str,
    pub(crate) namespace: &'a str,
    /// The CronJob's API version (else what the cluster serves, else `batch/v1`).
    pub(crate) cronjob_api_version: Option<String>,
    /// Other accounts the admission policy keeps to the tool's namespaces (`--confine`).
    pub(crate) confine: &'a [(String, String)],
}

/// `sandbox reaper-manifests`: for the cluster when one answers within 5 s (the CronJob's API
/// version; the admission policy only where it is enforced), else for the current APIs.
pub(crate) async fn manifests(request: &ReaperRequest<'_>, options: &ClusterOptions) -> String {
    let cluster = tokio::time::timeout(std::time::Duration::from_secs(5), connect(options))
        .await
        .ok()
        .and_then(Result::ok);
    let api_version = match (&request.cronjob_api_version, &cluster) {
        (Some(v), _) => v.clone(),
        (None, Some(c)) if c.resolve("batch/v1", "CronJob").is_none() => "batch/v1beta1".into(),
        // Else the current API.
        (None, _) => "batch/v1".to_owned(),
    };
    // The policy only where it is enforced: an older API server refuses the manifest.
    let confine = cluster
        .as_ref()
        .is_some_and(access::serves_admission_policies)
        .then_some(request.confine);
    reaper_manifests(
        request.image,
        request.schedule,
        request.namespace,
        &api_version,
        confine,
    )
}

fn reaper_manifests(
    image: &str,
    schedule: &str,
    namespace: &str,
    cronjob_api_version: &str,
    confine: Option<&[(String, String)]>,
) -> String {
    let policy = confine.map_or(String::new(), |others| {
        let reaper = (namespace.to_owned(), "sandbox-reaper".to_owned());
        let accounts: Vec<(String, String)> = std::iter::once(reaper)
            .chain(others.iter().cloned())
            .collect();
        format!("---\n{}", access::admission_policy(&accounts))
    });
    let manifests = format!(
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
{REAPER_RULES}
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
              # Every product's: the reaper has no sandbox.yaml.
              args: ["reap", "--all-products"]
"#
    );
    manifests + &policy
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::MANAGED_BY;
    use k8s_openapi::api::core::v1::Namespace;

    fn ns(labels: serde_json::Value, annotations: serde_json::Value) -> Namespace {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "x", "labels": labels, "annotations": annotations}})).unwrap()
    }

    fn record(labels: serde_json::Value, annotations: serde_json::Value) -> Option<SandboxRecord> {
        SandboxRecord::from_namespace(&ns(labels, annotations))
    }

    #[test]
    fn only_labelled_namespaces_are_ours() {
        let expired = serde_json::json!({"sandbox.dev/expires-at": "2000-01-01T00:00:00Z"});
        assert!(record(
            serde_json::json!({MANAGED_BY: "sandbox"}),
            serde_json::json!({})
        )
        .is_some());
        assert!(record(serde_json::json!({MANAGED_BY: "helm"}), expired.clone()).is_none());
        assert!(record(serde_json::json!({}), expired).is_none());
    }

    #[test]
    fn expiry_is_read_from_the_annotation() {
        let ours = serde_json::json!({MANAGED_BY: "sandbox"});
        let r = record(
            ours.clone(),
            serde_json::json!({"sandbox.dev/expires-at": "2000-01-01T00:00:00Z"}),
        )
        .unwrap();
        assert_eq!(r.expires_at.unwrap().to_string(), "2000-01-01T00:00:00Z");
        assert!(r.expired(jiff::Timestamp::now()));
        let unreadable =
            record(ours, serde_json::json!({"sandbox.dev/expires-at": "soon"})).unwrap();
        assert!(unreadable.expires_at.is_none());
        assert!(
            !unreadable.expired(jiff::Timestamp::now()),
            "no expiry, never reaped"
        );
    }

    #[test]
    fn expired_sandboxes_are_deleted_and_idle_ones_put_to_sleep() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let hours = |h| now - jiff::SignedDuration::from_hours(h);
        let sandbox = |updated: i64, expires_in: i64, idle_hours: Option<u64>| SandboxRecord {
            updated_at: Some(hours(updated)),
            expires_at: Some(hours(-expires_in)),
            idle_after: idle_hours.map(|h| std::time::Duration::from_secs(h * 3600)),
            ..SandboxRecord::default()
        };
        assert_eq!(due(&sandbox(1, -1, None), now), Some(Due::Delete));
        assert_eq!(due(&sandbox(9, 10, Some(8)), now), Some(Due::Sleep));
        assert_eq!(due(&sandbox(7, 10, Some(8)), now), None);
        assert_eq!(due(&sandbox(9, 10, None), now), None, "no idle_after");
        let mut asleep = sandbox(9, 10, Some(8));
        asleep.sleep = Some(record::Sleep::default());
        assert_eq!(due(&asleep, now), None, "asleep already");
        let mut expired_asleep = sandbox(9, -1, Some(8));
        expired_asleep.sleep = Some(record::Sleep::default());
        assert_eq!(due(&expired_asleep, now), Some(Due::Delete));
        let mut going = sandbox(1, -1, None);
        going.terminating = true;
        assert_eq!(due(&going, now), None);
    }

    #[test]
    fn reaper_manifests_parse_and_grant_little() {
        let text = reaper_manifests("img:1", "*/5 * * * *", "ops", "batch/v1beta1", None);
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
        assert_eq!(rules.len(), 6);
        // Leases only by name, except create (which RBAC cannot limit by name).
        for rule in rules.iter().filter(|r| r["resources"][0] == "leases") {
            let verbs = rule["verbs"].as_array().unwrap();
            assert!(
                rule["resourceNames"] == serde_json::json!(["sandbox-lock"])
                    || verbs == &["create"],
                "{rule}"
            );
        }
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

    #[test]
    fn the_admission_policy_is_added_only_when_asked_and_confines_the_reaper_too() {
        let serve = [("sandbox-system".to_owned(), "sandbox-serve".to_owned())];
        let text = reaper_manifests("img:1", "* * * * *", "ops", "batch/v1", Some(&serve));
        let kinds: Vec<String> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| {
                let v: serde_json::Value = serde::Deserialize::deserialize(d).unwrap();
                v["kind"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            kinds[5..],
            [
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding"
            ]
        );
        assert!(text.contains("'system:serviceaccount:ops:sandbox-reaper', 'system:serviceaccount:sandbox-system:sandbox-serve'"), "{text}");
        let without = reaper_manifests("img:1", "* * * * *", "ops", "batch/v1", None);
        assert!(!without.contains("ValidatingAdmissionPolicy"));
    }
}

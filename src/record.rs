//! The sandbox's record: its namespace, the labels that mark it as the tool's, and the
//! `sandbox.dev/*` annotations that say whose it is, what it runs and how it is doing.
//!
//! This module is the one owner of that record. Commands, the pipeline, `reap` and `serve` read
//! it with [`SandboxRecord::from_namespace`] / [`list`] / [`ensure_ours`] and write it with
//! [`ensure`] and [`update`]; no one else builds an `Api<Namespace>`. And it is the one place
//! that answers "is this ours?" before anything is changed or deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::Api;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Hint;
use crate::kube::{Cluster, FIELD_MANAGER};
use crate::object::ObjectRef;

/// The label that marks everything the tool created. `down` and `reap` act on nothing else.
pub(crate) const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGED_BY_VALUE: &str = "sandbox";
/// On every object: the service it belongs to (pods inherit it through their templates).
pub(crate) const SERVICE_LABEL: &str = "sandbox.dev/service";
/// On every object: what part of the sandbox it is (`service`, `preflight`, `smoke`, `state`).
pub(crate) const ROLE_LABEL: &str = "sandbox.dev/role";
/// On the namespace: the product (`name` in sandbox.yaml) whose sandbox it is. Every change or
/// deletion of a namespace checks it, so two products that share a namespace prefix never adopt
/// or prune each other's sandboxes. (The key predates the word "product"; every namespace the
/// tool ever made carries it.)
pub(crate) const PRODUCT_LABEL: &str = "sandbox.dev/sandbox";
/// On every object: a digest of what the tool rendered, so a re-up can leave unchanged objects
/// alone (and their resourceVersion with them) without asking the server to compare.
pub(crate) const HASH_ANNOTATION: &str = "sandbox.dev/rendered-hash";

/// The Secret in a sandbox holding the objects of its last successful `up` (it contains
/// rendered Secrets, so it is a Secret itself); written by `pipeline::inventory`.
pub(crate) const LAST_GOOD_SECRET: &str = "sandbox-last-good";

/// The record's annotations, after [`PREFIX`].
const PREFIX: &str = "sandbox.dev/";
mod key {
    pub(super) const BRANCH: &str = "branch";
    pub(super) const OWNER: &str = "owner";
    pub(super) const CREATED_AT: &str = "created-at";
    pub(super) const UPDATED_AT: &str = "updated-at";
    pub(super) const EXPIRES_AT: &str = "expires-at";
    pub(super) const REPOS: &str = "repos";
    pub(super) const STATUS: &str = "status";
    pub(super) const URL: &str = "url";
    pub(super) const INVENTORY: &str = "inventory";
    pub(super) const PR_REPO: &str = "pr-repo";
    pub(super) const PR_NUMBER: &str = "pr-number";
    /// Every pull request of the last deploy, `owner/a#1 owner/b#7`, when there are several.
    pub(super) const PRS: &str = "prs";
    /// What made the sandbox: [`super::MADE_BY_UP`] or [`super::MADE_BY_SERVE`]; kept as it
    /// was by every later `up`.
    pub(super) const MADE_BY: &str = "made-by";
    /// Why the last `up` failed (scrubbed, cut short); removed by the next success.
    pub(super) const LAST_ERROR: &str = "last-error";
    /// The last `wake` or `extend` (an `up` writes `updated-at`).
    pub(super) const LAST_USED: &str = "last-used";
    /// How long it may go unused before `reap` puts it to sleep (`idle_after`), in seconds.
    pub(super) const IDLE_AFTER: &str = "idle-after";
    /// Since when it sleeps, and the replicas its workloads had (`{"Deployment/api": 2}`).
    pub(super) const SLEEPING_SINCE: &str = "sleeping-since";
    pub(super) const SLEEP_REPLICAS: &str = "sleep-replicas";
    /// The CronJobs the sleep suspended (`["nightly"]`): not those suspended before it.
    pub(super) const SLEEP_SUSPENDED: &str = "sleep-suspended";
    /// The SHA-256 of the last good revision in [`super::LAST_GOOD_SECRET`]: kept on the
    /// namespace, which nothing in the sandbox can write (the plan refuses Namespaces and Roles
    /// on them), so a rollback applies only what the tool wrote there.
    pub(super) const LAST_GOOD_DIGEST: &str = "last-good-digest";
}

/// The longest last error recorded (annotations share 256 KiB per object).
pub(crate) const MAX_LAST_ERROR: usize = 2000;

/// `sandbox.dev/made-by` of a sandbox that `sandbox up` made (by hand, or a script).
pub(crate) const MADE_BY_UP: &str = "up";
/// `sandbox.dev/made-by` of a sandbox that the previews (`sandbox serve`) made: the only ones
/// serve ever deletes.
pub(crate) const MADE_BY_SERVE: &str = "serve";

/// The longest namespace name Kubernetes accepts.
const MAX_NAMESPACE: usize = 63;

/// How many hex digits of the branch's SHA-256 a changed branch name gets: 64 bits, so nobody
/// can compute a branch name that lands on someone else's sandbox (6 digits took seconds).
const HASH_DIGITS: usize = 16;

/// The namespace of a branch: `prefix` + the branch as a DNS-1123 label. When the branch had to
/// be changed or cut to fit, `--` and a hash of the original are appended so that `feature/x`
/// and `feature-x` never share a namespace. A branch kept as it is never contains `--` (the
/// label collapses runs of `-`, and a branch that needed that is changed), so no plain branch
/// can be named to look like another's hashed name.
pub fn namespace_for(prefix: &str, branch: &str) -> String {
    let label = branch_label(branch);
    let plain = format!("{prefix}{label}");
    if label == branch && !label.is_empty() && plain.len() <= MAX_NAMESPACE {
        return plain;
    }
    hashed(plain, branch, HASH_DIGITS, "--")
}

/// The name versions before 0.2 gave a branch whose name had to change (6 hex digits after one
/// `-`), when it differs from today's: `down` still finds such a sandbox.
pub(crate) fn legacy_namespace_for(prefix: &str, branch: &str) -> Option<String> {
    let label = branch_label(branch);
    let plain = format!("{prefix}{label}");
    if label == branch && !label.is_empty() && plain.len() <= MAX_NAMESPACE {
        return None;
    }
    Some(hashed(plain, branch, 6, "-"))
}

/// The branch in lower case, with runs of anything but letters and digits made one `-`.
fn branch_label(branch: &str) -> String {
    let mut label = String::new();
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (label.is_empty() || label.ends_with('-'))) {
            label.push(c);
        }
    }
    label.trim_end_matches('-').to_owned()
}

fn hashed(plain: String, branch: &str, digits: usize, separator: &str) -> String {
    let hash = hex::encode(Sha256::digest(branch.as_bytes()));
    let suffix = &hash[..digits];
    let mut base = plain;
    base.truncate(MAX_NAMESPACE - digits - separator.len());
    let base = base.trim_end_matches('-');
    format!("{base}{separator}{suffix}")
}

/// Whether an object carries the tool's label: the one test before changing or deleting anything.
pub(crate) fn is_managed(metadata: &ObjectMeta) -> bool {
    metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY))
        .map(String::as_str)
        == Some(MANAGED_BY_VALUE)
}

/// How the last `up` of a sandbox went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Deploying,
    Ready,
    /// Applied by `up --wait=false`: nobody waited to see it ready.
    Applied,
    Failed,
    /// Scaled to zero by `sleep` (or `reap`); `wake` or `up` brings it back.
    Sleeping,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Deploying => "deploying",
            Status::Ready => "ready",
            Status::Applied => "applied",
            Status::Failed => "failed",
            Status::Sleeping => "sleeping",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        [
            Status::Deploying,
            Status::Ready,
            Status::Applied,
            Status::Failed,
            Status::Sleeping,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What one repository was checked out at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RepoAt {
    pub(crate) branch: String,
    pub(crate) sha: String,
    pub(crate) fell_back: bool,
}

/// A pull request a sandbox previews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrNumber {
    pub(crate) repo: String,
    pub(crate) number: u64,
}

/// Everything the tool records about a sandbox, read from or written to its namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SandboxRecord {
    pub(crate) namespace: String,
    /// The product (`name` in sandbox.yaml).
    pub(crate) product: String,
    pub(crate) branch: String,
    pub(crate) owner: String,
    pub(crate) created_at: Option<jiff::Timestamp>,
    pub(crate) updated_at: Option<jiff::Timestamp>,
    pub(crate) expires_at: Option<jiff::Timestamp>,
    pub(crate) status: Option<Status>,
    pub(crate) url: Option<String>,
    /// Why the last `up` failed, when it did (scrubbed of secrets when written).
    pub(crate) last_error: Option<String>,
    /// repo name → what it was checked out at.
    pub(crate) repos: BTreeMap<String, RepoAt>,
    /// The pull requests it previews, oldest first (empty: made by hand).
    pub(crate) prs: Vec<PrNumber>,
    /// Every object the tool applied into it (for pruning what is no longer rendered).
    pub(crate) inventory: BTreeSet<ObjectRef>,
    /// What made it ([`MADE_BY_UP`], [`MADE_BY_SERVE`]); `None` for sandboxes made before
    /// this was recorded.
    pub(crate) made_by: Option<String>,
    /// Being deleted.
    pub(crate) terminating: bool,
    /// The namespace's uid when read (deletes are conditional on it).
    pub(crate) uid: Option<String>,
    /// Labels the namespace carries besides the tool's own (the Pod Security level), written
    /// by [`ensure`]; not read back.
    pub(crate) labels: BTreeMap<String, String>,
    /// The last `wake` or `extend`.
    pub(crate) last_used: Option<jiff::Timestamp>,
    /// `idle_after` of the product's sandbox.yaml at the last `up`.
    pub(crate) idle_after: Option<Duration>,
    /// Asleep since then, with the replicas to restore.
    pub(crate) sleep: Option<Sleep>,
}

/// A sandbox put to sleep: since when, what each workload ran before, and which CronJobs it
/// suspended.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sleep {
    pub(crate) since: Option<jiff::Timestamp>,
    /// `Deployment/api` → replicas.
    pub(crate) replicas: BTreeMap<String, i32>,
    /// The names of the CronJobs the sleep suspended: only these are resumed on waking, so one
    /// the template (or someone) suspended stays suspended.
    pub(crate) suspended: BTreeSet<String>,
}

impl SandboxRecord {
    /// The record of a namespace, or None when the namespace is not the tool's.
    pub(crate) fn from_namespace(ns: &Namespace) -> Option<SandboxRecord> {
        if !is_managed(&ns.metadata) {
            return None;
        }
        let empty = BTreeMap::new();
        let annotations = ns.metadata.annotations.as_ref().unwrap_or(&empty);
        let get = |k: &str| annotations.get(&format!("{PREFIX}{k}")).map(String::as_str);
        let time = |k: &str| get(k).and_then(|t| t.parse().ok());
        Some(SandboxRecord {
            namespace: ns.metadata.name.clone().unwrap_or_default(),
            product: ns
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(PRODUCT_LABEL))
                .cloned()
                .unwrap_or_default(),
            branch: get(key::BRANCH).unwrap_or_default().to_owned(),
            owner: get(key::OWNER).unwrap_or_default().to_owned(),
            created_at: time(key::CREATED_AT),
            updated_at: time(key::UPDATED_AT),
            expires_at: time(key::EXPIRES_AT),
            status: get(key::STATUS).and_then(Status::parse),
            url: get(key::URL).map(str::to_owned),
            last_error: get(key::LAST_ERROR).map(str::to_owned),
            repos: get(key::REPOS)
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or_default(),
            prs: recorded_prs(get),
            inventory: get(key::INVENTORY)
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or_default(),
            made_by: get(key::MADE_BY).map(str::to_owned),
            terminating: ns.metadata.deletion_timestamp.is_some(),
            uid: ns.metadata.uid.clone(),
            labels: BTreeMap::new(),
            last_used: time(key::LAST_USED),
            idle_after: get(key::IDLE_AFTER)
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs),
            sleep: get(key::SLEEP_REPLICAS).map(|r| Sleep {
                since: time(key::SLEEPING_SINCE),
                replicas: serde_json::from_str(r).unwrap_or_default(),
                suspended: get(key::SLEEP_SUSPENDED)
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default(),
            }),
        })
    }

    /// What `up` applies at its start: who, what, when. Status, URL and inventory are written as
    /// the run goes, by [`update`].
    pub(crate) fn to_annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: String| a.insert(format!("{PREFIX}{k}"), v);
        put(key::BRANCH, self.branch.clone());
        put(key::OWNER, self.owner.clone());
        let times = [
            (key::CREATED_AT, self.created_at),
            (key::UPDATED_AT, self.updated_at),
            (key::EXPIRES_AT, self.expires_at),
        ];
        for (k, t) in times {
            if let Some(t) = t {
                put(k, t.to_string());
            }
        }
        put(
            key::REPOS,
            serde_json::to_string(&self.repos).expect("serializable"),
        );
        if let Some(newest) = self.prs.last() {
            put(key::PR_REPO, newest.repo.clone());
            put(key::PR_NUMBER, newest.number.to_string());
        }
        if let Some(idle) = self.idle_after {
            put(key::IDLE_AFTER, idle.as_secs().to_string());
        }
        if self.prs.len() > 1 {
            let all: Vec<String> = self
                .prs
                .iter()
                .map(|p| format!("{}#{}", p.repo, p.number))
                .collect();
            put(key::PRS, all.join(" "));
        }
        if let Some(made_by) = &self.made_by {
            put(key::MADE_BY, made_by.clone());
        }
        a
    }

    /// Whether the previews made it (and so may delete it).
    pub(crate) fn made_by_serve(&self) -> bool {
        self.made_by.as_deref() == Some(MADE_BY_SERVE)
    }

    /// Whether its expiry has passed.
    pub(crate) fn expired(&self, now: jiff::Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at < now)
    }

    /// When it was last used: the latest `up` (`updated_at`), `wake` or `extend`.
    pub(crate) fn used_at(&self) -> Option<jiff::Timestamp> {
        self.updated_at.max(self.last_used)
    }

    /// Whether it is awake and has gone unused for its `idle_after`.
    pub(crate) fn idle(&self, now: jiff::Timestamp) -> bool {
        let (Some(idle), Some(used)) = (self.idle_after, self.used_at()) else {
            return false;
        };
        let idle = jiff::SignedDuration::try_from(idle).unwrap_or(jiff::SignedDuration::MAX);
        self.sleep.is_none() && used.checked_add(idle).is_ok_and(|at| at <= now)
    }
}

/// The pull requests a sandbox records: the `prs` list, else the one of `pr-repo`/`pr-number`.
fn recorded_prs<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Vec<PrNumber> {
    let parse = |item: &str| {
        let (repo, number) = item.rsplit_once('#')?;
        Some(PrNumber {
            repo: repo.to_owned(),
            number: number.parse().ok()?,
        })
    };
    if let Some(list) = get(key::PRS) {
        let parsed: Vec<PrNumber> = list.split_whitespace().filter_map(parse).collect();
        if !parsed.is_empty() {
            return parsed;
        }
    }
    match (get(key::PR_REPO), get(key::PR_NUMBER)) {
        (Some(repo), Some(number)) => parse(&format!("{repo}#{number}")).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A change to part of the record, written as the run goes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Update {
    pub(crate) status: Option<Status>,
    pub(crate) url: Option<String>,
    pub(crate) expires_at: Option<jiff::Timestamp>,
    pub(crate) inventory: Option<BTreeSet<ObjectRef>>,
    /// `Some(Some(error))` records why the run failed (the caller scrubs it; it is cut to
    /// [`MAX_LAST_ERROR`] characters), `Some(None)` removes it.
    pub(crate) last_error: Option<Option<String>>,
    pub(crate) last_used: Option<jiff::Timestamp>,
    /// `Some(Some(_))`: now asleep; `Some(None)`: awake again (the sleep is forgotten).
    pub(crate) sleep: Option<Option<Sleep>>,
    /// The digest of the last good revision just written (`pipeline::inventory`).
    pub(crate) last_good_digest: Option<String>,
}

impl Update {
    pub(crate) fn status(status: Status) -> Update {
        Update {
            status: Some(status),
            ..Update::default()
        }
    }

    pub(crate) fn inventory(inventory: BTreeSet<ObjectRef>) -> Update {
        Update {
            inventory: Some(inventory),
            ..Update::default()
        }
    }

    /// The annotations to write; `None` removes one.
    fn annotations(&self) -> BTreeMap<String, Option<String>> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: Option<String>| a.insert(format!("{PREFIX}{k}"), v);
        if let Some(t) = self.last_used {
            put(key::LAST_USED, Some(t.to_string()));
        }
        match &self.sleep {
            Some(Some(sleep)) => {
                put(key::SLEEPING_SINCE, sleep.since.map(|t| t.to_string()));
                let replicas = serde_json::to_string(&sleep.replicas).expect("serializable");
                put(key::SLEEP_REPLICAS, Some(replicas));
                // None suspended (most sandboxes have no CronJob): no annotation.
                let suspended = (!sleep.suspended.is_empty())
                    .then(|| serde_json::to_string(&sleep.suspended).expect("serializable"));
                put(key::SLEEP_SUSPENDED, suspended);
            }
            Some(None) => {
                put(key::SLEEPING_SINCE, None);
                put(key::SLEEP_REPLICAS, None);
                put(key::SLEEP_SUSPENDED, None);
            }
            None => {}
        }
        let mut put = |k: &str, v: String| put(k, Some(v));
        if let Some(s) = self.status {
            put(key::STATUS, s.as_str().to_owned());
        }
        if let Some(url) = &self.url {
            put(key::URL, url.clone());
        }
        if let Some(t) = self.expires_at {
            put(key::EXPIRES_AT, t.to_string());
        }
        if let Some(i) = &self.inventory {
            put(
                key::INVENTORY,
                serde_json::to_string(i).expect("serializable"),
            );
        }
        if let Some(Some(error)) = &self.last_error {
            put(key::LAST_ERROR, cut(error, MAX_LAST_ERROR));
        }
        if let Some(digest) = &self.last_good_digest {
            put(key::LAST_GOOD_DIGEST, digest.clone());
        }
        a
    }

    /// The patch: what is set, and `null` for what is removed.
    fn patch(&self) -> serde_json::Value {
        let mut annotations: serde_json::Map<String, serde_json::Value> = self
            .annotations()
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        if let Some(None) = self.last_error {
            annotations.insert(
                format!("{PREFIX}{}", key::LAST_ERROR),
                serde_json::Value::Null,
            );
        }
        serde_json::json!({"metadata": {"annotations": annotations}})
    }
}

/// At most `limit` characters of `text`, cut on a character boundary, `…` marking a cut.
fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Something about a sandbox's namespace that stops the command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// The namespace exists but was not created by this tool: never touch it.
    #[error("namespace `{0}` exists and is not managed by sandbox")]
    NotOurs(String),
    /// The namespace is a sandbox of another product (or says of none): never touch it.
    #[error("namespace `{namespace}` is a sandbox of {}, not of `{ours}`", theirs.as_deref().map_or("no product (it has no `sandbox.dev/sandbox` label)".to_owned(), |p| format!("product `{p}`")))]
    OtherProduct {
        namespace: String,
        ours: String,
        theirs: Option<String>,
    },
    /// The namespace is this product's sandbox of another branch: a branch named like the name
    /// versions before 0.2 gave another branch (`feature-x-1a2b3c` for `feature/x`) lands on it.
    #[error("namespace `{namespace}` is the sandbox of branch `{theirs}`, not of `{ours}`")]
    OtherBranch {
        namespace: String,
        ours: String,
        theirs: String,
    },
    /// There is no such sandbox.
    #[error("there is no sandbox `{0}`")]
    Missing(String),
    /// The namespace did not go away in time.
    #[error("namespace `{namespace}` is still terminating after {}s", after.as_secs())]
    StillTerminating { namespace: String, after: Duration },
    /// An API call failed.
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

impl Hint for RecordError {
    fn hint(&self) -> Option<String> {
        match self {
            RecordError::NotOurs(ns) => Some(format!(
                "sandbox only changes namespaces labelled {MANAGED_BY}={MANAGED_BY_VALUE}; choose another namespace_prefix, or delete `{ns}` yourself if it is yours"
            )),
            RecordError::OtherProduct { namespace, ours, theirs: Some(_) } => Some(format!(
                "two products share the namespace prefix of `{namespace}`; give product `{ours}` a `namespace_prefix` of its own in sandbox.yaml"
            )),
            RecordError::OtherProduct { namespace, ours, theirs: None } => Some(format!(
                "if `{namespace}` is a sandbox of `{ours}`, say so: `kubectl label namespace {namespace} {PRODUCT_LABEL}={ours}`; else leave it alone (`down` will not delete it)"
            )),
            RecordError::OtherBranch { theirs, .. } => Some(format!(
                "versions before 0.2 named the sandbox of `{theirs}` so, and a branch can be named to match it; it is left alone: rename this branch (or, if the old sandbox is no longer needed, `sandbox down {theirs}` first)"
            )),
            RecordError::Missing(_) => Some("`sandbox list` shows the sandboxes".into()),
            RecordError::StillTerminating { .. } => Some(
                "something holds it (a finalizer?): `kubectl get all -n NAMESPACE` shows what is left".into(),
            ),
            RecordError::Api { .. } => None,
        }
    }
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RecordError {
    let what = what.into();
    move |source| RecordError::Api { what, source }
}

fn namespaces(cluster: &Cluster) -> Api<Namespace> {
    Api::all(cluster.client.clone())
}

/// A namespace, as far as one product is concerned.
pub(crate) enum Lookup {
    Absent,
    /// Not made by the tool.
    NotOurs,
    /// Made by the tool for another product, or for none it names (the product it names).
    OtherProduct(Option<String>),
    Ours(Box<SandboxRecord>),
}

impl Lookup {
    /// What `ns` is to `product`. A namespace without the product label is nobody's: the tool
    /// has always written the label, so its absence means someone else made or changed it.
    fn of(ns: &Namespace, product: &str) -> Lookup {
        match SandboxRecord::from_namespace(ns) {
            None => Lookup::NotOurs,
            Some(r) if r.product.is_empty() => Lookup::OtherProduct(None),
            Some(r) if r.product != product => Lookup::OtherProduct(Some(r.product)),
            Some(r) => Lookup::Ours(Box::new(r)),
        }
    }

    /// The error for a namespace that is there but not this product's sandbox.
    pub(crate) fn refusal(self, namespace: &str, product: &str) -> Option<RecordError> {
        match self {
            Lookup::NotOurs => Some(RecordError::NotOurs(namespace.into())),
            Lookup::OtherProduct(theirs) => Some(RecordError::OtherProduct {
                namespace: namespace.into(),
                ours: product.into(),
                theirs,
            }),
            Lookup::Absent | Lookup::Ours(_) => None,
        }
    }
}

/// Read the record of a sandbox of `product`.
pub(crate) async fn fetch(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
) -> Result<Lookup, RecordError> {
    let ns = namespaces(cluster)
        .get_opt(namespace)
        .await
        .map_err(api_error("could not read the namespace"))?;
    Ok(match ns {
        None => Lookup::Absent,
        Some(ns) => Lookup::of(&ns, product),
    })
}

/// The record of a sandbox of `product` that must exist (for status, logs, extend).
pub(crate) async fn ensure_ours(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
) -> Result<SandboxRecord, RecordError> {
    match fetch(cluster, namespace, product).await? {
        Lookup::Absent => Err(RecordError::Missing(namespace.into())),
        Lookup::Ours(record) => Ok(*record),
        other => Err(other.refusal(namespace, product).expect("not ours")),
    }
}

/// Refuse `lookup` when it is this product's sandbox of another branch than `branch` (one
/// being deleted is nobody's any more). Today's names never collide (a changed branch gets a
/// 64-bit hash after `--`), but the 6-digit names of versions before 0.2 look like plain
/// branches: pushing `feature-x-1a2b3c` must not take over (or delete) `feature/x`'s sandbox.
pub(crate) fn check_branch(
    lookup: &Lookup,
    namespace: &str,
    branch: &str,
) -> Result<(), RecordError> {
    match lookup {
        Lookup::Ours(r) if !r.terminating && r.branch != branch => Err(RecordError::OtherBranch {
            namespace: namespace.into(),
            ours: branch.into(),
            theirs: r.branch.clone(),
        }),
        _ => Ok(()),
    }
}

/// The namespace of `product`'s sandbox of `branch`: today's name, or, when there is no sandbox
/// by that name, the name versions before 0.2 gave it (a shorter hash), if that namespace is
/// this product's sandbox of exactly this branch. So `down` after an upgrade still finds it.
/// Today's name holding another branch's sandbox (an old name, see [`check_branch`]) is refused.
pub(crate) async fn locate(
    cluster: &Cluster,
    prefix: &str,
    branch: &str,
    product: &str,
) -> Result<String, RecordError> {
    let current = namespace_for(prefix, branch);
    let Some(legacy) = legacy_namespace_for(prefix, branch) else {
        let lookup = fetch(cluster, &current, product).await?;
        check_branch(&lookup, &current, branch)?;
        return Ok(current);
    };
    let lookup = fetch(cluster, &current, product).await?;
    if !matches!(lookup, Lookup::Absent) {
        check_branch(&lookup, &current, branch)?;
        return Ok(current);
    }
    Ok(match fetch(cluster, &legacy, product).await? {
        Lookup::Ours(r) if r.branch == branch => legacy,
        _ => current,
    })
}

/// Every sandbox in the cluster (one LIST, filtered by the tool's label on the server), or only
/// those of one product.
pub(crate) async fn list(
    cluster: &Cluster,
    product: Option<&str>,
) -> Result<Vec<SandboxRecord>, RecordError> {
    let mut selector = format!("{MANAGED_BY}={MANAGED_BY_VALUE}");
    if let Some(p) = product {
        selector.push_str(&format!(",{PRODUCT_LABEL}={p}"));
    }
    let list = namespaces(cluster)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("could not list the sandboxes' namespaces"))?;
    let mut records: Vec<SandboxRecord> = list
        .items
        .iter()
        .filter_map(SandboxRecord::from_namespace)
        .filter(|r| product.is_none_or(|p| r.product == p))
        .collect();
    records.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    Ok(records)
}

/// Create or update the sandbox's namespace with the tool's labels and `record`'s annotations.
/// Refuses a namespace that someone else, another product or another branch (see
/// [`check_branch`]) created; waits for one of its own still being deleted. Returns the record
/// as it was before (None: this call created it).
pub(crate) async fn ensure(
    cluster: &Cluster,
    record: &SandboxRecord,
) -> Result<Option<SandboxRecord>, RecordError> {
    let name = record.namespace.as_str();
    let product = record.product.as_str();
    let lookup = fetch(cluster, name, product).await?;
    check_branch(&lookup, name, &record.branch)?;
    let previous = match lookup {
        lookup @ (Lookup::NotOurs | Lookup::OtherProduct(_)) => {
            return Err(lookup.refusal(name, product).expect("not ours"))
        }
        Lookup::Absent => None,
        Lookup::Ours(old) if old.terminating => {
            wait_gone(cluster, name, Duration::from_secs(120)).await?;
            None
        }
        Lookup::Ours(old) => Some(*old),
    };
    // A re-up keeps the sandbox's original creation time.
    let created_at = previous
        .as_ref()
        .and_then(|old| old.created_at)
        .or(record.created_at);
    // …and what made it.
    let made_by = previous
        .as_ref()
        .and_then(|old| old.made_by.clone())
        .or_else(|| record.made_by.clone());
    let record = &SandboxRecord {
        created_at,
        made_by,
        ..record.clone()
    };
    let mut labels = BTreeMap::from([
        (MANAGED_BY, MANAGED_BY_VALUE),
        (PRODUCT_LABEL, record.product.as_str()),
    ]);
    labels.extend(record.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels, "annotations": record.to_annotations()},
    });
    namespaces(cluster)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(api_error(format!("could not create namespace `{name}`")))?;
    Ok(previous)
}

/// Write part of the record. A merge patch (not an apply) leaves the rest alone.
pub(crate) async fn update(
    cluster: &Cluster,
    namespace: &str,
    update: Update,
) -> Result<(), RecordError> {
    let patch = update.patch();
    namespaces(cluster)
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_error("could not update the sandbox's record"))?;
    Ok(())
}

/// The digest of the last good revision that the record keeps, if it keeps one.
pub(crate) async fn last_good_digest(
    cluster: &Cluster,
    namespace: &str,
) -> Result<Option<String>, RecordError> {
    let ns = namespaces(cluster)
        .get(namespace)
        .await
        .map_err(api_error("could not read the namespace"))?;
    let annotation = format!("{PREFIX}{}", key::LAST_GOOD_DIGEST);
    Ok(ns
        .metadata
        .annotations
        .and_then(|mut a| a.remove(&annotation)))
}

/// What [`delete`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Deletion has begun (or was already under way); [`wait_gone`] waits for its end.
    Deleting,
    WasAbsent,
}

/// Delete a sandbox's namespace — only if the tool made it for `product`.
pub(crate) async fn delete(
    cluster: &Cluster,
    namespace: &str,
    product: &str,
) -> Result<Deleted, RecordError> {
    match fetch(cluster, namespace, product).await? {
        Lookup::Absent => Ok(Deleted::WasAbsent),
        Lookup::Ours(record) => {
            delete_ours(cluster, &record).await?;
            Ok(Deleted::Deleting)
        }
        other => Err(other.refusal(namespace, product).expect("not ours")),
    }
}

/// Delete the namespace of a record just read with [`fetch`] (it is the tool's and the
/// product's). The delete is conditional on the namespace's uid being the one read, so a
/// namespace deleted and made again meanwhile (by anyone) is left alone.
pub(crate) async fn delete_ours(
    cluster: &Cluster,
    record: &SandboxRecord,
) -> Result<(), RecordError> {
    if !record.terminating {
        let mut params = DeleteParams::background();
        if let Some(uid) = &record.uid {
            params = params.preconditions(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            });
        }
        namespaces(cluster)
            .delete(&record.namespace, &params)
            .await
            .map_err(api_error("could not delete the namespace"))?;
    }
    Ok(())
}

/// Wait until a namespace is gone (after a delete).
pub(crate) async fn wait_gone(
    cluster: &Cluster,
    name: &str,
    timeout: Duration,
) -> Result<(), RecordError> {
    let gone =
        crate::outage::await_condition(namespaces(cluster), name, |n: Option<&Namespace>| {
            n.is_none()
        });
    match tokio::time::timeout(timeout, gone).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(RecordError::Api {
            what: format!("could not watch namespace `{name}` go"),
            source: kube::Error::Service(Box::new(source)),
        }),
        Err(_) => Err(RecordError::StillTerminating {
            namespace: name.into(),
            after: timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::is_dns1123_label;

    fn namespace(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Namespace {
        let map = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        Namespace {
            metadata: ObjectMeta {
                name: Some("sb-x".into()),
                labels: map(labels),
                annotations: map(annotations),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    /// A cluster whose API server answers every request with `status` and `body`, and notes the
    /// methods it was asked.
    fn cluster_answering(
        status: u16,
        body: serde_json::Value,
    ) -> (Cluster, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        cluster_answering_by_path(move |_| (status, body.clone()))
    }

    /// A cluster whose API server answers each request by its path.
    fn cluster_answering_by_path(
        answer: impl Fn(&str) -> (u16, serde_json::Value) + Clone + Send + 'static,
    ) -> (Cluster, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            log.lock().unwrap().push(req.method().to_string());
            let (status, body) = answer(req.uri().path());
            let body = body.to_string().into_bytes();
            async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body))
                        .unwrap(),
                )
            }
        });
        let client = kube::Client::new(service, "default");
        let cluster = Cluster {
            discovery: std::sync::Arc::new(kube::Discovery::new(client.clone())),
            client,
            server: "http://test".into(),
            context: None,
            version: "v1.20.15".into(),
        };
        (cluster, seen)
    }

    fn record_of(namespace: &str) -> SandboxRecord {
        SandboxRecord {
            namespace: namespace.into(),
            product: "shop".into(),
            branch: "x".into(),
            ..SandboxRecord::default()
        }
    }

    #[tokio::test]
    async fn an_unreadable_namespace_stops_ensure_before_any_write() {
        let forbidden = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "forbidden", "reason": "Forbidden", "code": 403});
        let (cluster, seen) = cluster_answering(403, forbidden);
        let Err(e) = ensure(&cluster, &record_of("sb-x")).await else {
            panic!("a namespace that cannot be read is not taken for absent");
        };
        assert!(matches!(e, RecordError::Api { .. }), "{e:?}");
        assert_eq!(*seen.lock().unwrap(), ["GET"], "nothing was written");
    }

    #[tokio::test]
    async fn someone_elses_namespace_is_never_written_or_deleted() {
        let theirs = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-db", "labels": {MANAGED_BY: "helm"}}});
        let (cluster, seen) = cluster_answering(200, theirs);
        let e = ensure(&cluster, &record_of("team-db")).await.unwrap_err();
        assert!(matches!(e, RecordError::NotOurs(_)), "{e:?}");
        let e = delete(&cluster, "team-db", "shop").await.unwrap_err();
        assert!(matches!(e, RecordError::NotOurs(_)), "{e:?}");
        assert!(matches!(
            ensure_ours(&cluster, "team-db", "shop").await,
            Err(RecordError::NotOurs(_))
        ));
        assert_eq!(*seen.lock().unwrap(), ["GET", "GET", "GET"], "only reads");
    }

    fn namespace_json(name: &str, labels: serde_json::Value, branch: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "uid": "u-1", "labels": labels, "annotations": {"sandbox.dev/branch": branch}}})
    }

    #[tokio::test]
    async fn another_products_sandbox_is_never_adopted_or_deleted() {
        let theirs = namespace_json(
            "sb-x",
            serde_json::json!({MANAGED_BY: MANAGED_BY_VALUE, PRODUCT_LABEL: "billing"}),
            "x",
        );
        let (cluster, seen) = cluster_answering(200, theirs);
        let e = ensure(&cluster, &record_of("sb-x")).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "namespace `sb-x` is a sandbox of product `billing`, not of `shop`"
        );
        assert!(
            e.hint().unwrap().contains("`namespace_prefix` of its own"),
            "{e:?}"
        );
        let e = delete(&cluster, "sb-x", "shop").await.unwrap_err();
        assert!(matches!(e, RecordError::OtherProduct { .. }), "{e:?}");
        let e = ensure_ours(&cluster, "sb-x", "shop").await.unwrap_err();
        assert!(matches!(e, RecordError::OtherProduct { .. }), "{e:?}");
        assert_eq!(*seen.lock().unwrap(), ["GET", "GET", "GET"], "only reads");
    }

    /// The migration rule: the tool has always written the product label, so a namespace with
    /// the tool's label but none for the product was made or changed by someone else. It is not
    /// guessed to be anyone's: the operator labels it (the hint says how) or deletes it.
    #[tokio::test]
    async fn a_sandbox_naming_no_product_is_nobodys_until_labelled() {
        let unlabelled = namespace_json(
            "sb-x",
            serde_json::json!({MANAGED_BY: MANAGED_BY_VALUE}),
            "x",
        );
        let (cluster, seen) = cluster_answering(200, unlabelled);
        let e = ensure(&cluster, &record_of("sb-x")).await.unwrap_err();
        assert!(e.to_string().contains("is a sandbox of no product"), "{e}");
        assert!(
            e.hint()
                .unwrap()
                .contains("kubectl label namespace sb-x sandbox.dev/sandbox=shop"),
            "{e:?}"
        );
        assert!(delete(&cluster, "sb-x", "shop").await.is_err());
        assert_eq!(*seen.lock().unwrap(), ["GET", "GET"], "only reads");
    }

    #[tokio::test]
    async fn a_sandbox_under_its_old_name_is_found_only_if_it_is_this_products_and_branchs() {
        let old = legacy_namespace_for("sb-", "feature/x").unwrap();
        let new = namespace_for("sb-", "feature/x");
        assert_ne!(old, new);
        let answering = |labels: serde_json::Value, branch: &'static str| {
            let old = old.clone();
            cluster_answering_by_path(move |path| {
                if path.ends_with(&format!("/{old}")) {
                    (200, namespace_json(&old, labels.clone(), branch))
                } else {
                    let missing = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
                    (404, missing)
                }
            })
        };
        let ours = serde_json::json!({MANAGED_BY: MANAGED_BY_VALUE, PRODUCT_LABEL: "shop"});
        let (cluster, _) = answering(ours.clone(), "feature/x");
        assert_eq!(
            locate(&cluster, "sb-", "feature/x", "shop").await.unwrap(),
            old
        );
        // Another branch that once hashed to the same short name, or another product: not ours.
        let (cluster, _) = answering(ours, "feature_x");
        assert_eq!(
            locate(&cluster, "sb-", "feature/x", "shop").await.unwrap(),
            new
        );
        let billing = serde_json::json!({MANAGED_BY: MANAGED_BY_VALUE, PRODUCT_LABEL: "billing"});
        let (cluster, _) = answering(billing, "feature/x");
        assert_eq!(
            locate(&cluster, "sb-", "feature/x", "shop").await.unwrap(),
            new
        );
        // A plain branch had no hash: one name only (read, to check whose sandbox it is).
        let missing = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
        let (cluster, seen) = cluster_answering(404, missing);
        assert_eq!(
            locate(&cluster, "sb-", "main", "shop").await.unwrap(),
            "sb-main"
        );
        assert_eq!(*seen.lock().unwrap(), ["GET"]);
    }

    /// `feature-x-<6 digits>` is a plain branch whose name is today's name of itself and the
    /// old name of `feature/x`'s sandbox: pushing it must neither take that sandbox over (`up`)
    /// nor find it (`down`, `status`, serve closing the pull request).
    #[tokio::test]
    async fn a_branch_named_like_another_branchs_old_namespace_is_refused() {
        let old = legacy_namespace_for("sb-", "feature/x").unwrap();
        let lookalike = old.strip_prefix("sb-").unwrap().to_owned();
        assert_eq!(namespace_for("sb-", &lookalike), old);
        let ours = serde_json::json!({MANAGED_BY: MANAGED_BY_VALUE, PRODUCT_LABEL: "shop"});
        let (cluster, seen) = cluster_answering(200, namespace_json(&old, ours, "feature/x"));
        let wanted = SandboxRecord {
            branch: lookalike.clone(),
            ..record_of(&old)
        };
        let e = ensure(&cluster, &wanted).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("namespace `{old}` is the sandbox of branch `feature/x`, not of `{lookalike}`")
        );
        assert!(e.hint().unwrap().contains("rename this branch"), "{e:?}");
        let e = locate(&cluster, "sb-", &lookalike, "shop")
            .await
            .unwrap_err();
        assert!(matches!(e, RecordError::OtherBranch { .. }), "{e:?}");
        assert_eq!(*seen.lock().unwrap(), ["GET", "GET"], "only reads");
        // Its own branch still re-ups it.
        let own = SandboxRecord {
            branch: "feature/x".into(),
            ..record_of(&old)
        };
        assert!(ensure(&cluster, &own).await.is_ok());
    }

    #[test]
    fn a_namespace_without_the_label_has_no_record() {
        let ns = namespace(&[(PRODUCT_LABEL, "shop")], &[("sandbox.dev/branch", "x")]);
        assert!(SandboxRecord::from_namespace(&ns).is_none());
        let ns = namespace(&[(MANAGED_BY, "helm")], &[]);
        assert!(SandboxRecord::from_namespace(&ns).is_none());
    }

    #[test]
    fn the_record_reads_back_what_it_wrote() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let record = SandboxRecord {
            namespace: "sb-x".into(),
            product: "shop".into(),
            branch: "feature/x".into(),
            owner: "ada".into(),
            created_at: Some(now),
            updated_at: Some(now),
            expires_at: Some("2026-11-27T10:00:00Z".parse().unwrap()),
            repos: BTreeMap::from([(
                "backend".into(),
                RepoAt {
                    branch: "main".into(),
                    sha: "121dbcc".into(),
                    fell_back: true,
                },
            )]),
            prs: vec![
                PrNumber {
                    repo: "o/backend".into(),
                    number: 42,
                },
                PrNumber {
                    repo: "o/frontend".into(),
                    number: 7,
                },
            ],
            ..SandboxRecord::default()
        };
        let annotations = record.to_annotations();
        assert_eq!(annotations["sandbox.dev/pr-repo"], "o/frontend");
        assert_eq!(annotations["sandbox.dev/prs"], "o/backend#42 o/frontend#7");
        assert_eq!(
            annotations["sandbox.dev/repos"],
            r#"{"backend":{"branch":"main","sha":"121dbcc","fell_back":true}}"#
        );
        let pairs: Vec<(&str, &str)> = annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let ns = namespace(
            &[(MANAGED_BY, MANAGED_BY_VALUE), (PRODUCT_LABEL, "shop")],
            &pairs,
        );
        assert_eq!(SandboxRecord::from_namespace(&ns), Some(record));
    }

    #[test]
    fn status_url_and_inventory_are_updates() {
        let mut update = Update::status(Status::Ready);
        update.url = Some("http://x".into());
        update.inventory = Some(BTreeSet::from([ObjectRef::new("v1", "Service", "api")]));
        let a: BTreeMap<String, String> = update
            .annotations()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap()))
            .collect();
        assert_eq!(a["sandbox.dev/status"], "ready");
        assert_eq!(a["sandbox.dev/url"], "http://x");
        assert_eq!(a["sandbox.dev/inventory"], r#"["v1/Service/api"]"#);
        let pairs: Vec<(&str, &str)> = a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let record =
            SandboxRecord::from_namespace(&namespace(&[(MANAGED_BY, MANAGED_BY_VALUE)], &pairs))
                .unwrap();
        assert_eq!(record.status, Some(Status::Ready));
        assert_eq!(record.inventory.len(), 1);
    }

    #[test]
    fn the_last_error_is_recorded_cut_short_and_removed_by_a_success() {
        let long = "é".repeat(MAX_LAST_ERROR + 10);
        let failed = Update {
            last_error: Some(Some(long)),
            ..Update::status(Status::Failed)
        };
        let patch = failed.patch();
        let written = patch["metadata"]["annotations"]["sandbox.dev/last-error"]
            .as_str()
            .unwrap();
        assert_eq!(written.chars().count(), MAX_LAST_ERROR);
        assert!(written.ends_with('…'));
        let record = SandboxRecord::from_namespace(&namespace(
            &[(MANAGED_BY, MANAGED_BY_VALUE)],
            &[("sandbox.dev/last-error", written)],
        ))
        .unwrap();
        assert_eq!(record.last_error.as_deref(), Some(written));
        let ready = Update {
            last_error: Some(None),
            ..Update::status(Status::Ready)
        };
        let patch = ready.patch();
        assert_eq!(
            patch["metadata"]["annotations"]["sandbox.dev/last-error"],
            serde_json::Value::Null
        );
        assert_eq!(
            patch["metadata"]["annotations"]["sandbox.dev/status"],
            "ready"
        );
        let untouched = Update::status(Status::Deploying).patch();
        assert!(untouched["metadata"]["annotations"]
            .get("sandbox.dev/last-error")
            .is_none());
    }

    #[test]
    fn sleep_is_recorded_and_forgotten_and_idleness_counts_from_the_last_use() {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let asleep = Update {
            sleep: Some(Some(Sleep {
                since: Some(now),
                replicas: BTreeMap::from([("Deployment/api".into(), 2)]),
                ..Sleep::default()
            })),
            ..Update::status(Status::Sleeping)
        };
        let a = asleep.annotations();
        // (None suspended: `sleep-suspended` is removed, not written.)
        let pairs: Vec<(&str, &str)> = a
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_deref()?)))
            .collect();
        let record =
            SandboxRecord::from_namespace(&namespace(&[(MANAGED_BY, MANAGED_BY_VALUE)], &pairs))
                .unwrap();
        assert_eq!(record.status, Some(Status::Sleeping));
        let sleep = record.sleep.unwrap();
        assert_eq!(sleep.since, Some(now));
        assert_eq!(sleep.replicas["Deployment/api"], 2);
        let awake = Update {
            sleep: Some(None),
            ..Update::default()
        };
        assert_eq!(awake.annotations()["sandbox.dev/sleep-replicas"], None);

        let hour = jiff::SignedDuration::from_hours(1);
        let mut r = SandboxRecord {
            updated_at: Some(now),
            idle_after: Some(Duration::from_secs(3600)),
            ..SandboxRecord::default()
        };
        assert!(!r.idle(now + jiff::SignedDuration::from_mins(59)));
        assert!(r.idle(now + hour));
        r.last_used = Some(now + hour);
        assert!(!r.idle(now + hour), "a wake or extend counts as use");
        r.sleep = Some(Sleep::default());
        assert!(!r.idle(now + hour * 3), "asleep already");
        r.sleep = None;
        r.idle_after = None;
        assert!(!r.idle(now + hour * 100), "no idle_after, never idle");
    }

    #[test]
    fn the_cronjobs_a_sleep_suspended_are_recorded_read_back_and_forgotten() {
        let read = |update: &Update| {
            let a = update.annotations();
            let pairs: Vec<(&str, &str)> = a
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_deref()?)))
                .collect();
            let labels = [(MANAGED_BY, MANAGED_BY_VALUE)];
            SandboxRecord::from_namespace(&namespace(&labels, &pairs)).unwrap()
        };
        let suspended = BTreeSet::from(["nightly".to_owned(), "report".to_owned()]);
        let asleep = Update {
            sleep: Some(Some(Sleep {
                suspended: suspended.clone(),
                ..Sleep::default()
            })),
            ..Update::status(Status::Sleeping)
        };
        assert_eq!(
            asleep.annotations()["sandbox.dev/sleep-suspended"].as_deref(),
            Some(r#"["nightly","report"]"#)
        );
        assert_eq!(read(&asleep).sleep.unwrap().suspended, suspended);

        // None suspended: no annotation (and none left from an earlier sleep).
        let none = Update {
            sleep: Some(Some(Sleep::default())),
            ..Update::default()
        };
        assert_eq!(none.annotations()["sandbox.dev/sleep-suspended"], None);
        assert!(read(&none).sleep.unwrap().suspended.is_empty());

        // A sleep recorded before CronJobs were suspended reads as none suspended.
        let older = [
            ("sandbox.dev/sleep-replicas", r#"{"Deployment/api":2}"#),
            ("sandbox.dev/status", "sleeping"),
        ];
        let record =
            SandboxRecord::from_namespace(&namespace(&[(MANAGED_BY, MANAGED_BY_VALUE)], &older))
                .unwrap();
        let sleep = record.sleep.unwrap();
        assert_eq!(sleep.replicas["Deployment/api"], 2);
        assert!(sleep.suspended.is_empty());

        let awake = Update {
            sleep: Some(None),
            ..Update::default()
        };
        assert_eq!(awake.annotations()["sandbox.dev/sleep-suspended"], None);
        assert!(awake
            .annotations()
            .contains_key("sandbox.dev/sleep-suspended"));
    }

    #[test]
    fn recorded_pull_requests_are_read_back() {
        let one = |k: &str| match k {
            "pr-repo" => Some("o/backend"),
            "pr-number" => Some("42"),
            _ => None,
        };
        let pr = |repo: &str, number| PrNumber {
            repo: repo.into(),
            number,
        };
        assert_eq!(recorded_prs(one), [pr("o/backend", 42)]);
        let many = |k: &str| match k {
            "prs" => Some("o/backend#42 o/frontend#7"),
            "pr-repo" => Some("o/frontend"),
            "pr-number" => Some("7"),
            _ => None,
        };
        assert_eq!(
            recorded_prs(many),
            [pr("o/backend", 42), pr("o/frontend", 7)]
        );
        assert!(recorded_prs(|_| None).is_empty());
        assert!(recorded_prs(|k| (k == "pr-number").then_some("x")).is_empty());
    }

    #[test]
    fn plain_branch_keeps_its_name() {
        assert_eq!(namespace_for("sb-", "feature-x"), "sb-feature-x");
        assert_eq!(namespace_for("sb-", "main"), "sb-main");
    }

    #[test]
    fn changed_branch_gets_a_hash_so_lookalikes_never_collide() {
        let slash = namespace_for("sb-", "feature/x");
        let dash = namespace_for("sb-", "feature-x");
        assert_ne!(slash, dash);
        assert!(slash.starts_with("sb-feature-x--"), "{slash}");
        assert_eq!(slash.len(), "sb-feature-x--".len() + 16);
        let upper = namespace_for("sb-", "Feature_X");
        assert!(upper.starts_with("sb-feature-x-"), "{upper}");
        assert_ne!(upper, slash);
    }

    #[test]
    fn long_branch_is_cut_to_63_with_hash() {
        let long = "a".repeat(100);
        let ns = namespace_for("sb-", &long);
        assert_eq!(ns.len(), 63);
        assert!(is_dns1123_label(&ns), "{ns}");
        assert_ne!(ns, namespace_for("sb-", &"a".repeat(99)));
    }

    /// With a 6-digit hash and `-`, the branch `feature-x-<6 digits of sha256("feature/x")>` was
    /// kept as it is and named exactly the namespace of `feature/x`: anyone could take over
    /// another branch's sandbox by pushing a branch so named.
    #[test]
    fn no_plain_branch_can_be_named_like_a_hashed_one() {
        let hashed = namespace_for("sb-", "feature/x");
        let lookalike = hashed.trim_start_matches("sb-");
        assert_ne!(namespace_for("sb-", lookalike), hashed);
        let old = legacy_namespace_for("sb-", "feature/x").unwrap();
        assert_eq!(
            namespace_for("sb-", old.trim_start_matches("sb-")),
            old,
            "the old scheme let them meet"
        );
        assert_eq!(legacy_namespace_for("sb-", "main"), None);
    }

    #[test]
    fn odd_characters_collapse_and_stay_valid() {
        for branch in [
            "--x--", "feat//x", "x.y.z", "ÜBER", "a_-_b/", "123", "///", "",
        ] {
            let ns = namespace_for("sb-", branch);
            assert!(is_dns1123_label(&ns), "{branch} → {ns}");
        }
    }
}

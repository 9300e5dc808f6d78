//! The pipeline of `sandbox up`, stage after stage, and the offline part of it that `render` and
//! `values` share. Each stage's module does the work; this file only connects them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use crate::cli::OnFailure;
use crate::kube::{connect, Cluster, ClusterOptions};
use crate::lock;
use crate::pipeline::apply::{self, NamespaceMeta};
use crate::pipeline::checkout::{self, Checkout, RepoSpec};
use crate::pipeline::config::{Config, Service};
use crate::pipeline::handover::{self, RepoReport, Timings, UpReport};
use crate::pipeline::inventory;
use crate::pipeline::plan::{
    self, object_key, Plan, RenderedService, ANNOTATION_PREFIX, SANDBOX_LABEL,
};
use crate::pipeline::render::{Manifest, Renderer, TemplateSource};
use crate::pipeline::smoke;
use crate::pipeline::sops::Identities;
use crate::pipeline::values::{self, SetValue, Values, REDACTED};
use crate::progress::Reporter;

/// Everything `up` needs to know, resolved from the command line and `sandbox.yaml`.
pub struct Settings {
    pub config: Config,
    pub branch: String,
    pub namespace: String,
    /// Where repo mirrors and checked-out trees are kept.
    pub cache_dir: PathBuf,
    pub sets: Vec<SetValue>,
    pub owner: String,
    pub ttl: Duration,
    /// More `sandbox.dev/…` annotations for the namespace (e.g. the pull request it previews).
    pub extra_annotations: BTreeMap<String, String>,
}

impl Settings {
    pub fn new(
        config: Config,
        branch: &str,
        sets: Vec<SetValue>,
        ttl: Option<Duration>,
    ) -> Result<Settings> {
        for set in &sets {
            if config.service(&set.service).is_none() {
                let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
                let mut msg = format!(
                    "--set names service `{}`, which is not in {}",
                    set.service,
                    config.path.display()
                );
                if let Some(s) = crate::pipeline::config::suggest(&set.service, &names) {
                    msg.push_str(&format!(" ({s})"));
                }
                anyhow::bail!(msg);
            }
        }
        Ok(Settings {
            namespace: plan::namespace_for(&config.namespace_prefix, branch),
            branch: branch.to_owned(),
            cache_dir: default_cache_dir(),
            sets,
            owner: default_owner(),
            ttl: ttl.unwrap_or(config.ttl),
            extra_annotations: BTreeMap::new(),
            config,
        })
    }
}

/// `$SANDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/sandbox`, else `~/.cache/sandbox`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SANDBOX_CACHE_DIR") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sandbox")
}

fn default_owner() -> String {
    std::env::var("SANDBOX_OWNER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

/// The offline stages' output: what each repo resolved to, each service's values, and the plan.
pub struct Prepared {
    pub checkouts: Vec<Checkout>,
    pub values: BTreeMap<String, Values>,
    pub plan: Plan,
    pub checkout_time: Duration,
    pub rest_time: Duration,
}

/// Stages 2–5: checkout → values → render → plan. With `redact`, templates see `<redacted>`
/// for every secret and Secret objects' data is masked, so the output can be shown.
pub async fn prepare(settings: &Settings, redact: bool, reporter: &Reporter) -> Result<Prepared> {
    let config = &settings.config;
    let started = Instant::now();
    let used: Vec<&str> = {
        let mut v: Vec<&str> = config.services.iter().map(|s| s.repo.as_str()).collect();
        v.sort();
        v.dedup();
        v
    };
    let specs: Vec<RepoSpec> = used
        .iter()
        .map(|name| {
            let r = &config.repos[*name];
            RepoSpec {
                name: r.name.clone(),
                url: r.url.clone(),
                fallback_branch: r.fallback_branch.clone(),
            }
        })
        .collect();
    let checkouts =
        checkout::checkout_all(&specs, &settings.branch, &settings.cache_dir.join("git"))
            .await
            .with_context(|| format!("could not check out branch `{}`", settings.branch))?;
    for c in &checkouts {
        let note = if c.fell_back {
            format!(
                "  (no branch `{}`: fell back to `{}`)",
                c.requested_branch, c.branch
            )
        } else {
            String::new()
        };
        reporter.info(&format!(
            "  {:<20} {} {}{note}",
            c.repo,
            c.branch,
            c.short_sha()
        ));
    }
    let checkout_time = started.elapsed();

    let rest = Instant::now();
    let identities = Identities::from_env().context("could not load the age keys for sops")?;
    let mut all_values = BTreeMap::new();
    let mut rendered = Vec::new();
    for service in &config.services {
        let checkout = checkouts
            .iter()
            .find(|c| c.repo == service.repo)
            .expect("every used repo is checked out");
        let repo_files = values::RepoFiles {
            repo: &checkout.repo,
            branch: &checkout.branch,
            dir: &checkout.dir,
        };
        let v = values::layer(service, &repo_files, &identities, &settings.sets).with_context(
            || {
                format!(
                    "could not assemble the values of service `{}`",
                    service.name
                )
            },
        )?;
        reporter.add_secrets(v.secret_strings());
        let context = render_context(
            settings,
            service,
            checkout,
            if redact {
                v.redacted()
            } else {
                v.reveal().clone()
            },
        );
        rendered.push(render_service(config, service, checkout, &context, redact)?);
        all_values.insert(service.name.clone(), v);
    }
    let plan = plan::plan(&settings.namespace, rendered)
        .context("the rendered objects cannot be deployed")?;
    Ok(Prepared {
        checkouts,
        values: all_values,
        plan,
        checkout_time,
        rest_time: rest.elapsed(),
    })
}

/// What a service's templates see.
pub fn render_context(
    settings: &Settings,
    service: &Service,
    checkout: &Checkout,
    values: serde_json::Value,
) -> serde_json::Value {
    let services: serde_json::Map<String, serde_json::Value> = settings
        .config
        .services
        .iter()
        .map(|s| {
            let env = s.name.to_uppercase().replace('-', "_");
            (
                s.name.clone(),
                serde_json::json!({
                    "name": s.name,
                    "host": format!("{}.{}.svc", s.name, settings.namespace),
                    // Without cluster DNS, pods find Services through these variables.
                    "host_env": format!("{env}_SERVICE_HOST"),
                    "port_env": format!("{env}_SERVICE_PORT"),
                }),
            )
        })
        .collect();
    serde_json::json!({
        "values": values,
        "sandbox": {
            "name": settings.config.name,
            "branch": settings.branch,
            "namespace": settings.namespace,
            "owner": settings.owner,
        },
        "repo": {
            "name": checkout.repo,
            "url": checkout.url,
            "branch": checkout.branch,
            "requested_branch": checkout.requested_branch,
            "sha": checkout.sha,
            "short_sha": checkout.short_sha(),
            "fell_back": checkout.fell_back,
        },
        "service": services[&service.name].clone(),
        "services": services,
    })
}

fn render_service(
    config: &Config,
    service: &Service,
    checkout: &Checkout,
    context: &serde_json::Value,
    redact: bool,
) -> Result<RenderedService> {
    let renderer = Renderer::new(Some(checkout.dir.clone()));
    let render_all = |paths: &[PathBuf]| -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(config.dir.join(path))
                .with_context(|| format!("could not read template {}", path.display()))?;
            let template = TemplateSource {
                name: path.display().to_string(),
                text,
            };
            let mut manifests = renderer
                .render(&template, context)
                .with_context(|| format!("could not render service `{}`", service.name))?;
            if redact {
                manifests.iter_mut().for_each(redact_secret_object);
            }
            out.extend(manifests);
        }
        Ok(out)
    };
    Ok(RenderedService {
        name: service.name.clone(),
        depends_on: service.depends_on.clone(),
        preflight: render_all(&service.preflight)?,
        objects: render_all(&service.templates)?,
        smoke: render_all(&service.smoke)?,
    })
}

/// Mask the values of a Secret object.
fn redact_secret_object(m: &mut Manifest) {
    if m.kind() != "Secret" {
        return;
    }
    for field in ["data", "stringData"] {
        if let Some(map) = m.object.get_mut(field).and_then(|v| v.as_object_mut()) {
            for v in map.values_mut() {
                *v = REDACTED.into();
            }
        }
    }
}

/// How `up` behaves around failures and other runs.
#[derive(Debug, Clone, Copy)]
pub struct UpOptions {
    pub on_failure: OnFailure,
    /// Wait for another run's lock (else fail at once).
    pub wait_for_lock: bool,
}

/// `sandbox up`: the whole pipeline.
pub async fn up(
    settings: &Settings,
    cluster: &ClusterOptions,
    options: UpOptions,
    reporter: &Reporter,
) -> Result<UpReport> {
    let started = Instant::now();
    reporter.info(&format!(
        "sandbox {} @ {} → namespace {}",
        settings.config.name, settings.branch, settings.namespace
    ));
    // The cluster is asked while the repos are fetched; an unreachable one fails before anything changes.
    let (cluster, prepared) = tokio::join!(connect(cluster), prepare(settings, false, reporter));
    let prepared = prepared?;
    let cluster = cluster.context("cannot deploy the sandbox")?;
    let prepare_time = started.elapsed();

    let previous = ensure_sandbox_namespace(&cluster, settings, &prepared.checkouts).await?;
    let lock = lock::acquire(
        &cluster,
        &settings.namespace,
        &lock::holder_identity(&settings.owner),
        options.wait_for_lock,
        reporter,
    )
    .await?;
    let changed = Mutex::new(Vec::new());
    let result = rollout(
        &cluster,
        settings,
        &prepared,
        previous.as_ref(),
        &changed,
        reporter,
    )
    .await;
    let (step_timings, deploy_time, smoke_time, url) = match result {
        Ok(done) => {
            lock.release().await;
            done
        }
        Err(error) => {
            reporter.abandon();
            let _ = inventory::annotate(&cluster, &settings.namespace, status("failed")).await;
            let changed = changed.into_inner().expect("not poisoned");
            let error = match options.on_failure {
                OnFailure::Keep => error,
                OnFailure::Rollback => {
                    match rollback(&cluster, settings, previous.is_none(), &changed, reporter).await
                    {
                        Ok(()) => {
                            error.context("the sandbox was rolled back to its last good revision")
                        }
                        Err(e) => error.context(format!("and rolling back failed too: {e:#}")),
                    }
                }
                OnFailure::Destroy if previous.is_none() => {
                    reporter.info(&format!(
                        "--on-failure destroy: deleting `{}`",
                        settings.namespace
                    ));
                    match crate::commands::delete_sandbox(&cluster, &settings.namespace, reporter)
                        .await
                    {
                        Ok(()) => error,
                        Err(e) => error.context(format!(
                            "and destroying the failed sandbox failed too: {e:#}"
                        )),
                    }
                }
                OnFailure::Destroy => {
                    error.context("the sandbox existed before this up, so it was kept")
                }
            };
            lock.release().await;
            return Err(error);
        }
    };

    let timings = Timings {
        total: started.elapsed().as_secs_f64(),
        prepare: prepare_time.as_secs_f64(),
        checkout: prepared.checkout_time.as_secs_f64(),
        values_render_plan: prepared.rest_time.as_secs_f64(),
        deploy: deploy_time.as_secs_f64(),
        smoke: smoke_time.as_secs_f64(),
        critical_path: handover::critical_path(&prepared.plan.steps, &step_timings),
        steps: step_timings
            .iter()
            .map(|t| (t.id.clone(), t.started.as_secs_f64(), t.ready.as_secs_f64()))
            .collect(),
    };
    Ok(UpReport {
        sandbox: settings.config.name.clone(),
        branch: settings.branch.clone(),
        namespace: settings.namespace.clone(),
        url,
        repos: prepared
            .checkouts
            .iter()
            .map(|c| RepoReport {
                repo: c.repo.clone(),
                branch: c.branch.clone(),
                sha: c.sha.clone(),
                fell_back: c.fell_back,
            })
            .collect(),
        services: settings
            .config
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        timings,
    })
}

fn status(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(format!("{ANNOTATION_PREFIX}status"), value.to_owned())])
}

/// Under the lock: deploy what changed, smoke-test, find the URL, prune what is no longer
/// rendered, and record the result.
async fn rollout(
    cluster: &Cluster,
    settings: &Settings,
    prepared: &Prepared,
    previous: Option<&Namespace>,
    changed: &Mutex<Vec<String>>,
    reporter: &Reporter,
) -> Result<(Vec<apply::StepTiming>, Duration, Duration, String)> {
    let ns = settings.namespace.as_str();
    let plan = &prepared.plan;
    let before = previous.map(inventory::recorded).unwrap_or_default();
    let rendered: BTreeSet<String> = plan.objects().map(object_key).collect();
    let live = inventory::live(cluster, ns, plan, &before).await?;
    // Record what may exist before creating it, so an interrupted run leaves nothing untracked.
    if !before.is_superset(&rendered) {
        inventory::write_inventory(cluster, ns, &before.union(&rendered).cloned().collect())
            .await?;
    }
    inventory::annotate(cluster, ns, status("deploying")).await?;

    let deploy_started = Instant::now();
    let step_timings = apply::deploy(
        cluster,
        plan,
        &live,
        changed,
        settings.config.timeouts.service,
        reporter,
    )
    .await
    .with_context(|| format!("could not deploy sandbox `{ns}`"))?;
    let deploy_time = deploy_started.elapsed();

    let stale: Vec<String> = before.difference(&rendered).cloned().collect();
    let nothing_changed = changed.lock().expect("not poisoned").is_empty() && stale.is_empty();
    let was_ready = previous
        .and_then(|n| n.metadata.annotations.as_ref())
        .and_then(|a| a.get(&format!("{ANNOTATION_PREFIX}status")))
        .is_some_and(|s| s == "ready");
    let smoke_started = Instant::now();
    if nothing_changed && was_ready {
        reporter.info("nothing changed since the last successful up: its smoke tests stand");
    } else {
        smoke::run(cluster, plan, settings.config.timeouts.smoke, reporter)
            .await
            .with_context(|| format!("sandbox `{ns}` is up but its smoke tests failed"))?;
    }
    let smoke_time = smoke_started.elapsed();

    let context = serde_json::json!({"sandbox": {"name": settings.config.name, "branch": settings.branch, "namespace": ns}});
    let url = handover::url(cluster, &settings.config.url, ns, &context)
        .await
        .context("the sandbox is up but its URL could not be found")?;

    if !stale.is_empty() {
        let pruned = inventory::delete_keys(cluster, ns, &stale).await?;
        for key in &pruned {
            reporter.info(&format!("  pruned {key} (no longer rendered)"));
        }
    }
    if before != rendered {
        inventory::write_inventory(cluster, ns, &rendered).await?;
    }
    if !nothing_changed || !was_ready {
        inventory::save_last_good(cluster, ns, plan).await?;
    }
    let mut annotations = status("ready");
    annotations.insert(format!("{ANNOTATION_PREFIX}url"), url.clone());
    inventory::annotate(cluster, ns, annotations).await?;
    Ok((step_timings, deploy_time, smoke_time, url))
}

/// Put every object this `up` changed back to its last good revision (or remove it when it has
/// none), and wait until the restored workloads are ready again.
async fn rollback(
    cluster: &Cluster,
    settings: &Settings,
    created_now: bool,
    changed: &[String],
    reporter: &Reporter,
) -> Result<()> {
    let ns = settings.namespace.as_str();
    if created_now {
        reporter.info(&format!(
            "--on-failure rollback: `{ns}` did not exist before; deleting it"
        ));
        return crate::commands::delete_sandbox(cluster, ns, reporter).await;
    }
    let last_good = inventory::load_last_good(cluster, ns).await?;
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
                inventory::delete_keys(cluster, ns, [key]).await?;
            }
        }
    }
    let timeout = settings.config.timeouts.service;
    let waits = restored.iter().map(|o| {
        let kind = o["kind"].as_str().unwrap_or_default().to_owned();
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        async move {
            crate::pipeline::wait::until_ready(&cluster.client, ns, &kind, &name, timeout).await
        }
    });
    futures::future::try_join_all(waits)
        .await
        .context("the restored revision did not become ready")?;
    inventory::annotate(cluster, ns, status("ready")).await?;
    Ok(())
}

/// The namespace with the tool's labels and what it records: branch, owner, times, SHAs.
/// Returns the namespace as it was before (None: this call created it).
async fn ensure_sandbox_namespace(
    cluster: &Cluster,
    settings: &Settings,
    checkouts: &[Checkout],
) -> Result<Option<Namespace>> {
    let api: Api<Namespace> = Api::all(cluster.client.clone());
    let existing = api.get_opt(&settings.namespace).await.ok().flatten();
    let now = jiff::Timestamp::now();
    // A re-up keeps the original creation time; the expiry moves with each up.
    let created = existing
        .as_ref()
        .and_then(|n| n.metadata.annotations.as_ref())
        .and_then(|a| a.get(&format!("{ANNOTATION_PREFIX}created-at")).cloned())
        .unwrap_or_else(|| now.to_string());
    let expires = now
        .checked_add(
            jiff::SignedDuration::try_from(settings.ttl)
                .unwrap_or(jiff::SignedDuration::from_hours(48)),
        )
        .unwrap_or(now);
    let mut annotations = BTreeMap::new();
    let a = |k: &str| format!("{ANNOTATION_PREFIX}{k}");
    annotations.insert(a("branch"), settings.branch.clone());
    annotations.insert(a("owner"), settings.owner.clone());
    annotations.insert(a("created-at"), created);
    annotations.insert(a("updated-at"), now.to_string());
    annotations.insert(a("expires-at"), expires.to_string());
    let shas: BTreeMap<&str, serde_json::Value> = checkouts
        .iter()
        .map(|c| {
            (
                c.repo.as_str(),
                serde_json::json!({"branch": c.branch, "sha": c.sha, "fell_back": c.fell_back}),
            )
        })
        .collect();
    annotations.insert(
        a("repos"),
        serde_json::to_string(&shas).expect("serializable"),
    );
    for (k, v) in &settings.extra_annotations {
        annotations.insert(a(k), v.clone());
    }
    let mut labels = BTreeMap::new();
    labels.insert(SANDBOX_LABEL.to_owned(), settings.config.name.clone());
    apply::ensure_namespace(
        cluster,
        &settings.namespace,
        &NamespaceMeta {
            labels,
            annotations,
        },
    )
    .await
    .with_context(|| format!("could not prepare namespace `{}`", settings.namespace))?;
    Ok(existing.filter(|n| n.metadata.deletion_timestamp.is_none()))
}

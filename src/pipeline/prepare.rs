//! Stages 2–5, the part of the pipeline before anything changes, that every operation which
//! renders shares: checkout → values → images → render → plan, for a [`Target`] (a cluster, or
//! none). One entry point, [`prepare`] (and [`images_only`], which stops once images are resolved).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::kube::{connect, Cluster, ClusterOptions};
use crate::pipeline::apply;
use crate::pipeline::chart::{self, Capabilities, ChartSource, Helm, Hooked};
use crate::pipeline::checkout::{self, Checkout, RepoSpec, RepoTree};
use crate::pipeline::config::{ChartFrom, ChartRef, Config, ImageSpec, Service};
use crate::pipeline::context::{RenderContext, SandboxInfo};
use crate::pipeline::images::{
    self, BuildPlan, ImageInfo, ImageName, ImagesError, Mode, Platform, Registries, RegistryAccess,
    Resolver, Wanted,
};
use crate::pipeline::plan::{self, Plan, RenderedService};
use crate::pipeline::render::{Manifest, Renderer, TemplateSource};
use crate::pipeline::settings::Settings;
use crate::pipeline::sops::Identities;
use crate::pipeline::values::{self, Values};
use crate::progress::Reporter;
use crate::record;
use crate::redact::REDACTED;

/// The offline stages' output: what each repo resolved to, each service's values, and the plan.
pub(crate) struct Prepared {
    pub(crate) checkouts: Vec<Checkout>,
    pub(crate) values: BTreeMap<String, Values>,
    /// What each chart service's chart is given (values and `global.sandbox`), as shown: with
    /// secrets redacted unless they were revealed.
    pub(crate) chart_values: BTreeMap<String, serde_json::Value>,
    pub(crate) plan: Plan,
    /// The cluster it was prepared for (checked to serve every kind of the plan), if any.
    pub(crate) cluster: Option<Cluster>,
    /// What charts were told about the cluster.
    pub(crate) capabilities: Capabilities,
    pub(crate) checkout_time: Duration,
    /// Resolving (and building) images.
    pub(crate) images_time: Duration,
    /// Values, render and plan.
    pub(crate) rest_time: Duration,
}

impl Prepared {
    /// Every decrypted secret, to keep out of anything shown.
    pub(crate) fn secret_strings(&self) -> Vec<String> {
        self.values
            .values()
            .flat_map(|v| v.secret_strings())
            .collect()
    }
}

/// Whether what is rendered may be shown: then templates see `<redacted>` for every secret and
/// Secret objects' data is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    Reveal,
    Redact,
}

impl Secrets {
    /// From a `--reveal` flag.
    pub(crate) fn revealed_if(reveal: bool) -> Secrets {
        if reveal {
            Secrets::Reveal
        } else {
            Secrets::Redact
        }
    }
}

/// Stages 2–3, which need no cluster: every repo checked out and every service's values (and
/// helm found, when a service is a chart).
struct Gathered {
    checkouts: Vec<Checkout>,
    values: BTreeMap<String, Values>,
    helm: Option<Helm>,
    checkout_time: Duration,
    values_time: Duration,
}

/// What the sandbox is prepared for: the cluster it will run on, or none.
pub(crate) enum Target<'a> {
    /// No cluster: charts are rendered for `helm:` in sandbox.yaml, images for this machine's
    /// platform, resolved as `mode` says (`Offline`: no registry is asked).
    Local(Mode),
    /// The cluster, asked while the repos are fetched: charts are rendered for its version and
    /// APIs (as `helm upgrade` would), images resolved for its nodes' platform, and the plan
    /// checked against what it serves. `purpose` says what could not be done if it does not
    /// answer (`cannot deploy the sandbox`).
    Cluster {
        options: &'a ClusterOptions,
        mode: Mode,
        purpose: &'static str,
    },
    /// The cluster if it answers within `wait`, else [`Target::Local`] with `Mode::Offline`.
    Reachable {
        options: &'a ClusterOptions,
        wait: Duration,
        mode: Mode,
    },
}

/// What rendering needs from outside the repositories: the cluster (if any), what charts are
/// told about it, and each service's image.
pub(crate) struct Aimed {
    pub(crate) cluster: Option<Cluster>,
    pub(crate) capabilities: Capabilities,
    pub(crate) images: BTreeMap<String, ImageInfo>,
    pub(crate) images_time: Duration,
}

/// Stages 2–5 for `target`: checkout → values → images → render → plan. The one sequence every
/// operation that renders (`up`, `render`, `values`, `diff`, `validate`) goes through.
pub(crate) async fn prepare(
    settings: &Settings,
    secrets: Secrets,
    target: Target<'_>,
    reporter: &Reporter,
) -> Result<Prepared> {
    let (gathered, aimed) = gather_and_aim(settings, target, reporter).await?;
    let prepared = render_and_plan(settings, gathered, secrets, aimed, reporter).await?;
    if let Some(cluster) = &prepared.cluster {
        apply::check_served(cluster, &prepared.plan)
            .context("the rendered objects cannot be deployed")?;
    }
    Ok(prepared)
}

/// Stages 2–3½ for `target`: every service's image resolved (built, waited for) as `sandbox
/// images` shows them, nothing rendered.
pub(crate) async fn images_only(
    settings: &Settings,
    target: Target<'_>,
    reporter: &Reporter,
) -> Result<Aimed> {
    Ok(gather_and_aim(settings, target, reporter).await?.1)
}

/// Gather (stages 2–3) while the cluster is asked, then aim at it.
async fn gather_and_aim(
    settings: &Settings,
    target: Target<'_>,
    reporter: &Reporter,
) -> Result<(Gathered, Aimed)> {
    match target {
        Target::Local(mode) => {
            let gathered = gather(settings, reporter).await?;
            let aimed = local_target(settings, &gathered, mode, reporter).await?;
            Ok((gathered, aimed))
        }
        Target::Cluster {
            options,
            mode,
            purpose,
        } => {
            // An unreachable cluster fails before anything changes, but a broken repo is said first.
            let (cluster, gathered) = tokio::join!(connect(options), gather(settings, reporter));
            let gathered = gathered?;
            let cluster = cluster.context(purpose)?;
            let aimed = cluster_target(cluster, settings, &gathered, mode, reporter).await?;
            Ok((gathered, aimed))
        }
        Target::Reachable {
            options,
            wait,
            mode,
        } => {
            let reachable = async {
                tokio::time::timeout(wait, connect(options))
                    .await
                    .ok()
                    .and_then(Result::ok)
            };
            let (cluster, gathered) = tokio::join!(reachable, gather(settings, reporter));
            let gathered = gathered?;
            let aimed = match cluster {
                Some(cluster) => {
                    cluster_target(cluster, settings, &gathered, mode, reporter).await?
                }
                None => local_target(settings, &gathered, Mode::Offline, reporter).await?,
            };
            Ok((gathered, aimed))
        }
    }
}

/// Without a cluster: charts for `helm:` in sandbox.yaml, images for this machine's platform.
async fn local_target(
    settings: &Settings,
    gathered: &Gathered,
    mode: Mode,
    reporter: &Reporter,
) -> Result<Aimed> {
    let capabilities = Capabilities {
        kube_version: settings.config.helm.kube_version.clone(),
        api_versions: settings.config.helm.api_versions.clone(),
    };
    let started = Instant::now();
    let images = resolve_images(settings, gathered, mode, Platform::local(), reporter).await?;
    Ok(Aimed {
        cluster: None,
        capabilities,
        images,
        images_time: started.elapsed(),
    })
}

/// On `cluster`: its version and every API version it serves (plus `helm.api_versions`), and
/// images resolved for its nodes' platform as `mode` says.
async fn cluster_target(
    cluster: Cluster,
    settings: &Settings,
    gathered: &Gathered,
    mode: Mode,
    reporter: &Reporter,
) -> Result<Aimed> {
    let mut api_versions = cluster.api_versions();
    api_versions.extend(settings.config.helm.api_versions.iter().cloned());
    let capabilities = Capabilities {
        kube_version: cluster.version.clone(),
        api_versions,
    };
    let started = Instant::now();
    let wants_images = settings.config.services.iter().any(|s| s.image.is_some());
    let platform = match wants_images {
        true => images::node_platform(&cluster.client).await,
        false => Platform::local(),
    };
    let images = resolve_images(settings, gathered, mode, platform, reporter).await?;
    Ok(Aimed {
        cluster: Some(cluster),
        capabilities,
        images,
        images_time: started.elapsed(),
    })
}

/// Every service's image (stage 3½), by service.
async fn resolve_images(
    settings: &Settings,
    gathered: &Gathered,
    mode: Mode,
    platform: Platform,
    reporter: &Reporter,
) -> Result<BTreeMap<String, ImageInfo>> {
    let mut wanted = Vec::new();
    for service in &settings.config.services {
        let Some(spec) = &service.image else {
            continue;
        };
        let checkout = checkout_of(&gathered.checkouts, service);
        wanted.push(wanted_image(settings, service, spec, checkout)?);
    }
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let env = |name: &str| std::env::var(name).ok();
    let access = RegistryAccess {
        ca_files: settings.config.registry_ca_files.clone(),
        // serve runs no credential helper unless its operator says so (README: images).
        run_helpers: settings.made_by != record::MADE_BY_SERVE
            || env("SANDBOX_REGISTRY_CREDENTIAL_HELPERS").as_deref() == Some("true"),
    };
    let registries = Registries::configured(&settings.config.insecure_registries, &access, &env)?;
    let resolver = Resolver {
        registries: &registries,
        platform,
        insecure: &settings.config.insecure_registries,
        buildah: builder(settings, &env),
    };
    Ok(images::resolve(&wanted, mode, &resolver, reporter).await?)
}

/// buildah, if this run may build. The previews (`sandbox serve`) never do, even with buildah
/// installed: a build runs the branch's Containerfile as root with chroot isolation, which is
/// no security boundary, on the machine that holds serve's credentials. They wait for CI's image.
fn builder(settings: &Settings, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if settings.made_by == record::MADE_BY_SERVE {
        return None;
    }
    images::locate_buildah(env)
}

/// A service's image as its config and its checkout say: the tag rendered over `repo` and
/// `sandbox`, the build's paths inside the checkout.
fn wanted_image(
    settings: &Settings,
    service: &Service,
    spec: &ImageSpec,
    checkout: &Checkout,
) -> Result<Wanted, ImagesError> {
    let invalid = |problem: String| ImagesError::Invalid {
        service: service.name.clone(),
        written: spec.repository.clone(),
        problem,
    };
    let name = ImageName::parse(&spec.repository).map_err(invalid)?;
    let context = RenderContext::new(settings, service, checkout, serde_json::json!({})).to_json();
    let tag_context = serde_json::json!({"repo": context["repo"], "sandbox": context["sandbox"], "service": context["service"]});
    let tag = images::render_tag(&service.name, &spec.repository, &spec.tag, &tag_context)?;
    let build = spec.build.as_ref().map(|b| BuildPlan {
        context: checkout.dir.join(&b.context),
        containerfile: checkout.dir.join(&b.containerfile),
        args: b.args.clone().into_iter().collect(),
    });
    Ok(Wanted {
        service: service.name.clone(),
        repo: checkout.repo.clone(),
        sha: checkout.sha.clone(),
        name,
        tag,
        build,
    })
}

/// Stages 2–3: checkout → values (with sops). helm is looked up meanwhile.
async fn gather(settings: &Settings, reporter: &Reporter) -> Result<Gathered> {
    let started = Instant::now();
    let has_charts = settings.config.services.iter().any(|s| s.chart.is_some());
    let locate_helm = async {
        match has_charts {
            true => Helm::locate().await.map(Some),
            false => Ok(None),
        }
    };
    let (checkouts, helm) = tokio::join!(check_out(settings, reporter), locate_helm);
    let checkouts = checkouts?;
    let helm = helm.context("cannot render the chart services")?;
    let checkout_time = started.elapsed();

    let started = Instant::now();
    let identities = Identities::from_env()
        .context("could not load the age keys for sops")?
        .with_sops_binary(&settings.config.sops_binary);
    let mut values = BTreeMap::new();
    for service in &settings.config.services {
        let checkout = checkout_of(&checkouts, service);
        let repo_files = values::RepoFiles {
            repo: &checkout.repo,
            branch: &checkout.branch,
            tree: RepoTree::new(&checkout.dir, settings.config.repo_files.max_file_size),
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
        values.insert(service.name.clone(), v);
    }
    Ok(Gathered {
        checkouts,
        values,
        helm,
        checkout_time,
        values_time: started.elapsed(),
    })
}

fn checkout_of<'a>(checkouts: &'a [Checkout], service: &Service) -> &'a Checkout {
    checkouts
        .iter()
        .find(|c| c.repo == service.repo)
        .expect("every used repo is checked out")
}

/// Stages 4–5: render every service (templates in process, charts by helm, all charts at once)
/// and plan, for `target`.
async fn render_and_plan(
    settings: &Settings,
    gathered: Gathered,
    secrets: Secrets,
    target: Aimed,
    reporter: &Reporter,
) -> Result<Prepared> {
    let started = Instant::now();
    let secret_strings: Vec<String> = gathered
        .values
        .values()
        .flat_map(|v| v.secret_strings())
        .collect();
    let mut renders = Vec::new();
    let mut chart_values = BTreeMap::new();
    for service in &settings.config.services {
        let one = ServiceRender {
            settings,
            service,
            gathered: &gathered,
            target: &target,
            secrets,
            secret_strings: &secret_strings,
        };
        let context = one.context();
        let given = one.chart_values(&context);
        if let Some(given) = &given {
            chart_values.insert(service.name.clone(), given.clone());
        }
        renders.push(one.render(context, given, reporter));
    }
    let rendered = futures::future::try_join_all(renders).await?;
    plan::check_pod_security(&rendered, settings.config.isolation.pod_security)
        .context("the rendered objects cannot be deployed")?;
    plan::routing::check(&rendered, &sandbox_hosts(settings)?)
        .context("the rendered objects cannot be deployed")?;
    let plan = plan::plan(&settings.namespace, rendered)
        .context("the rendered objects cannot be deployed")?
        .with_namespace_objects(plan::isolation::namespace_objects(
            &settings.config.isolation,
        ));
    Ok(Prepared {
        checkouts: gathered.checkouts,
        values: gathered.values,
        chart_values,
        plan,
        checkout_time: gathered.checkout_time,
        images_time: target.images_time,
        cluster: target.cluster,
        capabilities: target.capabilities,
        rest_time: gathered.values_time + started.elapsed(),
    })
}

/// Stage 4 for one service: its templates in process and, for a chart service, its chart by
/// helm (all charts at once, each in its own helm process).
struct ServiceRender<'a> {
    settings: &'a Settings,
    service: &'a Service,
    gathered: &'a Gathered,
    target: &'a Aimed,
    secrets: Secrets,
    /// Every decrypted value, to keep out of helm's messages.
    secret_strings: &'a [String],
}

impl<'a> ServiceRender<'a> {
    fn checkout(&self) -> &'a Checkout {
        checkout_of(&self.gathered.checkouts, self.service)
    }

    /// What the templates see: the values (redacted unless revealed), the sandbox, the image.
    fn context(&self) -> RenderContext {
        let values = &self.gathered.values[&self.service.name];
        let shown = match self.secrets {
            Secrets::Redact => values.redacted(),
            Secrets::Reveal => values.reveal().clone(),
        };
        let image = self.target.images.get(&self.service.name).cloned();
        RenderContext::new(self.settings, self.service, self.checkout(), shown).with_image(image)
    }

    /// What a chart service's chart is given (values and `global.sandbox`).
    fn chart_values(&self, context: &RenderContext) -> Option<serde_json::Value> {
        match (&self.service.chart, &self.gathered.helm) {
            (Some(_), Some(_)) => Some(context.clone().chart_values()),
            _ => None,
        }
    }

    /// Its templates with `context`, then its chart (if any) with `given`.
    async fn render(
        self,
        context: RenderContext,
        given: Option<serde_json::Value>,
        reporter: &Reporter,
    ) -> Result<RenderedService> {
        let templates = ServiceTemplates {
            config: &self.settings.config,
            service: self.service,
            checkout: self.checkout(),
            secrets: self.secrets,
        };
        let mut rendered = templates.render(&context.to_json())?;
        let chart = (&self.service.chart, &self.gathered.helm, &given);
        if let (Some(chart), Some(helm), Some(given)) = chart {
            let source = chart_source(&self.settings.config, self.service, chart, self.checkout());
            let hooked = chart::render(
                helm,
                &source,
                &self.settings.namespace,
                given,
                &self.target.capabilities,
                self.secret_strings,
            )
            .await?;
            add_chart(&mut rendered, hooked, self.secrets, reporter);
        }
        Ok(rendered)
    }
}

/// The hosts this sandbox's Ingresses and routes may claim: `url.host`, rendered with what the
/// URL template sees.
fn sandbox_hosts(settings: &Settings) -> Result<plan::routing::Hosts> {
    let url_context = serde_json::json!({ "sandbox": SandboxInfo::for_url(settings) });
    plan::routing::Hosts::for_sandbox(&settings.config.hosts, &url_context)
        .map_err(|why| anyhow::anyhow!("{}: {why}", settings.config.path.display()))
}

/// Where a service's chart is on disk, and how messages name it.
fn chart_source(
    config: &Config,
    service: &Service,
    chart: &ChartRef,
    checkout: &Checkout,
) -> ChartSource {
    let (root, shown, relative_to) = match chart.from {
        ChartFrom::Repo => (
            checkout.dir.clone(),
            format!(
                "`{}` (repo `{}`, branch `{}`)",
                chart.path.display(),
                checkout.repo,
                checkout.branch
            ),
            format!("the root of repo `{}`", checkout.repo),
        ),
        ChartFrom::Config => (
            config.dir.clone(),
            format!("`{}`", config.dir.join(&chart.path).display()),
            format!("the directory of {}", config.path.display()),
        ),
    };
    ChartSource {
        service: service.name.clone(),
        dir: root.join(&chart.path),
        root,
        shown,
        relative_to,
    }
}

/// A chart's objects join the service's; its hooks join the preflight (after the service's own
/// preflight templates), post-install and smoke steps. Hooks sandbox does not run are said.
fn add_chart(
    rendered: &mut RenderedService,
    hooked: Hooked,
    secrets: Secrets,
    reporter: &Reporter,
) {
    let Hooked {
        mut objects,
        mut preflight,
        mut post_install,
        mut tests,
        unsupported,
    } = hooked;
    if secrets == Secrets::Redact {
        let all = objects.iter_mut().chain(preflight.iter_mut().flatten());
        all.chain(&mut post_install)
            .chain(&mut tests)
            .for_each(redact_secret_object);
    }
    rendered.objects.extend(objects);
    rendered.preflight.extend(preflight);
    rendered.post_install.extend(post_install);
    rendered.smoke.extend(tests);
    for hook in unsupported {
        reporter.info(&format!(
            "  {}: {} is a `{}` hook, which sandbox does not run",
            rendered.name,
            hook.object,
            hook.events.join(",")
        ));
    }
}

/// Stage 2: the branch of every repo a service uses, in parallel; one line each.
async fn check_out(settings: &Settings, reporter: &Reporter) -> Result<Vec<Checkout>> {
    let config = &settings.config;
    let mut used: Vec<&str> = config.services.iter().map(|s| s.repo.as_str()).collect();
    used.sort();
    used.dedup();
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
    let checkouts = checkout::checkout_all(
        &specs,
        &settings.branch,
        &checkout::cache_under(&settings.cache_dir),
        &config.repo_files,
    )
    .await
    .with_context(|| format!("could not check out branch `{}`", settings.branch))?;
    if let Some(pin) = &settings.pinned {
        check_pin(pin, &settings.branch, &checkouts)?;
    }
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
    Ok(checkouts)
}

/// The pinned repository was checked out from the branch itself, at the pinned commit: what
/// was asked for is exactly what is deployed, or nothing is.
fn check_pin(pin: &super::Pin, branch: &str, checkouts: &[Checkout]) -> Result<()> {
    let Some(c) = checkouts.iter().find(|c| c.repo == pin.repo) else {
        anyhow::bail!(
            "{} names a commit of repository `{}`, which no service of sandbox.yaml uses: nothing of it would be deployed",
            pin.asked_by,
            pin.repo
        );
    };
    if c.fell_back {
        anyhow::bail!(
            "{} is for branch `{branch}`, which repository `{}` does not have (the sandbox would fall back to `{}`): only an existing branch is deployed",
            pin.asked_by,
            pin.repo,
            c.branch
        );
    }
    if c.sha != pin.sha {
        anyhow::bail!(
            "{} is for commit {}, but branch `{branch}` of repository `{}` is at {}: only the branch's tip can be deployed, and nothing else is deployed in its place (create the deployment again for {})",
            pin.asked_by,
            pin.sha,
            pin.repo,
            c.sha,
            c.short_sha()
        );
    }
    Ok(())
}

/// Stage 4 for one service's Handlebars templates: preflight, own and smoke.
struct ServiceTemplates<'a> {
    config: &'a Config,
    service: &'a Service,
    checkout: &'a Checkout,
    secrets: Secrets,
}

impl ServiceTemplates<'_> {
    fn render(&self, context: &serde_json::Value) -> Result<RenderedService> {
        let tree = RepoTree::new(&self.checkout.dir, self.config.repo_files.max_file_size);
        let renderer = Renderer::new(Some(tree));
        let render_all = |paths: &[PathBuf]| -> Result<Vec<Manifest>> {
            let mut out = Vec::new();
            for path in paths {
                let text = std::fs::read_to_string(self.config.dir.join(path))
                    .with_context(|| format!("could not read template {}", path.display()))?;
                let template = TemplateSource {
                    name: path.display().to_string(),
                    text,
                };
                let mut manifests = renderer
                    .render(&template, context)
                    .with_context(|| format!("could not render service `{}`", self.service.name))?;
                if self.secrets == Secrets::Redact {
                    manifests.iter_mut().for_each(redact_secret_object);
                }
                out.extend(manifests);
            }
            Ok(out)
        };
        let preflight = render_all(&self.service.preflight)?;
        Ok(RenderedService {
            name: self.service.name.clone(),
            depends_on: self.service.depends_on.clone(),
            preflight: vec![preflight],
            objects: render_all(&self.service.templates)?,
            post_install: Vec::new(),
            smoke: render_all(&self.service.smoke)?,
            allow: self.service.allow.clone(),
            cluster_roles: self.service.cluster_roles.clone(),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout(branch: &str, fell_back: bool, sha: &str) -> Checkout {
        Checkout {
            repo: "backend".into(),
            url: "/srv/backend.git".into(),
            requested_branch: "feat".into(),
            branch: branch.into(),
            fell_back,
            sha: sha.into(),
            dir: PathBuf::from("/tmp/none"),
        }
    }

    #[test]
    fn a_pinned_commit_is_exactly_what_is_deployed_or_nothing() {
        let pin = super::super::Pin {
            repo: "backend".into(),
            sha: "a".repeat(40),
            asked_by: "GitHub deployment 7 of o/backend".into(),
        };
        assert!(check_pin(&pin, "feat", &[checkout("feat", false, &"a".repeat(40))]).is_ok());
        let moved = check_pin(&pin, "feat", &[checkout("feat", false, &"b".repeat(40))]);
        let moved = moved.unwrap_err().to_string();
        assert!(
            moved.contains(&"a".repeat(40)) && moved.contains("is at bbbbbbb"),
            "{moved}"
        );
        let missing = check_pin(&pin, "feat", &[checkout("main", true, &"a".repeat(40))]);
        let missing = missing.unwrap_err().to_string();
        assert!(
            missing.contains("does not have") && missing.contains("fall back to `main`"),
            "{missing}"
        );
        let unused = super::super::Pin {
            repo: "data".into(),
            ..pin
        };
        let unused = check_pin(&unused, "feat", &[checkout("feat", false, "a")]);
        assert!(unused.unwrap_err().to_string().contains("no service"));
    }

    /// A preview's build would run a branch's Containerfile next to serve's credentials: serve
    /// never builds, whatever is installed.
    #[test]
    fn the_previews_never_build() {
        let dir = tempfile::tempdir().unwrap();
        let buildah = dir.path().join("buildah");
        std::fs::write(&buildah, "#!/bin/sh\n").unwrap();
        let env = |name: &str| (name == "SANDBOX_BUILDAH").then(|| buildah.display().to_string());
        let mut settings = crate::pipeline::settings::example("x");
        assert_eq!(builder(&settings, &env), Some(buildah.clone()));
        settings.made_by = record::MADE_BY_SERVE;
        assert_eq!(builder(&settings, &env), None);
    }
}

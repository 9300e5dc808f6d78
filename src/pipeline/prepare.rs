//! Stages 2–5, the offline part of the pipeline that `up`, `render`, `values`, `diff` and
//! `validate` share: checkout → values → render → plan.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::pipeline::checkout::{self, Checkout, RepoSpec};
use crate::pipeline::config::{Config, Service};
use crate::pipeline::context::RenderContext;
use crate::pipeline::plan::{self, Plan, RenderedService};
use crate::pipeline::render::{Manifest, Renderer, TemplateSource};
use crate::pipeline::settings::Settings;
use crate::pipeline::sops::Identities;
use crate::pipeline::values::{self, Values};
use crate::progress::Reporter;
use crate::redact::REDACTED;

/// The offline stages' output: what each repo resolved to, each service's values, and the plan.
pub(crate) struct Prepared {
    pub(crate) checkouts: Vec<Checkout>,
    pub(crate) values: BTreeMap<String, Values>,
    pub(crate) plan: Plan,
    pub(crate) checkout_time: Duration,
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

/// Stages 2–5: checkout → values → render → plan.
pub(crate) async fn prepare(
    settings: &Settings,
    secrets: Secrets,
    reporter: &Reporter,
) -> Result<Prepared> {
    let started = Instant::now();
    let checkouts = check_out(settings, reporter).await?;
    let checkout_time = started.elapsed();

    let rest = Instant::now();
    let identities = Identities::from_env().context("could not load the age keys for sops")?;
    let mut all_values = BTreeMap::new();
    let mut rendered = Vec::new();
    for service in &settings.config.services {
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
        let shown = match secrets {
            Secrets::Redact => v.redacted(),
            Secrets::Reveal => v.reveal().clone(),
        };
        let context = RenderContext::new(settings, service, checkout, shown).to_json();
        rendered.push(render_service(
            &settings.config,
            service,
            checkout,
            &context,
            secrets,
        )?);
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
    Ok(checkouts)
}

/// Stage 4 for one service: its preflight, own and smoke templates.
fn render_service(
    config: &Config,
    service: &Service,
    checkout: &Checkout,
    context: &serde_json::Value,
    secrets: Secrets,
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
            if secrets == Secrets::Redact {
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

//! Stage 3½, between values and render: every service's image for its commit.
//!
//! A service with `image:` names a repository and a tag template (`{{repo.sha}}` by default).
//! Before anything is applied, `up` asks each registry for the digest of every image, all at
//! once (`HEAD` of the manifest, a few ms each), and pins it: templates see
//! `image.ref` = `REPOSITORY:TAG@DIGEST`, so a re-tag never changes a running sandbox. A missing
//! image is built from the commit's tree with buildah when the service says `build:`, waited for
//! with `--wait-for-images`, or else a clear error. Offline commands (`render`, `values`) do not
//! ask registries: `image.ref` is `REPOSITORY:TAG`.
//!
//! Files: `reference.rs` (names), `registry.rs` (the distribution API and its auth), `auth.rs`
//! (credentials files and helpers), `build.rs` (buildah), `error.rs`.

mod auth;
mod build;
mod error;
mod reference;
mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::progress::Reporter;

pub(crate) use auth::HelperError;
pub(crate) use error::ImagesError;
pub(crate) use reference::ImageName;
pub(crate) use registry::{Platform, Registries, RegistryAccess, RegistryError};

use build::{BuildFailure, BuildJob};

/// One service's image as the config and the checkout say.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub(crate) service: String,
    pub(crate) repo: String,
    pub(crate) sha: String,
    pub(crate) name: ImageName,
    /// The rendered tag.
    pub(crate) tag: String,
    pub(crate) build: Option<BuildPlan>,
}

/// How to build a missing image: paths inside the checkout.
#[derive(Debug, Clone)]
pub(crate) struct BuildPlan {
    pub(crate) context: PathBuf,
    pub(crate) containerfile: PathBuf,
    pub(crate) args: Vec<(String, String)>,
}

/// What templates see as `image` (charts: `global.sandbox.image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ImageInfo {
    pub(crate) repository: String,
    pub(crate) tag: String,
    /// `sha256:…`, when resolved.
    pub(crate) digest: Option<String>,
    /// What goes into a pod's `image`: `REPOSITORY:TAG@DIGEST`, or `REPOSITORY:TAG` unresolved.
    #[serde(rename = "ref")]
    pub(crate) reference: String,
}

impl Wanted {
    fn tagged(&self) -> String {
        format!("{}:{}", self.name.written, self.tag)
    }

    fn info(&self, digest: Option<String>) -> ImageInfo {
        let reference = match &digest {
            Some(d) => format!("{}@{d}", self.tagged()),
            None => self.tagged(),
        };
        ImageInfo {
            repository: self.name.written.clone(),
            tag: self.tag.clone(),
            digest,
            reference,
        }
    }
}

/// How far to go for each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Ask no registry (`render`, `values`).
    Offline,
    /// Resolve what exists; leave a missing image unpinned (`diff`, `validate`).
    Resolve,
    /// Resolve; build what is missing and has `build:`; wait for the rest up to `wait`, or fail
    /// (`up`).
    Ensure { wait: Option<Duration> },
}

/// Where and how images are resolved.
pub(crate) struct Resolver<'a> {
    pub(crate) registries: &'a Registries,
    pub(crate) platform: Platform,
    pub(crate) insecure: &'a [String],
    /// Where buildah is, when a build is needed.
    pub(crate) buildah: Option<PathBuf>,
}

/// Resolve every wanted image (see the module's doc), by service.
pub(crate) async fn resolve(
    wanted: &[Wanted],
    mode: Mode,
    resolver: &Resolver<'_>,
    reporter: &Reporter,
) -> Result<BTreeMap<String, ImageInfo>, ImagesError> {
    let mut digests = match mode {
        Mode::Offline => BTreeMap::new(),
        _ => look_up(wanted, resolver).await?,
    };
    if let Mode::Ensure { wait } = mode {
        let missing: Vec<&Wanted> = distinct(wanted)
            .into_iter()
            .filter(|w| digests.get(&w.tagged()).is_some_and(Option::is_none))
            .collect();
        // Without buildah (e.g. serve in a pod) but with time to wait, an image that could be
        // built is waited for like any other: CI may publish it.
        let can_build = resolver.buildah.is_some() || wait.is_none();
        let (to_build, to_wait): (Vec<&Wanted>, Vec<&Wanted>) = missing
            .into_iter()
            .partition(|w| w.build.is_some() && can_build);
        build_all(&to_build, resolver, reporter).await?;
        let waited = wait_for(&to_wait, wait, resolver, reporter).await?;
        let built = look_up_each(&to_build, resolver).await?;
        digests.extend(built.into_iter().chain(waited));
        if let Some(w) = to_build.iter().find(|w| digests[&w.tagged()].is_none()) {
            return Err(missing_error(w));
        }
    }
    Ok(wanted
        .iter()
        .map(|w| {
            let digest = digests.get(&w.tagged()).cloned().flatten();
            (w.service.clone(), w.info(digest))
        })
        .collect())
}

/// One entry per distinct `REPOSITORY:TAG`.
fn distinct(wanted: &[Wanted]) -> Vec<&Wanted> {
    let mut seen = std::collections::BTreeSet::new();
    wanted.iter().filter(|w| seen.insert(w.tagged())).collect()
}

/// Every distinct image's digest (None: the registry does not have it), all at once.
async fn look_up(
    wanted: &[Wanted],
    resolver: &Resolver<'_>,
) -> Result<BTreeMap<String, Option<String>>, ImagesError> {
    look_up_each(&distinct(wanted), resolver).await
}

async fn look_up_each(
    wanted: &[&Wanted],
    resolver: &Resolver<'_>,
) -> Result<BTreeMap<String, Option<String>>, ImagesError> {
    let lookups = wanted.iter().map(|w| async move {
        let digest = resolver
            .registries
            .digest(&w.name, &w.tag, &resolver.platform)
            .await
            .map_err(|source| ImagesError::Registry {
                service: w.service.clone(),
                reference: w.tagged(),
                source: Box::new(source),
            })?;
        Ok::<_, ImagesError>((w.tagged(), digest))
    });
    Ok(futures::future::try_join_all(lookups)
        .await?
        .into_iter()
        .collect())
}

/// Build and push every image in `to_build`, in parallel.
async fn build_all(
    to_build: &[&Wanted],
    resolver: &Resolver<'_>,
    reporter: &Reporter,
) -> Result<(), ImagesError> {
    if to_build.is_empty() {
        return Ok(());
    }
    let Some(buildah) = &resolver.buildah else {
        let w = to_build[0];
        return Err(ImagesError::NoBuildah {
            service: w.service.clone(),
            reference: w.tagged(),
        });
    };
    let builds = to_build.iter().map(|w| async move {
        let plan = w.build.as_ref().expect("partitioned on build");
        let job = BuildJob {
            reference: w.tagged(),
            context: plan.context.clone(),
            containerfile: plan.containerfile.clone(),
            args: plan.args.clone(),
            tls_verify: !resolver.insecure.contains(&w.name.registry),
            label: format!("build/{}", w.service),
        };
        reporter.info(&format!(
            "  building {} for {} (repo {} @ {})",
            job.reference,
            w.service,
            w.repo,
            &w.sha[..w.sha.len().min(7)]
        ));
        let started = Instant::now();
        build::build(buildah, &job, reporter)
            .await
            .map_err(|failure| build_error(w, failure))?;
        if appeared_meanwhile(w, resolver).await? {
            reporter.info(&format!(
                "  {} appeared in the registry while it was built: that one is used, not overwritten",
                job.reference
            ));
            return Ok(());
        }
        build::push(buildah, &job, reporter)
            .await
            .map_err(|failure| build_error(w, failure))?;
        reporter.info(&format!(
            "  built and pushed {} in {:.1}s",
            job.reference,
            started.elapsed().as_secs_f64()
        ));
        Ok::<_, ImagesError>(())
    });
    futures::future::try_join_all(builds).await.map(|_| ())
}

/// Whether `w`'s tag exists now, asked right before pushing: a tag is never overwritten, since
/// another sandbox may have resolved it. If it names the commit (the default `{{repo.sha}}`
/// does), whoever pushed it (CI, another `up`) built the same commit: it is used. If it does
/// not, it may be another commit's image: the build is refused rather than overwrite it or
/// silently deploy something else. (A push that starts after this check can still race one
/// that ends before it; the sandboxes that resolved the tag are pinned to its digest anyway.)
async fn appeared_meanwhile(w: &Wanted, resolver: &Resolver<'_>) -> Result<bool, ImagesError> {
    let now = look_up_each(&[w], resolver).await?;
    if now.get(&w.tagged()).is_none_or(Option::is_none) {
        return Ok(false);
    }
    let short_sha = &w.sha[..w.sha.len().min(7)];
    if w.tag.contains(short_sha) {
        return Ok(true);
    }
    Err(ImagesError::TagTaken {
        service: w.service.clone(),
        reference: w.tagged(),
        sha: w.sha.clone(),
    })
}

fn build_error(w: &Wanted, failure: BuildFailure) -> ImagesError {
    match failure {
        BuildFailure::Spawn(path, source) => ImagesError::BuildahRun { path, source },
        BuildFailure::Failed {
            step,
            status,
            last_lines,
        } => ImagesError::BuildFailed {
            service: w.service.clone(),
            reference: w.tagged(),
            step,
            status: status.to_string(),
            last_lines,
        },
    }
}

fn missing_error(w: &Wanted) -> ImagesError {
    ImagesError::Missing {
        service: w.service.clone(),
        repo: w.repo.clone(),
        sha: w.sha.clone(),
        reference: w.tagged(),
    }
}

/// Poll for images CI has yet to publish, with backoff, until `wait` has passed.
async fn wait_for(
    missing: &[&Wanted],
    wait: Option<Duration>,
    resolver: &Resolver<'_>,
    reporter: &Reporter,
) -> Result<BTreeMap<String, Option<String>>, ImagesError> {
    let Some(first) = missing.first() else {
        return Ok(BTreeMap::new());
    };
    let Some(wait) = wait else {
        return Err(missing_error(first));
    };
    let started = Instant::now();
    let mut pending: Vec<&Wanted> = missing.to_vec();
    let mut found = BTreeMap::new();
    let mut delay = Duration::from_millis(500);
    loop {
        let names: Vec<String> = pending.iter().map(|w| w.tagged()).collect();
        reporter.info(&format!(
            "  waiting for {} ({:.0}s of {})",
            names.join(", "),
            started.elapsed().as_secs_f64(),
            humantime::format_duration(wait)
        ));
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(ImagesError::NeverAppeared {
                service: pending[0].service.clone(),
                reference: pending[0].tagged(),
                waited: wait,
            });
        }
        tokio::time::sleep(delay.min(left)).await;
        delay = (delay * 2).min(Duration::from_secs(10));
        let now = look_up_each(&pending, resolver).await?;
        pending.retain(|w| now.get(&w.tagged()).is_some_and(Option::is_none));
        found.extend(now.into_iter().filter(|(_, d)| d.is_some()));
        if pending.is_empty() {
            return Ok(found);
        }
    }
}

/// Render an image's tag template against `context` (the service's `repo` and `sandbox`).
pub(crate) fn render_tag(
    service: &str,
    written: &str,
    template: &str,
    context: &serde_json::Value,
) -> Result<String, ImagesError> {
    let invalid = |problem: String| ImagesError::Invalid {
        service: service.to_owned(),
        written: written.to_owned(),
        problem,
    };
    let mut registry = handlebars::Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    let tag = registry
        .render_template(template, context)
        .map_err(|e| invalid(format!("the tag `{template}` does not render: {e}")))?;
    if !reference::is_tag(&tag) {
        return Err(invalid(format!(
            "the tag `{template}` renders `{tag}`, which is not a valid tag (letters, digits, `_.-`, at most 128)"
        )));
    }
    Ok(tag)
}

/// buildah: `SANDBOX_BUILDAH`, else the first `buildah` in an absolute `PATH` entry.
pub(crate) fn locate_buildah(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    build::locate(env)
}

/// The platform of the cluster's first node, or this machine's when no node says.
pub(crate) async fn node_platform(client: &kube::Client) -> Platform {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let list = nodes
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .ok();
    list.and_then(|l| l.items.into_iter().next())
        .and_then(|n| n.status?.node_info)
        .map(|info| Platform {
            os: info.operating_system,
            architecture: info.architecture,
        })
        .unwrap_or_else(Platform::local)
}

#[cfg(test)]
mod tests;

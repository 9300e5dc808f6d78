//! Render stage for chart services: the real `helm template`, the way Argo CD and Flux run it.
//!
//! helm gets the release name (the service's name), the sandbox's namespace, the Kubernetes
//! version and API versions (the cluster's, or `helm:` in sandbox.yaml offline), and the merged
//! values on stdin. Its output is split by `# Source:` into objects named after the template
//! that made them, and its hooks are sorted onto the pipeline's steps (`hooks.rs`). From there
//! a chart's objects are like any template's: plan, apply, wait, prune, diff and rollback are
//! shared.
//!
//! Files: `helm.rs` (finding and running helm), `version.rs` (which helm is new enough),
//! `hooks.rs`, `error.rs`.

mod error;
mod helm;
pub(crate) mod hooks;
mod version;

use std::path::{Path, PathBuf};

use crate::pipeline::checkout::resolves_inside;
use crate::pipeline::render::{self, Manifest};
use crate::redact::Scrubber;

pub(crate) use error::{ChartError, HelmFailure};
pub(crate) use helm::Helm;
pub(crate) use hooks::Hooked;

use helm::TemplateFailure;

/// What helm is told about the cluster (`.Capabilities`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// E.g. `v1.20.15`.
    pub(crate) kube_version: String,
    /// `group/version` and `group/version/Kind` entries.
    pub(crate) api_versions: Vec<String>,
}

/// One chart to render.
#[derive(Debug, Clone)]
pub(crate) struct ChartSource {
    /// The service, which is also the release's name.
    pub(crate) service: String,
    /// The chart's directory on disk.
    pub(crate) dir: PathBuf,
    /// The tree the chart must stay inside: the repository's checkout, or the config's directory.
    pub(crate) root: PathBuf,
    /// How messages name the chart, e.g. `web (repo frontend, branch feature-x)`.
    pub(crate) shown: String,
    /// What the `chart` path is relative to, for hints.
    pub(crate) relative_to: String,
}

/// Limits on what is handed to helm from a branch: a chart is a few dozen small files.
const MAX_CHART_FILES: usize = 5_000;
const MAX_CHART_BYTES: u64 = 64 * 1024 * 1024;

/// Render `chart` into `namespace` with `values` (JSON, passed on stdin). `secrets` are scrubbed
/// from helm's messages.
pub(crate) async fn render(
    helm: &Helm,
    chart: &ChartSource,
    namespace: &str,
    values: &serde_json::Value,
    capabilities: &Capabilities,
    secrets: &[String],
) -> Result<Hooked, ChartError> {
    check_chart_dir(chart)?;
    let args = template_args(chart, namespace, capabilities);
    let stdin = serde_json::to_vec(values).expect("values are JSON");
    let answer = helm
        .template(&args, &stdin)
        .await
        .map_err(|failure| match failure {
            TemplateFailure::Spawn(source) => ChartError::HelmRun {
                path: helm.path.clone(),
                source,
            },
            TemplateFailure::Timeout(after) => ChartError::Timeout {
                service: chart.service.clone(),
                chart: chart.shown.clone(),
                seconds: after.as_secs(),
            },
        })?;
    let rendered = answer.map_err(|refused| {
        let scrubber = Scrubber::new();
        scrubber.add(secrets.iter().cloned());
        let message = scrubber.scrub(&refused.message);
        ChartError::Helm {
            service: chart.service.clone(),
            chart: chart.shown.clone(),
            failure: HelmFailure::of(&message),
            message,
            kube_version: capabilities.kube_version.clone(),
        }
    })?;
    let manifests = objects(&rendered.stdout).map_err(|source| ChartError::Output {
        service: chart.service.clone(),
        chart: chart.shown.clone(),
        source: Box::new(source),
    })?;
    Ok(hooks::sort(manifests))
}

/// `helm template`'s arguments, values aside.
fn template_args(chart: &ChartSource, namespace: &str, capabilities: &Capabilities) -> Vec<String> {
    let mut args = vec![
        chart.service.clone(),
        chart.dir.display().to_string(),
        "--namespace".into(),
        namespace.into(),
        "--kube-version".into(),
        capabilities.kube_version.clone(),
    ];
    if !capabilities.api_versions.is_empty() {
        args.push("--api-versions".into());
        args.push(capabilities.api_versions.join(","));
    }
    args
}

/// The chart's directory exists, holds `Chart.yaml`, and nothing in it is a symlink leading out
/// of `root` (helm follows symlinks: a branch could make `.Files.Get` read the user's files).
/// A repository's checkout holds no symlinks (the checkout resolves and copies them); this
/// check is kept as a cheap second line, and for charts in the config's directory.
fn check_chart_dir(chart: &ChartSource) -> Result<(), ChartError> {
    let problem = |problem: String| ChartError::NotAChart {
        service: chart.service.clone(),
        chart: chart.shown.clone(),
        problem,
        relative_to: chart.relative_to.clone(),
    };
    if !chart.dir.is_dir() {
        return Err(problem("does not exist".into()));
    }
    if !chart.dir.join("Chart.yaml").is_file() {
        return Err(problem("is not a chart: it has no Chart.yaml".into()));
    }
    let root = chart
        .root
        .canonicalize()
        .map_err(|e| problem(format!("cannot be read: {e}")))?;
    let mut walk = ChartWalk::default();
    walk.visit(&chart.dir, &chart.dir, &root).map_err(problem)
}

/// Counts while walking a chart's directory.
#[derive(Default)]
struct ChartWalk {
    files: usize,
    bytes: u64,
}

impl ChartWalk {
    fn visit(&mut self, chart: &Path, dir: &Path, root: &Path) -> Result<(), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot be read: {e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot be read: {e}"))?;
            let path = entry.path();
            let shown = path
                .strip_prefix(chart)
                .unwrap_or(&path)
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("`{shown}`: {e}"))?;
            if meta.file_type().is_symlink() {
                if !resolves_inside(root, &path) {
                    return Err(format!(
                        "holds `{shown}`, a symlink that leads out of the repository"
                    ));
                }
                // A symlink inside the tree is read through its target, which the walk (or
                // helm's own loader) covers; directories behind symlinks are not walked twice.
                continue;
            }
            self.files += 1;
            self.bytes += meta.len();
            if self.files > MAX_CHART_FILES || self.bytes > MAX_CHART_BYTES {
                return Err(format!(
                    "is too large for a chart (over {MAX_CHART_FILES} files or {} MiB)",
                    MAX_CHART_BYTES >> 20
                ));
            }
            if meta.is_dir() {
                self.visit(chart, &path, root)?;
            }
        }
        Ok(())
    }
}

/// helm's output → objects, each named after the template it came from (`# Source:`).
fn objects(stdout: &str) -> Result<Vec<Manifest>, render::RenderError> {
    let mut out = Vec::new();
    for (source, text) in documents_by_source(stdout) {
        out.extend(render::parse_manifests(&source, &text)?);
    }
    Ok(out)
}

/// Split helm's output at its `---` / `# Source: PATH` headers.
fn documents_by_source(stdout: &str) -> Vec<(String, String)> {
    let mut docs: Vec<(String, String)> = Vec::new();
    for line in stdout.split_inclusive('\n') {
        let content = line.trim_end();
        if content == "---" {
            docs.push((String::new(), String::new()));
            continue;
        }
        if let (Some(source), Some(last)) = (content.strip_prefix("# Source: "), docs.last_mut()) {
            if last.0.is_empty() && last.1.trim().is_empty() {
                last.0 = source.trim().to_owned();
                continue;
            }
        }
        match docs.last_mut() {
            Some(last) => last.1.push_str(line),
            None => docs.push((String::new(), line.to_owned())),
        }
    }
    // helm heads each template's output once: a later `---` of the same template (or one a
    // value injected) starts a document of the template before it.
    let mut current = "helm output".to_owned();
    docs.into_iter()
        .map(|(source, text)| {
            if !source.is_empty() {
                current = source;
            }
            (current.clone(), text)
        })
        .collect()
}

#[cfg(test)]
mod tests;

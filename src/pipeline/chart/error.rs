//! What can go wrong when a chart is rendered, and what to do about it. Helm's own message is
//! kept (with every decrypted secret scrubbed out): it names the template, line and column.

use std::path::PathBuf;

use crate::error::Hint;
use crate::pipeline::render::RenderError;

use super::version::MIN_VERSION;

/// A chart service could not be rendered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChartError {
    /// No helm binary was found.
    #[error("helm is not installed: {looked}")]
    HelmMissing { looked: String },
    /// The helm found is older than the flags sandbox passes need.
    #[error("{} is helm {found}; sandbox needs helm {MIN_VERSION} or newer", path.display())]
    HelmTooOld { path: PathBuf, found: String },
    /// The helm binary could not be started or did not answer.
    #[error("could not run {}", path.display())]
    HelmRun {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The chart's directory is missing or unsafe to hand to helm.
    #[error("service `{service}`: {chart} {problem}")]
    NotAChart {
        service: String,
        chart: String,
        problem: String,
        /// Where the chart path is relative to, for the hint.
        relative_to: String,
    },
    /// `helm template` failed: the chart's error, in helm's words.
    #[error("service `{service}`: helm could not render chart {chart}: {message}")]
    Helm {
        service: String,
        chart: String,
        message: String,
        failure: HelmFailure,
        /// The Kubernetes version helm was told, for the hint on `kubeVersion`.
        kube_version: String,
    },
    /// helm ran for too long.
    #[error(
        "service `{service}`: helm did not finish rendering chart {chart} within {}s",
        seconds
    )]
    Timeout {
        service: String,
        chart: String,
        seconds: u64,
    },
    /// helm's output holds something that is not a Kubernetes object.
    #[error(
        "service `{service}`: chart {chart} rendered something that is not a Kubernetes object"
    )]
    Output {
        service: String,
        chart: String,
        #[source]
        source: Box<RenderError>,
    },
}

/// What kind of failure helm reported, from its message: it chooses the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelmFailure {
    /// `Chart.yaml`'s `kubeVersion` excludes the version helm was given.
    KubeVersion,
    /// A `required` or `fail` in a template.
    Required,
    /// A template does not parse, fails while it runs (e.g. a nil pointer), or renders
    /// something that is not YAML.
    Template,
    /// A dependency in `Chart.yaml` is not in `charts/`.
    MissingDependency,
    /// The chart itself (Chart.yaml, values.yaml) is malformed.
    Chart,
    Other,
}

impl HelmFailure {
    /// Classify helm's error message.
    pub(crate) fn of(message: &str) -> HelmFailure {
        if message.contains("kubeVersion") {
            HelmFailure::KubeVersion
        } else if message.contains("execution error at (") {
            HelmFailure::Required
        } else if ["parse error at (", "template: ", "YAML parse error"]
            .iter()
            .any(|m| message.contains(m))
        {
            HelmFailure::Template
        } else if message.contains("missing in charts/ directory") {
            HelmFailure::MissingDependency
        } else if message.contains("Chart.yaml") || message.contains("values.yaml") {
            HelmFailure::Chart
        } else {
            HelmFailure::Other
        }
    }
}

impl Hint for ChartError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ChartError::HelmMissing { .. } | ChartError::HelmTooOld { .. } => format!(
                "install helm {MIN_VERSION} or newer (`scripts/setup` installs v4.1.4 to /usr/local/bin/helm), or point SANDBOX_HELM at it"
            ),
            ChartError::HelmRun { .. } => {
                "check that the file is an executable helm binary, or point SANDBOX_HELM at one".into()
            }
            ChartError::NotAChart { relative_to, .. } => format!(
                "`chart` is relative to {relative_to}, and names a directory holding Chart.yaml"
            ),
            ChartError::Helm {
                failure,
                kube_version,
                service,
                ..
            } => helm_hint(*failure, kube_version, service),
            ChartError::Timeout { .. } => {
                "a chart renders in well under a second; look for a runaway `range` or recursive `include`".into()
            }
            ChartError::Output { source, .. } => return source.hint(),
        })
    }
}

fn helm_hint(failure: HelmFailure, kube_version: &str, service: &str) -> String {
    match failure {
        HelmFailure::KubeVersion => format!(
            "helm was told Kubernetes {kube_version} (the cluster's version, or `helm.kube_version` in sandbox.yaml when no cluster is asked): deploy to a cluster the chart supports, or widen `kubeVersion` in its Chart.yaml"
        ),
        HelmFailure::Required => format!(
            "the chart asks for a value: set it under the service's `values`, in a values file, or with `--set`; `sandbox values {service}` shows what the chart is given"
        ),
        HelmFailure::Template => {
            "fix the template at the position helm names (`helm template` on the chart shows the same error)".into()
        }
        HelmFailure::MissingDependency => {
            "vendor the chart's dependencies into its charts/ directory (`helm dependency build`) and commit them: sandbox renders offline".into()
        }
        HelmFailure::Chart => "fix the chart's Chart.yaml or values.yaml as helm says".into(),
        HelmFailure::Other => "helm's message says what is wrong with the chart".into(),
    }
}

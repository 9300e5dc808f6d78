//! What can go wrong resolving and building images, and what to do about it.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Hint;

use super::auth::HelperError;
use super::registry::RegistryError;

/// A service's image could not be found, reached or built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImagesError {
    /// The image name or the rendered tag is not valid.
    #[error("service `{service}`: image `{written}`: {problem}")]
    Invalid {
        service: String,
        written: String,
        problem: String,
    },
    /// The registry has no image for the commit, and nothing builds it.
    #[error("service `{service}`: no image {reference} for repo `{repo}` at commit {sha}")]
    Missing {
        service: String,
        repo: String,
        sha: String,
        reference: String,
    },
    /// `--wait-for-images` ran out.
    #[error("service `{service}`: image {reference} did not appear within {}", humantime::format_duration(*waited))]
    NeverAppeared {
        service: String,
        reference: String,
        waited: Duration,
    },
    /// The registry could not answer.
    #[error("service `{service}`: could not resolve image {reference}")]
    Registry {
        service: String,
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    /// A build is configured but buildah is not installed.
    #[error("service `{service}`: image {reference} must be built, but buildah is not installed")]
    NoBuildah { service: String, reference: String },
    /// buildah failed.
    #[error(
        "service `{service}`: building image {reference} failed ({step}: {status}){}",
        tail(last_lines)
    )]
    BuildFailed {
        service: String,
        reference: String,
        step: &'static str,
        status: String,
        last_lines: Vec<String>,
    },
    /// The tag appeared while the image was built, and does not name the commit.
    #[error("service `{service}`: image {reference} appeared in the registry while it was being built for commit {sha}; its tag does not name the commit, so it may be another commit's image, and it was not overwritten")]
    TagTaken {
        service: String,
        reference: String,
        sha: String,
    },
    /// buildah could not be run.
    #[error("could not run {}", path.display())]
    BuildahRun {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("; its last lines:");
    for line in lines {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

impl Hint for ImagesError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ImagesError::Invalid { .. } => {
                "fix `image` of the service in sandbox.yaml: `repository` without tag, `tag` a template such as `{{repo.sha}}`".into()
            }
            ImagesError::Missing { .. } => {
                "CI has not published it yet: wait for it with `--wait-for-images 10m`, or add `build:` to the service's `image` so sandbox builds it".into()
            }
            ImagesError::NeverAppeared { .. } => {
                "check that CI builds and pushes this tag for the commit, or add `build:` to the service's `image`".into()
            }
            ImagesError::Registry { source, .. } => return source.hint(),
            ImagesError::NoBuildah { .. } | ImagesError::BuildahRun { .. } => {
                "install buildah (`scripts/setup` does; Debian: `apt-get install buildah`), or point SANDBOX_BUILDAH at it".into()
            }
            ImagesError::TagTaken { .. } => {
                "a tag is never overwritten (another sandbox may run it): run `sandbox up` again to use the image now there, or make the tag name the commit (`tag: \"{{repo.sha}}\"`, the default) so each commit builds its own".into()
            }
            ImagesError::BuildFailed { .. } => {
                "the build's output is above; fix the Containerfile or the build context, or run the same `buildah bud` by hand to iterate".into()
            }
        })
    }
}

impl Hint for RegistryError {
    fn hint(&self) -> Option<String> {
        Some(registry_hint(self))
    }
}

fn registry_hint(source: &RegistryError) -> String {
    match source {
        RegistryError::Unreachable { registry, .. } => format!(
            "is the registry at {registry} running and reachable from here? A registry that speaks plain HTTP belongs under `images.insecure_registries` in sandbox.yaml"
        ),
        RegistryError::Untrusted { registry, certificate } => format!(
            "trust the CA{} for this registry only with `images: {{registries: {{\"{registry}\": {{ca_file: ca.pem}}}}}}` in sandbox.yaml, or for every connection with `--ca-file ca.pem` / SANDBOX_CA_FILE, SSL_CERT_FILE or the system store; an HTTPS registry needs no `insecure_registries` for this",
            certificate.issuer.as_ref().map(|i| format!(" that issued its certificate ({i})")).unwrap_or_default()
        ),
        RegistryError::Helper { source, .. } => source.hint().unwrap_or_default(),
        RegistryError::AuthRequired { registry, .. } | RegistryError::Denied { registry, .. } => format!(
            "log in to {registry} (`skopeo login {registry}`, `podman login`, `buildah login` or `docker login` write the credentials where sandbox reads them: REGISTRY_AUTH_FILE or $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, $DOCKER_CONFIG/config.json or ~/.docker/config.json, with their credHelpers/credsStore)"
        ),
        RegistryError::Unexpected { .. } => "the registry's answer is above".into(),
        RegistryError::NoPlatform { .. } => {
            "publish the image for the nodes' platform too (a multi-platform build), or run the sandbox on nodes of a platform it has".into()
        }
    }
}

impl Hint for HelperError {
    fn hint(&self) -> Option<String> {
        Some(format!(
            "run it by hand (`echo {} | {} get`) to see why; log in again with the tool it belongs to (e.g. `aws ecr get-login-password`, `gcloud auth configure-docker`), or remove it from credHelpers/credsStore",
            self.registry, self.program
        ))
    }
}

//! The connection to the cluster: configuration (`--kubeconfig`, `--context`, `KUBECONFIG`,
//! in-cluster), a reachability probe with a clear error, and API discovery for dynamic objects.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Hint;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::{Api, Client};

mod plugin;

/// The field manager of every server-side apply the tool makes.
pub(crate) const FIELD_MANAGER: &str = "sandbox";

/// Where to find the cluster, as the user said it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterOptions {
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) context: Option<String>,
}

/// A reachable cluster and what it serves.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub(crate) client: Client,
    pub(crate) discovery: std::sync::Arc<Discovery>,
    /// The API server URL, for messages.
    pub(crate) server: String,
    /// The kubeconfig context in use (None: in a pod, or no kubeconfig), for messages.
    pub(crate) context: Option<String>,
    /// The server's Kubernetes version, e.g. `v1.20.15` (what charts see as `.Capabilities`).
    pub(crate) version: String,
}

/// The cluster could not be reached or configured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("no usable Kubernetes configuration")]
    Config {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// The context in use is the local development cluster's.
        local_dev: bool,
    },
    /// The kubeconfig's credential plugin (`users[].user.exec`) failed.
    #[error("the kubeconfig's credential plugin `{plugin}` failed: {problem}")]
    CredentialPlugin { plugin: String, problem: String },
    /// The API server did not answer.
    #[error("the Kubernetes API server at {server} is unreachable")]
    Unreachable {
        server: String,
        #[source]
        source: kube::Error,
        local_dev: bool,
    },
    /// The API server answered but discovery failed.
    #[error("could not discover the API resources the cluster at {server} serves")]
    Discovery {
        server: String,
        #[source]
        source: kube::Error,
        local_dev: bool,
    },
}

impl Hint for ClusterError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ClusterError::Config { local_dev: true, .. } => {
                "for the local cluster run commands through `scripts/local-cluster exec -- sandbox …`".into()
            }
            ClusterError::Config { .. } => {
                "set KUBECONFIG or pass --kubeconfig (your provider's CLI writes one, e.g. `aws eks update-kubeconfig`, `gcloud container clusters get-credentials`, `az aks get-credentials`), and choose the context with --context (`kubectl config get-contexts` lists them)".into()
            }
            ClusterError::CredentialPlugin { plugin, .. } => format!(
                "run `{plugin}` by hand to see why; log in again with the tool it belongs to (e.g. `aws sso login`, `gcloud auth login`, `kubelogin`), or choose another context with --context"
            ),
            ClusterError::Unreachable { local_dev: true, .. }
            | ClusterError::Discovery { local_dev: true, .. } => {
                "is the local cluster running? `scripts/local-cluster status`; check --context and KUBECONFIG".into()
            }
            ClusterError::Unreachable { .. } | ClusterError::Discovery { .. } => {
                unreachable_hint().into()
            }
        })
    }
}

/// The hint for a cluster that does not answer, to users of any cluster.
pub(crate) fn unreachable_hint() -> &'static str {
    "is the cluster running and reachable from here? Check the context (--context, `kubectl config current-context`) and KUBECONFIG; a private API server may need your VPN or a proxy (HTTPS_PROXY, or the kubeconfig's `proxy-url`); `kubectl cluster-info` tries the same connection"
}

/// The kubeconfig context of the local development cluster (`scripts/local-cluster`): only
/// there do hints mention the development scripts.
pub(crate) const LOCAL_DEV_CONTEXT: &str = "sandbox-local";

/// The client configuration the options choose.
async fn client_config(
    options: &ClusterOptions,
    local_dev: bool,
) -> Result<kube::Config, ClusterError> {
    let kube_options = KubeConfigOptions {
        context: options.context.clone(),
        ..Default::default()
    };
    let config = match &options.kubeconfig {
        Some(path) => match Kubeconfig::read_from(path) {
            Ok(file) => kube::Config::from_custom_kubeconfig(file, &kube_options)
                .await
                .map_err(Into::into),
            Err(e) => Err(e.into()),
        },
        None if options.context.is_some() => kube::Config::from_kubeconfig(&kube_options)
            .await
            .map_err(Into::into),
        None => kube::Config::infer().await.map_err(Into::into),
    };
    config.map_err(|source| ClusterError::Config { source, local_dev })
}

/// Connect to the cluster the options point at, and check that it answers.
pub(crate) async fn connect(options: &ClusterOptions) -> Result<Cluster, ClusterError> {
    let context = context_in_use(options);
    let local_dev = context.as_deref() == Some(LOCAL_DEV_CONTEXT);
    let mut config = client_config(options, local_dev).await?;
    // Fail in seconds, not minutes, when nothing listens.
    config.connect_timeout = Some(Duration::from_secs(5));
    learn_credentials(&config.auth_info);
    plugin::prepare(&mut config.auth_info);
    let server = config.cluster_url.to_string();
    let auth = config.auth_info.clone();
    let direct = Client::try_from(config).map_err(|e| match plugin::failure(&auth, &e) {
        Some((plugin, problem)) => ClusterError::CredentialPlugin { plugin, problem },
        None => ClusterError::Config {
            source: e.into(),
            local_dev,
        },
    })?;
    let default_namespace = direct.default_namespace().to_owned();
    // Every request goes through the retries that ride out a short outage of the API server;
    // each attempt is summarised for `--debug`.
    let logged = Client::new(Summarised { inner: direct }, default_namespace.clone());
    let client = Client::new(
        crate::outage::Retrying::new(logged, server.clone(), local_dev),
        default_namespace,
    );
    let version = client
        .apiserver_version()
        .await
        // An expiring token is refreshed by running the plugin again, at a request.
        .map_err(|source| match plugin::failure(&auth, &source) {
            Some((plugin, problem)) => ClusterError::CredentialPlugin { plugin, problem },
            None => ClusterError::Unreachable {
                server: server.clone(),
                source,
                local_dev,
            },
        })?
        .git_version;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|source| ClusterError::Discovery {
            server: server.clone(),
            source,
            local_dev,
        })?;
    Ok(Cluster {
        client,
        discovery: std::sync::Arc::new(discovery),
        server,
        context,
        version,
    })
}

/// The context the options choose: `--context`, else the kubeconfig's current one (the file
/// `--kubeconfig` names, else `KUBECONFIG` or `~/.kube/config`); None in a pod without one.
fn context_in_use(options: &ClusterOptions) -> Option<String> {
    if let Some(context) = &options.context {
        return Some(context.clone());
    }
    let kubeconfig = match &options.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).ok(),
        None => Kubeconfig::read().ok(),
    };
    kubeconfig.and_then(|k| k.current_context)
}

/// The credentials the client uses never show in a diagnostic line or an error, whatever
/// `RUST_LOG` lets through (no crate is known to log them; this is the net under that): the
/// kubeconfig's token, password and client key, and the token file's token — in a pod, the
/// ServiceAccount's (`/var/run/secrets/kubernetes.io/serviceaccount/token`), read at each
/// connection as kube re-reads it when it rotates.
fn learn_credentials(auth: &kube::config::AuthInfo) {
    use secrecy::ExposeSecret;
    let mut secrets: Vec<String> = [&auth.token, &auth.password, &auth.client_key_data]
        .into_iter()
        .flatten()
        .map(|s| s.expose_secret().trim().to_owned())
        .collect();
    if let Some(file) = &auth.token_file {
        if let Ok(token) = std::fs::read_to_string(file) {
            secrets.push(token.trim().to_owned());
        }
    }
    if let Some(data) = &auth.client_key_data {
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD.decode(data.expose_secret().trim());
        if let Ok(pem) = pem {
            secrets.extend(crate::redact::key_lines(&String::from_utf8_lossy(&pem)));
        }
    }
    if let Some(key) = &auth.client_key {
        if let Ok(pem) = std::fs::read_to_string(key) {
            secrets.extend(crate::redact::key_lines(&pem));
        }
    }
    crate::logging::add_secrets(secrets);
}

impl Cluster {
    /// `context `NAME` (API server URL)`: what a command that changes something says first.
    pub(crate) fn describe(&self) -> String {
        match &self.context {
            Some(context) => format!("context `{context}` (API server {})", self.server),
            None => format!("the in-cluster configuration (API server {})", self.server),
        }
    }

    /// The served resource for an `apiVersion` and `kind`, if the cluster knows it.
    pub(crate) fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Option<(ApiResource, ApiCapabilities)> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        self.discovery.resolve_gvk(&gvk)
    }

    /// Every `group/version` and `group/version/Kind` the cluster serves (core: `v1`, `v1/Pod`),
    /// sorted: what `helm template --api-versions` takes.
    pub(crate) fn api_versions(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        for group in self.discovery.groups() {
            for version in group.versions() {
                for (resource, _) in group.versioned_resources(version) {
                    out.insert(format!("{}/{}", resource.api_version, resource.kind));
                    out.insert(resource.api_version);
                }
            }
        }
        out.into_iter().collect()
    }

    /// A dynamic API for a resource in `namespace` (ignored for cluster-scoped resources).
    pub(crate) fn dynamic_api(
        &self,
        resource: &ApiResource,
        capabilities: &ApiCapabilities,
        namespace: &str,
    ) -> Api<kube::api::DynamicObject> {
        match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace, resource),
            Scope::Cluster => Api::all_with(self.client.clone(), resource),
        }
    }
}

/// What the API server said, for one line of output: its message, else the error itself.
pub(crate) fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// The HTTP status of an API error, if it is one.
pub(crate) fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// One debug line per API request on [`crate::logging::API_TARGET`] (`--debug`): method, path
/// and query, status, duration. Never headers (the credentials) nor bodies (Secrets' data).
#[derive(Clone)]
struct Summarised {
    inner: Client,
}

type Answer = Result<http::Response<kube::client::Body>, tower::BoxError>;

impl tower::Service<http::Request<kube::client::Body>> for Summarised {
    type Response = http::Response<kube::client::Body>;
    type Error = tower::BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), tower::BoxError>> {
        // The inner client buffers; it is always ready to take a request.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let method = request.method().clone();
            let path = request
                .uri()
                .path_and_query()
                .map_or_else(|| request.uri().path().to_owned(), ToString::to_string);
            let started = std::time::Instant::now();
            let answer = inner.send(request).await;
            let took = format!("{:.0}ms", started.elapsed().as_secs_f64() * 1000.0);
            match &answer {
                Ok(response) => tracing::debug!(
                    target: crate::logging::API_TARGET,
                    method = %method,
                    path = %path,
                    status = response.status().as_u16(),
                    took = %took,
                    "api.request"
                ),
                Err(error) => tracing::debug!(
                    target: crate::logging::API_TARGET,
                    method = %method,
                    path = %path,
                    error = %error,
                    took = %took,
                    "api.request"
                ),
            }
            Ok(answer?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{ClusterError, Hint as _};

    #[test]
    fn hints_mention_the_development_scripts_only_for_the_local_dev_cluster() {
        let kube_error = || kube::Error::LinesCodecMaxLineLengthExceeded;
        for local_dev in [false, true] {
            let errors = [
                ClusterError::Config {
                    source: "no kubeconfig".into(),
                    local_dev,
                },
                ClusterError::Unreachable {
                    server: "https://k8s.example.com".into(),
                    source: kube_error(),
                    local_dev,
                },
                ClusterError::Discovery {
                    server: "https://k8s.example.com".into(),
                    source: kube_error(),
                    local_dev,
                },
            ];
            for error in errors {
                let hint = error.hint().unwrap();
                assert_eq!(hint.contains("scripts/"), local_dev, "{hint}");
                assert!(hint.contains("KUBECONFIG") || local_dev, "{hint}");
            }
        }
    }

    #[test]
    fn the_kubeconfig_credentials_are_scrubbed_from_diagnostics() {
        let auth = kube::config::AuthInfo {
            token: Some("kubeconfig-test-token-5f0c1d".to_owned().into()),
            password: Some("kubeconfig-test-password-9e2a".to_owned().into()),
            ..Default::default()
        };
        super::learn_credentials(&auth);
        let line = "Authorization: Bearer kubeconfig-test-token-5f0c1d basic kubeconfig-test-password-9e2a";
        let scrubbed = crate::logging::scrub(line);
        assert_eq!(
            scrubbed,
            "Authorization: Bearer <redacted> basic <redacted>"
        );
    }

    /// In a pod, kube reads the ServiceAccount's token from a file (and re-reads it).
    #[test]
    fn the_token_file_kube_reads_is_scrubbed_from_diagnostics() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "eyJhbGciOiJSUzI1NiJ9.service-account-test-token\n").unwrap();
        let auth = kube::config::AuthInfo {
            token_file: Some(file.display().to_string()),
            ..Default::default()
        };
        super::learn_credentials(&auth);
        let line = "GET /api with eyJhbGciOiJSUzI1NiJ9.service-account-test-token failed";
        assert_eq!(
            crate::logging::scrub(line),
            "GET /api with <redacted> failed"
        );
    }
}

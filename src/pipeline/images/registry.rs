//! The OCI distribution API, as much as resolving needs: `HEAD /v2/NAME/manifests/REF` for the
//! digest, `GET` of an index to choose the node's platform, and the two auth schemes registries
//! answer 401 with: `Bearer` (a token from the realm, anonymous or with credentials) and `Basic`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::auth::{self, AuthSources, Credentials, HelperError};
use super::reference::ImageName;
use crate::net::UntrustedCertificate;

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The OS and architecture of the cluster's nodes: what an index is resolved for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    pub(crate) os: String,
    pub(crate) architecture: String,
}

impl Platform {
    /// This machine's, for when no node is asked.
    pub(crate) fn local() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
    }
}

/// Why a registry did not answer the question.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("the registry {registry} is unreachable ({url})")]
    Unreachable {
        registry: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Its certificate is not one the trust policy vouches for (src/net/).
    #[error("the registry {registry} cannot be reached safely: {certificate}")]
    Untrusted {
        registry: String,
        certificate: UntrustedCertificate,
    },
    #[error("the registry {registry}'s credentials could not be obtained")]
    Helper {
        registry: String,
        #[source]
        source: HelperError,
    },
    #[error("the registry {registry} requires credentials for {path}, and none are configured")]
    AuthRequired { registry: String, path: String },
    #[error("the registry {registry} refused the credentials for {path} ({status})")]
    Denied {
        registry: String,
        path: String,
        status: StatusCode,
    },
    #[error("the registry {registry} answered {status} for {url}: {excerpt}")]
    Unexpected {
        registry: String,
        url: String,
        status: StatusCode,
        excerpt: String,
    },
    #[error("{reference} has no image for {platform} (it has: {available})")]
    NoPlatform {
        reference: String,
        platform: Platform,
        available: String,
    },
}

/// How registries are reached beyond the defaults: sandbox.yaml's per-registry CA files and
/// whether credential helpers may run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistryAccess {
    /// `images.registries.HOST[:PORT].ca_file`, by registry.
    pub(crate) ca_files: BTreeMap<String, PathBuf>,
    pub(crate) run_helpers: bool,
}

/// A client for any number of registries, with the tokens it obtained.
pub(crate) struct Registries {
    http: reqwest::Client,
    insecure: Vec<String>,
    auth: AuthSources,
    /// Each registry's credentials, looked up (helpers run) once per run.
    credentials: tokio::sync::Mutex<HashMap<String, Option<Credentials>>>,
    /// `Authorization` header values by `registry/path`, reused within a run.
    authorizations: Mutex<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    platform: Option<IndexPlatform>,
}

#[derive(Deserialize)]
struct IndexPlatform {
    os: String,
    architecture: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
}

impl Registries {
    /// Registries with the defaults: the common trust policy, credential helpers allowed.
    #[cfg(test)]
    pub(crate) fn new(insecure: &[String], env: &dyn Fn(&str) -> Option<String>) -> Registries {
        let access = RegistryAccess {
            run_helpers: true,
            ..RegistryAccess::default()
        };
        Registries::configured(insecure, &access, env).expect("no CA file to read")
    }

    /// Registries trusting, besides the common policy, each registry's own CA file (for that
    /// host only).
    pub(crate) fn configured(
        insecure: &[String],
        access: &RegistryAccess,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Registries, crate::net::CaFileError> {
        let mut per_host: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (registry, file) in &access.ca_files {
            let host = crate::net::host_of(registry).to_owned();
            per_host.entry(host).or_default().push(file.clone());
        }
        let http = crate::net::client_builder_for(&per_host)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a TLS backend is compiled in");
        Ok(Registries {
            http,
            insecure: insecure.to_vec(),
            auth: AuthSources {
                files: auth::auth_files(env),
                run_helpers: access.run_helpers,
                path: env("PATH"),
            },
            credentials: tokio::sync::Mutex::default(),
            authorizations: Mutex::new(HashMap::new()),
        })
    }

    /// `registry`'s credentials, from the auth files or a helper (asked once per run).
    async fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let mut known = self.credentials.lock().await;
        if let Some(found) = known.get(registry) {
            return Ok(found.clone());
        }
        let found = auth::credentials_for(registry, &self.auth)
            .await
            .map_err(|source| RegistryError::Helper {
                registry: registry.to_owned(),
                source,
            })?;
        known.insert(registry.to_owned(), found.clone());
        Ok(found)
    }

    /// The digest `name:reference` has for `platform`, or None when the registry has no such
    /// manifest.
    pub(crate) async fn digest(
        &self,
        name: &ImageName,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<String>, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            name.api_base(&self.insecure),
            name.path
        );
        let Some((headers, _)) = self.request(Method::HEAD, &url, name).await? else {
            return Ok(None);
        };
        let content_type = header(&headers, CONTENT_TYPE);
        let digest = header(
            &headers,
            "docker-content-digest".parse().expect("header name"),
        );
        if INDEX_TYPES.contains(&content_type.as_str()) {
            let shown = format!("{}:{reference}", name.written);
            return self
                .platform_digest(name, &url, &shown, platform)
                .await
                .map(Some);
        }
        if !digest.is_empty() {
            return Ok(Some(digest));
        }
        // Registries that do not send the digest on HEAD: hash the manifest itself.
        let Some((_, body)) = self.request(Method::GET, &url, name).await? else {
            return Ok(None);
        };
        Ok(Some(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(&body))
        )))
    }

    /// The digest of `platform`'s manifest in the index at `url`.
    async fn platform_digest(
        &self,
        name: &ImageName,
        url: &str,
        shown: &str,
        platform: &Platform,
    ) -> Result<String, RegistryError> {
        let body = match self.request(Method::GET, url, name).await? {
            Some((_, body)) => body,
            None => Vec::new(),
        };
        let index: Index = serde_json::from_slice(&body).unwrap_or(Index { manifests: vec![] });
        let matches =
            |p: &IndexPlatform| p.os == platform.os && p.architecture == platform.architecture;
        if let Some(entry) = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(matches))
        {
            return Ok(entry.digest.clone());
        }
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        Err(RegistryError::NoPlatform {
            reference: shown.to_owned(),
            platform: platform.clone(),
            available: if available.is_empty() {
                "nothing".into()
            } else {
                available.join(", ")
            },
        })
    }

    /// One request, authorized as the registry asks. `Ok(None)` is a 404.
    async fn request(
        &self,
        method: Method,
        url: &str,
        name: &ImageName,
    ) -> Result<Option<(HeaderMap, Vec<u8>)>, RegistryError> {
        let key = format!("{}/{}", name.registry, name.path);
        let known = self
            .authorizations
            .lock()
            .expect("not poisoned")
            .get(&key)
            .cloned();
        let mut response = self
            .send(method.clone(), url, name, known.as_deref())
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = header(response.headers(), WWW_AUTHENTICATE);
            let authorization = self.authorize(&challenge, name).await?;
            self.authorizations
                .lock()
                .expect("not poisoned")
                .insert(key, authorization.clone());
            response = self.send(method, url, name, Some(&authorization)).await?;
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        match status {
            s if s.is_success() => Ok(Some((headers, body))),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let has_credentials = self.credentials(&name.registry).await?.is_some();
                Err(refusal(name, has_credentials, status))
            }
            _ => Err(RegistryError::Unexpected {
                registry: name.registry.clone(),
                url: url.to_owned(),
                status,
                excerpt: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        name: &ImageName,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let accept = [INDEX_TYPES, MANIFEST_TYPES].concat().join(", ");
        let mut request = self.http.request(method, url).header(ACCEPT, accept);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.send().await.map_err(unreachable(name, url))
    }

    /// The `Authorization` header a 401's challenge asks for.
    async fn authorize(&self, challenge: &str, name: &ImageName) -> Result<String, RegistryError> {
        let credentials = self.credentials(&name.registry).await?;
        let refused = |status| refusal(name, credentials.is_some(), status);
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            return match &credentials {
                Some(c) => Ok(basic(c)),
                None => Err(refused(StatusCode::UNAUTHORIZED)),
            };
        }
        let Some(realm) = params.get("realm") else {
            return Err(refused(StatusCode::UNAUTHORIZED));
        };
        let mut token_url =
            reqwest::Url::parse(realm).map_err(|_| refused(StatusCode::UNAUTHORIZED))?;
        if let Some(service) = params.get("service") {
            token_url.query_pairs_mut().append_pair("service", service);
        }
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", name.path));
        token_url.query_pairs_mut().append_pair("scope", &scope);
        let mut request = self.http.get(token_url.clone());
        if let Some(c) = &credentials {
            request = request.header(AUTHORIZATION, basic(c));
        }
        let response = request
            .send()
            .await
            .map_err(unreachable(name, token_url.as_str()))?;
        if !response.status().is_success() {
            return Err(refused(response.status()));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(unreachable(name, token_url.as_str()))?;
        match answer.token.or(answer.access_token) {
            Some(token) => Ok(format!("Bearer {token}")),
            None => Err(refused(StatusCode::UNAUTHORIZED)),
        }
    }
}

/// A registry said no: with credentials configured they were refused (`status`); without,
/// it wants some.
fn refusal(name: &ImageName, has_credentials: bool, status: StatusCode) -> RegistryError {
    let (registry, path) = (name.registry.clone(), name.path.clone());
    match has_credentials {
        true => RegistryError::Denied {
            registry,
            path,
            status,
        },
        false => RegistryError::AuthRequired { registry, path },
    }
}

/// `url` of `name`'s registry did not answer, or its certificate is not trusted.
fn unreachable<'a>(
    name: &'a ImageName,
    url: &'a str,
) -> impl FnOnce(reqwest::Error) -> RegistryError + 'a {
    move |source| match crate::net::untrusted(&source) {
        Some(certificate) => RegistryError::Untrusted {
            registry: name.registry.clone(),
            certificate,
        },
        None => RegistryError::Unreachable {
            registry: name.registry.clone(),
            url: url.to_owned(),
            source,
        },
    }
}

fn basic(c: &Credentials) -> String {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    format!("Basic {encoded}")
}

fn header(headers: &HeaderMap, name: reqwest::header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default()
}

/// `Bearer realm="https://auth.example.com/token",service="reg",scope="repository:x:pull"` →
/// (`Bearer`, {realm, service, scope}).
pub(crate) fn parse_challenge(challenge: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = challenge
        .trim()
        .split_once(' ')
        .unwrap_or((challenge.trim(), ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, remaining)) => (value, remaining),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key.to_ascii_lowercase(), value.to_owned());
        rest = remaining.trim_start_matches(',').trim();
    }
    (scheme.to_owned(), params)
}

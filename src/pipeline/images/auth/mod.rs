//! Registry credentials, where podman, skopeo, buildah and docker find them. The files, in the
//! order podman documents (containers-auth.json(5)):
//!
//! 1. `REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json` (what `podman login`
//!    and `skopeo login` write);
//! 2. `$XDG_CONFIG_HOME/containers/auth.json` (default `~/.config/containers/auth.json`);
//! 3. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`;
//! 4. `~/.dockercfg` (docker's old format).
//!
//! In each file, as docker reads it: a credential helper for the registry (`credHelpers`), else
//! the file's `credsStore`, else `auths.<registry>` (`auth`, base64 `user:password`, or
//! `username` + `password`). The first file that has credentials wins; a helper that has none
//! for the registry ("credentials not found") passes on to the next file. A helper is the
//! program `docker-credential-NAME` on PATH, run as `docker-credential-NAME get` with the
//! registry on stdin; it answers `{"Username": …, "Secret": …}` on stdout. Its secret is
//! registered with the scrubber at once and never logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

/// How long a credential helper may take (a cloud helper fetches a token over the network).
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// Where credentials are looked for, and whether helpers may run.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthSources {
    pub(crate) files: Vec<PathBuf>,
    /// Off for serve unless its operator turns them on: see `README.md`.
    pub(crate) run_helpers: bool,
    /// `PATH`, where helpers are looked for (absolute directories only).
    pub(crate) path: Option<String>,
}

/// A credential helper that did not give credentials.
#[derive(Debug, thiserror::Error)]
#[error("the credential helper `{program}` ({configured}) failed for {registry}: {problem}")]
pub(crate) struct HelperError {
    pub(crate) program: String,
    /// Where it was configured, e.g. `credHelpers in /home/ada/.docker/config.json`.
    pub(crate) configured: String,
    pub(crate) registry: String,
    /// Its exit status and scrubbed stderr, or why it could not run or be read.
    pub(crate) problem: String,
}

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The auth files to look in, in order, from the environment (see the module's doc).
pub(crate) fn auth_files(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let home = set("HOME").map(PathBuf::from);
    let mut files = Vec::new();
    if let Some(file) = set("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(file));
    } else if let Some(dir) = set("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(dir).join("containers/auth.json"));
    }
    match (set("XDG_CONFIG_HOME"), &home) {
        (Some(dir), _) => files.push(PathBuf::from(dir).join("containers/auth.json")),
        (None, Some(home)) => files.push(home.join(".config/containers/auth.json")),
        (None, None) => {}
    }
    match (set("DOCKER_CONFIG"), &home) {
        (Some(dir), _) => files.push(PathBuf::from(dir).join("config.json")),
        (None, Some(home)) => files.push(home.join(".docker/config.json")),
        (None, None) => {}
    }
    if let Some(home) = home {
        files.push(home.join(".dockercfg"));
    }
    files
}

/// The credentials for `registry` from the first of `sources`' files that has them (the
/// password, and the `auth` text that carries it, never shown from then on).
pub(crate) async fn credentials_for(
    registry: &str,
    sources: &AuthSources,
) -> Result<Option<Credentials>, HelperError> {
    for file in &sources.files {
        let Some(found) = in_file(registry, file, sources).await? else {
            continue;
        };
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", found.username, found.password));
        crate::logging::add_secrets([found.password.clone(), auth]);
        return Ok(Some(found));
    }
    Ok(None)
}

/// What one file says for `registry`: its helper's answer, or its `auths` entry.
async fn in_file(
    registry: &str,
    file: &Path,
    sources: &AuthSources,
) -> Result<Option<Credentials>, HelperError> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(None);
    };
    let parsed = parse(file, &text);
    let helper = parsed
        .cred_helpers
        .iter()
        .find(|(key, _)| same_registry(key, registry))
        .map(|(_, name)| (name.clone(), "credHelpers"))
        .or_else(|| parsed.creds_store.clone().map(|n| (n, "credsStore")))
        .filter(|(name, _)| !name.is_empty());
    if let Some((name, field)) = helper {
        if !sources.run_helpers {
            tracing::debug!(event = "registry.helper_skipped", helper = %name, file = %file.display());
            return Ok(None);
        }
        let configured = format!("{field} in {}", file.display());
        return run_helper(&name, &configured, registry, sources.path.as_deref()).await;
    }
    Ok(parsed
        .auths
        .iter()
        .find(|(key, _)| same_registry(key, registry))
        .and_then(|(_, entry)| entry.credentials()))
}

/// An auth file, or docker's old `~/.dockercfg` (the `auths` map at the top level).
fn parse(file: &Path, text: &str) -> AuthFile {
    let legacy = file.file_name().is_some_and(|n| n == ".dockercfg");
    if legacy {
        let auths = serde_json::from_str(text).unwrap_or_default();
        return AuthFile {
            auths,
            ..AuthFile::default()
        };
    }
    serde_json::from_str(text).unwrap_or_default()
}

/// `docker-credential-NAME get`, the registry on stdin. "credentials not found" is no
/// credentials; any other failure is an error naming the helper.
async fn run_helper(
    name: &str,
    configured: &str,
    registry: &str,
    path: Option<&str>,
) -> Result<Option<Credentials>, HelperError> {
    let program = format!("docker-credential-{name}");
    let fail = |problem: String| HelperError {
        program: program.clone(),
        configured: configured.to_owned(),
        registry: registry.to_owned(),
        problem,
    };
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(fail(
            "a helper's name is a program suffix, not a path".into(),
        ));
    }
    let located =
        crate::program::on_path(&program, path.map(std::ffi::OsStr::new)).ok_or_else(|| {
            fail("it is not installed: no such program in PATH's absolute directories".into())
        })?;
    let mut child = tokio::process::Command::new(located)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("could not run it ({e})")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its exit status.
        let _ = stdin.write_all(server_url(registry).as_bytes()).await;
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            fail(format!(
                "it did not answer within {}s",
                HELPER_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| fail(format!("could not read its answer ({e})")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if format!("{stdout}{stderr}").contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!(
            "{}: {}",
            output.status,
            crate::logging::stderr_excerpt(&stderr)
        )));
    }
    let answer: HelperAnswer = serde_json::from_str(stdout.trim()).map_err(|_| {
        fail(
            "its answer is not the JSON `{\"Username\": …, \"Secret\": …}` of the helper protocol"
                .into(),
        )
    })?;
    crate::logging::add_secrets([answer.secret.clone()]);
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

/// What docker hands a helper for a registry: the host, except Docker Hub's historic URL.
fn server_url(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".into()
        }
        other => other.to_owned(),
    }
}

impl AuthEntry {
    fn credentials(&self) -> Option<Credentials> {
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            return Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            });
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_deref()?.trim())
            .ok()?;
        let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// Auth files key registries as `host`, `https://host` or `https://host/v1/` (Docker Hub).
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    host == registry || (hub(host) && hub(registry))
}

#[cfg(test)]
mod tests;

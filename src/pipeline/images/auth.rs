//! Registry credentials, where Docker, Podman, skopeo and buildah keep them: `REGISTRY_AUTH_FILE`,
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json` (the first that has the registry wins).
//! `auths.<registry>.auth` (base64 `user:password`) or `username` + `password`. Credential
//! helpers (`credHelpers`, `credsStore`) are not run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

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

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The auth files to look in, in order, from the environment.
pub(crate) fn auth_files(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = env("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = env("DOCKER_CONFIG") {
        files.push(PathBuf::from(dir).join("config.json"));
    }
    if let Some(home) = env("HOME") {
        files.push(PathBuf::from(home).join(".docker/config.json"));
    }
    files
}

/// The credentials for `registry` in the first of `files` that has them (the password, and
/// the `auth` text that carries it, never shown from then on).
pub(crate) fn credentials_for(registry: &str, files: &[PathBuf]) -> Option<Credentials> {
    let found = files.iter().find_map(|file| {
        let text = std::fs::read_to_string(file).ok()?;
        let parsed: AuthFile = serde_json::from_str(&text).ok()?;
        parsed
            .auths
            .iter()
            .find(|(key, _)| same_registry(key, registry))
            .and_then(|(_, entry)| entry.credentials())
    })?;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", found.username, found.password));
    crate::logging::add_secrets([found.password.clone(), auth]);
    Some(found)
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
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_first_file_that_has_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("auth.json");
        let second = dir.path().join("config.json");
        std::fs::write(&first, r#"{"auths": {"other.io": {"auth": "eDp5"}}}"#).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode("ci:s3cret:with:colons");
        std::fs::write(
            &second,
            format!(r#"{{"auths": {{"https://reg.example.com": {{"auth": "{encoded}"}}, "https://index.docker.io/v1/": {{"username": "u", "password": "p"}}}}}}"#),
        )
        .unwrap();
        let files = [dir.path().join("missing.json"), first, second];
        let creds = credentials_for("reg.example.com", &files).unwrap();
        assert_eq!(creds.username, "ci");
        assert_eq!(creds.password, "s3cret:with:colons");
        assert_eq!(credentials_for("docker.io", &files).unwrap().username, "u");
        assert_eq!(credentials_for("other.io", &files).unwrap().password, "y");
        assert!(credentials_for("nowhere.io", &files).is_none());
        assert!(
            !format!("{creds:?}").contains("s3cret"),
            "Debug hides the password"
        );
    }

    #[test]
    fn files_are_looked_up_in_the_order_the_tools_use() {
        let env = |k: &str| match k {
            "REGISTRY_AUTH_FILE" => Some("/run/auth.json".to_owned()),
            "DOCKER_CONFIG" => Some("/etc/docker-cfg".to_owned()),
            "HOME" => Some("/home/ada".to_owned()),
            _ => None,
        };
        assert_eq!(
            auth_files(&env),
            [
                PathBuf::from("/run/auth.json"),
                PathBuf::from("/etc/docker-cfg/config.json"),
                PathBuf::from("/home/ada/.docker/config.json")
            ]
        );
    }
}

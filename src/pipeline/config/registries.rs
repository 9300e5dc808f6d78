//! `images.registries` in `sandbox.yaml`: how each registry is reached beyond the common trust
//! policy — today, the CA file that vouches for its certificate (a registry behind a private
//! CA is HTTPS, not "insecure"). The file is on the user's machine, relative to sandbox.yaml;
//! sandbox.yaml is never read from a branch.
//!
//! ```yaml
//! images:
//!   registries:
//!     registry.corp.example:5000: {ca_file: certs/corp-ca.pem}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::validate::ConfigFile;
use super::ConfigError;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Registry")]
pub(super) struct RawRegistry {
    /// The CA (PEM) the registry's certificate is checked against, besides the system's;
    /// relative to sandbox.yaml's directory, `${VAR}` expanded.
    ca_file: Option<String>,
}

/// Each registry's CA file, absolute or relative to `dir` (sandbox.yaml's directory); `${VAR}`s
/// expanded.
pub(super) fn ca_files(
    file: &ConfigFile,
    raw: &BTreeMap<String, RawRegistry>,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    let mut out = BTreeMap::new();
    for (registry, settings) in raw {
        let Some(ca_file) = &settings.ca_file else {
            continue;
        };
        let keys = ["images", "registries", registry.as_str(), "ca_file"];
        if registry.contains('/') || registry.is_empty() {
            return Err(file.invalid(
                &keys[..3],
                format!("`{registry}` is not a registry host (HOST or HOST:PORT)"),
                Some(
                    "write the registry as images name it, e.g. `registry.corp.example:5000`"
                        .into(),
                ),
            ));
        }
        let path = PathBuf::from(file.expand(&keys, ca_file, env)?);
        let path = if path.is_absolute() {
            path
        } else {
            dir.join(path)
        };
        if !path.is_file() {
            return Err(file.invalid(
                &keys,
                format!("the CA file {} does not exist", path.display()),
                Some("give the PEM file of the CA that issued the registry's certificate (relative paths are from sandbox.yaml's directory)".into()),
            ));
        }
        out.insert(registry.clone(), path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = "name: shop\nnamespace_prefix: shop-\nttl: 2d\nurl: {service: api}\nrepos:\n  backend: {url: /srv/backend.git}\nservices:\n  api: {repo: backend, templates: [t.yaml]}\n";

    fn parse(images: &str, dir: &Path) -> Result<super::super::Config, super::ConfigError> {
        std::fs::write(dir.join("t.yaml"), "").unwrap();
        let text = format!("{BASE}images:\n{images}");
        super::super::parse(&text, &dir.join("sandbox.yaml"), &|_| None)
    }

    #[test]
    fn a_registry_s_ca_file_is_relative_to_sandbox_yaml_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corp-ca.pem"), "").unwrap();
        let config = parse(
            "  registries:\n    \"reg.corp.example:5000\": {ca_file: corp-ca.pem}\n",
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            config.registry_ca_files["reg.corp.example:5000"],
            dir.path().join("corp-ca.pem")
        );

        let error = parse(
            "  registries:\n    \"reg.corp.example:5000\": {ca_file: missing.pem}\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
        let error = parse(
            "  registries:\n    \"reg.corp.example:5000\": {ca: x}\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}

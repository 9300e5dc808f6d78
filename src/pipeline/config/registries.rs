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

use super::{ConfigError, ConfigFile};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
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

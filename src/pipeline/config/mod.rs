//! Stage 1: load and validate `sandbox.yaml`.
//!
//! Parsing is strict (unknown fields are errors with a "did you mean" hint) and every error names
//! the file, the line and the field, so a typo never turns into a half-deployed sandbox.
//!
//! The file is parsed as written (`raw.rs`), then each part is checked and turned into the model
//! the pipeline reads (`model.rs`): the file-wide settings (`validate.rs`), the services and the
//! references between them (`services.rs`), `allow` (`privilege.rs`), `rbac` (`rbac.rs`) and
//! the isolation settings (`isolation.rs`). Errors: `error.rs`. `apiVersion` is checked first
//! (`version.rs`); the JSON Schema comes from the same types as the parser (`schema.rs`).

use std::path::Path;

use crate::error::Hint as _;

mod error;
mod isolation;
mod model;
mod privilege;
mod raw;
mod rbac;
mod registries;
mod schema;
mod services;
mod validate;
mod version;

pub(crate) use error::ConfigError;
pub(crate) use isolation::{
    parse_quantity, AllowFrom, Caps, Isolation, NetworkPolicy, PodSecurity, Quota,
};
pub(crate) use model::{
    BuildSpec, ChartFrom, ChartRef, Config, HelmSettings, ImageSpec, Repo, RepoFileLimits, Service,
    SopsBinary, Timeouts, UrlRule, DEFAULT_IMAGE_TAG, DEFAULT_KUBE_VERSION, SOPS_KEY_TYPES,
};
pub(crate) use privilege::{Privilege, VolumeType};
pub(crate) use rbac::never_bound;
pub(crate) use schema::json_schema;
pub(crate) use validate::render_host;
pub(crate) use version::CURRENT as CURRENT_VERSION;
// The one wording of "did you mean", also for service names given on the command line.
pub(crate) use crate::text::suggest;

use raw::RawConfig;
use validate::ConfigFile;

/// The file name looked up in the working directory when `--config` is not given.
pub(crate) const FILE_NAME: &str = "sandbox.yaml";

/// Read and validate the config at `path`. `env` expands `${VAR}` in repo URLs.
pub(crate) fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, env)
}

/// Validate config `text` that was read from `path`. Checks run in this order, and the first
/// failure is reported.
pub(crate) fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw = as_written(text, path)?;
    let file = ConfigFile { path, text };
    let ttl = file.duration(&["ttl"], &raw.ttl)?;
    let timeouts = validate::timeouts(&file, &raw.timeouts)?;
    validate::check_namespace_prefix(&file, &raw.namespace_prefix)?;
    let repos = validate::repos(&file, raw.repos, env)?;
    validate::check_name(&file, &raw.name)?;
    let services = services::services(&file, raw.services, &raw.allow, raw.rbac, env)?;
    let insecure_registries = validate::insecure_registries(&file, &raw.images, env)?;
    let dir = validate::config_dir(path);
    let registry_ca_files = registries::ca_files(&file, &raw.images.registries, &dir, env)?;
    let names = services.iter().map(|s| s.name.as_str()).collect();
    services::check_references(&file, &dir, &repos, &names, &services)?;
    services::check_no_cycle(&file, &services)?;
    let hosts = validate::host_patterns(&file, raw.url.host.as_ref())?;
    let url = validate::url_rule(&file, raw.url, &names)?;
    let helm = validate::helm_settings(&file, raw.helm)?;
    let sops_binary = validate::sops_binary(&file, raw.sops.binary)?;
    let repo_files = validate::repo_file_limits(&file, &raw.repo_files)?;
    let isolation = isolation::isolation(
        &file,
        isolation::RawIsolation {
            limits: raw.limits,
            network_policy: raw.network_policy,
            pod_security: raw.pod_security,
            idle_after: raw.idle_after,
        },
    )?;
    Ok(Config {
        path: path.to_owned(),
        dir,
        name: raw.name,
        namespace_prefix: raw.namespace_prefix,
        ttl,
        timeouts,
        url,
        hosts,
        helm,
        insecure_registries,
        registry_ca_files,
        sops_binary,
        repos,
        repo_files,
        services,
        isolation,
    })
}

/// The file as written: YAML within the expansion bounds, of the schema (no unknown field).
fn as_written(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    crate::yaml::check_expansion(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        line: e.line().unwrap_or(1),
        column: 1,
        message: e.to_string(),
        hint: e.hint(),
    })?;
    // A newer file read by an older binary: say so before any field is unknown.
    version::check(&ConfigFile { path, text })?;
    serde_yaml_ng::from_str(text).map_err(|e| error::parse_error(path, &e))
}

#[cfg(test)]
mod tests;

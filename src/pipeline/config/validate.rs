//! From the file as written to the checked settings: the file-wide ones (names, durations, sizes,
//! repositories, helm, sops, the URL), and [`ConfigFile`], which makes every error name the file,
//! the line and the field. The services are `services.rs`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::object::is_dns1035_label_prefix;
use crate::text::parse_size;
use crate::text::suggest;
use crate::yaml::locate_line;

use super::raw::{
    RawHelm, RawHosts, RawImages, RawRepo, RawRepoFiles, RawSize, RawSopsBinary, RawTimeouts,
    RawUrl,
};
use super::{ConfigError, HelmSettings, Repo, RepoFileLimits, SopsBinary, Timeouts, UrlRule};
use super::{DEFAULT_KUBE_VERSION, SOPS_KEY_TYPES};

/// The file being validated: what errors found after parsing point at.
pub(super) struct ConfigFile<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl ConfigFile<'_> {
    /// The field at `keys` (e.g. `services.web.repo`) is not acceptable.
    pub(super) fn invalid(
        &self,
        keys: &[&str],
        message: String,
        hint: Option<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: locate_line(self.text, keys),
            field: keys.join("."),
            message,
            hint,
        }
    }

    /// `depends_on` of `service` closes `cycle`.
    pub(super) fn cycle(&self, service: &str, cycle: Vec<String>) -> ConfigError {
        ConfigError::Cycle {
            path: self.path.to_owned(),
            line: locate_line(self.text, &["services", service, "depends_on"]),
            cycle,
        }
    }

    /// `value` (written at `keys`) with `${VAR}`s from the environment.
    pub(super) fn expand(
        &self,
        keys: &[&str],
        value: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        expand_env(value, env).map_err(|var| {
            self.invalid(
                keys,
                format!("`${{{var}}}` is not set in the environment"),
                Some(format!(
                    "set {var}, e.g. `export {var}=…`, or write the value out"
                )),
            )
        })
    }

    /// The size written at `keys`, at least 1 byte.
    pub(super) fn size(&self, keys: &[&str], value: &RawSize) -> Result<u64, ConfigError> {
        let parsed = match value {
            RawSize::Bytes(n) => Some(*n),
            RawSize::Text(text) => parse_size(text),
        };
        parsed.filter(|n| *n > 0).ok_or_else(|| {
            let written = match value {
                RawSize::Bytes(n) => n.to_string(),
                RawSize::Text(text) => text.clone(),
            };
            self.invalid(
                keys,
                format!("`{written}` is not a size"),
                Some("write sizes like `512KiB`, `1MiB`, `100MiB` or a number of bytes".into()),
            )
        })
    }

    /// The duration written at `keys`.
    pub(super) fn duration(&self, keys: &[&str], value: &str) -> Result<Duration, ConfigError> {
        humantime::parse_duration(value).map_err(|e| {
            self.invalid(
                keys,
                format!("`{value}` is not a duration ({e})"),
                Some("write durations like `90s`, `5m`, `2d`".into()),
            )
        })
    }
}

pub(super) fn timeouts(file: &ConfigFile<'_>, raw: &RawTimeouts) -> Result<Timeouts, ConfigError> {
    Ok(Timeouts {
        service: match &raw.service {
            Some(v) => file.duration(&["timeouts", "service"], v)?,
            None => Duration::from_secs(180),
        },
        smoke: match &raw.smoke {
            Some(v) => file.duration(&["timeouts", "smoke"], v)?,
            None => Duration::from_secs(120),
        },
    })
}

pub(super) fn check_namespace_prefix(
    file: &ConfigFile<'_>,
    prefix: &str,
) -> Result<(), ConfigError> {
    if prefix.len() <= 20 && is_dns1035_label_prefix(prefix) {
        return Ok(());
    }
    Err(file.invalid(
        &["namespace_prefix"],
        format!(
            "`{prefix}` cannot start a namespace name (lower case letters, digits and `-`, starting with a letter, at most 20 characters)"
        ),
        None,
    ))
}

/// The repos, with `${VAR}` in their URLs expanded.
pub(super) fn repos(
    file: &ConfigFile<'_>,
    raw: BTreeMap<String, RawRepo>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Repo>, ConfigError> {
    let mut repos = BTreeMap::new();
    for (name, repo) in raw {
        let url = expand_env(&repo.url, env).map_err(|var| {
            file.invalid(
                &["repos", &name, "url"],
                format!("`${{{var}}}` is not set in the environment"),
                Some(format!(
                    "set {var}, e.g. `export {var}=…`, or write the URL out"
                )),
            )
        })?;
        if let Some(github) = repo.github.as_deref().filter(|g| !is_owner_name(g)) {
            return Err(file.invalid(
                &["repos", &name, "github"],
                format!("`{github}` is not a GitHub repository's `owner/name`"),
                Some("write it as GitHub shows it, e.g. `github: octo-org/backend`".into()),
            ));
        }
        repos.insert(
            name.clone(),
            Repo {
                name,
                url,
                fallback_branch: repo.fallback_branch,
                github: repo.github,
            },
        );
    }
    Ok(repos)
}

/// `owner/name` with GitHub's characters only.
fn is_owner_name(text: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(text.split_once('/'), Some((o, n)) if part(o) && part(n))
}

/// The product's name is the value of the label that says whose a sandbox is, and part of the
/// label selectors that find them: it must be a valid label value (and so cannot add a selector
/// term such as `shop,x=y`).
pub(super) fn check_name(file: &ConfigFile<'_>, name: &str) -> Result<(), ConfigError> {
    let valid = name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return Ok(());
    }
    Err(file.invalid(
        &["name"],
        format!("`{name}` cannot be a Kubernetes label value, which sandbox uses it as"),
        Some("use letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit, at most 63 characters".into()),
    ))
}

/// `images.insecure_registries`, with `${VAR}`s expanded.
pub(super) fn insecure_registries(
    file: &ConfigFile<'_>,
    raw: &RawImages,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    raw.insecure_registries
        .iter()
        .map(|r| file.expand(&["images", "insecure_registries"], r, env))
        .collect()
}

/// The directory template paths are relative to: the config file's.
pub(super) fn config_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// `url.host`, checked: each pattern a template that gives every sandbox hosts of its own
/// (`{{sandbox.namespace}}` in it) and renders to a host name, `*.` allowed in front.
pub(super) fn host_patterns(
    file: &ConfigFile<'_>,
    raw: Option<&RawHosts>,
) -> Result<Vec<String>, ConfigError> {
    let patterns = match raw {
        None => return Ok(Vec::new()),
        Some(RawHosts::One(p)) => vec![p.clone()],
        Some(RawHosts::Many(list)) => list.clone(),
    };
    let example = serde_json::json!({"sandbox": {
        "name": "shop", "branch": "feature-x", "namespace": "sb-feature-x"}});
    for pattern in &patterns {
        let invalid = |message: String| {
            file.invalid(
                &["url", "host"],
                message,
                Some("e.g. `host: \"{{sandbox.namespace}}.preview.example.com\"` (or a list, with `\"*.{{sandbox.namespace}}.preview.example.com\"` for its subdomains)".into()),
            )
        };
        if !pattern.replace(' ', "").contains("{{sandbox.namespace}}") {
            return Err(invalid(format!(
                "`{pattern}` does not hold `{{{{sandbox.namespace}}}}`: every sandbox would claim the same host (`sandbox.name` is the product's name)"
            )));
        }
        if let Err(why) = render_host(pattern, &example) {
            return Err(invalid(format!("`{pattern}`: {why}")));
        }
    }
    Ok(patterns)
}

/// A `url.host` pattern rendered over `context` (`{"sandbox": …}`): a lowercase host name,
/// `*.` allowed in front; or why it is not one.
pub(crate) fn render_host(pattern: &str, context: &serde_json::Value) -> Result<String, String> {
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    let host = hb
        .render_template(pattern, context)
        .map_err(|e| format!("cannot be rendered ({e})"))?;
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "renders to `{host}`, which is not a lowercase host name"
        ));
    }
    Ok(host)
}

/// Exactly one of `url.service` (which must be a service) and `url.template`.
pub(super) fn url_rule(
    file: &ConfigFile<'_>,
    raw: RawUrl,
    names: &BTreeSet<&str>,
) -> Result<UrlRule, ConfigError> {
    match (raw.service, raw.template) {
        (Some(service), None) => {
            if !names.contains(service.as_str()) {
                let known: Vec<&str> = names.iter().copied().collect();
                return Err(file.invalid(
                    &["url", "service"],
                    format!("`{service}` is not a service"),
                    suggest(&service, &known),
                ));
            }
            Ok(UrlRule::Service(service))
        }
        (None, Some(template)) => Ok(UrlRule::Template(template)),
        _ => Err(file.invalid(
            &["url"],
            "give exactly one of `service` or `template`".into(),
            Some("e.g. `url: { service: gateway }`".into()),
        )),
    }
}

/// `helm:`: the offline Kubernetes version must be a version (helm would refuse it later,
/// with a less helpful message).
pub(super) fn helm_settings(
    file: &ConfigFile<'_>,
    raw: RawHelm,
) -> Result<HelmSettings, ConfigError> {
    let kube_version = raw
        .kube_version
        .unwrap_or_else(|| DEFAULT_KUBE_VERSION.to_owned());
    let plain = kube_version.trim_start_matches('v');
    let numeric = plain.split('.').count() >= 2
        && plain
            .split(['.', '-', '+'])
            .take(2)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric {
        return Err(file.invalid(
            &["helm", "kube_version"],
            format!("`{kube_version}` is not a Kubernetes version"),
            Some("write it like `1.30.0`".into()),
        ));
    }
    Ok(HelmSettings {
        kube_version,
        api_versions: raw.api_versions,
    })
}

pub(super) fn sops_binary(
    file: &ConfigFile<'_>,
    raw: Option<RawSopsBinary>,
) -> Result<SopsBinary, ConfigError> {
    let mut settings = SopsBinary::default();
    let Some(raw) = raw else {
        return Ok(settings);
    };
    settings.enabled = raw.enabled;
    if let Some(timeout) = &raw.timeout {
        settings.timeout = file.duration(&["sops", "binary", "timeout"], timeout)?;
    }
    if let Some(key_types) = raw.key_types {
        if let Some(unknown) = key_types
            .iter()
            .find(|k| !SOPS_KEY_TYPES.contains(&k.as_str()))
        {
            return Err(file.invalid(
                &["sops", "binary", "key_types"],
                format!("`{unknown}` is not a sops key type"),
                Some(format!("use some of {}", SOPS_KEY_TYPES.join(", "))),
            ));
        }
        settings.key_types = key_types;
    }
    Ok(settings)
}

pub(super) fn repo_file_limits(
    file: &ConfigFile<'_>,
    raw: &RawRepoFiles,
) -> Result<RepoFileLimits, ConfigError> {
    let default = RepoFileLimits::default();
    let size = |field: &str, value: &Option<RawSize>, default: u64| match value {
        Some(v) => file.size(&["repo_files", field], v),
        None => Ok(default),
    };
    let count = |field: &str, value: Option<u64>, default: u64| match value {
        Some(0) => Err(file.invalid(
            &["repo_files", field],
            "`0` would refuse every checkout".into(),
            Some("give a number of files and directories, e.g. `20000`".into()),
        )),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    Ok(RepoFileLimits {
        max_file_size: size("max_file_size", &raw.max_file_size, default.max_file_size)?,
        max_blob_size: size("max_blob_size", &raw.max_blob_size, default.max_blob_size)?,
        max_tree_files: count("max_tree_files", raw.max_tree_files, default.max_tree_files)?,
        max_tree_size: size("max_tree_size", &raw.max_tree_size, default.max_tree_size)?,
        max_sandbox_files: count(
            "max_sandbox_files",
            raw.max_sandbox_files,
            default.max_sandbox_files,
        )?,
        max_sandbox_size: size(
            "max_sandbox_size",
            &raw.max_sandbox_size,
            default.max_sandbox_size,
        )?,
    })
}

fn expand_env(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").expect("valid regex");
    let mut missing = None;
    let out = re.replace_all(value, |caps: &regex::Captures| match env(&caps[1]) {
        Some(v) => v,
        None => {
            missing.get_or_insert_with(|| caps[1].to_owned());
            String::new()
        }
    });
    match missing {
        Some(var) => Err(var),
        None => Ok(out.into_owned()),
    }
}

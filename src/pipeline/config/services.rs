//! The `services:` section: each service checked on its own (so an error names it), then the
//! references between them: repositories, dependencies (no cycle), templates and charts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::object::is_dns1035_label;
use crate::text::suggest;

use super::error::{unknown_field_hint, unknown_variant_hint};
use super::raw::{RawImage, RawService};
use super::validate::ConfigFile;
use super::DEFAULT_IMAGE_TAG;
use super::{
    rbac, BuildSpec, ChartFrom, ChartRef, ConfigError, ImageSpec, Privilege, Repo, Service,
};

/// The services in file order, each parsed on its own (so an error names the service), with the
/// top-level `allow` and `rbac` added to each one's own.
pub(super) fn services(
    file: &ConfigFile<'_>,
    raw: serde_yaml_ng::Mapping,
    allow: &BTreeSet<Privilege>,
    rbac: rbac::RawRbac,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Service>, ConfigError> {
    let mut services: Vec<Service> = raw
        .into_iter()
        .map(|(key, value)| service(file, key, value, env))
        .collect::<Result<_, _>>()?;
    services.iter_mut().for_each(|s| s.allow.extend(allow));
    let cluster_roles = rbac::cluster_roles(file, &[], rbac)?;
    for s in &mut services {
        s.cluster_roles.extend(cluster_roles.iter().cloned());
    }
    Ok(services)
}

fn service(
    file: &ConfigFile<'_>,
    key: serde_yaml_ng::Value,
    value: serde_yaml_ng::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Service, ConfigError> {
    let Some(name) = key.as_str().map(str::to_owned) else {
        return Err(file.invalid(&["services"], "service names must be strings".into(), None));
    };
    let raw: RawService = serde_yaml_ng::from_value(value).map_err(|e| {
        // Errors from a sub-value carry no position: point at the service instead.
        let message = e.to_string();
        let (field, hint) = unknown_field_hint(&message);
        let hint = hint.or_else(|| unknown_variant_hint(&message));
        let mut keys = vec!["services", name.as_str()];
        if let Some(f) = field.as_deref() {
            keys.push(f);
        }
        file.invalid(&keys, message, hint)
    })?;
    if !is_dns1035_label(&name) {
        return Err(file.invalid(
            &["services", &name],
            format!("service name `{name}` must be a DNS-1123 label (lower case letters, digits and `-`)"),
            None,
        ));
    }
    let values = service_values(file, &name, raw.values)?;
    let cluster_roles = rbac::cluster_roles(file, &["services", &name], raw.rbac)?;
    let chart = chart_ref(file, &name, raw.chart, raw.chart_from)?;
    let image = raw
        .image
        .map(|image| image_spec(file, &name, image, env))
        .transpose()?;
    Ok(Service {
        name,
        repo: raw.repo,
        templates: raw.templates,
        chart,
        image,
        preflight: raw.preflight,
        smoke: raw.smoke,
        values,
        values_files: raw.values_files,
        secrets_files: raw.secrets_files,
        depends_on: raw.depends_on,
        allow: raw.allow,
        cluster_roles,
    })
}

/// A service's `chart` and `chart_from`: a relative path that stays inside what it is relative to.
fn chart_ref(
    file: &ConfigFile<'_>,
    name: &str,
    path: Option<PathBuf>,
    from: Option<ChartFrom>,
) -> Result<Option<ChartRef>, ConfigError> {
    let Some(path) = path else {
        if from.is_some() {
            return Err(file.invalid(
                &["services", name, "chart_from"],
                "`chart_from` without `chart`".into(),
                Some("add `chart: PATH` (the chart's directory), or remove `chart_from`".into()),
            ));
        }
        return Ok(None);
    };
    if !is_inside(&path) {
        return Err(file.invalid(
            &["services", name, "chart"],
            format!("`{}` is not a relative path inside the repository", path.display()),
            Some("write the chart's directory relative to the repository's root, e.g. `chart: charts/web` (no `..`, not absolute)".into()),
        ));
    }
    Ok(Some(ChartRef {
        path,
        from: from.unwrap_or_default(),
    }))
}

/// A service's `image`: `${VAR}`s expanded, the tag a template that compiles, build paths that
/// stay in the repository.
fn image_spec(
    file: &ConfigFile<'_>,
    service: &str,
    raw: RawImage,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ImageSpec, ConfigError> {
    fn at<'a>(service: &'a str, field: &[&'a str]) -> Vec<&'a str> {
        [&["services", service, "image"][..], field].concat()
    }
    let repository = file.expand(&at(service, &["repository"]), &raw.repository, env)?;
    let tag = raw.tag.unwrap_or_else(|| DEFAULT_IMAGE_TAG.to_owned());
    if let Err(e) = handlebars::Template::compile(&tag) {
        return Err(file.invalid(
            &at(service, &["tag"]),
            format!("`{tag}` is not a valid template: {e}"),
            Some("e.g. `{{repo.sha}}`, `{{repo.short_sha}}` or `v1-{{repo.short_sha}}`".into()),
        ));
    }
    let build = match raw.build {
        None => None,
        Some(build) => {
            let in_repo = |field: &str, path: Option<PathBuf>, default: &str| {
                let path = path.unwrap_or_else(|| PathBuf::from(default));
                if is_inside(&path) {
                    return Ok(path);
                }
                Err(file.invalid(
                    &at(service, &["build", field]),
                    format!("`{}` is not a relative path inside the repository", path.display()),
                    Some("paths under `build` are relative to the repository's root (no `..`, not absolute)".into()),
                ))
            };
            let mut args = BTreeMap::new();
            for (name, value) in build.args {
                let value = file.expand(&at(service, &["build", "args", &name]), &value, env)?;
                args.insert(name, value);
            }
            Some(BuildSpec {
                context: in_repo("context", build.context, ".")?,
                containerfile: in_repo("containerfile", build.containerfile, "Containerfile")?,
                args,
            })
        }
    };
    Ok(ImageSpec {
        repository,
        tag,
        build,
    })
}

/// A relative path with no `..`: it stays inside whatever it is relative to.
fn is_inside(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

/// A service's `values` as JSON: a mapping (empty when not given).
fn service_values(
    file: &ConfigFile<'_>,
    name: &str,
    raw: Option<serde_yaml_ng::Value>,
) -> Result<serde_json::Value, ConfigError> {
    let Some(raw) = raw else {
        return Ok(serde_json::Value::Object(Default::default()));
    };
    let keys = ["services", name, "values"];
    let json: serde_json::Value =
        serde_json::to_value(&raw).map_err(|e| file.invalid(&keys, e.to_string(), None))?;
    if !json.is_object() {
        return Err(file.invalid(&keys, "values must be a mapping".into(), None));
    }
    Ok(json)
}

/// Every service's repo, dependencies and templates exist; a service depends not on itself
/// and has something to deploy.
pub(super) fn check_references(
    file: &ConfigFile<'_>,
    dir: &Path,
    repos: &BTreeMap<String, Repo>,
    names: &BTreeSet<&str>,
    services: &[Service],
) -> Result<(), ConfigError> {
    for service in services {
        check_repo(file, repos, service)?;
        check_depends_on(file, names, service)?;
        check_templates_exist(file, dir, service)?;
        check_chart(file, dir, service)?;
        if service.templates.is_empty() && service.preflight.is_empty() && service.chart.is_none() {
            return Err(file.invalid(
                &["services", &service.name],
                "a service needs a `chart`, or at least one entry in `templates` or `preflight`"
                    .into(),
                None,
            ));
        }
    }
    Ok(())
}

fn check_repo(
    file: &ConfigFile<'_>,
    repos: &BTreeMap<String, Repo>,
    service: &Service,
) -> Result<(), ConfigError> {
    if repos.contains_key(&service.repo) {
        return Ok(());
    }
    let known: Vec<&str> = repos.keys().map(String::as_str).collect();
    Err(file.invalid(
        &["services", &service.name, "repo"],
        format!("repo `{}` is not defined under `repos`", service.repo),
        Some(
            suggest(&service.repo, &known)
                .unwrap_or_else(|| format!("defined repos: {}", known.join(", "))),
        ),
    ))
}

/// Each dependency is a service, and not the service itself (longer cycles: [`find_cycle`]).
fn check_depends_on(
    file: &ConfigFile<'_>,
    names: &BTreeSet<&str>,
    service: &Service,
) -> Result<(), ConfigError> {
    for dep in &service.depends_on {
        if !names.contains(dep.as_str()) {
            let known: Vec<&str> = names.iter().copied().collect();
            return Err(file.invalid(
                &["services", &service.name, "depends_on"],
                format!("`{dep}` is not a service"),
                Some(
                    suggest(dep, &known)
                        .unwrap_or_else(|| format!("services: {}", known.join(", "))),
                ),
            ));
        }
        if dep == &service.name {
            return Err(file.cycle(&service.name, vec![dep.clone(), dep.clone()]));
        }
    }
    Ok(())
}

fn check_templates_exist(
    file: &ConfigFile<'_>,
    dir: &Path,
    service: &Service,
) -> Result<(), ConfigError> {
    for (field, list) in [
        ("templates", &service.templates),
        ("preflight", &service.preflight),
        ("smoke", &service.smoke),
    ] {
        for template in list {
            if !dir.join(template).is_file() {
                return Err(file.invalid(
                    &["services", &service.name, field],
                    format!("template `{}` does not exist", template.display()),
                    Some(format!("template paths are relative to {}", dir.display())),
                ));
            }
        }
    }
    Ok(())
}

/// A service is a chart or templates, not both; a chart beside `sandbox.yaml` must exist now
/// (one in a repository is checked once the branch is checked out).
fn check_chart(file: &ConfigFile<'_>, dir: &Path, service: &Service) -> Result<(), ConfigError> {
    let Some(chart) = &service.chart else {
        return Ok(());
    };
    if !service.templates.is_empty() {
        return Err(file.invalid(
            &["services", &service.name, "templates"],
            "a service is rendered either by its `templates` or by its `chart`, not both".into(),
            Some(
                "move the extra objects into the chart, or make them a service of their own".into(),
            ),
        ));
    }
    if chart.from == ChartFrom::Config && !dir.join(&chart.path).join("Chart.yaml").is_file() {
        return Err(file.invalid(
            &["services", &service.name, "chart"],
            format!(
                "`{}` is not a chart: it has no Chart.yaml",
                chart.path.display()
            ),
            Some(format!(
                "chart paths with `chart_from: config` are relative to {}",
                dir.display()
            )),
        ));
    }
    Ok(())
}

/// No `depends_on` cycle longer than a service depending on itself ([`check_depends_on`]).
pub(super) fn check_no_cycle(
    file: &ConfigFile<'_>,
    services: &[Service],
) -> Result<(), ConfigError> {
    match find_cycle(services) {
        Some(cycle) => Err(file.cycle(&cycle[0].clone(), cycle)),
        None => Ok(()),
    }
}

/// A depends_on cycle as the list of services along it (first repeated at the end), if any.
fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let index: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; services.len()];
    let mut stack: Vec<usize> = Vec::new();

    fn visit(
        i: usize,
        services: &[Service],
        index: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::Active;
        stack.push(i);
        for dep in &services[i].depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::Active => {
                    let start = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[start..]
                        .iter()
                        .map(|&k| services[k].name.clone())
                        .collect();
                    cycle.push(services[j].name.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, services, index, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }

    for i in 0..services.len() {
        if marks[i] == Mark::New {
            if let Some(c) = visit(i, services, &index, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

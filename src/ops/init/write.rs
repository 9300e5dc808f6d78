//! The `sandbox.yaml` that `init` writes, commented, and the templates its services need: one
//! service per chart; else one per repository for its manifests (included from the branch's
//! commit with `file`) or, failing those, a starting Deployment for the image its Containerfile
//! builds.

use super::scan::Found;

/// The name of the schema file written beside sandbox.yaml.
pub(crate) const SCHEMA_FILE: &str = "sandbox.schema.json";

/// One repository as `init` found it.
pub(super) struct ScannedRepo {
    pub(super) name: String,
    /// As written into sandbox.yaml.
    pub(super) url: String,
    pub(super) found: Found,
}

/// A service `init` writes, with the template file it needs (path beside sandbox.yaml, text).
pub(super) struct Planned {
    pub(super) name: String,
    pub(super) yaml: String,
    pub(super) template: Option<(String, String)>,
}

/// Every service of every repository, named uniquely.
pub(super) fn services(repos: &[ScannedRepo], registry: &str) -> Vec<Planned> {
    let mut planned: Vec<Planned> = Vec::new();
    for repo in repos {
        let first = planned.len();
        for (path, chart) in &repo.found.charts {
            let name = unique(&planned, chart);
            let yaml = format!(
                "  # The Helm chart {path}/Chart.yaml in {repo_name}, rendered by `helm template`.\n  {name}:\n    repo: {repo_name}\n    chart: {chart_path}\n    # values: {{replicas: 1}}      # the lowest layer, under the chart's values.yaml\n    # depends_on: [OTHER]         # services that must be ready first\n",
                repo_name = repo.name,
                chart_path = quoted(path),
            );
            planned.push(Planned {
                name,
                yaml,
                template: None,
            });
        }
        let found = &repo.found;
        if planned.len() > first {
            for containerfile in &found.containerfiles {
                planned[first].yaml += &format!(
                    "    # {containerfile} builds an image: `image: {{repository: …, build: {{containerfile: {containerfile}}}}}` on the service that runs it\n"
                );
            }
        } else if !found.manifests.is_empty() || !found.containerfiles.is_empty() {
            let name = unique(&planned, &repo.name);
            planned.push(plain_service(repo, &name, registry));
        }
    }
    planned
}

/// `wanted`, cut to a DNS label, with `-2`, `-3`… when another service has it.
fn unique(planned: &[Planned], wanted: &str) -> String {
    let base = label(wanted, "service");
    let mut name = base.clone();
    let mut n = 1;
    while planned.iter().any(|p| p.name == name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Lower case letters, digits and `-`, starting with a letter, at most 40 characters.
pub(super) fn label(text: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in text.to_ascii_lowercase().chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let out: String = out.trim_matches('-').chars().take(40).collect();
    let out = out.trim_end_matches('-').to_owned();
    if out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out
    } else {
        fallback.to_owned()
    }
}

/// A repository without a chart: its manifests, or a Deployment of its image.
fn plain_service(repo: &ScannedRepo, name: &str, registry: &str) -> Planned {
    let template_path = format!("templates/{name}.yaml");
    let mut yaml = format!("  {name}:\n    repo: {}\n", repo.name);
    if let Some(containerfile) = repo.found.containerfiles.first() {
        let (context, file) = match containerfile.rsplit_once('/') {
            Some((dir, file)) => (dir, file),
            None => (".", containerfile.as_str()),
        };
        yaml += &format!(
            "    # The image of each commit: built from {containerfile} with buildah when the registry lacks it.\n    image:\n      repository: {}\n      build: {{context: {}, containerfile: {}}}\n",
            quoted(&format!("{registry}/{}", repo.name)),
            quoted(context),
            quoted(file),
        );
    }
    yaml += &format!("    templates: [{template_path}]\n    # depends_on: [OTHER]\n");
    let template = if repo.found.manifests.is_empty() {
        starter_deployment()
    } else {
        included_manifests(&repo.found.manifests)
    };
    Planned {
        name: name.to_owned(),
        yaml,
        template: Some((template_path, template)),
    }
}

/// A template that includes the repository's manifests as the branch's commit has them.
fn included_manifests(manifests: &[String]) -> String {
    let mut text = String::from(
        "{{!-- Written by `sandbox init`: the repository's manifests, read from the branch's commit.\n     Replace an include by the manifest's text to template it (docs/reference/templates.md). --}}\n",
    );
    let includes: Vec<String> = manifests
        .iter()
        .map(|m| {
            format!(
                "{{{{{{file {}}}}}}}\n",
                serde_json::to_string(m).expect("a string")
            )
        })
        .collect();
    text += &includes.join("---\n");
    text
}

/// A Deployment running the service's image: a starting point.
fn starter_deployment() -> String {
    "{{!-- Written by `sandbox init`: a starting point (docs/reference/templates.md). --}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{service.name}}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{service.name}}}
  template:
    metadata:
      labels: {app: {{service.name}}}
    spec:
      containers:
        - name: {{service.name}}
          image: {{image.ref}}
"
    .to_owned()
}

/// A YAML scalar that reads back as `text`, whatever it holds.
fn quoted(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
        && !text.starts_with(['.', '-'])
        || text == ".";
    if plain {
        text.to_owned()
    } else {
        serde_json::to_string(text).expect("a string serializes")
    }
}

/// Where images go and whether that registry speaks plain HTTP.
pub(super) struct Registry<'a> {
    pub(super) name: &'a str,
    pub(super) insecure: bool,
}

/// The whole sandbox.yaml.
pub(super) fn config_text(
    product: &str,
    repos: &[ScannedRepo],
    services: &[Planned],
    registry: &Registry<'_>,
) -> String {
    let url_service = ["gateway", "web", "frontend", "app"]
        .iter()
        .find(|n| services.iter().any(|s| s.name == **n))
        .map(|n| n.to_string())
        .unwrap_or_else(|| services[0].name.clone());
    let mut text = format!(
        "# yaml-language-server: $schema={SCHEMA_FILE}
# Written by `sandbox init` from the repositories below: a starting point. Every field is in
# docs/reference/sandbox-yaml.md (and `sandbox schema`); `sandbox validate` checks this file,
# `sandbox render` shows what it makes.
apiVersion: {}
# The product's name: every sandbox of it carries it as a label.
name: {product}
# How long a sandbox lives after its last `up` (`sandbox extend` moves it).
ttl: 2d
url:
  # The service whose Service gives the sandbox's URL (or `template:`).
  service: {url_service}

# The git repositories: each sandbox checks out the branch of its name in every one (else the
# `fallback_branch`, else the default branch).
repos:
",
        crate::pipeline::config::CURRENT_VERSION
    );
    for repo in repos {
        text += &format!("  {}:\n    url: {}\n", repo.name, quoted(&repo.url));
        if repo.found == Found::default() {
            text += "    # (init found no chart, Containerfile or manifest in it)\n";
        }
    }
    if services.iter().any(|s| s.yaml.contains("\n    image:\n")) {
        let host = quoted(registry.name.split('/').next().unwrap_or(registry.name));
        text += &if registry.insecure {
            format!("\n# The registry images are built into speaks plain HTTP.\nimages:\n  insecure_registries: [{host}]\n")
        } else {
            format!("\n# A registry that speaks plain HTTP must be named:\n# images:\n#   insecure_registries: [{host}]\n")
        };
    }
    text += "\nservices:\n";
    for service in services {
        text += &service.yaml;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, found: Found) -> ScannedRepo {
        ScannedRepo {
            name: name.into(),
            url: format!("/srv/git/{name}.git"),
            found,
        }
    }

    #[test]
    fn a_service_per_chart_else_one_per_repository() {
        let repos = [
            repo(
                "frontend",
                Found {
                    charts: vec![("web".into(), "web".into()), ("gw".into(), "web".into())],
                    containerfiles: vec!["Containerfile".into()],
                    manifests: vec![],
                },
            ),
            repo(
                "backend",
                Found {
                    containerfiles: vec!["build/Containerfile".into()],
                    ..Found::default()
                },
            ),
            repo(
                "ops",
                Found {
                    manifests: vec!["k8s/a.yaml".into(), "k8s/b.yaml".into()],
                    ..Found::default()
                },
            ),
        ];
        let planned = services(&repos, "registry.example.com");
        let names: Vec<&str> = planned.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "web-2", "backend", "ops"]);
        assert!(planned[0].yaml.contains("# Containerfile builds an image"));
        assert!(planned[2]
            .yaml
            .contains("repository: registry.example.com/backend\n"));
        assert!(planned[2]
            .yaml
            .contains("build: {context: build, containerfile: Containerfile}"));
        let (path, template) = planned[3].template.as_ref().unwrap();
        assert_eq!(path, "templates/ops.yaml");
        assert!(template.ends_with("{{{file \"k8s/a.yaml\"}}}\n---\n{{{file \"k8s/b.yaml\"}}}\n"));
        let registry = Registry {
            name: "registry.example.com/shop",
            insecure: true,
        };
        let text = config_text("shop", &repos, &planned, &registry);
        assert!(text.contains("\nimages:\n  insecure_registries: [registry.example.com]\n"));
        assert!(text.starts_with("# yaml-language-server: $schema=sandbox.schema.json\n"));
        assert!(text.contains("\n  service: web\n"));
    }

    #[test]
    fn names_become_labels_and_odd_text_is_quoted() {
        assert_eq!(label("My_Repo.git", "x"), "my-repo-git");
        assert_eq!(label("42", "product"), "product");
        assert_eq!(quoted("charts/web"), "charts/web");
        assert_eq!(quoted("a: b"), "\"a: b\"");
        assert_eq!(quoted("${X}/y"), "\"${X}/y\"");
    }
}

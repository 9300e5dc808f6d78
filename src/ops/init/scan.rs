//! What a repository holds that `sandbox.yaml` can use: Helm charts, Containerfiles and
//! Kubernetes manifests. The tree is a checkout's export (plain files, no symlinks), and still
//! read as untrusted: symlinks are skipped, depth, entries and the bytes read are capped.

use std::path::Path;

/// How deep the walk goes below the repository's root.
const MAX_DEPTH: usize = 12;
/// How many entries the walk looks at, at most.
const MAX_ENTRIES: usize = 20_000;
/// The largest YAML file read to tell whether it is a manifest.
const MAX_YAML_BYTES: u64 = 256 * 1024;

/// What one repository holds, by paths relative to its root (`/`-separated, sorted).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Found {
    /// Charts: the directory (`.` for the root) and the chart's name.
    pub(super) charts: Vec<(String, String)>,
    /// `Containerfile`s and `Dockerfile`s.
    pub(super) containerfiles: Vec<String>,
    /// YAML files of Kubernetes objects (outside charts; none templated by another tool).
    pub(super) manifests: Vec<String>,
}

/// Walk the tree at `root`.
pub(super) fn scan(root: &Path) -> Found {
    let mut found = Found::default();
    let mut entries = 0;
    let mut stack = vec![(root.to_owned(), String::new(), 0)];
    while let Some((dir, rel, depth)) = stack.pop() {
        if dir.join("Chart.yaml").is_file() {
            // Its templates and subcharts are the chart's own.
            let name = chart_name(&dir.join("Chart.yaml"));
            let path = if rel.is_empty() { ".".into() } else { rel };
            found
                .charts
                .push((path.clone(), name.unwrap_or_else(|| last(&path))));
            continue;
        }
        let Ok(list) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in list.flatten() {
            entries += 1;
            if entries > MAX_ENTRIES {
                break;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if kind.is_dir() && !name.starts_with('.') && depth < MAX_DEPTH {
                stack.push((entry.path(), path, depth + 1));
            } else if kind.is_file() && is_containerfile(&name) {
                found.containerfiles.push(path);
            } else if kind.is_file() && is_manifest(&entry.path(), &name) {
                found.manifests.push(path);
            }
        }
    }
    found.charts.sort();
    found.containerfiles.sort();
    found.manifests.sort();
    found
}

fn last(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

fn is_containerfile(name: &str) -> bool {
    ["Containerfile", "Dockerfile"]
        .iter()
        .any(|base| name == *base || name.ends_with(&format!(".{base}")))
}

/// The file's text, when it is small enough to read.
fn small_text(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_YAML_BYTES {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// `name:` of a Chart.yaml.
fn chart_name(path: &Path) -> Option<String> {
    let text = small_text(path)?;
    crate::yaml::check_expansion(&text).ok()?;
    let chart: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    Some(chart.get("name")?.as_str()?.to_owned())
}

/// A YAML file whose documents are Kubernetes objects (`apiVersion` and `kind`), and which no
/// other tool templates (`{{` in it).
fn is_manifest(path: &Path, name: &str) -> bool {
    if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
        return false;
    }
    let Some(text) = small_text(path) else {
        return false;
    };
    if text.contains("{{") || crate::yaml::check_expansion(&text).is_err() {
        return false;
    }
    let mut objects = 0;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let Ok(value) = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(document) else {
            return false;
        };
        match value {
            serde_yaml_ng::Value::Null => {}
            object
                if object.get("apiVersion").is_some_and(|v| v.is_string())
                    && object.get("kind").is_some_and(|v| v.is_string()) =>
            {
                objects += 1
            }
            _ => return false,
        }
    }
    objects > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_containerfiles_and_manifests_are_found_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "charts/web/Chart.yaml",
            "apiVersion: v2\nname: web-ui\nversion: 0.1.0\n",
        );
        write(
            "charts/web/templates/a.yaml",
            "apiVersion: v1\nkind: ConfigMap\n",
        );
        write("charts/web/charts/sub/Chart.yaml", "name: sub\n");
        write("Containerfile", "FROM busybox\n");
        write("tools/builder.Dockerfile", "FROM busybox\n");
        write(
            "deploy/app.yaml",
            "apiVersion: apps/v1\nkind: Deployment\n---\napiVersion: v1\nkind: Service\n",
        );
        write("deploy/kustomization.yaml", "resources: [app.yaml]\n");
        write(
            "deploy/templated.yaml",
            "apiVersion: v1\nkind: {{ .Kind }}\n",
        );
        write("values.yaml", "port: 80\n");
        write(
            ".github/workflows/ci.yaml",
            "apiVersion: v1\nkind: ConfigMap\n",
        );
        std::os::unix::fs::symlink("/etc", dir.path().join("outside")).unwrap();
        let found = scan(dir.path());
        assert_eq!(
            found,
            Found {
                charts: vec![("charts/web".into(), "web-ui".into())],
                containerfiles: vec!["Containerfile".into(), "tools/builder.Dockerfile".into()],
                manifests: vec!["deploy/app.yaml".into()],
            }
        );
    }

    #[test]
    fn a_chart_at_the_root_is_the_whole_repository() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Chart.yaml"), "name: api\n").unwrap();
        std::fs::write(dir.path().join("Containerfile"), "FROM x\n").unwrap();
        assert_eq!(
            scan(dir.path()).charts,
            [(".".to_owned(), "api".to_owned())]
        );
    }
}

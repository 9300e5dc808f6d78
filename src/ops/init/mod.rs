//! `sandbox init`: a first `sandbox.yaml` from what the product's repositories hold (charts,
//! Containerfiles, Kubernetes manifests), commented, with its JSON Schema beside it for editors.
//! The repositories are read through the checkout stage (its exported trees hold no symlinks
//! and are capped in files and bytes), and nothing that exists is overwritten.

mod scan;
mod write;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::pipeline::checkout::{cache_under, checkout_all, RepoSpec};
use crate::pipeline::config::{RepoFileLimits, FILE_NAME};

pub(crate) use write::SCHEMA_FILE;

/// What to read and where to write.
pub(crate) struct InitRequest {
    /// Where sandbox.yaml (and the schema, and any templates) go.
    pub(crate) dir: PathBuf,
    /// `NAME=URL`s; none: the git repository `dir` is in.
    pub(crate) repos: Vec<(String, String)>,
    /// The branch read in every repository; none: each one's default branch.
    pub(crate) branch: Option<String>,
    /// The registry images built from Containerfiles go to, as written into sandbox.yaml.
    pub(crate) registry: String,
    /// That registry speaks plain HTTP.
    pub(crate) insecure_registry: bool,
    /// The product's name; none: `dir`'s.
    pub(crate) name: Option<String>,
    /// Where the checkout stage keeps its mirrors and trees.
    pub(crate) cache_dir: PathBuf,
}

/// What `init` wrote.
pub(crate) struct InitReport {
    /// Every file written, sandbox.yaml first.
    pub(crate) written: Vec<PathBuf>,
    /// The schema file that was there already and was left as it is.
    pub(crate) kept_schema: Option<PathBuf>,
    /// Per service: its name.
    pub(crate) services: Vec<String>,
}

/// Read the repositories, then write sandbox.yaml, its schema and the templates it needs.
pub(crate) async fn init(request: &InitRequest) -> Result<InitReport> {
    let config_path = request.dir.join(FILE_NAME);
    refuse_existing(&config_path)?;
    let (specs, written_urls) = repo_specs(request)?;
    let requested = request.branch.as_deref().unwrap_or("HEAD");
    let cache = cache_under(&request.cache_dir);
    let checkouts = checkout_all(&specs, requested, &cache, &RepoFileLimits::default())
        .await
        .context("cannot read the repositories")?;
    let repos: Vec<write::ScannedRepo> = checkouts
        .iter()
        .zip(written_urls)
        .map(|(checkout, url)| write::ScannedRepo {
            name: checkout.repo.clone(),
            url,
            found: scan::scan(&checkout.dir),
        })
        .collect();
    let services = write::services(&repos, &request.registry);
    if services.is_empty() {
        bail!(
            "found no Helm chart, Containerfile or Kubernetes manifest in {}",
            names(&specs)
        );
    }
    let templates: Vec<(PathBuf, &str)> = services
        .iter()
        .filter_map(|s| s.template.as_ref())
        .map(|(path, text)| (request.dir.join(path), text.as_str()))
        .collect();
    for (path, _) in &templates {
        refuse_existing(path)?;
    }
    let product = match &request.name {
        Some(name) => name.clone(),
        None => write::label(&dir_name(&request.dir), "product"),
    };
    let registry = write::Registry {
        name: &request.registry,
        insecure: request.insecure_registry,
    };
    let config = write::config_text(&product, &repos, &services, &registry);
    let mut report = InitReport {
        written: Vec::new(),
        kept_schema: None,
        services: services.iter().map(|s| s.name.clone()).collect(),
    };
    create(&config_path, &config)?;
    report.written.push(config_path);
    for (path, text) in templates {
        create(&path, text)?;
        report.written.push(path);
    }
    let schema_path = request.dir.join(SCHEMA_FILE);
    if schema_path.exists() {
        report.kept_schema = Some(schema_path);
    } else {
        let schema = serde_json::to_string_pretty(&super::schema::json_schema())? + "\n";
        create(&schema_path, &schema)?;
        report.written.push(schema_path);
    }
    Ok(report)
}

/// Nothing `init` writes may be there already.
fn refuse_existing(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        bail!(
            "{} exists already: `sandbox init` never overwrites a file (move it away, or edit it)",
            path.display()
        );
    }
    Ok(())
}

/// Write a new file (failing if one appeared meanwhile), its directory created.
fn create(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The repositories to check out, and each one's URL as sandbox.yaml will say it.
fn repo_specs(request: &InitRequest) -> Result<(Vec<RepoSpec>, Vec<String>)> {
    if request.repos.is_empty() {
        let (name, path, url) = this_repository(&request.dir)?;
        let spec = RepoSpec {
            name,
            url: path,
            fallback_branch: None,
        };
        return Ok((vec![spec], vec![url]));
    }
    let mut specs = Vec::new();
    for (name, url) in &request.repos {
        if write::label(name, "") != *name {
            bail!("`{name}` cannot name a repository in sandbox.yaml: use lower case letters, digits and `-`");
        }
        specs.push(RepoSpec {
            name: name.clone(),
            url: absolute_if_local(url),
            fallback_branch: None,
        });
    }
    let urls = specs.iter().map(|spec| spec.url.clone()).collect();
    Ok((specs, urls))
}

/// A local path (`../web`) as an absolute one: sandbox reads it from wherever it runs.
fn absolute_if_local(url: &str) -> String {
    let remote = url.contains("://") || (url.contains(':') && !url.starts_with(['/', '.']));
    match Path::new(url).canonicalize() {
        Ok(path) if !remote => path.to_string_lossy().into_owned(),
        _ => url.to_owned(),
    }
}

/// The git repository `dir` is in: its name, its path (read from), and its URL for sandbox.yaml
/// (`origin`'s, else the path).
fn this_repository(dir: &Path) -> Result<(String, String, String)> {
    let repo = git2::Repository::discover(dir).map_err(|_| {
        anyhow::anyhow!(
            "{} is not in a git repository: run `sandbox init` in one, or name the repositories with --repo NAME=URL",
            dir.display()
        )
    })?;
    let root = repo
        .workdir()
        .unwrap_or_else(|| repo.path())
        .canonicalize()
        .context("cannot find the repository's directory")?;
    let path = root.to_string_lossy().into_owned();
    let origin = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().ok().map(str::to_owned));
    let name = write::label(&dir_name(&root), "app");
    Ok((name, path.clone(), origin.unwrap_or(path)))
}

fn dir_name(dir: &Path) -> String {
    let absolute = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    absolute
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
        .unwrap_or_default()
}

fn names(specs: &[RepoSpec]) -> String {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.join(", ")
}

//! What one run of the pipeline is about: the product, the branch, its namespace, and the
//! choices of whoever started it. The command layer (or `serve`) resolves these from flags and
//! the environment; the pipeline only reads them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::access::Access;
use crate::pipeline::config::{self, Config};
use crate::pipeline::values::SetValue;
use crate::record::{self, PrNumber};

/// Everything `up` (and the offline commands) need to know.
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) branch: String,
    pub(crate) namespace: String,
    /// Where repo mirrors and checked-out trees are kept.
    pub(crate) cache_dir: PathBuf,
    pub(crate) sets: Vec<SetValue>,
    pub(crate) owner: String,
    pub(crate) ttl: Duration,
    /// The pull requests this sandbox previews (recorded on its namespace), oldest first.
    pub(crate) prs: Vec<PrNumber>,
    /// Service accounts bound in the sandbox's namespace when `up` makes it (serve's own).
    pub(crate) access: Option<Access>,
    /// Recorded as what made the sandbox, when this run makes it ([`record::MADE_BY_UP`]).
    pub(crate) made_by: &'static str,
    /// A commit the branch must be at in one repository (a GitHub deployment names its
    /// commit): checked right after the checkout, before anything is made.
    pub(crate) pinned: Option<Pin>,
}

/// Repository `repo` (its name in sandbox.yaml) must be checked out from the branch itself (no
/// fallback) at exactly commit `sha`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    pub(crate) repo: String,
    pub(crate) sha: String,
    /// Who asked for it, for the error (e.g. `GitHub deployment 7`).
    pub(crate) asked_by: String,
}

/// What comes from the machine rather than from the command: where the cache is, who is asking.
#[derive(Debug, Clone)]
pub(crate) struct Environment {
    pub(crate) cache_dir: PathBuf,
    pub(crate) owner: String,
    pub(crate) access: Option<Access>,
}

impl Settings {
    /// Settings for `branch`; every `--set` and `-f` must name services of the config.
    pub(crate) fn new(
        config: Config,
        branch: &str,
        sets: Vec<SetValue>,
        ttl: Option<Duration>,
        env: &Environment,
    ) -> Result<Settings> {
        for set in &sets {
            for a in &set.assignments {
                if config.service(&a.service).is_none() {
                    anyhow::bail!(
                        "{} names {}",
                        set.origin,
                        unknown_service(&config, &a.service)
                    );
                }
            }
        }
        Ok(Settings {
            namespace: record::namespace_for(&config.namespace_prefix, branch),
            branch: branch.to_owned(),
            cache_dir: env.cache_dir.clone(),
            sets,
            owner: env.owner.clone(),
            ttl: ttl.unwrap_or(config.ttl),
            prs: Vec::new(),
            access: env.access.clone(),
            made_by: record::MADE_BY_UP,
            pinned: None,
            config,
        })
    }
}

/// "service `x`, which is not in sandbox.yaml (did you mean `y`?)": the one wording for a
/// service name that the config does not have.
pub(crate) fn unknown_service(config: &Config, name: &str) -> String {
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    let hint =
        config::suggest(name, &names).unwrap_or_else(|| format!("services: {}", names.join(", ")));
    format!(
        "service `{name}`, which is not in {} ({hint})",
        config.path.display()
    )
}

/// Settings of a two-service product, for unit tests of the stages that read them.
#[cfg(test)]
pub(crate) fn example(branch: &str) -> Settings {
    let text = "name: shop\nnamespace_prefix: shop-\nttl: 2d\nurl: {service: order-api}\nrepos:\n  backend: {url: /srv/backend.git}\nservices:\n  db: {repo: backend, templates: [templates/service.yaml]}\n  order-api: {repo: backend, templates: [templates/service.yaml], depends_on: [db]}\n";
    let config = config::parse(
        text,
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox.yaml"),
        &|_| None,
    )
    .expect("the example config parses");
    let env = Environment::for_tests("ada", "/tmp/cache");
    Settings::new(config, branch, Vec::new(), None, &env).expect("valid settings")
}

#[cfg(test)]
impl Environment {
    /// What unit tests run in: `owner` asking, the cache in `cache_dir`, no accounts to bind.
    pub(crate) fn for_tests(owner: &str, cache_dir: impl Into<PathBuf>) -> Environment {
        Environment {
            cache_dir: cache_dir.into(),
            owner: owner.into(),
            access: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why settings of the example's config with `set` are refused.
    fn refusal(set: SetValue) -> String {
        let config = example("x").config;
        let env = Environment::for_tests("ada", "/tmp");
        let Err(e) = Settings::new(config, "x", vec![set], None, &env) else {
            panic!("an unknown service is refused");
        };
        e.to_string()
    }

    #[test]
    fn a_set_for_an_unknown_service_is_refused_with_a_suggestion() {
        let text = refusal("order-apj.replicas=2".parse().unwrap());
        assert!(
            text.starts_with("--set names service `order-apj`, which is not in /"),
            "{text}"
        );
        assert!(
            text.ends_with("sandbox.yaml (did you mean `order-api`?)"),
            "{text}"
        );
    }

    #[test]
    fn a_values_file_naming_an_unknown_service_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.yaml");
        std::fs::write(&file, "order-api: {replicas: 2}\nfrontend: {replicas: 1}\n").unwrap();
        let text = refusal(SetValue::values_file(&file).unwrap());
        let want = format!(
            "values file `{}` names service `frontend`, which is not in /",
            file.display()
        );
        assert!(text.starts_with(&want), "{text}");
        assert!(text.ends_with("(services: db, order-api)"), "{text}");
    }

    #[test]
    fn the_namespace_and_ttl_come_from_the_config() {
        let s = example("feature/x");
        assert!(
            s.namespace.starts_with("shop-feature-x-"),
            "{}",
            s.namespace
        );
        assert_eq!(s.ttl, Duration::from_secs(2 * 86400));
    }
}

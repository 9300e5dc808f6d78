//! What the service acts on: pull requests and deployments of the repositories `sandbox.yaml`
//! lists (matched by their GitHub `owner/name`, whatever else knows the webhook secret), drafts
//! or not, and which GitHub environments are the sandboxes'.

use super::event::{DeploymentEvent, PullRequestEvent};
use super::queue::{Action, PrRef, Work};
use crate::pipeline::config::Config;

/// A repository of `sandbox.yaml` that lives on GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfiguredRepo {
    /// Its name in `sandbox.yaml`.
    pub(crate) name: String,
    /// `owner/name` on GitHub.
    pub(crate) full_name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) repos: Vec<ConfiguredRepo>,
    /// Repositories of `sandbox.yaml` that are not on GitHub (nothing of theirs is acted on).
    pub(crate) elsewhere: Vec<String>,
    /// Draft pull requests get no preview until they are ready for review.
    pub(crate) skip_drafts: bool,
    /// A GitHub environment `PREFIX + BRANCH` is that branch's sandbox.
    pub(crate) environment_prefix: String,
}

/// The default `--deployment-environment-prefix`.
pub(crate) const ENVIRONMENT_PREFIX: &str = "sandbox/";

impl Scope {
    /// The repositories of `config` on GitHub: `github:` where given, else read from the URL when
    /// its host is github.com or the host of `api_url` (GitHub Enterprise Server).
    pub(crate) fn new(
        config: &Config,
        api_url: &str,
        skip_drafts: bool,
        environment_prefix: &str,
    ) -> Scope {
        let hosts = github_hosts(api_url);
        let mut scope = Scope::of(&[], skip_drafts, environment_prefix);
        for repo in config.repos.values() {
            let full_name = repo
                .github
                .clone()
                .or_else(|| repo_of_url(&repo.url, &hosts));
            match full_name {
                Some(full_name) => scope.repos.push(ConfiguredRepo {
                    name: repo.name.clone(),
                    full_name,
                }),
                None => scope.elsewhere.push(repo.name.clone()),
            }
        }
        scope
    }

    /// A scope of the given `(name in sandbox.yaml, owner/name)` pairs.
    pub(crate) fn of(repos: &[(&str, &str)], skip_drafts: bool, environment_prefix: &str) -> Scope {
        Scope {
            repos: repos
                .iter()
                .map(|(name, full_name)| ConfiguredRepo {
                    name: (*name).to_owned(),
                    full_name: (*full_name).to_owned(),
                })
                .collect(),
            elsewhere: Vec::new(),
            skip_drafts,
            environment_prefix: environment_prefix.to_owned(),
        }
    }

    /// The configured repository `full_name` is (GitHub's names are case-insensitive).
    pub(crate) fn configured(&self, full_name: &str) -> Option<&ConfiguredRepo> {
        self.repos
            .iter()
            .find(|r| r.full_name.eq_ignore_ascii_case(full_name))
    }

    /// The GitHub environment of a branch's sandbox.
    pub(crate) fn environment(&self, branch: &str) -> String {
        format!("{}{branch}", self.environment_prefix)
    }

    /// Why an event of `repo` is not acted on, when it is not.
    fn unconfigured(&self, repo: &str) -> Option<String> {
        if self.configured(repo).is_some() {
            return None;
        }
        let known: Vec<&str> = self.repos.iter().map(|r| r.full_name.as_str()).collect();
        Some(format!(
            "{repo} is not one of sandbox.yaml's repositories ({})",
            if known.is_empty() {
                "none of them is on GitHub: set `github: owner/name` on them".to_owned()
            } else {
                known.join(", ")
            }
        ))
    }

    /// What a pull request event asks for here, or why it is ignored.
    pub(crate) fn pull_request(&self, pr: &PullRequestEvent) -> Result<Action, String> {
        if let Some(reason) = self.unconfigured(&pr.repo) {
            return Err(reason);
        }
        match pr.intent(self.skip_drafts) {
            Some(action) => Ok(action),
            None if self.skip_drafts && pr.draft => Err(format!(
                "{}#{} is a draft (--skip-drafts): it is previewed once it is ready for review",
                pr.repo, pr.number
            )),
            None => Err(format!(
                "pull_request action `{}` changes nothing",
                pr.action
            )),
        }
    }

    /// The work a deployment event asks for (its branch up, reported on that deployment), or
    /// why it is ignored.
    pub(crate) fn deployment(&self, d: &DeploymentEvent) -> Result<Work, String> {
        if let Some(reason) = self.unconfigured(&d.repo) {
            return Err(reason);
        }
        let Some(branch) = d
            .environment
            .strip_prefix(&self.environment_prefix)
            .filter(|b| !b.is_empty())
        else {
            return Err(format!(
                "environment `{}` is not a sandbox's (`{}BRANCH`)",
                d.environment, self.environment_prefix
            ));
        };
        Ok(Work {
            branch: branch.to_owned(),
            action: Action::Deploy,
            prs: vec![PrRef {
                repo: d.repo.clone(),
                number: 0,
                sha: d.sha.clone(),
                author: d.creator.clone(),
                deployment: Some(d.id),
                ..PrRef::default()
            }],
        })
    }
}

/// The hosts whose repository URLs are on the GitHub that `api_url` is the API of.
fn github_hosts(api_url: &str) -> Vec<String> {
    let mut hosts = vec!["github.com".to_owned(), "www.github.com".to_owned()];
    if let Some(host) = reqwest::Url::parse(api_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .filter(|h| h != "api.github.com")
    {
        hosts.push(host);
    }
    hosts
}

/// `owner/name` of a git URL on one of `hosts`: `https://HOST/o/n(.git)`, `ssh://git@HOST(:22)/o/n`,
/// `git@HOST:o/n.git`, `git://HOST/o/n`.
pub(crate) fn repo_of_url(url: &str, hosts: &[String]) -> Option<String> {
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => {
            let (authority, path) = rest.split_once('/')?;
            let host = authority.rsplit('@').next()?;
            (host.split(':').next()?, path)
        }
        // scp-like: [user@]host:path
        None => {
            let (authority, path) = url.split_once(':')?;
            (authority.rsplit('@').next()?, path)
        }
    };
    if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return None;
    }
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (owner, name) = path.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(owner) && ok(name)).then(|| format!("{owner}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(api: &str) -> Vec<String> {
        github_hosts(api)
    }

    #[test]
    fn github_urls_name_their_repository_in_every_form() {
        let gh = hosts("https://api.github.com");
        for url in [
            "https://github.com/Octo-Org/Backend.git",
            "https://github.com/Octo-Org/Backend",
            "https://x-access-token:t@github.com/Octo-Org/Backend.git/",
            "http://www.github.com/Octo-Org/Backend",
            "ssh://git@github.com/Octo-Org/Backend.git",
            "ssh://git@github.com:22/Octo-Org/Backend.git",
            "git@github.com:Octo-Org/Backend.git",
            "git://github.com/Octo-Org/Backend.git",
        ] {
            assert_eq!(
                repo_of_url(url, &gh).as_deref(),
                Some("Octo-Org/Backend"),
                "{url}"
            );
        }
        for elsewhere in [
            "/srv/git/backend.git",
            "file:///srv/git/backend.git",
            "https://gitlab.com/octo-org/backend.git",
            "https://github.com/octo-org",
            "https://github.com/octo-org/backend/tree/main",
            "git@gitlab.com:octo-org/backend.git",
        ] {
            assert_eq!(repo_of_url(elsewhere, &gh), None, "{elsewhere}");
        }
        // GitHub Enterprise Server: the API's host.
        let ghe = hosts("https://ghe.example.com/api/v3");
        assert_eq!(
            repo_of_url("git@ghe.example.com:team/app.git", &ghe).as_deref(),
            Some("team/app")
        );
        assert_eq!(repo_of_url("git@ghe.example.com:team/app.git", &gh), None);
    }

    fn pr(repo: &str, action: &str, draft: bool) -> PullRequestEvent {
        PullRequestEvent {
            action: action.into(),
            repo: repo.into(),
            number: 4,
            head_ref: "feat".into(),
            head_sha: "abc".into(),
            head_repo: Some(repo.into()),
            author: "octocat".into(),
            draft,
            updated_at: None,
        }
    }

    #[test]
    fn only_configured_repositories_are_acted_on() {
        let scope = Scope::of(&[("backend", "Octo-Org/backend")], false, "sandbox/");
        assert_eq!(
            scope.pull_request(&pr("octo-org/BACKEND", "opened", false)),
            Ok(Action::Deploy)
        );
        let reason = scope
            .pull_request(&pr("mallory/backend", "opened", false))
            .unwrap_err();
        assert!(
            reason.contains("mallory/backend") && reason.contains("Octo-Org/backend"),
            "{reason}"
        );
        let none = Scope::of(&[], false, "sandbox/");
        assert!(none
            .pull_request(&pr("octo-org/backend", "opened", false))
            .unwrap_err()
            .contains("github: owner/name"));
    }

    #[test]
    fn drafts_are_skipped_when_asked() {
        let skip = Scope::of(&[("backend", "o/backend")], true, "sandbox/");
        let reason = skip
            .pull_request(&pr("o/backend", "opened", true))
            .unwrap_err();
        assert!(reason.contains("draft"), "{reason}");
        assert_eq!(
            skip.pull_request(&pr("o/backend", "ready_for_review", false)),
            Ok(Action::Deploy)
        );
        assert_eq!(
            skip.pull_request(&pr("o/backend", "converted_to_draft", true)),
            Ok(Action::Destroy)
        );
        let keep = Scope::of(&[("backend", "o/backend")], false, "sandbox/");
        assert_eq!(
            keep.pull_request(&pr("o/backend", "opened", true)),
            Ok(Action::Deploy)
        );
        assert!(keep
            .pull_request(&pr("o/backend", "converted_to_draft", true))
            .is_err());
    }

    #[test]
    fn a_deployment_to_a_sandbox_environment_brings_its_branch_up() {
        let scope = Scope::of(&[("backend", "o/backend")], false, "preview/");
        let event = |env: &str, repo: &str| DeploymentEvent {
            repo: repo.into(),
            id: 77,
            environment: env.into(),
            sha: "abc".into(),
            creator: "hubot".into(),
        };
        let work = scope
            .deployment(&event("preview/feature/x", "o/backend"))
            .unwrap();
        assert_eq!(work.branch, "feature/x");
        assert_eq!(work.action, Action::Deploy);
        assert_eq!(work.prs[0].deployment, Some(77));
        assert_eq!(work.prs[0].sha, "abc");
        for (env, repo) in [
            ("production", "o/backend"),
            ("preview/", "o/backend"),
            ("sandbox/x", "o/backend"),
            ("preview/x", "o/other"),
        ] {
            assert!(scope.deployment(&event(env, repo)).is_err(), "{env} {repo}");
        }
        assert_eq!(scope.environment("feat"), "preview/feat");
    }
}

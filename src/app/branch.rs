//! Which branch a command is about when `--branch` is not given: the branch checked out in the
//! working directory, else the one a CI job says it builds. The command says which it took.

use std::path::Path;

use anyhow::Result;

/// The CI variables that name the branch a job builds, in the order they are trusted: a pull
/// request's head branch first (GitHub's `GITHUB_REF_NAME` is `123/merge` there).
const CI_VARIABLES: &[(&str, &str)] = &[
    ("GITHUB_HEAD_REF", "GitHub Actions, pull request"),
    ("GITHUB_REF_NAME", "GitHub Actions"),
    (
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
        "GitLab CI, merge request",
    ),
    ("CI_COMMIT_REF_NAME", "GitLab CI"),
    ("BRANCH_NAME", "Jenkins"),
];

/// A branch, and where it came from (for the line that says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub(crate) branch: String,
    /// None: given with `--branch`.
    pub(crate) from: Option<String>,
}

/// `--branch`, else the branch of the git checkout at `dir`, else the CI's.
pub(crate) fn choose(
    given: Option<&str>,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Chosen> {
    if let Some(branch) = given {
        return Ok(Chosen {
            branch: branch.to_owned(),
            from: None,
        });
    }
    let checkout = checked_out(dir);
    if let Ok(Some((branch, root))) = &checkout {
        return Ok(Chosen {
            branch: branch.clone(),
            from: Some(format!("the branch checked out in {}", root)),
        });
    }
    // GitHub Actions sets GITHUB_HEAD_REF empty outside pull requests, and `GITHUB_REF_NAME` of
    // a tag is no branch.
    let tag = env("GITHUB_REF_TYPE").is_some_and(|t| t == "tag");
    for (var, ci) in CI_VARIABLES {
        if *var == "GITHUB_REF_NAME" && tag {
            continue;
        }
        if let Some(branch) = env(var).filter(|b| !b.trim().is_empty()) {
            return Ok(Chosen {
                branch,
                from: Some(format!("{var} ({ci})")),
            });
        }
    }
    let why = match checkout {
        Ok(Some(_)) => unreachable!("returned above"),
        Ok(None) => "its HEAD is detached (no branch is checked out)".to_owned(),
        Err(e) => e,
    };
    anyhow::bail!(
        "no --branch given, and none to take from here: {why}, and no CI variable names one ({}); pass --branch NAME",
        CI_VARIABLES
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The branch HEAD is on in the repository containing `dir` (and that repository's root);
/// None when HEAD is detached; Err why there is no answer.
fn checked_out(dir: &Path) -> Result<Option<(String, String)>, String> {
    let repo = git2::Repository::discover(dir)
        .map_err(|_| format!("{} is not inside a git checkout", dir.display()))?;
    let root = repo
        .workdir()
        .unwrap_or_else(|| repo.path())
        .display()
        .to_string();
    let root = root.trim_end_matches('/').to_owned();
    if repo.head_detached().unwrap_or(false) {
        return Ok(None);
    }
    // An unborn branch (a new repository) has a name but no commit: HEAD still says which.
    let head = repo
        .find_reference("HEAD")
        .map_err(|e| format!("the checkout at {root} has no HEAD ({})", e.message()))?;
    let target: &str = head.symbolic_target().ok().flatten().unwrap_or("");
    Ok(target
        .strip_prefix("refs/heads/")
        .map(|branch| (branch.to_owned(), root)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// A real repository with one commit on `branch`.
    fn repo_on(branch: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let commit = repo.commit(None, &sig, &sig, "one", &tree, &[]).unwrap();
        let commit = repo.find_commit(commit).unwrap();
        repo.branch(branch, &commit, true).unwrap();
        repo.set_head(&format!("refs/heads/{branch}")).unwrap();
        dir
    }

    #[test]
    fn the_flag_wins() {
        let dir = repo_on("feature-y");
        let chosen = choose(Some("feature-x"), dir.path(), &no_env).unwrap();
        assert_eq!(chosen.branch, "feature-x");
        assert_eq!(chosen.from, None);
    }

    #[test]
    fn the_checked_out_branch_is_taken_from_any_folder_of_the_checkout() {
        let dir = repo_on("feature/login");
        std::fs::create_dir_all(dir.path().join("deploy/charts")).unwrap();
        let env = |v: &str| (v == "GITHUB_HEAD_REF").then(|| "from-ci".to_owned());
        let chosen = choose(None, &dir.path().join("deploy/charts"), &env).unwrap();
        assert_eq!(chosen.branch, "feature/login");
        let from = chosen.from.unwrap();
        assert!(from.contains("checked out in"), "{from}");
    }

    #[test]
    fn a_detached_head_or_no_checkout_takes_the_ci_branch() {
        let dir = repo_on("main");
        let repo = git2::Repository::open(dir.path()).unwrap();
        let head = repo.head().unwrap().target().unwrap();
        repo.set_head_detached(head).unwrap();
        let env = |v: &str| match v {
            "GITHUB_HEAD_REF" => Some("feature-x".to_owned()),
            "GITHUB_REF_NAME" => Some("42/merge".to_owned()),
            _ => None,
        };
        let chosen = choose(None, dir.path(), &env).unwrap();
        assert_eq!(chosen.branch, "feature-x");
        assert!(chosen.from.unwrap().starts_with("GITHUB_HEAD_REF"));

        let elsewhere = tempfile::tempdir().unwrap();
        let gitlab = |v: &str| (v == "CI_COMMIT_REF_NAME").then(|| "fix-1".to_owned());
        assert_eq!(
            choose(None, elsewhere.path(), &gitlab).unwrap().branch,
            "fix-1"
        );
        // Outside pull requests GitHub sets GITHUB_HEAD_REF empty; a tag is no branch.
        let push = |v: &str| match v {
            "GITHUB_HEAD_REF" => Some(String::new()),
            "GITHUB_REF_NAME" => Some("main".to_owned()),
            _ => None,
        };
        assert_eq!(
            choose(None, elsewhere.path(), &push).unwrap().branch,
            "main"
        );
        let tag = |v: &str| match v {
            "GITHUB_REF_NAME" => Some("v1.2.0".to_owned()),
            "GITHUB_REF_TYPE" => Some("tag".to_owned()),
            _ => None,
        };
        assert!(choose(None, elsewhere.path(), &tag).is_err());
    }

    #[test]
    fn with_nothing_to_go_by_the_error_says_what_was_tried() {
        let elsewhere = tempfile::tempdir().unwrap();
        let error = choose(None, elsewhere.path(), &no_env)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not inside a git checkout"), "{error}");
        assert!(error.contains("GITHUB_HEAD_REF"), "{error}");
        assert!(error.contains("--branch NAME"), "{error}");
    }
}

//! What a webhook delivery asks for, read from GitHub's payload: only the few fields the service
//! uses, so that GitHub adding fields never breaks it.

use serde::Deserialize;

use super::queue::Action;
use crate::error::Hint;

/// A delivery, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// GitHub checks a new webhook.
    Ping { zen: Option<String> },
    /// Something happened to a pull request.
    PullRequest(PullRequestEvent),
    /// Someone (a chat bot, a workflow, a person with the API) asked GitHub for a deployment.
    Deployment(DeploymentEvent),
    /// Any other event: acknowledged, nothing done.
    Other { event: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullRequestEvent {
    pub(crate) action: String,
    /// `owner/name` of the repository the pull request is in.
    pub(crate) repo: String,
    pub(crate) number: u64,
    /// The pull request's branch (`pull_request.head.ref`) and its newest commit.
    pub(crate) head_ref: String,
    pub(crate) head_sha: String,
    /// `owner/name` of the repository the head branch lives in (another one for a fork; `None`
    /// when the fork was deleted).
    pub(crate) head_repo: Option<String>,
    pub(crate) author: String,
    /// A draft pull request (with `--skip-drafts`, not previewed until it is ready).
    pub(crate) draft: bool,
}

/// A `deployment` event: GitHub made deployment `id` of `sha` to `environment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeploymentEvent {
    /// `owner/name` of the repository the deployment is in.
    pub(crate) repo: String,
    pub(crate) id: u64,
    pub(crate) environment: String,
    pub(crate) sha: String,
    /// Who asked for it.
    pub(crate) creator: String,
}

impl PullRequestEvent {
    /// What the action means for the sandbox, `skip_drafts` or not; `None` for actions that
    /// change nothing (`edited`, `labeled`, `review_requested`, …).
    pub(crate) fn intent(&self, skip_drafts: bool) -> Option<Action> {
        match self.action.as_str() {
            "opened" | "reopened" | "synchronize" if skip_drafts && self.draft => None,
            "opened" | "reopened" | "synchronize" | "ready_for_review" => Some(Action::Deploy),
            "converted_to_draft" if skip_drafts => Some(Action::Destroy),
            "closed" => Some(Action::Destroy),
            _ => None,
        }
    }

    /// Whether the head branch is in a fork. The sandbox checks out branches of the product's own
    /// repositories; a fork's branch is not there (and its code is not trusted to run).
    pub(crate) fn is_from_fork(&self) -> bool {
        self.head_repo.as_deref() != Some(self.repo.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EventError {
    #[error("the body is not JSON")]
    Json(#[source] serde_json::Error),
    #[error("the `{event}` payload lacks what the service needs")]
    Shape {
        event: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Hint for EventError {
    fn hint(&self) -> Option<String> {
        Some("the sender is not GitHub, or GitHub changed the payload: check the webhook's content type (application/json)".into())
    }
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: String,
    number: u64,
    pull_request: PullRequest,
    repository: Repository,
}

#[derive(Deserialize)]
struct PullRequest {
    head: Head,
    user: Option<User>,
    #[serde(default)]
    draft: bool,
}

#[derive(Deserialize)]
struct DeploymentPayload {
    deployment: Deployment,
    repository: Repository,
}

#[derive(Deserialize)]
struct Deployment {
    id: u64,
    environment: String,
    sha: String,
    creator: Option<User>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    ref_: String,
    sha: String,
    repo: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct PingPayload {
    zen: Option<String>,
}

/// Read a delivery of event `event` (the `X-GitHub-Event` header).
pub(crate) fn parse(event: &str, body: &[u8]) -> Result<Incoming, EventError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(EventError::Json)?;
    let shape = |source| EventError::Shape {
        event: event.to_owned(),
        source,
    };
    Ok(match event {
        "ping" => {
            let p: PingPayload = serde_json::from_value(value).map_err(shape)?;
            Incoming::Ping { zen: p.zen }
        }
        "pull_request" => {
            let p: PullRequestPayload = serde_json::from_value(value).map_err(shape)?;
            Incoming::PullRequest(PullRequestEvent {
                action: p.action,
                repo: p.repository.full_name,
                number: p.number,
                head_ref: p.pull_request.head.ref_,
                head_sha: p.pull_request.head.sha,
                head_repo: p.pull_request.head.repo.map(|r| r.full_name),
                author: p.pull_request.user.map(|u| u.login).unwrap_or_default(),
                draft: p.pull_request.draft,
            })
        }
        "deployment" => {
            let p: DeploymentPayload = serde_json::from_value(value).map_err(shape)?;
            Incoming::Deployment(DeploymentEvent {
                repo: p.repository.full_name,
                id: p.deployment.id,
                environment: p.deployment.environment,
                sha: p.deployment.sha,
                creator: p.deployment.creator.map(|u| u.login).unwrap_or_default(),
            })
        }
        other => Incoming::Other {
            event: other.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/github")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn githubs_pull_request_payloads_are_understood() {
        for (file, action, intent) in [
            ("pull_request.opened.json", "opened", Some(Action::Deploy)),
            (
                "pull_request.synchronize.json",
                "synchronize",
                Some(Action::Deploy),
            ),
            ("pull_request.closed.json", "closed", Some(Action::Destroy)),
        ] {
            let Incoming::PullRequest(pr) = parse("pull_request", &fixture(file)).unwrap() else {
                panic!("{file}: not a pull request event");
            };
            assert_eq!(pr.action, action);
            assert_eq!(pr.intent(false), intent);
            assert_eq!(pr.repo, "octo-org/backend");
            assert_eq!(pr.number, 42);
            assert_eq!(pr.head_ref, "feature-x");
            assert_eq!(pr.head_sha.len(), 40, "{file}");
            assert_eq!(pr.author, "octocat");
            assert!(!pr.is_from_fork());
        }
    }

    #[test]
    fn ping_other_events_and_other_actions() {
        assert!(matches!(
            parse("ping", &fixture("ping.json")).unwrap(),
            Incoming::Ping { zen: Some(_) }
        ));
        assert_eq!(
            parse("issues", br#"{"action":"opened"}"#).unwrap(),
            Incoming::Other {
                event: "issues".into()
            }
        );
        let mut labeled: serde_json::Value =
            serde_json::from_slice(&fixture("pull_request.opened.json")).unwrap();
        labeled["action"] = "labeled".into();
        let Incoming::PullRequest(pr) =
            parse("pull_request", labeled.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(pr.intent(false), None);
    }

    #[test]
    fn drafts_wait_for_review_when_skipped() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&fixture("pull_request.opened.json")).unwrap();
        v["pull_request"]["draft"] = true.into();
        let pr = |v: &serde_json::Value| match parse("pull_request", v.to_string().as_bytes()) {
            Ok(Incoming::PullRequest(pr)) => pr,
            other => panic!("{other:?}"),
        };
        assert!(pr(&v).draft);
        assert_eq!(pr(&v).intent(true), None);
        assert_eq!(pr(&v).intent(false), Some(Action::Deploy));
        v["action"] = "ready_for_review".into();
        v["pull_request"]["draft"] = false.into();
        assert_eq!(pr(&v).intent(true), Some(Action::Deploy));
        v["action"] = "converted_to_draft".into();
        v["pull_request"]["draft"] = true.into();
        assert_eq!(pr(&v).intent(true), Some(Action::Destroy));
        assert_eq!(pr(&v).intent(false), None);
    }

    #[test]
    fn githubs_deployment_payload_is_understood() {
        let Incoming::Deployment(d) = parse("deployment", &fixture("deployment.json")).unwrap()
        else {
            panic!("not a deployment event");
        };
        assert_eq!(d.repo, "octo-org/backend");
        assert_eq!(d.environment, "sandbox/feature-x");
        assert_eq!(d.sha.len(), 40);
        assert!(d.id > 0);
        assert_eq!(d.creator, "octocat");
    }

    #[test]
    fn forks_are_recognised() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&fixture("pull_request.opened.json")).unwrap();
        v["pull_request"]["head"]["repo"]["full_name"] = "mallory/backend".into();
        let Incoming::PullRequest(pr) = parse("pull_request", v.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert!(pr.is_from_fork());
        v["pull_request"]["head"]["repo"] = serde_json::Value::Null;
        let Incoming::PullRequest(pr) = parse("pull_request", v.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert!(pr.is_from_fork(), "a deleted fork is still a fork");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(matches!(
            parse("pull_request", b"{not json"),
            Err(EventError::Json(_))
        ));
        assert!(matches!(
            parse("pull_request", br#"{"action":"opened"}"#),
            Err(EventError::Shape { .. })
        ));
        // Even an event the service ignores must be JSON.
        assert!(matches!(parse("push", b"\xff"), Err(EventError::Json(_))));
    }
}

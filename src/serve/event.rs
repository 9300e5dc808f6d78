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
    /// When the pull request last changed, as this event says (orders replays).
    pub(crate) updated_at: Option<String>,
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
    /// The body is another event's than the `X-GitHub-Event` header says (the header is not
    /// signed; the body is).
    #[error(
        "the body is not a `{event}` event: it has `{key}`, which only a `{belongs}` event has"
    )]
    Mislabelled {
        event: String,
        key: &'static str,
        belongs: &'static str,
    },
    #[error("the body is not a `{event}` event: its action is `{action}`, not `{expected}`")]
    Action {
        event: String,
        action: String,
        expected: &'static str,
    },
}

impl Hint for EventError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            EventError::Mislabelled { .. } | EventError::Action { .. } => {
                "the X-GitHub-Event header is not covered by the signature: a signed body sent under another event's name is refused".into()
            }
            _ => "the sender is not GitHub, or GitHub changed the payload: check the webhook's content type (application/json)".into(),
        })
    }
}

/// Top-level keys that only other events' bodies have, and the event each belongs to: a body
/// with one of them is not the event its header claims.
const FOREIGN_KEYS: [(&str, &str); 9] = [
    ("deployment_status", "deployment_status"),
    ("review", "pull_request_review"),
    ("comment", "issue_comment or pull_request_review_comment"),
    ("issue", "issues or issue_comment"),
    ("thread", "pull_request_review_thread"),
    ("check_run", "check_run"),
    ("check_suite", "check_suite"),
    ("workflow_job", "workflow_job"),
    ("release", "release"),
];

/// Refuse a body that is not the `event` its header names: it must not have another event's
/// keys (a `deployment_status` body has a `deployment` too, and must not pass as one).
fn check_shape(event: &str, value: &serde_json::Value) -> Result<(), EventError> {
    let other = match event {
        "pull_request" => Some(("deployment", "deployment")),
        "deployment" => Some(("pull_request", "pull_request")),
        _ => return Ok(()),
    };
    let foreign = FOREIGN_KEYS
        .iter()
        .chain(other.iter())
        .find(|(key, _)| value.get(key).is_some());
    if let Some((key, belongs)) = foreign {
        return Err(EventError::Mislabelled {
            event: event.to_owned(),
            key,
            belongs,
        });
    }
    // GitHub's `deployment` event has one action; anything else is another event's body.
    match value.get("action").and_then(|a| a.as_str()) {
        Some(action) if event == "deployment" && action != "created" => Err(EventError::Action {
            event: event.to_owned(),
            action: action.to_owned(),
            expected: "created",
        }),
        _ => Ok(()),
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
    #[serde(default)]
    updated_at: Option<String>,
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
    check_shape(event, &value)?;
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
                updated_at: p.pull_request.updated_at,
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
    fn a_body_sent_under_another_events_name_is_refused() {
        // A `deployment_status` body (it has a `deployment` too) relabelled `deployment`.
        let mut status: serde_json::Value =
            serde_json::from_slice(&fixture("deployment.json")).unwrap();
        status["deployment_status"] = serde_json::json!({"state": "success", "id": 9});
        let err = parse("deployment", status.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the body is not a `deployment` event: it has `deployment_status`, which only a `deployment_status` event has"
        );
        assert!(err.hint().unwrap().contains("not covered by the signature"));
        // A pull request's body sent as a deployment, and the other way round.
        let pr = fixture("pull_request.opened.json");
        assert!(matches!(
            parse("deployment", &pr),
            Err(EventError::Mislabelled {
                key: "pull_request",
                ..
            })
        ));
        let deployment = fixture("deployment.json");
        assert!(matches!(
            parse("pull_request", &deployment),
            Err(EventError::Mislabelled {
                key: "deployment",
                ..
            })
        ));
        // A review of a pull request (it has `pull_request` and `review`).
        let mut review: serde_json::Value = serde_json::from_slice(&pr).unwrap();
        review["review"] = serde_json::json!({"state": "approved"});
        assert!(matches!(
            parse("pull_request", review.to_string().as_bytes()),
            Err(EventError::Mislabelled { key: "review", .. })
        ));
        let mut other_action: serde_json::Value = serde_json::from_slice(&deployment).unwrap();
        other_action["action"] = "deleted".into();
        assert!(matches!(
            parse("deployment", other_action.to_string().as_bytes()),
            Err(EventError::Action { .. })
        ));
        // GitHub's own bodies pass, with the time that orders them.
        let Incoming::PullRequest(pr) = parse("pull_request", &pr).unwrap() else {
            panic!()
        };
        assert_eq!(pr.updated_at.as_deref(), Some("2026-11-23T10:15:03Z"));
        assert!(parse("deployment", &deployment).is_ok());
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

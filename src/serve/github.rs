//! The little of GitHub's REST API the service uses (deployments and their statuses, a pull
//! request's state, issue comments) and Slack's incoming webhooks. Errors never carry the token
//! or the Slack URL: the token travels only in a header, and URLs are left out of errors.

use std::time::Duration;

use crate::error::Hint;
use anyhow::{Context, Result};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

/// The hidden marker that finds the service's own comment on a pull request again.
pub(crate) const COMMENT_MARKER: &str = "<!-- sandbox-preview -->";

/// GitHub limits a deployment status's description to 140 characters.
pub(crate) const DESCRIPTION_LIMIT: usize = 140;

#[derive(Clone)]
pub(crate) struct GitHub {
    http: reqwest::Client,
    api: Url,
    token: Option<String>,
}

/// A call GitHub answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("GitHub answered {method} {path} with {status}: {message}")]
pub(crate) struct ApiError {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Hint for ApiError {
    fn hint(&self) -> Option<String> {
        match self.status.as_u16() {
            401 => Some("the GitHub token is missing or invalid: set SANDBOX_GITHUB_TOKEN, GITHUB_TOKEN or GH_TOKEN".into()),
            403 | 404 => Some("the GitHub token lacks access: it needs `deployments: write` and `pull_requests: write` on the repository".into()),
            _ => None,
        }
    }
}

/// The states of a deployment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Queued,
    InProgress,
    Success,
    Failure,
    Error,
    Inactive,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::InProgress => "in_progress",
            State::Success => "success",
            State::Failure => "failure",
            State::Error => "error",
            State::Inactive => "inactive",
        }
    }
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent("sandbox")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .context("could not set up the HTTP client")
}

/// `owner/name`, and nothing that could walk elsewhere in the API.
pub(crate) fn valid_repo(full_name: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(full_name.split_once('/'), Some((o, n)) if ok(o) && ok(n))
}

/// `text` as a Markdown code span nothing inside can close or break out of: fenced by one
/// backtick more than its longest run of backticks, padded with a space where it starts or ends
/// with one (CommonMark). A branch is pushed by anyone with write access, and a name with a
/// backtick would otherwise end the span and inject links or images into the comment.
pub(crate) fn markdown_code(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// [`markdown_code`] for a cell of a GFM table, where an unescaped `|` ends the cell even
/// inside a code span.
pub(crate) fn markdown_cell_code(text: &str) -> String {
    markdown_code(text).replace('|', "\\|")
}

/// A URL for a Markdown comment: an autolink when it is a plain http(s) URL, else code.
pub(crate) fn markdown_url(url: &str) -> String {
    let plain = (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '`' | '\\'));
    if plain {
        format!("<{url}>")
    } else {
        markdown_code(url)
    }
}

/// `text` for a Slack message: `&`, `<` and `>` escaped as Slack asks, so that a branch named
/// `<https://evil.example|docs>` or `<!channel>` stays text instead of a link or a mention.
pub(crate) fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` as Slack inline code: escaped, and its backticks (Slack has no escape for them inside
/// code) shown as `'`.
pub(crate) fn slack_code(text: &str) -> String {
    format!("`{}`", slack_text(text).replace('`', "'"))
}

/// At most `limit` characters, cut on a character boundary with `…` where it was cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl GitHub {
    /// `api_url`: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server.
    pub(crate) fn new(api_url: &str, token: Option<String>) -> Result<GitHub> {
        let mut api = Url::parse(api_url)
            .with_context(|| format!("--github-api-url `{api_url}` is not a URL"))?;
        if !matches!(api.scheme(), "http" | "https") {
            anyhow::bail!("--github-api-url `{api_url}` is not an http(s) URL");
        }
        // Paths are joined to it: make it end with exactly one `/`.
        let path = format!("{}/", api.path().trim_end_matches('/'));
        api.set_path(&path);
        Ok(GitHub {
            http: client()?,
            api,
            token,
        })
    }

    /// One API call; a failure is counted in `/metrics` by its endpoint.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let endpoint = format!("{method} /{path}");
        let result = self.call_once(method, path, query, body).await;
        if result.is_err() {
            super::metrics::github_call_failed(&endpoint);
        }
        result
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut url = self.api.join(path).expect("API paths are relative URLs");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let what = format!("{method} /{path}");
        let response = request
            .send()
            .await
            .map_err(|e| e.without_url())
            .with_context(|| format!("could not reach GitHub for {what}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| e.without_url())
            .with_context(|| format!("could not read GitHub's answer to {what}"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| truncate(&text, 200));
            return Err(ApiError {
                method,
                path: format!("/{path}"),
                status,
                message,
            }
            .into());
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("GitHub's answer to {what} is not JSON"))
    }

    /// POST /repos/{repo}/deployments for `sha`; returns the deployment's id.
    pub(crate) async fn create_deployment(
        &self,
        repo: &str,
        sha: &str,
        environment: &str,
        description: &str,
        payload: serde_json::Value,
    ) -> Result<u64> {
        let answer = self
            .call(
                Method::POST,
                &format!("repos/{repo}/deployments"),
                &[],
                Some(json!({
                    "ref": sha,
                    "task": "deploy",
                    "environment": environment,
                    "description": truncate(description, DESCRIPTION_LIMIT),
                    "auto_merge": false,
                    "required_contexts": [],
                    "transient_environment": true,
                    "production_environment": false,
                    "payload": payload,
                })),
            )
            .await?;
        answer["id"]
            .as_u64()
            .context("GitHub created a deployment without an id")
    }

    /// POST /repos/{repo}/deployments/{id}/statuses.
    pub(crate) async fn set_status(
        &self,
        repo: &str,
        deployment: u64,
        state: State,
        description: &str,
        environment_url: Option<&str>,
    ) -> Result<()> {
        let mut body = json!({
            "state": state.as_str(),
            "description": truncate(description, DESCRIPTION_LIMIT),
        });
        if let Some(url) = environment_url {
            body["environment_url"] = url.into();
        }
        self.call(
            Method::POST,
            &format!("repos/{repo}/deployments/{deployment}/statuses"),
            &[],
            Some(body),
        )
        .await?;
        Ok(())
    }

    /// The ids of the latest deployments to `environment` (newest first).
    pub(crate) async fn deployments(&self, repo: &str, environment: &str) -> Result<Vec<u64>> {
        let answer = self
            .call(
                Method::GET,
                &format!("repos/{repo}/deployments"),
                &[("environment", environment), ("per_page", "10")],
                None,
            )
            .await?;
        Ok(answer
            .as_array()
            .map(|list| list.iter().filter_map(|d| d["id"].as_u64()).collect())
            .unwrap_or_default())
    }

    /// Whether pull request `number` is closed (merged or not).
    pub(crate) async fn pull_is_closed(&self, repo: &str, number: u64) -> Result<bool> {
        #[derive(Deserialize)]
        struct Pull {
            state: String,
        }
        let answer = self
            .call(
                Method::GET,
                &format!("repos/{repo}/pulls/{number}"),
                &[],
                None,
            )
            .await?;
        let pull: Pull =
            serde_json::from_value(answer).context("GitHub's pull request has no `state`")?;
        Ok(pull.state == "closed")
    }

    /// Create the service's comment on the pull request, or update the one it made before
    /// (found by [`COMMENT_MARKER`]). `body` should contain the marker.
    pub(crate) async fn upsert_comment(&self, repo: &str, number: u64, body: &str) -> Result<()> {
        let mut existing = None;
        'pages: for page in 1..=10u32 {
            let page = page.to_string();
            let answer = self
                .call(
                    Method::GET,
                    &format!("repos/{repo}/issues/{number}/comments"),
                    &[("per_page", "100"), ("page", &page)],
                    None,
                )
                .await?;
            let list = answer.as_array().cloned().unwrap_or_default();
            for comment in &list {
                if comment["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(COMMENT_MARKER))
                {
                    existing = comment["id"].as_u64();
                    break 'pages;
                }
            }
            if list.len() < 100 {
                break;
            }
        }
        match existing {
            Some(id) => {
                self.call(
                    Method::PATCH,
                    &format!("repos/{repo}/issues/comments/{id}"),
                    &[],
                    Some(json!({ "body": body })),
                )
                .await?;
            }
            None => {
                self.call(
                    Method::POST,
                    &format!("repos/{repo}/issues/{number}/comments"),
                    &[],
                    Some(json!({ "body": body })),
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// A Slack incoming webhook.
#[derive(Clone)]
pub(crate) struct Slack {
    http: reqwest::Client,
    url: Url,
}

impl Slack {
    pub(crate) fn new(url: &str) -> Result<Slack> {
        // The URL is a secret: it is not repeated in the error.
        let url = Url::parse(url)
            .map_err(|e| anyhow::anyhow!("the Slack webhook URL is not a URL: {e}"))?;
        Ok(Slack {
            http: client()?,
            url,
        })
    }

    pub(crate) async fn post(&self, text: &str) -> Result<()> {
        let response = self
            .http
            .post(self.url.clone())
            .json(&json!({ "text": text }))
            .send()
            .await
            .map_err(|e| e.without_url())
            .context("could not reach Slack")?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("Slack answered {status}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_cut_to_githubs_limit_on_character_boundaries() {
        assert_eq!(truncate("short", 140), "short");
        let long = "é".repeat(200);
        let cut = truncate(&long, DESCRIPTION_LIMIT);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn repository_names_cannot_walk_the_api() {
        assert!(valid_repo("octo-org/backend"));
        assert!(valid_repo("a_b/c.d-e"));
        for bad in [
            "octo-org", "a/b/c", "../x", "a/..", "a/b?x=1", "/b", "a/", "a/b c",
        ] {
            assert!(!valid_repo(bad), "{bad}");
        }
    }

    #[test]
    fn the_api_url_may_have_a_path() {
        let gh = GitHub::new("https://ghe.example.com/api/v3", None).unwrap();
        assert_eq!(
            gh.api.join("repos/o/r/pulls/1").unwrap().as_str(),
            "https://ghe.example.com/api/v3/repos/o/r/pulls/1"
        );
        let gh = GitHub::new("http://127.0.0.1:9/", None).unwrap();
        assert_eq!(
            gh.api.join("repos/o/r").unwrap().as_str(),
            "http://127.0.0.1:9/repos/o/r"
        );
        assert!(GitHub::new("ftp://x", None).is_err());
        assert!(GitHub::new("not a url", None).is_err());
    }
}

//! The GitHub REST client: the little of GitHub's API the service uses (deployments and their
//! statuses, a pull request's state and the open ones, issue comments), over the general
//! [`Caller`] (retries, rate limits). Lists are read conditionally (`ETag`) and page by page.
//! Errors never carry the token: it travels only in a header, and URLs are left out of errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

use super::app_auth::{GitHubApp, TokenSource};
use super::caller::{header, next_link, Answer, Caller, Service};
use super::log::log;
use super::retry::Idempotence;
use super::text::truncate;
use crate::error::Hint;

/// The hidden marker that finds the service's own comment on a pull request again.
pub(crate) const COMMENT_MARKER: &str = "<!-- sandbox-preview -->";

/// GitHub limits a deployment status's description to 140 characters.
pub(crate) const DESCRIPTION_LIMIT: usize = 140;

/// GitHub's calls: counted by call, and its rate limit is the token's, shared by every call.
const GITHUB: Service = Service {
    name: "GitHub",
    retry_event: "github.retry",
    rate_limited_event: "github.rate_limited",
    count_failure: super::metrics::github_call_failed,
    shared_rate_limit: true,
};

#[derive(Clone)]
pub(crate) struct GitHub {
    caller: Caller,
    api: Url,
    /// The `Authorization` of every call: a fixed token, or a GitHub App's installation tokens.
    token: TokenSource,
    /// The last answer to each listed page, by URL, with its `ETag`: asking again with
    /// `If-None-Match` costs a 304, which GitHub does not count against the rate limit.
    pages: Arc<Mutex<HashMap<String, CachedPage>>>,
    /// The login the token acts as (`SANDBOX_GITHUB_LOGIN`, else `GET /user`, asked once):
    /// only comments by it are the service's to update.
    login: Arc<tokio::sync::OnceCell<String>>,
}

/// A listed page as GitHub last sent it.
#[derive(Clone)]
struct CachedPage {
    etag: String,
    items: Vec<serde_json::Value>,
    next: Option<Url>,
}

/// At most this many pages are remembered (a few per repository and preview).
const CACHED_PAGES: usize = 4096;

/// At most this many pages of one list are read (100 items each).
const MAX_PAGES: usize = 50;

/// What a list cost: pages fetched, and how many of them GitHub answered "not modified".
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListCost {
    pub(crate) pages: usize,
    pub(crate) not_modified: usize,
}

/// An open pull request, as a list of them shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenPull {
    /// `owner/name` of its base repository.
    pub(crate) repo: String,
    pub(crate) number: u64,
    pub(crate) head_ref: String,
    pub(crate) head_sha: String,
    /// `owner/name` of the head branch's repository (`None`: a deleted fork).
    pub(crate) head_repo: Option<String>,
    pub(crate) draft: bool,
    pub(crate) author: String,
}

/// A deployment, as a list of them shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeploymentRef {
    pub(crate) id: u64,
    pub(crate) sha: String,
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
            caller: Caller::new(&GITHUB)?,
            api,
            token: TokenSource::Fixed(token),
            pages: Arc::default(),
            login: Arc::default(),
        })
    }

    /// The same client, authenticated as the GitHub App `app` (its installation tokens).
    pub(crate) fn with_app(mut self, app: Arc<GitHubApp>) -> GitHub {
        self.token = TokenSource::App(app);
        self
    }

    /// The same client, acting as `login` (a GitHub App's installation token cannot ask
    /// `GET /user`: its comments are by `APP-NAME[bot]`).
    pub(crate) fn with_login(self, login: Option<String>) -> GitHub {
        if let Some(login) = login.filter(|l| !l.trim().is_empty()) {
            let _ = self.login.set(login.trim().to_owned());
        }
        self
    }

    /// Who the token acts as: its comments are the service's own.
    pub(crate) async fn own_login(&self) -> Result<&str> {
        let login = self
            .login
            .get_or_try_init(|| async {
                let answer = self
                    .call(Method::GET, "user", &[], None, Idempotence::Idempotent)
                    .await
                    .context(
                        "could not learn whom the GitHub token acts as (GET /user); with a GitHub App's token set SANDBOX_GITHUB_LOGIN to the app's bot login (e.g. `my-app[bot]`)",
                    )?;
                answer["login"]
                    .as_str()
                    .map(str::to_owned)
                    .context("GitHub's GET /user answer has no `login`")
            })
            .await?;
        Ok(login.as_str())
    }

    /// The same client with another retry policy (tests make the backoff short).
    #[cfg(test)]
    pub(crate) fn with_retry(mut self, retry: super::retry::RetryPolicy) -> GitHub {
        self.caller = self.caller.with_retry(retry);
        self
    }

    fn request(&self, method: &Method, url: Url, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self
            .caller
            .http()
            .request(method.clone(), url)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.api.join(path).expect("API paths are relative URLs");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<serde_json::Value>,
        idempotence: Idempotence,
    ) -> Result<serde_json::Value> {
        let url = self.url(path, query);
        let what = format!("{method} /{path}");
        let token = self.token.token_for(&url).await?;
        let answer = self
            .caller
            .send(&what, idempotence, || {
                let request = self.request(&method, url.clone(), token.as_deref());
                match &body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await?;
        if !answer.status.is_success() {
            return Err(self.api_error(method, path, &answer).into());
        }
        if answer.text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&answer.text)
            .with_context(|| format!("GitHub's answer to {what} is not JSON"))
    }

    fn api_error(&self, method: Method, path: &str, answer: &Answer) -> ApiError {
        let message = serde_json::from_str::<serde_json::Value>(&answer.text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| truncate(&answer.text, 200));
        ApiError {
            method,
            path: format!("/{}", path.trim_start_matches('/')),
            status: answer.status,
            message,
        }
    }

    /// One page of a list, asked conditionally when it was read before.
    async fn page(&self, url: &Url) -> Result<(CachedPage, bool)> {
        let key = url.to_string();
        let cached = self.pages.lock().expect("not poisoned").get(&key).cloned();
        let path = url.path().to_owned();
        let what = format!("GET {path}");
        let token = self.token.token_for(url).await?;
        let answer = self
            .caller
            .send(&what, Idempotence::Idempotent, || {
                let request = self.request(&Method::GET, url.clone(), token.as_deref());
                match &cached {
                    Some(c) => request.header("If-None-Match", &c.etag),
                    None => request,
                }
            })
            .await?;
        if answer.status == StatusCode::NOT_MODIFIED {
            if let Some(cached) = cached {
                return Ok((cached, true));
            }
        }
        if !answer.status.is_success() {
            return Err(self.api_error(Method::GET, &path, &answer).into());
        }
        let items: Vec<serde_json::Value> = serde_json::from_str(&answer.text)
            .with_context(|| format!("GitHub's answer to {what} is not a JSON list"))?;
        let next = match next_link(&answer.headers) {
            Some(next) => Some(self.same_api(&next).with_context(|| {
                format!("GitHub's Link header for {what} points outside the API")
            })?),
            None => None,
        };
        let page = CachedPage {
            etag: header(&answer.headers, "etag")
                .unwrap_or_default()
                .to_owned(),
            items,
            next,
        };
        if !page.etag.is_empty() {
            let mut pages = self.pages.lock().expect("not poisoned");
            if pages.len() >= CACHED_PAGES {
                pages.clear();
            }
            pages.insert(key, page.clone());
        }
        Ok((page, false))
    }

    /// `link` when it is under the API's base URL: the token is never sent anywhere else.
    fn same_api(&self, link: &str) -> Result<Url> {
        let url = Url::parse(link).context("not a URL")?;
        let same = url.scheme() == self.api.scheme()
            && url.host_str() == self.api.host_str()
            && url.port_or_known_default() == self.api.port_or_known_default()
            && url.path().starts_with(self.api.path());
        if !same {
            anyhow::bail!("not under the API's URL");
        }
        Ok(url)
    }

    /// Every item of a paginated list (following `Link: rel="next"`, at most [`MAX_PAGES`]).
    async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(Vec<serde_json::Value>, ListCost)> {
        let mut url = Some(self.url(path, query));
        let mut items = Vec::new();
        let mut cost = ListCost::default();
        while let Some(page_url) = url.take() {
            if cost.pages == MAX_PAGES {
                log!(
                    Warn,
                    "github.list_cut",
                    path = format!("/{path}"),
                    pages = MAX_PAGES
                );
                break;
            }
            let (page, not_modified) = self.page(&page_url).await?;
            cost.pages += 1;
            cost.not_modified += usize::from(not_modified);
            items.extend(page.items);
            url = page.next;
        }
        Ok((items, cost))
    }

    /// The open pull requests of `repo` (every page).
    pub(crate) async fn open_pulls(&self, repo: &str) -> Result<(Vec<OpenPull>, ListCost)> {
        #[derive(Deserialize)]
        struct Pull {
            number: u64,
            #[serde(default)]
            draft: bool,
            head: Head,
            user: Option<User>,
        }
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "ref")]
            ref_: String,
            sha: String,
            repo: Option<Repo>,
        }
        #[derive(Deserialize)]
        struct Repo {
            full_name: String,
        }
        #[derive(Deserialize)]
        struct User {
            login: String,
        }
        let (items, cost) = self
            .list(
                &format!("repos/{repo}/pulls"),
                &[("state", "open"), ("per_page", "100")],
            )
            .await?;
        let mut pulls = Vec::with_capacity(items.len());
        for item in items {
            let pull: Pull = serde_json::from_value(item).with_context(|| {
                format!("a pull request of {repo} as GitHub lists it lacks what serve needs")
            })?;
            pulls.push(OpenPull {
                repo: repo.to_owned(),
                number: pull.number,
                head_ref: pull.head.ref_,
                head_sha: pull.head.sha,
                head_repo: pull.head.repo.map(|r| r.full_name),
                draft: pull.draft,
                author: pull.user.map(|u| u.login).unwrap_or_default(),
            });
        }
        Ok((pulls, cost))
    }

    /// The deployments to `environment` in `repo`, newest first (the first page: GitHub keeps
    /// them newest first, and older ones were dealt with by earlier resyncs).
    pub(crate) async fn environment_deployments(
        &self,
        repo: &str,
        environment: &str,
    ) -> Result<Vec<DeploymentRef>> {
        let url = self.url(
            &format!("repos/{repo}/deployments"),
            &[("environment", environment), ("per_page", "30")],
        );
        let (page, _) = self.page(&url).await?;
        Ok(page
            .items
            .iter()
            .filter_map(|d| {
                Some(DeploymentRef {
                    id: d["id"].as_u64()?,
                    sha: d["sha"].as_str()?.to_owned(),
                })
            })
            .collect())
    }

    /// The newest status of a deployment (`None`: it has none yet).
    pub(crate) async fn latest_state(&self, repo: &str, deployment: u64) -> Result<Option<String>> {
        let answer = self
            .call(
                Method::GET,
                &format!("repos/{repo}/deployments/{deployment}/statuses"),
                &[("per_page", "1")],
                None,
                Idempotence::Idempotent,
            )
            .await?;
        Ok(answer[0]["state"].as_str().map(str::to_owned))
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
                Idempotence::Creates,
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
            Idempotence::Idempotent,
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
                Idempotence::Idempotent,
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
                Idempotence::Idempotent,
            )
            .await?;
        let pull: Pull =
            serde_json::from_value(answer).context("GitHub's pull request has no `state`")?;
        Ok(pull.state == "closed")
    }

    /// Create the service's comment on the pull request, or update the one it made before
    /// (found by [`COMMENT_MARKER`] and written by [`GitHub::own_login`]: anyone can write the
    /// marker, and someone else's comment is never edited). `body` should contain the marker.
    pub(crate) async fn upsert_comment(&self, repo: &str, number: u64, body: &str) -> Result<()> {
        let own = self.own_login().await?;
        let mut existing = None;
        'pages: for page in 1..=10u32 {
            let page = page.to_string();
            let answer = self
                .call(
                    Method::GET,
                    &format!("repos/{repo}/issues/{number}/comments"),
                    &[("per_page", "100"), ("page", &page)],
                    None,
                    Idempotence::Idempotent,
                )
                .await?;
            let list = answer.as_array().cloned().unwrap_or_default();
            for comment in &list {
                if is_own_comment(comment, own) {
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
                    Idempotence::Idempotent,
                )
                .await?;
            }
            None => {
                self.call(
                    Method::POST,
                    &format!("repos/{repo}/issues/{number}/comments"),
                    &[],
                    Some(json!({ "body": body })),
                    Idempotence::Creates,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Whether `comment` (as GitHub lists it) is one the service wrote as `own`: by that login and
/// with the marker.
pub(crate) fn is_own_comment(comment: &serde_json::Value, own: &str) -> bool {
    let by_us = comment["user"]["login"]
        .as_str()
        .is_some_and(|login| login.eq_ignore_ascii_case(own));
    let marked = comment["body"]
        .as_str()
        .is_some_and(|b| b.contains(COMMENT_MARKER));
    by_us && marked
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use sandbox_test_support::fake_github::{Canned, FakeGitHub, DEFAULT_IDENTITY};

    use super::super::retry::RetryPolicy;
    use super::*;

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

    fn quick() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(20),
            ..RetryPolicy::default()
        }
    }

    async fn stand_in() -> (FakeGitHub, GitHub) {
        let fake = FakeGitHub::start().await;
        let gh = GitHub::new(&fake.url, Some("t".into()))
            .unwrap()
            .with_retry(quick());
        (fake, gh)
    }

    fn answered(fake: &FakeGitHub, method: &str, path: &str) -> Vec<u16> {
        fake.calls()
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .map(|c| c.status)
            .collect()
    }

    #[tokio::test]
    async fn only_a_comment_the_token_wrote_is_updated() {
        let (fake, gh) = stand_in().await;
        let marked = format!("{COMMENT_MARKER}\nlooks like serve's");
        let theirs = fake.add_comment("o/r", 4, "mallory", &marked);
        gh.upsert_comment("o/r", 4, &format!("{COMMENT_MARKER}\nfirst"))
            .await
            .unwrap();
        let comments = fake.comments();
        assert_eq!(comments.len(), 2, "its own, beside mallory's");
        assert_eq!(comments[0].id, theirs);
        assert_eq!(
            (comments[0].edits, comments[0].body.as_str()),
            (0, marked.as_str())
        );
        assert_eq!(comments[1].author, DEFAULT_IDENTITY);
        gh.upsert_comment("o/r", 4, &format!("{COMMENT_MARKER}\nsecond"))
            .await
            .unwrap();
        let comments = fake.comments();
        assert_eq!(comments.len(), 2, "its own is updated");
        assert!(comments[1].body.ends_with("second") && comments[1].edits == 1);
        assert_eq!(comments[0].edits, 0);
        // Asked once: the login is cached.
        assert_eq!(answered(&fake, "GET", "/user"), [200]);
        // A configured login (a GitHub App's bot) is not asked for.
        let app = GitHub::new(&fake.url, Some("t".into()))
            .unwrap()
            .with_login(Some("my-app[bot]".into()));
        assert_eq!(app.own_login().await.unwrap(), "my-app[bot]");
        assert_eq!(answered(&fake, "GET", "/user").len(), 1);
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_github_answers() {
        let (fake, gh) = stand_in().await;
        let path = "/repos/o/r/deployments";
        fake.fail_next("POST", path, vec![Canned::status(500), Canned::status(502)]);
        let id = gh
            .create_deployment("o/r", "abc", "sandbox/x", "d", json!({}))
            .await
            .unwrap();
        assert_eq!(answered(&fake, "POST", path), [500, 502, 201]);
        assert_eq!(fake.deployments().len(), 1);
        assert_eq!(fake.deployments()[0].id, id);

        // Beyond the attempts: the last answer's error.
        fake.fail_next("POST", path, vec![Canned::status(503); 4]);
        let e = gh
            .create_deployment("o/r", "abc", "sandbox/x", "d", json!({}))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("503"), "{e:#}");
        assert_eq!(answered(&fake, "POST", path).len(), 3 + 4);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (fake, gh) = stand_in().await;
        let path = "/repos/o/r/pulls/5";
        fake.fail_next("GET", path, vec![Canned::status(404), Canned::status(500)]);
        let e = gh.pull_is_closed("o/r", 5).await.unwrap_err();
        assert_eq!(e.downcast_ref::<ApiError>().unwrap().status, 404);
        // A 403 that is not a rate limit is about permissions: final too.
        let path = "/repos/o/r/pulls/6";
        fake.fail_next("GET", path, vec![Canned::status(403)]);
        assert!(gh.pull_is_closed("o/r", 6).await.is_err());
        assert_eq!(answered(&fake, "GET", "/repos/o/r/pulls/5"), [404]);
        assert_eq!(answered(&fake, "GET", path), [403]);
    }

    #[tokio::test]
    async fn a_spent_rate_limit_is_waited_out_until_its_reset() {
        let (fake, gh) = stand_in().await;
        let path = "/repos/o/r/deployments/1/statuses";
        fake.add_deployment("o/r", "abc", "sandbox/x");
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let reset = now + 2;
        fake.fail_next(
            "POST",
            path,
            vec![Canned::status(403)
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", &reset.to_string())],
        );
        gh.set_status("o/r", 1, State::Success, "up", None)
            .await
            .unwrap();
        let calls: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect();
        assert_eq!(
            calls.iter().map(|c| c.status).collect::<Vec<_>>(),
            [403, 201]
        );
        let reset_at = std::time::UNIX_EPOCH + Duration::from_secs(reset);
        assert!(
            calls[1].at >= reset_at,
            "retried at {:?}, before the reset at {reset_at:?}",
            calls[1].at
        );
        assert_eq!(fake.states_of(1), ["success"]);

        // A secondary rate limit names its wait in Retry-After; the next call of any kind
        // waits for it too.
        let path = "/repos/o/r/pulls/9";
        fake.fail_next(
            "GET",
            path,
            vec![Canned::status(429).header("retry-after", "1")],
        );
        assert!(!gh.pull_is_closed("o/r", 9).await.unwrap());
        let calls: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect();
        assert_eq!(
            calls.iter().map(|c| c.status).collect::<Vec<_>>(),
            [429, 200]
        );
        assert!(calls[1].at.duration_since(calls[0].at).unwrap() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn lists_follow_links_and_an_unchanged_page_costs_a_304() {
        let (fake, gh) = stand_in().await;
        for n in 1..=205 {
            fake.open_pull("o/r", n, &format!("b{n}"), &format!("{n:040}"));
        }
        fake.open_pull("o/other", 1, "x", "y");
        let (pulls, cost) = gh.open_pulls("o/r").await.unwrap();
        assert_eq!(pulls.len(), 205);
        assert_eq!(
            cost,
            ListCost {
                pages: 3,
                not_modified: 0
            }
        );
        let numbers: std::collections::BTreeSet<u64> = pulls.iter().map(|p| p.number).collect();
        assert_eq!(numbers.len(), 205, "every pull request once");
        let p7 = pulls.iter().find(|p| p.number == 7).unwrap();
        assert_eq!((p7.head_ref.as_str(), p7.repo.as_str()), ("b7", "o/r"));
        assert_eq!(p7.head_repo.as_deref(), Some("o/r"));

        let (again, cost) = gh.open_pulls("o/r").await.unwrap();
        assert_eq!(again, pulls);
        assert_eq!(
            cost,
            ListCost {
                pages: 3,
                not_modified: 3
            }
        );
        let listed: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.path == "/repos/o/r/pulls")
            .collect();
        assert_eq!(listed.len(), 6);
        assert!(listed[..3]
            .iter()
            .all(|c| c.if_none_match.is_none() && c.status == 200));
        assert!(listed[3..]
            .iter()
            .all(|c| c.if_none_match.is_some() && c.status == 304));

        // A change shows: the changed pages are sent again.
        fake.close("o/r", 205);
        let (after, cost) = gh.open_pulls("o/r").await.unwrap();
        assert_eq!(after.len(), 204);
        assert!(cost.not_modified < 3, "{cost:?}");
    }

    #[test]
    fn links_are_followed_only_inside_the_api() {
        let gh = GitHub::new("https://ghe.example.com/api/v3", None).unwrap();
        assert!(gh
            .same_api("https://ghe.example.com/api/v3/repos/o/r/pulls?page=2")
            .is_ok());
        for elsewhere in [
            "https://evil.example.com/api/v3/repos/o/r/pulls?page=2",
            "http://ghe.example.com/api/v3/repos/o/r/pulls?page=2",
            "https://ghe.example.com:8443/api/v3/x",
            "https://ghe.example.com/other/x",
        ] {
            assert!(gh.same_api(elsewhere).is_err(), "{elsewhere}");
        }
    }
}

//! A stand-in for GitHub's REST API (and a Slack webhook) on 127.0.0.1, for tests: it records
//! every call and answers the few endpoints `sandbox serve` uses the way GitHub does.
//!
//! Shared by the unit tests (`src/serve`) and the end-to-end tests (`tests/e2e/serve_support.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// One request, as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    pub if_none_match: Option<String>,
    /// When it arrived.
    pub at: SystemTime,
    /// The status it was answered with.
    pub status: u16,
}

/// A pull request the stand-in knows; listed while open.
#[derive(Debug, Clone)]
pub struct FakePull {
    pub repo: String,
    pub number: u64,
    pub branch: String,
    pub sha: String,
    pub draft: bool,
    pub open: bool,
}

/// An answer given instead of the real one (to fail a call on purpose).
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Canned {
    pub fn status(status: u16) -> Canned {
        Canned {
            status,
            headers: Vec::new(),
            body: json!({"message": format!("canned {status}")}),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

#[derive(Debug, Clone)]
pub struct FakeDeployment {
    pub id: u64,
    pub repo: String,
    pub sha: String,
    pub environment: String,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct FakeStatus {
    pub deployment: u64,
    pub state: String,
    pub description: String,
    pub environment_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FakeComment {
    pub id: u64,
    pub repo: String,
    pub issue: u64,
    pub body: String,
    pub edits: usize,
    /// Who wrote it (the token's identity, for comments made through the API).
    pub author: String,
}

/// Whom every token acts as, unless [`FakeGitHub::set_identity`] says otherwise.
pub const DEFAULT_IDENTITY: &str = "sandbox-bot";

#[derive(Default)]
struct Recorded {
    calls: Vec<Call>,
    next_id: u64,
    deployments: Vec<FakeDeployment>,
    statuses: Vec<FakeStatus>,
    comments: Vec<FakeComment>,
    slack: Vec<String>,
    closed: HashSet<(String, u64)>,
    /// (repo, number) → the pull request.
    pulls: BTreeMap<(String, u64), FakePull>,
    /// (method, path) → answers to give first, in order.
    canned: HashMap<(String, String), Vec<Canned>>,
    /// `http://127.0.0.1:PORT`, for Link headers.
    base: String,
    /// The login the token acts as (`GET /user`, and the author of the comments it writes).
    identity: String,
    /// When set, serve must authenticate as this GitHub App (see the block at the end).
    app: Option<FakeApp>,
}

pub struct FakeGitHub {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    state: Arc<Mutex<Recorded>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        FakeGitHub::start_on("127.0.0.1:0").await
    }

    /// Listening on `addr` (e.g. the node's address, for a client in a pod).
    pub async fn start_on(addr: &str) -> FakeGitHub {
        let state: Arc<Mutex<Recorded>> = Arc::default();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        state.lock().unwrap().base = url.clone();
        state.lock().unwrap().identity = DEFAULT_IDENTITY.to_owned();
        let shared = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { handle(&state, method, uri, headers, body) }
            },
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGitHub { url, state, server }
    }

    /// The Slack webhook's URL on this server.
    pub fn slack_url(&self) -> String {
        format!("{}/slack/T000/B000/XXXXSECRETXXXX", self.url)
    }

    /// GitHub says pull request `number` of `repo` is closed from now on.
    pub fn close(&self, repo: &str, number: u64) {
        let mut s = self.state.lock().unwrap();
        s.closed.insert((repo.to_owned(), number));
        if let Some(p) = s.pulls.get_mut(&(repo.to_owned(), number)) {
            p.open = false;
        }
    }

    /// A pull request of `repo` open from now on, from `branch` at `sha` (its state replaced
    /// if known).
    pub fn open_pull(&self, repo: &str, number: u64, branch: &str, sha: &str) {
        let mut s = self.state.lock().unwrap();
        s.closed.remove(&(repo.to_owned(), number));
        s.pulls.insert(
            (repo.to_owned(), number),
            FakePull {
                repo: repo.to_owned(),
                number,
                branch: branch.to_owned(),
                sha: sha.to_owned(),
                draft: false,
                open: true,
            },
        );
    }

    /// Mark a known pull request a draft or ready.
    pub fn set_draft(&self, repo: &str, number: u64, draft: bool) {
        if let Some(p) = self
            .state
            .lock()
            .unwrap()
            .pulls
            .get_mut(&(repo.to_owned(), number))
        {
            p.draft = draft;
        }
    }

    /// Answer the next calls of `method` to `path` with `answers`, in order, instead of the
    /// real answer (the calls are still recorded).
    pub fn fail_next(&self, method: &str, path: &str, answers: Vec<Canned>) {
        self.state
            .lock()
            .unwrap()
            .canned
            .insert((method.to_owned(), path.to_owned()), answers);
    }

    /// A deployment made by someone else (e.g. a chat bot), as GitHub would store it.
    pub fn add_deployment(&self, repo: &str, sha: &str, environment: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = s.next_id;
        s.deployments.push(FakeDeployment {
            id,
            repo: repo.to_owned(),
            sha: sha.to_owned(),
            environment: environment.to_owned(),
            body: json!({"ref": sha, "environment": environment}),
        });
        id
    }

    /// The token acts as `login` from now on.
    pub fn set_identity(&self, login: &str) {
        self.state.lock().unwrap().identity = login.to_owned();
    }

    /// A comment `author` wrote on issue (pull request) `issue` of `repo`; its id.
    pub fn add_comment(&self, repo: &str, issue: u64, author: &str, body: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = s.next_id;
        s.comments.push(FakeComment {
            id,
            repo: repo.to_owned(),
            issue,
            body: body.to_owned(),
            edits: 0,
            author: author.to_owned(),
        });
        id
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn deployments(&self) -> Vec<FakeDeployment> {
        self.state.lock().unwrap().deployments.clone()
    }

    pub fn statuses(&self) -> Vec<FakeStatus> {
        self.state.lock().unwrap().statuses.clone()
    }

    /// The states posted for one deployment, in order.
    pub fn states_of(&self, deployment: u64) -> Vec<String> {
        self.statuses()
            .into_iter()
            .filter(|s| s.deployment == deployment)
            .map(|s| s.state)
            .collect()
    }

    pub fn comments(&self) -> Vec<FakeComment> {
        self.state.lock().unwrap().comments.clone()
    }

    pub fn slack_messages(&self) -> Vec<String> {
        self.state.lock().unwrap().slack.clone()
    }

    /// Everything recorded, for a failure message.
    pub fn dump(&self) -> String {
        let s = self.state.lock().unwrap();
        let mut out = String::new();
        for c in &s.calls {
            out.push_str(&format!(
                "{} {} {:?} {}\n",
                c.method, c.path, c.query, c.body
            ));
        }
        out
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(
    state: &Mutex<Recorded>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    s.calls.push(Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.clone(),
        body: body.clone(),
        authorization: header("authorization"),
        accept: header("accept"),
        user_agent: header("user-agent"),
        if_none_match: header("if-none-match"),
        at: SystemTime::now(),
        status: 0,
    });
    if s.app.is_some() {
        if let Some(response) = app_answer(&mut s, &method, uri.path(), header("authorization")) {
            s.calls.last_mut().unwrap().status = response.status().as_u16();
            return response;
        }
    }
    let key = (method.to_string(), uri.path().to_owned());
    let canned = s
        .canned
        .get_mut(&key)
        .filter(|c| !c.is_empty())
        .map(|c| c.remove(0));
    let response = match canned {
        Some(canned) => {
            let mut response = (
                StatusCode::from_u16(canned.status).unwrap(),
                Json(canned.body),
            )
                .into_response();
            for (k, v) in canned.headers {
                response.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            response
        }
        None => answer(&mut s, &method, &uri, &query, header("if-none-match"), body),
    };
    s.calls.last_mut().unwrap().status = response.status().as_u16();
    response
}

/// A list answer as GitHub gives it: page `page` of `per_page`, with a `Link` to the next page
/// and an `ETag`; 304 when `if_none_match` is that ETag.
fn list(
    base: &str,
    uri: &Uri,
    query: &[(String, String)],
    all: Vec<Value>,
    if_none_match: Option<String>,
) -> Response {
    let param = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
    let per_page: usize = param("per_page").and_then(|v| v.parse().ok()).unwrap_or(30);
    let page: usize = param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let text = Value::Array(items.clone()).to_string();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let etag = format!("W/\"{:016x}\"", hasher.finish());
    if if_none_match.as_deref() == Some(etag.as_str()) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert("etag", etag.parse().unwrap());
        return response;
    }
    let mut response = Json(Value::Array(items)).into_response();
    response.headers_mut().insert("etag", etag.parse().unwrap());
    if page * per_page < all.len() {
        let mut next: Vec<String> = query
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        next.push(format!("page={}", page + 1));
        let link = format!("<{base}{}?{}>; rel=\"next\"", uri.path(), next.join("&"));
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

fn answer(
    s: &mut Recorded,
    method: &Method,
    uri: &Uri,
    query: &[(String, String)],
    if_none_match: Option<String>,
    body: Value,
) -> Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let not_found =
        || (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    if segments.first() == Some(&"slack") {
        s.slack
            .push(body["text"].as_str().unwrap_or_default().to_owned());
        return (StatusCode::OK, "ok").into_response();
    }
    if method == Method::GET && segments.as_slice() == ["user"] {
        return Json(json!({"login": s.identity, "type": "User"})).into_response();
    }
    let ["repos", owner, name, rest @ ..] = segments.as_slice() else {
        return not_found();
    };
    let repo = format!("{owner}/{name}");
    let created = |v: Value| (StatusCode::CREATED, Json(v)).into_response();
    match (method.as_str(), rest) {
        ("POST", ["deployments"]) => {
            s.next_id += 1;
            let id = s.next_id;
            let d = FakeDeployment {
                id,
                repo: repo.clone(),
                sha: body["ref"].as_str().unwrap_or_default().to_owned(),
                environment: body["environment"].as_str().unwrap_or_default().to_owned(),
                body: body.clone(),
            };
            s.deployments.push(d.clone());
            created(json!({
                "id": id, "sha": d.sha, "ref": d.sha, "task": "deploy",
                "environment": d.environment, "url": format!("/repos/{repo}/deployments/{id}"),
            }))
        }
        ("GET", ["deployments"]) => {
            let env = query
                .iter()
                .find(|(k, _)| k == "environment")
                .map(|(_, v)| v.clone());
            let all: Vec<Value> = s
                .deployments
                .iter()
                .rev()
                .filter(|d| d.repo == repo && env.as_ref().is_none_or(|e| *e == d.environment))
                .map(|d| json!({"id": d.id, "sha": d.sha, "environment": d.environment}))
                .collect();
            list(&s.base, uri, query, all, if_none_match)
        }
        ("GET", ["deployments", id, "statuses"]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let all: Vec<Value> = s
                .statuses
                .iter()
                .rev()
                .filter(|st| st.deployment == id)
                .map(|st| json!({"state": st.state, "description": st.description}))
                .collect();
            list(&s.base, uri, query, all, if_none_match)
        }
        ("GET", ["pulls"]) => {
            let all: Vec<Value> = s
                .pulls
                .values()
                .rev()
                .filter(|p| p.repo == repo && p.open)
                .map(|p| {
                    json!({
                        "number": p.number, "state": "open", "draft": p.draft,
                        "head": {"ref": p.branch, "sha": p.sha, "repo": {"full_name": p.repo}},
                        "base": {"ref": "main", "repo": {"full_name": p.repo}},
                        "user": {"login": "octocat"},
                    })
                })
                .collect();
            list(&s.base, uri, query, all, if_none_match)
        }
        ("POST", ["deployments", id, "statuses"]) => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            if !s.deployments.iter().any(|d| d.id == id && d.repo == repo) {
                return not_found();
            }
            let state_ = body["state"].as_str().unwrap_or_default().to_owned();
            let description = body["description"].as_str().unwrap_or_default().to_owned();
            if description.chars().count() > 140 {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({"message": "Validation Failed: description is too long (maximum is 140 characters)"})),
                )
                    .into_response();
            }
            s.statuses.push(FakeStatus {
                deployment: id,
                state: state_.clone(),
                description,
                environment_url: body["environment_url"].as_str().map(str::to_owned),
            });
            created(json!({"id": s.statuses.len(), "state": state_}))
        }
        ("GET", ["pulls", number]) => {
            let Ok(number) = number.parse::<u64>() else {
                return not_found();
            };
            let closed = s.closed.contains(&(repo.clone(), number))
                || s.pulls
                    .get(&(repo.clone(), number))
                    .is_some_and(|p| !p.open);
            Json(json!({
                "number": number,
                "state": if closed { "closed" } else { "open" },
                "merged": false,
            }))
            .into_response()
        }
        ("GET", ["issues", number, "comments"]) => {
            let number: u64 = number.parse().unwrap_or(0);
            let list: Vec<Value> = s
                .comments
                .iter()
                .filter(|c| c.repo == repo && c.issue == number)
                .map(|c| json!({"id": c.id, "body": c.body, "user": {"login": c.author}}))
                .collect();
            Json(Value::Array(list)).into_response()
        }
        ("POST", ["issues", number, "comments"]) => {
            s.next_id += 1;
            let id = s.next_id;
            s.comments.push(FakeComment {
                id,
                repo,
                issue: number.parse().unwrap_or(0),
                body: body["body"].as_str().unwrap_or_default().to_owned(),
                edits: 0,
                author: s.identity.clone(),
            });
            created(json!({"id": id}))
        }
        ("PATCH", ["issues", "comments", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let Some(c) = s.comments.iter_mut().find(|c| c.id == id && c.repo == repo) else {
                return not_found();
            };
            c.body = body["body"].as_str().unwrap_or_default().to_owned();
            c.edits += 1;
            Json(json!({"id": id})).into_response()
        }
        _ => not_found(),
    }
}

// --- A GitHub App (issue 26) ----------------------------------------------------------------
// With `enable_app`, the stand-in answers the app endpoints as GitHub does: the JWT's RS256
// signature is checked with the app's public key (and its `iss`, `iat`, `exp`), installation
// tokens are issued with a short expiry, and every other call must carry a live one.

/// The app serve must authenticate as.
struct FakeApp {
    app_id: String,
    /// PKCS#1 `RSAPublicKey` DER (`openssl rsa -RSAPublicKey_out -outform DER`).
    public_key: Vec<u8>,
    lifetime: std::time::Duration,
    installation: u64,
    /// Every token issued, with its expiry.
    issued: Vec<(String, SystemTime)>,
}

/// The installation id the stand-in's app has on every repository.
pub const APP_INSTALLATION: u64 = 77;

impl FakeGitHub {
    /// From now on, only GitHub App `app_id` (its key's public half, `public_key`) gets in;
    /// installation tokens expire after `lifetime`.
    pub fn enable_app(&self, app_id: &str, public_key: Vec<u8>, lifetime: std::time::Duration) {
        self.state.lock().unwrap().app = Some(FakeApp {
            app_id: app_id.to_owned(),
            public_key,
            lifetime,
            installation: APP_INSTALLATION,
            issued: Vec::new(),
        });
    }

    /// The installation tokens issued so far, oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.app
            .iter()
            .flat_map(|a| a.issued.iter().map(|(t, _)| t.clone()))
            .collect()
    }
}

/// The app endpoints' answers; for any other call, a 401 unless it carries a live installation
/// token (None: answer it as usual).
fn app_answer(
    s: &mut Recorded,
    method: &Method,
    path: &str,
    authorization: Option<String>,
) -> Option<Response> {
    let app = s.app.as_mut().expect("app mode");
    let bearer = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let unauthorized =
        |why: &str| (StatusCode::UNAUTHORIZED, Json(json!({"message": why}))).into_response();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let as_app = segments.first() == Some(&"app")
        || matches!(segments.as_slice(), ["repos", _, _, "installation"]);
    if !as_app {
        let now = SystemTime::now();
        let live = app
            .issued
            .iter()
            .any(|(t, expires)| *t == bearer && *expires > now);
        return (!live).then(|| unauthorized("Bad credentials: not a live installation token"));
    }
    if let Err(why) = check_jwt(&bearer, &app.app_id, &app.public_key) {
        return Some(unauthorized(&format!(
            "A JSON web token could not be decoded: {why}"
        )));
    }
    let created = |v: Value| (StatusCode::CREATED, Json(v)).into_response();
    Some(match (method.as_str(), segments.as_slice()) {
        ("GET", ["repos", _, _, "installation"]) => {
            Json(json!({"id": app.installation, "app_id": app.app_id})).into_response()
        }
        ("POST", ["app", "installations", id, "access_tokens"])
            if *id == app.installation.to_string() =>
        {
            let token = format!("ghs_fake{:04}", app.issued.len() + 1);
            let expires = SystemTime::now() + app.lifetime;
            let seconds = expires
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            app.issued.push((token.clone(), expires));
            let expires_at = jiff::Timestamp::from_second(seconds as i64)
                .unwrap()
                .to_string();
            created(json!({"token": token, "expires_at": expires_at}))
        }
        _ => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    })
}

/// A JWT signed RS256 by the app's key, issued by `app_id`, valid now and for at most 10 min.
fn check_jwt(jwt: &str, app_id: &str, public_key: &[u8]) -> Result<(), String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("not three parts".into());
    };
    let signature = b64.decode(signature).map_err(|e| e.to_string())?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(format!("{header}.{claims}").as_bytes(), &signature)
    .map_err(|_| "the signature is not the app key's".to_owned())?;
    let header: Value = serde_json::from_slice(&b64.decode(header).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&b64.decode(claims).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(i64::MAX),
        claims["exp"].as_i64().unwrap_or(0),
    );
    let iss = claims["iss"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| claims["iss"].to_string());
    if iss != app_id {
        return Err(format!("iss {iss} is not the app"));
    }
    if iat > now + 1 || exp <= now || exp - iat > 600 {
        return Err(format!("iat {iat} / exp {exp} do not hold now ({now})"));
    }
    Ok(())
}

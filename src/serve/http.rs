//! The HTTP side: `POST /webhook` (also `/`) for GitHub's deliveries and `GET /healthz`.
//!
//! A delivery is checked in this order, and nothing runs unless every check passes: the size
//! (413), the signature (401), the content type (415), the event header (400), the delivery id
//! (400 when missing or malformed; a repeat is acknowledged and ignored), the JSON (400). Then
//! its work is recorded in the cluster ([`super::previews`]) and only then acknowledged (202, or
//! 200 when it changes nothing; 503 when it could not be recorded, so GitHub's redelivery
//! counts); the work itself never runs inside the request.
//!
//! The server itself ([`serve_http`]) bounds what a client can hold: the time to send request
//! headers, the time for a whole request, and the number of open connections.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service as _;

use super::desired::{Accepted, Delivered};
use super::event::{self, Incoming};
use super::github::valid_repo;
use super::log::log;
use super::metrics;
use super::previews::Intake;
use super::queue::{PrRef, Work};
use super::scope::Scope;
use super::signature;

/// Delivery ids remembered, to ignore GitHub's retries and redeliveries of the same event.
const REMEMBERED_DELIVERIES: usize = 4096;

/// The longest delivery id taken (GitHub's are 36-character GUIDs): the remembered ids are
/// bounded in number, and this bounds their size.
const MAX_DELIVERY_ID_LEN: usize = 128;

/// What a client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Open connections at most; at the cap the server stops accepting, so further clients wait
    /// in the kernel's backlog instead of costing memory and tasks here.
    pub(crate) max_connections: usize,
    /// From the connection (or the previous request) to the end of the request headers: a client
    /// that trickles headers byte by byte (slowloris) is cut off.
    pub(crate) header_read_timeout: Duration,
    /// From the headers to the answer, body included: a body trickled just under the size limit
    /// is cut off too (408).
    pub(crate) request_timeout: Duration,
}

impl Limits {
    pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
}

/// Serve `router` on `listener` within `limits` until `shutdown` resolves; then stop accepting
/// and wait for the requests in flight.
pub(crate) async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore stays open"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. out of file descriptors: wait a little rather than spin.
                    log!(Warn, "http.accept_failed", error = e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request| {
            // What `ConnectInfo` reads, as `into_make_service_with_connect_info` would insert.
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                let answered = tokio::time::timeout(limits.request_timeout, router.call(request));
                Ok::<_, std::convert::Infallible>(match answered.await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => answer(
                        StatusCode::REQUEST_TIMEOUT,
                        json!({ "error": "the request took too long to arrive" }),
                    ),
                })
            }
        });
        let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The most recent delivery ids, bounded: the oldest are forgotten first.
#[derive(Debug)]
pub(crate) struct Deliveries {
    order: VecDeque<String>,
    seen: HashSet<String>,
    capacity: usize,
}

impl Deliveries {
    pub(crate) fn new(capacity: usize) -> Deliveries {
        Deliveries {
            order: VecDeque::new(),
            seen: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remember `id`; false if it was already remembered.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }

    /// Remember a delivery's `id` and body `digest`; false (and nothing remembered) if either
    /// was remembered already.
    pub(crate) fn insert_both(&mut self, id: &str, digest: &str) -> bool {
        if self.seen.contains(id) || self.seen.contains(digest) {
            return false;
        }
        self.insert(id) && self.insert(digest)
    }

    /// Forget `id` (its delivery was refused, so a redelivery must be processed).
    pub(crate) fn forget(&mut self, id: &str) {
        if self.seen.remove(id) {
            self.order.retain(|x| x != id);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

pub(crate) struct AppState {
    pub(crate) secret: Vec<u8>,
    pub(crate) previews: Arc<dyn Intake>,
    pub(crate) deliveries: Mutex<Deliveries>,
    pub(crate) max_body_bytes: usize,
    /// Which repositories, drafts and environments are acted on.
    pub(crate) scope: Scope,
}

impl AppState {
    pub(crate) fn new(
        secret: Vec<u8>,
        previews: Arc<dyn Intake>,
        max_body_bytes: usize,
        scope: Scope,
    ) -> AppState {
        AppState {
            secret,
            previews,
            deliveries: Mutex::new(Deliveries::new(REMEMBERED_DELIVERIES)),
            max_body_bytes,
            scope,
        }
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/webhook", post(webhook))
        .route("/", post(webhook))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({ "status": "ok", "busy_sandboxes": state.previews.busy() })).into_response()
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// One delivery, as its headers name it: what every log line and answer about it says.
struct Delivery {
    id: String,
    event: String,
    peer: SocketAddr,
    /// `sha256:` and the hex SHA-256 of the body, once it is read: what a replay under a
    /// fresh id is recognised by (the id is not signed, the body is).
    digest: String,
}

impl Delivery {
    /// The delivery as its headers name it (its body not read yet).
    fn of(headers: &HeaderMap, peer: SocketAddr) -> Delivery {
        Delivery {
            id: header_str(headers, "x-github-delivery")
                .unwrap_or("")
                .to_owned(),
            event: header_str(headers, "x-github-event")
                .unwrap_or("")
                .to_owned(),
            peer,
            digest: String::new(),
        }
    }

    /// Refuse it: 4xx/5xx, logged as a warning.
    fn refuse(&self, status: StatusCode, reason: String) -> Response {
        metrics::delivery(if status == StatusCode::UNAUTHORIZED {
            "bad_signature"
        } else {
            "refused"
        });
        log!(
            Warn,
            "webhook.refused",
            status = status.as_u16(),
            reason = reason,
            peer = self.peer,
            delivery = self.id,
            github_event = self.event
        );
        answer(status, json!({ "error": reason }))
    }

    /// Acknowledge it without doing anything.
    fn ignore(&self, reason: String) -> Response {
        metrics::delivery("ignored");
        log!(
            Info,
            "webhook.ignored",
            delivery = self.id,
            github_event = self.event,
            reason = reason
        );
        answer(
            StatusCode::OK,
            json!({ "status": "ignored", "reason": reason }),
        )
    }
}

/// The webhook: check the request, drop duplicates, parse the event, queue its work. Every
/// answer but 2xx for a well-formed event lets GitHub (or a person) redeliver.
async fn webhook(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Every line about this delivery carries its id, and its pull request once it is parsed.
    let span = tracing::error_span!(
        "webhook",
        delivery = header_str(&headers, "x-github-delivery").unwrap_or(""),
        repo = tracing::field::Empty,
        pr = tracing::field::Empty,
        branch = tracing::field::Empty,
    );
    let _entered = span.enter();
    let delivery = Delivery::of(&headers, peer);
    let body = match checked_body(&state, &delivery, &headers, body) {
        Ok(body) => body,
        Err((status, reason)) => return delivery.refuse(status, reason),
    };
    let delivery = Delivery {
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&body))),
        ..delivery
    };
    if let Some(duplicate) = taken_before(&state, &delivery) {
        return duplicate;
    }
    // A delivery that is refused from here on may be sent again and must then be taken.
    let forget = || {
        let mut deliveries = state.deliveries.lock().expect("not poisoned");
        deliveries.forget(&delivery.id);
        deliveries.forget(&delivery.digest);
    };
    match work_of(&state.scope, &delivery, &body) {
        Next::Queue(work, updated_at) => {
            let delivered = Delivered {
                id: delivery.id.clone(),
                digest: delivery.digest.clone(),
                updated_at,
            };
            queue(&state, &delivery, work, &delivered, forget).await
        }
        Next::Answered(response) => response,
        Next::Refused(status, reason) => {
            forget();
            delivery.refuse(status, reason)
        }
    }
}

/// The answer to a delivery this replica took before (by its id or its body's digest), else
/// `None`, and it is remembered as taken. Checked and remembered in one step, so two copies
/// arriving at once are not both taken; the body's digest too, so that a body replayed under a
/// fresh id is not taken either.
fn taken_before(state: &AppState, delivery: &Delivery) -> Option<Response> {
    let first = state
        .deliveries
        .lock()
        .expect("not poisoned")
        .insert_both(&delivery.id, &delivery.digest);
    if first {
        return None;
    }
    metrics::delivery("duplicate");
    log!(
        Info,
        "webhook.duplicate",
        delivery = delivery.id,
        github_event = delivery.event
    );
    Some(answer(
        StatusCode::OK,
        json!({ "status": "duplicate delivery, ignored", "delivery": delivery.id }),
    ))
}

/// Why a request is refused: the status and the reason given.
type Refusal = (StatusCode, String);

/// The body, once size, signature, content type and event header are right.
fn checked_body(
    state: &AppState,
    delivery: &Delivery,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Refusal> {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", state.max_body_bytes),
            ))
        }
        Err(rejection) => return Err((rejection.status(), rejection.body_text())),
    };
    let signature = headers.get(signature::HEADER).map(|v| v.as_bytes());
    if let Err(e) = signature::verify(&state.secret, &body, signature) {
        return Err((StatusCode::UNAUTHORIZED, e.to_string()));
    }
    let content_type = header_str(headers, "content-type").unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type `{content_type}`: set the webhook's content type to application/json"
            ),
        ));
    }
    if delivery.event.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "no X-GitHub-Event header".into()));
    }
    // Refused rather than taken without deduplication: GitHub sends an id with every delivery,
    // and a signed request without one is a hand-made replay that would run the work again.
    if !valid_delivery_id(&delivery.id) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "no valid X-GitHub-Delivery header (letters, digits and `-`, at most {MAX_DELIVERY_ID_LEN}): it is what repeated deliveries are recognised by"
            ),
        ));
    }
    Ok(body)
}

fn valid_delivery_id(id: &str) -> bool {
    (1..=MAX_DELIVERY_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// What an event asks for.
enum Next {
    /// Work to queue, and the pull request's `updated_at` in the body (orders replays).
    Queue(Work, Option<String>),
    /// Answered without work: a ping, or an event that changes nothing.
    Answered(Response),
    /// Malformed: refused, and the delivery forgotten so that a fixed one is taken.
    Refused(StatusCode, String),
}

fn work_of(scope: &Scope, delivery: &Delivery, body: &[u8]) -> Next {
    let incoming = match event::parse(&delivery.event, body) {
        Ok(incoming) => incoming,
        Err(e) => {
            let reason = format!("{:#}", anyhow::Error::from(e));
            return Next::Refused(StatusCode::BAD_REQUEST, reason);
        }
    };
    let pr = match incoming {
        Incoming::Ping { zen } => {
            let zen = zen.as_deref().unwrap_or("");
            log!(Info, "webhook.ping", delivery = delivery.id, zen = zen);
            metrics::delivery("ping");
            return Next::Answered(answer(StatusCode::OK, json!({ "status": "pong" })));
        }
        Incoming::Other { event } => {
            return Next::Answered(delivery.ignore(format!("event `{event}` is not handled")))
        }
        Incoming::Deployment(deployment) => {
            return match scope.deployment(&deployment) {
                Ok(work) => Next::Queue(work, None),
                Err(reason) => Next::Answered(delivery.ignore(reason)),
            }
        }
        Incoming::PullRequest(pr) => pr,
    };
    if !valid_repo(&pr.repo) {
        let reason = format!("`{}` is not an owner/name repository", pr.repo);
        return Next::Refused(StatusCode::BAD_REQUEST, reason);
    }
    let action = match scope.pull_request(&pr) {
        Ok(action) => action,
        Err(reason) => return Next::Answered(delivery.ignore(reason)),
    };
    if pr.is_from_fork() {
        return Next::Answered(delivery.ignore(format!(
            "the head branch is in {}, not in {}: previews are built from the product's own repositories",
            pr.head_repo.as_deref().unwrap_or("a deleted fork"),
            pr.repo
        )));
    }
    let span = tracing::Span::current();
    span.record("repo", pr.repo.as_str());
    span.record("pr", pr.number);
    span.record("branch", pr.head_ref.as_str());
    log!(
        Info,
        "webhook.accepted",
        delivery = delivery.id,
        action = pr.action,
        pr = format!("{}#{}", pr.repo, pr.number),
        branch = pr.head_ref,
        sha = pr.head_sha,
    );
    let updated_at = pr.updated_at.clone();
    let work = Work {
        branch: pr.head_ref,
        action,
        prs: vec![PrRef {
            repo: pr.repo,
            number: pr.number,
            sha: pr.head_sha,
            author: pr.author,
            deployment: None,
            delivery: delivery.id.clone(),
        }],
    };
    Next::Queue(work, updated_at)
}

/// Record the work and say so: 202 once it is recorded, 200 when it changes nothing, 503 with
/// Retry-After when it could not be recorded (the cluster did not answer).
async fn queue(
    state: &AppState,
    delivery: &Delivery,
    work: Work,
    delivered: &Delivered,
    forget: impl Fn(),
) -> Response {
    let (branch, action) = (work.branch.clone(), work.action);
    let sha = work.prs.first().map(|p| p.sha.clone()).unwrap_or_default();
    let submitted = match state.previews.submit(work, Some(delivered)).await {
        Ok(submitted) => submitted,
        Err(e) => {
            forget();
            metrics::delivery("unavailable");
            log!(
                Error,
                "webhook.unrecorded",
                delivery = delivery.id,
                branch = branch,
                error = format!("{e:#}")
            );
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": "the delivery could not be recorded; redeliver later" }),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
            return response;
        }
    };
    log!(
        Info,
        "webhook.recorded",
        delivery = delivery.id,
        branch = branch,
        outcome = format!("{:?}", submitted.accepted),
    );
    metrics::delivery(match submitted.accepted {
        Accepted::Duplicate => "duplicate",
        Accepted::Stale { .. } => "ignored",
        _ => "accepted",
    });
    recorded(delivery, submitted.accepted, &branch, action, &sha)
}

/// The answer to a delivery whose work the state took as `accepted`.
fn recorded(
    delivery: &Delivery,
    accepted: Accepted,
    branch: &str,
    action: super::queue::Action,
    sha: &str,
) -> Response {
    match accepted {
        Accepted::Duplicate => {
            log!(
                Info,
                "webhook.duplicate",
                delivery = delivery.id,
                github_event = delivery.event
            );
            answer(
                StatusCode::OK,
                json!({ "status": "duplicate delivery, ignored", "delivery": delivery.id }),
            )
        }
        Accepted::Unchanged => answer(StatusCode::OK, json!({ "status": "unchanged" })),
        Accepted::Stale { newer } => {
            let reason = format!(
                "the pull request changed since this event (at {newer}): a replayed or overtaken delivery changes nothing"
            );
            log!(
                Warn,
                "webhook.stale",
                delivery = delivery.id,
                branch = branch,
                reason = reason
            );
            answer(
                StatusCode::OK,
                json!({ "status": "stale", "reason": reason }),
            )
        }
        Accepted::Kept { by } => {
            let others: Vec<String> = by
                .iter()
                .map(|p| format!("{}#{}", p.repo, p.number))
                .collect();
            answer(
                StatusCode::ACCEPTED,
                json!({
                    "status": "kept",
                    "branch": branch,
                    "reason": format!("the sandbox is still used by {}", others.join(" ")),
                }),
            )
        }
        Accepted::Pending {
            generation,
            superseding,
        } => answer(
            StatusCode::ACCEPTED,
            json!({
                "status": "queued",
                "action": action.to_string(),
                "branch": branch,
                "sha": sha,
                "generation": generation,
                "superseding": superseding,
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_remembered_boundedly() {
        let mut d = Deliveries::new(3);
        assert!(d.insert("a"));
        assert!(!d.insert("a"));
        assert!(d.insert("b"));
        assert!(d.insert("c"));
        assert!(d.insert("d")); // forgets a
        assert_eq!(d.len(), 3);
        assert!(d.insert("a"), "the oldest id was forgotten");
        assert!(!d.insert("d"));
        d.forget("d");
        assert!(d.insert("d"));
    }
}

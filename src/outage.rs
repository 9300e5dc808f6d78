//! Riding out a short outage of the API server (a restart, a network blip) instead of failing a
//! half-done `up`.
//!
//! [`Retrying`] sits in front of every request the tool makes. A request is sent again, with
//! backoff, when the connection failed:
//! - whatever the request, if the connection could not even be made: nothing reached the
//!   server, so nothing can happen twice;
//! - for reads and patches (GET, server-side apply, merge patch) also when the connection broke
//!   after the request was sent: sending them twice has the effect of sending them once.
//!
//! A create, replace or delete whose connection broke after it was sent may have taken effect,
//! so it is not repeated; its caller sees the error. Retrying stops after [`RETRY_FOR`] with
//! [`ApiUnreachable`], which names the server. Nothing is retried before the server has answered
//! once, so a wrong kubeconfig still fails in seconds.
//!
//! Watches are long requests whose body breaks in the middle of an outage: [`ride_out`] keeps a
//! watch stream going through such breaks (the watcher re-lists by itself; its requests wait
//! here for the server).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::StreamExt;
use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::watcher;
use tokio::sync::watch;
use tower::BoxError;

use crate::error::Hint;

/// How long a request (or a watch) waits for an unreachable API server before giving up. Long
/// enough for an API server restart; short enough that a cluster that is gone fails the run.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Short: the lock's renewal also waits here, and must get through soon after the server is back.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The API server did not answer for [`RETRY_FOR`].
#[derive(Debug, thiserror::Error)]
#[error("the Kubernetes API server at {server} did not answer for {}s", after.as_secs())]
pub(crate) struct ApiUnreachable {
    pub(crate) server: String,
    pub(crate) after: Duration,
    /// The context in use is the local development cluster's (`scripts/local-cluster`).
    pub(crate) local_dev: bool,
    #[source]
    pub(crate) source: kube::Error,
}

impl Hint for ApiUnreachable {
    fn hint(&self) -> Option<String> {
        let check = if self.local_dev {
            "check that the local cluster runs (`scripts/local-cluster status`)"
        } else {
            "check that the cluster runs and is reachable from here (your VPN or proxy; `kubectl cluster-info` tries the same connection)"
        };
        Some(format!("{check}, then run the command again: `sandbox up` picks up where an interrupted run stopped"))
    }
}

/// An outage in progress, as the process sees it.
#[derive(Debug, Clone)]
pub(crate) struct Outage {
    pub(crate) server: String,
    pub(crate) since: Instant,
    /// The first error, for the message.
    pub(crate) error: String,
}

/// Whether the API server is unreachable right now. One per process: the CLI and `serve` talk to
/// one cluster, and whoever reports progress (`up`) subscribes without the cluster connection
/// having to carry a reporter.
static HEALTH: LazyLock<watch::Sender<Option<Outage>>> = LazyLock::new(|| watch::Sender::new(None));

/// Changes of [`Outage`]: `Some` when requests start failing, `None` once one gets through.
pub(crate) fn outages() -> watch::Receiver<Option<Outage>> {
    HEALTH.subscribe()
}

/// The retrying service in front of a client (see the module's documentation).
#[derive(Clone)]
pub(crate) struct Retrying {
    inner: kube::Client,
    server: String,
    /// For the hint: the local development cluster.
    local_dev: bool,
    /// Set by the first answer: before it, an error means "wrong address", not "outage".
    answered: Arc<AtomicBool>,
}

impl Retrying {
    pub(crate) fn new(inner: kube::Client, server: String, local_dev: bool) -> Retrying {
        Retrying {
            inner,
            server,
            local_dev,
            answered: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn send(self, request: Request<Body>) -> Result<Response<Body>, BoxError> {
        let Some(mut copy) = try_clone(&request) else {
            // A streamed body cannot be sent twice.
            return Ok(self.inner.send(request).await?);
        };
        let repeatable = repeatable(&request);
        let streaming = streaming(&request);
        let mut backoff = FIRST_BACKOFF;
        let mut failing_since: Option<Instant> = None;
        let mut next = request;
        loop {
            let sent = self.inner.send(next).await;
            // A connection reset while the answer's body is read is the same broken connection
            // as one before it: the body is read here, where the request can still be sent
            // again (not a watch's or a followed log's, which stream as long as they last).
            let answered = match sent {
                Ok(response) if !streaming => {
                    let (parts, body) = response.into_parts();
                    body.collect_bytes()
                        .await
                        .map(|bytes| Response::from_parts(parts, Body::from(bytes)))
                }
                other => other,
            };
            match answered {
                Ok(response) => {
                    self.answered.store(true, Ordering::Relaxed);
                    if failing_since.is_some() || HEALTH.borrow().is_some() {
                        HEALTH.send_if_modified(|h| h.take().is_some());
                    }
                    return Ok(response);
                }
                Err(error) => {
                    let retry = self.answered.load(Ordering::Relaxed)
                        && match connection_failure(&error) {
                            Some(Sent::Never) => true,
                            Some(Sent::Maybe) => repeatable,
                            None => false,
                        };
                    if !retry {
                        return Err(error.into());
                    }
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    HEALTH.send_if_modified(|h| {
                        h.is_none()
                            .then(|| {
                                *h = Some(Outage {
                                    server: self.server.clone(),
                                    since,
                                    error: error.to_string(),
                                })
                            })
                            .is_some()
                    });
                    if since.elapsed() >= RETRY_FOR {
                        return Err(Box::new(ApiUnreachable {
                            server: self.server.clone(),
                            after: since.elapsed(),
                            local_dev: self.local_dev,
                            source: error,
                        }));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    next = copy;
                    copy = try_clone(&next).expect("a body cloned once clones again");
                }
            }
        }
    }
}

impl tower::Service<Request<Body>> for Retrying {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner client buffers; it is always ready to take a request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

fn try_clone(request: &Request<Body>) -> Option<Request<Body>> {
    let mut copy = Request::new(request.body().try_clone()?);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// Whether sending the request twice has the effect of sending it once: reads, and patches
/// (a server-side apply or merge patch sets fields to values; it does not add to them). JSON
/// patches can add to lists, so they are not.
/// Whether the answer is a stream that lasts (a watch, a followed log), not a document.
fn streaming(request: &Request<Body>) -> bool {
    request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| matches!(p, "watch=true" | "watch=1" | "follow=true" | "follow=1"))
    })
}

fn repeatable(request: &Request<Body>) -> bool {
    match *request.method() {
        Method::GET | Method::HEAD => true,
        Method::PATCH => request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.starts_with("application/apply-patch")
                    || t.starts_with("application/merge-patch")
                    || t.starts_with("application/strategic-merge-patch")
            }),
        _ => false,
    }
}

/// How far a failed request got.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// The connection was never made.
    Never,
    /// The connection broke; the server may have acted on the request.
    Maybe,
}

/// What a failed request's error says about the connection; `None` when it is no connection
/// failure (an authentication plugin that failed, a malformed request).
fn connection_failure(error: &kube::Error) -> Option<Sent> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut broken = false;
    while let Some(e) = cause {
        if let Some(client) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            if client.is_connect() {
                return Some(Sent::Never);
            }
            broken = true;
        }
        if e.is::<hyper::Error>() || e.is::<std::io::Error>() {
            broken = true;
        }
        cause = e.source();
    }
    broken.then_some(Sent::Maybe)
}

/// `kube::runtime::wait::await_condition`, riding out an outage as [`ride_out`] does: waits
/// until object `name` of `api` matches `condition` (`None`: it does not exist), and fails only
/// on an error that is not about the connection, or on errors that last [`RETRY_FOR`].
pub(crate) async fn await_condition<K>(
    api: kube::Api<K>,
    name: &str,
    condition: impl kube::runtime::wait::Condition<K>,
) -> Result<Option<K>, watcher::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let objects = ride_out(watcher::watch_object(api, name));
    futures::pin_mut!(objects);
    while let Some(object) = objects.next().await {
        let object = object?;
        if condition.matches_object(object.as_ref()) {
            return Ok(object);
        }
    }
    // A watcher's stream does not end; if it ever did, what it last saw is unknown.
    std::future::pending().await
}

/// A watch stream that keeps going through an outage. After an error the watcher re-lists by
/// itself on the next poll; an error is only passed on when it is not about the connection
/// (the server refused the watch), or when errors have kept coming for [`RETRY_FOR`].
pub(crate) fn ride_out<T, S>(stream: S) -> impl Stream<Item = Result<T, watcher::Error>> + Send
where
    S: Stream<Item = Result<T, watcher::Error>> + Send,
    T: Send,
{
    let mut failing_since: Option<Instant> = None;
    stream.filter_map(move |item| {
        let verdict = match item {
            Ok(value) => {
                failing_since = None;
                Ok(Some(Ok(value)))
            }
            Err(error) if transient(&error) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RETRY_FOR {
                    Ok(Some(Err(error)))
                } else {
                    // Pause before the watcher's next attempt: its requests wait for the
                    // server anyway, but a watch the server keeps ending must not spin.
                    Err(FIRST_BACKOFF)
                }
            }
            Err(error) => Ok(Some(Err(error))),
        };
        async move {
            match verdict {
                Ok(item) => item,
                Err(pause) => {
                    tokio::time::sleep(pause).await;
                    None
                }
            }
        }
    })
}

/// Errors of a watch that an outage causes: a broken connection, or a watch the server ended
/// because its history moved on (410 Gone, after which the watcher re-lists).
fn transient(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => !matches!(e, kube::Error::Api(_)),
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::NoResourceVersion => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_and_followed_logs_stream_everything_else_is_read_whole() {
        let request = |uri: &str| Request::get(uri).body(Body::from(Vec::new())).unwrap();
        assert!(streaming(&request(
            "/api/v1/namespaces?watch=true&resourceVersion=1"
        )));
        assert!(streaming(&request(
            "/api/v1/namespaces/x/pods/p/log?container=c&follow=true"
        )));
        assert!(!streaming(&request(
            "/api/v1/namespaces/x/pods/p/log?container=c"
        )));
        assert!(!streaming(&request(
            "/apis/apps/v1/namespaces/x/deployments/db?fieldManager=sandbox"
        )));
    }

    fn request(method: Method, content_type: Option<&str>) -> Request<Body> {
        let mut r = Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/x");
        if let Some(t) = content_type {
            r = r.header(http::header::CONTENT_TYPE, t);
        }
        r.body(Body::from(b"{}".to_vec())).unwrap()
    }

    #[test]
    fn only_reads_and_patches_that_set_values_are_sent_twice_after_a_broken_connection() {
        assert!(repeatable(&request(Method::GET, None)));
        assert!(repeatable(&request(
            Method::PATCH,
            Some("application/apply-patch+yaml")
        )));
        assert!(repeatable(&request(
            Method::PATCH,
            Some("application/merge-patch+json")
        )));
        assert!(!repeatable(&request(
            Method::PATCH,
            Some("application/json-patch+json")
        )));
        assert!(!repeatable(&request(Method::POST, None)));
        assert!(!repeatable(&request(Method::PUT, None)));
        assert!(!repeatable(&request(Method::DELETE, None)));
    }

    #[test]
    fn a_copy_of_a_request_is_the_same_request() {
        let original = request(Method::PATCH, Some("application/apply-patch+yaml"));
        let copy = try_clone(&original).unwrap();
        assert_eq!(copy.method(), original.method());
        assert_eq!(copy.uri(), original.uri());
        assert_eq!(copy.headers(), original.headers());
    }

    #[test]
    fn a_refused_watch_is_an_error_at_once_and_a_broken_one_is_ridden_out() {
        let status = |code| {
            Box::new(kube::core::Status {
                code,
                ..Default::default()
            })
        };
        assert!(transient(&watcher::Error::WatchError(status(410))));
        assert!(!transient(&watcher::Error::WatchError(status(403))));
        let refused = kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            ..Default::default()
        }));
        assert!(!transient(&watcher::Error::InitialListFailed(refused)));
        let broken = kube::Error::Service(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(transient(&watcher::Error::WatchFailed(broken)));
    }

    #[test]
    fn an_io_error_is_a_broken_connection_and_an_api_error_is_none() {
        let broken = kube::Error::Service(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(connection_failure(&broken), Some(Sent::Maybe));
        let refused = kube::Error::Api(Box::new(kube::core::Status {
            code: 409,
            ..Default::default()
        }));
        assert_eq!(connection_failure(&refused), None);
    }

    #[tokio::test]
    async fn a_stream_keeps_going_through_connection_errors_but_not_a_refusal() {
        let broken = || {
            watcher::Error::WatchFailed(kube::Error::Service(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))))
        };
        let refused = watcher::Error::WatchError(Box::new(kube::core::Status {
            code: 403,
            ..Default::default()
        }));
        let items = futures::stream::iter(vec![
            Ok(1),
            Err(broken()),
            Err(broken()),
            Ok(2),
            Err(refused),
        ]);
        let out: Vec<_> = ride_out(items).collect().await;
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(out[0], Ok(1)));
        assert!(matches!(out[1], Ok(2)));
        assert!(matches!(out[2], Err(watcher::Error::WatchError(_))));
    }
}

//! What the service shows people and scrapers: the status page `GET /` (plain server-rendered
//! HTML, no JavaScript), the same as JSON at `GET /api/sandboxes`, and `GET /metrics`.
//!
//! They are served on their own listener (`--status-listen`, loopback by default; in the
//! cluster the pod's port 9090, reached through a cluster-internal Service that a
//! NetworkPolicy opens to the monitoring namespace only), never on the webhook's, which faces
//! GitHub and the internet; with `SANDBOX_STATUS_TOKEN` set, each request must also carry
//! `Authorization: Bearer TOKEN`.
//!
//! The rows come from the sandboxes' records in the cluster (their namespaces' annotations),
//! not from this process's memory: every replica shows the same page, and a restart loses
//! nothing. One listing serves every request for [`LISTING_TTL`] (the requests that arrive
//! while it is made wait for it): a client polling the page cannot turn each GET into a LIST
//! of every namespace.
//!
//! Branch names, errors and URLs are untrusted text (a branch is whatever its pusher named it):
//! every one is HTML-escaped, a URL becomes a link only when it is http(s), and an error is
//! scrubbed of every secret the service knows before it is shown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde::Serialize;

use super::log::{log, scrub};
use super::metrics;
use crate::kube::{connect, Cluster, ClusterOptions};
use crate::record::{self, SandboxRecord};

/// Where the rows come from: the cluster (tests: a fixed list).
pub(crate) trait Sandboxes: Send + Sync + 'static {
    /// Every sandbox of the product.
    fn list(&self) -> BoxFuture<'_, Result<Vec<SandboxRecord>>>;
}

/// The product's sandboxes in the cluster: one LIST of its labelled namespaces per request.
pub(crate) struct ClusterSandboxes {
    pub(crate) cluster: ClusterOptions,
    pub(crate) product: String,
    /// Connected once (discovery is many requests), on first use.
    pub(crate) connected: tokio::sync::OnceCell<Cluster>,
}

impl Sandboxes for ClusterSandboxes {
    fn list(&self) -> BoxFuture<'_, Result<Vec<SandboxRecord>>> {
        Box::pin(async move {
            let cluster = self
                .connected
                .get_or_try_init(|| connect(&self.cluster))
                .await?;
            Ok(record::list(cluster, Some(&self.product)).await?)
        })
    }
}

/// How long one listing of the sandboxes serves the pages.
pub(crate) const LISTING_TTL: Duration = Duration::from_secs(5);

/// `inner`'s listing, made at most once per [`LISTING_TTL`] and shared by every request (those
/// that come while it is made wait for it). A failed listing is not kept.
pub(crate) struct CachedSandboxes {
    pub(crate) inner: Arc<dyn Sandboxes>,
    pub(crate) ttl: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Vec<SandboxRecord>)>>,
}

impl CachedSandboxes {
    pub(crate) fn new(inner: Arc<dyn Sandboxes>, ttl: Duration) -> CachedSandboxes {
        CachedSandboxes {
            inner,
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }
}

impl Sandboxes for CachedSandboxes {
    fn list(&self) -> BoxFuture<'_, Result<Vec<SandboxRecord>>> {
        Box::pin(async move {
            // Held while listing: concurrent requests share the one listing.
            let mut last = self.last.lock().await;
            if let Some((at, records)) = last.as_ref() {
                if at.elapsed() < self.ttl {
                    return Ok(records.clone());
                }
            }
            let records = self.inner.list().await?;
            *last = Some((Instant::now(), records.clone()));
            Ok(records)
        })
    }
}

/// What the pages need.
#[derive(Clone)]
pub(crate) struct StatusPage {
    /// The product's name (`name` in sandbox.yaml).
    pub(crate) product: String,
    /// GitHub's web address (pull requests link there), e.g. https://github.com.
    pub(crate) github_web: String,
    pub(crate) sandboxes: Arc<dyn Sandboxes>,
    /// When set (`SANDBOX_STATUS_TOKEN`), every request must carry it as a bearer token.
    pub(crate) token: Option<String>,
}

/// GitHub's web address for its API's: `https://api.github.com` → `https://github.com`,
/// GitHub Enterprise Server's `https://HOST/api/v3` → `https://HOST`; anything else (a
/// stand-in) is taken as it is.
pub(crate) fn github_web_url(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if let Some(rest) = api.strip_prefix("https://api.github.com") {
        if rest.is_empty() {
            return "https://github.com".into();
        }
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_owned()
}

pub(crate) fn router(page: StatusPage) -> Router {
    let token = page.token.clone();
    Router::new()
        .route("/", get(html_page))
        .route("/api/sandboxes", get(json_page))
        .route("/metrics", get(metrics_page))
        .with_state(page)
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let refused = unauthorized(token.as_deref(), request.headers());
                async move {
                    match refused {
                        Some(refused) => refused,
                        None => next.run(request).await,
                    }
                }
            },
        ))
}

/// The 401 for a request without the status token, when one is required.
fn unauthorized(token: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    use subtle::ConstantTimeEq;
    let token = token?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return None;
    }
    let mut refused = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({
            "error": "the status pages need `Authorization: Bearer TOKEN` (SANDBOX_STATUS_TOKEN)"
        })),
    )
        .into_response();
    refused.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(refused)
}

/// One pull request a sandbox previews.
#[derive(Debug, Serialize)]
struct PrLink {
    repo: String,
    number: u64,
    url: String,
}

/// What one repository was deployed from.
#[derive(Debug, Serialize)]
struct RepoRow {
    repo: String,
    branch: String,
    sha: String,
    /// The branch did not exist there: its default branch was deployed.
    fell_back: bool,
}

/// One sandbox, as both pages show it.
#[derive(Debug, Serialize)]
struct Row {
    namespace: String,
    branch: String,
    /// deploying, ready, failed, deleting (or what a newer version records), unknown.
    status: String,
    url: Option<String>,
    prs: Vec<PrLink>,
    repos: Vec<RepoRow>,
    owner: String,
    created_at: Option<String>,
    updated_at: Option<String>,
    expires_at: Option<String>,
    /// Seconds since it was created.
    age_seconds: Option<i64>,
    /// Seconds until it expires (negative: expired).
    expires_in_seconds: Option<i64>,
    expired: bool,
    /// Why its last `up` failed, scrubbed.
    last_error: Option<String>,
}

fn row(record: SandboxRecord, github_web: &str, now: jiff::Timestamp) -> Row {
    let status = if record.terminating {
        "deleting".to_owned()
    } else {
        record
            .status
            .map_or("unknown".to_owned(), |s| s.as_str().to_owned())
    };
    Row {
        expired: record.expired(now),
        age_seconds: record.created_at.map(|t| now.duration_since(t).as_secs()),
        expires_in_seconds: record.expires_at.map(|t| t.duration_since(now).as_secs()),
        prs: record
            .prs
            .iter()
            .map(|p| PrLink {
                repo: p.repo.clone(),
                number: p.number,
                url: format!("{github_web}/{}/pull/{}", p.repo, p.number),
            })
            .collect(),
        repos: record
            .repos
            .iter()
            .map(|(repo, at)| RepoRow {
                repo: repo.clone(),
                branch: at.branch.clone(),
                sha: at.sha.clone(),
                fell_back: at.fell_back,
            })
            .collect(),
        created_at: record.created_at.map(|t| t.to_string()),
        updated_at: record.updated_at.map(|t| t.to_string()),
        expires_at: record.expires_at.map(|t| t.to_string()),
        last_error: record.last_error.as_deref().map(scrub),
        namespace: record.namespace,
        branch: record.branch,
        status,
        url: record.url,
        owner: record.owner,
    }
}

/// The rows, newest first; or the error, scrubbed, for a 503.
async fn rows(page: &StatusPage) -> Result<Vec<Row>, String> {
    let records = page.sandboxes.list().await.map_err(|e| {
        let error = scrub(&format!("{e:#}"));
        log!(Warn, "status.unavailable", error = error);
        error
    })?;
    let now = jiff::Timestamp::now();
    let mut rows: Vec<Row> = records
        .into_iter()
        .map(|r| row(r, &page.github_web, now))
        .collect();
    rows.sort_by_key(|r| r.age_seconds.unwrap_or(i64::MAX));
    Ok(rows)
}

async fn html_page(State(page): State<StatusPage>) -> Response {
    let now = jiff::Timestamp::now();
    match rows(&page).await {
        Ok(rows) => Html(render_html(&page.product, &rows, now)).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(render_unavailable(&page.product, &error)),
        )
            .into_response(),
    }
}

async fn json_page(State(page): State<StatusPage>) -> Response {
    match rows(&page).await {
        Ok(rows) => {
            Json(serde_json::json!({ "product": page.product, "sandboxes": rows })).into_response()
        }
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response(),
    }
}

async fn metrics_page(State(page): State<StatusPage>) -> Response {
    // The sandboxes by status as the cluster has them now; when it cannot say, the last counts.
    let by_status = rows(&page).await.ok().map(|rows| {
        let mut counts: Vec<(String, i64)> = Vec::new();
        for row in rows {
            match counts.iter_mut().find(|(s, _)| *s == row.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((row.status, 1)),
            }
        }
        counts
    });
    let text = metrics::render(by_status.as_deref());
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// `text` safe inside HTML elements and quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link to `url` when it is http(s) (a `javascript:` URL is shown, never linked).
fn link(url: &str, text: &str, class: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        format!(
            r#"<a class="{class}" href="{}">{}</a>"#,
            escape(url),
            escape(text)
        )
    } else {
        escape(text)
    }
}

/// `3d 4h`, `2h 5m`, `7m`, `40s`.
fn duration_text(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em}\
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
.ready{color:#070}.failed{color:#b00}.error{font-family:monospace;white-space:pre-wrap;max-width:40em}\
code{font-size:.9em}";

fn head(product: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"30\">\n<title>Previews of {}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>Previews of {}</h1>\n",
        escape(product),
        escape(product)
    )
}

fn render_unavailable(product: &str, error: &str) -> String {
    format!(
        "{}<p>The sandboxes cannot be read from the cluster right now:</p>\n\
         <pre class=\"error\">{}</pre>\n</body>\n</html>\n",
        head(product),
        escape(error)
    )
}

/// The whole page.
fn render_html(product: &str, rows: &[Row], now: jiff::Timestamp) -> String {
    let mut out = head(product);
    out.push_str(&format!(
        "<p>{} sandbox(es), as the cluster recorded them at {}.</p>\n",
        rows.len(),
        escape(&format!("{now:.0}"))
    ));
    if rows.is_empty() {
        out.push_str("<p>No sandboxes.</p>\n</body>\n</html>\n");
        return out;
    }
    out.push_str(
        "<table>\n<thead><tr><th>Branch</th><th>Pull requests</th><th>Status</th><th>URL</th>\
         <th>Commits</th><th>Age</th><th>Expires</th><th>Last error</th></tr></thead>\n<tbody>\n",
    );
    for row in rows {
        out.push_str(&render_row(row));
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out
}

fn render_row(row: &Row) -> String {
    let prs: Vec<String> = row
        .prs
        .iter()
        .map(|p| link(&p.url, &format!("{}#{}", p.repo, p.number), "pr"))
        .collect();
    let prs = if prs.is_empty() {
        "— (by hand)".to_owned()
    } else {
        prs.join("<br>")
    };
    let url = row
        .url
        .as_deref()
        .map_or_else(String::new, |u| link(u, u, "url"));
    let commits: Vec<String> = row
        .repos
        .iter()
        .map(|r| {
            let short: String = r.sha.chars().take(7).collect();
            let fell_back = if r.fell_back { " (fallback)" } else { "" };
            format!(
                "{} <code title=\"{}\">{}</code> {}{fell_back}",
                escape(&r.repo),
                escape(&r.sha),
                escape(&short),
                escape(&r.branch)
            )
        })
        .collect();
    let age = row.age_seconds.map_or_else(String::new, duration_text);
    let expires = match (&row.expires_at, row.expires_in_seconds, row.expired) {
        (Some(at), _, true) => format!("<span title=\"{}\">expired</span>", escape(at)),
        (Some(at), Some(left), false) => format!(
            "<span title=\"{}\">in {}</span>",
            escape(at),
            duration_text(left)
        ),
        _ => String::new(),
    };
    let error = row.last_error.as_deref().map_or_else(String::new, |e| {
        format!("<div class=\"error\">{}</div>", escape(e))
    });
    format!(
        "<tr id=\"sandbox-{ns}\" data-namespace=\"{ns}\"><td class=\"branch\">{branch}</td>\
         <td>{prs}</td><td class=\"status {status}\">{status}</td><td>{url}</td><td>{commits}</td>\
         <td>{age}</td><td>{expires}</td><td>{error}</td></tr>\n",
        ns = escape(&row.namespace),
        branch = escape(&row.branch),
        status = escape(&row.status),
        commits = commits.join("<br>"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{PrNumber, RepoAt, Status};
    use tower::ServiceExt;

    const EVIL_BRANCH: &str = "x\"><script>alert(1)</script>&'";

    struct Fixed(Vec<SandboxRecord>);

    impl Sandboxes for Fixed {
        fn list(&self) -> BoxFuture<'_, Result<Vec<SandboxRecord>>> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    fn record(now: jiff::Timestamp) -> SandboxRecord {
        SandboxRecord {
            namespace: "sb-feature-x".into(),
            product: "shop".into(),
            branch: EVIL_BRANCH.into(),
            owner: "octocat".into(),
            created_at: Some(now - jiff::SignedDuration::from_secs(3 * 3600 + 120)),
            expires_at: Some(now + jiff::SignedDuration::from_hours(45)),
            status: Some(Status::Failed),
            url: Some("http://sb-feature-x.example.test/?a=1&b=2".into()),
            last_error: Some("smoke test `<img src=pic.png onerror=alert(2)>` failed".into()),
            repos: [(
                "backend".to_owned(),
                RepoAt {
                    branch: EVIL_BRANCH.into(),
                    sha: "0123456789abcdef".into(),
                    fell_back: false,
                },
            )]
            .into(),
            prs: vec![PrNumber {
                repo: "octo-org/backend".into(),
                number: 42,
            }],
            ..SandboxRecord::default()
        }
    }

    fn page(records: Vec<SandboxRecord>) -> StatusPage {
        StatusPage {
            product: "shop<&>".into(),
            github_web: "https://github.com".into(),
            sandboxes: Arc::new(Fixed(records)),
            token: None,
        }
    }

    #[tokio::test]
    async fn with_a_token_every_page_wants_it() {
        let now = jiff::Timestamp::now();
        let page = StatusPage {
            token: Some("status-token-1".into()),
            ..page(vec![record(now)])
        };
        for path in ["/", "/api/sandboxes", "/metrics"] {
            let (status, _, body) = get(page.clone(), path).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(!body.contains("sb-feature-x"), "{body}");
            for wrong in ["Bearer status-token-2", "status-token-1", "Bearer "] {
                let request = axum::http::Request::get(path)
                    .header(header::AUTHORIZATION, wrong)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = router(page.clone()).oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong}");
            }
            let request = axum::http::Request::get(path)
                .header(header::AUTHORIZATION, "Bearer status-token-1")
                .body(axum::body::Body::empty())
                .unwrap();
            let response = router(page.clone()).oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }

    /// Counts its listings.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Sandboxes for Counting {
        fn list(&self) -> BoxFuture<'_, Result<Vec<SandboxRecord>>> {
            Box::pin(async move {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(vec![record(jiff::Timestamp::now())])
            })
        }
    }

    #[tokio::test]
    async fn one_listing_serves_every_request_for_a_while() {
        let counting = Arc::new(Counting(Default::default()));
        let cached = Arc::new(CachedSandboxes::new(
            counting.clone(),
            Duration::from_millis(300),
        ));
        let page = StatusPage {
            sandboxes: cached,
            ..page(Vec::new())
        };
        let gets = (0..20).map(|_| get(page.clone(), "/api/sandboxes"));
        for (status, _, body) in futures::future::join_all(gets).await {
            assert_eq!(status, StatusCode::OK);
            assert!(body.contains("sb-feature-x"), "{body}");
        }
        let listings = || counting.0.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(listings(), 1, "twenty requests at once, one listing");
        tokio::time::sleep(Duration::from_millis(350)).await;
        get(page.clone(), "/metrics").await;
        assert_eq!(listings(), 2, "listed again once it is old");
    }

    async fn get(page: StatusPage, path: &str) -> (StatusCode, String, String) {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router(page).oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape(EVIL_BRANCH),
            "x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#39;"
        );
        assert_eq!(
            link("javascript:alert(1)", "click", "url"),
            "click",
            "only http(s) is linked"
        );
    }

    #[tokio::test]
    async fn the_page_lists_each_sandbox_with_escaped_text_and_links() {
        let now = jiff::Timestamp::now();
        let (status, content_type, html) = get(page(vec![record(now)]), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("shop<&>"), "{html}");
        assert!(html.contains("<title>Previews of shop&lt;&amp;&gt;</title>"));
        assert!(html.contains(&format!(
            "<td class=\"branch\">{}</td>",
            escape(EVIL_BRANCH)
        )));
        assert!(html.contains(
            r#"<a class="pr" href="https://github.com/octo-org/backend/pull/42">octo-org/backend#42</a>"#
        ));
        assert!(html
            .contains(r#"<a class="url" href="http://sb-feature-x.example.test/?a=1&amp;b=2">"#));
        assert!(html.contains(r#"<td class="status failed">failed</td>"#));
        assert!(html.contains("<code title=\"0123456789abcdef\">0123456</code>"));
        assert!(html.contains("<td>3h 2m</td>"), "{html}");
        assert!(html.contains(">in 1d 20h</span>") || html.contains(">in 1d 21h</span>"));
        assert!(html.contains("smoke test `&lt;img src=pic.png onerror=alert(2)&gt;` failed"));
        assert!(html.contains(r#"<tr id="sandbox-sb-feature-x""#));
    }

    #[tokio::test]
    async fn the_json_has_the_same_rows() {
        let now = jiff::Timestamp::now();
        let (status, content_type, body) = get(page(vec![record(now)]), "/api/sandboxes").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let row = &json["sandboxes"][0];
        assert_eq!(json["product"], "shop<&>");
        assert_eq!(row["branch"], EVIL_BRANCH, "JSON carries the text as it is");
        assert_eq!(row["status"], "failed");
        assert_eq!(
            row["prs"][0]["url"],
            "https://github.com/octo-org/backend/pull/42"
        );
        assert_eq!(row["repos"][0]["sha"], "0123456789abcdef");
        assert_eq!(row["age_seconds"], 3 * 3600 + 120);
        assert_eq!(row["expired"], false);
    }

    #[tokio::test]
    async fn secrets_in_a_recorded_error_are_scrubbed() {
        crate::logging::add_secrets(["status-page-secret-token-123".to_owned()]);
        let mut r = record(jiff::Timestamp::now());
        r.last_error = Some("auth with status-page-secret-token-123 failed".into());
        for path in ["/", "/api/sandboxes"] {
            let (_, _, body) = get(page(vec![r.clone()]), path).await;
            assert!(!body.contains("status-page-secret-token-123"), "{body}");
            assert!(body.contains("&lt;redacted&gt;") || body.contains("<redacted>"));
        }
    }

    #[tokio::test]
    async fn metrics_count_the_sandboxes_by_status() {
        let now = jiff::Timestamp::now();
        let ready = SandboxRecord {
            status: Some(Status::Ready),
            ..record(now)
        };
        let (status, content_type, text) =
            get(page(vec![record(now), ready.clone(), ready]), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, metrics::CONTENT_TYPE);
        assert!(
            text.contains("sandbox_serve_sandboxes{status=\"ready\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("sandbox_serve_sandboxes{status=\"failed\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn github_links_point_at_the_web_not_the_api() {
        assert_eq!(
            github_web_url("https://api.github.com"),
            "https://github.com"
        );
        assert_eq!(
            github_web_url("https://api.github.com/"),
            "https://github.com"
        );
        assert_eq!(
            github_web_url("https://ghe.example.com/api/v3"),
            "https://ghe.example.com"
        );
        assert_eq!(github_web_url("http://127.0.0.1:9/"), "http://127.0.0.1:9");
    }
}

//! The HTTP calls to a service on the internet (a forge's REST API, a chat's webhook): one
//! client, the retries ([`super::retry`]), a rate limit that holds back every call that shares it,
//! and a failure counter. Forge-neutral: each client (GitHub, Slack) builds its requests, names
//! itself in a [`Service`], and reads the answers.
//!
//! Errors and logs name the call (`what`), never its URL: a webhook's URL is a secret.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::log::log;
use super::retry::{self, Attempt, Decision, Idempotence, RetryPolicy};

/// Whom a call goes to: what differs between one service's calls and another's (GitHub's,
/// Slack's), once they are built. Each client declares its own as a `const`.
pub(crate) struct Service {
    /// For log lines and errors.
    pub(crate) name: &'static str,
    pub(crate) retry_event: &'static str,
    pub(crate) rate_limited_event: &'static str,
    /// Counts a failed attempt of the call named.
    pub(crate) count_failure: fn(&str),
    /// Whether a rate limit one call was told of holds back every call (GitHub's is per token).
    pub(crate) shared_rate_limit: bool,
}

/// An answer, read whole.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
}

/// A header's value, when it is text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `rel="next"` URL of a `Link` header.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    header(headers, "link")?.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// Wait while a rate limit someone was told about is still spent.
async fn wait_for_gate(gate: &Mutex<Option<Instant>>) {
    let until = *gate.lock().expect("not poisoned");
    if let Some(until) = until.filter(|u| *u > Instant::now()) {
        tokio::time::sleep_until(until.into()).await;
    }
}

/// What calls to GitHub and to Slack share: the HTTP client, the retries, and whom they go to.
/// Each side builds its requests and reads the answers.
#[derive(Clone)]
pub(crate) struct Caller {
    http: reqwest::Client,
    service: &'static Service,
    retry: RetryPolicy,
    /// Until when the service said its rate limit is spent, when it [shares
    /// one](Service::shared_rate_limit): every call waits for it, not only the one that was told.
    blocked_until: Option<Arc<Mutex<Option<Instant>>>>,
}

impl Caller {
    pub(crate) fn new(service: &'static Service) -> Result<Caller> {
        let http = crate::net::client_builder()?
            .user_agent("sandbox")
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .context("could not set up the HTTP client")?;
        Ok(Caller {
            http,
            service,
            retry: RetryPolicy::default(),
            blocked_until: service.shared_rate_limit.then(Arc::default),
        })
    }

    /// The HTTP client, to build requests with.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The same caller with another retry policy (tests make the backoff short).
    #[cfg(test)]
    pub(crate) fn with_retry(mut self, retry: RetryPolicy) -> Caller {
        self.retry = retry;
        self
    }

    /// Send what `request` builds, again as [`retry::decide`] says (see [`super::retry`]).
    /// Errors and logs name `what`, never the URL (Slack's is a secret).
    pub(crate) async fn send(
        &self,
        what: &str,
        idempotence: Idempotence,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer> {
        let (mut n, mut limited) = (0, 0);
        loop {
            n += 1;
            if let Some(gate) = &self.blocked_until {
                wait_for_gate(gate).await;
            }
            let result = self.attempt(what, request()).await;
            let now = SystemTime::now();
            let attempt = match &result {
                Ok(a) => Attempt::Answered(a.status, &a.headers),
                Err(e) if e.is_connect() => Attempt::NotSent,
                Err(_) => Attempt::Lost,
            };
            let rate_limit = match &result {
                Ok(a) => retry::rate_limit_wait(a.status, &a.headers, now),
                Err(_) => None,
            };
            let service = self.service;
            match retry::decide(&self.retry, n, limited, idempotence, &attempt, now) {
                Decision::Done => {
                    return result
                        .map_err(failure)
                        .with_context(|| format!("could not reach {} for {what}", service.name))
                }
                Decision::RateLimitedTooLong { wait } => {
                    log!(
                        Warn,
                        service.rate_limited_event,
                        call = what,
                        wait = format!("{}s", wait.as_secs()),
                        gave_up = true
                    );
                    anyhow::bail!(
                        "{} rate-limited {what} for {}s more, longer than serve waits ({}s): the next resync or push tries again",
                        service.name,
                        wait.as_secs(),
                        self.retry.max_rate_limit_wait.as_secs()
                    );
                }
                Decision::Retry { wait, reason } => {
                    if rate_limit.is_some() {
                        limited += 1;
                        self.hold_back(what, n, wait);
                    } else {
                        let error = result
                            .err()
                            .map(|e| format!("{:#}", anyhow::Error::from(e.without_url())));
                        log!(
                            Warn,
                            service.retry_event,
                            call = what,
                            attempt = n,
                            reason = reason,
                            error = error.unwrap_or_default(),
                            wait = format!("{}ms", wait.as_millis())
                        );
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt, its answer read whole. Every failed attempt passes through here, and is
    /// counted.
    async fn attempt(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<Answer> {
        let result = match request.send().await {
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers().clone());
                response.text().await.map(|text| Answer {
                    status,
                    headers,
                    text,
                })
            }
            Err(e) => Err(e),
        };
        let failed = result.as_ref().map_or(true, |a| {
            a.status.is_client_error() || a.status.is_server_error()
        });
        if failed {
            (self.service.count_failure)(what);
        }
        result
    }

    /// A rate limit lifts after `wait`: every call that shares it waits too; said in the log.
    fn hold_back(&self, what: &str, n: u32, wait: Duration) {
        if let Some(gate) = &self.blocked_until {
            *gate.lock().expect("not poisoned") = Some(Instant::now() + wait);
        }
        log!(
            Warn,
            self.service.rate_limited_event,
            call = what,
            wait = format!("{}s", wait.as_secs()),
            attempt = n
        );
    }
}

/// A call's last failure, without its URL (Slack's is a secret); an untrusted certificate as
/// such, so that the error names the host and its issuer and the hint says how to trust its CA.
fn failure(error: reqwest::Error) -> anyhow::Error {
    let error = error.without_url();
    match crate::net::untrusted(&error) {
        Some(certificate) => anyhow::Error::new(certificate),
        None => anyhow::Error::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_the_link_headers_rel_next() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            r#"<https://a/x?page=3>; rel="next", <https://a/x?page=9>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://a/x?page=3"));
        h.insert(
            "link",
            r#"<https://a/x?page=1>; rel="prev""#.parse().unwrap(),
        );
        assert_eq!(next_link(&h), None);
    }

    /// A server whose certificate no trusted CA issued: the call fails naming the host and the
    /// issuer, and the hint says how to trust its CA (GitHub Enterprise behind a company CA).
    #[tokio::test]
    async fn an_untrusted_certificate_names_the_host_and_its_issuer_and_says_how_to_trust_it() {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = tempfile::tempdir().unwrap();
        let (_, leaf, key) = crate::net::pki::make_pki(dir.path(), "localhost");
        let chain = vec![CertificateDer::from_pem_file(&leaf).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = std::sync::Arc::new(config);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let _ = std::io::Read::read(&mut tls, &mut [0; 64]);
            }
        });
        let caller = Caller::new(&SERVICE).unwrap();
        let url = format!("https://localhost:{port}/repos/o/r");
        let error = caller
            .send("GET /repos/o/r", Idempotence::Idempotent, || {
                caller.http().get(&url)
            })
            .await
            .err()
            .expect("the certificate is not trusted");
        let untrusted = error
            .chain()
            .find_map(|e| e.downcast_ref::<crate::net::UntrustedCertificate>())
            .unwrap_or_else(|| panic!("no UntrustedCertificate in {error:#}"));
        assert_eq!(untrusted.host, "localhost");
        let shown = format!("{error:#}");
        assert!(shown.contains("Test Corp Root CA"), "{shown}");
        assert!(
            !shown.contains(&port.to_string()),
            "no URL in errors: {shown}"
        );
        let hint = crate::error::Hint::hint(untrusted).unwrap();
        assert!(hint.contains("--ca-file"), "{hint}");
    }

    const SERVICE: Service = Service {
        name: "GitHub",
        retry_event: "github.retry",
        rate_limited_event: "github.rate_limited",
        count_failure: |_| {},
        shared_rate_limit: true,
    };
}

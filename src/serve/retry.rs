//! When a call to GitHub or Slack is tried again, and after how long: a pure decision over what
//! the previous attempt got, so that every rule is unit-tested without a network.
//!
//! - Transient failures (5xx, a connection that could not be made, a timeout) are retried with
//!   exponential backoff and full jitter, a bounded number of times.
//! - Rate limits (429, or 403 with `Retry-After` or `X-RateLimit-Remaining: 0`) wait for the
//!   time GitHub names (`Retry-After` seconds or HTTP date, or `X-RateLimit-Reset` epoch
//!   seconds), capped.
//! - Every other 4xx is final: asking again cannot change the answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts in all (the first one included) for transient failures.
    pub(crate) attempts: u32,
    /// The first backoff; each further one doubles, up to `max_backoff`.
    pub(crate) base: Duration,
    pub(crate) max_backoff: Duration,
    /// The longest wait for a rate limit to reset; a later reset is given up on (the next resync
    /// or push tries again) rather than holding a worker for up to an hour.
    pub(crate) max_rate_limit_wait: Duration,
    /// Rate-limited attempts in all, so that a limit that never lifts ends.
    pub(crate) rate_limit_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_rate_limit_wait: Duration::from_secs(10 * 60),
            rate_limit_attempts: 3,
        }
    }
}

/// What an attempt got.
#[derive(Debug)]
pub(crate) enum Attempt<'a> {
    /// An answer, with its status and headers.
    Answered(StatusCode, &'a HeaderMap),
    /// No connection was made: the request provably never reached the server.
    NotSent,
    /// Sent, but no answer came (a timeout, a connection cut mid-way): it may have been done.
    Lost,
}

/// Whether a request may be sent twice without harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotence {
    /// GET, PATCH, and posting a deployment status (the newest status wins, a repeat changes
    /// nothing).
    Idempotent,
    /// Creating something (a deployment, a comment, a Slack message): twice makes two.
    Creates,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The answer stands (a success, or a failure that asking again cannot change).
    Done,
    /// Try again after the wait; the reason is for the log.
    Retry { wait: Duration, reason: String },
    /// A rate limit that lifts later than the policy waits: give up, saying when it lifts.
    RateLimitedTooLong { wait: Duration },
}

/// Decide after `attempt` number `n` (1 for the first), `rate_limited` of them rate-limited.
pub(crate) fn decide(
    policy: &RetryPolicy,
    n: u32,
    rate_limited: u32,
    idempotence: Idempotence,
    attempt: &Attempt<'_>,
    now: SystemTime,
) -> Decision {
    let transient = |reason: String| {
        if n >= policy.attempts {
            Decision::Done
        } else {
            Decision::Retry {
                wait: backoff(policy, n),
                reason,
            }
        }
    };
    match attempt {
        Attempt::NotSent => transient("could not connect".into()),
        // A timeout or a cut connection may have happened after GitHub acted: creating again
        // could make a second deployment or comment, so only what is safe to repeat is repeated.
        Attempt::Lost => match idempotence {
            Idempotence::Idempotent => transient("no answer".into()),
            Idempotence::Creates => Decision::Done,
        },
        Attempt::Answered(status, headers) => {
            if let Some(wait) = rate_limit_wait(*status, headers, now) {
                if wait > policy.max_rate_limit_wait {
                    return Decision::RateLimitedTooLong { wait };
                }
                if rate_limited >= policy.rate_limit_attempts {
                    return Decision::Done;
                }
                return Decision::Retry {
                    wait,
                    reason: format!("rate limited ({status})"),
                };
            }
            // A 5xx is GitHub saying the request failed, so creating again is retried too: a
            // lost deployment leaves the pull request without any status, while the rare
            // duplicate is harmless (the newer success marks the older one inactive).
            if status.is_server_error() {
                transient(format!("{status}"))
            } else {
                Decision::Done
            }
        }
    }
}

/// How long a rate-limited answer asks to wait; `None` when it is not a rate limit.
pub(crate) fn rate_limit_wait(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    if !matches!(status.as_u16(), 403 | 429) {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = header("retry-after").and_then(|v| retry_after(v, now)) {
        return Some(wait);
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        // The reset is in whole seconds: wait one more, so the retry lands after it.
        return Some(reset.map_or(Duration::from_secs(60), |reset| {
            Duration::from_secs(reset.saturating_sub(now.as_secs()) + 1)
        }));
    }
    // GitHub's advice for a secondary rate limit without headers: wait at least a minute. A 403
    // without any of this is a permission problem and final.
    (status == StatusCode::TOO_MANY_REQUESTS).then(|| Duration::from_secs(60))
}

/// The wait a `Retry-After` value names: delta-seconds (`120`) or an HTTP date (`Wed, 21 Oct
/// 2015 07:28:00 GMT`, RFC 9110's IMF-fixdate; jiff reads it as the RFC 2822 date it also is).
/// A date already past: no wait. Anything else: `None`, as if there were no such header.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some(
        SystemTime::from(date)
            .duration_since(now)
            .unwrap_or_default(),
    )
}

/// Full jitter: anywhere in `0..=min(max, base·2^(n-1))`, at least 50 ms, so that several
/// replicas or workers that failed together do not retry together.
fn backoff(policy: &RetryPolicy, n: u32) -> Duration {
    let ceiling = policy
        .base
        .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
        .min(policy.max_backoff);
    let fraction = (random() % 1000) as f64 / 1000.0;
    ceiling.mul_f64(fraction).max(Duration::from_millis(50))
}

/// A random number from the standard library's per-process random hasher keys (jitter needs no
/// more than that, and no dependency).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn decide_on(
        n: u32,
        idem: Idempotence,
        status: u16,
        h: &[(&'static str, &str)],
        now: u64,
    ) -> Decision {
        let h = headers(h);
        let status = StatusCode::from_u16(status).unwrap();
        decide(
            &RetryPolicy::default(),
            n,
            0,
            idem,
            &Attempt::Answered(status, &h),
            at(now),
        )
    }

    #[test]
    fn server_errors_are_retried_a_bounded_number_of_times() {
        for status in [500, 502, 503, 504] {
            for idem in [Idempotence::Idempotent, Idempotence::Creates] {
                assert!(matches!(
                    decide_on(1, idem, status, &[], 0),
                    Decision::Retry { .. }
                ));
                assert_eq!(decide_on(4, idem, status, &[], 0), Decision::Done);
            }
        }
    }

    #[test]
    fn client_errors_other_than_rate_limits_are_final() {
        for status in [400, 401, 403, 404, 409, 422] {
            assert_eq!(
                decide_on(1, Idempotence::Idempotent, status, &[], 0),
                Decision::Done,
                "{status}"
            );
        }
        assert_eq!(
            decide_on(1, Idempotence::Idempotent, 201, &[], 0),
            Decision::Done
        );
    }

    #[test]
    fn rate_limits_wait_for_the_time_github_names() {
        let primary = [
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1000"),
        ];
        assert_eq!(
            decide_on(1, Idempotence::Creates, 403, &primary, 990),
            Decision::Retry {
                wait: Duration::from_secs(11),
                reason: "rate limited (403 Forbidden)".into()
            }
        );
        // A reset already past: a second's wait.
        assert!(matches!(
            decide_on(1, Idempotence::Idempotent, 403, &primary, 2000),
            Decision::Retry { wait, .. } if wait == Duration::from_secs(1)
        ));
        assert!(matches!(
            decide_on(1, Idempotence::Idempotent, 429, &[("retry-after", "7")], 0),
            Decision::Retry { wait, .. } if wait == Duration::from_secs(7)
        ));
        assert!(matches!(
            decide_on(1, Idempotence::Idempotent, 403, &[("retry-after", "3")], 0),
            Decision::Retry { wait, .. } if wait == Duration::from_secs(3)
        ));
        assert!(matches!(
            decide_on(1, Idempotence::Idempotent, 429, &[], 0),
            Decision::Retry { wait, .. } if wait == Duration::from_secs(60)
        ));
        // Remaining calls left: a 403 is about permissions.
        let left = [
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-reset", "1000"),
        ];
        assert_eq!(
            decide_on(1, Idempotence::Idempotent, 403, &left, 990),
            Decision::Done
        );
        // An hour away: not waited for.
        let primary = [
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "4600"),
        ];
        assert_eq!(
            decide_on(1, Idempotence::Idempotent, 403, &primary, 1000),
            Decision::RateLimitedTooLong {
                wait: Duration::from_secs(3601)
            }
        );
        let h = headers(&[("retry-after", "1")]);
        let status = StatusCode::TOO_MANY_REQUESTS;
        let policy = RetryPolicy::default();
        let after_limit = decide(
            &policy,
            4,
            policy.rate_limit_attempts,
            Idempotence::Idempotent,
            &Attempt::Answered(status, &h),
            at(0),
        );
        assert_eq!(
            after_limit,
            Decision::Done,
            "rate-limited attempts are bounded"
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        // Wed, 21 Oct 2015 07:28:00 GMT is 1445412480 seconds after the epoch.
        let date = [("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")];
        assert!(matches!(
            decide_on(1, Idempotence::Idempotent, 429, &date, 1_445_412_480 - 30),
            Decision::Retry { wait, .. } if wait == Duration::from_secs(30)
        ));
        // A 403 naming a date is a rate limit, as one naming seconds is.
        assert!(matches!(
            decide_on(1, Idempotence::Creates, 403, &date, 1_445_412_480 - 5),
            Decision::Retry { wait, .. } if wait == Duration::from_secs(5)
        ));
        // A date already past: try again at once.
        assert!(matches!(
            decide_on(1, Idempotence::Idempotent, 429, &date, 1_445_412_480 + 100),
            Decision::Retry { wait, .. } if wait == Duration::ZERO
        ));
        // Further away than serve waits: given up on, saying how long.
        assert_eq!(
            decide_on(1, Idempotence::Idempotent, 429, &date, 1_445_412_480 - 7200),
            Decision::RateLimitedTooLong {
                wait: Duration::from_secs(7200)
            }
        );
        let now = at(1_000);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("0", now), Some(Duration::ZERO));
        for garbage in [
            "",
            "soon",
            "-5",
            "1.5",
            "Wed, 21 Oct 2015",
            "Wed, 21 Oct 2015 07:28:00 GMT trailing",
            "Thu, 21 Oct 2015 07:28:00 GMT", // the 21st was a Wednesday
            "2015-10-21T07:28:00Z",
        ] {
            assert_eq!(retry_after(garbage, now), None, "{garbage:?}");
        }
        // Garbage is no wait named: a 429 waits the default minute, a 403 is about permissions.
        let garbage = [("retry-after", "soon")];
        assert!(matches!(
            decide_on(1, Idempotence::Idempotent, 429, &garbage, 0),
            Decision::Retry { wait, .. } if wait == Duration::from_secs(60)
        ));
        assert_eq!(
            decide_on(1, Idempotence::Idempotent, 403, &garbage, 0),
            Decision::Done
        );
    }

    #[test]
    fn what_may_have_been_done_is_repeated_only_when_that_is_harmless() {
        let policy = RetryPolicy::default();
        let lost = |idem| decide(&policy, 1, 0, idem, &Attempt::Lost, at(0));
        assert!(matches!(
            lost(Idempotence::Idempotent),
            Decision::Retry { .. }
        ));
        assert_eq!(lost(Idempotence::Creates), Decision::Done);
        let unsent = |idem| decide(&policy, 1, 0, idem, &Attempt::NotSent, at(0));
        assert!(matches!(
            unsent(Idempotence::Creates),
            Decision::Retry { .. }
        ));
        assert_eq!(
            decide(
                &policy,
                4,
                0,
                Idempotence::Creates,
                &Attempt::NotSent,
                at(0)
            ),
            Decision::Done
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy::default();
        for n in 1..10 {
            let ceiling = (policy.base * 2u32.pow(n - 1)).min(policy.max_backoff);
            for _ in 0..20 {
                let wait = backoff(&policy, n);
                assert!(
                    wait <= ceiling.max(Duration::from_millis(50)),
                    "{n}: {wait:?}"
                );
                assert!(wait >= Duration::from_millis(50));
            }
        }
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff(&policy, 5)).collect();
        assert!(waits.len() > 1, "no jitter: {waits:?}");
    }
}

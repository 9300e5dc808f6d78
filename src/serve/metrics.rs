//! `GET /metrics`: the service's counters in the Prometheus (OpenMetrics) text format, for a
//! Prometheus scrape or a ServiceMonitor.
//!
//! - `sandbox_serve_deliveries_total{outcome}`: webhook deliveries by what became of them
//!   (accepted, duplicate, bad_signature, refused, ignored, ping, unavailable);
//! - `sandbox_serve_queue{state}`: work running, and work waiting (for a free slot, or behind
//!   the same branch's running work);
//! - `sandbox_serve_up_duration_seconds{outcome}`: how long deploys took (success, failure);
//! - `sandbox_serve_deletions_total{outcome}`: previews deleted (deleted, failed);
//! - `sandbox_serve_github_call_failures_total{endpoint}`: failed GitHub API calls, by endpoint
//!   with the repository and ids left out (`POST /repos/:owner/:repo/deployments`);
//! - `sandbox_serve_slack_call_failures_total`: failed calls to the Slack webhook (no label: its
//!   URL is a secret, and there is one);
//! - `sandbox_serve_sandboxes{status}`: the product's sandboxes by status, read from the cluster
//!   at each scrape (so every replica says the same).
//!
//! One set per process (the counters are events of this process); the functions here are
//! what the rest of the service calls.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// One label and its value.
type Label = Vec<(&'static str, String)>;

fn label(key: &'static str, value: &str) -> Label {
    vec![(key, value.to_owned())]
}

/// What becomes of a webhook delivery.
const DELIVERY_OUTCOMES: [&str; 7] = [
    "accepted",
    "duplicate",
    "bad_signature",
    "refused",
    "ignored",
    "ping",
    "unavailable",
];

/// Deploys take seconds to many minutes (image builds, smoke tests).
const UP_BUCKETS: [f64; 9] = [5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0];

fn up_histogram() -> Histogram {
    Histogram::new(UP_BUCKETS)
}

/// A new metric of its type's default, registered as `name` with `help`.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    registered_as(registry, name, help, M::default())
}

/// `metric`, registered as `name` with `help`: the struct keeps one handle, the registry the other.
fn registered_as<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The series of `family` for each of `values` of the label `key`, made now (at zero).
fn at_zero<M, C: MetricConstructor<M>>(
    family: &Family<Label, M, C>,
    key: &'static str,
    values: &[&str],
) {
    for value in values {
        drop(family.get_or_create(&label(key, value)));
    }
}

/// The service's metrics and the registry that shows them.
pub(crate) struct Metrics {
    registry: Registry,
    deliveries: Family<Label, Counter>,
    queue: Family<Label, Gauge>,
    up_duration: Family<Label, Histogram, fn() -> Histogram>,
    deletions: Family<Label, Counter>,
    github_failures: Family<Label, Counter>,
    slack_failures: Counter,
    sandboxes: Family<Label, Gauge>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sandbox_serve");
        // Registered in this order, the order a scrape shows them in.
        let r = &mut registry;
        let metrics = Metrics {
            deliveries: registered(r, "deliveries", "Webhook deliveries by outcome"),
            queue: registered(
                r,
                "queue",
                "Pieces of work running, and waiting for a slot or their branch's running work",
            ),
            up_duration: registered_as(
                r,
                "up_duration_seconds",
                "Duration of preview deploys by outcome",
                Family::new_with_constructor(up_histogram),
            ),
            deletions: registered(r, "deletions", "Preview deletions by outcome"),
            github_failures: registered(
                r,
                "github_call_failures",
                "Failed GitHub API calls by endpoint",
            ),
            slack_failures: registered(
                r,
                "slack_call_failures",
                "Failed calls to the Slack webhook",
            ),
            sandboxes: registered(
                r,
                "sandboxes",
                "The product's sandboxes by status, as recorded in the cluster",
            ),
            registry,
        };
        // Every known series is shown from the start, at zero: an alert on a rate of
        // `bad_signature` must not wait for the first one to exist.
        at_zero(&metrics.deliveries, "outcome", &DELIVERY_OUTCOMES);
        at_zero(&metrics.queue, "state", &["running", "waiting"]);
        at_zero(&metrics.up_duration, "outcome", &["success", "failure"]);
        at_zero(
            &metrics.deletions,
            "outcome",
            &["deleted", "kept", "failed"],
        );
        metrics
    }

    fn delivery(&self, outcome: &str) {
        self.deliveries
            .get_or_create(&label("outcome", outcome))
            .inc();
    }

    fn up_finished(&self, outcome: &str, took: Duration) {
        self.up_duration
            .get_or_create(&label("outcome", outcome))
            .observe(took.as_secs_f64());
    }

    fn deletion(&self, outcome: &str) {
        self.deletions
            .get_or_create(&label("outcome", outcome))
            .inc();
    }

    fn github_call_failed(&self, endpoint: &str) {
        self.github_failures
            .get_or_create(&label("endpoint", endpoint))
            .inc();
    }

    fn slack_call_failed(&self) {
        self.slack_failures.inc();
    }

    fn set_sandboxes(&self, by_status: &[(String, i64)]) {
        self.sandboxes.clear();
        for (status, count) in by_status {
            self.sandboxes
                .get_or_create(&label("status", status))
                .set(*count);
        }
    }

    fn queue_gauge(&self, state: &str) -> Gauge {
        self.queue.get_or_create_owned(&label("state", state))
    }

    pub(crate) fn queue_gauges(&self) -> QueueGauges {
        QueueGauges {
            waiting: self.queue_gauge("waiting"),
            running: self.queue_gauge("running"),
        }
    }

    /// The text a scrape gets.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The process's metrics.
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The `Content-Type` of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape gets, with the sandboxes by status as `by_status` says (None: unknown now, the
/// last known counts stay).
pub(crate) fn render(by_status: Option<&[(String, i64)]>) -> String {
    if let Some(by_status) = by_status {
        METRICS.set_sandboxes(by_status);
    }
    METRICS.render()
}

/// A webhook delivery ended as `outcome` (accepted, duplicate, bad_signature, refused, ignored,
/// ping, unavailable).
pub(crate) fn delivery(outcome: &str) {
    METRICS.delivery(outcome);
}

/// A deploy ended (`success` or `failure`) after `took`.
pub(crate) fn up_finished(outcome: &str, took: Duration) {
    METRICS.up_finished(outcome, took);
}

/// A deletion ended (`deleted` or `failed`).
pub(crate) fn deletion(outcome: &str) {
    METRICS.deletion(outcome);
}

/// A GitHub API call failed; `endpoint` is its method and path, e.g. `POST
/// /repos/octo/app/deployments/7/statuses`: the repository and ids are left out of the label
/// ([`endpoint_of`]) so that the series stay few.
pub(crate) fn github_call_failed(endpoint: &str) {
    METRICS.github_call_failed(&endpoint_of(endpoint));
}

/// A call to the Slack webhook failed. It has no label: the webhook's URL is a secret, and the
/// service posts to one.
pub(crate) fn slack_call_failed() {
    METRICS.slack_call_failed();
}

/// `POST /repos/octo/app/deployments/7/statuses` → `POST /repos/:owner/:repo/deployments/:id/statuses`.
pub(crate) fn endpoint_of(call: &str) -> String {
    let (method, path) = call.split_once(' ').unwrap_or(("", call));
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let parts: Vec<&str> = segments
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            let before = |n: usize| i.checked_sub(n).map(|j| segments[j]);
            if before(1) == Some("repos") {
                ":owner"
            } else if before(2) == Some("repos") {
                ":repo"
            } else if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
                ":id"
            } else {
                segment
            }
        })
        .collect();
    let path = parts.join("/");
    if method.is_empty() {
        path
    } else {
        format!("{method} {path}")
    }
}

/// The queue gauge's two series, for the queue to count its work in.
#[derive(Clone)]
pub(crate) struct QueueGauges {
    waiting: Gauge,
    running: Gauge,
}

/// The process's queue gauge.
pub(crate) fn queue_gauges() -> QueueGauges {
    METRICS.queue_gauges()
}

/// A piece of work counted in the queue gauge: waiting from when it is submitted until
/// [`QueueEntry::running`], and out of the gauge when dropped (finished, superseded, cancelled
/// or dropped at shutdown alike).
pub(crate) struct QueueEntry {
    gauges: QueueGauges,
    running: bool,
}

impl QueueEntry {
    /// Work that waits for a free slot, or for its branch's running work to end.
    pub(crate) fn waiting(gauges: &QueueGauges) -> QueueEntry {
        gauges.waiting.inc();
        QueueEntry {
            gauges: gauges.clone(),
            running: false,
        }
    }

    /// It got its slot (a second time changes nothing).
    pub(crate) fn running(&mut self) {
        if !self.running {
            self.gauges.waiting.dec();
            self.gauges.running.inc();
            self.running = true;
        }
    }
}

impl Drop for QueueEntry {
    fn drop(&mut self) {
        if self.running {
            self.gauges.running.dec();
        } else {
            self.gauges.waiting.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_every_series_with_help_type_and_labels() {
        let m = Metrics::new();
        let fresh = m.render();
        for line in [
            "sandbox_serve_deliveries_total{outcome=\"unavailable\"} 0",
            "sandbox_serve_up_duration_seconds_count{outcome=\"failure\"} 0",
            "sandbox_serve_deletions_total{outcome=\"failed\"} 0",
            "sandbox_serve_slack_call_failures_total 0",
        ] {
            assert!(fresh.lines().any(|l| l == line), "no `{line}` in:\n{fresh}");
        }
        m.delivery("accepted");
        m.delivery("accepted");
        m.delivery("bad_signature");
        m.up_finished("success", Duration::from_secs(42));
        m.deletion("deleted");
        m.github_call_failed(&endpoint_of("POST /repos/o/r/deployments"));
        m.slack_call_failed();
        m.slack_call_failed();
        m.set_sandboxes(&[("ready".into(), 3), ("failed".into(), 1)]);
        let text = m.render();
        for line in [
            "# HELP sandbox_serve_deliveries Webhook deliveries by outcome.",
            "# TYPE sandbox_serve_deliveries counter",
            "sandbox_serve_deliveries_total{outcome=\"accepted\"} 2",
            "sandbox_serve_deliveries_total{outcome=\"bad_signature\"} 1",
            "# TYPE sandbox_serve_queue gauge",
            "sandbox_serve_queue{state=\"running\"} 0",
            "sandbox_serve_queue{state=\"waiting\"} 0",
            "# TYPE sandbox_serve_up_duration_seconds histogram",
            "sandbox_serve_up_duration_seconds_bucket{le=\"30.0\",outcome=\"success\"} 0",
            "sandbox_serve_up_duration_seconds_bucket{le=\"60.0\",outcome=\"success\"} 1",
            "sandbox_serve_up_duration_seconds_bucket{le=\"+Inf\",outcome=\"success\"} 1",
            "sandbox_serve_up_duration_seconds_sum{outcome=\"success\"} 42.0",
            "sandbox_serve_up_duration_seconds_count{outcome=\"success\"} 1",
            "sandbox_serve_deletions_total{outcome=\"deleted\"} 1",
            "sandbox_serve_github_call_failures_total{endpoint=\"POST /repos/:owner/:repo/deployments\"} 1",
            "# TYPE sandbox_serve_slack_call_failures counter",
            "sandbox_serve_slack_call_failures_total 2",
            "sandbox_serve_sandboxes{status=\"ready\"} 3",
            "sandbox_serve_sandboxes{status=\"failed\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        // A status gone from the cluster is gone from the gauge.
        m.set_sandboxes(&[("ready".into(), 1)]);
        assert!(!m.render().contains("status=\"failed\""));
    }

    /// The text with each family's series sorted (a family keeps its series in a hash map, so
    /// their order varies from one process to the next; the families' order does not).
    fn sorted_series(text: &str) -> String {
        let mut out = Vec::new();
        let mut series: Vec<&str> = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                series.sort_unstable();
                out.append(&mut series);
                out.push(line);
            } else {
                series.push(line);
            }
        }
        series.sort_unstable();
        out.append(&mut series);
        out.join("\n")
    }

    /// A whole scrape, to the letter: how the families are registered may change, what a
    /// Prometheus scrape gets may not.
    #[test]
    fn a_scrape_is_exactly_this() {
        let m = Metrics::new();
        m.delivery("accepted");
        m.up_finished("success", Duration::from_secs(42));
        m.deletion("kept");
        m.github_call_failed(&endpoint_of("GET /repos/o/r/pulls/1"));
        m.set_sandboxes(&[("ready".into(), 2)]);
        let mut entry = QueueEntry::waiting(&m.queue_gauges());
        entry.running();
        assert_eq!(sorted_series(&m.render()), sorted_series(SCRAPE));
    }

    const SCRAPE: &str = r#"# HELP sandbox_serve_deliveries Webhook deliveries by outcome.
# TYPE sandbox_serve_deliveries counter
sandbox_serve_deliveries_total{outcome="accepted"} 1
sandbox_serve_deliveries_total{outcome="duplicate"} 0
sandbox_serve_deliveries_total{outcome="bad_signature"} 0
sandbox_serve_deliveries_total{outcome="refused"} 0
sandbox_serve_deliveries_total{outcome="ignored"} 0
sandbox_serve_deliveries_total{outcome="ping"} 0
sandbox_serve_deliveries_total{outcome="unavailable"} 0
# HELP sandbox_serve_queue Pieces of work running, and waiting for a slot or their branch's running work.
# TYPE sandbox_serve_queue gauge
sandbox_serve_queue{state="running"} 1
sandbox_serve_queue{state="waiting"} 0
# HELP sandbox_serve_up_duration_seconds Duration of preview deploys by outcome.
# TYPE sandbox_serve_up_duration_seconds histogram
sandbox_serve_up_duration_seconds_sum{outcome="success"} 42.0
sandbox_serve_up_duration_seconds_count{outcome="success"} 1
sandbox_serve_up_duration_seconds_bucket{le="5.0",outcome="success"} 0
sandbox_serve_up_duration_seconds_bucket{le="10.0",outcome="success"} 0
sandbox_serve_up_duration_seconds_bucket{le="30.0",outcome="success"} 0
sandbox_serve_up_duration_seconds_bucket{le="60.0",outcome="success"} 1
sandbox_serve_up_duration_seconds_bucket{le="120.0",outcome="success"} 1
sandbox_serve_up_duration_seconds_bucket{le="300.0",outcome="success"} 1
sandbox_serve_up_duration_seconds_bucket{le="600.0",outcome="success"} 1
sandbox_serve_up_duration_seconds_bucket{le="1200.0",outcome="success"} 1
sandbox_serve_up_duration_seconds_bucket{le="1800.0",outcome="success"} 1
sandbox_serve_up_duration_seconds_bucket{le="+Inf",outcome="success"} 1
sandbox_serve_up_duration_seconds_sum{outcome="failure"} 0.0
sandbox_serve_up_duration_seconds_count{outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="5.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="10.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="30.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="60.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="120.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="300.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="600.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="1200.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="1800.0",outcome="failure"} 0
sandbox_serve_up_duration_seconds_bucket{le="+Inf",outcome="failure"} 0
# HELP sandbox_serve_deletions Preview deletions by outcome.
# TYPE sandbox_serve_deletions counter
sandbox_serve_deletions_total{outcome="deleted"} 0
sandbox_serve_deletions_total{outcome="kept"} 1
sandbox_serve_deletions_total{outcome="failed"} 0
# HELP sandbox_serve_github_call_failures Failed GitHub API calls by endpoint.
# TYPE sandbox_serve_github_call_failures counter
sandbox_serve_github_call_failures_total{endpoint="GET /repos/:owner/:repo/pulls/:id"} 1
# HELP sandbox_serve_slack_call_failures Failed calls to the Slack webhook.
# TYPE sandbox_serve_slack_call_failures counter
sandbox_serve_slack_call_failures_total 0
# HELP sandbox_serve_sandboxes The product's sandboxes by status, as recorded in the cluster.
# TYPE sandbox_serve_sandboxes gauge
sandbox_serve_sandboxes{status="ready"} 2
# EOF
"#;

    #[test]
    fn endpoints_leave_out_repositories_and_ids() {
        for (call, endpoint) in [
            (
                "POST /repos/octo/app/deployments/7/statuses",
                "POST /repos/:owner/:repo/deployments/:id/statuses",
            ),
            (
                "GET /repos/octo/app/deployments?environment=x",
                "GET /repos/:owner/:repo/deployments",
            ),
            (
                "PATCH /repos/octo/app/issues/comments/99",
                "PATCH /repos/:owner/:repo/issues/comments/:id",
            ),
            (
                "GET /repos/octo/app/pulls/12",
                "GET /repos/:owner/:repo/pulls/:id",
            ),
        ] {
            assert_eq!(endpoint_of(call), endpoint, "{call}");
        }
    }

    #[test]
    fn the_queue_gauge_follows_work_from_waiting_to_running_to_gone() {
        let m = Metrics::new();
        let waiting = || m.queue_gauge("waiting").get();
        let running = || m.queue_gauge("running").get();
        let (w0, r0) = (waiting(), running());
        let mut entry = QueueEntry::waiting(&m.queue_gauges());
        assert_eq!((waiting(), running()), (w0 + 1, r0));
        entry.running();
        assert_eq!((waiting(), running()), (w0, r0 + 1));
        entry.running();
        assert_eq!(
            (waiting(), running()),
            (w0, r0 + 1),
            "running twice is running"
        );
        drop(entry);
        assert_eq!((waiting(), running()), (w0, r0));
        drop(QueueEntry::waiting(&m.queue_gauges()));
        assert_eq!((waiting(), running()), (w0, r0), "dropped while waiting");
    }
}

//! Slack's incoming webhooks: a message per piece of work, when `--slack-webhook-url` is set.
//! The URL is a secret: it is never in an error, a log line or a metric's label.

use anyhow::Result;
use reqwest::Url;
use serde_json::json;

use super::caller::{Caller, Service};
use super::retry::Idempotence;

const SLACK: Service = Service {
    name: "Slack",
    retry_event: "slack.retry",
    rate_limited_event: "slack.rate_limited",
    // Not by call: there is one, and its URL is a secret.
    count_failure: |_| super::metrics::slack_call_failed(),
    shared_rate_limit: false,
};

/// A Slack incoming webhook.
#[derive(Clone)]
pub(crate) struct Slack {
    caller: Caller,
    url: Url,
}

impl Slack {
    pub(crate) fn new(url: &str) -> Result<Slack> {
        // The URL is a secret: it is not repeated in the error.
        let url = Url::parse(url)
            .map_err(|e| anyhow::anyhow!("the Slack webhook URL is not a URL: {e}"))?;
        Ok(Slack {
            caller: Caller::new(&SLACK)?,
            url,
        })
    }

    pub(crate) async fn post(&self, text: &str) -> Result<()> {
        let body = json!({ "text": text });
        // A message twice is a nuisance, not a harm, but still only repeated when Slack failed.
        let answer = self
            .caller
            .send("a message", Idempotence::Creates, || {
                self.caller.http().post(self.url.clone()).json(&body)
            })
            .await?;
        if !answer.status.is_success() {
            anyhow::bail!("Slack answered {}", answer.status);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::Url;
    use sandbox_test_support::fake_github::{Canned, FakeGitHub};

    use super::super::retry::RetryPolicy;
    use super::*;

    #[tokio::test]
    async fn slack_is_retried_on_its_server_errors() {
        let fake = FakeGitHub::start().await;
        let mut slack = Slack::new(&fake.slack_url()).unwrap();
        slack.caller = slack.caller.with_retry(RetryPolicy {
            base: Duration::from_millis(20),
            ..RetryPolicy::default()
        });
        let path = Url::parse(&fake.slack_url()).unwrap().path().to_owned();
        fake.fail_next("POST", &path, vec![Canned::status(502)]);
        let failures_before = slack_failures();
        slack.post("hello").await.unwrap();
        let answered: Vec<u16> = fake
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path == path)
            .map(|c| c.status)
            .collect();
        assert_eq!(answered, [502, 200]);
        assert_eq!(fake.slack_messages(), ["hello"]);
        // Other tests' failures may count too, never fewer.
        assert!(slack_failures() > failures_before);
        fake.fail_next("POST", &path, vec![Canned::status(404)]);
        assert!(slack.post("again").await.is_err());
        assert!(slack_failures() > failures_before + 1);
        let scrape = super::super::metrics::render(None);
        assert!(
            !scrape.contains(&path),
            "the webhook's URL is in a label:\n{scrape}"
        );
    }

    /// `sandbox_serve_slack_call_failures_total` as a scrape shows it now.
    fn slack_failures() -> u64 {
        let scrape = super::super::metrics::render(None);
        scrape
            .lines()
            .find_map(|l| l.strip_prefix("sandbox_serve_slack_call_failures_total "))
            .unwrap_or_else(|| panic!("no Slack failures in:\n{scrape}"))
            .parse()
            .unwrap()
    }
}

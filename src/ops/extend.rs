//! `sandbox extend`: move a sandbox's expiry, which counts as using it.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::kube::ClusterOptions;
use crate::pipeline::config::Config;
use crate::record::{self, Update};

/// Give the product's sandbox of `branch` `ttl` from now.
pub(crate) struct ExtendRequest<'a> {
    pub(crate) config: &'a Config,
    pub(crate) branch: &'a str,
    pub(crate) ttl: Duration,
}

/// Which sandbox now expires when.
pub(crate) struct Extended {
    pub(crate) namespace: String,
    pub(crate) expires: jiff::Timestamp,
}

pub(crate) async fn extend(
    request: &ExtendRequest<'_>,
    cluster: &ClusterOptions,
) -> Result<Extended> {
    let ExtendRequest {
        config,
        branch,
        ttl,
    } = request;
    let (cluster, namespace) =
        super::locate(cluster, config, branch, "cannot extend the sandbox").await?;
    record::ensure_ours(&cluster, &namespace, &config.name).await?;
    let ttl = jiff::SignedDuration::try_from(*ttl).context("the TTL is too long")?;
    let expires = jiff::Timestamp::now()
        .checked_add(ttl)
        .context("the TTL is too long")?;
    // Extending counts as using it: the idle clock starts again.
    let update = Update {
        expires_at: Some(expires),
        last_used: Some(jiff::Timestamp::now()),
        ..Update::default()
    };
    record::update(&cluster, &namespace, update).await?;
    Ok(Extended { namespace, expires })
}

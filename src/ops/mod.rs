//! The operations: one module per thing a user (or `sandbox serve`) asks of the tool. Each takes
//! a typed request and returns a typed report; the command layer (`app`) turns flags
//! into requests and prints reports, and serve builds the same requests with its own rules
//! (what it may delete, whom it grants access, which failures it records). Nothing here knows
//! of clap or of the terminal beyond the progress [`Reporter`](crate::progress::Reporter).
//!
//! | operation | module |
//! |---|---|
//! | `up` | [`up`] (with the product's caps, `--on-failure rollback`) |
//! | `down`, `down --dry-run` | [`down`] |
//! | `sleep`, `wake` | [`sleep`] |
//! | `extend` | [`extend`] |
//! | `render`, `values` | [`render`] |
//! | `images` | [`images`] |
//! | `init` | [`init`] |
//! | `diff` | [`diff`] |
//! | `validate` | [`validate`] |
//! | `list`, `status`, `logs` | [`inspect`] |
//! | `reap`, `down --all-expired`, `reaper-manifests` | [`reap`] |
//! | `cache prune` | [`cache`] |
//! | `schema`, `schema --markdown` | [`schema`] |
//! | `rbac user` | [`rbac`] |
//!
//! Below this layer, the pipeline's stages and their connector (`crate::pipeline`), whose
//! `prepare` is the one sequence of stages 2–5 every rendering operation goes through.

pub(crate) mod cache;
pub(crate) mod diff;
pub(crate) mod down;
pub(crate) mod extend;
pub(crate) mod images;
pub(crate) mod init;
pub(crate) mod inspect;
pub(crate) mod rbac;
pub(crate) mod reap;
pub(crate) mod render;
pub(crate) mod schema;
pub(crate) mod sleep;
pub(crate) mod up;
pub(crate) mod validate;

use anyhow::Context;

use crate::kube::{connect, Cluster, ClusterOptions};
use crate::pipeline::config::Config;
use crate::record;

pub(crate) use self::up::{up, Interrupted, OnFailure, UpOptions, UpRequest};

crate::error::hint_registry!(
    hints_of,
    REGISTERED,
    fallback = crate::pipeline::hints_of,
    [up::Interrupted, up::caps::CapError]
);

/// Connect (failing with "`purpose`" when the cluster does not answer) and find the product's
/// sandbox of `branch`: its namespace, by an older name if that is where it is.
async fn locate(
    options: &ClusterOptions,
    config: &Config,
    branch: &str,
    purpose: &'static str,
) -> anyhow::Result<(Cluster, String)> {
    let cluster = connect(options).await.context(purpose)?;
    let namespace = sandbox_namespace(&cluster, config, branch).await?;
    Ok((cluster, namespace))
}

/// The namespace of the product's sandbox of `branch` (by an older name, if that is where it is).
async fn sandbox_namespace(
    cluster: &Cluster,
    config: &Config,
    branch: &str,
) -> anyhow::Result<String> {
    let prefix = &config.namespace_prefix;
    Ok(record::locate(cluster, prefix, branch, &config.name).await?)
}

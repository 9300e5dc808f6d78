//! `sandbox validate`: the config and every template render, and — when a cluster answers —
//! the server accepts every object in a dry run.

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Patch, PatchParams};

use crate::kube::{Cluster, ClusterOptions, FIELD_MANAGER};
use crate::object::Object;
use crate::pipeline::images::Mode;
use crate::pipeline::plan::Plan;
use crate::pipeline::settings::Settings;
use crate::pipeline::{prepare, Secrets, Target};
use crate::progress::Reporter;
use crate::record::{self, Lookup};

/// How long `validate` waits for a cluster before it validates offline.
const CLUSTER_WAIT: Duration = Duration::from_secs(10);

/// What `validate` found: what renders, then what the server said.
pub(crate) struct Validated {
    pub(crate) services: usize,
    pub(crate) objects: usize,
    pub(crate) server: ServerCheck,
}

/// The server's part of `validate`.
pub(crate) enum ServerCheck {
    /// Every object accepted in a server-side dry run at `server`.
    Accepted { server: String, objects: usize },
    /// The server refused an object (the rendering itself was fine).
    Refused(anyhow::Error),
    /// No cluster answered: charts were rendered for this Kubernetes version (`helm:` in
    /// sandbox.yaml) and no dry run was made.
    Skipped { kube_version: String },
}

/// `sandbox validate`: charts are rendered and images resolved for the cluster when one answers
/// within 10 s, as `up` would; else offline.
pub(crate) async fn validate(
    settings: &Settings,
    cluster: &ClusterOptions,
    reporter: &Reporter,
) -> Result<Validated> {
    let target = Target::Reachable {
        options: cluster,
        wait: CLUSTER_WAIT,
        mode: Mode::Resolve,
    };
    let prepared = prepare(settings, Secrets::Reveal, target, reporter).await?;
    let plan = &prepared.plan;
    let server = match &prepared.cluster {
        Some(cluster) => match dry_run_on_server(cluster, plan, &settings.config.name).await {
            Ok(objects) => ServerCheck::Accepted {
                server: cluster.server.clone(),
                objects,
            },
            Err(error) => ServerCheck::Refused(error),
        },
        None => ServerCheck::Skipped {
            kube_version: prepared.capabilities.kube_version.clone(),
        },
    };
    Ok(Validated {
        services: settings.config.services.len(),
        objects: plan.objects().count(),
        server,
    })
}

/// Server-side dry run of every object (into the sandbox's namespace if it exists, else into
/// `default`, which checks the objects' schema and admission without creating anything).
async fn dry_run_on_server(cluster: &Cluster, plan: &Plan, product: &str) -> Result<usize> {
    let target = match record::fetch(cluster, &plan.namespace, product).await? {
        Lookup::Absent => "default".to_owned(),
        _ => plan.namespace.clone(),
    };
    let dry_run = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let mut count = 0;
    for object in plan.objects() {
        let mut object = object.clone();
        object["metadata"]["namespace"] = target.clone().into();
        let (api_version, kind, name) = (object.api_version(), object.kind(), object.name());
        let (resource, caps) = cluster.resolve(api_version, kind).with_context(|| {
            format!("the cluster does not serve {api_version} {kind} (object `{name}`)")
        })?;
        cluster
            .dynamic_api(&resource, &caps, &target)
            .patch(name, &dry_run, &Patch::Apply(&object))
            .await
            .with_context(|| format!("the server refuses {kind} `{name}`"))?;
        count += 1;
    }
    Ok(count)
}

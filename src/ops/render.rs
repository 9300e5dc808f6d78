//! `sandbox render` and `sandbox values`: what a branch renders to, offline — charts rendered
//! for `helm:` in sandbox.yaml, images not resolved, secrets redacted unless revealed.

use anyhow::Result;

use crate::pipeline::images::Mode;
use crate::pipeline::plan::Plan;
use crate::pipeline::settings::{unknown_service, Settings};
use crate::pipeline::{prepare, Secrets, Target};
use crate::progress::Reporter;

/// `render`, or `values` of one service.
pub(crate) struct RenderRequest<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) secrets: Secrets,
    /// Only this service (an unknown one is an error before anything is checked out).
    pub(crate) service: Option<&'a str>,
}

/// `sandbox render`: the plan (every service's, even with `service`: the printer filters, as
/// dependencies are named across services).
pub(crate) async fn render(request: &RenderRequest<'_>, reporter: &Reporter) -> Result<Plan> {
    check_service(request)?;
    let target = Target::Local(Mode::Offline);
    let prepared = prepare(request.settings, request.secrets, target, reporter).await?;
    Ok(prepared.plan)
}

/// `sandbox values SERVICE`: the merged values the service's templates see — or, for a chart,
/// what the chart is given (its values and the sandbox's context under `global.sandbox`).
pub(crate) async fn values(
    request: &RenderRequest<'_>,
    reporter: &Reporter,
) -> Result<serde_json::Value> {
    check_service(request)?;
    let service = request.service.expect("values are of one service");
    let target = Target::Local(Mode::Offline);
    let prepared = prepare(request.settings, request.secrets, target, reporter).await?;
    Ok(match prepared.chart_values.get(service) {
        Some(given) => given.clone(),
        None => {
            let values = &prepared.values[service];
            match request.secrets {
                Secrets::Reveal => values.reveal().clone(),
                Secrets::Redact => values.redacted(),
            }
        }
    })
}

fn check_service(request: &RenderRequest<'_>) -> Result<()> {
    let config = &request.settings.config;
    if let Some(name) = request.service {
        if config.service(name).is_none() {
            anyhow::bail!("{}", unknown_service(config, name));
        }
    }
    Ok(())
}

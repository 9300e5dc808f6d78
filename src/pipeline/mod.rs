//! The pipeline's stages: one module per stage, each a small typed interface, data flowing one
//! way. A stage imports only the stages before it (and the shared foundations: `kube`,
//! `object`, `record`, `lock`, `progress`, `redact`, `error`); the connector — [`settings`]
//! (what a run is about), [`context`] (what templates see) and [`prepare`] (stages 2–5 for a
//! target) — joins them. The operations that run them (`up`, `down`, …) are the layer above,
//! `ops`.
//!
//! 1. [`config`]: `sandbox.yaml` → `Config`
//! 2. [`checkout`]: repos + branch → `Checkout`s
//! 3. [`values`] (+ [`sops`]): defaults, values files, decrypted secrets, `--set` → `Values`;
//!    [`images`]: each service's image for its commit → resolved to a digest (built if missing)
//! 4. [`render`]: templates + [`context`] → `Manifest`s; [`chart`]: a chart + values → the real
//!    `helm template` → `Manifest`s, its hooks sorted onto preflight, post-install and smoke
//! 5. [`plan`]: rendered services → `Plan` (labels, dependency steps, preflight, smoke)
//! 6. [`apply`] + [`wait`] (+ [`inventory`]): `Plan` → deployed objects, ready
//! 7. [`smoke`]: smoke Jobs
//! 8. [`handover`]: URL and report

pub(crate) mod apply;
pub(crate) mod chart;
pub(crate) mod checkout;
pub(crate) mod config;
pub(crate) mod handover;
pub(crate) mod images;
pub(crate) mod inventory;
pub(crate) mod plan;
pub(crate) mod render;
pub(crate) mod smoke;
pub(crate) mod sops;
pub(crate) mod values;
pub(crate) mod wait;

pub(crate) mod context;
pub(crate) mod prepare;
pub(crate) mod settings;

pub(crate) use self::prepare::{prepare, Prepared, Secrets, Target};
pub(crate) use self::settings::{Environment, Pin, Settings};

crate::error::hint_registry!(
    hints_of,
    REGISTERED,
    fallback = several_or_below,
    [
        // The foundations' errors, listed here because the foundations sit below any registry.
        crate::kube::ClusterError,
        crate::outage::ApiUnreachable,
        crate::lock::LockError,
        crate::access::AccessError,
        crate::record::RecordError,
        crate::yaml::YamlTooLarge,
        crate::logging::FilterError,
        crate::net::CaFileError,
        crate::net::UntrustedCertificate,
        config::ConfigError,
        checkout::CheckoutError,
        checkout::RepoFileError,
        checkout::PruneError,
        sops::SopsError,
        values::ValuesError,
        images::ImagesError,
        images::RegistryError,
        images::HelperError,
        render::RenderError,
        render::helpers::HelperError,
        chart::ChartError,
        plan::PlanError,
        inventory::InventoryError,
        wait::WaitError,
        apply::ApplyError,
        smoke::SmokeError,
        handover::HandoverError,
    ]
);

/// Several repos may fail at once: each offers its own hint.
fn several_or_below(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    match e.downcast_ref::<checkout::CheckoutErrors>() {
        Some(errors) => errors
            .errors()
            .iter()
            .filter_map(crate::error::Hint::hint)
            .collect(),
        None => crate::error::no_hints(e),
    }
}

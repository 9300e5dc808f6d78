//! The pipeline of `sandbox up`: one module per stage, each a small typed interface, data
//! flowing one way. A stage imports only the stages before it (and the shared foundations:
//! `kube`, `object`, `record`, `lock`, `progress`, `error`); [`up`] connects them.
//!
//! 1. [`config`]: `sandbox.yaml` → `Config`
//! 2. [`checkout`]: repos + branch → `Checkout`s
//! 3. [`values`] (+ [`sops`]): defaults, values files, decrypted secrets, `--set` → `Values`
//! 4. [`render`]: templates + context → `Manifest`s
//! 5. [`plan`]: rendered services → `Plan` (labels, dependency steps, preflight, smoke)
//! 6. [`apply`] + [`wait`] (+ [`inventory`]): `Plan` → deployed objects, ready
//! 7. [`smoke`]: smoke Jobs
//! 8. [`handover`]: URL and report

pub mod apply;
pub mod checkout;
pub mod config;
pub mod handover;
pub mod inventory;
pub mod plan;
pub mod render;
pub mod smoke;
pub mod sops;
pub mod values;
pub mod wait;

pub mod up;

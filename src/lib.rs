//! sandbox: every branch its own complete, isolated copy of a multi-service product.
//!
//! The pipeline of `sandbox up` is the architecture: [`pipeline`] holds one module per stage and
//! the connector that joins them, data flowing one way:
//!
//! config → checkout → values (+ sops) → render → plan → apply + wait → smoke → handover
//!
//! Below it, the foundations every layer shares: the cluster connection ([`kube`]), the identity
//! of objects (`object`), the sandbox's record on its namespace ([`record`]), the lock (`lock`), who may work in a sandbox (`access`),
//! progress and secret scrubbing (`progress`, `redact`), words, sizes and YAML texts (`text`,
//! `yaml`) and errors ([`error`]). Above it, the
//! lifecycle operations (`diff`, `inspect`, `reap`), the webhook service ([`serve`]), and the
//! command layer ([`app`]) that [`cli`]'s parsed arguments go to. Arrows only point down; the
//! test `tests/architecture.rs` checks it.

// The command line and its entry point (used by the binary).
pub mod app;
pub mod cli;
pub mod error;

// Foundations.
mod access;
mod kube;
mod lock;
mod logging;
mod net;
mod object;
mod outage;
mod program;
mod progress;
pub mod record;
mod redact;
mod table;
mod text;
mod yaml;

// The pipeline's stages and their connector.
mod pipeline;

// The operations, one per thing a user or serve asks (up, down, sleep, diff, …).
mod ops;

// The webhook service.
pub mod serve;

// Property tests of every parser of untrusted input.
#[cfg(test)]
mod properties;

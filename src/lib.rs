//! sandbox: every branch its own complete, isolated copy of a multi-service product.
//!
//! The pipeline of `sandbox up` is the architecture; each stage is a module with a small typed
//! interface and data flows one way:
//!
//! config → checkout → values (+ sops) → render → plan → apply + wait → smoke → handover
//!
//! [`up`] connects the stages; [`commands`] runs each command; [`cli`] only parses arguments.

pub mod cli;
pub mod commands;
pub mod error;
pub mod progress;

pub mod config;
pub mod checkout;
pub mod values;
pub mod sops;
pub mod render;
pub mod plan;
pub mod kube;
pub mod apply;
pub mod wait;
pub mod smoke;
pub mod handover;
pub mod up;

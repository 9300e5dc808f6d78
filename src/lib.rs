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

pub mod apply;
pub mod checkout;
pub mod config;
pub mod handover;
pub mod inventory;
pub mod kube;
pub mod lock;
pub mod plan;
pub mod render;
pub mod smoke;
pub mod sops;
pub mod up;

pub mod diff;
pub mod inspect;
pub mod reap;
pub mod serve;
pub mod values;
pub mod wait;

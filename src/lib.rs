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

pub mod kube;
pub mod lock;
#[allow(dead_code)] // wired in by the next commits
mod object;
pub mod pipeline;
#[allow(dead_code)] // wired in by the next commits
mod record;

pub mod diff;
pub mod inspect;
pub mod reap;
pub mod serve;

//! What `sandbox`'s tests share, as a crate of its own (a dev-dependency): the unit tests of
//! `src/serve` and the end-to-end tests (`tests/e2e/serve_support.rs`) both `use` it, and it
//! uses nothing of `sandbox`.
//!
//! - [`fake_github`]: a stand-in for GitHub's REST API and a Slack webhook on 127.0.0.1 that
//!   records every call.

pub mod fake_github;

//! End-to-end tests: the real `sandbox` binary, real git repositories made by the tests, files
//! encrypted by the real sops, and the real local cluster (`scripts/local-cluster`).
//!
//! Every test works in a namespace of its own so they run in parallel. A test's namespace is
//! deleted when it passes and kept when it fails, for inspection; a stale one is swept at start.
//! Without a reachable cluster these tests print that they are skipped — unless `CI=true`, where a
//! missing cluster is a failure.

mod support;

mod bad_input;
mod cache;
mod charts;
mod cluster;
mod company_network;
mod hostile_network;
mod hostile_pods;
mod hostile_rbac;
mod hostile_secrets;
mod hostile_serve;
mod hostile_tree;
mod images;
mod init;
mod isolation;
mod lifecycle;
mod lock;
mod outage;
mod serve;
mod serve_chart;
mod serve_ha;
mod serve_support;
mod up;
mod verbosity;

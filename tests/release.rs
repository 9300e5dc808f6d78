//! The release's pieces agree with each other: `deploy/serve.yaml` is exactly the chart's
//! rendering (`scripts/release serve-yaml`), the chart's version is Cargo's, its reaper is what
//! `sandbox reaper-manifests` prints, every pod it makes runs locked down, and the license files
//! are the ones the license field names. (The packaged chart installing and serving: the
//! end-to-end test `serve_chart`.)
//!
//! Needs `helm` (scripts/setup installs it); without it these checks are skipped, unless
//! `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether helm runs here; a skipped check says so (and fails under CI).
fn helm_available(test: &str) -> bool {
    let runs = Command::new("helm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: CI=true but helm does not run (scripts/setup installs it)"
        );
        eprintln!("{test}: skipped: helm is not installed (scripts/setup installs it)");
    }
    runs
}

fn stdout_of(command: &mut Command) -> String {
    let out = command.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every YAML document of `text` (empty ones left out).
fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// `helm template` of the chart with the release name `sandbox-serve` and `args`.
fn render(args: &[&str]) -> Vec<Value> {
    let chart = root().join("deploy/chart");
    documents(&stdout_of(
        Command::new("helm")
            .args(["template", "sandbox-serve"])
            .arg(&chart)
            .args(["--namespace", "sandbox-system"])
            .args(args),
    ))
}

#[test]
fn deploy_serve_yaml_is_the_charts_rendering() {
    if !helm_available("deploy/serve.yaml") {
        return;
    }
    let rendered = stdout_of(Command::new(root().join("scripts/release")).arg("serve-yaml"));
    let checked_in = std::fs::read_to_string(root().join("deploy/serve.yaml")).unwrap();
    assert!(
        checked_in == rendered,
        "deploy/serve.yaml is not the chart's rendering: regenerate it with \
         `scripts/release serve-yaml > deploy/serve.yaml`"
    );
}

#[test]
fn the_chart_lints_and_carries_cargos_version() {
    if !helm_available("helm lint") {
        return;
    }
    stdout_of(
        Command::new("helm")
            .arg("lint")
            .arg(root().join("deploy/chart")),
    );
    let chart: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/chart/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        chart["version"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion"
    );
}

#[test]
fn the_charts_reaper_is_what_reaper_manifests_prints() {
    if !helm_available("the chart's reaper") {
        return;
    }
    // No cluster to ask (a kubeconfig that does not exist): batch/v1, no admission policy.
    let printed = documents(&stdout_of(
        Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .args(["reaper-manifests", "--cronjob-api-version", "batch/v1"])
            .args(["--kubeconfig", "/nonexistent/kubeconfig"]),
    ));
    let chart = render(&[]);
    let (ours, theirs) = (
        find(&chart, "ClusterRole", "sandbox-serve-reaper"),
        find(&printed, "ClusterRole", "sandbox-reaper"),
    );
    assert_eq!(ours["rules"], theirs["rules"], "the reaper's rights");
    let job = |docs: &[Value], name: &str| {
        find(docs, "CronJob", name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
            [0]["args"]
            .clone()
    };
    assert_eq!(
        job(&chart, "sandbox-serve-reaper"),
        job(&printed, "sandbox-reaper"),
        "the reaper's command"
    );
}

/// serve and the reaper run non-root, on a read-only root filesystem, without privilege
/// escalation or capabilities, under the runtime's seccomp profile (docs/install.md says so).
#[test]
fn every_pod_of_the_chart_runs_locked_down() {
    if !helm_available("locked-down pods") {
        return;
    }
    let chart = render(&[]);
    let pods = [
        find(&chart, "Deployment", "sandbox-serve")["spec"]["template"]["spec"].clone(),
        find(&chart, "CronJob", "sandbox-serve-reaper")["spec"]["jobTemplate"]["spec"]["template"]
            ["spec"]
            .clone(),
    ];
    for pod in pods {
        let security = &pod["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{pod}");
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{pod}"
        );
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{container}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{container}");
            assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        }
    }
    // Secrets only by reference: no Secret object, whatever the values.
    assert!(!chart.iter().any(|d| d["kind"] == "Secret"));
}

#[test]
fn the_license_files_are_those_the_license_field_names() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("\nlicense = \"MIT OR Apache-2.0\"\n"));
    let text = |file: &str| std::fs::read_to_string(root().join(file)).unwrap();
    assert!(text("LICENSE-MIT").starts_with("MIT License"));
    assert!(
        text("LICENSE-APACHE").contains("Apache License\n                           Version 2.0")
    );
    let changelog = text("CHANGELOG.md");
    let entry = format!("\n## [{}] - ", env!("CARGO_PKG_VERSION"));
    assert!(
        changelog.contains(&entry),
        "CHANGELOG.md has no entry {entry:?}"
    );
    assert!(Path::new(&root().join("Containerfile")).is_file());
}

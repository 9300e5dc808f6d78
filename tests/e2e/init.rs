//! `sandbox init` on the example's repositories writes a config that `validate` and `render`
//! accept, with its schema beside it, and never overwrites a file.

use std::process::Command;

use crate::support::{run_failing, run_ok, Product};

/// `sandbox` as the product runs it, but in `dir`.
fn sandbox_in(product: &Product, dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = product.sandbox(args);
    cmd.current_dir(dir);
    cmd
}

#[test]
fn init_on_the_example_repositories_writes_a_config_validate_and_render_accept() {
    let product = Product::new("init");
    let dir = product.path().join("fresh");
    std::fs::create_dir_all(&dir).unwrap();
    let repos = product.path().join("repos");
    let repo = |name: &str| format!("{name}={}", repos.join(format!("{name}.git")).display());
    let (data, backend, frontend) = (repo("data"), repo("backend"), repo("frontend"));
    let init = [
        "init",
        "--repo",
        &data,
        "--repo",
        &backend,
        "--repo",
        &frontend,
        // The local cluster's registry (SANDBOX_REGISTRY) speaks plain HTTP.
        "--insecure-registry",
    ];
    let out = run_ok(&mut sandbox_in(&product, &dir, &init));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("wrote ./sandbox.yaml"), "{stdout}");
    let config = std::fs::read_to_string(dir.join("sandbox.yaml")).unwrap();
    assert!(
        config.starts_with("# yaml-language-server: $schema=sandbox.schema.json\n"),
        "{config}"
    );
    assert!(
        config.contains("\napiVersion: sandbox.dev/v1\n"),
        "{config}"
    );
    let schema = std::fs::read_to_string(dir.join("sandbox.schema.json")).unwrap();
    assert!(schema.contains("\"additionalProperties\": false"));

    run_ok(&mut sandbox_in(
        &product,
        &dir,
        &["validate", "--branch", "main"],
    ));
    let out = run_ok(&mut sandbox_in(
        &product,
        &dir,
        &["render", "--branch", "feature-x", "-o", "name"],
    ));
    let objects = String::from_utf8_lossy(&out.stdout);
    for object in [
        "deployment.apps/backend",
        "deployment.apps/web",
        "deployment.apps/gateway",
    ] {
        assert!(
            objects.lines().any(|l| l == object),
            "{object} in:\n{objects}"
        );
    }

    // Never over a file that is there: the config is as it was.
    let stderr = run_failing(&mut sandbox_in(&product, &dir, &init));
    assert!(stderr.contains("sandbox.yaml exists already"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("sandbox.yaml")).unwrap(),
        config
    );
}

#[test]
fn init_in_a_checkout_reads_its_committed_tree() {
    let product = Product::new("init-here");
    let work = product.path().join("frontend");
    let bare = product.path().join("repos/frontend.git");
    run_ok(
        Command::new("git")
            .args(["clone", "-q"])
            .arg(&bare)
            .arg(&work),
    );
    run_ok(&mut sandbox_in(&product, &work, &["init"]));
    let config = std::fs::read_to_string(work.join("sandbox.yaml")).unwrap();
    // The clone's origin is the URL a sandbox fetches from.
    assert!(
        config.contains(&format!("url: {}", bare.display())),
        "{config}"
    );
    assert!(config.contains("chart: web"), "{config}");
    run_ok(&mut sandbox_in(
        &product,
        &work,
        &["render", "--branch", "main", "-o", "name"],
    ));
}

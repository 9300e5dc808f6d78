//! `-v`, `--debug` and `RUST_LOG` on the real cluster: kube's own events and a summary of every
//! API request become visible, nothing secret at any level, and without the flags the output is
//! what it always was.

use crate::support::{cluster, describe, Product, TestNamespace};

/// The example's decrypted database password: it must never show.
const DB_PASSWORD: &str = "sandbox-demo-db-password-7f3a";

#[tokio::test]
async fn verbose_up_shows_kube_events_and_api_requests_and_no_secret() {
    let Some(client) = cluster("-vvv --debug").await else {
        return;
    };
    let product = Product::new("verbose");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;

    let mut cmd = product.sandbox(&["up", "--branch", "feature-x", "-vvv", "--debug"]);
    cmd.env_remove("RUST_LOG");
    let out = cmd.output().unwrap();
    let text = describe(&cmd, &out);
    assert!(out.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.trim().starts_with("http://") && stdout.trim().lines().count() == 1,
        "stdout carries only the URL, whatever the verbosity: {stdout}"
    );
    // The summary of each request, on the tool's own lines (a path with `=` in its query is
    // quoted).
    let namespace_path = format!("/api/v1/namespaces/{}?", ns.name);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("event=api.request method=PATCH path=")
                && l.contains(&namespace_path)
                && l.contains(" status=200 took=")),
        "no PATCH of {namespace_path}…:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("event=api.request method=GET path=/version status=200 took=")),
        "{stderr}"
    );
    // kube's own events (its request spans, at debug).
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("event=requesting") && l.contains("target=kube_client")),
        "no kube event:\n{stderr}"
    );
    // Nothing secret: no decrypted value, no credentials, no headers.
    assert!(!stderr.contains(DB_PASSWORD), "a secret leaked");
    let lower = stderr.to_lowercase();
    // (`authorization.k8s.io` is an API group discovery reads: the header is what must not show.)
    for word in ["authorization:", "\"authorization\"", "bearer "] {
        assert!(!lower.contains(word), "`{word}` in the diagnostics");
    }

    // Without flags: no diagnostic line at all, as before.
    let mut cmd = product.sandbox(&["list"]);
    cmd.env_remove("RUST_LOG");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("level="), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&ns.name));

    // `--debug` alone: only the request summaries; RUST_LOG chooses when set.
    let mut cmd = product.sandbox(&["list", "--debug"]);
    cmd.env_remove("RUST_LOG");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"event=api.request method=GET path="/api/v1/namespaces?&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsandbox" status=200"#
        ),
        "{stderr}"
    );
    assert!(
        stderr.lines().all(|l| l.contains("event=api.request")),
        "{stderr}"
    );
    let mut cmd = product.sandbox(&["list"]);
    cmd.env("RUST_LOG", "kube_client=debug");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("target=kube_client"), "{stderr}");
    assert!(!stderr.contains("event=api.request"), "{stderr}");
    let mut cmd = product.sandbox(&["list"]);
    cmd.env("RUST_LOG", "kube=loud");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&cmd, &out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RUST_LOG=`kube=loud` is not a log filter"),
        "{}",
        describe(&cmd, &out)
    );
}

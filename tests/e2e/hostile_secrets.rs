//! Hostile branches against what is shown (issue 23, holes 9 and 12): a chart that prints a
//! decrypted value transformed, containers that print terminal control sequences, and a branch
//! named like another branch's old namespace.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use sha2::Digest as _;

use crate::support::{cluster, describe, run_failing, versions, Product, TestNamespace};

/// The password in the example's `db/secrets.sops.yaml` (encrypted by the real sops).
const SECRET: &str = "sandbox-demo-db-password-7f3a";

/// Every form of [`SECRET`] the chart below prints.
fn printed_forms() -> Vec<String> {
    let once = STANDARD.encode(SECRET);
    vec![
        SECRET.to_owned(),
        SECRET.to_uppercase(),
        once.clone(),
        STANDARD.encode(&once),
        // The middle of each, in case only the edges were cut.
        SECRET.to_uppercase()[4..20].to_owned(),
        STANDARD.encode(&once)[8..30].to_owned(),
    ]
}

/// `up` gives the chart the real values (`render` gives it `<redacted>` unless `--reveal`).
#[tokio::test]
async fn a_charts_fail_message_shows_no_form_of_a_sops_secret() {
    let Some(client) = cluster("a chart's fail prints a secret").await else {
        return;
    };
    let product = Product::new("hs-fail");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let sops_file = crate::support::root().join("example/repos/data/db/secrets.sops.yaml");
    product.commit("frontend", "feature-x", "web prints its secret", |dir| {
        std::fs::copy(&sops_file, dir.join("web/secrets.sops.yaml")).unwrap();
        std::fs::write(
            dir.join("web/templates/leak.yaml"),
            "{{ fail (printf \"twice=%s upper=%s quoted=%s\" (.Values.password | b64enc | b64enc) (.Values.password | upper) (.Values.password | b64enc | quote)) }}\n",
        )
        .unwrap();
    });
    product.edit_config(
        "    chart: web\n",
        "    chart: web\n    secrets_files: [web/secrets.sops.yaml]\n",
    );
    let stderr = run_failing(&mut product.sandbox(&["up", "--branch", "feature-x"]));
    assert!(stderr.contains("leak.yaml"), "{stderr}");
    assert!(
        stderr.contains("twice=<redacted> upper=<redacted> quoted=\"<redacted>\""),
        "{stderr}"
    );
    for form in printed_forms() {
        assert!(!stderr.contains(&form), "`{form}` shown:\n{stderr}");
    }
    assert!(!ns.exists().await, "nothing was made");
}

/// A product of one service (the data repo's `cache`, on busybox), and `smoke` if given: quick
/// to bring up.
fn one_service_product(name: &str, smoke: &str) -> Product {
    let product = Product::new(name);
    let config = format!(
        "name: shop\nnamespace_prefix: {}\nttl: 2d\ntimeouts:\n  service: 120s\n  smoke: 60s\nurl:\n  service: cache\nrepos:\n  data:\n    url: ${{SANDBOX_EXAMPLE_REPOS}}/data.git\nservices:\n  cache:\n    repo: data\n    templates: [templates/service.yaml]\n{smoke}    values: {{script: cache/run.sh}}\n    values_files: [cache/values.yaml]\n",
        product.prefix
    );
    std::fs::write(product.path().join("sandbox.yaml"), config).unwrap();
    product
}

/// What must not reach a terminal: ESC, BEL, the 8-bit CSI and OSC, carriage returns.
fn assert_no_controls(what: &str, text: &str) {
    for c in ['\u{1b}', '\u{7}', '\u{9b}', '\u{9d}', '\r'] {
        assert!(!text.contains(c), "{what} shows {c:?}:\n{text:?}");
    }
}

#[tokio::test]
async fn container_logs_are_relayed_without_terminal_control_sequences() {
    let Some(client) = cluster("control sequences in logs").await else {
        return;
    };
    let product = one_service_product("hs-ansi", "    smoke: [templates/smoke-ansi.yaml]\n");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    // The cache prints colours, a hyperlink and a carriage return; the smoke test a window
    // title, a clipboard write and colours, then fails.
    product.commit("data", "main", "a colourful cache", |dir| {
        let script = dir.join("cache/run.sh");
        let text = std::fs::read_to_string(&script).unwrap().replacen(
            "set -e\n",
            "set -e\nprintf '\\033[32mCACHE-GREEN\\033[0m \\033]8;;http://evil.example\\033\\\\cache-link\\033]8;;\\033\\\\ hidden\\rcache-after\\n'\n",
            1,
        );
        std::fs::write(&script, text).unwrap();
    });
    std::fs::write(
        product.path().join("templates/smoke-ansi.yaml"),
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: smoke-ansi\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n        - name: smoke\n          image: docker.io/local/busybox:1\n          imagePullPolicy: IfNotPresent\n          command:\n            - sh\n            - -c\n            - |\n              printf '\\033]0;SMOKE-TITLE\\007\\033[31mSMOKE-RED\\033[0m \\033]52;c;ZXZpbA==\\007smoke-after\\n'\n              exit 1\n",
    )
    .unwrap();
    let mut up = product.sandbox(&["up", "--branch", "feature-x"]);
    let out = up.output().unwrap();
    let shown = describe(&up, &out);
    assert!(!out.status.success(), "the smoke test fails:\n{shown}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SMOKE-RED smoke-after"), "{shown}");
    assert!(!stderr.contains("SMOKE-TITLE"), "{shown}");
    assert_no_controls("up", &stderr);

    let mut logs = product.sandbox(&["logs", "cache", "--branch", "feature-x"]);
    let out = logs.output().unwrap();
    let shown = describe(&logs, &out);
    assert!(out.status.success(), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CACHE-GREEN cache-link hiddencache-after"),
        "{shown}"
    );
    assert!(!stdout.contains("evil.example"), "{shown}");
    assert_no_controls("sandbox logs", &stdout);
    drop(ns);
}

/// The name versions before 0.2 gave `branch`'s sandbox: 6 hex digits of its SHA-256 after `-`.
fn legacy_namespace(prefix: &str, label: &str, branch: &str) -> String {
    let hash = hex::encode(sha2::Sha256::digest(branch.as_bytes()));
    format!("{prefix}{label}-{}", &hash[..6])
}

#[tokio::test]
async fn a_branch_named_like_another_branchs_old_namespace_does_not_take_it_over() {
    let Some(client) = cluster("legacy namespace of another branch").await else {
        return;
    };
    let product = one_service_product("hs-legacy", "");
    // `feature/x`'s sandbox, made by a version before 0.2.
    let old = legacy_namespace(&product.prefix, "feature-x", "feature/x");
    let ns = TestNamespace::claim(&client, &old).await;
    let annotations = [
        ("sandbox.dev/branch", "feature/x"),
        ("sandbox.dev/owner", "someone-else"),
        ("sandbox.dev/status", "ready"),
    ];
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let made = Namespace {
        metadata: ObjectMeta {
            name: Some(old.clone()),
            labels: Some(
                [
                    ("app.kubernetes.io/managed-by", "sandbox"),
                    ("sandbox.dev/sandbox", "shop"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            ),
            annotations: Some(
                annotations
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &made)
        .await
        .unwrap();
    let before = namespaces.get(&old).await.unwrap().metadata;

    // The branch whose plain name is that namespace.
    let lookalike = old.strip_prefix(&product.prefix).unwrap().to_owned();
    assert_eq!(product.namespace(&lookalike), old);
    let refused =
        format!("namespace `{old}` is the sandbox of branch `feature/x`, not of `{lookalike}`");
    let stderr = run_failing(&mut product.sandbox(&["up", "--branch", &lookalike]));
    assert!(stderr.contains(&refused), "{stderr}");
    assert!(stderr.contains("rename this branch"), "{stderr}");
    let mut down = product.sandbox(&["down", "--branch", &lookalike]);
    let out = down.output().unwrap();
    assert!(!out.status.success(), "{}", describe(&down, &out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&refused),
        "{}",
        describe(&down, &out)
    );

    let after = namespaces.get(&old).await.unwrap().metadata;
    assert_eq!(
        after.annotations, before.annotations,
        "the record is unchanged"
    );
    assert_eq!(after.labels, before.labels);
    assert!(after.deletion_timestamp.is_none(), "not deleted");
    assert!(versions(&client, &old).await.is_empty(), "nothing deployed");
    drop(ns);
}

//! Bad input gets a clear error — what, where, what to do — and changes nothing in the cluster.

use std::path::Path;

use crate::support::{cluster, describe, root, run_failing, Product, TestNamespace};

const SECRET: &str = "sandbox-demo-db-password-7f3a";

/// Run `sandbox up --branch BRANCH` expecting failure; return stderr.
fn up_fails(product: &Product, branch: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec!["up", "--branch", branch];
    args.extend_from_slice(extra);
    let mut cmd = product.sandbox(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(sandbox::error::EXIT_FAILURE),
        "expected exit {}\n{}",
        sandbox::error::EXIT_FAILURE,
        describe(&cmd, &out)
    );
    assert!(
        out.stdout.is_empty(),
        "no URL on failure\n{}",
        describe(&cmd, &out)
    );
    assert!(
        stderr.starts_with("error: ") || stderr.contains("\nerror: "),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "a secret leaked:\n{stderr}");
    assert_no_secret_on_disk(product.path());
    stderr
}

fn assert_no_secret_on_disk(dir: &Path) {
    for entry in walk(dir) {
        if let Ok(bytes) = std::fs::read(&entry) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SECRET),
                "decrypted secret written to {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Assert (when a cluster is there) that the failed `up` created no namespace.
async fn assert_cluster_untouched(product: &Product, branch: &str, test: &str) {
    if let Some(client) = cluster(test).await {
        let name = product.namespace(branch);
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let found = namespaces
            .get_opt(&name)
            .await
            .expect("namespaces readable");
        assert!(
            found.is_none(),
            "namespace {name} was created by a failed up"
        );
    }
}

#[tokio::test]
async fn unknown_field_names_file_line_and_suggests() {
    let product = Product::new("bad-field");
    product.edit_config("    depends_on: [db, cache]", "    depnds_on: [db, cache]");
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(stderr.contains("sandbox.yaml:59:"), "{stderr}");
    assert!(stderr.contains("unknown field `depnds_on`"), "{stderr}");
    assert!(
        stderr.contains("hint: did you mean `depends_on`?"),
        "{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "unknown field").await;
}

#[tokio::test]
async fn dependency_cycle_is_named() {
    let product = Product::new("bad-cycle");
    product.edit_config(
        "  db:\n    repo: data\n",
        "  db:\n    repo: data\n    depends_on: [gateway]\n",
    );
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(
        stderr.contains("dependency cycle: db → gateway → web → api → db"),
        "{stderr}"
    );
    assert!(stderr.contains("sandbox.yaml:"), "{stderr}");
    assert_cluster_untouched(&product, "feature-x", "dependency cycle").await;
}

#[tokio::test]
async fn missing_template_value_names_template_line_and_path() {
    let product = Product::new("bad-value");
    let template = product.path().join("templates/db-credentials.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(
        &template,
        text.replace("type: Opaque", "type: {{values.secret_type}}"),
    )
    .unwrap();
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(
        stderr.contains("templates/db-credentials.yaml:6"),
        "{stderr}"
    );
    assert!(stderr.contains("values.secret_type"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    assert_cluster_untouched(&product, "feature-x", "missing value").await;
}

#[tokio::test]
async fn missing_branch_without_fallback_lists_what_exists() {
    let product = Product::new("bad-branch");
    product.edit_config(
        "    url: ${SANDBOX_EXAMPLE_REPOS}/data.git\n",
        "    url: ${SANDBOX_EXAMPLE_REPOS}/data.git\n    fallback_branch: release\n",
    );
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(stderr.contains("data"), "{stderr}");
    assert!(
        stderr.contains("feature-x") && stderr.contains("release"),
        "{stderr}"
    );
    assert!(
        stderr.contains("main"),
        "the branches that exist are listed:\n{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "missing branch").await;
}

#[tokio::test]
async fn wrong_age_key_is_refused_with_the_recipients() {
    let product = Product::new("bad-key");
    let other = root().join("tests/fixtures/sops/other-key.txt");
    let stderr = up_fails(
        &product,
        "feature-x",
        &[],
        &[("SOPS_AGE_KEY_FILE", other.to_str().unwrap())],
    );
    assert!(stderr.contains("db/secrets.sops.yaml"), "{stderr}");
    assert!(
        stderr.contains("age1cl4nlxqpkg25r545rcpu36lpy24gq2nself2ax7edtc2yck6v9yqgfx900"),
        "names the recipient:\n{stderr}"
    );
    assert!(stderr.contains("SOPS_AGE_KEY_FILE"), "{stderr}");
    assert_cluster_untouched(&product, "feature-x", "wrong key").await;
}

#[tokio::test]
async fn tampered_sops_file_is_refused() {
    let product = Product::new("bad-tamper");
    product.commit("data", "main", "tamper with the secrets", |work| {
        let path = work.join("db/secrets.sops.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        // Flip one character of the password's ciphertext.
        let start = text.find("password: ENC[AES256_GCM,data:").unwrap()
            + "password: ENC[AES256_GCM,data:".len();
        let mut bytes = text.into_bytes();
        bytes[start] = if bytes[start] == b'A' { b'B' } else { b'A' };
        std::fs::write(&path, bytes).unwrap();
    });
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(stderr.contains("db/secrets.sops.yaml"), "{stderr}");
    assert!(
        stderr.contains("password"),
        "names the key that fails:\n{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "tampered file").await;
}

#[tokio::test]
async fn unreachable_cluster_fails_fast_and_clearly() {
    let product = Product::new("bad-cluster");
    let kubeconfig = product.path().join("unreachable.kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let stderr = up_fails(
        &product,
        "feature-x",
        &["--kubeconfig", kubeconfig.to_str().unwrap()],
        &[],
    );
    assert!(
        stderr.contains("https://127.0.0.1:1") && stderr.contains("unreachable"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    eprintln!("unreachable cluster reported after {:?}", started.elapsed());
    assert_cluster_untouched(&product, "feature-x", "unreachable cluster").await;
}

#[tokio::test]
async fn image_that_cannot_be_pulled_fails_fast_with_a_diagnosis() {
    let Some(client) = cluster("image pull failure").await else {
        return;
    };
    let product = Product::new("bad-image");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let stderr = up_fails(
        &product,
        "feature-x",
        &[
            "--set",
            "cache.image=docker.io/local/no-such-image:1",
            "--on-failure",
            "destroy",
        ],
        &[],
    );
    assert!(
        stderr.contains("service `cache` did not become ready"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ErrImagePull") || stderr.contains("ImagePullBackOff"),
        "{stderr}"
    );
    assert!(
        stderr.contains("events of pod cache-"),
        "the pod's events are shown:\n{stderr}"
    );
    assert!(stderr.contains("hint: check the image name"), "{stderr}");
    // --on-failure destroy removed the sandbox this up created.
    assert!(!ns.exists().await, "the failed sandbox was not destroyed");
}

// --- chart services (web and gateway of the example are charts in the frontend repo) ---------

/// Commit `text` at `path` in the frontend repo's feature-x branch.
fn commit_to_frontend(product: &Product, path: &str, text: &str) {
    product.commit("frontend", "feature-x", "a broken chart", |dir| {
        std::fs::write(dir.join(path), text).unwrap();
    });
}

#[tokio::test]
async fn chart_directory_missing_is_named_with_where_it_was_looked_for() {
    let product = Product::new("bad-chart-dir");
    product.edit_config("    chart: web\n", "    chart: wbe\n");
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(
        stderr.contains(
            "error: service `web`: `wbe` (repo `frontend`, branch `feature-x`) does not exist"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: `chart` is relative to the root of repo `frontend`"),
        "{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "missing chart").await;
}

#[tokio::test]
async fn chart_template_syntax_error_is_helms_message_with_the_position() {
    let product = Product::new("bad-syntax");
    commit_to_frontend(
        &product,
        "web/templates/broken.yaml",
        "kind: ConfigMap\nname: {{ .Values.port \n",
    );
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(
        stderr.contains("error: service `web`: helm could not render chart `web` (repo `frontend`, branch `feature-x`): parse error at (web/templates/broken.yaml:3): unclosed action started at web/templates/broken.yaml:2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: fix the template at the position helm names"),
        "{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "chart syntax").await;
}

#[tokio::test]
async fn chart_required_value_missing_says_how_to_set_it() {
    let product = Product::new("bad-required");
    commit_to_frontend(
        &product,
        "web/templates/cdn.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-cdn\ndata:\n  url: {{ required \"web needs cdnUrl: where assets are served from\" .Values.cdnUrl | quote }}\n",
    );
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(
        stderr.contains("execution error at (web/templates/cdn.yaml:6:10): web needs cdnUrl: where assets are served from"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: the chart asks for a value: set it under the service's `values`, in a values file, or with `--set`; `sandbox values web` shows what the chart is given"),
        "{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "chart required").await;
    // With the value given, the same chart renders.
    let mut render = product.sandbox(&[
        "render",
        "--branch",
        "feature-x",
        "--set",
        "web.cdnUrl=https://cdn.example",
    ]);
    let out = render.output().unwrap();
    assert!(out.status.success(), "{}", describe(&render, &out));
}

#[tokio::test]
async fn chart_kube_version_the_cluster_does_not_meet_names_both() {
    // The constraint is checked against the cluster's own version: this needs the cluster.
    if cluster("chart kubeVersion").await.is_none() {
        return;
    }
    let product = Product::new("bad-chart-kube");
    product.commit("frontend", "feature-x", "web needs 1.23", |dir| {
        let path = dir.join("web/Chart.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("kubeVersion: \">=1.20.0-0\"", "kubeVersion: \">=1.23.0-0\"");
        assert!(text.contains(">=1.23.0-0"), "{text}");
        std::fs::write(path, text).unwrap();
    });
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(
        stderr.contains(
            "chart requires kubeVersion: >=1.23.0-0 which is incompatible with Kubernetes v1.20"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: helm was told Kubernetes v1.20"),
        "{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "chart kubeVersion").await;
}

#[tokio::test]
async fn helm_not_installed_is_named_with_how_to_install_it() {
    let product = Product::new("bad-no-helm");
    let stderr = up_fails(
        &product,
        "feature-x",
        &[],
        &[("SANDBOX_HELM", "/nonexistent/helm")],
    );
    assert!(
        stderr.contains("error: cannot render the chart services"),
        "{stderr}"
    );
    assert!(
        stderr.contains("helm is not installed: SANDBOX_HELM=/nonexistent/helm is not a file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: install helm 3.8.0 or newer (`scripts/setup` installs v4.1.4"),
        "{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "no helm").await;
}

#[tokio::test]
async fn a_cluster_scoped_kind_missing_from_any_list_is_refused_by_its_served_scope() {
    let Some(client) = cluster("cluster-scoped kind").await else {
        return;
    };
    let product = Product::new("bad-scope");
    // An IngressClass is cluster-wide: once applied it would be shared by every sandbox and
    // outlive `down`. Nothing names it in a list; discovery says it is cluster-scoped.
    std::fs::write(
        product.path().join("templates/ingress-class.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: e2e-bad-scope\nspec:\n  controller: example.com/none\n",
    )
    .unwrap();
    product.edit_config(
        "    templates: [templates/service.yaml]\n    values: {script: cache/run.sh}",
        "    templates: [templates/service.yaml, templates/ingress-class.yaml]\n    values: {script: cache/run.sh}",
    );
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(
        stderr.contains("IngressClass `e2e-bad-scope` is cluster-scoped on this cluster; a sandbox holds only namespaced objects"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: remove the object from the template or chart"),
        "{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "cluster-scoped kind").await;
    let classes: kube::Api<k8s_openapi::api::networking::v1::IngressClass> = kube::Api::all(client);
    assert!(classes.get_opt("e2e-bad-scope").await.unwrap().is_none());
}

// --- secrets in errors (issue 14, item 9) ---------------------------------------------------

/// Every form in which `secret` would show: itself, base64 (standard and URL-safe, padded or
/// not), and the middle of its base64 when it sits at an offset inside a longer encoded text.
fn encoded_forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let mut forms = vec![secret.to_owned(), serde_json::to_string(secret).unwrap()];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(secret));
    }
    for start in 0..3 {
        let middle = &secret.as_bytes()[start..];
        let groups = &middle[..middle.len() / 3 * 3];
        let encoded = STANDARD_NO_PAD.encode(groups);
        // Without the groups at its edges, which an encoding at an offset does not share.
        forms.push(encoded[4..encoded.len() - 4].to_owned());
    }
    forms
}

#[tokio::test]
async fn a_secret_a_crashing_pod_prints_is_scrubbed_from_stderr_in_every_form() {
    let Some(client) = cluster("secret in a crashing pod's log").await else {
        return;
    };
    let product = Product::new("leaky-log");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    // The database prints its password as itself, in base64, and inside base64 of a longer
    // text, then exits: the diagnosis shows the last lines of its log.
    product.commit("data", "main", "a database that leaks", |dir| {
        std::fs::write(
            dir.join("db/run.sh"),
            "#!/bin/sh\n\
             echo \"connecting with password $DB_PASSWORD\"\n\
             printf '%s' \"$DB_PASSWORD\" | base64\n\
             printf 'DB_PASSWORD=%s\\n' \"$DB_PASSWORD\" | base64\n\
             printf 'p=%s;' \"$DB_PASSWORD\" | base64\n\
             exit 1\n",
        )
        .unwrap();
    });
    let stderr = up_fails(&product, "feature-x", &["--on-failure", "destroy"], &[]);
    assert!(
        stderr.contains("connecting with password <redacted>"),
        "the pod's log is shown, scrubbed:\n{stderr}"
    );
    for form in encoded_forms(SECRET) {
        assert!(!stderr.contains(&form), "`{form}` leaked:\n{stderr}");
    }
    assert!(!ns.exists().await, "the failed sandbox was not destroyed");
}

#[tokio::test]
async fn a_secret_that_breaks_the_rendered_yaml_is_not_quoted_in_the_error() {
    let Some(client) = cluster("secret breaking YAML").await else {
        return;
    };
    let product = Product::new("yaml-secret");
    let _ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let secret = "hunter2: oops-4c1d";
    let key_file = root().join("example/age-test-key.txt");
    let recipient = std::fs::read_to_string(&key_file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_owned))
        .expect("the test key names its public key");
    // A new secrets file, encrypted by the real sops for the test key.
    product.commit("data", "main", "a password with `: `", |dir| {
        let file = dir.join("db/secrets.sops.yaml");
        std::fs::write(
            &file,
            format!(
                "password: {}\nadmin_user: admin\n",
                serde_json::to_string(secret).unwrap()
            ),
        )
        .unwrap();
        crate::support::run_ok(
            std::process::Command::new("sops")
                .args(["encrypt", "--in-place", "--age", &recipient])
                .arg(&file),
        );
    });
    // A template that forgets to quote it.
    let template = product.path().join("templates/db-credentials.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(
        &template,
        format!("{text}stringData:\n  plain: {{{{values.password}}}}\n"),
    )
    .unwrap();
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(stderr.contains("invalid YAML"), "{stderr}");
    assert!(
        stderr.contains("plain: <redacted>"),
        "the line is quoted, scrubbed:\n{stderr}"
    );
    for form in encoded_forms(secret) {
        assert!(!stderr.contains(&form), "`{form}` leaked:\n{stderr}");
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn a_host_network_preflight_job_is_refused_offline_and_by_up_unless_allowed() {
    let product = Product::new("bad-host");
    // What a branch could inject through an unquoted value: the migration Job (a preflight step,
    // created before any service) on the node's network.
    let path = product.path().join("templates/migrate.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        "      restartPolicy: Never\n",
        "      restartPolicy: Never\n      hostNetwork: true\n",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let expected = "templates/migrate.yaml: Job `api-migrate` of service `api` sets `spec.template.spec.hostNetwork` (true), which sandbox.yaml does not allow";
    let hint = "add `allow: [host_network]` under `services.api` in sandbox.yaml";

    // Offline: `render` says so without a cluster.
    let mut render = product.sandbox(&["render", "--branch", "feature-x"]);
    let stderr = run_failing(render.env("KUBECONFIG", product.path().join("no-kubeconfig")));
    assert!(stderr.contains(expected), "{stderr}");
    assert!(stderr.contains(hint), "{stderr}");

    // `up` refuses before it creates anything.
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(stderr.contains(expected), "{stderr}");
    assert!(stderr.contains(hint), "{stderr}");
    assert_cluster_untouched(&product, "feature-x", "host network refused").await;

    // sandbox.yaml (the product owner's, not the branch's) may allow it; the sandbox's Pod
    // Security level (baseline) still refuses it, until it is lowered too.
    product.edit_config(
        "    preflight: [templates/migrate.yaml]\n",
        "    preflight: [templates/migrate.yaml]\n    allow: [host_network]\n",
    );
    let mut render = product.sandbox(&["render", "--branch", "feature-x"]);
    let stderr = run_failing(&mut render);
    assert!(
        stderr.contains("Job `api-migrate` of service `api` is refused by Pod Security `baseline`")
            && stderr.contains("set `pod_security: privileged` in sandbox.yaml"),
        "{stderr}"
    );
    product.edit_config("name: shop\n", "name: shop\npod_security: privileged\n");
    let mut render = product.sandbox(&["render", "--branch", "feature-x"]);
    let out = render.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("api-migrate` of service `api`"),
        "{}",
        describe(&render, &out)
    );
}

#[tokio::test]
async fn a_values_file_symlinked_out_of_the_repo_is_refused() {
    let product = Product::new("bad-symlink");
    // What a hostile branch commits: its values file is the user's credentials.
    let credentials = product.path().join("docker-config.json");
    std::fs::write(
        &credentials,
        "{\"auths\": {\"registry\": \"hunter2-token\"}}",
    )
    .unwrap();
    product.commit("data", "main", "values from elsewhere", |work| {
        let values = work.join("db/values.yaml");
        std::fs::remove_file(&values).unwrap();
        std::os::unix::fs::symlink(&credentials, &values).unwrap();
    });
    // The checkout refuses it while exporting the commit, before any values file is read.
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        stderr.contains("symlink `db/values.yaml` in repository `data`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "leads out of the repository (to an absolute path): `db/values.yaml` -> `{}`",
            credentials.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "hint: make `db/values.yaml` point to a file or directory inside the repository"
        ),
        "{stderr}"
    );
    assert_cluster_untouched(&product, "feature-x", "symlinked values").await;
}

#[tokio::test]
async fn a_quadratic_alias_bomb_in_a_values_file_is_refused_quickly() {
    let product = Product::new("bad-aliases");
    // ~200 KB that would expand to 625 million nodes.
    let mut bomb = String::from("base: &a [");
    bomb.push_str(
        &(0..25_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    bomb.push_str("]\nbomb: [");
    bomb.push_str(&vec!["*a"; 25_000].join(","));
    bomb.push_str("]\n");
    assert!(bomb.len() > 190_000, "{}", bomb.len());
    product.commit("data", "main", "an alias bomb", |work| {
        std::fs::write(work.join("db/values.yaml"), &bomb).unwrap();
    });
    let started = std::time::Instant::now();
    let stderr = up_fails(&product, "feature-x", &[], &[]);
    let took = started.elapsed();
    eprintln!("`up` refused a {} byte alias bomb in {took:?}", bomb.len());
    assert!(
        stderr.contains("db/values.yaml: values of service `db` are too large"),
        "{stderr}"
    );
    assert!(
        stderr.contains("expands to more than 1000000 YAML nodes"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: each alias"), "{stderr}");
    assert_cluster_untouched(&product, "feature-x", "alias bomb").await;
}

/// A template's object of the kind and name of one the tool makes in every sandbox (here the
/// quota) is refused by `render` (offline), `validate` and `up`, before the cluster is touched.
#[tokio::test]
async fn an_object_named_as_one_of_the_tools_own_is_refused_by_render_validate_and_up() {
    let product = Product::new("bad-reserved");
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: sandbox-quota\nspec:\n  hard: {pods: \"100\"}\n";
    std::fs::write(product.path().join("templates/quota.yaml"), quota).unwrap();
    product.edit_config(
        "    templates: [templates/service.yaml]\n    smoke: [templates/smoke.yaml]\n",
        "    templates: [templates/service.yaml, templates/quota.yaml]\n    smoke: [templates/smoke.yaml]\n",
    );
    let expected = "templates/quota.yaml: ResourceQuota `sandbox-quota` of service `api` has a name reserved by sandbox for the sandbox's quota (`limits` in sandbox.yaml)";
    let hint = "hint: rename it in the template, e.g. `api-sandbox-quota`";

    let offline = product.path().join("no-kubeconfig");
    for command in ["render", "validate"] {
        let mut cmd = product.sandbox(&[command, "--branch", "feature-x"]);
        if command == "render" {
            cmd.env("KUBECONFIG", &offline);
        }
        let stderr = run_failing(&mut cmd);
        assert!(stderr.contains(expected), "{command}: {stderr}");
        assert!(stderr.contains(hint), "{command}: {stderr}");
    }

    let stderr = up_fails(&product, "feature-x", &[], &[]);
    assert!(stderr.contains(expected), "{stderr}");
    assert!(stderr.contains(hint), "{stderr}");
    assert_cluster_untouched(&product, "feature-x", "reserved name").await;
}

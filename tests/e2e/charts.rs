//! Chart services: `web` and `gateway` of the example are Helm charts in the frontend repo,
//! rendered by the real helm; the other five are Handlebars templates.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{
    changed_between, cluster, describe, run_ok, up_ok, versions, Product, TestNamespace,
};

/// What the tool adds to every object: its labels, its hash and the namespace. Taken away, an
/// object is what the chart rendered.
fn without_the_tools_stamp(mut object: Value) -> Value {
    for pointer in ["/metadata", "/spec/template/metadata"] {
        if let Some(meta) = object.pointer_mut(pointer).and_then(Value::as_object_mut) {
            meta.remove("namespace");
            for (field, keys) in [
                (
                    "labels",
                    &[
                        "app.kubernetes.io/managed-by",
                        "sandbox.dev/service",
                        "sandbox.dev/role",
                    ][..],
                ),
                ("annotations", &["sandbox.dev/rendered-hash"][..]),
            ] {
                if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
                    keys.iter().for_each(|k| {
                        map.remove(*k);
                    });
                }
            }
        }
    }
    drop_empty(&mut object);
    object
}

/// Remove empty mappings (the stamp creates `labels: {}`-like paths where a chart had none).
fn drop_empty(value: &mut Value) {
    if let Value::Object(map) = value {
        map.values_mut().for_each(drop_empty);
        map.retain(|_, v| !matches!(v, Value::Object(m) if m.is_empty()) && !v.is_null());
    } else if let Value::Array(list) = value {
        list.iter_mut().for_each(drop_empty);
    }
}

fn sorted(mut objects: Vec<Value>) -> Vec<Value> {
    objects.sort_by_key(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]));
    objects
}

/// `helm template` itself, run the way a person would, with the values `sandbox values` shows.
fn helm_template(product: &Product, service: &str, chart_dir: &std::path::Path) -> Vec<Value> {
    let mut values = product.sandbox(&[
        "values",
        service,
        "--branch",
        "feature-x",
        "--reveal",
        "-o",
        "json",
    ]);
    let values = run_ok(&mut values).stdout;
    let namespace = product.namespace("feature-x");
    let mut helm = Command::new("helm");
    helm.args(["template", service])
        .arg(chart_dir)
        .args([
            "--namespace",
            &namespace,
            "--kube-version",
            "1.33.0",
            "--values",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = helm.spawn().expect("helm runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&values).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&helm, &out));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .map(|mut v| {
            drop_empty(&mut v);
            v
        })
        .collect()
}

#[test]
fn chart_services_render_exactly_what_helm_template_renders() {
    let product = Product::new("parity");
    let mut render =
        product.sandbox(&["render", "--branch", "feature-x", "--reveal", "-o", "json"]);
    let plan: Value = serde_json::from_slice(&run_ok(&mut render).stdout).unwrap();
    let checkout = product.path().join("frontend-feature-x");
    run_ok(
        Command::new("git")
            .args(["clone", "-q", "-b", "feature-x"])
            .arg(product.path().join("repos/frontend.git"))
            .arg(&checkout),
    );
    let rendered: Vec<Value> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["objects"].as_array().unwrap().clone())
        .chain(plan["smoke"].as_array().unwrap().iter().cloned())
        .collect();
    for service in ["web", "gateway"] {
        let ours: Vec<Value> = rendered
            .iter()
            .filter(|o| o["metadata"]["labels"]["sandbox.dev/service"] == service)
            .cloned()
            .map(without_the_tools_stamp)
            .collect();
        let helms = helm_template(&product, service, &checkout.join(service));
        assert!(ours.len() >= 4, "{service}: {ours:?}");
        assert_eq!(
            sorted(ours),
            sorted(helms),
            "{service}: sandbox's objects differ from helm template's"
        );
    }
}

#[tokio::test]
async fn a_chart_reups_without_writes_rolls_on_a_value_and_prunes_a_removed_template() {
    let Some(client) = cluster("chart lifecycle").await else {
        return;
    };
    let product = Product::new("charts");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    up_ok(&product, &[]);
    let first = versions(&client, &ns.name).await;
    for hook in ["Job/web-check-upstreams", "Job/web-warm"] {
        assert!(first.contains_key(hook), "{hook}: {first:?}");
    }

    // Unchanged: not one object is written, and no hook runs again.
    let text = up_ok(&product, &[]);
    assert!(text.contains("nothing changed"), "{text}");
    assert_eq!(versions(&client, &ns.name).await, first);

    // A chart value: exactly that service's Deployment changes (and the smoke Job proves it).
    let greeting = ["--set", "web.env.GREETING=hello"];
    up_ok(&product, &greeting);
    let second = versions(&client, &ns.name).await;
    let changed = changed_between(&first, &second);
    assert_eq!(
        changed,
        ["Deployment/web", "Job/smoke-api"],
        "{first:?}\n{second:?}"
    );
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), &ns.name);
    let web = deployments.get("web").await.unwrap();
    let env = &web.spec.unwrap().template.spec.unwrap().containers[0].env;
    assert!(
        env.iter()
            .flatten()
            .any(|e| e.name == "GREETING" && e.value.as_deref() == Some("hello")),
        "{env:?}"
    );

    // A template removed from the chart in the repo: its object is pruned.
    product.commit("frontend", "feature-x", "web: no warm-up Job", |dir| {
        std::fs::remove_file(dir.join("web/templates/hook-warm.yaml")).unwrap();
    });
    let text = up_ok(&product, &greeting);
    assert!(text.contains("pruned batch/v1/Job/web-warm"), "{text}");
    let third = versions(&client, &ns.name).await;
    assert!(!third.contains_key("Job/web-warm"), "{third:?}");
    assert!(third.contains_key("Job/web-check-upstreams"));
}

#[test]
fn a_charts_secrets_are_redacted_in_render_and_values_like_a_templates() {
    const SECRET: &str = "sandbox-demo-db-password-7f3a";
    let product = Product::new("chart-secret");
    // The db's sops file, committed into the web chart's repo (a sops file is not bound to its
    // path), and a Secret in the chart that carries the password.
    let sops_file = crate::support::root().join("example/repos/data/db/secrets.sops.yaml");
    product.commit("frontend", "feature-x", "web gets a secret", |dir| {
        std::fs::copy(&sops_file, dir.join("web/secrets.sops.yaml")).unwrap();
        std::fs::write(
            dir.join("web/templates/secret.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-db\ndata:\n  password: {{ .Values.password | b64enc }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-db-hash\ndata:\n  sum: {{ .Values.password | sha256sum | quote }}\n",
        )
        .unwrap();
    });
    product.edit_config(
        "    chart: web\n",
        "    chart: web\n    secrets_files: [web/secrets.sops.yaml]\n",
    );
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let shown = |args: &[&str]| {
        let mut cmd = product.sandbox(args);
        let out = run_ok(&mut cmd);
        String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap()
    };
    for args in [
        &["render", "--branch", "feature-x"][..],
        &["render", "--branch", "feature-x", "-o", "json"],
        &["values", "web", "--branch", "feature-x"],
    ] {
        let text = shown(args);
        assert!(
            !text.contains(SECRET) && !text.contains(&encoded),
            "{args:?} leaked:\n{text}"
        );
        assert!(text.contains("<redacted>"), "{args:?}:\n{text}");
    }
    let revealed = shown(&["render", "--branch", "feature-x", "--reveal"]);
    assert!(
        revealed.contains(&encoded),
        "--reveal renders the real Secret"
    );
}

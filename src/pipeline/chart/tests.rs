//! Charts rendered by the real helm (installed by `scripts/setup`; without it these tests say
//! they skipped, and fail under CI=true).

use super::*;
use crate::error::Hint;
use serde_json::json;

async fn real_helm(test: &str) -> Option<Helm> {
    match Helm::locate().await {
        Ok(helm) => Some(helm),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: CI=true but {e}"),
    }
}

/// A chart in a scratch "repository": `files` are (path, text) under the chart's directory.
fn chart(files: &[(&str, &str)]) -> (tempfile::TempDir, ChartSource) {
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join("charts/web");
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let source = ChartSource {
        service: "web".into(),
        dir,
        root: repo.path().to_owned(),
        shown: "`charts/web` (repo `frontend`, branch `main`)".into(),
        relative_to: "the root of repo `frontend`".into(),
    };
    (repo, source)
}

const CHART_YAML: &str = "apiVersion: v2\nname: web\nversion: 0.1.0\n";

fn caps() -> Capabilities {
    Capabilities {
        kube_version: "v1.20.15".into(),
        api_versions: vec!["example.com/v1".into(), "example.com/v1/Widget".into()],
    }
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "web.name" . }}
  annotations:
    namespace: {{ .Release.Namespace }}
    kube: {{ .Capabilities.KubeVersion.Version }}
    widgets: {{ .Capabilities.APIVersions.Has "example.com/v1/Widget" | quote }}
    password-sum: {{ .Values.password | sha256sum | trunc 8 }}
spec:
  replicas: {{ .Values.replicas }}
  template:
    spec:
      containers:
        - name: web
          image: {{ .Values.image | default "busybox" }}
          env: {{- toYaml .Values.env | nindent 12 }}
"#;

#[tokio::test]
async fn a_chart_renders_with_stdin_values_namespace_and_the_clusters_capabilities() {
    let Some(helm) = real_helm("chart render").await else {
        return;
    };
    let (_repo, source) = chart(&[
        ("Chart.yaml", CHART_YAML),
        ("values.yaml", "replicas: 1\nenv: [{name: A, value: a}]\n"),
        (
            "templates/_helpers.tpl",
            "{{- define \"web.name\" -}}{{ .Release.Name }}-app{{- end -}}\n",
        ),
        ("templates/deployment.yaml", DEPLOYMENT),
        (
            "templates/hooks.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations: {helm.sh/hook: pre-install}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: test\n  annotations: {helm.sh/hook: test}\n",
        ),
    ]);
    let values = json!({"replicas": 3, "password": "hunter2-secret"});
    let hooked = render(&helm, &source, "sb-x", &values, &caps(), &[])
        .await
        .unwrap();
    let [deployment] = hooked.objects.as_slice() else {
        panic!("{:?}", hooked.objects)
    };
    assert_eq!(deployment.template, "web/templates/deployment.yaml");
    let o = &deployment.object;
    assert_eq!(o["metadata"]["name"], "web-app", "release name = service");
    assert_eq!(o["spec"]["replicas"], 3, "stdin values over values.yaml");
    let annotations = &o["metadata"]["annotations"];
    assert_eq!(annotations["namespace"], "sb-x");
    assert_eq!(annotations["kube"], "v1.20.15");
    assert_eq!(annotations["widgets"], "true");
    assert_eq!(
        o["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
        "A"
    );
    assert_eq!(hooked.preflight.len(), 1);
    assert_eq!(hooked.preflight[0][0].name(), "migrate");
    assert_eq!(hooked.tests[0].name(), "test");
}

#[tokio::test]
async fn helms_errors_name_the_service_the_chart_and_keep_secrets_out() {
    let Some(helm) = real_helm("chart errors").await else {
        return;
    };
    let secret = "hunter2-secret";
    let cases: [(&str, &str, HelmFailure, &str); 4] = [
        (
            CHART_YAML,
            "{{ required \"db.host is required\" .Values.db.host }}",
            HelmFailure::Required,
            "db.host is required",
        ),
        (
            CHART_YAML,
            "{{ fail (printf \"bad password %s\" .Values.password) }}",
            HelmFailure::Required,
            "bad password <redacted>",
        ),
        (
            CHART_YAML,
            "a: {{ .Values.x | nosuchfunction }}",
            HelmFailure::Template,
            "nosuchfunction",
        ),
        (
            "apiVersion: v2\nname: web\nversion: 0.1.0\nkubeVersion: \">=1.23.0-0\"\n",
            "",
            HelmFailure::KubeVersion,
            "incompatible with Kubernetes v1.20.15",
        ),
    ];
    for (chart_yaml, template, failure, says) in cases {
        let (_repo, source) = chart(&[
            ("Chart.yaml", chart_yaml),
            ("values.yaml", "db: {}\n"),
            ("templates/x.yaml", template),
        ]);
        let values = json!({"password": secret});
        let e = render(&helm, &source, "sb-x", &values, &caps(), &[secret.into()])
            .await
            .unwrap_err();
        let text = format!("{e} / {}", e.hint().unwrap_or_default());
        assert!(
            matches!(&e, ChartError::Helm { failure: f, .. } if *f == failure),
            "{failure:?}: {text}"
        );
        assert!(
            text.starts_with("service `web`: helm could not render chart `charts/web`"),
            "{text}"
        );
        assert!(text.contains(says), "{failure:?}: {text}");
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn a_missing_chart_or_a_symlink_out_of_the_repository_is_refused_before_helm_runs() {
    let Some(helm) = real_helm("chart dir").await else {
        return;
    };
    let (repo, mut source) = chart(&[("Chart.yaml", CHART_YAML)]);
    source.dir = repo.path().join("charts/nope");
    let e = render(&helm, &source, "sb-x", &json!({}), &caps(), &[])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "service `web`: `charts/web` (repo `frontend`, branch `main`) does not exist"
    );
    assert!(e
        .hint()
        .unwrap()
        .contains("relative to the root of repo `frontend`"));

    let (repo, source) = chart(&[("Chart.yaml", CHART_YAML), ("templates/x.yaml", "")]);
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::symlink(outside.path(), source.dir.join("creds.json")).unwrap();
    let e = render(&helm, &source, "sb-x", &json!({}), &caps(), &[])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("`creds.json`, a symlink that leads out of the repository"),
        "{e}"
    );
    // A symlink within the repository is fine.
    std::fs::remove_file(source.dir.join("creds.json")).unwrap();
    std::fs::write(repo.path().join("shared.txt"), "x").unwrap();
    std::os::unix::fs::symlink(
        repo.path().join("shared.txt"),
        source.dir.join("shared.txt"),
    )
    .unwrap();
    render(&helm, &source, "sb-x", &json!({}), &caps(), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn output_that_is_not_an_object_names_the_template() {
    let Some(helm) = real_helm("chart output").await else {
        return;
    };
    let (_repo, source) = chart(&[
        ("Chart.yaml", CHART_YAML),
        (
            "templates/x.yaml",
            "apiVersion: v1\nkind: ConfigMap\ndata: {}\n",
        ),
    ]);
    let e = render(&helm, &source, "sb-x", &json!({}), &caps(), &[])
        .await
        .unwrap_err();
    let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(chain.contains("web/templates/x.yaml"), "{chain}");
    assert!(chain.contains("metadata.name"), "{chain}");
}

#[test]
fn values_never_reach_the_command_line() {
    let (_repo, source) = chart(&[]);
    let args = template_args(&source, "sb-x", &caps());
    assert_eq!(args[0], "web");
    assert!(args.iter().all(|a| !a.contains("password")));
    assert_eq!(args[args.len() - 2], "--api-versions");
    assert_eq!(args[args.len() - 1], "example.com/v1,example.com/v1/Widget");
}

#[test]
fn helm_output_is_split_by_source() {
    let out = "---\n# Source: web/templates/a.yaml\na: 1\n---\n# Source: web/charts/sub/templates/b.yaml\nb: 2\n";
    let docs = documents_by_source(out);
    assert_eq!(
        docs,
        [
            ("web/templates/a.yaml".to_owned(), "a: 1\n".to_owned()),
            (
                "web/charts/sub/templates/b.yaml".to_owned(),
                "b: 2\n".to_owned()
            )
        ]
    );
}

#[test]
fn a_document_without_its_own_source_is_named_after_the_template_before_it() {
    let out = "a: 0\n---\n# Source: web/templates/a.yaml\na: 1\n---\nkind: Injected\n";
    let sources: Vec<String> = documents_by_source(out).into_iter().map(|d| d.0).collect();
    assert_eq!(
        sources,
        [
            "helm output",
            "web/templates/a.yaml",
            "web/templates/a.yaml"
        ]
    );
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("templates/a.yaml"), "kind: x").unwrap();
    let path = dir.join("sandbox.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = "\
name: shop
url: {service: web}
repos:
  app: {url: \"${BASE}/app.git\"}
services:
  db:
    repo: app
    templates: [templates/a.yaml]
  web:
    repo: app
    depends_on: [db]
    templates: [templates/a.yaml]
    values: {port: 80}
";

fn env(var: &str) -> Option<String> {
    (var == "BASE").then(|| "/srv/git".to_owned())
}

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), text);
    load(&path, &env)
}

#[test]
fn a_good_file_loads_with_defaults() {
    let c = load_text(GOOD).unwrap();
    assert_eq!(c.name, "shop");
    assert_eq!(c.namespace_prefix, "sb-");
    assert_eq!(c.ttl, Duration::from_secs(2 * 86400));
    assert_eq!(c.repos["app"].url, "/srv/git/app.git");
    assert_eq!(
        c.services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["db", "web"]
    );
    assert_eq!(c.service("web").unwrap().values["port"], 80);
    assert!(matches!(c.url, UrlRule::Service(ref s) if s == "web"));
}

#[test]
fn a_repos_github_name_is_checked() {
    let text = GOOD.replace(
        "app: {url: \"${BASE}/app.git\"}",
        "app: {url: \"${BASE}/app.git\", github: octo-org/app}",
    );
    assert_eq!(
        load_text(&text).unwrap().repos["app"].github.as_deref(),
        Some("octo-org/app")
    );
    let bad = text.replace("octo-org/app", "octo-org");
    let e = load_text(&bad).unwrap_err().to_string();
    assert!(
        e.contains("repos.app.github") && e.contains("owner/name"),
        "{e}"
    );
}

#[test]
fn allow_is_per_service_plus_the_top_level_one() {
    let text = GOOD.replace("name: shop\n", "name: shop\nallow: [external_ips]\n");
    let text = text.replace(
        "    depends_on: [db]\n",
        "    depends_on: [db]\n    allow: [host_network, privileged]\n",
    );
    let c = load_text(&text).unwrap();
    let web: Vec<Privilege> = c.service("web").unwrap().allow.iter().copied().collect();
    assert_eq!(
        web,
        [
            Privilege::HostNetwork,
            Privilege::Privileged,
            Privilege::ExternalIps
        ]
    );
    let db: Vec<Privilege> = c.service("db").unwrap().allow.iter().copied().collect();
    assert_eq!(db, [Privilege::ExternalIps]);
    assert!(load_text(GOOD)
        .unwrap()
        .services
        .iter()
        .all(|s| s.allow.is_empty()));
    let typo = GOOD.replace(
        "    depends_on: [db]\n",
        "    depends_on: [db]\n    allow: [host_networking]\n",
    );
    let err = load_text(&typo).unwrap_err().to_string();
    assert!(
        err.contains("services.web")
            && err.contains("host_networking")
            && err.contains("host_network"),
        "{err}"
    );
}

#[test]
fn volume_types_and_pod_rights_are_allowed_by_name_with_a_hint_for_typos() {
    let text = GOOD.replace(
        "name: shop\n",
        "name: shop\nallow: [volume:nfs, node_name, \"volume:gitRepo\"]\n",
    );
    let c = load_text(&text).unwrap();
    let names: Vec<&str> = c
        .service("db")
        .unwrap()
        .allow
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(names, ["volume:gitRepo", "volume:nfs", "node_name"]);
    let nfs = VolumeType::of_field("nfs").unwrap();
    assert_eq!(nfs.field(), "nfs");
    assert!(VolumeType::of_field("configMap").is_none() && VolumeType::of_field("").is_none());

    let typo = GOOD.replace("name: shop\n", "name: shop\nallow: [volume:nfss]\n");
    let err = load_text(&typo).unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `volume:nfss`"),
        "{err}"
    );
    assert_eq!(err.hint().unwrap(), "did you mean `volume:nfs`?");
    let typo = GOOD.replace(
        "    depends_on: [db]\n",
        "    depends_on: [db]\n    allow: [nodename]\n",
    );
    let err = load_text(&typo).unwrap_err();
    assert!(
        err.to_string().contains("services.web") && err.to_string().contains("`volume:TYPE`"),
        "{err}"
    );
    assert_eq!(err.hint().unwrap(), "did you mean `node_name`?");
    let err =
        load_text(&GOOD.replace("name: shop\n", "name: shop\nallow: [Volume]\n")).unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `Volume`"),
        "{err}"
    );
}

#[test]
fn the_product_name_must_be_a_label_value() {
    let err = load_text(&GOOD.replace("name: shop", "name: \"shop,team=x\"")).unwrap_err();
    assert!(
        err.to_string()
            .contains("`name`: `shop,team=x` cannot be a Kubernetes label value"),
        "{err}"
    );
}

#[test]
fn a_service_may_be_a_chart_in_its_repo_or_beside_the_config() {
    let chart = GOOD.replace(
        "    templates: [templates/a.yaml]\n    values: {port: 80}",
        "    chart: charts/web\n    values: {port: 80}",
    );
    let c = load_text(&chart).unwrap();
    let web = c.service("web").unwrap();
    assert_eq!(
        web.chart,
        Some(ChartRef {
            path: "charts/web".into(),
            from: ChartFrom::Repo
        })
    );
    assert_eq!(c.helm.kube_version, DEFAULT_KUBE_VERSION);

    // Beside sandbox.yaml, the chart must be there now.
    let beside = chart.replace(
        "chart: charts/web",
        "chart: charts/web\n    chart_from: config",
    );
    let err = load_text(&beside).unwrap_err();
    assert!(
        err.to_string()
            .contains("`services.web.chart`: `charts/web` is not a chart: it has no Chart.yaml"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &beside);
    std::fs::create_dir_all(dir.path().join("charts/web")).unwrap();
    std::fs::write(dir.path().join("charts/web/Chart.yaml"), "name: web").unwrap();
    assert_eq!(
        load(&path, &env)
            .unwrap()
            .service("web")
            .unwrap()
            .chart
            .as_ref()
            .unwrap()
            .from,
        ChartFrom::Config
    );
}

#[test]
fn chart_mistakes_are_named() {
    let both = GOOD.replace(
        "    values: {port: 80}",
        "    chart: web\n    values: {port: 80}",
    );
    let err = load_text(&both).unwrap_err();
    assert!(err.to_string().contains("`services.web.templates`: a service is rendered either by its `templates` or by its `chart`, not both"), "{err}");
    for path in ["../elsewhere", "/abs/chart"] {
        let escape = GOOD.replace(
            "    templates: [templates/a.yaml]\n    values",
            &format!("    chart: {path}\n    values"),
        );
        let err = load_text(&escape).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not a relative path inside the repository"),
            "{err}"
        );
    }
    let typo = GOOD.replace(
        "    templates: [templates/a.yaml]\n    values",
        "    chrt: web\n    values",
    );
    assert_eq!(
        load_text(&typo).unwrap_err().hint().unwrap(),
        "did you mean `chart`?"
    );
    let version = format!("{GOOD}helm: {{kube_version: latest}}\n");
    let err = load_text(&version).unwrap_err();
    assert!(
        err.to_string()
            .contains("`helm.kube_version`: `latest` is not a Kubernetes version"),
        "{err}"
    );
    let version = format!("{GOOD}helm: {{kube_version: v1.20.15, api_versions: [x.io/v1]}}\n");
    assert_eq!(load_text(&version).unwrap().helm.api_versions, ["x.io/v1"]);
}

#[test]
fn repo_file_limits_default_parse_and_refuse_typos() {
    assert_eq!(
        load_text(GOOD).unwrap().repo_files,
        RepoFileLimits::default()
    );
    let set = format!("{GOOD}repo_files: {{max_file_size: 256KiB, max_blob_size: 1000000}}\n");
    let limits = load_text(&set).unwrap().repo_files;
    assert_eq!(
        (limits.max_file_size, limits.max_blob_size),
        (256 * 1024, 1_000_000)
    );

    let caps = format!(
        "{GOOD}repo_files: {{max_tree_files: 100, max_tree_size: 1MiB, max_sandbox_files: 300, max_sandbox_size: 3MiB}}\n"
    );
    let limits = load_text(&caps).unwrap().repo_files;
    assert_eq!(
        (
            limits.max_tree_files,
            limits.max_tree_size,
            limits.max_sandbox_files,
            limits.max_sandbox_size
        ),
        (100, 1 << 20, 300, 3 << 20)
    );
    let zero = format!("{GOOD}repo_files: {{max_tree_files: 0}}\n");
    let err = load_text(&zero).unwrap_err();
    assert!(
        err.to_string().contains("`repo_files.max_tree_files`"),
        "{err}"
    );
    let err = load_text(&format!("{GOOD}repo_files: {{max_tree_file: 1}}\n")).unwrap_err();
    assert_eq!(
        err.hint().as_deref(),
        Some("did you mean `max_tree_files`?")
    );

    let typo = format!("{GOOD}repo_files: {{max_file_sise: 1MiB}}\n");
    let err = load_text(&typo).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `max_file_sise`"),
        "{err}"
    );
    assert_eq!(
        err.hint().as_deref(),
        Some("did you mean `max_file_size`?"),
        "{err:?}"
    );
    let err = load_text(&format!("{GOOD}repo_file: {{}}\n")).unwrap_err();
    assert_eq!(err.hint().unwrap(), "did you mean `repo_files`?");

    let bad = format!("{GOOD}repo_files:\n  max_blob_size: 1 lot\n");
    let err = load_text(&bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("`repo_files.max_blob_size`: `1 lot` is not a size"),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("`1MiB`"));
}

#[test]
fn an_alias_bomb_in_the_config_is_refused_with_the_file() {
    let err = load_text(&crate::yaml::bombs::quadratic_alias(2_000)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sandbox.yaml:"), "{text}");
    assert!(
        text.contains("expands to more than 1000000 YAML nodes"),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("alias"));
}

#[test]
fn unknown_top_level_field_has_line_and_suggestion() {
    let err =
        load_text(&GOOD.replace("name: shop", "name: shop\nnamspace_prefix: x-")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sandbox.yaml:2:"), "{text}");
    assert!(text.contains("unknown field `namspace_prefix`"), "{text}");
    assert_eq!(err.hint().unwrap(), "did you mean `namespace_prefix`?");
}

#[test]
fn unknown_service_field_points_at_its_line() {
    let err = load_text(&GOOD.replace("    depends_on: [db]", "    depend_on: [db]")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("sandbox.yaml:11: `services.web.depend_on`"),
        "{text}"
    );
    assert_eq!(err.hint().unwrap(), "did you mean `depends_on`?");
}

#[test]
fn url_host_is_one_pattern_or_a_list_each_with_the_sandboxs_namespace() {
    assert!(load_text(GOOD).unwrap().hosts.is_empty());
    let one = GOOD.replace(
        "url: {service: web}",
        "url: {service: web, host: \"{{sandbox.namespace}}.preview.example.com\"}",
    );
    assert_eq!(
        load_text(&one).unwrap().hosts,
        ["{{sandbox.namespace}}.preview.example.com"]
    );
    let list = GOOD.replace(
        "url: {service: web}",
        "url:\n  service: web\n  host: [\"{{sandbox.namespace}}.a.example\", \"*.{{ sandbox.namespace }}.a.example\"]",
    );
    assert_eq!(load_text(&list).unwrap().hosts.len(), 2);
    for (pattern, why) in [
        (
            "{{sandbox.name}}.preview.example.com",
            "does not hold `{{sandbox.namespace}}`",
        ),
        ("preview.example.com", "does not hold"),
        (
            "{{sandbox.namespace}}.Preview.example.com",
            "renders to `sb-feature-x.Preview.example.com`, which is not a lowercase host name",
        ),
        (
            "{{sandbox.namespace}}.{{sandbox.nope}}",
            "cannot be rendered",
        ),
    ] {
        let text = GOOD.replace(
            "url: {service: web}",
            &format!("url: {{service: web, host: \"{pattern}\"}}"),
        );
        let err = load_text(&text).unwrap_err();
        assert!(err.to_string().contains("`url.host`"), "{err}");
        assert!(err.to_string().contains(why), "{pattern}: {err}");
        assert!(err
            .hint()
            .unwrap()
            .contains("{{sandbox.namespace}}.preview.example.com"));
    }
}

#[test]
fn render_host_gives_a_host_name_or_why_not() {
    let context = serde_json::json!({"sandbox": {"namespace": "sb-x"}});
    assert_eq!(
        render_host("*.{{sandbox.namespace}}.example.com", &context).unwrap(),
        "*.sb-x.example.com"
    );
    assert!(render_host("a.*.{{sandbox.namespace}}", &context).is_err());
    assert!(render_host("{{sandbox.namespace}}..example.com", &context).is_err());
    assert!(render_host("{{sandbox.namespace}}/x", &context).is_err());
}

#[test]
fn missing_references_are_named() {
    let err = load_text(&GOOD.replace("depends_on: [db]", "depends_on: [dbb]")).unwrap_err();
    assert!(
        err.to_string()
            .contains("sandbox.yaml:11: `services.web.depends_on`: `dbb` is not a service"),
        "{err}"
    );
    assert_eq!(err.hint().unwrap(), "did you mean `db`?");
    let err = load_text(&GOOD.replace(
        "    repo: app\n    depends_on",
        "    repo: ap\n    depends_on",
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("repo `ap` is not defined"),
        "{err}"
    );
    let err = load_text(&GOOD.replace("templates/a.yaml]\n  web", "templates/none.yaml]\n  web"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("template `templates/none.yaml` does not exist"),
        "{err}"
    );
    let err = load_text(&GOOD.replace("${BASE}", "${NOPE}")).unwrap_err();
    assert!(err.to_string().contains("`${NOPE}` is not set"), "{err}");
}

#[test]
fn cycles_are_named_in_order() {
    let text = GOOD.replace(
        "  db:\n    repo: app\n",
        "  db:\n    repo: app\n    depends_on: [web]\n",
    );
    let err = load_text(&text).unwrap_err();
    assert!(
        err.to_string().contains("dependency cycle: db → web → db"),
        "{err}"
    );
    let err = load_text(&GOOD.replace("depends_on: [db]", "depends_on: [web]")).unwrap_err();
    assert!(
        err.to_string().contains("dependency cycle: web → web"),
        "{err}"
    );
}

#[test]
fn bad_values_are_refused() {
    assert!(
        load_text(&GOOD.replace("name: shop", "name: shop\nttl: forever"))
            .unwrap_err()
            .to_string()
            .contains("`forever` is not a duration")
    );
    assert!(load_text(&GOOD.replace("name: shop", "name: shop\nnamespace_prefix: Bad_")).is_err());
    assert!(load_text(&GOOD.replace("url: {service: web}", "url: {}"))
        .unwrap_err()
        .to_string()
        .contains("exactly one"));
    let err = load_text(
        &GOOD
            .replace("  web:\n", "  Web:\n")
            .replace("service: web", "service: Web"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("DNS-1123"), "{err}");
}

#[test]
fn isolation_defaults_and_mistakes_are_named_with_their_line() {
    let c = load_text(GOOD).unwrap();
    assert_eq!(c.isolation.quota, None);
    assert!(c.isolation.network_policy.enabled);
    assert_eq!(c.isolation.pod_security, PodSecurity::Baseline);
    assert_eq!(c.isolation.idle_after, None);
    let with = |extra: &str| load_text(&format!("{GOOD}{extra}"));
    let c = with("limits:\n  limits: {memory: 2Gi}\n  max_sandboxes: 5\nidle_after: 8h\npod_security: restricted\n").unwrap();
    let quota = c.isolation.quota.unwrap();
    assert_eq!(quota.hard["limits.memory"], "2Gi");
    // The quota caps memory: containers without resources get the built-in memory defaults.
    assert_eq!(quota.default_limits["memory"], "256Mi");
    assert!(!quota.default_limits.contains_key("cpu"));
    assert_eq!(c.isolation.caps.max_sandboxes, Some(5));
    assert_eq!(c.isolation.idle_after, Some(Duration::from_secs(8 * 3600)));
    assert_eq!(c.isolation.pod_security, PodSecurity::Restricted);

    let err = with("limits:\n  limits: {memory: lots}\n").unwrap_err();
    assert!(
        err.to_string()
            .contains(":15: `limits.limits.memory`: `lots` is not a Kubernetes quantity"),
        "{err}"
    );
    let err = with("limits:\n  max_sandbox: 3\n").unwrap_err();
    assert_eq!(
        err.hint().as_deref(),
        Some("did you mean `max_sandboxes`?"),
        "{err}"
    );
    let err = with("limits:\n  max_per_owner: 0\n").unwrap_err();
    assert!(
        err.to_string().contains("a cap of 0 allows no sandbox"),
        "{err}"
    );
    let err = with("pod_security: strict\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `strict`"),
        "{err}"
    );
    let err = with("network_policy:\n  allow_from: [{cidr: everywhere}]\n").unwrap_err();
    assert!(
        err.to_string().contains("`everywhere` is not a CIDR"),
        "{err}"
    );
    let err =
        with("limits:\n  container_defaults:\n    requests: {cpu: '2'}\n    limits: {cpu: 500m}\n")
            .unwrap_err();
    assert!(err.to_string().contains("above the default limit"), "{err}");
}

#[test]
fn the_sops_binary_is_off_unless_the_config_turns_it_on() {
    assert_eq!(load_text(GOOD).unwrap().sops_binary, SopsBinary::default());
    assert!(!SopsBinary::default().enabled);
    let on = "name: shop\nsops: {binary: {enabled: true, key_types: [pgp], timeout: 5s}}";
    let c = load_text(&GOOD.replace("name: shop", on)).unwrap();
    assert!(c.sops_binary.enabled);
    assert_eq!(c.sops_binary.key_types, ["pgp"]);
    assert_eq!(c.sops_binary.timeout, Duration::from_secs(5));
    let typo = "name: shop\nsops: {binary: {key_types: [vault]}}";
    let err = load_text(&GOOD.replace("name: shop", typo)).unwrap_err();
    assert!(
        err.to_string().contains("`vault` is not a sops key type"),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("hc_vault"), "{err:?}");
}

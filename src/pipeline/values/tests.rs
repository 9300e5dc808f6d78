use super::*;
use serde_json::json;

#[test]
fn merge_is_deep_for_maps_and_replaces_the_rest() {
    let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
    merge(
        &mut base,
        json!({"a": {"c": [3], "e": true}, "d": {"f": 1}}),
    );
    assert_eq!(
        base,
        json!({"a": {"b": 1, "c": [3], "e": true}, "d": {"f": 1}})
    );
}

/// A service reading `values_files` and `secrets_files` from a tree in a temporary
/// directory, beside a file outside the tree.
fn layer_files(
    values: &[&str],
    secrets: &[&str],
    tree: &Path,
    max: u64,
) -> Result<Values, ValuesError> {
    let mut service = api_service(json!({"replicas": 1}));
    service.values_files = values.iter().map(|s| s.to_string()).collect();
    service.secrets_files = secrets.iter().map(|s| s.to_string()).collect();
    layer(&service, &backend(tree, max), &Identities::default(), &[])
}

/// Service `api` of repo `backend` with `values` and nothing else.
fn api_service(values: Value) -> Service {
    Service {
        name: "api".into(),
        repo: "backend".into(),
        templates: Vec::new(),
        chart: None,
        image: None,
        preflight: Vec::new(),
        smoke: Vec::new(),
        values,
        values_files: Vec::new(),
        secrets_files: Vec::new(),
        depends_on: Vec::new(),
        allow: Default::default(),
        cluster_roles: Default::default(),
    }
}

/// Repo `backend` at `feature-x`, exported to `tree`, files capped at `max` bytes.
fn backend(tree: &Path, max: u64) -> RepoFiles<'static> {
    RepoFiles {
        repo: "backend",
        branch: "feature-x",
        tree: RepoTree::new(tree, max),
    }
}

fn tree_beside_credentials() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("values.yaml"), "replicas: 2\n").unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        "{\"auths\": {\"x\": \"secret\"}}",
    )
    .unwrap();
    (dir, tree)
}

#[test]
fn values_files_are_read_from_the_tree() {
    let (_dir, tree) = tree_beside_credentials();
    let v = layer_files(&["values.yaml"], &[], &tree, 1 << 20).unwrap();
    assert_eq!(v.reveal()["replicas"], 2);
    let e = layer_files(&["nope.yaml"], &[], &tree, 1 << 20).unwrap_err();
    assert!(matches!(e, ValuesError::Missing { .. }), "{e:?}");
}

#[test]
fn a_values_or_secrets_file_leading_out_of_the_tree_is_refused() {
    let (dir, tree) = tree_beside_credentials();
    std::os::unix::fs::symlink(dir.path().join("config.json"), tree.join("creds.yaml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", tree.join("zero.yaml")).unwrap();
    let cases: [(&[&str], &[&str]); 3] = [
        (&["creds.yaml"], &[]),
        (&[], &["creds.yaml"]),
        (&["zero.yaml"], &[]),
    ];
    for (values, secrets) in cases {
        let e = layer_files(values, secrets, &tree, 1 << 20).unwrap_err();
        let ValuesError::Unreadable { source, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(source.problem, FileProblem::OutsideRepo);
        let chain = format!("{e}: {source}");
        assert!(!chain.contains("secret"), "{chain}");
        assert_eq!(
            chain,
            format!(
                "cannot read values file `{0}` of service `api` from repo `backend` at feature-x: path is outside the repository: `{0}`",
                values.first().or(secrets.first()).unwrap()
            )
        );
    }
}

#[test]
fn a_values_file_over_the_size_limit_is_refused() {
    let (_dir, tree) = tree_beside_credentials();
    std::fs::write(
        tree.join("big.yaml"),
        format!("a: \"{}\"\n", "x".repeat(2048)),
    )
    .unwrap();
    let e = layer_files(&["big.yaml"], &[], &tree, 1024).unwrap_err();
    let ValuesError::Unreadable { source, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(source.to_string(), "file is too large: `big.yaml`");
    let cause = std::error::Error::source(source).unwrap().to_string();
    assert_eq!(
        cause,
        "it is over the 1 KiB limit of `repo_files.max_file_size`"
    );
    assert!(layer_files(&["big.yaml"], &[], &tree, 4096).is_ok());
}

#[test]
fn an_alias_bomb_in_a_values_or_secrets_file_is_refused() {
    let (_dir, tree) = tree_beside_credentials();
    std::fs::write(
        tree.join("bomb.yaml"),
        crate::yaml::bombs::quadratic_alias(2_000),
    )
    .unwrap();
    let cases: [(&[&str], &[&str]); 2] = [(&["bomb.yaml"], &[]), (&[], &["bomb.yaml"])];
    for (values, secrets) in cases {
        let e = layer_files(values, secrets, &tree, 1 << 20).unwrap_err();
        assert!(matches!(e, ValuesError::TooLarge { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "bomb.yaml: values of service `api` are too large"
        );
    }
}

/// `layer` of a service with `values` (no files) under `sets`.
fn layer_sets(values: Value, sets: &[SetValue]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let service = api_service(values);
    layer(
        &service,
        &backend(dir.path(), 1 << 20),
        &Identities::default(),
        sets,
    )
    .unwrap()
    .reveal()
    .clone()
}

#[test]
fn sets_apply_in_order_into_lists_and_over_values_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.yaml");
    std::fs::write(
        &file,
        "api: {image: {tag: '1.10', repo: x}, hosts: [a, b]}\nweb: {replicas: 9}\n",
    )
    .unwrap();
    let sets = [
        SetValue::values_file(&file).unwrap(),
        "api.hosts[2]=c,api.image.tag=1.10".parse().unwrap(),
        SetValue::parse("api.replicas=3", SetKind::String).unwrap(),
        SetValue::parse("api.env[1].name=B", SetKind::Typed).unwrap(),
        SetValue::parse("api.replicas=4,api.extra=", SetKind::Typed).unwrap(),
        SetValue::parse("api.obj={\"k\": [1]}", SetKind::Json).unwrap(),
    ];
    let got = layer_sets(json!({"image": {"pull": "Always"}, "replicas": 1}), &sets);
    assert_eq!(
        got,
        json!({
            "image": {"pull": "Always", "tag": "1.10", "repo": "x"},
            "replicas": 4,
            "hosts": ["a", "b", "c"],
            "env": [null, {"name": "B"}],
            "extra": "",
            "obj": {"k": [1]},
        })
    );
}

#[test]
fn sets_and_values_files_replace_secret_leaves() {
    let mut tree = json!({"db": {"password": "p", "user": "u"}, "token": "t", "key": "k"});
    let mut secret_paths = vec![
        vec!["db".to_owned(), "password".to_owned()],
        vec!["token".to_owned()],
        vec!["key".to_owned()],
    ];
    let upper = json!({"db": {"password": "mine"}, "other": 1});
    secret_paths.retain(|p| !replaced_by(&upper, p));
    merge(&mut tree, upper);
    assert_eq!(
        secret_paths,
        [vec!["token".to_owned()], vec!["key".to_owned()]]
    );
    assert!(replaced_by(
        &json!({"db": "scalar"}),
        &["db".to_owned(), "password".to_owned()]
    ));
    set_path(
        &mut tree,
        &[Segment::Key("token".into()), Segment::Index(1)],
        json!(1),
    );
    assert_eq!(tree["token"], json!([null, 1]));
}

#[test]
fn redaction_hides_secret_leaves_only() {
    let v = Values {
        tree: json!({"db": {"password": "hunter2-long", "user": "app"}, "list": ["s3cret-item"]}),
        secret_paths: vec![
            vec!["db".into(), "password".into()],
            vec!["list".into(), "0".into()],
        ],
    };
    let r = v.redacted();
    assert_eq!(r["db"]["password"], REDACTED);
    assert_eq!(r["db"]["user"], "app");
    assert_eq!(r["list"][0], REDACTED);
    let debug = format!("{v:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3cret"),
        "{debug}"
    );
    assert_eq!(v.secret_strings(), ["hunter2-long", "s3cret-item"]);
}

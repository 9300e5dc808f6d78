use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn sources(files: Vec<PathBuf>, path: &Path) -> AuthSources {
    AuthSources {
        files,
        run_helpers: true,
        path: Some(path.display().to_string()),
    }
}

/// `docker-credential-NAME` in `dir`, a shell script with `body`.
fn helper(dir: &Path, name: &str, body: &str) {
    let file = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&file, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn credentials_come_from_the_first_file_that_has_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("auth.json");
    let second = dir.path().join("config.json");
    std::fs::write(&first, r#"{"auths": {"other.io": {"auth": "eDp5"}}}"#).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode("ci:s3cret:with:colons");
    std::fs::write(
        &second,
        format!(r#"{{"auths": {{"https://reg.example.com": {{"auth": "{encoded}"}}, "https://index.docker.io/v1/": {{"username": "u", "password": "p"}}}}}}"#),
    )
    .unwrap();
    let legacy = dir.path().join(".dockercfg");
    std::fs::write(&legacy, r#"{"old.example.com": {"auth": "b2xkOnB3"}}"#).unwrap();
    let all = sources(
        vec![dir.path().join("missing.json"), first, second, legacy],
        dir.path(),
    );
    let creds = credentials_for("reg.example.com", &all)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.username, "ci");
    assert_eq!(creds.password, "s3cret:with:colons");
    let hub = credentials_for("docker.io", &all).await.unwrap().unwrap();
    assert_eq!(hub.username, "u");
    let other = credentials_for("other.io", &all).await.unwrap().unwrap();
    assert_eq!(other.password, "y");
    let old = credentials_for("old.example.com", &all)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.password, "pw");
    assert!(credentials_for("nowhere.io", &all).await.unwrap().is_none());
    assert!(
        !format!("{creds:?}").contains("s3cret"),
        "Debug hides the password"
    );
}

#[test]
fn files_are_looked_up_in_the_order_podman_documents() {
    let env = |k: &str| match k {
        "REGISTRY_AUTH_FILE" => Some("/run/auth.json".to_owned()),
        "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_owned()),
        "DOCKER_CONFIG" => Some("/etc/docker-cfg".to_owned()),
        "HOME" => Some("/home/ada".to_owned()),
        _ => None,
    };
    assert_eq!(
        auth_files(&env),
        [
            PathBuf::from("/run/auth.json"),
            PathBuf::from("/home/ada/.config/containers/auth.json"),
            PathBuf::from("/etc/docker-cfg/config.json"),
            PathBuf::from("/home/ada/.dockercfg"),
        ]
    );
    let env = |k: &str| match k {
        "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_owned()),
        "XDG_CONFIG_HOME" => Some("/home/ada/.cfg".to_owned()),
        "HOME" => Some("/home/ada".to_owned()),
        _ => None,
    };
    assert_eq!(
        auth_files(&env),
        [
            PathBuf::from("/run/user/1000/containers/auth.json"),
            PathBuf::from("/home/ada/.cfg/containers/auth.json"),
            PathBuf::from("/home/ada/.docker/config.json"),
            PathBuf::from("/home/ada/.dockercfg"),
        ]
    );
}

#[tokio::test]
async fn a_credential_helper_is_run_with_the_registry_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // Answers only for the registry it is asked about, as real helpers do.
    helper(
        dir.path(),
        "corp",
        r#"read server
if [ "$server" = "reg.corp.example:5000" ]; then
  echo '{"ServerURL":"reg.corp.example:5000","Username":"robot","Secret":"helper-secret-42"}'
else
  echo "credentials not found in native keychain"; exit 1
fi"#,
    );
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"auths": {"reg.corp.example:5000": {"auth": "eDp5"}}, "credHelpers": {"reg.corp.example:5000": "corp"}}"#,
    )
    .unwrap();
    let fallback = dir.path().join("fallback.json");
    std::fs::write(&fallback, r#"{"auths": {"other.io": {"auth": "eDp5"}}}"#).unwrap();
    let all = sources(vec![config.clone(), fallback.clone()], dir.path());
    let creds = credentials_for("reg.corp.example:5000", &all)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.username, "robot");
    assert_eq!(creds.password, "helper-secret-42");
    assert_eq!(
        crate::logging::scrub("token helper-secret-42"),
        "token <redacted>"
    );

    // credsStore: for every registry of its file; "not found" passes on to the next file.
    std::fs::write(&config, r#"{"credsStore": "corp"}"#).unwrap();
    let other = credentials_for("other.io", &all).await.unwrap().unwrap();
    assert_eq!(other.password, "y");

    // serve, unless told otherwise, runs no helper.
    let no_helpers = AuthSources {
        run_helpers: false,
        ..all.clone()
    };
    assert!(credentials_for("reg.corp.example:5000", &no_helpers)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_failing_helper_is_an_error_naming_it_its_status_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    crate::logging::add_secrets(["leaked-refresh-token-77".to_owned()]);
    helper(
        dir.path(),
        "broken",
        "echo 'error getting credentials: token expired (refresh leaked-refresh-token-77)' >&2; exit 3",
    );
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"credHelpers": {"reg.corp.example": "broken"}}"#,
    )
    .unwrap();
    let error = credentials_for(
        "reg.corp.example",
        &sources(vec![config.clone()], dir.path()),
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert_eq!(
        text,
        format!("the credential helper `docker-credential-broken` (credHelpers in {}) failed for reg.corp.example: exit status: 3: error getting credentials: token expired (refresh <redacted>)", config.display())
    );

    std::fs::write(
        &config,
        r#"{"credHelpers": {"reg.corp.example": "absent"}}"#,
    )
    .unwrap();
    let error = credentials_for("reg.corp.example", &sources(vec![config], dir.path()))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("docker-credential-absent"),
        "{error}"
    );
    assert!(error.to_string().contains("not installed"), "{error}");
}

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::serve::github::GitHub;
use sandbox_test_support::fake_github::{FakeGitHub, APP_INSTALLATION};

/// An RSA key as GitHub gives an app's (PKCS#1 PEM), and its public half as PKCS#1 DER.
fn app_key(dir: &Path, name: &str) -> (std::path::PathBuf, Vec<u8>) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.der"));
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        key.to_str().unwrap(),
        "2048",
    ]);
    openssl(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        public.to_str().unwrap(),
    ]);
    (key, std::fs::read(public).unwrap())
}

#[tokio::test]
async fn every_call_carries_an_installation_token_bought_with_a_signed_jwt_and_renewed_before_expiry(
) {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = app_key(dir.path(), "app");
    let fake = FakeGitHub::start().await;
    // Tokens live 4 s; serve buys again 2 s before expiry (in production 5 min of an hour).
    fake.enable_app("31337", public, Duration::from_secs(4));
    fake.open_pull("acme/shop", 7, "feature-x", "abc");
    let app = GitHubApp::new("31337", &key, &fake.url)
        .unwrap()
        .refreshing_before(Duration::from_secs(2));
    let app = Arc::new(app);
    let github = GitHub::new(&fake.url, None).unwrap().with_app(app.clone());

    let (pulls, _) = github.open_pulls("acme/shop").await.unwrap();
    assert_eq!(pulls.len(), 1);
    github.open_pulls("acme/shop").await.unwrap();
    assert_eq!(
        fake.issued_tokens().len(),
        1,
        "the token is reused while fresh"
    );
    assert_eq!(app.latest_token(), Some(fake.issued_tokens()[0].clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    github.open_pulls("acme/shop").await.unwrap();
    assert_eq!(fake.issued_tokens().len(), 2, "renewed before it expired");

    let calls = fake.calls();
    let count = |path: &str| calls.iter().filter(|c| c.path == path).count();
    assert_eq!(count("/repos/acme/shop/installation"), 1, "looked up once");
    assert_eq!(
        count(&format!(
            "/app/installations/{APP_INSTALLATION}/access_tokens"
        )),
        2
    );
    let pulls: Vec<_> = calls
        .iter()
        .filter(|c| c.path == "/repos/acme/shop/pulls")
        .collect();
    assert_eq!(pulls.len(), 3);
    let issued = fake.issued_tokens();
    for (call, token) in pulls.iter().zip([&issued[0], &issued[0], &issued[1]]) {
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("Bearer {token}").as_str())
        );
        // 304: the list asked again conditionally, unchanged.
        assert!([200, 304].contains(&call.status), "{call:?}");
    }
    // Neither the tokens nor the JWT ever show.
    assert_eq!(crate::logging::scrub(&issued[1]), "<redacted>");
}

#[tokio::test]
async fn a_jwt_signed_by_another_key_is_refused_with_github_s_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = app_key(dir.path(), "app");
    let (other_key, _) = app_key(dir.path(), "other");
    let fake = FakeGitHub::start().await;
    fake.enable_app("31337", public, Duration::from_secs(600));
    let app = GitHubApp::new("31337", &other_key, &fake.url).unwrap();
    let github = GitHub::new(&fake.url, None)
        .unwrap()
        .with_app(Arc::new(app));
    let error = github.open_pulls("acme/shop").await.unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains("could not find the GitHub App's installation on acme/shop"),
        "{text}"
    );
    assert!(text.contains("401 Unauthorized"), "{text}");
    assert!(fake.issued_tokens().is_empty());
}

#[test]
fn a_key_that_is_no_rsa_pem_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let error = GitHubApp::new("1", &key, "https://api.github.com")
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("is not an RSA private key in PEM"),
        "{error:#}"
    );
}

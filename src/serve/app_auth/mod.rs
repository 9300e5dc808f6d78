//! serve as a GitHub App: the app's id and private key make a JWT (RS256, valid 9 minutes,
//! issued a minute in the past for clock drift), which buys an installation access token per
//! installation (`POST /app/installations/{id}/access_tokens`; the installation of a repository
//! from `GET /repos/{owner}/{repo}/installation`). Tokens are cached and bought again
//! [`REFRESH_BEFORE`] their expiry; every API call and every HTTPS clone carries one. Neither
//! the key, the JWT nor a token is ever logged: each is registered with the scrubber.
//!
//! [`TokenSource`] is what the GitHub client asks for its `Authorization`: a fixed personal
//! token, or the app.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine as _;
use reqwest::Url;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::PrivateKeyDer;

use super::log::add_secret;

/// A token is bought again this long before it expires (GitHub's last an hour).
pub(crate) const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Where the GitHub client's token comes from.
#[derive(Clone)]
pub(crate) enum TokenSource {
    /// A personal (or any fixed) token, or none.
    Fixed(Option<String>),
    App(Arc<GitHubApp>),
}

impl TokenSource {
    /// The token for a call to `url` (an App's is its repository's installation's).
    pub(crate) async fn token_for(&self, url: &Url) -> Result<Option<String>> {
        match self {
            TokenSource::Fixed(token) => Ok(token.clone()),
            TokenSource::App(app) => app.token_for_url(url).await.map(Some),
        }
    }
}

/// An installation token and when it expires.
#[derive(Clone)]
struct Token {
    value: String,
    expires: SystemTime,
}

/// A GitHub App: its identity and the installation tokens it holds.
pub(crate) struct GitHubApp {
    app_id: String,
    key: RsaKeyPair,
    /// The API base, ending in `/` (GitHub Enterprise: `https://HOST/api/v3/`).
    api: Url,
    http: reqwest::Client,
    refresh_before: Duration,
    /// `owner/repo` (lower case) → installation id.
    installations: Mutex<HashMap<String, u64>>,
    /// installation id → its token.
    tokens: tokio::sync::Mutex<HashMap<u64, Token>>,
    /// The token bought last, for clones (which cannot wait for a purchase).
    latest: Arc<Mutex<Option<Token>>>,
}

impl GitHubApp {
    /// The app `app_id` with the private key in `key_file` (PEM, PKCS#1 as GitHub gives it,
    /// or PKCS#8), talking to the API at `api_url`.
    pub(crate) fn new(app_id: &str, key_file: &Path, api_url: &str) -> Result<GitHubApp> {
        let pem = std::fs::read(key_file).with_context(|| {
            format!(
                "could not read the GitHub App's private key {}",
                key_file.display()
            )
        })?;
        let key = rsa_key(&pem).with_context(|| {
            format!(
                "{} is not an RSA private key in PEM (GitHub App keys are `-----BEGIN RSA PRIVATE KEY-----`)",
                key_file.display()
            )
        })?;
        add_secret(String::from_utf8_lossy(&pem).trim());
        let mut api = Url::parse(api_url)
            .with_context(|| format!("--github-api-url `{api_url}` is not a URL"))?;
        api.set_path(&format!("{}/", api.path().trim_end_matches('/')));
        let http = crate::net::client_builder()?
            .user_agent("sandbox")
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .context("could not set up the HTTP client")?;
        Ok(GitHubApp {
            app_id: app_id.trim().to_owned(),
            key,
            api,
            http,
            refresh_before: REFRESH_BEFORE,
            installations: Mutex::default(),
            tokens: tokio::sync::Mutex::default(),
            latest: Arc::default(),
        })
    }

    /// The same app, buying tokens again `margin` before they expire (tests).
    #[cfg(test)]
    pub(crate) fn refreshing_before(mut self, margin: Duration) -> GitHubApp {
        self.refresh_before = margin;
        self
    }

    /// A JWT that authenticates as the app itself (RS256).
    pub(crate) fn jwt(&self) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let encode = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let header = encode(&serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let claims = encode(&serde_json::json!({
            "iat": now.saturating_sub(60),
            "exp": now + 9 * 60,
            "iss": self.app_id,
        }));
        let message = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("could not sign the GitHub App's JWT"))?;
        let jwt = format!(
            "{message}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        );
        add_secret(&jwt);
        Ok(jwt)
    }

    /// The token for a call to `url`: its repository's installation's; a call about no
    /// repository (`GET /user`) gets the token bought last.
    async fn token_for_url(&self, url: &Url) -> Result<String> {
        match self.repository_of(url) {
            Some(repo) => self.token_for_repo(&repo).await,
            None => self.latest_token().context(
                "a GitHub App acts per repository: this call names none, and no installation token was bought yet",
            ),
        }
    }

    /// `owner/repo` of an API URL `…/repos/OWNER/REPO/…`.
    fn repository_of(&self, url: &Url) -> Option<String> {
        let path = url.path().strip_prefix(self.api.path())?;
        let mut parts = path.split('/');
        (parts.next()? == "repos").then_some(())?;
        let (owner, repo) = (parts.next()?, parts.next()?);
        Some(format!("{owner}/{repo}").to_ascii_lowercase())
    }

    /// The installation token for `owner/repo`, bought when there is none or it expires soon.
    pub(crate) async fn token_for_repo(&self, repo: &str) -> Result<String> {
        let installation = self.installation_of(repo).await?;
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(&installation) {
            if token.expires > SystemTime::now() + self.refresh_before {
                return Ok(token.value.clone());
            }
        }
        let token = self.buy_token(installation).await?;
        tokens.insert(installation, token.clone());
        *self.latest.lock().expect("not poisoned") = Some(token.clone());
        Ok(token.value)
    }

    /// The token bought last, while it is still good for a minute (what a clone uses: the
    /// reports serve makes before it deploys bought it; with several installations, the
    /// token of the last one asked).
    pub(crate) fn latest_token(&self) -> Option<String> {
        latest_of(&self.latest, self.clone_margin())
    }

    /// How long a token must still be good for a clone to start with it.
    fn clone_margin(&self) -> Duration {
        self.refresh_before.min(Duration::from_secs(60))
    }

    /// A function giving [`Self::latest_token`], for the checkout's HTTPS credentials.
    pub(crate) fn latest_tokens(&self) -> impl Fn() -> Option<String> + Send + Sync + 'static {
        let (latest, margin) = (self.latest.clone(), self.clone_margin());
        move || latest_of(&latest, margin)
    }

    async fn installation_of(&self, repo: &str) -> Result<u64> {
        if let Some(id) = self.installations.lock().expect("not poisoned").get(repo) {
            return Ok(*id);
        }
        let url = self.api.join(&format!("repos/{repo}/installation"))?;
        let answer = self.as_app(reqwest::Method::GET, url).await.with_context(|| {
            format!("could not find the GitHub App's installation on {repo} (is the app installed there?)")
        })?;
        let id = answer["id"]
            .as_u64()
            .context("GitHub's answer about the installation has no `id`")?;
        self.installations
            .lock()
            .expect("not poisoned")
            .insert(repo.to_owned(), id);
        Ok(id)
    }

    async fn buy_token(&self, installation: u64) -> Result<Token> {
        let url = self
            .api
            .join(&format!("app/installations/{installation}/access_tokens"))?;
        let answer = self
            .as_app(reqwest::Method::POST, url)
            .await
            .with_context(|| format!("could not get an access token for the GitHub App's installation {installation}"))?;
        let value = answer["token"]
            .as_str()
            .context("GitHub's answer has no `token`")?
            .to_owned();
        add_secret(&value);
        let expires: jiff::Timestamp = answer["expires_at"]
            .as_str()
            .context("GitHub's answer has no `expires_at`")?
            .parse()
            .context("GitHub's `expires_at` is not a time")?;
        let expires = SystemTime::from(expires);
        super::log::log!(
            Info,
            "github.app_token",
            installation = installation,
            expires_at = answer["expires_at"].as_str().unwrap_or_default()
        );
        Ok(Token { value, expires })
    }

    /// A call authenticated as the app (its JWT); the answer's JSON.
    async fn as_app(&self, method: reqwest::Method, url: Url) -> Result<serde_json::Value> {
        let what = format!("{method} {}", url.path());
        let response = self
            .http
            .request(method, url)
            .bearer_auth(self.jwt()?)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| e.without_url())
            .with_context(|| format!("could not reach GitHub for {what}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let message: String = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            anyhow::bail!("GitHub answered {what} with {status}: {message}");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("GitHub's answer to {what} is not JSON"))
    }
}

fn latest_of(latest: &Mutex<Option<Token>>, margin: Duration) -> Option<String> {
    let latest = latest.lock().expect("not poisoned");
    latest
        .as_ref()
        .filter(|t| t.expires > SystemTime::now() + margin)
        .map(|t| t.value.clone())
}

/// An RSA key pair from PEM: PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`).
fn rsa_key(pem: &[u8]) -> Result<RsaKeyPair> {
    let key = PrivateKeyDer::from_pem_slice(pem).context("no private key in it")?;
    let pair = match &key {
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
        _ => anyhow::bail!("it is not an RSA key"),
    };
    pair.map_err(|e| anyhow::anyhow!("ring refuses it: {e}"))
}

#[cfg(test)]
mod tests;

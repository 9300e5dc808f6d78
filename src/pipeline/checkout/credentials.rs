//! Credentials for the remote, each offered once per connection phase and only to the
//! configured host: for SSH URLs the SSH agent, then the usual keys in `~/.ssh` (and
//! `SANDBOX_GIT_SSH_KEY`); for HTTPS URLs a token from the environment, then the user's git
//! credential helpers (`credential.helper`), as `git` itself would.
//!
//! libgit2 asks for credentials with the URL it is talking to, which after an HTTP redirect is
//! no longer the configured one: a redirect (or a config pointing at `http://`) must not carry
//! the token to another host or in clear text. [`may_send`] decides, before anything is offered.

use std::cell::RefCell;
use std::path::PathBuf;

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};

use super::url::{is_local_url, redact_url};

/// Environment variable holding a token for HTTPS remotes (preferred over the others).
pub(super) const TOKEN_ENV: &str = "SANDBOX_GIT_TOKEN";
/// Second choice for the HTTPS token: the token `sandbox serve` reports to GitHub with, so that
/// one GitHub token in the service's Secret also clones private repositories.
pub(super) const SERVE_TOKEN_ENV: &str = "SANDBOX_GITHUB_TOKEN";
/// Third choice for the HTTPS token.
pub(super) const GITHUB_TOKEN_ENV: &str = "GITHUB_TOKEN";
/// Fourth choice: the GitHub CLI's spelling (`gh`), read like `GITHUB_TOKEN`.
pub(super) const GH_TOKEN_ENV: &str = "GH_TOKEN";
/// Where the HTTPS token is read from, first set wins.
const TOKEN_VARS: [&str; 4] = [TOKEN_ENV, SERVE_TOKEN_ENV, GITHUB_TOKEN_ENV, GH_TOKEN_ENV];
/// Hard cap on credential requests per connection phase, whatever libgit2 asks for.
const MAX_CREDENTIAL_REQUESTS: u32 = 12;

/// How the SSH agent is named among the credentials offered (and in error messages).
pub(super) const SSH_AGENT: &str = "SSH agent";

/// A private key file to offer (before the default ones) for SSH remotes.
pub(super) const SSH_KEY_ENV: &str = "SANDBOX_GIT_SSH_KEY";
/// The keys `ssh` itself tries, in its order, under `~/.ssh`.
const DEFAULT_SSH_KEYS: [&str; 4] = ["id_ed25519", "id_ecdsa", "id_rsa", "id_dsa"];

/// Which git configuration names the credential helpers.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum HelperConfig {
    /// None are asked.
    #[default]
    Off,
    /// The user's (system, global and XDG files, as `git` reads them).
    User,
    /// One file (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    File(PathBuf),
}

/// Credentials available to the callbacks, read once from the environment.
#[derive(Debug, Clone, Default)]
pub(super) struct Credentials {
    /// `(variable name, token)`.
    pub(super) token: Option<(&'static str, String)>,
    /// Private key files that exist, in the order they are offered.
    pub(super) ssh_keys: Vec<PathBuf>,
    pub(super) helpers: HelperConfig,
}

/// A token for HTTPS remotes that changes while the process runs (serve's GitHub App
/// installation tokens), preferred over the environment's when it gives one.
type TokenProvider = Box<dyn Fn() -> Option<String> + Send + Sync>;
static TOKEN_PROVIDER: std::sync::OnceLock<TokenProvider> = std::sync::OnceLock::new();

/// Take HTTPS tokens from `provider` from now on (set once, by serve).
pub(crate) fn use_https_token_from(provider: impl Fn() -> Option<String> + Send + Sync + 'static) {
    let _ = TOKEN_PROVIDER.set(Box::new(provider));
}

/// How a provided token is named among the credentials offered.
const PROVIDED_TOKEN: &str = "the GitHub App's installation token";

impl Credentials {
    pub(super) fn from_env() -> Self {
        let mut credentials = Credentials::from_vars(|var| std::env::var(var).ok());
        if let Some(token) = TOKEN_PROVIDER.get().and_then(|provide| provide()) {
            credentials.token = Some((PROVIDED_TOKEN, token));
        }
        // Never shown, wherever libgit2 or a remote's answer might quote it.
        if let Some((_, token)) = &credentials.token {
            crate::logging::add_secrets([token.clone()]);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let explicit = std::env::var_os(SSH_KEY_ENV).map(PathBuf::from);
        credentials.ssh_keys = ssh_keys(explicit, home);
        credentials.helpers = HelperConfig::User;
        credentials
    }

    /// The first non-empty token of [`TOKEN_VARS`], as `var` reads them.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let token = TOKEN_VARS.into_iter().find_map(|name| {
            var(name)
                .filter(|t| !t.trim().is_empty())
                .map(|t| (name, t.trim().to_owned()))
        });
        Credentials {
            token,
            ..Credentials::default()
        }
    }
}

/// `SANDBOX_GIT_SSH_KEY`, then the default keys under `~/.ssh`, those that are files.
fn ssh_keys(explicit: Option<PathBuf>, home: Option<PathBuf>) -> Vec<PathBuf> {
    let defaults = home
        .map(|h| h.join(".ssh"))
        .into_iter()
        .flat_map(|dir| DEFAULT_SSH_KEYS.map(|k| dir.join(k)));
    explicit
        .into_iter()
        .chain(defaults)
        .filter(|k| k.is_file())
        .collect()
}

/// Whether a credential may go to `url` (what libgit2 is connecting to) for a repository
/// configured at `configured`: only over HTTPS or SSH, and only to the configured host and port.
/// The error says why not, for the message.
pub(super) fn may_send(configured: &str, url: &str) -> Result<(), String> {
    let Some((scheme, host)) = endpoint(url) else {
        return Err(format!("`{}` names no remote host", redact_url(url)));
    };
    if !matches!(scheme.as_str(), "https" | "ssh") {
        return Err(format!(
            "{} is not encrypted ({scheme}://); credentials go only over https:// or ssh",
            redact_url(url)
        ));
    }
    match endpoint(configured) {
        Some((_, expected)) if expected == host => Ok(()),
        _ => Err(format!(
            "{} is not the configured host of {} (a redirect?); credentials go only there",
            redact_url(url),
            redact_url(configured)
        )),
    }
}

/// The scheme (lower case; `ssh` for the scp-like `[user@]host:path`) and `host[:port]` (lower
/// case, without user info) of a remote URL; `None` for local paths.
fn endpoint(url: &str) -> Option<(String, String)> {
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "git+ssh" | "ssh+git" => "ssh".to_owned(),
            other => other.to_owned(),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return (!host.is_empty()).then(|| (scheme, host.to_ascii_lowercase()));
    }
    if is_local_url(url) {
        return None;
    }
    let authority = url.split_once(':')?.0;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| ("ssh".to_owned(), host.to_ascii_lowercase()))
}

/// Offers each kind of credential once; libgit2 calls the callback again after every rejected
/// credential, so without this it would ask forever.
pub(super) struct AuthState<'c> {
    credentials: &'c Credentials,
    /// The repository's URL as configured: credentials go only to its host.
    configured_url: &'c str,
    requests: u32,
    tried_username: bool,
    tried_agent: bool,
    /// How many of the credentials' SSH keys were offered.
    keys_tried: usize,
    tried_token: bool,
    tried_helper: bool,
    /// Human-readable descriptions of the credentials offered, for error messages.
    pub(super) offered: Vec<String>,
    /// Why a credential that was there was not offered, for error messages.
    pub(super) withheld: Option<String>,
    /// The callback refused to answer (nothing left to offer).
    pub(super) exhausted: bool,
}

impl<'c> AuthState<'c> {
    pub(super) fn new(credentials: &'c Credentials, configured_url: &'c str) -> Self {
        AuthState {
            credentials,
            configured_url,
            requests: 0,
            tried_username: false,
            tried_agent: false,
            keys_tried: 0,
            tried_token: false,
            tried_helper: false,
            offered: Vec::new(),
            withheld: None,
            exhausted: false,
        }
    }

    /// The next credential to offer to `url`, or an authentication error when none is left.
    pub(super) fn next(
        &mut self,
        url: &str,
        username_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        self.requests += 1;
        if let Err(why) = may_send(self.configured_url, url) {
            // Say why only when something was held back (a token, or the SSH agent).
            let token = allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && self.credentials.token.is_some();
            if token || allowed.contains(CredentialType::SSH_KEY) {
                self.withheld = Some(why);
            }
            return Err(self.give_up());
        }
        let user = username_from_url.unwrap_or("git");
        if self.requests <= MAX_CREDENTIAL_REQUESTS {
            // SSH without a user in the URL: libgit2 first asks for the user name.
            if allowed.contains(CredentialType::USERNAME) && !self.tried_username {
                self.tried_username = true;
                return Cred::username(user);
            }
            if allowed.contains(CredentialType::SSH_KEY) && !self.tried_agent {
                self.tried_agent = true;
                if let Ok(cred) = Cred::ssh_key_from_agent(user) {
                    self.offered.push(SSH_AGENT.to_owned());
                    return Ok(cred);
                }
            }
            if allowed.contains(CredentialType::SSH_KEY) {
                if let Some(cred) = self.next_key(user) {
                    return Ok(cred);
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !self.tried_token {
                self.tried_token = true;
                if let Some((var, token)) = &self.credentials.token {
                    if let Ok(cred) = Cred::userpass_plaintext("x-access-token", token) {
                        self.offered.push(format!("token from {var}"));
                        return Ok(cred);
                    }
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !self.tried_helper {
                self.tried_helper = true;
                if let Some(cred) = self.helper(url, username_from_url) {
                    return Ok(cred);
                }
            }
        }
        Err(self.give_up())
    }

    /// The next private key file not yet offered (an encrypted one fails at the server's turn
    /// and the next is tried: nothing here prompts).
    fn next_key(&mut self, user: &str) -> Option<Cred> {
        while let Some(key) = self.credentials.ssh_keys.get(self.keys_tried) {
            self.keys_tried += 1;
            if let Ok(cred) = Cred::ssh_key(user, None, key, None) {
                self.offered.push(format!("SSH key {}", key.display()));
                return Some(cred);
            }
        }
        None
    }

    /// What the user's git credential helpers answer for `url` (`git credential fill`).
    fn helper(&mut self, url: &str, username: Option<&str>) -> Option<Cred> {
        let config = match &self.credentials.helpers {
            HelperConfig::Off => return None,
            HelperConfig::User => git2::Config::open_default(),
            HelperConfig::File(path) => git2::Config::open(path),
        }
        .ok()?;
        let cred = Cred::credential_helper(&config, url, username).ok()?;
        self.offered.push("git credential helper".to_owned());
        Some(cred)
    }

    fn give_up(&mut self) -> git2::Error {
        self.exhausted = true;
        git2::Error::new(
            ErrorCode::Auth,
            ErrorClass::Callback,
            "no further credentials to offer",
        )
    }
}

/// Remote callbacks that answer libgit2's credential requests from `state`.
pub(super) fn callbacks<'a>(state: &'a RefCell<AuthState<'_>>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks
        .credentials(move |url, username, allowed| state.borrow_mut().next(url, username, allowed));
    callbacks
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTPS: &str = "https://github.com/acme/api.git";
    const SSH: &str = "git@github.com:acme/api.git";

    #[test]
    fn credentials_are_offered_once_each() {
        let creds = Credentials {
            token: Some((GITHUB_TOKEN_ENV, "t".into())),
            ..Credentials::default()
        };
        // SSH: user name, then the agent once, then give up.
        let mut ssh = AuthState::new(&creds, SSH);
        assert!(ssh.next(SSH, None, CredentialType::USERNAME).is_ok());
        assert!(ssh.next(SSH, Some("git"), CredentialType::SSH_KEY).is_ok());
        assert_eq!(ssh.offered, [SSH_AGENT]);
        let Err(err) = ssh.next(SSH, Some("git"), CredentialType::SSH_KEY) else {
            panic!("the agent must be offered only once")
        };
        assert_eq!(err.code(), ErrorCode::Auth);
        assert!(ssh.exhausted);
        // HTTPS: the token once, then give up.
        let plain = CredentialType::USER_PASS_PLAINTEXT;
        let mut https = AuthState::new(&creds, HTTPS);
        assert!(https.next(HTTPS, None, plain).is_ok());
        assert_eq!(https.offered, [format!("token from {GITHUB_TOKEN_ENV}")]);
        assert!(https.next(HTTPS, None, plain).is_err());
        // No token: nothing to offer at all.
        let none = Credentials::default();
        let mut https = AuthState::new(&none, HTTPS);
        assert!(https.next(HTTPS, None, plain).is_err());
        assert!(https.offered.is_empty());
        assert_eq!(https.withheld, None);
        // Whatever libgit2 asks, a bounded number of answers.
        let mut any = AuthState::new(&creds, HTTPS);
        let answered = (0..100)
            .filter(|_| any.next(HTTPS, None, CredentialType::all()).is_ok())
            .count();
        assert_eq!(answered, 3);
    }

    #[test]
    fn credentials_go_only_to_the_configured_host_over_https_or_ssh() {
        for (configured, url) in [
            (HTTPS, HTTPS),
            (HTTPS, "HTTPS://GitHub.com/acme/other.git"),
            (SSH, SSH),
            (SSH, "ssh://git@github.com/acme/api.git"),
            ("ssh://git@host:2222/a.git", "ssh://git@host:2222/a.git"),
            ("https://x-access-token:t@github.com/a.git", HTTPS),
        ] {
            assert_eq!(may_send(configured, url), Ok(()), "{configured} → {url}");
        }
        for (configured, url, why) in [
            (
                "http://github.com/a.git",
                "http://github.com/a.git",
                "not encrypted",
            ),
            (HTTPS, "http://github.com/acme/api.git", "not encrypted"),
            (HTTPS, "git://github.com/acme/api.git", "not encrypted"),
            (
                HTTPS,
                "https://evil.example/acme/api.git",
                "not the configured host",
            ),
            (
                HTTPS,
                "https://github.com.evil.example/a.git",
                "not the configured host",
            ),
            (
                HTTPS,
                "https://github.com:8443/acme/api.git",
                "not the configured host",
            ),
            (
                HTTPS,
                "https://github.com@evil.example/a.git",
                "not the configured host",
            ),
            (
                SSH,
                "git@evil.example:acme/api.git",
                "not the configured host",
            ),
            (
                "/srv/git/api.git",
                "/srv/git/api.git",
                "names no remote host",
            ),
        ] {
            let refused = may_send(configured, url).unwrap_err();
            assert!(refused.contains(why), "{configured} → {url}: {refused}");
        }
    }

    #[test]
    fn gh_token_is_read_after_github_token() {
        let vars = |set: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let creds = Credentials::from_vars(vars(&[("GH_TOKEN", "gh")]));
        assert_eq!(creds.token, Some((GH_TOKEN_ENV, "gh".into())));
        let creds = Credentials::from_vars(vars(&[("GH_TOKEN", "gh"), ("GITHUB_TOKEN", "g")]));
        assert_eq!(creds.token, Some((GITHUB_TOKEN_ENV, "g".into())));
    }

    #[test]
    fn clones_read_the_token_that_deploy_serve_yaml_sets() {
        let deploy = include_str!("../../../deploy/serve.yaml");
        let set = TOKEN_VARS
            .iter()
            .find(|var| deploy.contains(&format!("- name: {var}\n")))
            .expect("deploy/serve.yaml gives the service a token that clones read");
        let only = |name: &'static str| {
            move |var: &str| (var == name).then(|| format!(" token-of-{name} "))
        };
        let creds = Credentials::from_vars(only(set));
        assert_eq!(creds.token, Some((*set, format!("token-of-{set}"))));
        let both = |var: &str| Some(format!("from-{var}"));
        let first = Credentials::from_vars(both).token.unwrap();
        assert_eq!(first, (TOKEN_ENV, format!("from-{TOKEN_ENV}")));
        assert_eq!(Credentials::from_vars(|_| Some("  ".into())).token, None);
    }

    #[test]
    fn a_redirect_to_another_host_gets_no_token() {
        let creds = Credentials {
            token: Some((TOKEN_ENV, "ghp_secret".into())),
            ..Credentials::default()
        };
        let mut auth = AuthState::new(&creds, HTTPS);
        let redirected = "https://evil.example/acme/api.git";
        let refused = auth.next(redirected, None, CredentialType::USER_PASS_PLAINTEXT);
        assert!(refused.is_err());
        assert!(auth.offered.is_empty());
        let why = auth.withheld.as_deref().unwrap();
        assert!(
            why.contains("evil.example") && why.contains("redirect"),
            "{why}"
        );
        // Nor the SSH agent to another host.
        let mut ssh = AuthState::new(&creds, SSH);
        let other = "ssh://git@evil.example/acme/api.git";
        assert!(ssh
            .next(other, Some("git"), CredentialType::SSH_KEY)
            .is_err());
        assert!(ssh.offered.is_empty());
    }

    /// After the agent, the keys `ssh` would use; after the token, the user's credential
    /// helper: each once, and none of them for another host.
    #[test]
    fn ssh_keys_and_credential_helpers_are_offered_after_the_agent_and_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        for key in ["id_rsa", "id_ed25519", "custom"] {
            std::fs::write(ssh.join(key), "not checked until the server asks").unwrap();
        }
        let keys = ssh_keys(Some(ssh.join("custom")), Some(dir.path().into()));
        assert_eq!(
            keys,
            [
                ssh.join("custom"),
                ssh.join("id_ed25519"),
                ssh.join("id_rsa")
            ]
        );
        assert_eq!(
            ssh_keys(Some(ssh.join("missing")), None),
            Vec::<PathBuf>::new()
        );

        let asked = dir.path().join("asked");
        let helper = dir.path().join("helper.sh");
        std::fs::write(
            &helper,
            format!(
                "#!/bin/sh\ntouch {}\necho username=alice\necho password=from-helper\n",
                asked.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("gitconfig");
        std::fs::write(
            &config,
            format!("[credential]\n\thelper = !{}\n", helper.display()),
        )
        .unwrap();
        let creds = Credentials {
            token: Some((TOKEN_ENV, "t".into())),
            ssh_keys: keys,
            helpers: HelperConfig::File(config),
        };

        let mut over_ssh = AuthState::new(&creds, SSH);
        while over_ssh
            .next(SSH, Some("git"), CredentialType::SSH_KEY)
            .is_ok()
        {}
        let custom = format!("SSH key {}", ssh.join("custom").display());
        assert_eq!(
            over_ssh.offered[over_ssh.offered.len() - 3],
            custom,
            "{:?}",
            over_ssh.offered
        );
        assert_eq!(
            over_ssh.offered.len() - usize::from(over_ssh.offered[0] == SSH_AGENT),
            3
        );

        let redirected = "https://evil.example/acme/api.git";
        let mut elsewhere = AuthState::new(&creds, HTTPS);
        assert!(elsewhere
            .next(redirected, None, CredentialType::USER_PASS_PLAINTEXT)
            .is_err());
        assert!(!asked.exists(), "the helper was asked about another host");

        let mut https = AuthState::new(&creds, HTTPS);
        let plain = CredentialType::USER_PASS_PLAINTEXT;
        assert!(https.next(HTTPS, None, plain).is_ok());
        assert!(https.next(HTTPS, None, plain).is_ok());
        assert!(https.next(HTTPS, None, plain).is_err());
        assert_eq!(
            https.offered,
            [
                format!("token from {TOKEN_ENV}"),
                "git credential helper".to_owned()
            ]
        );
        assert!(asked.exists(), "the helper was asked");
    }
}

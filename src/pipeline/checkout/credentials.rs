//! Credentials for the remote: the SSH agent for SSH URLs, a token from the environment for
//! HTTPS URLs, each offered once per connection phase.

use std::cell::RefCell;

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};

/// Environment variable holding a token for HTTPS remotes (preferred over `GITHUB_TOKEN`).
pub(super) const TOKEN_ENV: &str = "SANDBOX_GIT_TOKEN";
/// Second choice for the HTTPS token.
pub(super) const GITHUB_TOKEN_ENV: &str = "GITHUB_TOKEN";
/// Hard cap on credential requests per connection phase, whatever libgit2 asks for.
const MAX_CREDENTIAL_REQUESTS: u32 = 4;

/// How the SSH agent is named among the credentials offered (and in error messages).
pub(super) const SSH_AGENT: &str = "SSH agent";

/// Credentials available to the callbacks, read once from the environment.
#[derive(Debug, Clone, Default)]
pub(super) struct Credentials {
    /// `(variable name, token)`.
    pub(super) token: Option<(&'static str, String)>,
}

impl Credentials {
    pub(super) fn from_env() -> Self {
        let token = [TOKEN_ENV, GITHUB_TOKEN_ENV].into_iter().find_map(|var| {
            std::env::var(var)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(|t| (var, t.trim().to_owned()))
        });
        Credentials { token }
    }
}

/// Offers each kind of credential once; libgit2 calls the callback again after every rejected
/// credential, so without this it would ask forever.
pub(super) struct AuthState<'c> {
    credentials: &'c Credentials,
    requests: u32,
    tried_username: bool,
    tried_agent: bool,
    tried_token: bool,
    /// Human-readable descriptions of the credentials offered, for error messages.
    pub(super) offered: Vec<String>,
    /// The callback refused to answer (nothing left to offer).
    pub(super) exhausted: bool,
}

impl<'c> AuthState<'c> {
    pub(super) fn new(credentials: &'c Credentials) -> Self {
        AuthState {
            credentials,
            requests: 0,
            tried_username: false,
            tried_agent: false,
            tried_token: false,
            offered: Vec::new(),
            exhausted: false,
        }
    }

    /// The next credential to offer, or an authentication error when none is left.
    pub(super) fn next(
        &mut self,
        username_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        self.requests += 1;
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
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !self.tried_token {
                self.tried_token = true;
                if let Some((var, token)) = &self.credentials.token {
                    if let Ok(cred) = Cred::userpass_plaintext("x-access-token", token) {
                        self.offered.push(format!("token from {var}"));
                        return Ok(cred);
                    }
                }
            }
        }
        self.exhausted = true;
        Err(git2::Error::new(
            ErrorCode::Auth,
            ErrorClass::Callback,
            "no further credentials to offer",
        ))
    }
}

/// Remote callbacks that answer libgit2's credential requests from `state`.
pub(super) fn callbacks<'a>(state: &'a RefCell<AuthState<'_>>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks
        .credentials(move |_url, username, allowed| state.borrow_mut().next(username, allowed));
    callbacks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_offered_once_each() {
        let creds = Credentials {
            token: Some((GITHUB_TOKEN_ENV, "t".into())),
        };
        // SSH: user name, then the agent once, then give up.
        let mut ssh = AuthState::new(&creds);
        assert!(ssh.next(None, CredentialType::USERNAME).is_ok());
        assert!(ssh.next(Some("git"), CredentialType::SSH_KEY).is_ok());
        assert_eq!(ssh.offered, [SSH_AGENT]);
        let Err(err) = ssh.next(Some("git"), CredentialType::SSH_KEY) else {
            panic!("the agent must be offered only once")
        };
        assert_eq!(err.code(), ErrorCode::Auth);
        assert!(ssh.exhausted);
        // HTTPS: the token once, then give up.
        let mut https = AuthState::new(&creds);
        assert!(https
            .next(None, CredentialType::USER_PASS_PLAINTEXT)
            .is_ok());
        assert_eq!(https.offered, [format!("token from {GITHUB_TOKEN_ENV}")]);
        assert!(https
            .next(None, CredentialType::USER_PASS_PLAINTEXT)
            .is_err());
        // No token: nothing to offer at all.
        let none = Credentials::default();
        let mut https = AuthState::new(&none);
        assert!(https
            .next(None, CredentialType::USER_PASS_PLAINTEXT)
            .is_err());
        assert!(https.offered.is_empty());
        // Whatever libgit2 asks, a bounded number of answers.
        let mut any = AuthState::new(&creds);
        let answered = (0..100)
            .filter(|_| any.next(None, CredentialType::all()).is_ok())
            .count();
        assert_eq!(answered, 3);
    }
}

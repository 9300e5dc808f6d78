//! Age identities (private keys), loaded from where sops looks for them.

use std::fmt;
use std::path::PathBuf;

use age::secrecy::zeroize::Zeroizing;

use super::binary::SopsCli;
use super::SopsError;
use crate::pipeline::config::SopsBinary;

/// Age identities (private keys) to decrypt sops data keys with.
#[derive(Clone, Default)]
pub(crate) struct Identities {
    pub(super) keys: Vec<age::x25519::Identity>,
    /// Where the keys came from, for messages (never the key text).
    pub(super) sources: Vec<String>,
    /// Identity sources sops could use but this module cannot (SSH keys, plugins, key commands).
    pub(super) unsupported: Vec<String>,
    /// What may be handed to the `sops` binary instead: the other half of "what this run can
    /// decrypt with", so it travels with the identities (off unless the user turned it on).
    pub(super) sops_binary: SopsCli,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("recipients", &self.recipients())
            .field("sources", &self.sources)
            .field("unsupported", &self.unsupported)
            .field("sops_binary", &self.sops_binary)
            .finish()
    }
}

impl Identities {
    /// Loads identities as sops does: from `SOPS_AGE_KEY` (key text, several keys per line
    /// allowed), from the file `SOPS_AGE_KEY_FILE` names, and from the user's
    /// `$XDG_CONFIG_HOME/sops/age/keys.txt` (`~/.config/sops/age/keys.txt` when
    /// `XDG_CONFIG_HOME` is unset; `~/Library/Application Support/sops/age/keys.txt` on macOS).
    /// Like sops, every source that is present contributes, in that order. Empty lines and lines
    /// starting with `#` are ignored. Nothing configured => `Ok` with no identities.
    pub(crate) fn from_env() -> Result<Identities, SopsError> {
        identities_from(&IdentityEnv::from_process())
    }

    /// These identities, and files they cannot decrypt handed to the `sops` binary as the
    /// user's `settings` allow.
    pub(crate) fn with_sops_binary(mut self, settings: &SopsBinary) -> Identities {
        self.sops_binary = SopsCli::from_settings(settings);
        self
    }

    /// Whether no identity was loaded.
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public keys (age recipients) of the identities.
    pub(super) fn recipients(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| key.to_public().to_string())
            .collect()
    }

    pub(super) fn add_text(&mut self, text: &str, origin: &str) -> Result<(), SopsError> {
        let before = self.keys.len();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            for word in line.split_whitespace() {
                if word.starts_with("AGE-PLUGIN-") {
                    self.unsupported
                        .push(format!("an age plugin identity in {origin}"));
                    continue;
                }
                if word.starts_with("AGE-SECRET-KEY-PQ-") {
                    self.unsupported
                        .push(format!("a post-quantum age identity in {origin}"));
                    continue;
                }
                match word.parse::<age::x25519::Identity>() {
                    Ok(key) => {
                        // The key that opens every sops file: never shown, wherever it leaks.
                        crate::logging::add_secrets([word.to_owned()]);
                        self.keys.push(key);
                    }
                    Err(reason) => {
                        return Err(SopsError::InvalidIdentity {
                            origin: origin.to_owned(),
                            line: index + 1,
                            reason,
                        })
                    }
                }
            }
        }
        if self.keys.len() > before {
            self.sources.push(origin.to_owned());
        }
        Ok(())
    }
}

/// The environment [`Identities::from_env`] reads, as plain values (so tests need not touch the
/// process environment).
#[derive(Debug, Default, Clone)]
struct IdentityEnv {
    sops_age_key: Option<String>,
    sops_age_key_file: Option<PathBuf>,
    xdg_config_home: Option<PathBuf>,
    home: Option<PathBuf>,
    /// Set variables naming identities only sops can load.
    unsupported_vars: Vec<String>,
}

impl IdentityEnv {
    fn from_process() -> IdentityEnv {
        let var = |name: &str| std::env::var_os(name);
        IdentityEnv {
            sops_age_key: var("SOPS_AGE_KEY").map(|v| v.to_string_lossy().into_owned()),
            sops_age_key_file: var("SOPS_AGE_KEY_FILE").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            home: var("HOME")
                .or_else(|| var("USERPROFILE"))
                .map(PathBuf::from),
            unsupported_vars: [
                "SOPS_AGE_KEY_CMD",
                "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
                "SOPS_AGE_SSH_PRIVATE_KEY_CMD",
            ]
            .into_iter()
            .filter(|name| var(name).is_some_and(|v| !v.is_empty()))
            .map(str::to_owned)
            .collect(),
        }
    }

    /// `<user config dir>/sops/age/keys.txt`, the user config dir as Go's `os.UserConfigDir`
    /// (with `XDG_CONFIG_HOME` honoured on macOS too, as sops does).
    fn default_key_file(&self) -> Option<PathBuf> {
        let config_dir = match &self.xdg_config_home {
            Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
            _ => {
                let home = self.home.as_ref().filter(|h| !h.as_os_str().is_empty())?;
                if cfg!(target_os = "macos") {
                    home.join("Library").join("Application Support")
                } else if cfg!(windows) {
                    home.join("AppData").join("Roaming")
                } else {
                    home.join(".config")
                }
            }
        };
        Some(config_dir.join("sops").join("age").join("keys.txt"))
    }
}

fn identities_from(env: &IdentityEnv) -> Result<Identities, SopsError> {
    let mut identities = Identities {
        unsupported: env.unsupported_vars.clone(),
        ..Identities::default()
    };
    if let Some(text) = &env.sops_age_key {
        identities.add_text(text, "SOPS_AGE_KEY")?;
    }
    if let Some(path) = &env.sops_age_key_file {
        let text = std::fs::read_to_string(path).map_err(|source| SopsError::KeyFileRead {
            path: path.clone(),
            source,
        })?;
        let text = Zeroizing::new(text);
        identities.add_text(&text, &format!("SOPS_AGE_KEY_FILE ({})", path.display()))?;
    }
    if let Some(path) = env.default_key_file() {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                identities.add_text(&text, &path.display().to_string())?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            // Like sops, an unreadable default file only matters when nothing else was found.
            Err(_) if !identities.is_empty() => {}
            Err(source) => return Err(SopsError::KeyFileRead { path, source }),
        }
    }
    Ok(identities)
}

/// Whether the recipient is a plain X25519 age key, the only kind this module has identities
/// for: `age1` and Bech32 data (which never contains `1`), unlike plugin (`age1name1…`) and
/// post-quantum (`age1pq1…`) recipients or SSH keys.
pub(super) fn is_x25519_recipient(recipient: &str) -> bool {
    recipient.starts_with("age1") && recipient.matches('1').count() == 1
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::fixtures::*;
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn identities_from_env_sources() {
        let main = std::fs::read_to_string(main_key_file()).unwrap();
        let other = std::fs::read_to_string(other_key_file()).unwrap();
        let (main_r, other_r) = (
            recipient_of(&main_key_file()),
            recipient_of(&other_key_file()),
        );
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let xdg = dir.path().join("xdg");

        // Nothing configured: no identities, no error.
        let none = identities_from(&IdentityEnv {
            home: Some(home.clone()),
            ..IdentityEnv::default()
        })
        .unwrap();
        assert!(none.is_empty());

        // The default file under HOME (Linux layout) ...
        let home_file = IdentityEnv {
            home: Some(home.clone()),
            ..IdentityEnv::default()
        }
        .default_key_file()
        .unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(home_file, home.join(".config/sops/age/keys.txt"));
        }
        write(&home_file, &other);
        let from_home = identities_from(&IdentityEnv {
            home: Some(home.clone()),
            ..IdentityEnv::default()
        })
        .unwrap();
        assert_eq!(from_home.recipients(), std::slice::from_ref(&other_r));

        // ... is replaced by the one under XDG_CONFIG_HOME when that is set.
        write(&xdg.join("sops/age/keys.txt"), &main);
        let from_xdg = identities_from(&IdentityEnv {
            home: Some(home.clone()),
            xdg_config_home: Some(xdg.clone()),
            ..IdentityEnv::default()
        })
        .unwrap();
        assert_eq!(from_xdg.recipients(), std::slice::from_ref(&main_r));

        // SOPS_AGE_KEY, SOPS_AGE_KEY_FILE and the default file all count, in that order.
        let key_file = dir.path().join("other.txt");
        write(&key_file, &other);
        let all = identities_from(&IdentityEnv {
            sops_age_key: Some(main.clone()),
            sops_age_key_file: Some(key_file.clone()),
            home: Some(home.clone()),
            xdg_config_home: Some(xdg.clone()),
            unsupported_vars: vec!["SOPS_AGE_KEY_CMD".to_owned()],
        })
        .unwrap();
        assert_eq!(
            all.recipients(),
            [main_r.clone(), other_r.clone(), main_r.clone()]
        );
        assert_eq!(all.sources.len(), 3);
        assert_eq!(all.sources[0], "SOPS_AGE_KEY");
        assert!(all.sources[1].starts_with("SOPS_AGE_KEY_FILE"));
        assert_eq!(all.unsupported, ["SOPS_AGE_KEY_CMD"]);
        let decrypted = decrypt_fixture("all-types.enc.yaml", &all).unwrap();
        assert_eq!(decrypted.tree["database"]["password"], "hunter2-fake");

        // SOPS_AGE_KEY may hold several keys on one line.
        let keys_only = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("AGE-"))
                .collect::<String>()
        };
        let one_line = format!("{} {}", keys_only(&main), keys_only(&other));
        let both = identities_from(&IdentityEnv {
            sops_age_key: Some(one_line),
            ..IdentityEnv::default()
        })
        .unwrap();
        assert_eq!(both.recipients(), [main_r, other_r]);

        // An explicitly named key file that is missing is an error.
        let missing = dir.path().join("missing.txt");
        let err = identities_from(&IdentityEnv {
            sops_age_key_file: Some(missing.clone()),
            ..IdentityEnv::default()
        })
        .unwrap_err();
        assert!(
            matches!(&err, SopsError::KeyFileRead { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.txt"));
    }

    #[test]
    fn key_text_parsing() {
        let text = "# a comment\n\n  # indented comment\nAGE-PLUGIN-YUBIKEY-1QQQQQQ\n";
        let parsed = Identities::from_key_text(text, "test").unwrap();
        assert!(parsed.is_empty());
        assert_eq!(parsed.unsupported.len(), 1);

        let bad = "# comment\nAGE-SECRET-KEY-1NOTAREALKEYATALL\n";
        let err = Identities::from_key_text(bad, "keys.txt").unwrap_err();
        assert!(
            matches!(err, SopsError::InvalidIdentity { line: 2, .. }),
            "{err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("keys.txt") && shown.contains("line 2"),
            "{shown}"
        );
        assert!(
            !shown.contains("NOTAREALKEY"),
            "key text must not be echoed: {shown}"
        );
    }

    #[test]
    fn recipient_kinds() {
        assert!(is_x25519_recipient(&recipient_of(&main_key_file())));
        assert!(!is_x25519_recipient("age1yubikey1qqqqqq"));
        assert!(!is_x25519_recipient("age1pq1qqqqqq"));
        assert!(!is_x25519_recipient("ssh-ed25519 AAAAC3Nz"));
    }
}

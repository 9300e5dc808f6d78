//! Who is asking: the owner a sandbox made from the command line records (`list -o wide`
//! shows it, `limits.max_per_owner` counts by it). `unknown` is a poor record — a demo run as
//! root in a container has no `USER` — so every source a person's name can come from is asked
//! in turn before it.

use std::path::Path;

/// `SANDBOX_OWNER`, else `USER`, else `LOGNAME`, else the account of this process's user id,
/// else git's `user.email` for the working directory, else `unknown`.
pub(super) fn current() -> String {
    choose(
        |name| std::env::var(name).ok(),
        os_user_name,
        || {
            std::env::current_dir()
                .ok()
                .and_then(|d| git_user_email(&d))
        },
    )
}

/// The first non-blank answer, asking each source only when the ones before had none.
fn choose(
    env: impl Fn(&str) -> Option<String>,
    os_user: impl FnOnce() -> Option<String>,
    git_email: impl FnOnce() -> Option<String>,
) -> String {
    let known =
        |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    known(env("SANDBOX_OWNER"))
        .or_else(|| known(env("USER")))
        .or_else(|| known(env("LOGNAME")))
        .or_else(|| known(os_user()))
        .or_else(|| known(git_email()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The name of the account of this process's user id in `/etc/passwd` (the owner of
/// `/proc/self` is the process's effective user id). Accounts only a directory service (LDAP)
/// knows are not found here; git's email still is.
fn os_user_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    account_name(&std::fs::read_to_string("/etc/passwd").ok()?, uid)
}

/// The name of `uid`'s entry in a passwd file (`name:password:uid:gid:gecos:home:shell`).
fn account_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty() && !name.starts_with('#')).then(|| name.to_owned())
    })
}

/// git's `user.email` as a commit in `dir` would take it: the repository's config over the
/// global one, or the global one alone outside a repository.
fn git_user_email(dir: &Path) -> Option<String> {
    let config = match git2::Repository::discover(dir) {
        Ok(repo) => repo.config().ok()?,
        Err(_) => git2::Config::open_default().ok()?,
    };
    config.get_string("user.email").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn each_source_is_asked_in_turn() {
        let os = || Some("os-user".to_owned());
        let git = || Some("dev@example.com".to_owned());
        let all = [
            ("SANDBOX_OWNER", "alice"),
            ("USER", "bob"),
            ("LOGNAME", "carol"),
        ];
        assert_eq!(choose(env_of(&all), os, git), "alice");
        assert_eq!(choose(env_of(&all[1..]), os, git), "bob");
        assert_eq!(choose(env_of(&all[2..]), os, git), "carol");
        assert_eq!(choose(env_of(&[]), os, git), "os-user");
        assert_eq!(choose(env_of(&[]), || None, git), "dev@example.com");
        assert_eq!(choose(env_of(&[]), || None, || None), "unknown");
    }

    #[test]
    fn a_blank_value_is_no_answer() {
        let env = [("SANDBOX_OWNER", " "), ("USER", "")];
        assert_eq!(choose(env_of(&env), || None, || None), "unknown");
        assert_eq!(
            choose(
                env_of(&env),
                || Some("\n".into()),
                || Some("dev@example.com".into())
            ),
            "dev@example.com"
        );
    }

    #[test]
    fn a_later_source_is_not_asked_once_one_answered() {
        let asked = std::cell::Cell::new(false);
        let owner = choose(
            env_of(&[("USER", "bob")]),
            || {
                asked.set(true);
                None
            },
            || None,
        );
        assert_eq!(owner, "bob");
        assert!(!asked.get());
    }

    #[test]
    fn the_account_is_the_passwd_entry_of_the_uid() {
        let passwd = "# comment\nroot:x:0:0:root:/root:/bin/bash\n\
                      broken line\nci:x:1001:1001::/home/ci:/bin/sh\n";
        assert_eq!(account_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(account_name(passwd, 1001).as_deref(), Some("ci"));
        assert_eq!(account_name(passwd, 1002), None);
        // Whoever runs the tests has an account: root in CI, a developer at a desk.
        assert!(os_user_name().is_some_and(|n| !n.is_empty()));
    }

    #[test]
    fn git_email_comes_from_the_repository_of_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        repo.config()
            .unwrap()
            .set_str("user.email", "dev@example.com")
            .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(
            git_user_email(&dir.path().join("sub")).as_deref(),
            Some("dev@example.com")
        );
    }
}

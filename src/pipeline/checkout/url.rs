//! What a repository URL says: which transport libgit2 uses for it, how it is shown in
//! messages (credentials redacted), and the name of its mirror in the cache.

use sha2::{Digest, Sha256};

/// Whether libgit2 uses its local transport (no shallow fetch) for `url`: `file://` URLs and
/// plain paths, as opposed to `scheme://…` and scp-like `[user@]host:path`.
pub(super) fn is_local_url(url: &str) -> bool {
    if let Some((scheme, _)) = url.split_once("://") {
        return scheme.eq_ignore_ascii_case("file");
    }
    match url.find(':') {
        None => true,
        Some(colon) => {
            let before_any_slash = url.find('/').is_none_or(|slash| colon < slash);
            let drive_letter = colon == 1 && url.as_bytes()[0].is_ascii_alphabetic();
            !before_any_slash || drive_letter
        }
    }
}

pub(super) fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// `url` with the password replaced by `***`; for HTTP(S), the whole user info (a token may
/// stand there alone).
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let userinfo = if is_http_url(url) {
        "***".to_owned()
    } else {
        match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => userinfo.to_owned(),
        }
    };
    format!("{scheme}://{userinfo}@{host}{path}")
}

/// Directory name of a URL's mirror: readable part + 12 hex digits of the URL's SHA-256.
pub(super) fn cache_key(url: &str) -> String {
    let mut readable = url.split_once("://").map_or(url, |(_, rest)| rest);
    if let Some((authority, _)) = readable.split_once('/') {
        if let Some(at) = authority.rfind('@') {
            readable = &readable[at + 1..];
        }
    } else if let Some(at) = readable.rfind('@') {
        readable = &readable[at + 1..];
    }
    let readable = readable.trim_end_matches('/');
    let readable = readable.strip_suffix(".git").unwrap_or(readable);

    let mut name = String::new();
    for c in readable.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let mut name: String = name.trim_matches(['-', '.']).chars().take(64).collect();
    name = name.trim_end_matches(['-', '.']).to_owned();
    if name.is_empty() {
        name.push_str("repo");
    }
    let digest = Sha256::digest(url.as_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_are_detected() {
        for local in [
            "/srv/git/api.git",
            "./api",
            "../x/api.git",
            "api.git",
            "file:///srv/git/api.git",
            "FILE:///x",
            "C:\\repos\\api",
            "some/dir:with-colon",
        ] {
            assert!(is_local_url(local), "{local}");
        }
        for remote in [
            "https://github.com/acme/api.git",
            "ssh://git@github.com/acme/api.git",
            "git@github.com:acme/api.git",
            "github.com:acme/api.git",
            "git://127.0.0.1:9418/api.git",
        ] {
            assert!(!is_local_url(remote), "{remote}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://x-access-token:s3cr3t@github.com/acme/api.git"),
            "https://***@github.com/acme/api.git"
        );
        assert_eq!(
            redact_url("https://ghp_token@github.com/acme/api.git"),
            "https://***@github.com/acme/api.git"
        );
        assert_eq!(
            redact_url("ssh://git:pw@host/acme/api.git"),
            "ssh://git:***@host/acme/api.git"
        );
        assert_eq!(
            redact_url("ssh://git@host/acme/api.git"),
            "ssh://git@host/acme/api.git"
        );
        assert_eq!(
            redact_url("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
        assert_eq!(redact_url("/srv/a@b/c"), "/srv/a@b/c");
    }

    #[test]
    fn cache_keys_are_readable_and_distinct() {
        let k = cache_key("https://user:pw@github.com/acme/api.git");
        assert!(k.starts_with("github.com-acme-api-"), "{k}");
        assert!(!k.contains("pw"), "{k}");
        assert_eq!(k.len(), "github.com-acme-api-".len() + 12);
        assert!(cache_key("git@github.com:acme/api.git").starts_with("github.com-acme-api-"));
        assert_ne!(
            cache_key("https://github.com/acme/api.git"),
            cache_key("ssh://git@github.com/acme/api.git")
        );
        assert_eq!(
            cache_key("https://github.com/acme/api.git"),
            cache_key("https://github.com/acme/api.git")
        );
        let long = format!("https://h/{}", "x".repeat(300));
        assert!(cache_key(&long).len() <= 64 + 13);
        assert!(cache_key("/../..").starts_with("repo-"));
        let weird = cache_key("/tmp/ä b/../c");
        assert!(
            weird
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{weird}"
        );
        assert!(
            !weird.starts_with('.') && !weird.starts_with('-'),
            "{weird}"
        );
    }
}

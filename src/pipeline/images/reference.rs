//! Image names as people write them (`registry.example.com:5000/shop/api`, `busybox`) and what
//! the registry API calls them (`https://registry-1.docker.io`, `library/busybox`).

/// A repository in a registry, without tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ImageName {
    /// As written: what goes into `image:` fields, e.g. `10.200.0.2:5000/shop/backend`.
    pub(crate) written: String,
    /// The registry's host (and port) as written: `docker.io` when none is.
    pub(crate) registry: String,
    /// The repository's path in the registry, e.g. `shop/backend`, `library/busybox`.
    pub(crate) path: String,
}

impl ImageName {
    /// Parse `[REGISTRY/]PATH`. The first component is a registry when it has a `.` or `:`, or is
    /// `localhost` (Docker's rule); otherwise the image is on Docker Hub.
    pub(crate) fn parse(written: &str) -> Result<ImageName, String> {
        if written.contains('@')
            || written
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
        {
            return Err(
                "write the repository without a tag or digest: the tag is `image.tag`".into(),
            );
        }
        let (registry, path) = match written.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), written.to_owned()),
        };
        let path = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if registry.is_empty() || !path.split('/').all(component_ok) {
            return Err(
                "a repository is lower-case letters, digits, `.`, `_`, `-` and `/` (e.g. `registry.example.com/shop/api`)"
                    .into(),
            );
        }
        Ok(ImageName {
            written: written.to_owned(),
            registry,
            path,
        })
    }

    /// The registry's API base URL: Docker Hub's API is at registry-1.docker.io; plain HTTP for
    /// `insecure` registries and for localhost, as Docker and containerd do.
    pub(crate) fn api_base(&self, insecure: &[String]) -> String {
        let host = match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let local = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|l| host == *l || host.starts_with(&format!("{l}:")));
        let scheme = if local || insecure.iter().any(|i| i == &self.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }
}

/// Whether `tag` is a valid OCI tag.
pub(crate) fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_registry_and_path_like_docker_does() {
        let n = ImageName::parse("10.200.0.2:5000/shop/backend").unwrap();
        assert_eq!(
            (n.registry.as_str(), n.path.as_str()),
            ("10.200.0.2:5000", "shop/backend")
        );
        assert_eq!(
            n.api_base(&["10.200.0.2:5000".into()]),
            "http://10.200.0.2:5000"
        );
        assert_eq!(n.api_base(&[]), "https://10.200.0.2:5000");
        let n = ImageName::parse("busybox").unwrap();
        assert_eq!(
            (n.registry.as_str(), n.path.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(n.api_base(&[]), "https://registry-1.docker.io");
        let n = ImageName::parse("shop/api").unwrap();
        assert_eq!(n.path, "shop/api");
        let n = ImageName::parse("localhost:5000/x").unwrap();
        assert_eq!(n.api_base(&[]), "http://localhost:5000");
        assert_eq!(n.written, "localhost:5000/x");
    }

    #[test]
    fn tags_digests_and_bad_characters_are_refused() {
        for bad in [
            "shop/api:1",
            "shop/api@sha256:00",
            "Shop/API",
            "reg.io/",
            "reg.io//x",
            "",
        ] {
            assert!(ImageName::parse(bad).is_err(), "{bad}");
        }
        assert!(is_tag("0123456789abcdef0123456789abcdef01234567"));
        assert!(is_tag("v1.2_rc-3"));
        assert!(!is_tag("-x") && !is_tag("a/b") && !is_tag("") && !is_tag(&"a".repeat(129)));
    }
}

//! One trust policy for every HTTPS client the tool makes (registries, GitHub or GitHub
//! Enterprise, Slack, git over HTTPS), as a company network needs it:
//!
//! - the operating system's trust store (where OpenSSL looks on this machine: on Debian
//!   `/etc/ssl/certs`, which `update-ca-certificates` fills);
//! - plus `SSL_CERT_FILE` and `SSL_CERT_DIR` — added to the store, not instead of it, so pointing
//!   them at a company CA does not lose the public roots;
//! - plus the CA files of `--ca-file` / `SANDBOX_CA_FILE` (every connection);
//! - plus, per host, CA files the caller names (a registry's `images.registries.HOST.ca_file`
//!   in sandbox.yaml): trusted for that host only.
//!
//! These come from the user's machine and the user's sandbox.yaml, never from a branch.
//! Proxies: reqwest honours `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (and their
//! lower-case spellings) on its own; nothing here turns that off.
//!
//! A certificate that none of these vouch for fails with [`UntrustedCertificate`]: the host,
//! the issuer the server's chain names, and how to add its CA.

mod der;
mod verifier;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use crate::error::Hint;

pub(crate) use verifier::UntrustedCertificate;

/// The CA files every connection trusts (`--ca-file`, `SANDBOX_CA_FILE`), set once at start.
static CA_FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// The operating system's store, read once (a few hundred certificates).
static SYSTEM_ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();

/// A CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the CA file {} {problem}", path.display())]
pub(crate) struct CaFileError {
    pub(crate) path: PathBuf,
    pub(crate) problem: String,
}

impl Hint for CaFileError {
    fn hint(&self) -> Option<String> {
        Some("a CA file holds one or more PEM certificates (`-----BEGIN CERTIFICATE-----`); check the path given by --ca-file / SANDBOX_CA_FILE or by `ca_file` in sandbox.yaml".into())
    }
}

/// Trust `files` on every connection from now on (`--ca-file`), git's included. Read them
/// once here, so a wrong path fails at start and not at the first connection.
pub(crate) fn trust_ca_files(mut files: Vec<PathBuf>) -> Result<(), CaFileError> {
    files.retain(|f| !f.as_os_str().is_empty());
    for file in &files {
        read_ca_file(file)?;
        git_trusts(file)?;
    }
    let _ = CA_FILES.set(files);
    Ok(())
}

/// libgit2 (built with OpenSSL) reads `SSL_CERT_FILE`/`SSL_CERT_DIR` itself; the CA files of
/// `--ca-file` are added to its store (`SSL_CTX_load_verify_locations` adds, it does not
/// replace).
fn git_trusts(file: &Path) -> Result<(), CaFileError> {
    // SAFETY: called at start, before any git operation runs on another thread.
    unsafe { git2::opts::set_ssl_cert_file(file) }.map_err(|e| CaFileError {
        path: file.to_owned(),
        problem: format!("cannot be given to git: {}", e.message()),
    })
}

/// A client builder with the trust policy (see the module's doc); callers add timeouts etc.
pub(crate) fn client_builder() -> Result<reqwest::ClientBuilder, CaFileError> {
    client_builder_for(&BTreeMap::new())
}

/// [`client_builder`], also trusting `per_host`'s CA files for connections to that host (a
/// host name or IP address, without port).
pub(crate) fn client_builder_for(
    per_host: &BTreeMap<String, Vec<PathBuf>>,
) -> Result<reqwest::ClientBuilder, CaFileError> {
    let config = tls_config(per_host)?;
    Ok(reqwest::Client::builder().use_preconfigured_tls(config))
}

/// The rustls configuration of [`client_builder_for`].
pub(crate) fn tls_config(
    per_host: &BTreeMap<String, Vec<PathBuf>>,
) -> Result<rustls::ClientConfig, CaFileError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut common = roots_of_machine();
    for file in CA_FILES.get().into_iter().flatten() {
        common.extend(read_ca_file(file)?);
    }
    let mut hosts = BTreeMap::new();
    for (host, files) in per_host {
        let mut roots = common.clone();
        for file in files {
            roots.extend(read_ca_file(file)?);
        }
        hosts.insert(host.clone(), roots);
    }
    let verifier = verifier::Verifier::new(common, hosts, provider.clone());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The OS store plus `SSL_CERT_FILE` and `SSL_CERT_DIR` (read at each call: tests set them).
fn roots_of_machine() -> Vec<CertificateDer<'static>> {
    let mut roots = SYSTEM_ROOTS
        .get_or_init(|| {
            let probe = openssl_probe_locations();
            rustls_native_certs::load_certs_from_paths(probe.0.as_deref(), probe.1.as_deref()).certs
        })
        .clone();
    let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
        .map(|d| std::env::split_paths(&d).collect())
        .unwrap_or_default();
    let found = rustls_native_certs::load_certs_from_paths(file.as_deref(), None);
    roots.extend(found.certs);
    for dir in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
        roots.extend(rustls_native_certs::load_certs_from_paths(None, Some(dir)).certs);
    }
    roots
}

/// Where OpenSSL keeps the system's CAs: the first bundle file and directory that exist among
/// the usual places (what `openssl-probe` looks for; rustls-native-certs reads them the same
/// way when no environment variable is set).
fn openssl_probe_locations() -> (Option<PathBuf>, Option<PathBuf>) {
    const DIRS: &[&str] = &[
        "/etc/ssl",
        "/etc/pki/tls",
        "/etc/pki/ca-trust/extracted/pem",
        "/usr/lib/ssl",
        "/usr/local/ssl",
        "/etc/openssl",
        "/usr/local/share",
        "/usr/share/ssl",
        "/opt/local/share",
    ];
    const FILES: &[&str] = &[
        "cert.pem",
        "certs.pem",
        "ca-bundle.pem",
        "cacert.pem",
        "ca-certificates.crt",
        "certs/ca-certificates.crt",
        "certs/ca-root-nss.crt",
        "certs/ca-bundle.crt",
        "CARootCertificates.pem",
        "tls-ca-bundle.pem",
    ];
    let file = DIRS
        .iter()
        .flat_map(|d| FILES.iter().map(move |f| Path::new(d).join(f)))
        .find(|p| p.is_file());
    let dir = DIRS
        .iter()
        .map(|d| Path::new(d).join("certs"))
        .find(|p| p.is_dir());
    (file, dir)
}

/// The certificates of a PEM file; none is an error.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let error = |problem: String| CaFileError {
        path: path.to_owned(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| error(format!("cannot be read: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| error(format!("is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The host (name or address, no port) of a `host[:port]` as registries are written.
pub(crate) fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The untrusted certificate somewhere in `error`'s chain, if that is why it failed.
pub(crate) fn untrusted(error: &(dyn std::error::Error + 'static)) -> Option<UntrustedCertificate> {
    let mut next = Some(error);
    while let Some(e) = next {
        // io::Error's `source` skips the error it wraps, and TLS connectors wrap an io::Error
        // in another: look inside each.
        let mut candidate = e;
        loop {
            if let Some(found) = verifier::from_rustls(candidate) {
                return Some(found);
            }
            match candidate
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => candidate = inner,
                None => break,
            }
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
pub(crate) mod pki;
#[cfg(test)]
mod tests;

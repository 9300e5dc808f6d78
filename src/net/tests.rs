use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::pki::make_pki;
use super::*;

/// A TLS handshake in memory between `client` and a server presenting `leaf`, for `name`.
fn handshake(
    client: rustls::ClientConfig,
    leaf: &Path,
    key: &Path,
    name: &str,
) -> Result<(), rustls::Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(leaf)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    for _ in 0..10 {
        let mut buffer = Vec::new();
        client.write_tls(&mut buffer).unwrap();
        server.read_tls(&mut buffer.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut buffer = Vec::new();
        server.write_tls(&mut buffer).unwrap();
        client.read_tls(&mut buffer.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

#[test]
fn a_private_ca_is_trusted_for_its_host_only_and_an_unknown_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = make_pki(dir.path(), "registry.corp.example");

    let untrusted = handshake(
        tls_config(&BTreeMap::new()).unwrap(),
        &leaf,
        &key,
        "registry.corp.example",
    )
    .unwrap_err();
    let found = untrusted_of(untrusted);
    assert_eq!(found.host, "registry.corp.example");
    assert_eq!(
        found.issuer.as_deref(),
        Some("CN=Test Corp Root CA, O=Example Corp")
    );
    assert_eq!(
        found.to_string(),
        "the TLS certificate of registry.corp.example is not trusted: its issuer is not a trusted CA (issued by CN=Test Corp Root CA, O=Example Corp)"
    );
    assert!(found.hint().unwrap().contains("--ca-file"));

    let for_host = BTreeMap::from([("registry.corp.example".to_owned(), vec![ca.clone()])]);
    handshake(
        tls_config(&for_host).unwrap(),
        &leaf,
        &key,
        "registry.corp.example",
    )
    .expect("the host's CA file is trusted");

    // Another host's CA file does not vouch for this one.
    let other = BTreeMap::from([("other.corp.example".to_owned(), vec![ca])]);
    let error = handshake(
        tls_config(&other).unwrap(),
        &leaf,
        &key,
        "registry.corp.example",
    )
    .unwrap_err();
    untrusted_of(error);
}

fn untrusted_of(error: rustls::Error) -> UntrustedCertificate {
    // As hyper-rustls hands it on: tokio-rustls's io::Error inside another.
    let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, error));
    untrusted(&io).expect("the error names the untrusted certificate")
}

#[test]
fn a_ca_file_that_is_no_certificate_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let error = read_ca_file(&empty).unwrap_err();
    assert!(
        error.to_string().contains("holds no PEM certificate"),
        "{error}"
    );
    let missing = read_ca_file(&dir.path().join("missing.pem")).unwrap_err();
    assert!(missing.to_string().contains("cannot be read"), "{missing}");
}

#[test]
fn hosts_are_taken_from_registry_authorities() {
    assert_eq!(host_of("registry.example.com:5000"), "registry.example.com");
    assert_eq!(host_of("10.200.0.2:5443"), "10.200.0.2");
    assert_eq!(host_of("[::1]:5000"), "::1");
    assert_eq!(host_of("ghcr.io"), "ghcr.io");
}

#[test]
fn the_machine_store_is_found() {
    // Debian's ca-certificates (and every CI image) has one.
    assert!(!roots_of_machine().is_empty());
}

//! The certificate check: webpki against the roots of the host being spoken to, and, when it
//! fails, an error that names the host and the issuer the server's chain asks to be trusted.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::error::Hint;

/// A server's certificate that the trust policy does not vouch for. (Its `Debug` is its
/// message: rustls shows a custom certificate error with `{:?}`, e.g. in GitHub's errors.)
#[derive(Clone, thiserror::Error)]
#[error(
    "the TLS certificate of {host} is not trusted: {problem}{}",
    issued_by(issuer)
)]
pub(crate) struct UntrustedCertificate {
    pub(crate) host: String,
    /// The issuer the server's chain ends with (`CN=…, O=…`), when it can be read.
    pub(crate) issuer: Option<String>,
    pub(crate) problem: String,
}

impl std::fmt::Debug for UntrustedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

fn issued_by(issuer: &Option<String>) -> String {
    match issuer {
        Some(issuer) => format!(" (issued by {issuer})"),
        None => String::new(),
    }
}

impl Hint for UntrustedCertificate {
    fn hint(&self) -> Option<String> {
        let ca = match &self.issuer {
            Some(issuer) => format!("the CA certificate of {issuer}"),
            None => "the CA certificate that issued it".into(),
        };
        Some(format!(
            "trust {ca} (PEM): `--ca-file FILE` or SANDBOX_CA_FILE (every connection), SSL_CERT_FILE/SSL_CERT_DIR, the system store (`update-ca-certificates`), or for a registry `images.registries.\"HOST:PORT\".ca_file` in sandbox.yaml (that registry only); never mark an HTTPS registry insecure for this"
        ))
    }
}

/// webpki with the common roots, or a host's own (the common ones plus its CA files).
#[derive(Debug)]
pub(super) struct Verifier {
    common: Arc<WebPkiServerVerifier>,
    hosts: BTreeMap<String, Arc<WebPkiServerVerifier>>,
}

impl Verifier {
    pub(super) fn new(
        common: Vec<CertificateDer<'static>>,
        hosts: BTreeMap<String, Vec<CertificateDer<'static>>>,
        provider: Arc<CryptoProvider>,
    ) -> Verifier {
        let build = |certs: Vec<CertificateDer<'static>>| {
            let mut roots = RootCertStore::empty();
            // Certificates a store cannot use (expired roots, odd encodings) are skipped, as
            // OpenSSL skips them.
            roots.add_parsable_certificates(certs);
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap_or_else(|_| {
                    // No usable root at all: a verifier that trusts nothing, so every
                    // certificate fails with a clear error rather than the client not building.
                    let empty = RootCertStore {
                        roots: vec![rustls::pki_types::TrustAnchor {
                            subject: Vec::new().into(),
                            subject_public_key_info: Vec::new().into(),
                            name_constraints: None,
                        }],
                    };
                    WebPkiServerVerifier::builder_with_provider(Arc::new(empty), provider.clone())
                        .build()
                        .expect("a non-empty store")
                })
        };
        Verifier {
            common: build(common),
            hosts: hosts.into_iter().map(|(h, c)| (h, build(c))).collect(),
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let host = server_name.to_str();
        let verifier = self.hosts.get(host.as_ref()).unwrap_or(&self.common);
        verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|error| match error {
                rustls::Error::InvalidCertificate(problem) => {
                    // The last certificate the server sent is the one whose issuer must be
                    // trusted.
                    let top = intermediates.last().unwrap_or(end_entity);
                    let untrusted = UntrustedCertificate {
                        host: host.into_owned(),
                        issuer: super::der::issuer(top),
                        problem: describe(&problem),
                    };
                    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
                        Arc::new(untrusted),
                    )))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.common.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.common.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.common.supported_verify_schemes()
    }
}

/// webpki's verdict in words.
fn describe(problem: &CertificateError) -> String {
    match problem {
        CertificateError::UnknownIssuer => "its issuer is not a trusted CA".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet".into()
        }
        CertificateError::Revoked => "it is revoked".into(),
        CertificateError::BadSignature => "its signature is wrong".into(),
        other => other.to_string(),
    }
}

/// The [`UntrustedCertificate`] a rustls error carries, if it is one.
pub(super) fn from_rustls(
    error: &(dyn std::error::Error + 'static),
) -> Option<UntrustedCertificate> {
    match error.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<UntrustedCertificate>().cloned()
        }
        _ => None,
    }
}

//! GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body,
//! keyed with the webhook's secret>`. Nothing of a request is looked at before it verifies.

use crate::error::Hint;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub(crate) const HEADER: &str = "x-hub-signature-256";

/// Why a request's signature was refused. The messages say nothing about the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error("the signature does not match the body (a different secret, or a changed body)")]
    Mismatch,
}

impl Hint for SignatureError {
    fn hint(&self) -> Option<String> {
        Some("the webhook's secret in GitHub must equal SANDBOX_WEBHOOK_SECRET (or --webhook-secret-file)".into())
    }
}

fn mac(secret: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The header value GitHub sends for `body` (for tests and tools that sign deliveries).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, body)))
}

/// Check `header` (the raw `X-Hub-Signature-256` value, if any) against `body`, in constant time.
pub(crate) fn verify(
    secret: &[u8],
    body: &[u8],
    header: Option<&[u8]>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digits = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut given = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut given).map_err(|_| SignatureError::Malformed)?;
    if bool::from(mac(secret, body).ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from GitHub's documentation ("Validating webhook deliveries"):
    // secret "It's a Secret to Everybody", payload "Hello, World!".
    const DOC_SECRET: &[u8] = b"It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_documented_example_verifies() {
        assert_eq!(sign(DOC_SECRET, DOC_BODY), DOC_SIGNATURE);
        assert_eq!(
            verify(DOC_SECRET, DOC_BODY, Some(DOC_SIGNATURE.as_bytes())),
            Ok(())
        );
        // Hex digits in upper case are the same signature.
        let upper = format!("sha256={}", DOC_SIGNATURE[7..].to_uppercase());
        assert_eq!(verify(DOC_SECRET, DOC_BODY, Some(upper.as_bytes())), Ok(()));
    }

    #[test]
    fn a_wrong_secret_or_a_changed_body_is_a_mismatch() {
        let header = Some(DOC_SIGNATURE.as_bytes());
        assert_eq!(
            verify(b"another secret", DOC_BODY, header),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(DOC_SECRET, b"Hello, World?", header),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(DOC_SECRET, b"", Some(sign(DOC_SECRET, b"x").as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        assert_eq!(
            verify(DOC_SECRET, DOC_BODY, None),
            Err(SignatureError::Missing)
        );
        let sha1 = format!("sha1={}", &DOC_SIGNATURE[7..47]);
        for bad in [
            "",
            "sha256=",
            &DOC_SIGNATURE[7..],                            // no prefix
            &DOC_SIGNATURE[..DOC_SIGNATURE.len() - 2],      // too short
            &format!("{DOC_SIGNATURE}00"),                  // too long
            &format!("sha256={}zz", &DOC_SIGNATURE[7..69]), // not hex
            &sha1,                                          // the old SHA-1 header's format
        ] {
            assert_eq!(
                verify(DOC_SECRET, DOC_BODY, Some(bad.as_bytes())),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }
}

//! Test PKI: a CA and a leaf it signed, made by the real openssl CLI (tests of the trust
//! policy, and of every client that must name an untrusted certificate).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA (`CN=Test Corp Root CA, O=Example Corp`) and a leaf for `name` it signed, made by the
/// openssl CLI: (ca.pem, leaf.pem, leaf.key).
pub(crate) fn make_pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(status.status.success(), "{args:?}: {status:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/O=Example Corp/CN=Test Corp Root CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        &format!("/CN={name}"),
    ]);
    std::fs::write(dir.join("ext"), format!("subjectAltName=DNS:{name}\n")).unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "leaf.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

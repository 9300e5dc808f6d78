//! Inside a company network (issue 26): a registry behind a private CA, registry credentials
//! from a credential helper, a forward proxy, and a kubeconfig whose user is an exec plugin.
//! Each test starts the real parts it needs (Debian's docker-registry over TLS with a CA made by
//! openssl, tinyproxy) on free ports of 127.0.0.1, with files of its own.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{cluster, describe, registry, run_failing, run_ok, Product};

const NO_BUILD: &str = "      build:\n        containerfile: Containerfile\n        args: {BASE: \"${SANDBOX_REGISTRY}/local/busybox:1\"}\n";

/// The node's address in the cluster's network namespace: not localhost, which registries
/// speak plain HTTP on by default.
const NODE: &str = "10.200.0.2";

fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_listener(address: &str, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} did not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").args(args).current_dir(dir));
}

/// A CA (`CN=E2E Corp Root CA, O=E2E Corp`) and a certificate for the node's address it signed.
fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
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
            "/O=E2E Corp/CN=E2E Corp Root CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            &format!("/CN={NODE}"),
        ],
    );
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=IP:{NODE}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "tls.pem",
        ],
    );
}

/// Debian's docker-registry: over TLS with a test CA on the node's address, or on 127.0.0.1
/// (plain HTTP, as localhost registries are), with htpasswd auth if `login` says. (The images
/// tests use it too.)
pub(super) struct TestRegistry {
    child: Child,
    pub(super) address: String,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    pub(super) fn start(tls: bool, login: Option<(&str, &str)>) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let host = if tls { NODE } else { "127.0.0.1" };
        let address = format!("{host}:{}", free_port(host));
        let mut http = format!("addr: \"{address}\"");
        if tls {
            make_pki(dir.path());
            http.push_str(&format!(
                ", tls: {{certificate: {}, key: {}}}",
                dir.path().join("tls.pem").display(),
                dir.path().join("tls.key").display()
            ));
        }
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp: {{{http}}}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let htpasswd = run_ok(Command::new("htpasswd").args(["-Bbn", user, password])).stdout;
            std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: e2e, path: {}}}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (scripts/setup installs it)");
        wait_for_listener(&address, "the registry");
        TestRegistry {
            child,
            address,
            dir,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Copy the cluster registry's busybox to `NAME:TAG` here (skopeo trusts the test CA
    /// through a cert dir, as containers-certs.d(5) describes).
    fn publish(&self, name_tag: &str) {
        let certs = self.dir.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(self.ca(), certs.join("ca.crt")).unwrap();
        run_ok(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            "--dest-cert-dir",
            certs.to_str().unwrap(),
            &format!("docker://{}/local/busybox:1", registry()),
            &format!("docker://{}/{name_tag}", self.address),
        ]));
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example product whose backend image comes from `registry` without `build:` (resolving
/// only), with a HOME, PATH and auth files of its own.
fn product_on(name: &str, registry: &str) -> Product {
    let product = Product::new(name);
    product.edit_config(NO_BUILD, "");
    product.edit_config(
        "repository: ${SANDBOX_REGISTRY}/shop/backend",
        &format!("repository: {registry}/shop/backend"),
    );
    product
}

/// `sandbox images --branch feature-x` with no credentials, trust or proxy of the machine's.
fn images(product: &Product) -> Command {
    let mut cmd = product.sandbox(&["images", "--branch", "feature-x"]);
    cmd.env("HOME", product.path())
        .env("XDG_RUNTIME_DIR", product.path().join("run"))
        .env("DOCKER_CONFIG", product.path().join("docker"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("SANDBOX_CA_FILE");
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

#[tokio::test]
async fn a_registry_behind_a_private_ca_is_trusted_from_ssl_cert_file_the_config_or_the_flag() {
    if cluster("company network: private CA").await.is_none() {
        return;
    }
    let tls = TestRegistry::start(true, None);
    let product = product_on("net-ca", &tls.address);
    let sha = product.sha("backend", "feature-x");
    tls.publish(&format!("shop/backend:{sha}"));
    let pinned = format!("{}/shop/backend:{sha}@sha256:", tls.address);

    // Without the CA: the host, the issuer, and how to add the CA.
    let stderr = run_failing(&mut images(&product));
    assert!(
        stderr.contains(&format!("the registry {0} cannot be reached safely: the TLS certificate of {NODE} is not trusted: its issuer is not a trusted CA (issued by CN=E2E Corp Root CA, O=E2E Corp)", tls.address)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hint: trust the CA that issued its certificate (CN=E2E Corp Root CA, O=E2E Corp) for this registry only with `images: {{registries: {{\"{}\": {{ca_file: ca.pem}}}}}}`", tls.address)),
        "{stderr}"
    );

    // SSL_CERT_FILE adds the CA to the system store (the registry is still HTTPS, not insecure).
    let out = stdout_of(images(&product).env("SSL_CERT_FILE", tls.ca()));
    assert!(out.contains(&pinned), "{out}");

    // The flag, and its environment variable.
    let out = stdout_of(images(&product).arg("--ca-file").arg(tls.ca()));
    assert!(out.contains(&pinned), "{out}");
    let out = stdout_of(images(&product).env("SANDBOX_CA_FILE", tls.ca()));
    assert!(out.contains(&pinned), "{out}");

    // sandbox.yaml, for this registry (relative to sandbox.yaml's directory).
    std::fs::copy(tls.ca(), product.path().join("corp-ca.pem")).unwrap();
    product.edit_config(
        "images:\n",
        &format!(
            "images:\n  registries:\n    \"{}\": {{ca_file: corp-ca.pem}}\n",
            tls.address
        ),
    );
    let out = stdout_of(&mut images(&product));
    assert!(out.contains(&pinned), "{out}");
}

/// `docker-credential-NAME` in `dir`: a shell script with `body`.
fn helper(dir: &Path, name: &str, body: &str) {
    let file = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&file, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn registry_credentials_come_from_a_credential_helper_and_its_failure_is_named() {
    if cluster("company network: credential helper")
        .await
        .is_none()
    {
        return;
    }
    let private = TestRegistry::start(false, Some(("robot", "helper-given-pass-31")));
    let product = product_on("net-helper", &private.address);
    let bin = product.path().join("bin");
    let docker = product.path().join("docker");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&docker).unwrap();
    let asked = product.path().join("asked");
    helper(
        &bin,
        "corp",
        &format!(
            "read server\necho \"$1 $server\" >> {}\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"robot\",\"Secret\":\"helper-given-pass-31\"}}'",
            asked.display()
        ),
    );
    helper(
        &bin,
        "expired",
        "echo 'error getting credentials - err: exit status 1, out: `token expired`' >&2; exit 1",
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let with_helper = |name: &str| {
        std::fs::write(
            docker.join("config.json"),
            format!(r#"{{"credHelpers": {{"{}": "{name}"}}}}"#, private.address),
        )
        .unwrap();
        let mut cmd = images(&product);
        cmd.env("PATH", &path);
        cmd
    };

    // The helper's credentials get through: the registry answers that it has no such image.
    let stderr = run_failing(&mut with_helper("corp"));
    assert!(
        stderr.contains("error: service `api`: no image "),
        "{stderr}"
    );
    assert!(!stderr.contains("helper-given-pass-31"), "{stderr}");
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert_eq!(
        asked.lines().next(),
        Some(format!("get {}", private.address).as_str())
    );

    // A failing helper: named, with its exit status and stderr.
    let stderr = run_failing(&mut with_helper("expired"));
    assert!(
        stderr.contains(&format!("the credential helper `docker-credential-expired` (credHelpers in {}) failed for {}: exit status: 1: error getting credentials - err: exit status 1, out: `token expired`", docker.join("config.json").display(), private.address)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "hint: run it by hand (`echo {} | docker-credential-expired get`)",
            private.address
        )),
        "{stderr}"
    );
}

/// tinyproxy on a free port of 127.0.0.1, logging every connection to its own file.
struct Proxy {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start() -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port("127.0.0.1");
        let log = dir.path().join("tinyproxy.log");
        std::fs::write(&log, "").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
        let config = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 50\nAllow 127.0.0.1\n",
            log.display()
        );
        std::fs::write(dir.path().join("tinyproxy.conf"), config).unwrap();
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(dir.path().join("tinyproxy.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy runs (scripts/setup installs it)");
        let address = format!("127.0.0.1:{port}");
        wait_for_listener(&address, "tinyproxy");
        Proxy {
            child,
            url: format!("http://{address}"),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn every_registry_call_goes_through_the_proxy_except_to_no_proxy_hosts() {
    if cluster("company network: proxy").await.is_none() {
        return;
    }
    let proxy = Proxy::start();
    let tls = TestRegistry::start(true, None);
    let product = product_on("net-proxy", &tls.address);
    let sha = product.sha("backend", "feature-x");
    tls.publish(&format!("shop/backend:{sha}"));
    let pinned = format!("{}/shop/backend:{sha}@sha256:", tls.address);
    let connect = format!("CONNECT {}", tls.address);

    for (upper, lower) in [
        ("HTTPS_PROXY", "https_proxy"),
        ("https_proxy", "HTTPS_PROXY"),
    ] {
        let before = proxy.log().matches(&connect).count();
        let mut cmd = images(&product);
        cmd.env("SSL_CERT_FILE", tls.ca())
            .env(upper, &proxy.url)
            .env_remove(lower);
        let out = stdout_of(&mut cmd);
        assert!(out.contains(&pinned), "{out}");
        let log = proxy.log();
        assert!(
            log.matches(&connect).count() > before,
            "{upper}: the registry call did not go through the proxy:\n{log}"
        );
    }

    // A NO_PROXY host is reached directly.
    let before = proxy.log().matches(&connect).count();
    let mut cmd = images(&product);
    cmd.env("SSL_CERT_FILE", tls.ca())
        .env("HTTPS_PROXY", &proxy.url)
        .env("NO_PROXY", format!("localhost,{NODE}"));
    let out = stdout_of(&mut cmd);
    assert!(out.contains(&pinned), "{out}");
    assert_eq!(
        proxy.log().matches(&connect).count(),
        before,
        "NO_PROXY: {}",
        proxy.log()
    );
}

/// The local cluster's kubeconfig with its user replaced by an exec plugin `plugin`.
fn exec_kubeconfig(dir: &Path, plugin: &Path) -> PathBuf {
    let original = std::env::var("KUBECONFIG").expect("scripts/local-cluster exec sets KUBECONFIG");
    let text = std::fs::read_to_string(original).unwrap();
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let user = &mut config["users"][0]["user"];
    let token = user["token"]
        .as_str()
        .expect("the local cluster's token")
        .to_owned();
    *user = serde_yaml_ng::from_str(&format!(
        "exec: {{apiVersion: client.authentication.k8s.io/v1, command: {}, args: [get-token, --cluster, local], interactiveMode: IfAvailable}}",
        plugin.display()
    ))
    .unwrap();
    std::fs::write(dir.join("token"), token).unwrap();
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn a_kubeconfig_whose_user_is_an_exec_plugin_works_and_its_failure_is_named() {
    if cluster("company network: exec plugin").await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("corp-kube-login");
    let kubeconfig = exec_kubeconfig(dir.path(), &plugin);
    let write_plugin = |body: &str| {
        std::fs::write(&plugin, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_plugin(&format!(
        "printf '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"%s\"}}}}' \"$(cat {})\"",
        dir.path().join("token").display()
    ));
    let product = Product::new("net-exec");
    let list = || {
        let mut cmd = product.sandbox(&["list", "-o", "name"]);
        cmd.env("KUBECONFIG", &kubeconfig).stdin(Stdio::null());
        cmd
    };
    let mut cmd = list();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe(&cmd, &out));

    write_plugin("echo 'error: token expired, run corp-login' >&2\nexit 1");
    let stderr = run_failing(&mut list());
    assert!(
        stderr.contains(&format!(
            "caused by: the kubeconfig's credential plugin `{} get-token --cluster local` failed: exit status: 1: error: token expired, run corp-login",
            plugin.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "hint: run `{} get-token --cluster local` by hand",
            plugin.display()
        )),
        "{stderr}"
    );
}

//! Fixtures for the end-to-end tests: the example product in a scratch directory, its git
//! repositories, the `sandbox` binary, and the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};

/// The repository's root (where sandbox.yaml, templates/ and scripts/ are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A client for the test cluster, or `None` (with a visible message) when there is none.
/// With `CI=true` a missing cluster fails the test instead: CI must never skip silently.
pub async fn cluster(test: &str) -> Option<Client> {
    let reachable = async {
        let client = Client::try_default().await.map_err(|e| e.to_string())?;
        client
            .apiserver_version()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(client)
    };
    let why = match tokio::time::timeout(Duration::from_secs(10), reachable).await {
        Ok(Ok(client)) => return Some(client),
        Ok(Err(why)) => why,
        Err(_) => "no answer within 10s".to_owned(),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: CI=true but the test cluster is unreachable: {why}");
    }
    eprintln!(
        "SKIPPED {test}: no reachable cluster ({why}); scripts/test starts one and runs everything"
    );
    None
}

/// The local cluster's registry (`scripts/local-cluster env` prints it).
pub fn registry() -> String {
    std::env::var("SANDBOX_REGISTRY").unwrap_or_else(|_| "10.200.0.2:5000".to_owned())
}

/// The example product copied into a scratch directory, with its git repositories made fresh,
/// a namespace prefix of its own, and its own repo cache.
pub struct Product {
    pub dir: tempfile::TempDir,
    pub prefix: String,
}

impl Product {
    /// `name` makes the namespace prefix (`e2e-NAME-`), so parallel tests never share a sandbox.
    pub fn new(name: &str) -> Product {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sandbox-e2e-{name}-"))
            .tempdir()
            .expect("tempdir");
        let prefix = format!("e2e-{name}-");
        let config = std::fs::read_to_string(root().join("sandbox.yaml")).expect("sandbox.yaml");
        let config = config.replace(
            "namespace_prefix: shop-",
            &format!("namespace_prefix: {prefix}"),
        );
        std::fs::write(dir.path().join("sandbox.yaml"), config).unwrap();
        copy_dir(&root().join("templates"), &dir.path().join("templates"));
        run_ok(Command::new(root().join("scripts/example-repos")).arg(dir.path().join("repos")));
        Product { dir, prefix }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn namespace(&self, branch: &str) -> String {
        sandbox::record::namespace_for(&self.prefix, branch)
    }

    /// Replace text in the product's sandbox.yaml (to make it wrong on purpose).
    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.path().join("sandbox.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "sandbox.yaml has no `{from}`");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// The `sandbox` binary, run in the product's directory with its repos, key and cache.
    pub fn sandbox(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbox"));
        cmd.args(args)
            .current_dir(self.path())
            .env("SANDBOX_EXAMPLE_REPOS", self.path().join("repos"))
            .env("SANDBOX_REGISTRY", registry())
            .env("SOPS_AGE_KEY_FILE", root().join("example/age-test-key.txt"))
            .env_remove("SOPS_AGE_KEY")
            .env("SANDBOX_CACHE_DIR", self.path().join("cache"))
            .env("SANDBOX_OWNER", "e2e");
        cmd
    }

    /// Commit changes to a repo's branch: `change` edits a working copy.
    pub fn commit(
        &self,
        repo: &str,
        branch: &str,
        message: &str,
        change: impl FnOnce(&Path),
    ) -> String {
        let work = self.path().join(format!("work-{repo}-{branch}"));
        let _ = std::fs::remove_dir_all(&work);
        let bare = self.path().join("repos").join(format!("{repo}.git"));
        run_ok(
            Command::new("git")
                .args(["clone", "-q", "-b", branch])
                .arg(&bare)
                .arg(&work),
        );
        change(&work);
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.arg("-C").arg(&work).args(args);
            c.env("GIT_AUTHOR_NAME", "e2e")
                .env("GIT_AUTHOR_EMAIL", "e2e@sandbox.invalid");
            c.env("GIT_COMMITTER_NAME", "e2e")
                .env("GIT_COMMITTER_EMAIL", "e2e@sandbox.invalid");
            c
        };
        run_ok(&mut git(&["add", "-A"]));
        run_ok(&mut git(&["commit", "-q", "-m", message]));
        run_ok(&mut git(&["push", "-q", "origin", branch]));
        self.sha(repo, branch)
    }

    /// The commit a branch of a repo points at.
    pub fn sha(&self, repo: &str, branch: &str) -> String {
        let bare = self.path().join("repos").join(format!("{repo}.git"));
        let out = run_ok(
            Command::new("git")
                .arg("--git-dir")
                .arg(bare)
                .args(["rev-parse", branch]),
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Run a command, panic with everything a person needs if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!("{}", describe(cmd, &out));
    }
    out
}

/// Run a command that must fail as bad input does (exit code 1); its stderr.
pub fn run_failing(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert_eq!(
        out.status.code(),
        Some(sandbox::error::EXIT_FAILURE),
        "{}",
        describe(cmd, &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command, its status, stdout and stderr: what a failure message shows.
pub fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "command: {cmd:?}\ncwd: {:?}\nstatus: {}\n--- stdout\n{}\n--- stderr\n{}",
        cmd.get_current_dir(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A namespace that belongs to one test: deleted now if a stale one is left from an earlier run,
/// deleted at the end if the test passed, kept (and named) if it failed.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn claim(client: &Client, name: &str) -> TestNamespace {
        delete_and_wait(client, name).await;
        TestNamespace {
            client: client.clone(),
            name: name.to_owned(),
        }
    }

    pub async fn exists(&self) -> bool {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.get_opt(&self.name)
            .await
            .expect("namespaces readable")
            .is_some()
    }

    /// Whether the namespace exists within `limit` (watched, not polled).
    pub async fn exists_within(&self, limit: Duration) -> bool {
        self.comes_to(true, limit).await
    }

    /// Whether the namespace is gone within `limit` (watched, not polled).
    pub async fn gone_within(&self, limit: Duration) -> bool {
        self.comes_to(false, limit).await
    }

    /// A failed watch ends the wait as well (what follows checks the cluster again).
    async fn comes_to(&self, exists: bool, limit: Duration) -> bool {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let reached =
            kube::runtime::wait::await_condition(api, &self.name, move |n: Option<&Namespace>| {
                n.is_some() == exists
            });
        tokio::time::timeout(limit, reached).await.is_ok()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kept namespace `{}` of the failed test for inspection",
                self.name
            );
            return;
        }
        let name = self.name.clone();
        // Drop cannot await, and the test's client lives on the test's (now blocked) runtime:
        // delete from a thread with a runtime and client of its own. Deletion then finishes in
        // the cluster on its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(client) = Client::try_default().await {
                    let api: Api<Namespace> = Api::all(client);
                    let _ = api.delete(&name, &DeleteParams::background()).await;
                }
            })
        })
        .join();
    }
}

pub async fn delete_and_wait(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api
        .get_opt(name)
        .await
        .expect("namespaces readable")
        .is_none()
    {
        return;
    }
    let _ = api.delete(name, &DeleteParams::background()).await;
    let gone = kube::runtime::wait::await_condition(api, name, |n: Option<&Namespace>| n.is_none());
    tokio::time::timeout(Duration::from_secs(120), gone)
        .await
        .unwrap_or_else(|_| panic!("stale namespace {name} did not go away"))
        .unwrap();
}

/// GET a URL with plain HTTP/1.0 (enough for the example's busybox servers).
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream =
        std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200"),
        "GET {url}: {head}"
    );
    body.to_owned()
}

/// Server-side apply every document of `yaml` (cluster-scoped ones too) into `ns`, or the
/// namespace a document names.
pub async fn apply_yaml(client: &Client, ns: &str, yaml: &str) {
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        let object: kube::api::DynamicObject = serde_json::from_value(value.clone()).unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(object.types.as_ref().unwrap()).unwrap();
        let (resource, caps) = discovery.resolve_gvk(&gvk).unwrap();
        let api: Api<kube::api::DynamicObject> = if caps.scope == kube::discovery::Scope::Cluster {
            Api::all_with(client.clone(), &resource)
        } else {
            // An object that names its namespace (deploy/serve.yaml's Role in `default`) goes there.
            let target = object.metadata.namespace.as_deref().unwrap_or(ns);
            Api::namespaced_with(client.clone(), target, &resource)
        };
        let name = object.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &kube::api::PatchParams::apply("e2e").force(),
            &kube::api::Patch::Apply(&value),
        )
        .await
        .unwrap();
    }
}

/// The label selector of everything the tool made.
pub const OURS: &str = "app.kubernetes.io/managed-by=sandbox";

/// resourceVersion of every object the tool rendered into `ns` (pods excluded: their status
/// changes on its own).
pub async fn versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let lp = ListParams::default().labels(OURS);
    let mut out = BTreeMap::new();
    macro_rules! collect {
        ($($t:ty),*) => {$(
            let api: Api<$t> = Api::namespaced(client.clone(), ns);
            for o in api.list(&lp).await.unwrap().items {
                let name = o.metadata.name.clone().unwrap();
                if name != "sandbox-last-good" {
                    out.insert(format!("{}/{name}", stringify!($t)), o.metadata.resource_version.clone().unwrap());
                }
            }
        )*};
    }
    collect!(ConfigMap, Secret, Service, Deployment, Job);
    out
}

/// `sandbox up --branch feature-x EXTRA…`: whether it succeeded, and all it said.
pub fn up(product: &Product, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["up", "--branch", "feature-x"];
    args.extend_from_slice(extra);
    let mut cmd = product.sandbox(&args);
    let out = cmd.output().unwrap();
    (out.status.success(), describe(&cmd, &out))
}

/// [`up`], which must succeed.
pub fn up_ok(product: &Product, extra: &[&str]) -> String {
    let (ok, text) = up(product, extra);
    assert!(ok, "{text}");
    text
}

/// The objects of `first` (from [`versions`]) whose resourceVersion differs in `second`, or
/// that are gone.
pub fn changed_between<'a>(
    first: &'a BTreeMap<String, String>,
    second: &BTreeMap<String, String>,
) -> Vec<&'a String> {
    first
        .keys()
        .filter(|k| second.get(*k) != first.get(*k))
        .collect()
}

/// Objects the tool made in `ns` that its record's inventory does not list: what a prune can no
/// longer find (the last good revision, the lock's lease and pods are not rendered objects).
pub async fn orphans(client: &Client, ns: &str) -> Vec<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let annotations = namespaces
        .get(ns)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    let inventory: Vec<String> = annotations
        .get("sandbox.dev/inventory")
        .map(|i| serde_json::from_str(i).unwrap())
        .unwrap_or_default();
    // `versions` keys are `Kind/name`; inventory entries are `apiVersion/Kind/name`.
    versions(client, ns)
        .await
        .into_keys()
        .filter(|k| !inventory.iter().any(|i| i.ends_with(&format!("/{k}"))))
        .collect()
}

/// `sandbox up --branch feature-x` of `product` (plus `extra`), running, its output piped.
pub fn spawn_up(product: &Product, extra: &[&str]) -> Child {
    let mut args = vec!["up", "--branch", "feature-x"];
    args.extend_from_slice(extra);
    product
        .sandbox(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

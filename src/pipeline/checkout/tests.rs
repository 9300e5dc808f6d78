//! The stage end to end: real bare repositories (built with git2) checked out through
//! [`checkout_all`], over local paths, `git://` (a `git daemon`) and a refusing HTTP server.

use super::credentials::TOKEN_ENV;
use super::tree_plan::{Cap, LinkProblem};
use super::*;
use crate::error::Hint;
use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, RepositoryInitOptions, Signature};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// No limit on the size of files or trees (the tests of the limits set their own).
const NO_LIMIT: &RepoFileLimits = &RepoFileLimits {
    max_file_size: u64::MAX,
    max_blob_size: u64::MAX,
    max_tree_files: u64::MAX,
    max_tree_size: u64::MAX,
    max_sandbox_files: u64::MAX,
    max_sandbox_size: u64::MAX,
};

/// [`NO_LIMIT`] but for files over `max_blob_size` bytes.
fn blob_limit(max_blob_size: u64) -> RepoFileLimits {
    RepoFileLimits {
        max_blob_size,
        ..*NO_LIMIT
    }
}

// -- fixtures: real bare repositories built with git2 -------------------------------------

/// A bare repository whose HEAD points at `refs/heads/<head>`.
fn bare_repo(path: &Path, head: &str) -> Repository {
    let mut options = RepositoryInitOptions::new();
    options.bare(true).initial_head(head).mkpath(true);
    Repository::init_opts(path, &options).unwrap()
}

/// Commit `files` (path → content; `None` deletes) on `branch`, on top of the branch's tip,
/// else of `from`'s tip, else as a root commit. Paths may be nested; a path ending in
/// `.sh` is executable.
fn commit(
    repo: &Repository,
    branch: &str,
    from: Option<&str>,
    files: &[(&str, Option<&str>)],
) -> Oid {
    let refname = format!("refs/heads/{branch}");
    let parent_ref = repo
        .refname_to_id(&refname)
        .ok()
        .or_else(|| from.map(|f| repo.refname_to_id(&format!("refs/heads/{f}")).unwrap()));
    let parent = parent_ref.map(|oid| repo.find_commit(oid).unwrap());
    let baseline = match &parent {
        Some(p) => p.tree().unwrap(),
        None => {
            let empty = repo.treebuilder(None).unwrap().write().unwrap();
            repo.find_tree(empty).unwrap()
        }
    };
    let mut update = TreeUpdateBuilder::new();
    for (path, content) in files {
        match content {
            Some(content) => {
                let blob = repo.blob(content.as_bytes()).unwrap();
                let mode = if path.ends_with(".sh") {
                    FileMode::BlobExecutable
                } else {
                    FileMode::Blob
                };
                update.upsert(*path, blob, mode);
            }
            None => {
                update.remove(*path);
            }
        }
    }
    let tree = repo
        .find_tree(update.create_updated(repo, &baseline).unwrap())
        .unwrap();
    let sig = Signature::now("Test", "test@example.com").unwrap();
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some(&refname), &sig, &sig, "test commit", &tree, &parents)
        .unwrap()
}

/// A remote with `main` (README.md, config/app.yaml, run.sh) and, if asked, `feature-x`.
fn product_repo(path: &Path, with_feature: bool) -> Repository {
    let repo = bare_repo(path, "main");
    commit(
        &repo,
        "main",
        None,
        &[
            ("README.md", Some("main readme\n")),
            ("config/app.yaml", Some("replicas: 1\n")),
            ("run.sh", Some("#!/bin/sh\necho hi\n")),
        ],
    );
    if with_feature {
        commit(
            &repo,
            "feature-x",
            Some("main"),
            &[("README.md", Some("feature readme\n"))],
        );
    }
    repo
}

fn spec(name: &str, url: impl Into<String>) -> RepoSpec {
    RepoSpec {
        name: name.to_owned(),
        url: url.into(),
        fallback_branch: None,
    }
}

fn tip(repo: &Repository, branch: &str) -> String {
    repo.refname_to_id(&format!("refs/heads/{branch}"))
        .unwrap()
        .to_string()
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap()
}

fn url_of(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

async fn checkout_one_async(spec: RepoSpec, branch: &str, cache: &Path) -> Checkout {
    let mut all = checkout_all(&[spec], branch, cache, NO_LIMIT)
        .await
        .unwrap();
    all.pop().unwrap()
}

fn mirror(cache: &Path, url: &str) -> Repository {
    Repository::open_bare(cache.join(format!("{}.git", cache_key(url)))).unwrap()
}

/// A port on 127.0.0.1 nobody listens on (right now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// -- branch selection ---------------------------------------------------------------------

#[tokio::test]
async fn requested_branch_present() {
    let tmp = TempDir::new().unwrap();
    let remote = product_repo(&tmp.path().join("api.git"), true);
    let url = url_of(&tmp.path().join("api.git"));
    let cache = tmp.path().join("cache");

    let c = checkout_one_async(spec("api", &url), "feature-x", &cache).await;

    assert_eq!(c.repo, "api");
    assert_eq!(c.url, url);
    assert_eq!(c.requested_branch, "feature-x");
    assert_eq!(c.branch, "feature-x");
    assert!(!c.fell_back);
    assert_eq!(c.sha, tip(&remote, "feature-x"));
    assert_eq!(c.short_sha(), &c.sha[..7]);
    assert!(c.dir.is_absolute());
    assert!(c.dir.starts_with(cache.canonicalize().unwrap()));
    assert_eq!(read(&c.dir, "README.md"), "feature readme\n");
    assert_eq!(read(&c.dir, "config/app.yaml"), "replicas: 1\n");
    assert!(!c.dir.join(".git").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| fs::metadata(c.dir.join(f)).unwrap().permissions().mode();
        assert_ne!(mode("run.sh") & 0o111, 0, "run.sh should be executable");
        assert_eq!(mode("README.md") & 0o111, 0);
    }
    // Only the requested branch was fetched, and a local remote is fetched in full.
    let m = mirror(&cache, &url);
    assert!(m.find_reference("refs/heads/feature-x").is_ok());
    assert!(m.find_reference("refs/heads/main").is_err());
    assert!(!m.is_shallow());
}

#[tokio::test]
async fn falls_back_to_the_remote_default_branch() {
    let tmp = TempDir::new().unwrap();
    // The default branch is `trunk`, to show it comes from HEAD, not from a guess.
    let remote = bare_repo(&tmp.path().join("web.git"), "trunk");
    commit(
        &remote,
        "trunk",
        None,
        &[("index.html", Some("<p>trunk</p>"))],
    );
    commit(
        &remote,
        "other",
        Some("trunk"),
        &[("index.html", Some("other"))],
    );
    let url = url_of(&tmp.path().join("web.git"));
    let cache = tmp.path().join("cache");

    let c = checkout_one_async(spec("web", &url), "feature-x", &cache).await;

    assert_eq!(c.requested_branch, "feature-x");
    assert_eq!(c.branch, "trunk");
    assert!(c.fell_back);
    assert_eq!(c.sha, tip(&remote, "trunk"));
    assert_eq!(read(&c.dir, "index.html"), "<p>trunk</p>");
    let m = mirror(&cache, &url);
    assert!(m.find_reference("refs/heads/other").is_err());
}

#[tokio::test]
async fn configured_fallback_branch_wins_over_head() {
    let tmp = TempDir::new().unwrap();
    let remote = product_repo(&tmp.path().join("worker.git"), false);
    commit(
        &remote,
        "develop",
        Some("main"),
        &[("README.md", Some("develop\n"))],
    );
    let cache = tmp.path().join("cache");
    let mut s = spec("worker", url_of(&tmp.path().join("worker.git")));
    s.fallback_branch = Some("develop".into());

    let c = checkout_one_async(s, "feature-x", &cache).await;

    assert_eq!(c.branch, "develop");
    assert!(c.fell_back);
    assert_eq!(c.sha, tip(&remote, "develop"));
    assert_eq!(read(&c.dir, "README.md"), "develop\n");
}

#[tokio::test]
async fn missing_branch_and_missing_fallback_lists_the_branches() {
    let tmp = TempDir::new().unwrap();
    let remote = product_repo(&tmp.path().join("db.git"), false);
    for i in 0..12 {
        commit(
            &remote,
            &format!("b{i:02}"),
            Some("main"),
            &[("x", Some("x"))],
        );
    }
    let cache = tmp.path().join("cache");
    let mut s = spec("db", url_of(&tmp.path().join("db.git")));
    s.fallback_branch = Some("develop".into());

    let errors = checkout_all(&[s], "feature-x", &cache, NO_LIMIT)
        .await
        .unwrap_err();

    assert_eq!(errors.errors().len(), 1);
    let e = &errors.errors()[0];
    match e {
        CheckoutError::BranchMissing {
            requested,
            fallback,
            available,
            ..
        } => {
            assert_eq!(requested, "feature-x");
            assert_eq!(fallback, "develop");
            assert_eq!(available.len(), 13);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("`db`"), "{msg}");
    assert!(
        msg.contains("`feature-x`") && msg.contains("`develop`"),
        "{msg}"
    );
    assert!(msg.contains("b00") && msg.contains("b09"), "{msg}");
    assert!(msg.contains("and 3 more"), "{msg}");
    let hint = e.hint().unwrap();
    assert!(
        hint.contains("fallback_branch") && hint.contains("`db`"),
        "{hint}"
    );
    assert!(errors
        .to_string()
        .contains("1 repository could not be checked out"));
    // One error: it is the source, so the cause chain reaches it.
    assert!(std::error::Error::source(&errors).is_some());
}

#[tokio::test]
async fn empty_remote_has_no_default_branch() {
    let tmp = TempDir::new().unwrap();
    bare_repo(&tmp.path().join("empty.git"), "main");
    let cache = tmp.path().join("cache");

    let errors = checkout_all(
        &[spec("empty", url_of(&tmp.path().join("empty.git")))],
        "feature-x",
        &cache,
        NO_LIMIT,
    )
    .await
    .unwrap_err();

    assert!(
        matches!(&errors.errors()[0], CheckoutError::NoDefaultBranch { requested, .. } if requested == "feature-x"),
        "{:?}",
        errors.errors()[0]
    );
    assert!(errors.errors()[0]
        .hint()
        .unwrap()
        .contains("fallback_branch"));
}

// -- cache behaviour ----------------------------------------------------------------------

#[tokio::test]
async fn second_run_fetches_the_new_commit_and_updates_the_tree() {
    let tmp = TempDir::new().unwrap();
    let remote = product_repo(&tmp.path().join("api.git"), true);
    let url = url_of(&tmp.path().join("api.git"));
    let cache = tmp.path().join("cache");

    let first = checkout_one_async(spec("api", &url), "feature-x", &cache).await;
    commit(
        &remote,
        "feature-x",
        None,
        &[
            ("README.md", Some("second\n")),
            ("config/app.yaml", None),
            ("new/file.txt", Some("new\n")),
        ],
    );
    let second = checkout_one_async(spec("api", &url), "feature-x", &cache).await;

    assert_ne!(first.sha, second.sha);
    assert_eq!(second.sha, tip(&remote, "feature-x"));
    assert_ne!(first.dir, second.dir);
    assert_eq!(read(&second.dir, "README.md"), "second\n");
    assert_eq!(read(&second.dir, "new/file.txt"), "new\n");
    assert!(!second.dir.join("config/app.yaml").exists());
    // The first tree is untouched (a concurrent run may still read it).
    assert_eq!(read(&first.dir, "README.md"), "feature readme\n");
}

#[tokio::test]
async fn unchanged_second_run_reuses_the_tree() {
    let tmp = TempDir::new().unwrap();
    product_repo(&tmp.path().join("api.git"), true);
    let url = url_of(&tmp.path().join("api.git"));
    let cache = tmp.path().join("cache");

    let first = checkout_one_async(spec("api", &url), "feature-x", &cache).await;
    fs::write(first.dir.join("marker"), "still here").unwrap();
    // A half-written tree of an interrupted run is cleaned away, never used.
    let stale = first.dir.parent().unwrap().join(".tmp-0000");
    fs::create_dir_all(stale.join("sub")).unwrap();
    let second = checkout_one_async(spec("api", &url), "feature-x", &cache).await;

    assert_eq!(first, second);
    assert_eq!(read(&second.dir, "marker"), "still here");
    assert!(stale.exists(), "nothing new to write, so nothing to clean");
}

#[tokio::test]
async fn interrupted_tree_is_never_taken_as_complete() {
    let tmp = TempDir::new().unwrap();
    let remote = product_repo(&tmp.path().join("api.git"), false);
    let url = url_of(&tmp.path().join("api.git"));
    let cache = tmp.path().join("cache");
    let sha = tip(&remote, "main");
    // What a killed run leaves: a temp dir with part of the files.
    let trees = cache.join(TREES_DIR).join(cache_key(&url));
    fs::create_dir_all(trees.join(format!(".tmp-{sha}"))).unwrap();
    fs::write(trees.join(format!(".tmp-{sha}")).join("README.md"), "half").unwrap();

    let c = checkout_one_async(spec("api", &url), "main", &cache).await;

    assert_eq!(c.sha, sha);
    assert_eq!(read(&c.dir, "README.md"), "main readme\n");
    assert!(!trees.join(format!(".tmp-{sha}")).exists());
}

/// The directory given to `checkout_all` holds the mirrors itself: the connector passes
/// `<cache>/git`, and mirrors used to land in `<cache>/git/git/`.
#[tokio::test]
async fn mirrors_sit_directly_in_the_given_directory() {
    let tmp = TempDir::new().unwrap();
    product_repo(&tmp.path().join("api.git"), false);
    let url = url_of(&tmp.path().join("api.git"));
    let dir = tmp.path().join("cache").join("git");

    let c = checkout_one_async(spec("api", &url), "main", &dir).await;

    let key = cache_key(&url);
    assert!(Repository::open_bare(dir.join(format!("{key}.git"))).is_ok());
    assert!(dir.join(format!("{key}.lock")).is_file());
    assert!(!dir.join("git").exists(), "a second `git` segment");
    let trees = dir.canonicalize().unwrap().join(TREES_DIR).join(&key);
    assert_eq!(c.dir, trees.join(&c.sha));
}

#[tokio::test]
async fn stale_git_lock_files_in_the_mirror_are_removed() {
    let tmp = TempDir::new().unwrap();
    let remote = product_repo(&tmp.path().join("api.git"), false);
    let url = url_of(&tmp.path().join("api.git"));
    let cache = tmp.path().join("cache");
    checkout_one_async(spec("api", &url), "main", &cache).await;
    let m = cache.join(format!("{}.git", cache_key(&url)));
    fs::write(m.join("refs/heads/main.lock"), "").unwrap();
    commit(&remote, "main", None, &[("README.md", Some("v2\n"))]);

    let c = checkout_one_async(spec("api", &url), "main", &cache).await;

    assert_eq!(read(&c.dir, "README.md"), "v2\n");
}

#[tokio::test]
async fn parallel_checkout_of_three_repos_keeps_input_order() {
    let tmp = TempDir::new().unwrap();
    let a = product_repo(&tmp.path().join("a.git"), true);
    let b = product_repo(&tmp.path().join("b.git"), false);
    let c = product_repo(&tmp.path().join("c.git"), true);
    let cache = tmp.path().join("cache");
    let specs = [
        spec("a", url_of(&tmp.path().join("a.git"))),
        spec("b", url_of(&tmp.path().join("b.git"))),
        spec("c", url_of(&tmp.path().join("c.git"))),
    ];

    let out = checkout_all(&specs, "feature-x", &cache, NO_LIMIT)
        .await
        .unwrap();

    let summary: Vec<(&str, &str, bool)> = out
        .iter()
        .map(|c| (c.repo.as_str(), c.branch.as_str(), c.fell_back))
        .collect();
    assert_eq!(
        summary,
        [
            ("a", "feature-x", false),
            ("b", "main", true),
            ("c", "feature-x", false)
        ]
    );
    assert_eq!(out[0].sha, tip(&a, "feature-x"));
    assert_eq!(out[1].sha, tip(&b, "main"));
    assert_eq!(out[2].sha, tip(&c, "feature-x"));
    assert_eq!(read(&out[1].dir, "README.md"), "main readme\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_on_one_cache_agree() {
    let tmp = TempDir::new().unwrap();
    let mut tips = Vec::new();
    let mut specs = Vec::new();
    for name in ["a", "b", "c"] {
        let repo = product_repo(&tmp.path().join(format!("{name}.git")), true);
        tips.push(tip(&repo, "feature-x"));
        specs.push(spec(name, url_of(&tmp.path().join(format!("{name}.git")))));
    }
    // The same URL twice in one run shares one mirror, too.
    specs.push(spec("a-again", specs[0].url.clone()));
    tips.push(tips[0].clone());
    let cache = tmp.path().join("cache");

    let runs = (0..4).map(|_| checkout_all(&specs, "feature-x", &cache, NO_LIMIT));
    let results = futures::future::join_all(runs).await;

    for result in results {
        let out = result.unwrap();
        let shas: Vec<&str> = out.iter().map(|c| c.sha.as_str()).collect();
        assert_eq!(shas, tips);
        for c in &out {
            assert_eq!(read(&c.dir, "README.md"), "feature readme\n");
        }
    }
}

// -- failures -----------------------------------------------------------------------------

#[tokio::test]
async fn unreachable_urls_fail_naming_the_repo_and_all_errors_are_reported() {
    let tmp = TempDir::new().unwrap();
    product_repo(&tmp.path().join("ok.git"), true);
    let cache = tmp.path().join("cache");
    let refused = format!("git://127.0.0.1:{}/nothing.git", free_port());
    let specs = [
        spec("gone", &refused),
        spec("ok", url_of(&tmp.path().join("ok.git"))),
        spec("nowhere", url_of(&tmp.path().join("does-not-exist.git"))),
    ];

    let errors = checkout_all(&specs, "feature-x", &cache, NO_LIMIT)
        .await
        .unwrap_err();

    assert_eq!(
        errors.to_string(),
        "2 repositories could not be checked out: `gone`, `nowhere`"
    );
    assert!(std::error::Error::source(&errors).is_none());
    let [gone, nowhere] = errors.errors() else {
        panic!("{errors:?}")
    };
    assert!(matches!(gone, CheckoutError::Fetch { .. }), "{gone:?}");
    assert!(
        matches!(nowhere, CheckoutError::Fetch { .. }),
        "{nowhere:?}"
    );
    assert_eq!(gone.repo(), "gone");
    let msg = gone.to_string();
    assert!(msg.contains("`gone`") && msg.contains(&refused), "{msg}");
    // The cause is the source, not repeated in the message.
    let source = std::error::Error::source(gone).unwrap().to_string();
    assert!(!msg.contains(&source), "{msg} / {source}");
    assert!(gone.hint().unwrap().contains("sandbox.yaml"));
}

/// An HTTP server answering every request with 401, recording the Authorization headers it
/// was sent.
struct Always401 {
    port: u16,
    requests: Arc<AtomicUsize>,
    authorizations: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Always401 {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let authorizations = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
        let a = Arc::clone(&authorizations);
        let thread = std::thread::spawn(move || {
            use std::io::{Read, Write};
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        r.fetch_add(1, Ordering::SeqCst);
                        let head = String::from_utf8_lossy(&buf);
                        a.lock().unwrap().extend(
                            head.lines()
                                .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                                .map(str::to_owned),
                        );
                        let _ = stream.write_all(
                            b"HTTP/1.1 401 Unauthorized\r\n\
                              WWW-Authenticate: Basic realm=\"test\"\r\n\
                              Content-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Always401 {
            port,
            requests,
            authorizations,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Always401 {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A real fetch over plain HTTP: the token must not travel in clear text (the server records
/// what it was sent), and the error says why it was withheld.
#[tokio::test]
async fn a_token_is_never_sent_over_plain_http() {
    let server = Always401::start();
    let tmp = TempDir::new().unwrap();
    let url = format!("http://127.0.0.1:{}/acme/private.git", server.port);
    let credentials = Credentials {
        token: Some((TOKEN_ENV, "ghp_never_in_clear_text".into())),
        ..Credentials::default()
    };

    let errors = checkout_all_with(
        &[spec("private", &url)],
        "main",
        tmp.path(),
        NO_LIMIT,
        credentials,
    )
    .await
    .unwrap_err();

    assert_eq!(*server.authorizations.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "asked once, then gave up"
    );
    let e = &errors.errors()[0];
    match e {
        CheckoutError::Auth {
            tried, withheld, ..
        } => {
            assert!(tried.is_empty(), "{tried:?}");
            assert!(
                withheld.as_deref().unwrap().contains("not encrypted"),
                "{e}"
            );
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert!(e.to_string().contains("`private`"), "{e}");
    assert!(e.to_string().contains("credentials withheld"), "{e}");
    assert!(e.hint().unwrap().contains("https://"), "{:?}", e.hint());
}

#[tokio::test]
async fn no_token_fails_as_auth_error_at_once() {
    let server = Always401::start();
    let tmp = TempDir::new().unwrap();
    let url = format!("http://127.0.0.1:{}/acme/private.git", server.port);

    let errors = checkout_all_with(
        &[spec("private", &url)],
        "main",
        tmp.path(),
        NO_LIMIT,
        Credentials::default(),
    )
    .await
    .unwrap_err();

    let e = &errors.errors()[0];
    assert!(
        matches!(e, CheckoutError::Auth { tried, .. } if tried.is_empty()),
        "{e:?}"
    );
    assert!(e.to_string().contains("no credentials were available"));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

// -- shallow fetch over git:// ------------------------------------------------------------

/// `git daemon` serving `base` on 127.0.0.1; killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> Self {
        let port = free_port();
        // Run `git-daemon` itself: `git daemon` would fork it as a child that killing
        // `git` leaves running.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git is needed (Debian package `git`)");
        let exec_path = String::from_utf8(exec_path.stdout).unwrap();
        let daemon = Path::new(exec_path.trim()).join("git-daemon");
        assert!(
            daemon.exists(),
            "{} is missing (Debian package `git` ships it)",
            daemon.display()
        );
        let child = Command::new(daemon)
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--export-all")
            .arg(format!("--port={port}"))
            .arg("--listen=127.0.0.1")
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("could not start git-daemon");
        let mut daemon = GitDaemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("git daemon exited: {status}");
            }
            assert!(Instant::now() < deadline, "git daemon did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn shallow_fetch_over_git_daemon() {
    let tmp = TempDir::new().unwrap();
    let served = tmp.path().join("served");
    let remote = product_repo(&served.join("api.git"), true);
    for i in 0..3 {
        commit(&remote, "main", None, &[("n", Some(&i.to_string()))]);
    }
    let daemon = GitDaemon::start(&served);
    let url = daemon.url("api.git");
    let cache = tmp.path().join("cache");

    let c = checkout_one_async(spec("api", &url), "feature-x", &cache).await;
    assert_eq!(c.sha, tip(&remote, "feature-x"));
    assert_eq!(read(&c.dir, "README.md"), "feature readme\n");
    let m = mirror(&cache, &url);
    assert!(m.is_shallow());
    let shallow = fs::read_to_string(m.path().join("shallow")).unwrap();
    assert_eq!(shallow.lines().count(), 1, "one commit deep: {shallow}");

    // Fallback over git:// uses the advertised HEAD symref; a new commit is fetched.
    let fb = checkout_one_async(spec("api", &url), "nope", &cache).await;
    assert_eq!((fb.branch.as_str(), fb.fell_back), ("main", true));
    assert_eq!(read(&fb.dir, "n"), "2");
    commit(&remote, "main", None, &[("n", Some("3"))]);
    let again = checkout_one_async(spec("api", &url), "nope", &cache).await;
    assert_eq!(again.sha, tip(&remote, "main"));
    assert_eq!(read(&again.dir, "n"), "3");
    assert!(mirror(&cache, &url).is_shallow());
    // The mirror holds the fetched tips, not main's 5-commit history: the walk stops at
    // the shallow boundary (the previous tip, already present, may be reached too).
    let m = mirror(&cache, &url);
    let mut walk = m.revwalk().unwrap();
    walk.push(Oid::from_str(&again.sha).unwrap()).unwrap();
    let depth = walk.count();
    assert!((1..=2).contains(&depth), "{depth} commits reachable");
    drop(daemon);
}

// -- untrusted content --------------------------------------------------------------------

#[tokio::test]
async fn a_file_over_the_blob_limit_fails_the_checkout_naming_it() {
    let tmp = TempDir::new().unwrap();
    let remote = product_repo(&tmp.path().join("api.git"), false);
    let big = "x".repeat(4096);
    commit(&remote, "main", None, &[("assets/big.bin", Some(&big))]);
    let url = url_of(&tmp.path().join("api.git"));
    let cache = tmp.path().join("cache");

    let errors = checkout_all(&[spec("api", &url)], "main", &cache, &blob_limit(2048))
        .await
        .unwrap_err();

    let e = &errors.errors()[0];
    assert!(
        matches!(e, CheckoutError::BlobTooLarge { path, size: 4096, limit: 2048, .. } if path == "assets/big.bin"),
        "{e:?}"
    );
    let sha = tip(&remote, "main");
    assert_eq!(
        e.to_string(),
        format!("`assets/big.bin` in repository `api` ({url}) at {sha} is 4 KiB, over the 2 KiB limit for a file")
    );
    assert!(e.hint().unwrap().contains("repo_files.max_blob_size"));
    // Nothing half-written is left to be taken for the tree.
    let trees = cache.join(TREES_DIR).join(cache_key(&url));
    assert!(!trees.join(&sha).exists());

    let c = checkout_all(&[spec("api", &url)], "main", &cache, &blob_limit(4096))
        .await
        .unwrap();
    assert_eq!(read(&c[0].dir, "assets/big.bin").len(), 4096);
}

// -- pruning ------------------------------------------------------------------------------

/// Make `path` look last used `ago`.
fn used_ago(path: &Path, ago: Duration) {
    fs::File::open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

fn policy(live: Option<&[&str]>, dry_run: bool) -> PrunePolicy {
    PrunePolicy {
        live_commits: live.map(|l| l.iter().map(|s| s.to_string()).collect()),
        older_than: 14 * DAY,
        dry_run,
        now: std::time::SystemTime::now(),
    }
}

/// A repository checked out at two commits: (url, cache, old checkout, new checkout).
async fn two_trees(tmp: &Path) -> (String, PathBuf, Checkout, Checkout) {
    let remote = product_repo(&tmp.join("api.git"), false);
    let url = url_of(&tmp.join("api.git"));
    let cache = tmp.join("cache");
    let old = checkout_one_async(spec("api", &url), "main", &cache).await;
    commit(&remote, "main", None, &[("README.md", Some("v2\n"))]);
    let new = checkout_one_async(spec("api", &url), "main", &cache).await;
    assert_ne!(old.dir, new.dir);
    (url, cache, old, new)
}

#[tokio::test]
async fn prune_removes_trees_no_live_sandbox_runs_after_the_grace() {
    let tmp = TempDir::new().unwrap();
    let (url, cache, old, new) = two_trees(tmp.path()).await;
    used_ago(&old.dir, 2 * HOUR);
    used_ago(&new.dir, 2 * HOUR);
    let recent = old
        .dir
        .with_file_name("0123456789abcdef0123456789abcdef01234567");
    fs::create_dir(&recent).unwrap(); // used a minute ago by a `render`: kept

    let live = [new.sha.as_str()];
    let dry = prune(&cache, &policy(Some(&live), true)).unwrap();
    assert_eq!(dry.pruned.len(), 1);
    assert!(old.dir.exists(), "a dry run removes nothing");

    let report = prune(&cache, &policy(Some(&live), false)).unwrap();
    assert_eq!(report.pruned.len(), 1, "{report:?}");
    assert_eq!(report.pruned[0].kind, EntryKind::Tree);
    assert_eq!(report.pruned[0].path, old.dir);
    assert!(report.bytes() > 0);
    assert!(!old.dir.exists());
    assert!(new.dir.exists() && recent.exists());
    assert!(mirror(&cache, &url)
        .find_commit(Oid::from_str(&new.sha).unwrap())
        .is_ok());
}

#[tokio::test]
async fn a_reused_tree_counts_as_used() {
    let tmp = TempDir::new().unwrap();
    let (url, cache, _old, new) = two_trees(tmp.path()).await;
    used_ago(&new.dir, 2 * HOUR);
    let again = checkout_one_async(spec("api", &url), "main", &cache).await;
    assert_eq!(again.dir, new.dir);
    let report = prune(&cache, &policy(Some(&[]), false)).unwrap();
    assert!(
        report.pruned.iter().all(|p| p.path != new.dir),
        "{report:?}"
    );
}

#[tokio::test]
async fn without_the_cluster_trees_and_mirrors_go_by_age_alone() {
    let tmp = TempDir::new().unwrap();
    let (url, cache, old, new) = two_trees(tmp.path()).await;
    used_ago(&old.dir, 15 * DAY);
    used_ago(&new.dir, 2 * HOUR);
    let report = prune(&cache, &policy(None, false)).unwrap();
    assert_eq!(report.pruned.len(), 1, "{report:?}");
    assert!(!old.dir.exists() && new.dir.exists());

    // The mirror's last fetch was 15 days ago: it goes, and the next checkout fetches anew.
    let lock = cache.join(format!("{}.lock", cache_key(&url)));
    used_ago(&lock, 15 * DAY);
    let report = prune(&cache, &policy(None, false)).unwrap();
    let kinds: Vec<EntryKind> = report.pruned.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [EntryKind::Mirror]);
    assert!(!cache.join(format!("{}.git", cache_key(&url))).exists());
    assert!(lock.exists(), "lock files stay");
    let c = checkout_one_async(spec("api", &url), "main", &cache).await;
    assert_eq!(read(&c.dir, "README.md"), "v2\n");
}

#[tokio::test]
async fn a_repository_being_checked_out_is_skipped() {
    let tmp = TempDir::new().unwrap();
    let (url, cache, old, _new) = two_trees(tmp.path()).await;
    used_ago(&old.dir, 15 * DAY);
    let _held = lock_exclusive(&cache.join(format!("{}.lock", cache_key(&url)))).unwrap();
    let report = prune(&cache, &policy(None, false)).unwrap();
    assert!(report.pruned.is_empty());
    assert_eq!(report.busy.len(), 1);
    assert!(old.dir.exists());
}

// -- symlinks and caps: what a tree's export writes -----------------------------------------

/// One entry of a hand-made commit.
enum Put<'a> {
    File(&'a str),
    Exec(&'a str),
    Link(&'a str),
    Submodule,
}

/// A bare repository whose `main` is one commit of `entries`.
fn tree_repo(path: &Path, entries: &[(&str, Put<'_>)]) -> Repository {
    let repo = bare_repo(path, "main");
    let mut update = TreeUpdateBuilder::new();
    for (at, put) in entries {
        let (content, mode) = match put {
            Put::File(text) => (text.as_bytes(), FileMode::Blob),
            Put::Exec(text) => (text.as_bytes(), FileMode::BlobExecutable),
            Put::Link(target) => (target.as_bytes(), FileMode::Link),
            Put::Submodule => {
                let commit = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
                update.upsert(*at, commit, FileMode::Commit);
                continue;
            }
        };
        update.upsert(*at, repo.blob(content).unwrap(), mode);
    }
    let empty = repo.treebuilder(None).unwrap().write().unwrap();
    let tree = update
        .create_updated(&repo, &repo.find_tree(empty).unwrap())
        .unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let sig = Signature::now("Test", "test@example.com").unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "tree", &tree, &[])
        .unwrap();
    drop(tree);
    repo
}

/// Check out `main` of a repository of `entries` within `limits`.
async fn export_entries(
    tmp: &TempDir,
    entries: &[(&str, Put<'_>)],
    limits: &RepoFileLimits,
) -> (String, Result<Vec<Checkout>, CheckoutErrors>) {
    tree_repo(&tmp.path().join("charts.git"), entries);
    let url = url_of(&tmp.path().join("charts.git"));
    let result = checkout_all(
        &[spec("charts", &url)],
        "main",
        &tmp.path().join("cache"),
        limits,
    )
    .await;
    (url, result)
}

/// The error of exporting `entries`, which must fail.
async fn refused(entries: &[(&str, Put<'_>)]) -> CheckoutError {
    let tmp = TempDir::new().unwrap();
    let (_, result) = export_entries(&tmp, entries, NO_LIMIT).await;
    let mut errors = result.unwrap_err().0;
    assert_eq!(errors.len(), 1);
    let e = errors.pop().unwrap();
    // Nothing of it is left in the cache, not even the temporary directory.
    let trees = tmp.path().join("cache").join(TREES_DIR);
    let left: Vec<_> = walk(&trees).into_iter().filter(|p| p.is_file()).collect();
    assert!(left.is_empty(), "{left:?}");
    e
}

/// The problem and chain of a refused symlink.
fn link_problem(e: &CheckoutError) -> (String, LinkProblem, Vec<(String, String)>) {
    match e {
        CheckoutError::Symlink { link, .. } => {
            (link.path.clone(), link.problem.clone(), link.chain.clone())
        }
        other => panic!("not a symlink error: {other:?}"),
    }
}

/// Every path under `dir`, symlinks not followed.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

fn pair(path: &str, target: &str) -> (String, String) {
    (path.to_owned(), target.to_owned())
}

#[tokio::test]
async fn symlinks_inside_the_commit_are_copied_chains_and_directories_included() {
    let tmp = TempDir::new().unwrap();
    let entries = [
        ("real.txt", Put::File("real\n")),
        ("run.sh", Put::Exec("#!/bin/sh\n")),
        ("a", Put::Link("b")),
        ("b", Put::Link("./real.txt")),
        ("tool", Put::Link("run.sh")),
        ("stuff/tok", Put::File("token-like\n")),
        ("stuff/deep/x.yaml", Put::File("x: 1\n")),
        ("stuff/alias", Put::Link("deep//x.yaml")),
        ("web/files", Put::Link("../stuff")),
        ("web/via", Put::Link("files/deep/../tok")),
        ("vendor/lib", Put::Submodule),
        ("lib", Put::Link("vendor/lib/")),
    ];
    let (_, result) = export_entries(&tmp, &entries, NO_LIMIT).await;
    let dir = result.unwrap().pop().unwrap().dir;

    for path in walk(&dir) {
        let kind = fs::symlink_metadata(&path).unwrap().file_type();
        assert!(!kind.is_symlink(), "{} is a symlink", path.display());
    }
    assert_eq!(read(&dir, "a"), "real\n");
    assert_eq!(read(&dir, "b"), "real\n");
    assert_eq!(read(&dir, "web/files/tok"), "token-like\n");
    assert_eq!(read(&dir, "web/files/deep/x.yaml"), "x: 1\n");
    assert_eq!(read(&dir, "web/files/alias"), "x: 1\n");
    assert_eq!(read(&dir, "web/via"), "token-like\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.join("tool")).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "a link to an executable copies its bit"
    );
    assert!(dir.join("lib").is_dir() && fs::read_dir(dir.join("lib")).unwrap().count() == 0);
    assert!(dir.join("vendor/lib").is_dir());
}

#[tokio::test]
async fn a_symlink_leading_out_of_the_commit_is_refused_naming_it_and_the_chain() {
    let absolute = refused(&[("tok", Put::Link("/etc/hostname"))]).await;
    assert_eq!(
        link_problem(&absolute),
        (
            "tok".into(),
            LinkProblem::Absolute,
            vec![pair("tok", "/etc/hostname")]
        )
    );
    let text = absolute.to_string();
    assert!(
        text.starts_with("symlink `tok` in repository `charts` ("),
        "{text}"
    );
    assert!(
        text.ends_with(
            "leads out of the repository (to an absolute path): `tok` -> `/etc/hostname`"
        ),
        "{text}"
    );
    assert!(absolute.hint().unwrap().contains("inside the repository"));

    let up = refused(&[("sub/x", Put::Link("../../outside"))]).await;
    assert_eq!(link_problem(&up).1, LinkProblem::Escapes);

    // A chain: each link stays inside, the last one leaves. `a/tok` sorts first: it is named.
    let chain = refused(&[
        ("a/tok", Put::Link("x/tok")),
        ("a/x", Put::Link("../stuff")),
        ("stuff/tok", Put::Link("/var/run/secrets/token")),
    ])
    .await;
    assert_eq!(
        link_problem(&chain),
        (
            "a/tok".into(),
            LinkProblem::Absolute,
            vec![
                pair("a/tok", "x/tok"),
                pair("a/x", "../stuff"),
                pair("stuff/tok", "/var/run/secrets/token")
            ]
        )
    );
    assert!(chain.to_string().ends_with(
        "`a/tok` -> `x/tok`, then `a/x` -> `../stuff`, then `stuff/tok` -> \
         `/var/run/secrets/token`"
    ));
    // `..` is resolved from where the link really is (`stuff/`), not from its copy.
    let physical = refused(&[
        ("deep/er/files", Put::Link("../../stuff")),
        ("stuff/up", Put::Link("../../x")),
    ])
    .await;
    assert_eq!(link_problem(&physical).1, LinkProblem::Escapes);
}

#[tokio::test]
async fn dangling_looping_and_self_containing_symlinks_are_refused() {
    let dangling = refused(&[("gone", Put::Link("nothing.txt"))]).await;
    assert_eq!(
        link_problem(&dangling).1,
        LinkProblem::Missing("nothing.txt".into())
    );
    assert!(dangling.hint().unwrap().contains("dangling"));

    let looping = refused(&[("l1", Put::Link("l2")), ("l2", Put::Link("l1"))]).await;
    let (_, problem, chain) = link_problem(&looping);
    assert_eq!(problem, LinkProblem::TooManyLinks);
    assert_eq!(chain.len(), tree_plan::MAX_LINKS);

    let itself = refused(&[("me", Put::Link("me"))]).await;
    assert_eq!(link_problem(&itself).1, LinkProblem::TooManyLinks);

    for entries in [
        vec![("sub/up", Put::Link(".."))],
        vec![("here", Put::Link("."))],
        vec![("a/l", Put::Link("../b")), ("b/m", Put::Link("../a"))],
    ] {
        let e = refused(&entries).await;
        assert_eq!(link_problem(&e).1, LinkProblem::ContainsItself, "{e}");
    }

    let through_a_file =
        refused(&[("real.txt", Put::File("x")), ("x", Put::Link("real.txt/y"))]).await;
    assert_eq!(
        link_problem(&through_a_file).1,
        LinkProblem::NotADirectory("real.txt".into())
    );
}

#[tokio::test]
async fn a_blob_repeated_under_many_paths_is_stopped_by_the_tree_size_cap() {
    let blob = "x".repeat(1024);
    let paths: Vec<String> = (0..10).map(|i| format!("bomb/{i}.bin")).collect();
    let entries: Vec<(&str, Put<'_>)> = paths
        .iter()
        .map(|p| (p.as_str(), Put::File(&blob)))
        .collect();
    let tmp = TempDir::new().unwrap();
    let limits = RepoFileLimits {
        max_tree_size: 5 * 1024,
        ..*NO_LIMIT
    };
    let (url, result) = export_entries(&tmp, &entries, &limits).await;
    let e = &result.unwrap_err().0[0];
    assert!(
        matches!(
            e,
            CheckoutError::OverCap {
                cap: Cap::TreeSize,
                reached: 6144,
                limit: 5120,
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("repository `charts` ({url}) at ")),
        "{text}"
    );
    assert!(
        text.ends_with(
            "would write more than 5 KiB to the cache (the per-repository cap \
             `repo_files.max_tree_size`), counting every copy of a file: 6 KiB reached at \
             `bomb/5.bin`"
        ),
        "{text}"
    );
    assert!(e
        .hint()
        .unwrap()
        .contains("raise `repo_files.max_tree_size` in sandbox.yaml"));
    assert!(
        walk(&tmp.path().join("cache").join(TREES_DIR))
            .iter()
            .all(|p| p.is_dir()),
        "nothing written"
    );
}

#[tokio::test]
async fn directory_symlinks_count_every_copy_against_the_file_cap() {
    let mut entries = vec![
        ("big/1", Put::File("1")),
        ("big/2", Put::File("2")),
        ("big/3", Put::File("3")),
    ];
    let links: Vec<String> = (0..5).map(|i| format!("copy{i}")).collect();
    entries.extend(links.iter().map(|l| (l.as_str(), Put::Link("big"))));
    let tmp = TempDir::new().unwrap();
    let limits = RepoFileLimits {
        max_tree_files: 12,
        ..*NO_LIMIT
    };
    // big/ and its 3 files, then 4 per copy: the third copy's directory is the 13th.
    let (_, result) = export_entries(&tmp, &entries, &limits).await;
    let e = &result.unwrap_err().0[0];
    assert!(
        matches!(e, CheckoutError::OverCap { cap: Cap::TreeFiles, reached: 13, at: Some(at), .. } if at == "copy2"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("more than 12 files and directories"),
        "{e}"
    );
}

#[tokio::test]
async fn the_sandbox_cap_counts_every_repository_reused_trees_included() {
    let tmp = TempDir::new().unwrap();
    let blob = "y".repeat(3 * 1024);
    let specs: Vec<RepoSpec> = ["one", "two"]
        .iter()
        .map(|name| {
            let path = tmp.path().join(format!("{name}.git"));
            tree_repo(&path, &[("data.bin", Put::File(&blob))]);
            spec(name, url_of(&path))
        })
        .collect();
    let cache = tmp.path().join("cache");
    // Each alone fits, and is cached.
    for s in &specs {
        checkout_one_async(s.clone(), "main", &cache).await;
    }
    let limits = RepoFileLimits {
        max_sandbox_size: 5 * 1024,
        ..*NO_LIMIT
    };
    let errors = checkout_all(&specs, "main", &cache, &limits)
        .await
        .unwrap_err();
    assert_eq!(errors.errors().len(), 1, "{errors:?}");
    let e = &errors.errors()[0];
    assert!(
        matches!(
            e,
            CheckoutError::OverCap {
                cap: Cap::SandboxSize,
                reached: 6144,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with(
            "the repositories of this sandbox would write more than 5 KiB to the cache together \
         (the per-sandbox cap `repo_files.max_sandbox_size`): 6 KiB with repository `"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn trees_of_the_old_layout_are_never_reused_and_pruned_after_the_grace() {
    let tmp = TempDir::new().unwrap();
    let remote = tree_repo(&tmp.path().join("api.git"), &[("a", Put::File("new\n"))]);
    let url = url_of(&tmp.path().join("api.git"));
    let cache = tmp.path().join("cache");
    let sha = tip(&remote, "main");
    // What an older version left: the same commit, with a symlink in it.
    let legacy = cache.join(LEGACY_TREES_DIR).join(cache_key(&url));
    fs::create_dir_all(legacy.join(&sha)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", legacy.join(&sha).join("a")).unwrap();
    let recent = legacy.join("0123456789abcdef0123456789abcdef01234567");
    fs::create_dir_all(&recent).unwrap();

    let c = checkout_one_async(spec("api", &url), "main", &cache).await;
    assert_eq!(read(&c.dir, "a"), "new\n");
    assert!(!c.dir.starts_with(&legacy));

    used_ago(&legacy.join(&sha), 2 * HOUR);
    let live = [sha.as_str()];
    let report = prune(&cache, &policy(Some(&live), false)).unwrap();
    let pruned: Vec<&Path> = report.pruned.iter().map(|p| p.path.as_path()).collect();
    assert_eq!(pruned, [legacy.join(&sha)], "live or not, it is never used");
    assert!(recent.exists() && c.dir.exists());
}

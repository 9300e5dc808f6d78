//! Build an image from a checked-out tree with buildah and push it: rootful, vfs storage, chroot
//! isolation — no Docker daemon, and it works inside a container or CI runner as root. The
//! build's output streams through the reporter, prefixed `[build/NAME]`; a failure keeps its last
//! lines for the error.
//!
//! The build runs the branch's Containerfile, so it gets no credential: `buildah bud` runs with
//! an environment of [`BUILDER_VARS`] only (no tokens, no `REGISTRY_AUTH_FILE`, no
//! `DOCKER_CONFIG`, no age key) and an empty auth file, so it reads no registry credentials
//! (its base images are pulled anonymously, or are already in buildah's storage). Only
//! `buildah push`, which runs nothing of the branch's, reads them. Chroot isolation is still no
//! security boundary (a `RUN` step runs as root on the machine): build only where the branch
//! may see everything (a developer's machine, CI); `sandbox serve` never builds.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::progress::Reporter;

/// How many of a failed build's last lines its error keeps.
const KEPT_LINES: usize = 20;

/// One image to build and push.
#[derive(Debug, Clone)]
pub(crate) struct BuildJob {
    /// The full reference to tag and push, e.g. `10.200.0.2:5000/shop/backend:0123abc…`.
    pub(crate) reference: String,
    pub(crate) context: PathBuf,
    pub(crate) containerfile: PathBuf,
    pub(crate) args: Vec<(String, String)>,
    /// Verify TLS when pulling the base and pushing (false for plain-HTTP registries).
    pub(crate) tls_verify: bool,
    /// The prefix of its log lines.
    pub(crate) label: String,
}

/// Why a build did not produce a pushed image.
#[derive(Debug)]
pub(crate) enum BuildFailure {
    /// buildah could not be started.
    Spawn(PathBuf, std::io::Error),
    /// `buildah bud` or `buildah push` exited non-zero.
    Failed {
        step: &'static str,
        status: std::process::ExitStatus,
        last_lines: Vec<String>,
    },
}

/// buildah: `SANDBOX_BUILDAH`, else the first `buildah` in an absolute `PATH` entry.
pub(crate) fn locate(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(path) = env("SANDBOX_BUILDAH") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = env("PATH").map(std::ffi::OsString::from);
    crate::program::on_path("buildah", path.as_deref())
}

/// The environment variables `buildah bud` keeps (in either case, for the proxies' sake): where
/// programs, storage and configuration are, proxies and CA certificates.
const BUILDER_VARS: [&str; 11] = [
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "XDG_RUNTIME_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];
/// …and those starting with these: buildah's and its libraries' settings.
const BUILDER_PREFIXES: [&str; 3] = ["BUILDAH_", "CONTAINERS_", "STORAGE_"];

/// The part of `vars` that the build keeps ([`BUILDER_VARS`], [`BUILDER_PREFIXES`]): nothing
/// else of the process's environment reaches it.
pub(crate) fn builder_environment(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let allowed = |name: &str| {
        BUILDER_VARS.contains(&name.to_ascii_uppercase().as_str())
            || BUILDER_PREFIXES.iter().any(|p| name.starts_with(p))
    };
    vars.into_iter().filter(|(name, _)| allowed(name)).collect()
}

/// An auth file with no credentials, deleted when dropped: what the build reads instead of
/// the usual ones.
struct NoCredentials(PathBuf);

impl NoCredentials {
    fn write() -> std::io::Result<NoCredentials> {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "sandbox-build-auth-{}-{n}.json",
            std::process::id()
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::io::Write::write_all(&mut file, b"{\"auths\": {}}")?;
        Ok(NoCredentials(path))
    }
}

impl Drop for NoCredentials {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Build `job` into buildah's storage: with no credential (see the module's doc).
pub(crate) async fn build(
    buildah: &Path,
    job: &BuildJob,
    reporter: &Reporter,
) -> Result<(), BuildFailure> {
    let no_credentials =
        NoCredentials::write().map_err(|e| BuildFailure::Spawn(buildah.to_owned(), e))?;
    let mut bud: Vec<String> = vec![
        "--storage-driver".into(),
        "vfs".into(),
        "bud".into(),
        "--isolation".into(),
        "chroot".into(),
        format!("--tls-verify={}", job.tls_verify),
        "--authfile".into(),
        no_credentials.0.display().to_string(),
        "-f".into(),
        job.containerfile.display().to_string(),
        "-t".into(),
        job.reference.clone(),
    ];
    for (name, value) in &job.args {
        bud.push("--build-arg".into());
        bud.push(format!("{name}={value}"));
    }
    bud.push(job.context.display().to_string());
    let env = builder_environment(std::env::vars());
    run(buildah, "build", &bud, Some(env), &job.label, reporter).await
}

/// Push the built `job` to its registry, with the credentials buildah finds (the usual auth
/// files): the push runs nothing of the branch's.
pub(crate) async fn push(
    buildah: &Path,
    job: &BuildJob,
    reporter: &Reporter,
) -> Result<(), BuildFailure> {
    let push = [
        "--storage-driver".to_owned(),
        "vfs".into(),
        "push".into(),
        format!("--tls-verify={}", job.tls_verify),
        job.reference.clone(),
        format!("docker://{}", job.reference),
    ];
    run(buildah, "push", &push, None, &job.label, reporter).await
}

/// Every line of `output` to the reporter, the last few kept.
async fn relay(
    output: impl AsyncRead + Unpin,
    label: &str,
    last: &Mutex<VecDeque<String>>,
    reporter: &Reporter,
) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        reporter.log_line(label, &line);
        let mut last = last.lock().expect("not poisoned");
        if last.len() == KEPT_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
}

/// Run buildah's `step` with `args` and, when given, only the environment `env`; its output line
/// by line to the reporter.
async fn run(
    buildah: &Path,
    step: &'static str,
    args: &[String],
    env: Option<Vec<(String, String)>>,
    label: &str,
    reporter: &Reporter,
) -> Result<(), BuildFailure> {
    let mut command = Command::new(buildah);
    if let Some(env) = env {
        command.env_clear().envs(env);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BuildFailure::Spawn(buildah.to_owned(), e))?;
    let last = Mutex::new(VecDeque::with_capacity(KEPT_LINES));
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    tokio::join!(
        relay(stdout, label, &last, reporter),
        relay(stderr, label, &last, reporter)
    );
    let last = last.into_inner().expect("not poisoned");
    let status = child
        .wait()
        .await
        .map_err(|e| BuildFailure::Spawn(buildah.to_owned(), e))?;
    if status.success() {
        return Ok(());
    }
    Err(BuildFailure::Failed {
        step,
        status,
        last_lines: last
            .into_iter()
            .map(|l| reporter.scrub(&crate::redact::printable(&l)))
            .collect(),
    })
}

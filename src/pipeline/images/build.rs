//! Build an image from a checked-out tree with buildah and push it: rootful, vfs storage, chroot
//! isolation — no Docker daemon, and it works inside a container or CI runner as root. The
//! build's output streams through the reporter, prefixed `[build/NAME]`; a failure keeps its last
//! lines for the error.

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

/// Build `job` and push it to its registry.
pub(crate) async fn build_and_push(
    buildah: &Path,
    job: &BuildJob,
    reporter: &Reporter,
) -> Result<(), BuildFailure> {
    let tls = format!("--tls-verify={}", job.tls_verify);
    let mut bud: Vec<String> = vec![
        "--storage-driver".into(),
        "vfs".into(),
        "bud".into(),
        "--isolation".into(),
        "chroot".into(),
        tls.clone(),
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
    run(buildah, "build", &bud, &job.label, reporter).await?;
    let push = [
        "--storage-driver".to_owned(),
        "vfs".into(),
        "push".into(),
        tls,
        job.reference.clone(),
        format!("docker://{}", job.reference),
    ];
    run(buildah, "push", &push, &job.label, reporter).await
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

/// Run buildah with `args`, its output line by line to the reporter.
async fn run(
    buildah: &Path,
    step: &'static str,
    args: &[String],
    label: &str,
    reporter: &Reporter,
) -> Result<(), BuildFailure> {
    let mut child = Command::new(buildah)
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
        last_lines: last.into_iter().map(|l| reporter.scrub(&l)).collect(),
    })
}

//! The `helm` binary: found on `PATH` (absolute entries only) or through `SANDBOX_HELM`, its
//! version checked once, and `helm template` run with the values on stdin.
//!
//! Values go to helm only through its stdin (`--values -`): decrypted secrets never touch the
//! disk and never appear in argv, where any user of the machine could read them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::ChartError;
use super::version::{at_least, MIN_VERSION};
use crate::program;

/// How long one `helm template` may run.
const TEMPLATE_TIMEOUT: Duration = Duration::from_secs(60);

/// A helm binary that is new enough.
#[derive(Debug, Clone)]
pub(crate) struct Helm {
    pub(crate) path: PathBuf,
}

/// What helm printed for a successful `helm template`.
pub(crate) struct Rendered {
    pub(crate) stdout: String,
}

/// `helm template` failed (non-zero exit), with its error message.
pub(crate) struct Refused {
    pub(crate) message: String,
}

impl Helm {
    /// Find helm and check its version: `SANDBOX_HELM` if set, else the first `helm` in an
    /// absolute `PATH` entry (a relative entry would let the current directory choose).
    pub(crate) async fn locate() -> Result<Helm, ChartError> {
        Helm::locate_with(std::env::var_os("SANDBOX_HELM"), std::env::var_os("PATH")).await
    }

    /// [`Helm::locate`] given the values of `SANDBOX_HELM` and `PATH`.
    async fn locate_with(
        sandbox_helm: Option<std::ffi::OsString>,
        path_var: Option<std::ffi::OsString>,
    ) -> Result<Helm, ChartError> {
        let path = match sandbox_helm {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(ChartError::HelmMissing {
                        looked: format!("SANDBOX_HELM={} is not a file", path.display()),
                    });
                }
                path
            }
            None => program::on_path("helm", path_var.as_deref()).ok_or_else(|| {
                ChartError::HelmMissing {
                    looked: "no `helm` in any directory of PATH".into(),
                }
            })?,
        };
        let version = version_of(&path).await?;
        if !at_least(&version, MIN_VERSION) {
            return Err(ChartError::HelmTooOld {
                path,
                found: version,
            });
        }
        Ok(Helm { path })
    }

    /// Run `helm template` with `args`, writing `values` to its stdin. `Ok(Err(_))` is helm's
    /// refusal (the chart's fault); `Err(_)` is helm not running at all, or running too long.
    pub(crate) async fn template(
        &self,
        args: &[String],
        values: &[u8],
    ) -> Result<Result<Rendered, Refused>, TemplateFailure> {
        let mut child = command(&self.path)
            .arg("template")
            .args(args)
            .args(["--values", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(TemplateFailure::Spawn)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let write = async move {
            // helm reads all of stdin before it renders; a closed pipe means it failed early,
            // and its exit status says why.
            let _ = stdin.write_all(values).await;
            drop(stdin);
        };
        let run = async {
            let (_, output) = tokio::join!(write, child.wait_with_output());
            output
        };
        let output = tokio::time::timeout(TEMPLATE_TIMEOUT, run)
            .await
            .map_err(|_| TemplateFailure::Timeout(TEMPLATE_TIMEOUT))?
            .map_err(TemplateFailure::Spawn)?;
        if output.status.success() {
            return Ok(Ok(Rendered {
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            }));
        }
        Ok(Err(Refused {
            message: error_message(&String::from_utf8_lossy(&output.stderr)),
        }))
    }
}

/// Why `helm template` did not give an answer.
#[derive(Debug)]
pub(crate) enum TemplateFailure {
    Spawn(std::io::Error),
    Timeout(Duration),
}

/// helm with a small, known environment: it must not read the caller's kubeconfig or plugins
/// while rendering, and has no business with the rest of the environment.
fn command(path: &Path) -> Command {
    let mut command = Command::new(path);
    command.env_clear();
    for name in [
        "PATH",
        "HOME",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "HELM_CACHE_HOME",
        "HELM_CONFIG_HOME",
        "HELM_DATA_HOME",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// `helm version --template {{.Version}}`, e.g. `v4.1.4`.
async fn version_of(path: &Path) -> Result<String, ChartError> {
    let run = command(path)
        .args(["version", "--template", "{{.Version}}"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let failed = |source| ChartError::HelmRun {
        path: path.to_owned(),
        source,
    };
    let output = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .map_err(|_| {
            failed(std::io::Error::other(
                "`helm version` did not answer within 10s",
            ))
        })?
        .map_err(failed)?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || !version.starts_with('v') {
        return Err(failed(std::io::Error::other(format!(
            "`helm version` answered {:?}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))));
    }
    Ok(version)
}

/// helm's error: its stderr without the `Error: ` prefix and the usage noise, on one line
/// per cause.
fn error_message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Use --debug"))
        .collect();
    let text = lines.join("\n");
    let text = text.strip_prefix("Error: ").unwrap_or(&text);
    if text.is_empty() {
        "helm exited without a message".into()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_helm_says_where_it_looked() {
        let e = Helm::locate_with(Some("/nonexistent/helm".into()), None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "helm is not installed: SANDBOX_HELM=/nonexistent/helm is not a file"
        );
        let empty = tempfile::tempdir().unwrap();
        // A relative PATH entry is never searched, even when it holds a helm.
        let e = Helm::locate_with(None, Some(format!("{}:.", empty.path().display()).into()))
            .await
            .unwrap_err();
        assert!(matches!(e, ChartError::HelmMissing { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_old_helm_is_refused_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("helm");
        std::fs::write(&fake, "#!/bin/sh\nprintf v3.2.1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = Helm::locate_with(None, Some(dir.path().as_os_str().to_owned()))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is helm v3.2.1; sandbox needs helm 3.8.0 or newer"),
            "{e}"
        );
    }

    #[test]
    fn helms_message_loses_its_prefix_and_noise() {
        assert_eq!(
            error_message("Error: execution error at (web/templates/a.yaml:3:4): need x\n\nUse --debug flag to render out invalid YAML\n"),
            "execution error at (web/templates/a.yaml:3:4): need x"
        );
        assert_eq!(error_message(""), "helm exited without a message");
    }
}

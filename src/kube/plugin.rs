//! A kubeconfig's credential plugin (`users[].user.exec`: EKS's `aws eks get-token`, GKE's
//! `gke-gcloud-auth-plugin`, AKS's `kubelogin`, …), as kube runs it: without a terminal it runs
//! non-interactively (kubectl's reading of `interactiveMode: IfAvailable`), so its stderr is
//! captured; a failure names the plugin and shows that stderr, scrubbed, instead of kube's raw
//! bytes.

use std::io::IsTerminal as _;

use kube::config::{AuthInfo, ExecInteractiveMode};

/// Make the plugin non-interactive when nobody could answer it.
pub(super) fn prepare(auth: &mut AuthInfo) {
    let Some(exec) = auth.exec.as_mut() else {
        return;
    };
    let interactive_possible = std::io::stdin().is_terminal();
    if !interactive_possible && exec.interactive_mode != Some(ExecInteractiveMode::Always) {
        exec.interactive_mode = Some(ExecInteractiveMode::Never);
    }
}

/// The plugin's failure in words, when that is what `error` is: (plugin, problem).
pub(super) fn failure(auth: &AuthInfo, error: &kube::Error) -> Option<(String, String)> {
    let exec = auth.exec.as_ref()?;
    let plugin = std::iter::once(exec.command.clone().unwrap_or_default())
        .chain(exec.args.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    let kube::Error::Auth(auth_error) = error else {
        return None;
    };
    use kube::client::AuthError;
    let problem = match auth_error {
        AuthError::AuthExecRun { out, .. } => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            format!(
                "{}: {}",
                out.status,
                crate::logging::stderr_excerpt(&stderr)
            )
        }
        AuthError::AuthExecStart(e) => format!("it could not be started: {e}"),
        AuthError::AuthExecParse(_) | AuthError::ExecPluginFailed => {
            "its output is not an ExecCredential with a `status`".into()
        }
        AuthError::AuthExec(message) => crate::logging::scrub(message),
        _ => return None,
    };
    Some((plugin, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_with(command: &str) -> AuthInfo {
        let yaml = format!(
            "exec: {{apiVersion: client.authentication.k8s.io/v1, command: {command}, args: [get-token, --cluster, c1], interactiveMode: IfAvailable}}"
        );
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    #[test]
    fn a_failing_plugin_is_named_with_its_scrubbed_stderr() {
        crate::logging::add_secrets(["plugin-leaked-secret-9".to_owned()]);
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("corp-login");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'token expired (plugin-leaked-secret-9)' >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut auth = auth_with(&script.display().to_string());
        // As without a terminal (the test's stdin may be one).
        auth.exec.as_mut().unwrap().interactive_mode = Some(ExecInteractiveMode::Never);
        prepare(&mut auth);
        let mut config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        config.auth_info = auth.clone();
        let error = kube::Client::try_from(config)
            .err()
            .expect("the plugin fails");
        let (plugin, problem) = failure(&auth, &error).expect("a plugin failure");
        assert_eq!(
            plugin,
            format!("{} get-token --cluster c1", script.display())
        );
        assert_eq!(problem, "exit status: 1: token expired (<redacted>)");
    }
}

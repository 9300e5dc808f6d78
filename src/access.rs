//! Who may work inside a sandbox, besides whoever created it: the service accounts of `serve`
//! get their rights in a sandbox's namespace from a RoleBinding the tool makes with the
//! namespace, not from a ClusterRoleBinding that would reach every namespace. And, where RBAC
//! cannot confine an account (deleting and patching namespaces, creating RoleBindings), a
//! `ValidatingAdmissionPolicy` that holds it to the tool's labelled namespaces, on clusters that
//! serve one.

use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;

use crate::error::Hint;
use crate::kube::{Cluster, FIELD_MANAGER};
use crate::object::{is_dns1123_label, is_dns1123_subdomain};
use crate::record::{MANAGED_BY, MANAGED_BY_VALUE};

/// The RoleBinding in each sandbox namespace.
pub(crate) const BINDING_NAME: &str = "sandbox-access";

/// Service accounts to bind, in every namespace the tool creates, to a ClusterRole of what one
/// needs inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    /// `(namespace, name)` of each service account.
    pub(crate) accounts: Vec<(String, String)>,
    pub(crate) cluster_role: String,
}

/// `NAMESPACE/NAME` of a service account, as flags take it.
pub(crate) fn parse_account(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if is_dns1123_label(ns) && is_dns1123_subdomain(name) => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!(
            "`{text}` is not NAMESPACE/NAME of a service account (e.g. sandbox-system/sandbox-serve)"
        )),
    }
}

/// The user name Kubernetes gives a service account.
pub(crate) fn user_name((namespace, name): &(String, String)) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    #[error("could not bind {accounts} to ClusterRole `{role}` in namespace `{namespace}`")]
    Bind {
        namespace: String,
        accounts: String,
        role: String,
        #[source]
        source: kube::Error,
    },
    /// The binding was made but the API server does not yet grant what it says.
    #[error("the RoleBinding `{BINDING_NAME}` in namespace `{namespace}` did not take effect within {}s", after.as_secs())]
    NotEffective { namespace: String, after: Duration },
}

impl Hint for AccessError {
    fn hint(&self) -> Option<String> {
        match self {
            AccessError::Bind { role, .. } => Some(format!(
                "the account running sandbox needs `create`/`patch` on rolebindings and `bind` on ClusterRole `{role}` (see deploy/serve.yaml)"
            )),
            AccessError::NotEffective { .. } => Some(
                "check that the ClusterRole named by --sandbox-role exists and grants `create` on leases: `kubectl get clusterrole NAME -o yaml`".into(),
            ),
        }
    }
}

/// Make (or refresh) the RoleBinding that gives `access`'s accounts their rights in
/// `namespace`, and wait until the API server applies it to the caller: right after a binding
/// is written the authorizer's cache may not know it yet, and the next call (taking the lock)
/// would be forbidden.
pub(crate) async fn grant(
    cluster: &Cluster,
    namespace: &str,
    access: &Access,
) -> Result<(), AccessError> {
    let subjects: Vec<serde_json::Value> = access
        .accounts
        .iter()
        .map(|(ns, name)| serde_json::json!({"kind": "ServiceAccount", "name": name, "namespace": ns}))
        .collect();
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": BINDING_NAME, "namespace": namespace, "labels": {MANAGED_BY: MANAGED_BY_VALUE}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": access.cluster_role},
        "subjects": subjects,
    });
    let api: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(cluster.client.clone(), namespace);
    api.patch(
        BINDING_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(binding),
    )
    .await
    .map_err(|source| AccessError::Bind {
        namespace: namespace.into(),
        accounts: access
            .accounts
            .iter()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        role: access.cluster_role.clone(),
        source,
    })?;
    wait_effective(cluster, namespace, Duration::from_secs(15)).await
}

/// Ask the API server, as ourselves, whether we may take the sandbox's lock in `namespace`,
/// until it says yes.
async fn wait_effective(
    cluster: &Cluster,
    namespace: &str,
    timeout: Duration,
) -> Result<(), AccessError> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let review: SelfSubjectAccessReview = serde_json::from_value(serde_json::json!({
        "spec": {"resourceAttributes": {"namespace": namespace, "verb": "create", "group": "coordination.k8s.io", "resource": "leases"}},
    }))
    .expect("a valid review");
    let started = Instant::now();
    loop {
        // A failing review is not an answer: ask again until the time is up.
        let answer = reviews.create(&PostParams::default(), &review).await;
        if answer.is_ok_and(|r| r.status.is_some_and(|s| s.allowed)) {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(AccessError::NotEffective {
                namespace: namespace.into(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The API group and kind of the policy, as discovery names them.
pub(crate) const POLICY_API: (&str, &str) = (
    "admissionregistration.k8s.io/v1",
    "ValidatingAdmissionPolicy",
);

/// Whether the cluster can enforce [`admission_policy`] (Kubernetes 1.30 and later).
pub(crate) fn serves_admission_policies(cluster: &Cluster) -> bool {
    cluster.resolve(POLICY_API.0, POLICY_API.1).is_some()
}

const POLICY_NAME: &str = "sandbox-labelled-namespaces-only";

/// A ValidatingAdmissionPolicy and its binding that let `accounts` create, change and delete
/// only namespaces that carry the tool's label, and objects only inside such namespaces: what
/// their ClusterRoles cannot say, since RBAC does not look at labels.
pub(crate) fn admission_policy(accounts: &[(String, String)]) -> String {
    let users: Vec<String> = accounts
        .iter()
        .map(|a| format!("'{}'", user_name(a)))
        .collect();
    let users = users.join(", ");
    let labelled = |x: &str| {
        format!("(has({x}.metadata.labels) && '{MANAGED_BY}' in {x}.metadata.labels && {x}.metadata.labels['{MANAGED_BY}'] == '{MANAGED_BY_VALUE}')")
    };
    format!(
        r#"# What RBAC cannot say: these accounts may create, change and delete only namespaces labelled
# {MANAGED_BY}={MANAGED_BY_VALUE}, and objects only inside such namespaces (the namespace
# controller, which empties a deleted namespace, is not one of them).
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {POLICY_NAME}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: ["*"]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE, DELETE]
        resources: ["*", "*/*"]
  matchConditions:
    - name: sandbox-accounts
      expression: "request.userInfo.username in [{users}]"
  validations:
    - expression: >-
        request.resource.group == '' && request.resource.resource == 'namespaces'
        ? ((object == null || {new}) && (oldObject == null || {old}))
        : (namespaceObject != null && {ns})
      message: "sandbox's accounts change only namespaces labelled {MANAGED_BY}={MANAGED_BY_VALUE} and what is inside them"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {POLICY_NAME}
spec:
  policyName: {POLICY_NAME}
  validationActions: [Deny]
"#,
        new = labelled("object"),
        old = labelled("oldObject"),
        ns = labelled("namespaceObject"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };

    #[test]
    fn accounts_are_namespace_slash_name() {
        assert_eq!(
            parse_account("sandbox-system/sandbox-serve"),
            Ok(("sandbox-system".into(), "sandbox-serve".into()))
        );
        for bad in ["sandbox-serve", "a/b/c", "/x", "Sys/x", "x/"] {
            let e = parse_account(bad).unwrap_err();
            assert!(e.contains("NAMESPACE/NAME"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_policy_parses_into_the_api_types_and_names_the_accounts() {
        let accounts = [
            ("sandbox-system".to_owned(), "sandbox-serve".to_owned()),
            ("ops".to_owned(), "sandbox-reaper".to_owned()),
        ];
        let text = admission_policy(&accounts);
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        // Round trips through the typed API objects lose nothing: no misspelt field.
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(docs[0].clone()).unwrap();
        assert_eq!(serde_json::to_value(&policy).unwrap(), docs[0]);
        let binding: ValidatingAdmissionPolicyBinding =
            serde_json::from_value(docs[1].clone()).unwrap();
        assert_eq!(serde_json::to_value(&binding).unwrap(), docs[1]);

        let spec = policy.spec.unwrap();
        assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
        let condition = &spec.match_conditions.unwrap()[0].expression;
        assert_eq!(
            condition,
            "request.userInfo.username in ['system:serviceaccount:sandbox-system:sandbox-serve', 'system:serviceaccount:ops:sandbox-reaper']"
        );
        let rule = &spec.validations.unwrap()[0].expression;
        for x in ["object", "oldObject", "namespaceObject"] {
            assert!(
                rule.contains(&format!("{x}.metadata.labels['{MANAGED_BY}'] == 'sandbox'")),
                "{rule}"
            );
        }
        let spec = binding.spec.unwrap();
        assert_eq!(spec.policy_name.as_deref(), Some(POLICY_NAME));
        assert_eq!(spec.validation_actions, Some(vec!["Deny".to_owned()]));
    }
}

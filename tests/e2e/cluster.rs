//! The local cluster itself works: workloads run, Services route, Jobs complete, logs are
//! readable, NodePorts answer, and a pod reaches the API server with verified TLS.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

use crate::support::{apply_yaml, cluster, root, run_ok, TestNamespace};

async fn create_namespace(client: &Client, name: &str, labels: serde_json::Value) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels, "annotations": {"sandbox.dev/branch": "selftest"}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Wait until a Job succeeded or failed; return it with its pod's log.
async fn finished_job(client: &Client, ns: &str, name: &str) -> (Job, String) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let finished = await_condition(jobs, name, |j: Option<&Job>| {
        j.and_then(|j| j.status.as_ref())
            .is_some_and(|s| s.succeeded.unwrap_or(0) > 0 || s.failed.unwrap_or(0) > 0)
    });
    let job = within(&format!("job {name}"), finished)
        .await
        .unwrap()
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("job-name={name}");
    let pod = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .remove(0);
    let logs = pods
        .logs(pod.metadata.name.as_deref().unwrap(), &LogParams::default())
        .await
        .unwrap();
    (job, logs)
}

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: probe}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: probe
          image: docker.io/local/busybox:1
          imagePullPolicy: IfNotPresent
          command: ["sh", "-c", "echo job-ran; wget -qO- http://$HELLO_SERVICE_HOST:$HELLO_SERVICE_PORT/"]
"#;

#[tokio::test]
async fn deployment_nodeport_and_job_work_on_the_local_cluster() {
    let Some(client) = cluster("cluster self-test").await else {
        return;
    };
    let ns = TestNamespace::claim(&client, "e2e-cluster-selftest").await;
    create_namespace(&client, &ns.name, serde_json::json!({})).await;
    apply_yaml(
        &client,
        &ns.name,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
        - name: hello
          image: docker.io/local/busybox:1
          imagePullPolicy: IfNotPresent
          command: ["sh", "-c", "echo hello-from-the-cluster > /www/index.html; exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080, protocol: TCP}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  type: NodePort
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080, protocol: TCP}]
"#,
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    within(
        "deployment rollout",
        await_condition(deployments, "hello", conditions::is_deployment_completed()),
    )
    .await
    .unwrap();
    // The Job starts once the Deployment serves, as a dependency-ordered deploy would do it.
    apply_yaml(&client, &ns.name, JOB).await;
    let (job, logs) = finished_job(&client, &ns.name, "probe").await;
    assert_eq!(
        job.status.unwrap().succeeded,
        Some(1),
        "job failed; its log:\n{logs}"
    );
    // The Job reached the Deployment through the Service's environment variables and kube-proxy.
    assert_eq!(logs, "job-ran\nhello-from-the-cluster\n");

    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let svc = services.get("hello").await.unwrap();
    let node_port = svc.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    let body = crate::support::http_get(&format!("http://127.0.0.1:{node_port}/"));
    assert_eq!(body, "hello-from-the-cluster\n");
}

/// A pod with a ServiceAccount and RBAC calls the API server through the `kubernetes` Service
/// with verified TLS: the `sandbox` binary, in an image, lists sandboxes from inside the cluster.
#[tokio::test]
async fn a_pod_reaches_the_api_server_with_verified_tls() {
    let Some(client) = cluster("in-cluster API access").await else {
        return;
    };
    let ns = TestNamespace::claim(&client, "e2e-cluster-incluster").await;
    create_namespace(
        &client,
        &ns.name,
        serde_json::json!({"app.kubernetes.io/managed-by": "sandbox"}),
    )
    .await;
    run_ok(
        std::process::Command::new(root().join("scripts/images")).args([
            "sandbox",
            env!("CARGO_BIN_EXE_sandbox"),
            "e2e",
        ]),
    );
    apply_yaml(
        &client,
        &ns.name,
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: lister}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-cluster-incluster-lister}
rules: [{apiGroups: [""], resources: [namespaces], verbs: [list, get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-cluster-incluster-lister}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-cluster-incluster-lister}
subjects: [{kind: ServiceAccount, name: lister, namespace: e2e-cluster-incluster}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: list}
spec:
  backoffLimit: 0
  template:
    spec:
      serviceAccountName: lister
      restartPolicy: Never
      containers:
        - name: list
          image: docker.io/local/sandbox:e2e
          imagePullPolicy: IfNotPresent
          args: ["list", "--output", "json"]
"#,
    )
    .await;
    let (job, logs) = finished_job(&client, &ns.name, "list").await;
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    let _ = roles
        .delete("e2e-cluster-incluster-lister", &DeleteParams::default())
        .await;
    let _ = bindings
        .delete("e2e-cluster-incluster-lister", &DeleteParams::default())
        .await;
    assert_eq!(
        job.status.unwrap().succeeded,
        Some(1),
        "in-cluster `sandbox list` failed:\n{logs}"
    );
    assert!(
        logs.contains("\"namespace\": \"e2e-cluster-incluster\""),
        "{logs}"
    );
}

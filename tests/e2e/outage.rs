//! The API server unreachable for 10 s in the middle of `up`.
//!
//! The cluster is shared with tests running in parallel, so its API server is not stopped.
//! Instead `sandbox` reaches it through a TCP proxy of the test's own, with a copy of the
//! kubeconfig that points at the proxy. The proxy passes TLS through untouched (the API server's
//! certificate names 127.0.0.1, where the proxy listens, so verification stays on), and for the
//! outage it closes its listener and resets every live connection — what a stopped API server
//! or a cut network looks like from the client.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{cluster, describe, orphans, Product, TestNamespace};

/// A TCP proxy to the API server that can be cut.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    accept: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            upstream: upstream.to_owned(),
            accept: Mutex::new(None),
            connections: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let connections = self.connections.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let connection = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut client = client;
                    // Dropped mid-stream (the cut), both sockets reset instead of closing
                    // cleanly, as a dead peer's would.
                    let _ = client.set_zero_linger();
                    let _ = server.set_zero_linger();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                connections.lock().unwrap().push(connection);
            }
        });
        *self.accept.lock().unwrap() = Some(accept);
    }

    /// Refuse new connections and reset the live ones for `outage`, then serve again.
    async fn cut(&self, outage: Duration) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        tokio::time::sleep(outage).await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// The test's kubeconfig with every cluster's server moved to `proxy`; returns the upstream
/// `host:port` of the (single) cluster.
fn proxied_kubeconfig(path: &std::path::Path, proxy: Option<SocketAddr>) -> String {
    let source =
        std::env::var("KUBECONFIG").expect("KUBECONFIG (run through scripts/local-cluster exec)");
    let text = std::fs::read_to_string(&source).unwrap();
    let mut config: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut upstream = String::new();
    for cluster in config["clusters"].as_array_mut().unwrap() {
        let server = cluster["cluster"]["server"].as_str().unwrap().to_owned();
        let authority = server.trim_start_matches("https://").trim_end_matches('/');
        assert!(
            authority.starts_with("127.0.0.1:"),
            "the proxy keeps TLS verification only for a server at 127.0.0.1, not {server}"
        );
        upstream = authority.to_owned();
        if let Some(proxy) = proxy {
            cluster["cluster"]["server"] = format!("https://{proxy}").into();
        }
    }
    std::fs::write(path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    upstream
}

// Several threads: the test's own tasks (a lease holder, the proxy) keep running while it
// blocks on the `sandbox` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_rides_out_ten_seconds_of_an_unreachable_api_server() {
    let Some(client) = cluster("outage").await else {
        return;
    };
    let product = Product::new("outage");
    let ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    let kubeconfig = product.path().join("kubeconfig-proxied");
    let upstream = proxied_kubeconfig(&kubeconfig, None);
    let proxy = Proxy::start(&upstream).await;
    proxied_kubeconfig(&kubeconfig, Some(proxy.addr));

    let mut cmd = product.sandbox(&["up", "--branch", "feature-x"]);
    cmd.env("KUBECONFIG", &kubeconfig);
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Cut in the middle of the deploy: the lock held, the first service applied.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let deploying = kube::runtime::wait::await_condition(
        deployments.clone(),
        "db",
        |d: Option<&Deployment>| d.is_some(),
    );
    tokio::time::timeout(Duration::from_secs(300), deploying)
        .await
        .expect("the deploy starts")
        .unwrap();
    let cut_at = started.elapsed();
    proxy.cut(Duration::from_secs(10)).await;
    let out = child.wait_with_output().unwrap();
    let total = started.elapsed();
    let text = describe(&cmd, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "outage test: cut at {:.1}s for 10s, `up` ended after {:.1}s, {}:\n{stderr}",
        cut_at.as_secs_f64(),
        total.as_secs_f64(),
        if out.status.success() {
            "succeeded"
        } else {
            "failed"
        },
    );
    assert!(
        stderr.contains("does not answer") && stderr.contains("retrying for up to"),
        "`up` said that it waits for the API server:\n{text}"
    );
    if out.status.success() {
        assert!(stderr.contains("answers again, after"), "{text}");
    } else {
        // Failing is allowed only clearly: naming the API server and what to do.
        assert!(
            stderr.contains("API server") && stderr.contains("hint:"),
            "{text}"
        );
    }

    // The next up (through the proxy, now healthy) completes, and nothing is left untracked.
    let mut again = product.sandbox(&["up", "--branch", "feature-x", "--lock-timeout", "0"]);
    again.env("KUBECONFIG", &kubeconfig);
    let out = again.output().unwrap();
    assert!(out.status.success(), "{}", describe(&again, &out));
    assert_eq!(orphans(&client, &ns.name).await, Vec::<String>::new());
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        leases.get_opt("sandbox-lock").await.unwrap().is_none(),
        "the lock was given back"
    );
    let list = deployments.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 7);
    assert!(list
        .items
        .iter()
        .all(|d| d.status.as_ref().unwrap().ready_replicas == Some(1)));
}

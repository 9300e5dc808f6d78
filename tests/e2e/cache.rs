//! `sandbox cache prune` against a live sandbox: the trees it runs stay, others go.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::support::{cluster, describe, run_ok, up_ok, Product, TestNamespace};

/// Every exported tree of the product's cache: `cache/git/trees-v2/<key>/<sha>`.
fn trees(product: &Product) -> Vec<PathBuf> {
    let root = product.path().join("cache/git/trees-v2");
    let mut out = Vec::new();
    for key in std::fs::read_dir(&root).unwrap() {
        for tree in std::fs::read_dir(key.unwrap().path()).unwrap() {
            out.push(tree.unwrap().path());
        }
    }
    out.sort();
    out
}

fn used_ago(path: &Path, ago: Duration) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

#[tokio::test]
async fn prune_keeps_the_trees_of_live_sandboxes_and_deletes_the_rest() {
    let Some(client) = cluster("cache prune").await else {
        return;
    };
    let product = Product::new("prune");
    let _ns = TestNamespace::claim(&client, &product.namespace("feature-x")).await;
    up_ok(&product, &[]);
    let live = trees(&product);
    // A newer commit, rendered but never deployed: its tree is no sandbox's.
    let newer = product.commit("data", "main", "a newer commit", |work| {
        std::fs::write(work.join("NOTES.md"), "newer\n").unwrap();
    });
    run_ok(&mut product.sandbox(&["render", "--branch", "feature-x"]));
    let all = trees(&product);
    assert_eq!(all.len(), live.len() + 1, "{all:?}");
    for tree in &all {
        used_ago(tree, Duration::from_secs(2 * 3600));
    }

    let mut cmd = product.sandbox(&["cache", "prune", "--dry-run"]);
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    assert!(
        text.contains("would delete tree ") && text.contains(&newer),
        "{text}"
    );
    assert_eq!(trees(&product), all, "a dry run deletes nothing");

    let out = run_ok(&mut product.sandbox(&["cache", "prune"]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("deleted 1 entries"), "{text}");
    assert_eq!(trees(&product), live);

    // Without a cluster to ask, it says so and goes by age: two hours is young.
    let mut cmd = product.sandbox(&["cache", "prune", "--kubeconfig", "/nonexistent"]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    assert!(
        stderr.contains("cannot ask the cluster which sandboxes are live"),
        "{stderr}"
    );
    assert_eq!(trees(&product), live);
}

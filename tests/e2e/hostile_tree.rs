//! A branch's file tree is untrusted: symlinks are resolved inside the commit and copied, or
//! refused before anything reaches helm or the cluster; a blob repeated under many paths
//! is stopped by the per-repository cap before it fills the cache.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{cluster, run_failing, run_ok, Product, TestNamespace};

/// Every path under `dir`, symlinks not followed.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.clone());
            if entry.file_type().unwrap().is_dir() {
                out.extend(walk(&path));
            }
        }
    }
    out
}

/// The exported trees of the product's checkouts.
fn cached_trees(product: &Product) -> PathBuf {
    product.path().join("cache/git/trees-v2")
}

#[tokio::test]
async fn a_symlink_chain_out_of_the_repository_is_refused_by_render_validate_and_up() {
    let product = Product::new("hostile-link");
    // A file outside the repository that the branch's links lead to.
    let outside = tempfile::tempdir().unwrap();
    let marker = format!("hostile-tree-marker-{}", std::process::id());
    let secret = outside.path().join("token");
    std::fs::write(&secret, &marker).unwrap();
    product.commit("frontend", "feature-x", "web reads a token", |dir| {
        // Each link alone looks harmless to a check of where it points: `web/files` stays in
        // the repository; helm follows it and then `stuff/tok` out of it.
        std::fs::create_dir(dir.join("stuff")).unwrap();
        symlink(&secret, dir.join("stuff/tok")).unwrap();
        symlink("../stuff", dir.join("web/files")).unwrap();
        std::fs::write(
            dir.join("web/templates/leak.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leak\ndata:\n  tok: {{ .Files.Get \"files/tok\" | quote }}\n",
        )
        .unwrap();
    });
    let namespace = match cluster("hostile symlink chain").await {
        Some(client) => Some(TestNamespace::claim(&client, &product.namespace("feature-x")).await),
        None => None,
    };

    for command in ["render", "validate", "up"] {
        let mut cmd = product.sandbox(&[command, "--branch", "feature-x"]);
        let out = cmd.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(&marker), "{command} printed the file:\n{all}");
        let stderr = run_failing(&mut cmd);
        let expected = format!(
            "symlink `stuff/tok` in repository `frontend` ({}) at {} leads out of the \
             repository (to an absolute path): `stuff/tok` -> `{}`",
            product.path().join("repos/frontend.git").display(),
            product.sha("frontend", "feature-x"),
            secret.display()
        );
        assert!(stderr.contains(&expected), "{command}:\n{stderr}");
        assert!(
            stderr.contains("hint: make `stuff/tok` point to a file or directory inside"),
            "{command}:\n{stderr}"
        );
    }
    if let Some(namespace) = namespace {
        assert!(
            !namespace.exists().await,
            "a refused up created a namespace"
        );
    }
    let leaked = walk(&product.path().join("cache"))
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| String::from_utf8_lossy(&b).contains(&marker)));
    assert_eq!(leaked.count(), 0);
}

#[test]
fn symlinks_inside_the_commit_reach_helm_as_regular_files() {
    let product = Product::new("hostile-copy");
    product.commit("frontend", "feature-x", "web links inside", |dir| {
        std::fs::write(dir.join("web/real.txt"), "copied through two links").unwrap();
        symlink("b", dir.join("web/a")).unwrap();
        symlink("real.txt", dir.join("web/b")).unwrap();
        std::fs::create_dir(dir.join("shared")).unwrap();
        std::fs::write(dir.join("shared/conf.txt"), "from a linked directory").unwrap();
        symlink("../shared", dir.join("web/linked")).unwrap();
        std::fs::write(
            dir.join("web/templates/links.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: links\ndata:\n  a: {{ .Files.Get \"a\" | quote }}\n  conf: {{ .Files.Get \"linked/conf.txt\" | quote }}\n  listed: \"{{ range $path, $_ := .Files.Glob \"linked/*\" }}{{ $path }};{{ end }}\"\n",
        )
        .unwrap();
    });
    let mut render = product.sandbox(&["render", "--branch", "feature-x", "-o", "json"]);
    let plan: Value = serde_json::from_slice(&run_ok(&mut render).stdout).unwrap();
    let links = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["objects"].as_array().unwrap().clone())
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "links")
        .expect("the links ConfigMap is rendered");
    assert_eq!(links["data"]["a"], "copied through two links");
    assert_eq!(links["data"]["conf"], "from a linked directory");
    assert_eq!(links["data"]["listed"], "linked/conf.txt;");

    // What helm was given: the exported tree, with no symlink left in it (nor anywhere in
    // the checkout cache, the layout of older versions included).
    let tree = walk(&product.path().join("cache/git"));
    let web_a: Vec<&PathBuf> = tree.iter().filter(|p| p.ends_with("web/a")).collect();
    assert_eq!(web_a.len(), 1, "{tree:?}");
    for path in &tree {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert!(!meta.file_type().is_symlink(), "{}", path.display());
    }
    assert!(tree.iter().any(|p| p.ends_with("web/linked/conf.txt")));
}

/// 130 paths of one 4 MiB blob: about 10 KB in git, 520 MiB on disk, over the default
/// per-repository cap of 512 MiB.
fn commit_blob_bomb(product: &Product) -> String {
    let repo = git2::Repository::open_bare(product.path().join("repos/frontend.git")).unwrap();
    let blob = repo.blob(&vec![b'x'; 4 << 20]).unwrap();
    let parent = repo
        .find_reference("refs/heads/feature-x")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut update = git2::build::TreeUpdateBuilder::new();
    for i in 0..130 {
        update.upsert(format!("bomb/{i:03}.bin"), blob, git2::FileMode::Blob);
    }
    let tree = update
        .create_updated(&repo, &parent.tree().unwrap())
        .unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let sig = git2::Signature::now("e2e", "e2e@sandbox.invalid").unwrap();
    let sha = repo
        .commit(
            Some("refs/heads/feature-x"),
            &sig,
            &sig,
            "a blob bomb",
            &tree,
            &[&parent],
        )
        .unwrap();
    sha.to_string()
}

#[tokio::test]
async fn a_blob_repeated_under_many_paths_is_refused_with_the_cap_and_leaves_no_tree() {
    let product = Product::new("hostile-bomb");
    let sha = commit_blob_bomb(&product);
    let namespace = match cluster("hostile blob bomb").await {
        Some(client) => Some(TestNamespace::claim(&client, &product.namespace("feature-x")).await),
        None => None,
    };
    for command in ["render", "up"] {
        let stderr = run_failing(&mut product.sandbox(&[command, "--branch", "feature-x"]));
        let expected = format!(
            "repository `frontend` ({}) at {sha} would write more than 512 MiB to the cache \
             (the per-repository cap `repo_files.max_tree_size`), counting every copy of a \
             file: 516 MiB reached at `bomb/128.bin`",
            product.path().join("repos/frontend.git").display(),
        );
        assert!(stderr.contains(&expected), "{command}:\n{stderr}");
        assert!(
            stderr.contains("raise `repo_files.max_tree_size` in sandbox.yaml"),
            "{command}:\n{stderr}"
        );
    }
    if let Some(namespace) = namespace {
        assert!(
            !namespace.exists().await,
            "a refused up created a namespace"
        );
    }
    let written: Vec<PathBuf> = walk(&cached_trees(&product))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&sha) || p.ends_with("bomb"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

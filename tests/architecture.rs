//! The module graph of `src/`, read from the sources: arrows only point down. The pipeline's
//! stages import only earlier stages and the foundations, nothing imports the command layer or
//! `cli`, and there is no import cycle between modules. (README: "Architecture".)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module, bottom to top: a module may import only modules of its own layer or below.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("redact", 0),
    ("logging", 0),
    ("net", 0),
    ("kube", 1),
    ("object", 1),
    ("outage", 0),
    ("progress", 1),
    ("program", 0),
    ("yaml", 0),
    ("table", 0),
    ("record", 2),
    ("lock", 3),
    ("access", 3),
    // The pipeline's stages, in the order data flows through them.
    ("pipeline::config", 10),
    ("pipeline::checkout", 11),
    ("pipeline::sops", 12),
    ("pipeline::values", 13),
    ("pipeline::images", 14),
    ("pipeline::render", 15),
    ("pipeline::chart", 15),
    ("pipeline::plan", 16),
    ("pipeline::inventory", 17),
    ("pipeline::wait", 17),
    ("pipeline::apply", 18),
    ("pipeline::smoke", 19),
    ("pipeline::handover", 20),
    // The connector that joins them (settings, context, prepare, up, rollback, down).
    ("pipeline", 21),
    ("diff", 30),
    ("inspect", 30),
    ("reap", 30),
    ("serve", 40),
    ("cli", 50),
    ("app", 51),
    // Tests of every parser at once (cfg(test) only).
    ("properties", 60),
];

const STAGES: &[&str] = &[
    "config",
    "checkout",
    "sops",
    "values",
    "images",
    "render",
    "chart",
    "plan",
    "inventory",
    "wait",
    "apply",
    "smoke",
    "handover",
];

/// The module a file belongs to: a stage for the pipeline's stage files, else the top-level one.
fn module_of(file: &Path, src: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    match parts.as_slice() {
        [p, stage, ..] if p == "pipeline" && STAGES.contains(&stage.as_str()) => {
            format!("pipeline::{stage}")
        }
        [first, ..] => first.clone(),
        [] => unreachable!(),
    }
}

/// The modules a path after `crate::` names: `pipeline::plan::Plan` → pipeline::plan,
/// `pipeline::{apply, Settings}` → pipeline::apply and pipeline.
fn modules_named(path: &str) -> Vec<String> {
    if let Some(list) = path.strip_prefix('{') {
        return list
            .split(['}', ','])
            .map(|n| n.trim().split("::").next().unwrap_or_default().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
    }
    let mut parts = path.splitn(2, "::");
    let first = parts.next().unwrap_or_default().to_owned();
    let rest = parts.next().unwrap_or_default();
    if first != "pipeline" {
        return vec![first];
    }
    let names: Vec<&str> = match rest.strip_prefix('{') {
        Some(list) => list
            .split(['}', ','])
            .map(|n| n.trim().split("::").next().unwrap_or_default())
            .collect(),
        None => vec![rest.split("::").next().unwrap_or_default()],
    };
    names
        .into_iter()
        .map(|n| {
            let n = n
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
                .unwrap_or_default();
            if STAGES.contains(&n) {
                format!("pipeline::{n}")
            } else {
                "pipeline".to_owned()
            }
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// module → the modules it names through `crate::` paths.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let from = module_of(&file, &src);
        if from == "main" || from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let path: String = text[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || "_:{}, ".contains(*c))
                .collect();
            let path = path.split([' ', ',']).next().unwrap_or_default();
            let path = if path.contains('{') {
                let end = text[i..].find('}').map_or(text.len(), |e| i + e + 1);
                text[i + "crate::".len()..end].to_owned()
            } else {
                path.to_owned()
            };
            for to in modules_named(&path) {
                if to != from && !to.is_empty() {
                    edges.insert(to);
                }
            }
        }
    }
    graph
}

fn layer(module: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .unwrap_or_else(|| panic!("module `{module}` is not in LAYERS (tests/architecture.rs)"))
        .1
}

#[test]
fn arrows_only_point_down() {
    let graph = module_graph();
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if layer(to) > layer(from) {
                wrong.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that point up: {wrong:#?}");
}

#[test]
fn no_module_imports_the_command_line() {
    let graph = module_graph();
    for (from, tos) in &graph {
        if from != "app" {
            assert!(!tos.contains("cli"), "{from} imports cli");
            assert!(!tos.contains("app"), "{from} imports app");
        }
    }
}

#[test]
fn there_is_no_import_cycle() {
    let graph = module_graph();
    // Depth-first search; a node met again while on the stack closes a cycle.
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|n| *n == node) {
            panic!("import cycle: {} → {node}", stack[at..].join(" → "));
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done);
        }
        stack.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}

/// Not a check: prints the graph, for the README and for reviewers (`cargo test --test
/// architecture -- --nocapture`).
#[test]
fn print_the_module_graph() {
    for (from, tos) in module_graph() {
        let tos: Vec<String> = tos.into_iter().collect();
        println!("{from} → {}", tos.join(", "));
    }
}

/// Functions stay short enough to read in one screen: none over 80 lines outside tests (a
/// function's lines from its `fn` line to its closing brace, as rustfmt lays them out).
#[test]
fn no_function_is_longer_than_80_lines() {
    const LIMIT: usize = 80;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name == "tests.rs" || name == "testing.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (start, line) in lines.iter().enumerate() {
            // A file's unit test module sits at its end; a cfg(test) item elsewhere is no end.
            let test_module = lines.get(start + 1).is_some_and(|l| l.starts_with("mod "));
            if line.starts_with("#[cfg(test)]") && test_module {
                break;
            }
            let code = line.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "async fn ",
            ]
            .iter()
            .chain(&[
                "pub async fn ",
                "pub(crate) async fn ",
                "pub(super) async fn ",
            ])
            .any(|p| code.starts_with(p));
            if !is_fn || code.ends_with(';') {
                continue;
            }
            let indent = line.len() - code.len();
            let end = lines[start + 1..]
                .iter()
                .position(|l| {
                    l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
                })
                .map_or(lines.len(), |e| start + 1 + e);
            let length = end - start + 1;
            if length > LIMIT {
                let at = file.strip_prefix(&src).unwrap().display();
                long.push(format!("{at}:{}: {length} lines", start + 1));
            }
        }
    }
    assert!(long.is_empty(), "functions over {LIMIT} lines: {long:#?}");
}

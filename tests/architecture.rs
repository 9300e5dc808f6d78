//! The module graph of `src/`, read from the sources: arrows only point down. The layers, top
//! to bottom:
//!
//! | layer | modules |
//! |---|---|
//! | command line | `app` (flags → requests, reports → stdout), `cli` (the flags) |
//! | service | `serve` (webhooks → the same operations) |
//! | operations | `ops::up`, `ops::down`, … one per user-facing operation |
//! | connector | `pipeline` (settings, render context, `prepare`: stages 2–5 for a target) |
//! | stages | `pipeline::config` → `checkout` → `sops` → `values` → … → `handover` |
//! | foundations | `kube`, `record`, `lock`, `progress`, `redact`, `error`, … |
//!
//! A module imports only its own layer and those below; a stage only earlier stages; nothing
//! below the command line imports it; and no two modules import each other, even through
//! others. Files stay readable: no function over 80 lines, no file over 1,000 lines before its
//! tests. (README: "Architecture".)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FOUNDATIONS: u32 = 0;
const STAGES: u32 = 10;
const CONNECTOR: u32 = 30;
const OPERATIONS: u32 = 40;
const SERVICE: u32 = 50;
const COMMAND_LINE: u32 = 60;

/// The layer a rank belongs to, for messages.
fn layer_name(rank: u32) -> &'static str {
    match rank {
        r if r >= COMMAND_LINE => "command line",
        r if r >= SERVICE => "service",
        r if r >= OPERATIONS => "operations",
        r if r >= CONNECTOR => "connector",
        r if r >= STAGES => "stages",
        _ => "foundations",
    }
}

/// Every module and its rank, bottom to top: a module may import only modules of its own rank
/// or below. Within the foundations and the stages the ranks order them further (a stage
/// imports only the stages before it).
const LAYERS: &[(&str, u32)] = &[
    ("error", FOUNDATIONS),
    ("redact", FOUNDATIONS),
    ("logging", FOUNDATIONS),
    ("outage", FOUNDATIONS),
    ("program", FOUNDATIONS),
    ("yaml", FOUNDATIONS),
    ("table", FOUNDATIONS),
    ("text", FOUNDATIONS),
    ("net", FOUNDATIONS),
    ("kube", FOUNDATIONS + 1),
    ("object", FOUNDATIONS + 1),
    ("progress", FOUNDATIONS + 1),
    ("record", FOUNDATIONS + 2),
    ("lock", FOUNDATIONS + 3),
    ("access", FOUNDATIONS + 3),
    // The pipeline's stages, in the order data flows through them.
    ("pipeline::config", STAGES),
    ("pipeline::checkout", STAGES + 1),
    ("pipeline::sops", STAGES + 2),
    ("pipeline::values", STAGES + 3),
    ("pipeline::images", STAGES + 4),
    ("pipeline::render", STAGES + 5),
    ("pipeline::chart", STAGES + 5),
    ("pipeline::plan", STAGES + 6),
    ("pipeline::inventory", STAGES + 7),
    ("pipeline::wait", STAGES + 7),
    ("pipeline::apply", STAGES + 8),
    ("pipeline::smoke", STAGES + 9),
    ("pipeline::handover", STAGES + 10),
    // The connector that joins them (settings, context, prepare).
    ("pipeline", CONNECTOR),
    // One module per operation; they may use each other (`up` deletes as `down` does), never in
    // a cycle.
    ("ops", OPERATIONS),
    ("ops::cache", OPERATIONS),
    ("ops::diff", OPERATIONS),
    ("ops::down", OPERATIONS),
    ("ops::extend", OPERATIONS),
    ("ops::images", OPERATIONS),
    ("ops::inspect", OPERATIONS),
    ("ops::reap", OPERATIONS),
    ("ops::render", OPERATIONS),
    ("ops::sleep", OPERATIONS),
    ("ops::up", OPERATIONS),
    ("ops::validate", OPERATIONS),
    ("serve", SERVICE),
    ("cli", COMMAND_LINE),
    ("app", COMMAND_LINE + 1),
    // Tests of every parser at once (cfg(test) only).
    ("properties", COMMAND_LINE + 10),
];

/// The folders whose subfolders and files are modules of their own in the graph.
const SPLIT: &[&str] = &["pipeline", "ops"];

/// The module a file belongs to: `pipeline::STAGE` or `ops::OPERATION` for their files (the
/// folder's own `mod.rs` is `pipeline` or `ops`), else the top-level module.
fn module_of(file: &Path, src: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    match parts.as_slice() {
        [p, inner, ..] if SPLIT.contains(&p.as_str()) && is_module(&format!("{p}::{inner}")) => {
            format!("{p}::{inner}")
        }
        [first, ..] => first.clone(),
        [] => unreachable!(),
    }
}

fn is_module(name: &str) -> bool {
    LAYERS.iter().any(|(m, _)| *m == name)
}

/// The modules a path after `crate::` names: `pipeline::plan::Plan` → pipeline::plan,
/// `pipeline::{apply, Settings}` → pipeline::apply and pipeline, `ops::{self, down}` → ops and
/// ops::down.
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
    if !SPLIT.contains(&first.as_str()) {
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
            let inner = format!("{first}::{n}");
            if is_module(&inner) {
                inner
            } else {
                first.clone()
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
                wrong.push(format!(
                    "{from} ({}) → {to} ({})",
                    layer_name(layer(from)),
                    layer_name(layer(to))
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that point up: {wrong:#?}");
}

/// The layers the README's architecture table names are the ones this test enforces.
#[test]
fn every_layer_has_modules_and_the_readme_names_them() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for rank in [
        FOUNDATIONS,
        STAGES,
        CONNECTOR,
        OPERATIONS,
        SERVICE,
        COMMAND_LINE,
    ] {
        let name = layer_name(rank);
        assert!(
            LAYERS.iter().any(|(_, r)| layer_name(*r) == name),
            "layer {name} has no module"
        );
        assert!(
            readme.to_lowercase().contains(name),
            "README.md's architecture section does not name the layer `{name}`"
        );
    }
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
    let test_only = test_module_files(&files);
    let mut long = Vec::new();
    for file in files {
        if test_only.contains(&file) {
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

/// No file is over 1,000 lines before its unit tests: past that, it holds more than one concept.
#[test]
fn no_file_is_longer_than_1000_lines_before_its_tests() {
    const LIMIT: usize = 1000;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let test_only = test_module_files(&files);
    let mut long = Vec::new();
    for file in files {
        if test_only.contains(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let code = lines
            .windows(2)
            .position(|w| w[0].starts_with("#[cfg(test)]") && w[1].starts_with("mod tests"))
            .unwrap_or(lines.len());
        if code > LIMIT {
            let at = file.strip_prefix(&src).unwrap().display();
            long.push(format!("{at}: {code} lines before its tests"));
        }
    }
    assert!(long.is_empty(), "files over {LIMIT} lines: {long:#?}");
}

/// The files of modules compiled for tests only (`#[cfg(test)] mod tests;`, `mod fixtures;`).
fn test_module_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut test_only = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            let declared = pair[1]
                .strip_prefix("mod ")
                .or_else(|| pair[1].strip_prefix("pub(crate) mod "))
                .and_then(|rest| rest.strip_suffix(';'));
            let (true, Some(name)) = (pair[0] == "#[cfg(test)]", declared) else {
                continue;
            };
            // A `mod.rs`, `lib.rs` or `main.rs` holds its children beside it; `x.rs` in `x/`.
            let stem = file.file_stem().unwrap().to_string_lossy();
            let dir = match stem.as_ref() {
                "mod" | "lib" | "main" => file.parent().unwrap().to_owned(),
                _ => file.with_extension(""),
            };
            test_only.insert(dir.join(format!("{name}.rs")));
        }
    }
    test_only
}

/// A module that outgrows one file becomes a folder (`x/mod.rs`), never `x.rs` beside an `x/`
/// of its children: one place to look for a module (README: "Contributing").
#[test]
fn a_module_is_a_file_or_a_folder_not_both() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let both: Vec<String> = files
        .iter()
        .filter(|f| f.with_extension("").is_dir())
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert!(both.is_empty(), "x.rs beside a folder x/: {both:?}");
}

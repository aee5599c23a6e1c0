//! The workspace's layout rules (ARCHITECTURE.md): the files of each crate import one way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `src` folder of the workspace's crates and experiments.
fn source_folders() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut out = Vec::new();
    for group in ["crates", "experiments"] {
        for entry in std::fs::read_dir(root.join(group)).unwrap().flatten() {
            let src = entry.path().join("src");
            if src.is_dir() {
                out.push(src);
            }
        }
    }
    out.sort();
    out
}

/// The `.rs` files under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The names that follow `prefix` in `text` (`crate::checkpoint::…` gives `checkpoint`), with
/// `crate::{a, b}` groups.
fn referenced(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        } else {
            out.insert(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out
}

/// The module graph of one crate: top-level module → the top-level modules it names (the crate
/// root, which re-exports, and tests are left out).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<(PathBuf, bool)>> = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs")
            || parts.iter().any(|p| p == "tests" || p == "bin")
        {
            continue;
        }
        let module = parts[0].trim_end_matches(".rs").to_string();
        files
            .entry(module)
            .or_default()
            .push((file, parts.len() == 1));
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, list) in &files {
        let mut edges = BTreeSet::new();
        for (file, top) in list {
            let text = std::fs::read_to_string(file).unwrap();
            // Unit tests and comments do not make the layout.
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            let mut refs = referenced(&code, "crate::");
            if *top {
                refs.extend(referenced(&code, "super::"));
            }
            edges.extend(
                refs.into_iter()
                    .filter(|r| names.contains(r) && r != module),
            );
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

/// A circle through `start`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                return Some(path.clone());
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn the_files_of_every_crate_import_one_way() {
    let mut circles = Vec::new();
    for src in source_folders() {
        let graph = module_graph(&src);
        for module in graph.keys() {
            if let Some(c) = circle(&graph, module) {
                circles.push(format!(
                    "{}: {}",
                    src.parent().unwrap().display(),
                    c.join(" → ")
                ));
                break;
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other in a circle:\n{}",
        circles.join("\n")
    );
}

#[test]
fn a_circle_is_found() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        circle(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );
    graph.insert("c".to_string(), BTreeSet::new());
    assert_eq!(circle(&graph, "a"), None);
    assert_eq!(
        referenced(
            "use crate::{run::X, output};\nlet y = crate::stats::fit;",
            "crate::"
        ),
        BTreeSet::from(["run".into(), "output".into(), "stats".into()])
    );
}

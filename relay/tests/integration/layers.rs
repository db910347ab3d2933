//! The relay's modules keep their layers: each imports only its own layer and those below
//! (bottom, store, accounts, work, http), no modules import each other in a loop, and
//! ARCHITECTURE.md's module table names every module. Read from the source, outside tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first: a module's layer is its top-level directory; files at the top of
/// src/ are the bottom layer.
const LAYERS: [&str; 5] = ["", "store", "accounts", "work", "http"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module of the library: its path (`work::units`) and its source file.
fn modules() -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().unwrap() != "bin" {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src()).unwrap().with_extension("");
            let name = relative.to_string_lossy().replace('/', "::");
            let name = name.trim_end_matches("::mod").to_string();
            if name != "lib" && name != "main" {
                found.insert(name, path);
            }
        }
    }
    found
}

/// The modules `source` refers to with `crate::` paths, outside `#[cfg(test)]` code (the
/// longest module path each reference names).
fn imports(source: &str, modules: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap();
    let code: String = code
        .lines()
        .map(|line| line.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if rest.starts_with('{') {
            let group = &rest[1..rest.find('}').unwrap()];
            for item in group.split(',') {
                let item = item.trim().split("::").next().unwrap();
                if modules.contains_key(item) {
                    found.insert(item.to_string());
                }
            }
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let parts: Vec<&str> = path.split("::").collect();
        if let Some(module) = (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|candidate| modules.contains_key(candidate))
        {
            found.insert(module);
        }
    }
    found
}

fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().position(|layer| *layer == top).unwrap_or(0)
}

/// Each module's imports of other modules (not of its own parents or children).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    modules
        .iter()
        .map(|(name, path)| {
            let source = std::fs::read_to_string(path).unwrap();
            let imported = imports(&source, &modules)
                .into_iter()
                .filter(|other| {
                    other != name
                        && !name.starts_with(&format!("{other}::"))
                        && !other.starts_with(&format!("{name}::"))
                })
                .collect();
            (name.clone(), imported)
        })
        .collect()
}

#[test]
fn each_module_imports_only_its_layer_and_those_below() {
    let graph = graph();
    assert!(graph.contains_key("work::settlement"), "{graph:?}");
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(module, imported)| {
            imported
                .iter()
                .filter(|other| layer_of(other) > layer_of(module))
                .map(move |other| format!("{module} -> {other}"))
        })
        .collect();
    assert!(upward.is_empty(), "imports of a layer above: {upward:#?}");
}

#[test]
fn no_modules_import_each_other_in_a_loop() {
    let graph = graph();
    // Depth-first search; a module met again while it is on the path closes a loop.
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(start) = path.iter().position(|m| *m == module) {
            panic!("an import loop: {} -> {module}", path[start..].join(" -> "));
        }
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for next in &graph[module] {
            visit(next, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn architecture_md_names_every_module() {
    let architecture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"))
            .unwrap();
    let missing: Vec<String> = modules()
        .values()
        .map(|path| {
            let relative = path.strip_prefix(src()).unwrap();
            format!("`{}`", relative.to_string_lossy())
        })
        .filter(|name| !architecture.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's module table lacks {missing:?}"
    );
}

//! The code's layout, checked on its text: the modules import one another in one direction
//! only (no cycle, and no import of a higher layer: [`LAYERS`]), and only the command line
//! (`main.rs`, `cli.rs`) knows clap.
use crate::common::root;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every source file of `src/` as its module path (`train::plan`; `main` and `cli` for the
/// binary), with its text minus comments and unit tests.
fn modules() -> BTreeMap<String, String> {
    let mut modules = BTreeMap::new();
    let mut folders = vec![root().join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = module_name(&path.strip_prefix(root().join("src")).unwrap().with_extension(""));
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit tests and the helpers only they use may import anything.
                let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
                let code: Vec<&str> = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
                if name != "testing" && name != "lib" {
                    modules.insert(name, code.join("\n"));
                }
            }
        }
    }
    modules
}

/// `train/mod` -> `train`, `train/plan` -> `train::plan`.
fn module_name(relative: &Path) -> String {
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().to_string()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| *p != "mod").collect();
    parts.join("::")
}

/// The modules `code` (of module `from`) names through `crate::`, `resnext::`, `super::` or
/// the name of one of its own submodules.
fn imports(from: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = from.rsplit_once("::").map_or("", |(parent, _)| parent).to_string();
    let mut prefixes = vec![("crate::".to_string(), String::new()), ("resnext::".into(), String::new())];
    prefixes.push(("super::".into(), parent));
    for child in known.iter().filter_map(|m| m.strip_prefix(&format!("{from}::"))) {
        prefixes.push((format!("{child}::"), format!("{from}::{child}")));
    }
    let mut found = BTreeSet::new();
    for (prefix, base) in &prefixes {
        let (prefix, base) = (prefix.as_str(), base.clone());
        for (at, _) in code.match_indices(prefix) {
            let preceded_by_path = code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded_by_path {
                continue;
            }
            for path in paths(&code[at + prefix.len()..]) {
                let full = if base.is_empty() { path } else { format!("{base}::{path}") };
                // The longest prefix of the path that is a module.
                let parts: Vec<&str> = full.split("::").collect();
                if let Some(module) = (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| known.contains(m))
                {
                    if module != from {
                        found.insert(module);
                    }
                }
            }
        }
    }
    found
}

/// The paths at the start of `rest`: `a::b` or each of `{a, b::{c, d as e}}`.
fn paths(rest: &str) -> Vec<String> {
    let is_path = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    if let Some(group) = rest.strip_prefix('{') {
        // The group's items, split at its own commas (not a nested group's), up to its closing brace.
        let (mut depth, mut start, mut items) = (0, 0, Vec::new());
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items.iter().map(|item| item.trim()).filter(|item| !item.is_empty()).flat_map(paths).collect();
    }
    let end = rest.find(|c: char| !is_path(c)).unwrap_or(rest.len());
    let path = rest[..end].trim_end_matches(':');
    match rest[end..].starts_with('{') {
        // `a::b::{c, d}`: the group's paths under `a::b`.
        true => paths(&rest[end..]).into_iter().map(|p| format!("{path}::{p}")).collect(),
        false => vec![path.to_string()],
    }
}

#[test]
fn imports_are_read_from_nested_groups_and_renames() {
    assert_eq!(paths("{a::{b, c::{d}}, e as f, g};"), ["a::b", "a::c::d", "e", "g"]);
    assert_eq!(paths("a::b::{c, d};"), ["a::b::c", "a::b::d"]);
    assert_eq!(paths("a::b;"), ["a::b"]);
}

/// A cycle of `graph` (its modules in import order, the first repeated at the end), if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            return Some([&path[start..], &[module.to_string()]].concat());
        }
        if !done.insert(module.to_string()) {
            return None;
        }
        path.push(module.to_string());
        let cycle = graph[module].iter().find_map(|next| visit(next, graph, path, done));
        path.pop();
        cycle
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|module| visit(module, graph, &mut vec![], &mut done))
}

#[test]
fn the_module_graph_has_no_cycle() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    assert!(known.contains("train::plan") && known.contains("cli"), "{known:?}");
    let graph: BTreeMap<String, BTreeSet<String>> =
        modules.iter().map(|(name, code)| (name.clone(), imports(name, code, &known))).collect();
    assert!(graph["train"].contains("train::plan") && graph["cli"].contains("train"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

/// The layers, lowest first, by a module's first path segment (its folder, or its file at the
/// top of `src/`): a module imports modules of its own layer and those below, never above.
const LAYERS: [&[&str]; 10] = [
    &["atomic_file", "chart", "clock", "gpus", "host", "progress", "torch_ext"],
    &["data"],
    &["config"],
    &["compute"],
    &["model"],
    &["runs"],
    &["train"],
    &["study"],
    &["bench", "eval", "export", "info", "predict", "tensorboard"],
    &["cli", "main"],
];

fn layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().position(|layer| layer.contains(&top)).unwrap_or_else(|| panic!("{module} is in no layer of LAYERS"))
}

#[test]
fn no_module_imports_a_higher_layer() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let upward: Vec<String> = modules
        .iter()
        .flat_map(|(name, code)| imports(name, code, &known).into_iter().map(move |to| (name.clone(), to)))
        .filter(|(from, to)| layer(to) > layer(from))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(upward.is_empty(), "imports up the layers: {upward:?}");
    // Every top-level module is in a layer.
    for module in &known {
        layer(module);
    }
}

#[test]
fn the_cycle_check_reads_imports_and_finds_a_cycle_when_there_is_one() {
    let known: BTreeSet<String> = ["a", "b", "b::c"].map(String::from).into();
    assert_eq!(imports("a", "use crate::b::c::Thing;", &known), ["b::c".to_string()].into());
    assert_eq!(imports("b::c", "use super::{x, y};\nuse crate::a;", &known), ["a", "b"].map(String::from).into());
    assert_eq!(imports("a", "use resnext::{b, b::c::{d, e}};", &known), ["b", "b::c"].map(String::from).into());
    assert_eq!(imports("b", "mod c;\nuse c::Thing;", &known), ["b::c".to_string()].into());
    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> =
            known.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
        for (from, to) in edges {
            graph.get_mut(*from).unwrap().insert(to.to_string());
        }
        graph
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "b::c")])), None);
    let cycle = find_cycle(&graph(&[("a", "b"), ("b", "b::c"), ("b::c", "a")])).unwrap();
    assert_eq!(cycle, ["a", "b", "b::c", "a"]);
}

#[test]
fn only_the_command_line_knows_clap() {
    let with_clap: Vec<String> =
        modules().into_iter().filter(|(_, code)| code.contains("clap")).map(|(name, _)| name).collect();
    assert_eq!(with_clap, ["cli", "main"]);
}

//! The direction of dependencies inside the gateway, checked by `cargo test`
//! (ARCHITECTURE.md states it): each room of `crates/gateway/src` (a folder
//! or a top-level file) imports only rooms on a lower layer, and inside a
//! room no two files import each other, directly or in a circle.
//!
//! Imports are read as text: `crate::<room>` paths between rooms, and
//! `super::<file>` paths between the files of one folder. Comments and the
//! test modules at the end of a file (from its first `#[cfg(test)]`) are
//! left out: tests may reach anywhere.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use crate::util::project_root;

/// The gateway's rooms, bottom layer first. A room may import the rooms of
/// the layers before its own, never one of its own layer or a later one.
/// `lib.rs` and `main.rs` wire everything and stand above them all.
const GATEWAY_LAYERS: &[&[&str]] = &[
    &["backoff", "bus", "limits", "partition", "settings"],
    &["config_cache"],
    &["events"],
    &["http", "mqtt"],
    &["fuzzing", "testing", "websocket"],
];

/// Code of a file without comments and without its test modules.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow `prefix` in `code` (`crate::` → `mqtt`, ...).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .filter(|(at, _)| {
            // `super::crate::` is no path; `xcrate::` is another name.
            code[..*at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
        .map(|(at, _)| {
            code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A circle in `edges`, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

/// What breaks the direction: one line per import against it.
fn violations(src: &Path) -> Vec<String> {
    let layer_of: BTreeMap<&str, usize> = GATEWAY_LAYERS
        .iter()
        .enumerate()
        .flat_map(|(layer, rooms)| rooms.iter().map(move |room| (*room, layer)))
        .collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    // Per folder: file → the sibling files it imports.
    let mut siblings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(src).unwrap();
        let parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        let room = parts[0].clone();
        if room == "lib" || room == "main" {
            continue;
        }
        let shown = format!("crates/gateway/src/{}", relative.display());
        let Some(&layer) = layer_of.get(room.as_str()) else {
            found.push(format!(
                "{shown}: room `{room}` has no layer in GATEWAY_LAYERS"
            ));
            continue;
        };
        let code = code(&fs::read_to_string(file).unwrap());
        for other in names_after(&code, "crate::") {
            if other == room {
                continue;
            }
            match layer_of.get(other.as_str()) {
                Some(&other_layer) if other_layer < layer => {}
                Some(_) => found.push(format!(
                    "{shown}: `{room}` imports `{other}`, which is not on a lower layer"
                )),
                None => {}
            }
        }
        // `super::x` in a folder's file (not its mod.rs) names a sibling.
        if parts.len() == 2 && parts[1] != "mod" {
            let imports = names_after(&code, "super::")
                .into_iter()
                .filter(|name| src.join(&room).join(format!("{name}.rs")).is_file())
                .collect();
            siblings
                .entry(room.clone())
                .or_default()
                .insert(parts[1].clone(), imports);
        }
    }
    for (room, edges) in &siblings {
        if let Some(circle) = circle(edges) {
            found.push(format!(
                "crates/gateway/src/{room}/: files import each other in a circle: {}",
                circle.join(" -> ")
            ));
        }
    }
    found
}

#[test]
fn the_gateway_imports_only_downward() {
    let src = project_root().join("crates/gateway/src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "imports against the direction ARCHITECTURE.md states:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_direction_check_sees_what_it_should() {
    let code = code(
        "use crate::mqtt::x; // crate::http\nlet a = super::codec::f();\n#[cfg(test)]\nuse crate::lib;",
    );
    assert_eq!(
        names_after(&code, "crate::"),
        BTreeSet::from(["mqtt".to_owned()])
    );
    assert_eq!(
        names_after(&code, "super::"),
        BTreeSet::from(["codec".to_owned()])
    );
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        circle(&edges),
        Some(vec![
            "a".to_owned(),
            "b".to_owned(),
            "c".to_owned(),
            "a".to_owned()
        ])
    );
    let mut straight = edges.clone();
    straight.get_mut("c").unwrap().clear();
    assert_eq!(circle(&straight), None);
}

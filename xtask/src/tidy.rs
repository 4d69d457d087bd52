//! Tidy checks over the source tree: every Rust file starts with a `//!`
//! line saying what it holds, and no test hides behind `#[ignore]` or
//! `#[should_panic]`.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `crates/`, `xtask/` and `benches/`.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["crates", "xtask", "benches", "fuzz/fuzz_targets"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The problems found in one file's text.
pub(crate) fn problems(text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    if !text.trim_start().starts_with("//!") {
        found.push("does not start with a `//!` line saying what it holds");
    }
    // Split the needles so this file does not flag itself.
    if text.contains(concat!("#[", "ignore")) {
        found.push("has an ignored test");
    }
    if text.contains(concat!("#[", "should_panic")) {
        found.push("has a should-panic test (assert on a typed error instead)");
    }
    found
}

/// Runs the tidy checks over the tree.
pub(crate) fn check() -> Result<(), String> {
    let root = crate::verbs::workspace_root();
    let mut bad = Vec::new();
    for file in rust_files(&root) {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for p in problems(&text) {
            bad.push(format!("{}: {p}", file.strip_prefix(&root).unwrap_or(&file).display()));
        }
    }
    if bad.is_empty() {
        println!("tidy: ok");
        Ok(())
    } else {
        Err(format!("tidy:\n  {}", bad.join("\n  ")))
    }
}

#[cfg(test)]
mod tests {
    use super::problems;

    #[test]
    fn module_doc_is_required() {
        assert!(problems("//! Holds things.\nfn f() {}").is_empty());
        assert_eq!(problems("fn f() {}").len(), 1);
    }

    #[test]
    fn ignored_tests_are_flagged() {
        let text = concat!("//! x\n#[", "ignore]\nfn t() {}");
        assert_eq!(problems(text), ["has an ignored test"]);
    }

    #[test]
    fn the_tree_is_tidy() {
        assert_eq!(super::check(), Ok(()));
    }
}

//! Tidy checks over the source tree: every Rust file starts with a `//!`
//! line saying what it holds; no test is ignored or expected to panic; crate
//! roots that need no unsafe code forbid it; and no crate above silo-io
//! opens files or calls libc by itself (see docs/ARCHITECTURE.md).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `crates/`, `xtask/` and `benches/`.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["crates", "xtask", "benches", "fuzz/fuzz_targets"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
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

/// Crates that must not use `unsafe` at all.
const SAFE_CRATES: [&str; 5] = [
    "silo-format",
    "silo-core",
    "silo-engine",
    "silo-cli",
    "silo-raft",
];
/// Crates above `silo-io`, whose files go through it.
const ABOVE_IO: [&str; 4] = ["silo-core", "silo-engine", "silo-cli", "silo-raft"];

/// Whether `needle` occurs in `text` as a path of its own (not as the tail
/// of a longer name such as `SiloFile::open`).
fn mentions(text: &str, needle: &str) -> bool {
    text.match_indices(needle).any(|(at, _)| {
        text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// Architecture invariants for a file under `crates/<krate>/src/`: crate
/// roots of safe crates forbid unsafe code, and crates above `silo-io` do not
/// call libc or open files themselves.
pub(crate) fn crate_problems(krate: &str, file: &str, text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    let root = file == "lib.rs" || file == "main.rs";
    if root && SAFE_CRATES.contains(&krate) && !text.contains("#![forbid(unsafe_code)]") {
        found.push("crate root lacks #![forbid(unsafe_code)]");
    }
    let direct = ["libc::", "File::open", "File::create", "OpenOptions"];
    if ABOVE_IO.contains(&krate) && direct.iter().any(|n| mentions(text, n)) {
        found.push("opens files or calls libc directly: go through silo-io");
    }
    found
}

/// Runs the tidy checks over the tree.
pub(crate) fn check() -> Result<(), String> {
    let root = crate::verbs::workspace_root();
    let mut bad = Vec::new();
    for file in rust_files(&root) {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let rel = file.strip_prefix(&root).unwrap_or(&file);
        let mut found = problems(&text);
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if let [first, krate, src, .., name] = parts.as_slice()
            && first == "crates"
            && src == "src"
        {
            found.extend(crate_problems(krate, name, &text));
        }
        for p in found {
            bad.push(format!("{}: {p}", rel.display()));
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
    fn architecture_invariants_are_checked() {
        use super::crate_problems;
        let safe = "//! x\n#![forbid(unsafe_code)]";
        assert!(crate_problems("silo-core", "lib.rs", safe).is_empty());
        assert_eq!(crate_problems("silo-format", "lib.rs", "//! x").len(), 1);
        let opens = "let f = std::fs::File::open(p);";
        assert_eq!(crate_problems("silo-core", "data.rs", opens).len(), 1);
        assert!(crate_problems("silo-io", "file.rs", "libc::pwrite(..)").is_empty());
        assert!(crate_problems("silo-core", "data.rs", "SiloFile::open(p)").is_empty());
    }

    #[test]
    fn the_tree_is_tidy() {
        assert_eq!(super::check(), Ok(()));
    }
}

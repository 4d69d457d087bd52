//! The layering check: a silo crate may depend only on silo crates below it
//! (format < io < core < engine < cli | raft), read from `cargo metadata`.

use std::process::Command;

/// The layers, bottom first. A crate's index is its layer; crates in one
/// layer (`silo-cli` and `silo-raft`) may not depend on each other.
pub(crate) const LAYERS: [&[&str]; 5] = [
    &["silo-format"],
    &["silo-io"],
    &["silo-core"],
    &["silo-engine"],
    &["silo-cli", "silo-raft"],
];

/// The layer of a silo crate, or `None` for any other package.
fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&name))
}

/// Every (from, to) dependency edge that points sideways or up, from `(package, deps)` pairs.
pub(crate) fn violations<'a>(
    packages: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, deps) in packages {
        let Some(own) = layer(name) else { continue };
        for dep in deps {
            if let Some(theirs) = layer(dep)
                && theirs >= own
            {
                bad.push(format!("{name} -> {dep}"));
            }
        }
    }
    bad
}

/// Runs `cargo metadata` and fails naming each offending edge.
pub(crate) fn check() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(crate::verbs::workspace_root())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("cargo metadata has no packages array")?;
    let pairs = packages.iter().map(|p| {
        let name = p["name"].as_str().unwrap_or("");
        let deps = p["dependencies"]
            .as_array()
            .map(|ds| ds.iter().filter_map(|d| d["name"].as_str()).collect())
            .unwrap_or_default();
        (name, deps)
    });
    let bad = violations(pairs);
    if bad.is_empty() {
        let names: Vec<String> = LAYERS.iter().map(|l| l.join(" | ")).collect();
        println!("layering: ok ({})", names.join(" < "));
        Ok(())
    } else {
        Err(format!(
            "layering violated (a crate may depend only on crates below it): {}",
            bad.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::violations;

    #[test]
    fn downward_edges_pass() {
        let v = violations([
            ("silo-core", vec!["silo-io", "silo-format", "libc"]),
            ("silo-cli", vec!["silo-engine"]),
            ("silo-raft", vec!["silo-engine", "silo-core", "silo-io"]),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn upward_and_sideways_edges_are_named() {
        let v = violations([
            ("silo-io", vec!["silo-core"]),
            ("silo-format", vec!["silo-format"]),
            ("other", vec!["silo-cli"]),
            ("silo-raft", vec!["silo-cli"]),
            ("silo-engine", vec!["silo-raft"]),
        ]);
        assert_eq!(
            v,
            [
                "silo-io -> silo-core",
                "silo-format -> silo-format",
                "silo-raft -> silo-cli",
                "silo-engine -> silo-raft",
            ]
        );
    }
}

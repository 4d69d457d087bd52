//! The verbs of `cargo xtask`, one function each.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (the parent of this crate's directory).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Runs `cargo <args>` in the workspace root with `envs` set, failing with the command line.
pub(crate) fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("could not run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// fmt, clippy, tests, docs, layering, tidy: in that order, failing fast.
pub(crate) fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(
        &["test", "--workspace"],
        &[("SILO_CRASH_ITERATIONS", "20"), ("PROPTEST_CASES", "64")],
    )?;
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    crate::layering::check()?;
    crate::tidy::check()?;
    println!("xtask ci: all checks passed");
    Ok(())
}

/// `cargo xtask fuzz <target> [--seconds N]`: runs one cargo-fuzz target on nightly.
pub(crate) fn fuzz(args: &[String]) -> Result<(), String> {
    let (target, rest) = args
        .split_first()
        .ok_or("fuzz needs a target: frame_reader or document_decoder")?;
    let seconds = flag_value(rest, "--seconds")?.unwrap_or(60);
    let max_time = format!("-max_total_time={seconds}");
    // `$CARGO` is the toolchain's own cargo, which does not understand
    // `+nightly`: go through rustup.
    let status = Command::new("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "fuzz",
            "run",
            "--fuzz-dir",
            "fuzz",
        ])
        .args([target.as_str(), "--", &max_time])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("could not run rustup (cargo fuzz needs nightly): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo fuzz run {target} failed ({status})"))
    }
}

/// `cargo xtask crash [--iterations N] [--kill | --power-cut]`: the crash
/// tests in release. `--kill`: SIGKILL a child process running a workload
/// (the page cache survives). `--power-cut`: cut the power at a random sync
/// of a workload with compactions and open the image that keeps only what
/// was synced. Both by default; N runs each (200 by default).
pub(crate) fn crash(args: &[String]) -> Result<(), String> {
    let iterations = flag_value(args, "--iterations")?.unwrap_or(200).to_string();
    let kill = !args.iter().any(|a| a == "--power-cut");
    let power_cut = !args.iter().any(|a| a == "--kill");
    let test = |filter: &str| {
        cargo(
            &[
                "test",
                "--release",
                "-p",
                "silo-core",
                "--test",
                "it",
                filter,
                "--",
                "--nocapture",
            ],
            &[
                ("SILO_CRASH_ITERATIONS", &iterations),
                ("SILO_POWER_CUT_ITERATIONS", &iterations),
            ],
        )
    };
    if kill {
        test("crash::")?;
    }
    if power_cut {
        test("power_cut::random")?;
    }
    Ok(())
}

/// `cargo xtask bench [args]`: every criterion bench, args passed through.
pub(crate) fn bench(args: &[String]) -> Result<(), String> {
    let mut all = vec!["bench", "--workspace"];
    if !args.is_empty() {
        all.push("--");
        all.extend(args.iter().map(String::as_str));
    }
    cargo(&all, &[])
}

/// The number after `flag` in `args`, if the flag is there.
fn flag_value(args: &[String], flag: &str) -> Result<Option<u64>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => {
            let raw = args
                .get(i + 1)
                .ok_or_else(|| format!("{flag} needs a number"))?;
            raw.parse()
                .map(Some)
                .map_err(|_| format!("{flag} needs a whole number, got `{raw}`"))
        }
    }
}

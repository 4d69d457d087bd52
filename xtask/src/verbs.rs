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

/// fmt, clippy, tests, docs (every crate but silo-benches, whose peers
/// build only for `cargo xtask bench`), layering, tidy: in that order,
/// failing fast.
pub(crate) fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--check"], &[])?;
    // The peers (silo-benches) build only for `cargo xtask bench`.
    let all = ["--workspace", "--exclude", "silo-benches"];
    cargo(
        &[
            &["clippy"],
            &all[..],
            &["--all-targets", "--", "-D", "warnings"],
        ]
        .concat(),
        &[],
    )?;
    cargo(
        &[&["test"], &all[..]].concat(),
        &[("SILO_CRASH_ITERATIONS", "20"), ("PROPTEST_CASES", "64")],
    )?;
    cargo(
        &[&["doc"], &all[..], &["--no-deps"]].concat(),
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    crate::layering::check()?;
    crate::tidy::check()?;
    println!("xtask ci: all checks passed");
    Ok(())
}

/// `cargo xtask faults`: the fault matrix of every layer (each write, sync,
/// rename, allocation, truncation, creation and removal of a workload failed
/// or torn in turn, then a reopen checked against the acknowledged writes),
/// a full disk, and exhausted descriptors and address space.
pub(crate) fn faults(_args: &[String]) -> Result<(), String> {
    let runs: [(&str, &[&str]); 2] = [
        ("silo-core", &["faults::"]),
        ("silo-engine", &["faults::", "full_disk::", "limits::"]),
    ];
    for (package, filters) in runs {
        let mut args = vec!["test", "--release", "-p", package, "--test", "it", "--"];
        args.extend_from_slice(filters);
        args.push("--nocapture");
        cargo(&args, &[])?;
    }
    println!("xtask faults: every case recovered the acknowledged writes");
    Ok(())
}

/// The cargo-fuzz targets in `fuzz/fuzz_targets`.
pub(crate) const FUZZ_TARGETS: [&str; 6] = [
    "frame_reader",
    "document_decoder",
    "bitmap_decoder",
    "query_parser",
    "directory_image",
    "workload",
];

/// `cargo xtask fuzz <target|all> [--seconds N]`: runs cargo-fuzz targets on
/// nightly (installing cargo-fuzz if missing), N seconds each (default 60),
/// under AddressSanitizer, starting from `fuzz/seeds/<target>` where there
/// are seeds. A crash leaves its input in `fuzz/artifacts/<target>`.
pub(crate) fn fuzz(args: &[String]) -> Result<(), String> {
    let usage = || format!("fuzz needs a target: all, {}", FUZZ_TARGETS.join(", "));
    let (target, rest) = args.split_first().ok_or_else(usage)?;
    let targets: Vec<&str> = match target.as_str() {
        "all" => FUZZ_TARGETS.to_vec(),
        t if FUZZ_TARGETS.contains(&t) => vec![t],
        _ => return Err(usage()),
    };
    let seconds = flag_value(rest, "--seconds")?.unwrap_or(60);
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        nightly_cargo(&["install", "cargo-fuzz", "--locked"], &[])?;
    }
    let max_time = format!("-max_total_time={seconds}");
    let root = workspace_root();
    for target in targets {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let corpus = corpus.to_string_lossy().into_owned();
        let seeds = root.join("fuzz/seeds").join(target);
        let mut args = vec!["fuzz", "run", "--fuzz-dir", "fuzz", target, &corpus];
        let seeds = seeds.to_string_lossy().into_owned();
        if root.join("fuzz/seeds").join(target).is_dir() {
            args.push(&seeds);
        }
        // Each input gets 10 s and 2 GiB; one that takes more is a finding.
        args.extend(["--", &max_time, "-timeout=10", "-rss_limit_mb=2048"]);
        nightly_cargo(&args, &[])?;
    }
    Ok(())
}

/// `cargo xtask crash [--iterations N] [--kill | --power-cut]`: the crash
/// tests in release. `--kill`: SIGKILL a child process running a workload
/// (the page cache survives). `--power-cut`: cut the power at a random sync
/// of a workload with compactions and open the image that keeps only what
/// was synced. Both by default; N runs each (500 by default: about 4 minutes for every layer here).
pub(crate) fn crash(args: &[String]) -> Result<(), String> {
    let iterations = flag_value(args, "--iterations")?.unwrap_or(500).to_string();
    let kill = !args.iter().any(|a| a == "--power-cut");
    let power_cut = !args.iter().any(|a| a == "--kill");
    let layer = string_flag(args, "--layer").unwrap_or_else(|| "all".to_owned());
    // (package, SIGKILL test filter, power-cut test filter)
    let core = ("silo-core", "crash::", Some("power_cut::random"));
    let engine = ("silo-engine", "crash::", Some("power_cut::random"));
    let index = ("silo-engine", "index_sigkill::", None);
    let runs: &[(&str, &str, Option<&str>)] = match layer.as_str() {
        "core" => &[core],
        "engine" => &[engine],
        "index" => &[index],
        "all" => &[core, engine, index],
        other => {
            return Err(format!(
                "--layer {other}: expected core, engine, index or all"
            ));
        }
    };
    for (package, kill_filter, power_cut_filter) in runs {
        let test = |filter: &str| {
            cargo(
                &[
                    "test",
                    "--release",
                    "-p",
                    package,
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
            test(kill_filter)?;
        }
        if power_cut && let Some(filter) = power_cut_filter {
            test(filter)?;
        }
    }
    Ok(())
}

/// Runs `cargo <args>` of the nightly toolchain in the workspace root with
/// `envs` set. Through rustup: `$CARGO` is the running toolchain's own
/// cargo, which does not understand `+nightly`.
fn nightly_cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    println!("$ cargo +nightly {}", args.join(" "));
    let status = Command::new("rustup")
        .args(["run", "nightly", "cargo"])
        .args(args)
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .envs(envs.iter().copied())
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("could not run rustup: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo +nightly {}` failed ({status})",
            args.join(" ")
        ))
    }
}

/// Whether the nightly toolchain has its standard library's sources
/// (`rust-src`), which `-Zbuild-std` needs.
fn nightly_has_rust_src() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|root| {
            PathBuf::from(root.trim())
                .join("lib/rustlib/src/rust/library")
                .is_dir()
        })
}

/// `cargo xtask sanitize [--address | --thread]`: the test suite (every
/// crate but silo-benches) under AddressSanitizer and ThreadSanitizer on the
/// installed nightly, failing on any report. Both by default. The crash and
/// power-cut tests run at small sizes (their children are instrumented
/// too), the model tests at CI size. ThreadSanitizer needs the standard
/// library instrumented too (`-Zbuild-std`, from the nightly's `rust-src`):
/// over an uninstrumented one it reports races inside std's own channels.
pub(crate) fn sanitize(args: &[String]) -> Result<(), String> {
    let which: Vec<&str> = match args.first().map(String::as_str) {
        None => vec!["address", "thread"],
        Some("--address") => vec!["address"],
        Some("--thread") => vec!["thread"],
        Some(other) => {
            return Err(format!(
                "sanitize takes --address or --thread, not `{other}`"
            ));
        }
    };
    for sanitizer in which {
        let build_std = sanitizer == "thread";
        if build_std && !nightly_has_rust_src() {
            return Err(
                "ThreadSanitizer needs the nightly's standard library sources for -Zbuild-std: \
                 rustup component add rust-src --toolchain nightly"
                    .to_owned(),
            );
        }
        let flags = format!("-Zsanitizer={sanitizer} -Cdebug-assertions=on");
        let suppressions = workspace_root().join("xtask/tsan-suppressions.txt");
        let tsan_options = format!("halt_on_error=1:suppressions={}", suppressions.display());
        // A separate target directory: instrumented and plain builds never mix.
        let dir = workspace_root().join(format!("target/sanitize-{sanitizer}"));
        let dir = dir.to_string_lossy().into_owned();
        let mut args = vec!["test"];
        if build_std {
            args.push("-Zbuild-std");
        }
        args.extend([
            "--workspace",
            "--exclude",
            "silo-benches",
            "--exclude",
            "xtask",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
            &dir,
            "--lib",
            "--tests",
        ]);
        nightly_cargo(
            &args,
            &[
                ("RUSTFLAGS", &flags),
                // Tests that cannot run instrumented ask for it by name.
                ("SILO_SANITIZER", sanitizer),
                ("SILO_CRASH_ITERATIONS", "4"),
                ("PROPTEST_CASES", "32"),
                ("SILO_ENGINE_MODEL_CASES", "12"),
                // Leaks are not memory errors here (tests leak on purpose
                // when they simulate a crash by forgetting a store).
                ("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1"),
                ("TSAN_OPTIONS", &tsan_options),
            ],
        )?;
    }
    println!("xtask sanitize: no reports");
    Ok(())
}

/// `cargo xtask soak [--minutes M]`: the soak (`crates/silo-engine/examples/soak.rs`),
/// 10 minutes by default.
pub(crate) fn soak(args: &[String]) -> Result<(), String> {
    let minutes = flag_value(args, "--minutes")?.unwrap_or(10).to_string();
    cargo(
        &[
            "run",
            "--release",
            "-p",
            "silo-engine",
            "--example",
            "soak",
            "--",
            "--minutes",
            &minutes,
        ],
        &[],
    )
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

/// The data-path files of silo-core where a bug loses or corrupts data:
/// what `cargo xtask mutants` mutates by default.
const DATA_PATH: &[&str] = &[
    "crates/silo-core/src/compaction/apply.rs",
    "crates/silo-core/src/compaction/plan.rs",
    "crates/silo-core/src/log/replay.rs",
    "crates/silo-core/src/recovery.rs",
    "crates/silo-core/src/pending.rs",
    "crates/silo-core/src/index.rs",
    "crates/silo-core/src/log/group_commit.rs",
];

/// Reviewed equivalent mutants (stats-only, performance-only), one per
/// line: `<file>: <mutation>  # <reason>`.
const EQUIVALENT: &str = "xtask/mutants-equivalent.txt";

/// `cargo xtask mutants [--crate C] [--file F]... [--output DIR] [--iterate]
/// [--report DIR]`: runs cargo-mutants (installing it if missing) over the
/// data-path files of silo-core (or the files given), then prints caught /
/// missed / timeout / unviable per file and the score over the
/// non-equivalent viable mutants (a timeout counts as caught: the tests did
/// not pass). `--output` sets where cargo-mutants writes (default
/// `target/mutants`); `--iterate` retests only what the last run there did
/// not catch; `--report DIR` prints the table of an earlier run in DIR
/// without running anything.
pub(crate) fn mutants(args: &[String]) -> Result<(), String> {
    let krate = string_flag(args, "--crate").unwrap_or_else(|| "silo-core".to_owned());
    let mut files: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--file")
        .map(|w| w[1].clone())
        .collect();
    if files.is_empty() {
        files = DATA_PATH.iter().map(|f| (*f).to_owned()).collect();
    }
    if let Some(dir) = string_flag(args, "--report") {
        return report(&std::path::Path::new(&dir).join("mutants.out"), &files);
    }
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let installed = Command::new(&cargo_bin)
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        cargo(&["install", "cargo-mutants", "--locked"], &[])?;
    }
    let out_dir = string_flag(args, "--output").map_or_else(
        || workspace_root().join("target/mutants"),
        std::path::PathBuf::from,
    );
    let out = out_dir.to_string_lossy().into_owned();
    let mut run = vec![
        "mutants",
        "--package",
        &krate,
        "--no-shuffle",
        "--output",
        &out,
    ];
    if args.iter().any(|a| a == "--iterate") {
        run.push("--iterate");
    }
    for f in &files {
        run.extend(["--file", f.as_str()]);
    }
    // cargo-mutants exits non-zero when mutants are missed: the table says.
    let _ = cargo(&run, &[]);
    report(&out_dir.join("mutants.out"), &files)
}

/// The value after `flag`, if given.
fn string_flag(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A mutant line of cargo-mutants' lists without its `line:column`, so
/// that the equivalent list survives edits elsewhere in the file.
fn without_position(line: &str) -> String {
    let mut parts = line.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(_line), Some(_col), Some(rest)) => format!("{file}:{rest}"),
        _ => line.to_owned(),
    }
}

fn report(dir: &std::path::Path, files: &[String]) -> Result<(), String> {
    let read = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    };
    let equivalent: Vec<String> = std::fs::read_to_string(workspace_root().join(EQUIVALENT))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split("  #").next().unwrap_or(l).trim().to_owned())
        .collect();
    let lists = [
        ("caught", read("caught.txt")),
        ("missed", read("missed.txt")),
        ("timeout", read("timeout.txt")),
        ("unviable", read("unviable.txt")),
    ];
    println!("| file | caught | missed | equivalent | timeout | unviable | score |");
    println!("|---|---|---|---|---|---|---|");
    let (mut total_caught, mut total_counted) = (0usize, 0usize);
    for file in files {
        let count = |name: &str| {
            lists.iter().find(|(n, _)| *n == name).map_or(0, |(_, l)| {
                l.iter().filter(|m| m.starts_with(file.as_str())).count()
            })
        };
        let equiv = lists[1]
            .1
            .iter()
            .filter(|m| m.starts_with(file.as_str()) && equivalent.contains(&without_position(m)))
            .count();
        let caught = count("caught") + count("timeout");
        let counted = caught + count("missed") - equiv;
        total_caught += caught;
        total_counted += counted;
        let score = if counted == 0 {
            100.0
        } else {
            100.0 * caught as f64 / counted as f64
        };
        println!(
            "| {file} | {} | {} | {equiv} | {} | {} | {score:.1}% |",
            count("caught"),
            count("missed"),
            count("timeout"),
            count("unviable")
        );
    }
    let score = if total_counted == 0 {
        100.0
    } else {
        100.0 * total_caught as f64 / total_counted as f64
    };
    println!(
        "score: {total_caught} of {total_counted} non-equivalent viable mutants caught ({score:.1}%)"
    );
    println!("missed (not in {EQUIVALENT}):");
    for m in &lists[1].1 {
        if !equivalent.contains(&without_position(m)) {
            println!("  {m}");
        }
    }
    Ok(())
}

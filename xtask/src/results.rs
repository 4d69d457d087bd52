//! `cargo xtask bench`: runs the peer comparison and the index comparison
//! (the only place the peers are built: `cargo xtask ci` leaves the
//! `silo-benches` crate out) and writes the results page,
//! `docs/bench/RESULTS.md`, with `docs/bench/ratio.svg`: silo's advantage
//! over the best peer in every scenario.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::verbs::{cargo, workspace_root};

/// One bar of the chart: a scenario, the best peer, silo's advantage.
struct Bar {
    scenario: String,
    peer: String,
    factor: f64,
}

fn read_bars(path: &Path) -> Result<Vec<Bar>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e} (did the bench run?)", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split('\t');
            let (Some(scenario), Some(peer), Some(factor)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "{}: a line without three fields: {l}",
                    path.display()
                ));
            };
            let factor: f64 = factor
                .parse()
                .map_err(|_| format!("{}: not a number: {factor}", path.display()))?;
            Ok(Bar {
                scenario: scenario.to_owned(),
                peer: peer.to_owned(),
                factor,
            })
        })
        .collect()
}

/// Escapes text for SVG.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of `bars` on a log2 axis centred on 1x: right of
/// the line silo is better by the factor, left of it worse.
fn svg(bars: &[Bar]) -> String {
    const LABEL: f64 = 430.0;
    const PLOT: f64 = 420.0;
    const ROW: f64 = 22.0;
    // log2 of the widest factor shown (at least 4x either way).
    let span = bars
        .iter()
        .map(|b| b.factor.max(1e-9).log2().abs())
        .fold(2.0_f64, f64::max)
        .ceil();
    let x_of = |factor: f64| LABEL + PLOT / 2.0 + factor.max(1e-9).log2() / span * (PLOT / 2.0);
    let height = 40.0 + ROW * bars.len() as f64 + 30.0;
    let width = LABEL + PLOT + 120.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LABEL}" y="18" font-size="14">silo against the best peer in each scenario (right of 1x: silo is better)</text>"#
    );
    let mid = x_of(1.0);
    for (i, b) in bars.iter().enumerate() {
        let y = 40.0 + ROW * i as f64;
        let x = x_of(b.factor);
        let (left, w) = if x >= mid {
            (mid, x - mid)
        } else {
            (x, mid - x)
        };
        let color = if b.factor >= 1.0 {
            "#2e7d32"
        } else {
            "#c62828"
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL - 8.0,
            y + 14.0,
            xml(&b.scenario)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
            y + 3.0,
            w.max(1.0),
            ROW - 6.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}">{:.2}x vs {}</text>"#,
            LABEL + PLOT + 6.0,
            y + 14.0,
            b.factor,
            xml(&b.peer)
        );
    }
    let bottom = 40.0 + ROW * bars.len() as f64;
    let _ = writeln!(
        s,
        r##"<line x1="{mid:.1}" y1="32" x2="{mid:.1}" y2="{bottom:.1}" stroke="#000"/>"##
    );
    // A tick at every power of two.
    let mut k = -span;
    while k <= span {
        let factor = 2f64.powf(k);
        k += 1.0;
        let label = if factor >= 1.0 {
            format!("{factor:.0}x")
        } else {
            format!("1/{:.0}x", 1.0 / factor)
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            x_of(factor),
            bottom + 18.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A line about this machine: processor, cores, memory, kernel.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "an unknown processor".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(|| "unknown".to_owned(), |kb| format!("{} GiB", kb >> 20));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
    format!("{cpu}, {cores} cores, {mem} of memory, Linux {kernel}")
}

fn now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "an unknown date".to_owned(), |d| d.trim().to_owned())
}

/// Runs a bench of silo-benches with `envs`, its output shown and kept.
fn run_bench(name: &str, envs: &[(&str, &str)]) -> Result<String, String> {
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("$ cargo bench -p silo-benches --bench {name}");
    let out = Command::new(&cargo_bin)
        .args(["bench", "-p", "silo-benches", "--bench", name])
        .envs(envs.iter().copied())
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("could not run {cargo_bin}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("the {name} bench failed ({})", out.status))
    }
}

/// `cargo xtask bench [--quick]`: see the module documentation. `--quick`
/// runs at 100k keys and 50k documents, to try the page out.
pub(crate) fn bench(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(other) = args.iter().find(|a| *a != "--quick") {
        return Err(format!(
            "cargo xtask bench takes only --quick, not `{other}`"
        ));
    }
    let (keys, docs) = if quick {
        ("100000", "50000")
    } else {
        ("1000000", "1000000")
    };
    cargo(
        &["build", "--release", "-p", "silo-benches", "--benches"],
        &[],
    )?;
    run_bench("compare", &[("SILO_BENCH_KEYS", keys)])?;
    let index = run_bench("index", &[("SILO_BENCH_DOCS", docs)])?;
    let root = workspace_root();
    let compare_md = std::fs::read_to_string(root.join("target/bench-compare.md"))
        .map_err(|e| format!("target/bench-compare.md: {e}"))?;
    let mut bars = read_bars(&root.join("target/bench/compare.tsv"))?;
    bars.extend(read_bars(&root.join("target/bench/index.tsv"))?);
    let out = root.join("docs/bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::write(out.join("ratio.svg"), svg(&bars)).map_err(|e| format!("ratio.svg: {e}"))?;
    let mut page = String::new();
    let _ = writeln!(page, "# Results\n");
    let _ = writeln!(
        page,
        "Written by `cargo xtask bench{}` on {}, on {}. Every figure is from that one run; a shared machine's absolute times mean little, the ratios between engines run together mean more.\n",
        if quick { " --quick" } else { "" },
        now(),
        machine()
    );
    let _ = writeln!(page, "![silo against the best peer](ratio.svg)\n");
    let _ = writeln!(page, "| scenario | best peer | silo's advantage |");
    let _ = writeln!(page, "|---|---|---|");
    for b in &bars {
        let _ = writeln!(page, "| {} | {} | {:.2}x |", b.scenario, b.peer, b.factor);
    }
    let _ = writeln!(
        page,
        "\nAn advantage above 1 means silo is better by that factor (faster, or smaller); below 1, the peer is. How each scenario is run, and what each goal means: `docs/BENCHMARKS.md`.\n"
    );
    let _ = writeln!(
        page,
        "## Key-value: silo, redb, fjall, sled, LMDB (heed)\n\n`cargo bench -p silo-benches --bench compare` (`SILO_BENCH_KEYS={keys}`):\n"
    );
    page.push_str(&compare_md);
    let _ = writeln!(
        page,
        "\n## The index: silo, SQLite, tantivy\n\n`cargo bench -p silo-benches --bench index` (`SILO_BENCH_DOCS={docs}`):\n\n```text"
    );
    page.push_str(index.trim_end());
    let _ = writeln!(page, "\n```");
    std::fs::write(out.join("RESULTS.md"), page).map_err(|e| format!("RESULTS.md: {e}"))?;
    println!("written: docs/bench/RESULTS.md, docs/bench/ratio.svg");
    Ok(())
}

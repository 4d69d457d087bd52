//! The soak (`cargo xtask soak --minutes M`): a mixed multi-threaded
//! workload on a sharded engine with the background scheduler, values
//! checked as it goes, and the process's resources sampled every two
//! seconds. It fails if a read is wrong, or if a resource keeps growing once
//! the data set has stopped growing (the last third of the run peaking
//! clearly above the middle third).
//!
//! Writers own disjoint key ranges and check every read of their own keys
//! against what they wrote; readers read any key and check that its value
//! names that key. The key space is fixed, so after the first fill the data
//! set does not grow: only overwrites, deletes and merges go on, and
//! compaction must keep up.
//!
//! `cargo run --release -p silo-engine --example soak -- --minutes M [--dir D]`
//! writes the samples to `target/soak/samples.csv` and their curves to
//! `target/soak/curves.svg`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use silo_core::WriteBatch;
use silo_engine::{Engine, EngineOptions, SchedulerOptions};

/// Keys per writer.
const KEYS: u64 = 100_000;
const WRITERS: u64 = 2;
const READERS: u64 = 1;
/// Seconds between samples.
const EVERY: Duration = Duration::from_secs(2);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A value naming its key and version, padded to 40 to 200 bytes.
fn value(key: u64, version: u64) -> Vec<u8> {
    let mut v = format!("{key}:{version}:").into_bytes();
    let pad = 40 + (key.wrapping_mul(31) ^ version) % 160;
    v.resize(usize::try_from(pad).unwrap_or(40), b'.');
    v
}

/// The key a value names, if it names one.
fn key_of(v: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(v).ok()?;
    text.split(':').next()?.parse().ok()
}

/// One sample of the process's resources.
#[derive(Clone, Copy, Default)]
struct Sample {
    secs: f64,
    rss: u64,
    fds: u64,
    mapped: u64,
    files: u64,
    writes: u64,
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Bytes of the mappings of files under `dir`.
fn mapped_under(dir: &Path) -> u64 {
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/maps")
        .map(|maps| {
            maps.lines()
                .filter(|l| l.contains(dir.as_ref()))
                .filter_map(|l| {
                    let range = l.split_whitespace().next()?;
                    let (a, b) = range.split_once('-')?;
                    let (a, b) = (
                        u64::from_str_radix(a, 16).ok()?,
                        u64::from_str_radix(b, 16).ok()?,
                    );
                    Some(b.saturating_sub(a))
                })
                .sum()
        })
        .unwrap_or(0)
}

fn count_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

fn sample(start: Instant, dir: &Path, writes: u64) -> Sample {
    Sample {
        secs: start.elapsed().as_secs_f64(),
        rss: status_kb("VmRSS:"),
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        mapped: mapped_under(dir),
        files: count_files(dir),
        writes,
    }
}

/// A resource read from a sample.
type Metric = fn(&Sample) -> u64;

/// The resources watched: name, reading, and how far the last third may
/// peak above the middle third before it counts as growth (besides 20%).
const METRICS: [(&str, Metric, u64); 4] = [
    ("resident memory", |s| s.rss, 64 << 20),
    ("open descriptors", |s| s.fds, 8),
    ("bytes mapped from the store", |s| s.mapped, 64 << 20),
    ("files in the store", |s| s.files, 4),
];

/// The peaks of a metric over the middle and the last third of `samples`.
fn thirds(samples: &[Sample], metric: impl Fn(&Sample) -> u64) -> (u64, u64) {
    let n = samples.len();
    let peak = |s: &[Sample]| s.iter().map(&metric).max().unwrap_or(0);
    (
        peak(&samples[n / 3..2 * n / 3]),
        peak(&samples[2 * n / 3..]),
    )
}

/// Polyline curves of each metric, normalized to its own peak.
fn svg(samples: &[Sample]) -> String {
    let (w, h) = (760.0, 120.0);
    let end = samples.last().map_or(1.0, |s| s.secs.max(1.0));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        w + 20.0,
        (h + 40.0) * METRICS.len() as f64
    );
    for (i, (name, f, _)) in METRICS.iter().enumerate() {
        let top = (h + 40.0) * i as f64 + 20.0;
        let peak = samples.iter().map(f).max().unwrap_or(1).max(1) as f64;
        let points: Vec<String> = samples
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1}",
                    10.0 + s.secs / end * w,
                    top + h - f(s) as f64 / peak * h
                )
            })
            .collect();
        out.push_str(&format!(
            "<text x=\"10\" y=\"{:.1}\">{name} (peak {peak:.0})</text>\n<rect x=\"10\" y=\"{top:.1}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#999\"/>\n<polyline fill=\"none\" stroke=\"#1565c0\" points=\"{}\"/>\n",
            top - 4.0,
            points.join(" ")
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let minutes: f64 = arg("--minutes").map_or(Ok(1.0), |m| m.parse())?;
    let temp = tempfile::tempdir()?;
    let dir: PathBuf = arg("--dir").map_or_else(|| temp.path().join("soak"), PathBuf::from);
    let opts = EngineOptions {
        shards: Some(4),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    };
    let mut opts = opts;
    opts.store.auto_compact = false;
    opts.store.thresholds.log_bytes = 8 << 20;
    opts.store.thresholds.min_interval = Duration::from_secs(1);
    let engine = Engine::open(&dir, opts)?;
    let background = engine.start_background(SchedulerOptions::default())?;
    let stop = Arc::new(AtomicBool::new(false));
    let writes = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    let wrong: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(minutes * 60.0);
    let mut samples = Vec::new();
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (engine, stop, writes, wrong) = (&engine, &stop, &writes, &wrong);
            s.spawn(move || {
                let mut rng = Rng(0x5eed ^ (w + 1));
                let base = w * KEYS;
                // What this writer wrote last, per key (None: deleted).
                let mut mine: HashMap<u64, Option<u64>> = HashMap::new();
                let mut version = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    version += 1;
                    let key = base + rng.next() % KEYS;
                    let result = match rng.next() % 10 {
                        0 => engine.delete(key).map(|()| {
                            mine.insert(key, None);
                        }),
                        1 => {
                            // A batch over several shards.
                            let mut b = WriteBatch::new();
                            let keys: Vec<u64> = (0..8).map(|_| base + rng.next() % KEYS).collect();
                            for k in &keys {
                                b.put(*k, &value(*k, version));
                            }
                            engine.write(&b).map(|()| {
                                for k in keys {
                                    mine.insert(k, Some(version));
                                }
                            })
                        }
                        _ => engine.put(key, &value(key, version)).map(|()| {
                            mine.insert(key, Some(version));
                        }),
                    };
                    if let Err(e) = result {
                        wrong
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("write: {e}"));
                        return;
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                    // Read back one of this writer's keys.
                    let k = base + rng.next() % KEYS;
                    if let Some(want) = mine.get(&k) {
                        let got = engine.get(k);
                        let ok = match (&got, want) {
                            (Ok(None), None) => true,
                            (Ok(Some(v)), Some(ver)) => *v == value(k, *ver),
                            _ => false,
                        };
                        if !ok {
                            wrong
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(format!(
                                "key {k}: read {:?}, wrote version {want:?}",
                                got.map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()))
                            ));
                        }
                    }
                }
            });
        }
        for r in 0..READERS {
            let (engine, stop, reads, wrong) = (&engine, &stop, &reads, &wrong);
            s.spawn(move || {
                let mut rng = Rng(0xbeef ^ (r + 1));
                while !stop.load(Ordering::Relaxed) {
                    let k = rng.next() % (KEYS * WRITERS);
                    match engine.get(k) {
                        Ok(None) => {}
                        Ok(Some(v)) if key_of(&v) == Some(k) => {}
                        other => wrong
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!(
                                "key {k}: read {other:?}, a value of another key or an error"
                            )),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while start.elapsed() < deadline {
            std::thread::sleep(EVERY);
            let s = sample(start, &dir, writes.load(Ordering::Relaxed));
            println!(
                "{:>6.0} s: {} writes, rss {} MiB, {} fds, {} MiB mapped, {} files",
                s.secs,
                s.writes,
                s.rss >> 20,
                s.fds,
                s.mapped >> 20,
                s.files
            );
            samples.push(s);
            if !wrong.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let sched = background.stats();
    background.stop();
    engine.close()?;
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/soak");
    std::fs::create_dir_all(&out)?;
    let mut csv = String::from("seconds,writes,rss_bytes,fds,mapped_bytes,files\n");
    for s in &samples {
        csv.push_str(&format!(
            "{:.1},{},{},{},{},{}\n",
            s.secs, s.writes, s.rss, s.fds, s.mapped, s.files
        ));
    }
    std::fs::write(out.join("samples.csv"), csv)?;
    std::fs::write(out.join("curves.svg"), svg(&samples))?;
    let wrong = wrong.into_inner().unwrap_or_else(|p| p.into_inner());
    println!(
        "soak: {:.1} minutes, {} writes, {} reads, {} compactions by the scheduler, {} wrong reads; samples in target/soak/",
        start.elapsed().as_secs_f64() / 60.0,
        writes.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        sched.compactions,
        wrong.len()
    );
    let mut failures: Vec<String> = wrong.into_iter().take(10).collect();
    if samples.len() >= 9 {
        for (name, metric, slack) in METRICS {
            let (middle, last) = thirds(&samples, metric);
            println!("  {name}: peak {middle} in the middle third, {last} in the last");
            if last > middle + slack && last * 10 > middle * 12 {
                failures.push(format!(
                    "{name} keeps growing: peak {middle} in the middle third, {last} in the last"
                ));
            }
        }
    } else {
        println!("  (too short to judge growth: at least 18 s of samples are needed)");
    }
    if failures.is_empty() {
        println!("soak: passed");
        Ok(())
    } else {
        for f in &failures {
            eprintln!("soak: {f}");
        }
        Err(format!("{} failures", failures.len()).into())
    }
}

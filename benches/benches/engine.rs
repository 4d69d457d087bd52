//! The sharded engine (issue 8), ratios in one run:
//! - parallel compaction: 8 shards holding N keys, 30% of their records
//!   dead, compacted (a cold rewrite each) with 2 threads vs 1 on identical
//!   engines; output bytes/s against a sequential write + fdatasync
//!   measured in the same run; and, reported beside it, 30% of the keys
//!   overwritten and pending, compacted (folded into a rewrite);
//! - a 2-thread mixed workload (one writer, one reader) with the
//!   background scheduler compacting vs with compaction off: throughput
//!   ratio and p99 write latency of both;
//! - the engine against one silo-core store at one thread (load; get and
//!   overwrite in random order, as the compare bench's; get in load order
//!   reported beside), each round in a process of its own (and, reported
//!   beside, the rounds in one process), and the engine's load at two
//!   writer threads vs one.
//!
//! `cargo bench -p silo-benches --bench engine`; `SILO_BENCH_KEYS` (default
//! 2 000 000) sets N; `SILO_BENCH_ONLY` (comma-separated: `compaction`,
//! `in-memory`, `prefetch`, `mixed`, `vs-core`) runs only the parts named.
//! `in-memory` is the parallel compaction again in `/dev/shm`, where the
//! cores and not the device bound it.

use std::path::Path;
use std::time::{Duration, Instant};

use silo_core::{Options, Silo};
use silo_engine::{CompactOptions, Engine, EngineOptions, SchedulerOptions};

use silo_benches::{Rng, Selection, median, process_cpu, sequential_write};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn store_opts() -> Options {
    let mut o = Options {
        auto_compact: false,
        pending_limit_bytes: 16 << 30,
        ..Options::default()
    };
    o.thresholds.log_bytes = 16 << 30;
    o.thresholds.pending_ops = u64::MAX;
    o
}

fn engine_opts(shards: usize) -> EngineOptions {
    EngineOptions {
        shards: Some(shards),
        compaction_threads: Some(2),
        store: store_opts(),
    }
}

fn load_engine(db: &Engine, keys: &[u64], value: &[u8]) -> Res<()> {
    for k in keys {
        db.put(*k, value)?;
    }
    Ok(())
}

fn rate(ops: usize, d: Duration) -> f64 {
    ops as f64 / d.as_secs_f64()
}

fn p99(lat: &mut [Duration]) -> Duration {
    lat.sort_unstable();
    lat.get(lat.len() * 99 / 100).copied().unwrap_or_default()
}

/// An engine of 8 shards with `keys` loaded and folded, then 30% of them
/// overwritten with longer values (their old records become dead) and
/// pending.
fn dead_space_engine(dir: &Path, keys: &[u64]) -> Res<Engine> {
    let db = Engine::open(dir, engine_opts(8))?;
    load_engine(&db, keys, &[1u8; 100])?;
    db.compact()?;
    let moved = keys.len() * 3 / 10;
    load_engine(&db, &keys[..moved], &[2u8; 160])?;
    db.flush()?;
    Ok(db)
}

/// An engine of 8 shards whose folds never turn into a rewrite: dead space
/// stays in the data files until a cold compaction.
fn keeps_dead_space() -> EngineOptions {
    let mut o = engine_opts(8);
    o.store.thresholds.dead_ratio = 1.0;
    o.store.thresholds.emergency_dead_ratio = 1.0;
    o
}

/// An engine of 8 shards holding `keys`, 30% of them overwritten with
/// longer values and folded: their old records are dead space in the data
/// files (about a fifth of their bytes). Every key is then read once, as in
/// a store in use: the compaction's inputs are in the page cache (cold
/// inputs are the prefetch part's case).
fn dead_records_engine(dir: &Path, keys: &[u64]) -> Res<Engine> {
    let db = Engine::open(dir, keeps_dead_space())?;
    load_engine(&db, keys, &[1u8; 100])?;
    db.compact()?;
    let moved = keys.len() * 3 / 10;
    load_engine(&db, &keys[..moved], &[2u8; 160])?;
    db.compact()?;
    for k in keys {
        db.get_with(*k, |v| v.map(<[u8]>::len))?;
    }
    Ok(db)
}

/// The share of the shards' data file bytes that is dead.
fn dead_share(db: &Engine) -> f64 {
    let stats = db.stats();
    let dead: u64 = stats.shards.iter().map(|s| s.dead_bytes).sum();
    let live: u64 = stats.shards.iter().map(|s| s.live_bytes).sum();
    dead as f64 / (dead + live).max(1) as f64
}

/// Compactions of 8 shards on 1 and 2 threads, three rounds in turn (1 2
/// 1 2 1 2, each on a fresh engine): this machine's run-to-run spread
/// (other guests share its disk and cores) moves one pair's ratio by
/// +-0.2, so the medians are compared.
///
/// The goal's case: shards holding 30% dead records in their data files,
/// compacted (a cold rewrite each). Reported beside it: 30% of the keys
/// overwritten and still pending, compacted once (the policy folds them
/// into a rewrite, as a store's default `compact` does). Until the eighth
/// session this bench timed the second case followed by a forced cold
/// rewrite of the shards it had just rewritten (nothing left to reclaim,
/// their inputs just written past the page cache and read from the disk).
///
/// `in_memory`: `root` is on a memory file system (the `in-memory` part),
/// where no device bounds the two threads and the cores do: the cores
/// busy on each side then say how much of the second core one thread
/// leaves idle, which bounds two threads' gain.
fn parallel_compaction(root: &Path, keys: &[u64], in_memory: bool) -> Res<()> {
    let place = if in_memory { "in memory, " } else { "" };
    // [dead records, pending overwrites][threads - 1]
    let mut times: [[Vec<Duration>; 2]; 2] = Default::default();
    // CPU time of the process during each compaction, every thread's.
    let mut cpu: [[Duration; 2]; 2] = Default::default();
    let mut written = [0u64; 2];
    for round in 0..3 {
        for threads in [1usize, 2] {
            for (case, dead) in [(0, true), (1, false)] {
                let dir = root.join(format!("par-{case}-{threads}-{round}"));
                let db = if dead {
                    dead_records_engine(&dir, keys)?
                } else {
                    dead_space_engine(&dir, keys)?
                };
                let (share, pending) = (dead_share(&db), db.stats().pending_ops());
                let (t, cpu_before) = (Instant::now(), process_cpu());
                let report = db.compact_with(CompactOptions {
                    threads: Some(threads),
                    cold: dead,
                    ..CompactOptions::default()
                })?;
                let d = t.elapsed();
                let busy = process_cpu()
                    .zip(cpu_before)
                    .map(|(after, before)| after.saturating_sub(before))
                    .unwrap_or_default();
                cpu[case][threads - 1] += busy;
                written[case] = report.bytes_written;
                println!(
                    "compaction of 8 shards, {place}{} keys, {}: {threads} thread(s) {d:.2?} ({:.0} MiB written, {} major faults, {:.2} cores busy)",
                    keys.len(),
                    if dead {
                        format!("{:.0}% of the data files' bytes dead", share * 100.0)
                    } else {
                        format!("{pending} overwrites pending (30%)")
                    },
                    report.bytes_written as f64 / 1048576.0,
                    report.major_faults,
                    busy.as_secs_f64() / d.as_secs_f64()
                );
                times[case][threads - 1].push(d);
                db.close()?;
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    let seq = sequential_write(root, usize::try_from(written[0])?)?;
    for (case, label, goal) in [
        (
            0,
            "dead records, a cold compaction",
            if in_memory {
                " (report: the cores' limit)"
            } else {
                " (goal >= 1.7x; output goal >= 0.50)"
            },
        ),
        (1, "pending overwrites folded into a rewrite", " (report)"),
    ] {
        let one = median(times[case][0].clone()).unwrap_or_default();
        let two = median(times[case][1].clone()).unwrap_or_default();
        let speedup = one.as_secs_f64() / two.as_secs_f64();
        // The cores each side kept busy, over its three rounds.
        let sum = |t: &[Duration]| t.iter().sum::<Duration>().as_secs_f64();
        let [cores_one, cores_two] =
            [0, 1].map(|i| cpu[case][i].as_secs_f64() / sum(&times[case][i]));
        let out = written[case] as f64 / two.as_secs_f64();
        println!(
            "  {place}{label}: 2 threads vs 1 (medians of three, {one:.2?} vs {two:.2?}): {speedup:.2}x, {cores_one:.2} vs {cores_two:.2} cores busy; output {:.0} MiB/s vs sequential write + fdatasync ({seq}): {:.2} of the faster{goal}",
            out / 1048576.0,
            out / seq.best()
        );
    }
    Ok(())
}

/// Syncs every file under `dir` and asks the kernel to drop it from the
/// page cache. Only pages no process maps can go, so this runs on a closed
/// engine.
fn evict(dir: &Path) -> Res<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            evict(&path)?;
        } else {
            let file = silo_io::SiloFile::open_read(&path)?;
            file.sync_all()?;
            file.advise(0, 0, silo_io::FileAdvice::DontNeed)?;
        }
    }
    Ok(())
}

/// Compactions of cold inputs with and without prefetch: time and major
/// faults. The engine is closed, its files dropped from the page cache
/// (`DontNeed` on each, nothing mapping them), and reopened, so the data
/// and index files the compaction reads come from the disk.
fn prefetch(root: &Path, keys: &[u64]) -> Res<()> {
    let mut rows = Vec::new();
    for on in [false, true] {
        let dir = root.join(format!("prefetch-{on}"));
        dead_space_engine(&dir, keys)?.close()?;
        evict(&dir)?;
        let db = Engine::open(&dir, engine_opts(8))?;
        let t = Instant::now();
        let hot = db.compact_with(CompactOptions {
            prefetch: on,
            ..CompactOptions::default()
        })?;
        let cold = db.compact_with(CompactOptions {
            cold: true,
            prefetch: on,
            ..CompactOptions::default()
        })?;
        let d = t.elapsed();
        rows.push((d, hot.major_faults + cold.major_faults));
        db.close()?;
    }
    println!(
        "cold inputs: prefetch off {:.2?} ({} major faults), on {:.2?} ({} major faults): {:.2}x time",
        rows[0].0,
        rows[0].1,
        rows[1].0,
        rows[1].1,
        rows[0].0.as_secs_f64() / rows[1].0.as_secs_f64()
    );
    Ok(())
}

/// One writer and one reader for `ops` operations each; returns
/// (operations per second over both, the writer's p99 latency).
fn mixed(db: &Engine, keys: &[u64], ops: usize) -> (f64, Duration) {
    let t = Instant::now();
    let mut lat = std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng(0xBEEF);
            for _ in 0..ops {
                let k = keys[rng.below(keys.len())];
                let _ = db.get(k);
            }
        });
        let mut rng = Rng(0xFEED);
        let mut lat = Vec::with_capacity(ops);
        for _ in 0..ops {
            let k = keys[rng.below(keys.len())];
            let w = Instant::now();
            db.put(k, &[3u8; 100]).expect("put");
            lat.push(w.elapsed());
        }
        lat
    });
    let d = t.elapsed();
    (rate(2 * ops, d), p99(&mut lat))
}

/// The mixed workload with the background scheduler compacting against
/// the same with compaction off, three rounds a side in turn (off on on
/// off off on), each on a freshly loaded engine; each side's median rate
/// and p99 put latency. The scheduler's share of the two cores (both busy
/// with the workload's threads) moves one pair's ratio by +-0.1 on this
/// machine, so a single pair is not the figure.
fn mixed_workload(root: &Path, keys: &[u64]) -> Res<()> {
    let ops = keys.len();
    let mut off_opts = engine_opts(8);
    off_opts.store.pending_limit_bytes = 256 << 20;
    let mut on_opts = off_opts.clone();
    // Due every 20 000 pending operations of a shard: the scheduler
    // compacts several times during the run.
    on_opts.store.thresholds = silo_core::CompactionThresholds {
        pending_ops: 20_000,
        min_interval: Duration::ZERO,
        ..silo_core::CompactionThresholds::default()
    };
    // [off, on]: (rate, p99 put latency) of each round.
    let mut sides: [Vec<(f64, Duration)>; 2] = [Vec::new(), Vec::new()];
    let mut compactions = Vec::new();
    for (round, on) in [false, true, true, false, false, true]
        .into_iter()
        .enumerate()
    {
        let dir = root.join(format!("mixed-{on}-{round}"));
        let db = Engine::open(
            &dir,
            if on {
                on_opts.clone()
            } else {
                off_opts.clone()
            },
        )?;
        load_engine(&db, keys, &[1u8; 100])?;
        db.compact()?;
        let (rate, p99) = if on {
            let bg = db.start_background(SchedulerOptions::default())?;
            let measured = mixed(&db, keys, ops);
            compactions.push(bg.stats().compactions);
            drop(bg);
            measured
        } else {
            mixed(&db, keys, ops)
        };
        // What compaction left for later (the scheduler's threads run at a
        // lower CPU priority: on busy cores they take what the workload
        // leaves).
        println!(
            "mixed 1 writer + 1 reader, {ops} ops each, scheduler {}: {:.0}k ops/s, p99 put {p99:.1?}, {} operations pending at the end",
            if on { "on" } else { "off" },
            rate / 1e3,
            db.stats().pending_ops()
        );
        sides[usize::from(on)].push((rate, p99));
        drop(db);
        std::fs::remove_dir_all(&dir)?;
    }
    let [(off_rate, off_p99), (on_rate, on_p99)] = sides.map(|side| {
        (
            median(side.iter().map(|r| r.0).collect()).unwrap_or(0.0),
            median(side.iter().map(|r| r.1).collect()).unwrap_or_default(),
        )
    });
    println!(
        "mixed 1 writer + 1 reader (medians of three rounds): scheduler on {:.0}k ops/s (p99 put {on_p99:.1?}, {compactions:?} compactions), off {:.0}k ops/s (p99 put {off_p99:.1?}): {:.2}x (goal >= 0.7x)",
        on_rate / 1e3,
        off_rate / 1e3,
        on_rate / off_rate
    );
    Ok(())
}

type PutFn<'a> = Box<dyn Fn(u64, &[u8]) -> Res<()> + 'a>;
type GetFn<'a> = Box<dyn Fn(u64) -> Res<()> + 'a>;

/// One round of the engine-against-silo-core comparison: (load, get in
/// random order, overwrite in random order, get in load order) rates of
/// one fresh store or engine in `dir`, dropped and removed before it
/// returns (so that no other round runs beside its memory and writeback).
/// Reads and overwrites go in a random order, as the compare bench's (a
/// hash store's keys have no order a reader follows). Reads in load order
/// are reported too: there one store reads its values back in the order
/// they lie in memory, one stream the CPU prefetches, where eight stores
/// interleave eight.
fn vs_core_round(dir: &Path, engine: bool, keys: &[u64]) -> Res<[f64; 4]> {
    let n = keys.len();
    let mut shuffled = keys.to_vec();
    let mut rng = Rng(0x5EED_0F_0E);
    silo_benches::shuffle(&mut shuffled, |n| rng.below(n));
    let core;
    let db;
    let (put, get): (PutFn<'_>, GetFn<'_>) = if engine {
        db = Engine::open(dir, engine_opts(8))?;
        (
            Box::new(|k, v| Ok(db.put(k, v)?)),
            Box::new(|k| Ok(db.get(k).map(drop)?)),
        )
    } else {
        core = Silo::open(dir, store_opts())?;
        (
            Box::new(|k, v| Ok(core.put(k, v)?)),
            Box::new(|k| Ok(core.get(k).map(drop)?)),
        )
    };
    let timed = |f: &dyn Fn() -> Res<()>| -> Res<f64> {
        let t = Instant::now();
        f()?;
        Ok(rate(n, t.elapsed()))
    };
    let load = timed(&|| keys.iter().try_for_each(|k| put(*k, &[1u8; 100])))?;
    let read = timed(&|| shuffled.iter().try_for_each(|k| get(*k)))?;
    let in_order = timed(&|| keys.iter().try_for_each(|k| get(*k)))?;
    let over = timed(&|| shuffled.iter().try_for_each(|k| put(*k, &[2u8; 100])))?;
    drop((put, get));
    std::fs::remove_dir_all(dir)?;
    Ok([load, read, over, in_order])
}

/// The environment variable that makes this bench run one
/// [`vs_core_round`] (`engine` or `silo-core`, in the directory
/// `SILO_BENCH_ROUND_DIR`) and print its rates on one line.
const ROUND_VAR: &str = "SILO_BENCH_VS_CORE_ROUND";
const ROUND_DIR_VAR: &str = "SILO_BENCH_ROUND_DIR";

/// [`vs_core_round`] in a process of its own: this bench again, with
/// [`ROUND_VAR`] set.
fn vs_core_round_alone(dir: &Path, engine: bool) -> Res<[f64; 4]> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(ROUND_VAR, if engine { "engine" } else { "silo-core" })
        .env(ROUND_DIR_VAR, dir)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "a round in a process of its own failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let rates: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("rates "))
        .ok_or("a round in a process of its own printed no rates")?
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    rates
        .try_into()
        .map_err(|r: Vec<f64>| format!("a round printed {} rates, not 4", r.len()).into())
}

/// The engine against one silo-core store at one thread, and the engine's
/// load at two writer threads against one.
///
/// The goal's figures come from rounds in processes of their own (each
/// store or engine starts, as one would in use, in a process whose
/// allocator holds nothing of another's). Rounds in this one process,
/// one after another, are reported beside them: there a round reuses the
/// memory the rounds before it freed, and how much of it it reuses
/// depends on the sizes it asks for (one store's 64 pending-view tables
/// against eight stores' 512 smaller ones), which is not what either
/// costs.
fn engine_vs_core(root: &Path, keys: &[u64]) -> Res<()> {
    let n = keys.len();
    // Four rounds a side in A B B A B A A B order, so that neither side
    // always runs first; each side's median (the upper of its middle two:
    // one round of this machine's runs can be a quarter off the others).
    // In this process, a warm-up round comes first, not counted: the
    // process's first round gets all its memory fresh from the kernel (a
    // page fault each page) and runs after the previous part's files were
    // deleted.
    let order = [false, true, true, false, true, false, false, true];
    for alone in [true, false] {
        if !alone {
            vs_core_round(&root.join("vs-warm-up"), false, keys)?;
        }
        let mut rounds: [Vec<[f64; 4]>; 2] = [Vec::new(), Vec::new()];
        for (round, engine) in order.into_iter().enumerate() {
            let dir = root.join(format!("vs-{engine}-{round}"));
            let [l, g, o, go] = if alone {
                vs_core_round_alone(&dir, engine)?
            } else {
                vs_core_round(&dir, engine, keys)?
            };
            let name = if engine { "engine" } else { "silo-core" };
            println!(
                "{name:>9}, 1 thread: load {:.0}k/s, get {:.0}k/s, overwrite {:.0}k/s (random order); get in load order {:.0}k/s",
                l / 1e3,
                g / 1e3,
                o / 1e3,
                go / 1e3
            );
            rounds[usize::from(engine)].push([l, g, o, go]);
        }
        let [c, e] = rounds.map(|side| {
            [0, 1, 2, 3].map(|i| median(side.iter().map(|r| r[i]).collect()).unwrap_or(0.0))
        });
        let (how, goal) = if alone {
            ("each round in a process of its own", "goal >= 0.9x")
        } else {
            ("the rounds in one process, after a warm-up round", "report")
        };
        println!(
            "  engine / silo-core (medians of four rounds, A B B A B A A B, {how}): load {:.2}x, get {:.2}x, overwrite {:.2}x ({goal}); get in load order {:.2}x (report)",
            e[0] / c[0],
            e[1] / c[1],
            e[2] / c[2],
            e[3] / c[3]
        );
    }
    // Two writer threads against one, on fresh engines: each writer on
    // shards of its own (the goal's case), then both over every shard.
    // Four rounds a side in the same A B B A B A A B order, each engine's
    // directory removed before the next starts (its writeback would
    // otherwise run beside the next round: on two cores, a second writer
    // then shares its core with the kernel's flusher); each side's median.
    for (label, by_shard, goal) in [
        ("on shards of their own", true, "goal >= 1.6x"),
        ("over every shard", false, "report"),
    ] {
        let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for (round, two) in order.into_iter().enumerate() {
            let writers = 1 + usize::from(two);
            let dir = root.join(format!("engine-w{writers}-{by_shard}-{round}"));
            let db = Engine::open(&dir, engine_opts(8))?;
            let t = Instant::now();
            std::thread::scope(|s| {
                for w in 0..writers {
                    let db = &db;
                    s.spawn(move || {
                        for (i, k) in keys.iter().enumerate() {
                            let mine = if by_shard {
                                silo_engine::shard_of(*k, 8) % writers == w
                            } else {
                                i % writers == w
                            };
                            if mine {
                                db.put(*k, &[1u8; 100]).expect("put");
                            }
                        }
                    });
                }
            });
            rates[usize::from(two)].push(rate(n, t.elapsed()));
            drop(db);
            std::fs::remove_dir_all(&dir)?;
        }
        println!(
            "  engine load, {label}: 1 writer {} k/s, 2 writers {} k/s",
            rates[0]
                .iter()
                .map(|r| format!("{:.0}", r / 1e3))
                .collect::<Vec<_>>()
                .join(" "),
            rates[1]
                .iter()
                .map(|r| format!("{:.0}", r / 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let [one, two] = rates.map(|side| median(side).unwrap_or(0.0));
        println!(
            "engine load, 2 writer threads {label} vs 1 (medians of four rounds, A B B A B A A B): {:.0}k/s vs {:.0}k/s = {:.2}x ({goal})",
            two / 1e3,
            one / 1e3,
            two / one
        );
    }
    Ok(())
}

fn main() -> Res<()> {
    let n: usize = std::env::var("SILO_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let root = tempfile::tempdir()?;
    let mut rng = Rng(0xE4_617E);
    let keys: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    if let (Ok(which), Some(dir)) = (std::env::var(ROUND_VAR), std::env::var_os(ROUND_DIR_VAR)) {
        let [l, g, o, go] = vs_core_round(Path::new(&dir), which == "engine", &keys[..n / 2])?;
        println!("rates {l} {g} {o} {go}");
        return Ok(());
    }
    let only = Selection::from_env("SILO_BENCH_ONLY");
    if only.wants("compaction") {
        parallel_compaction(root.path(), &keys, false)?;
    }
    if only.wants("in-memory") {
        match tempfile::tempdir_in("/dev/shm") {
            Ok(shm) => parallel_compaction(shm.path(), &keys, true)?,
            Err(e) => println!("compaction in memory: no /dev/shm to run in ({e}); not run"),
        }
    }
    if only.wants("prefetch") {
        prefetch(root.path(), &keys[..n / 2])?;
    }
    if only.wants("mixed") {
        mixed_workload(root.path(), &keys[..n / 2])?;
    }
    if only.wants("vs-core") {
        engine_vs_core(root.path(), &keys[..n / 2])?;
    }
    Ok(())
}

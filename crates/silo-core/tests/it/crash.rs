//! Crash test: a child process runs a random workload with `Sync`
//! durability (one write in four `Buffered` through `WriteOptions`) and
//! reports every acknowledged operation; the parent kills it
//! with SIGKILL after a random number of acknowledgements (compactions run
//! all along), reopens the store and checks that it holds exactly the
//! acknowledged state, or that state plus the one operation in flight.
//!
//! `SILO_CRASH_ITERATIONS` sets the number of kills (default 20;
//! `cargo xtask crash` runs 200).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use silo_core::{Durability, Silo, WriteBatch, WriteOptions};

use crate::common::{child_test, opts};

const CHILD_DIR: &str = "SILO_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "SILO_CRASH_CHILD_SEED";
const ACK: &str = "SILO-ACK ";
const KEYS: u64 = 48;

/// A small deterministic generator shared by parent and child.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u64, Vec<u8>),
    Delete(u64),
    Merge(u64, Vec<u8>),
    Batch(Vec<(u64, Vec<u8>)>),
    Compact,
    ColdCompact,
}

/// The i-th operation of the workload for `seed`.
fn workload(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    (0..count)
        .map(|i| {
            let key = rng.below(KEYS);
            let len = 8 + rng.below(120) as usize;
            match rng.below(100) {
                0..=39 => Op::Put(key, crate::common::value(key, i as u64, len)),
                40..=54 => Op::Delete(key),
                55..=79 => Op::Merge(key, vec![b'a' + (i % 26) as u8; 1 + (i % 5)]),
                80..=89 => Op::Batch(
                    (0..1 + rng.below(5))
                        .map(|j| {
                            let k = rng.below(KEYS);
                            (k, crate::common::value(k, (i * 10) as u64 + j, len))
                        })
                        .collect(),
                ),
                90..=97 => Op::Compact,
                _ => Op::ColdCompact,
            }
        })
        .collect()
}

fn apply(model: &mut BTreeMap<u64, Vec<u8>>, op: &Op) {
    match op {
        Op::Put(k, v) => {
            model.insert(*k, v.clone());
        }
        Op::Delete(k) => {
            model.remove(k);
        }
        Op::Merge(k, v) => model.entry(*k).or_default().extend_from_slice(v),
        Op::Batch(puts) => {
            for (k, v) in puts {
                model.insert(*k, v.clone());
            }
        }
        Op::Compact | Op::ColdCompact => {}
    }
}

/// Runs `op`, the `i`-th, with its own durability: one write in four is
/// `Buffered` in this `Sync` store (a process kill keeps the page cache, so
/// every acknowledged write must survive either way).
fn run_op(silo: &Silo, op: &Op, i: usize) {
    let wo = if i % 4 == 3 {
        WriteOptions::durability(Durability::Buffered)
    } else {
        WriteOptions::default()
    };
    match op {
        Op::Put(k, v) => silo.put_with(*k, v, wo).expect("put"),
        Op::Delete(k) => silo.delete_with(*k, wo).expect("delete"),
        Op::Merge(k, v) => silo.merge_with(*k, v, wo).expect("merge"),
        Op::Batch(puts) => {
            let mut b = WriteBatch::new();
            for (k, v) in puts {
                b.put(*k, v);
            }
            silo.write_with(&b, wo).expect("batch");
        }
        Op::Compact => {
            silo.compact().expect("compact");
        }
        Op::ColdCompact => {
            silo.compact_cold().expect("cold compact");
        }
    }
}

fn child_opts() -> silo_core::Options {
    let mut o = opts().with_durability(Durability::Sync);
    o.auto_compact = true;
    o.thresholds.pending_ops = 20;
    o.thresholds.min_interval = std::time::Duration::ZERO;
    o
}

/// Not a test by itself: the body of the child process the crash test
/// spawns (it does nothing unless the parent set its environment).
#[test]
fn crash_child_process() {
    let (Ok(dir), Ok(seed)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().expect("seed");
    let silo = Silo::open(Path::new(&dir), child_opts()).expect("child open");
    let mut out = std::io::stdout().lock();
    for (i, op) in workload(seed, 100_000).iter().enumerate() {
        run_op(&silo, op, i);
        writeln!(out, "{ACK}{i}").expect("stdout");
        out.flush().expect("stdout");
    }
}

fn read_all(silo: &Silo) -> BTreeMap<u64, Vec<u8>> {
    silo.iter().map(|r| r.expect("iter after crash")).collect()
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    let iterations: u64 = std::env::var("SILO_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng(0x5eed_cafe ^ iterations);
    let mut checked = 0;
    for iteration in 0..iterations {
        let dir = tempfile::tempdir().expect("tempdir");
        let seed = rng.next();
        let kill_after = 1 + rng.below(120) as usize;
        let mut child = child_test("crash::crash_child_process")
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut acked: Option<usize> = None;
        let mut lines = BufReader::new(stdout).lines();
        let mut killed = false;
        for line in lines.by_ref() {
            let line = line.expect("child output");
            if let Some(n) = line.strip_prefix(ACK) {
                acked = Some(n.trim().parse().expect("ack number"));
                if !killed && acked.is_some_and(|a| a + 1 >= kill_after) {
                    child.kill().expect("SIGKILL");
                    killed = true;
                }
            }
        }
        let status = child.wait().expect("wait child");
        assert!(
            killed,
            "iteration {iteration}: child exited early ({status})"
        );
        let ops = workload(seed, acked.map_or(0, |a| a + 2));
        let done = acked.map_or(0, |a| a + 1);
        let mut before = BTreeMap::new();
        for op in &ops[..done] {
            apply(&mut before, op);
        }
        let mut after = before.clone();
        if let Some(op) = ops.get(done) {
            apply(&mut after, op);
        }
        let silo = Silo::open(dir.path(), child_opts())
            .unwrap_or_else(|e| panic!("iteration {iteration} (seed {seed}): reopen failed: {e}"));
        let found = read_all(&silo);
        assert!(
            found == before || found == after,
            "iteration {iteration} (seed {seed}, {done} acknowledged): store holds neither the acknowledged state nor it plus the op in flight ({:?})",
            ops.get(done)
        );
        for key in 0..KEYS {
            assert_eq!(
                silo.get(key).expect("get"),
                found.get(&key).cloned(),
                "key {key}"
            );
        }
        checked += done;
    }
    println!("crash test: {iterations} kills, {checked} acknowledged operations verified");
}

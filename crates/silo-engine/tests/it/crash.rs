//! Crash test of the engine: a child process ingests (single writes,
//! batches within a shard and across shards, merges, compactions of its
//! own beside each shard's background worker) and reports every
//! acknowledged operation; the parent kills it with SIGKILL after a random
//! number of acknowledgements, reopens the engine and checks that it holds
//! exactly the acknowledged state, or that state plus the operation in
//! flight (a cross-shard batch whole or not at all: merges would show a
//! part applied twice or missing).
//!
//! `SILO_CRASH_ITERATIONS` sets the number of kills (default 8;
//! `cargo xtask crash --layer engine` runs 200).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_engine::{Engine, EngineOptions};

use crate::common::{kill_child_after, opts};

const CHILD_DIR: &str = "SILO_ENGINE_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "SILO_ENGINE_CRASH_CHILD_SEED";
const ACK: &str = "SILO-ACK ";
const KEYS: u64 = 64;

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
    /// Puts and merges over random keys: usually across shards.
    Batch(Vec<(u64, Option<Vec<u8>>)>),
    Compact,
}

fn workload(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    (0..count)
        .map(|i| {
            let key = rng.below(KEYS);
            let tick = tick(i);
            match rng.below(100) {
                0..=29 => Op::Put(key, i.to_le_bytes().to_vec()),
                30..=39 => Op::Delete(key),
                40..=59 => Op::Merge(key, tick),
                60..=95 => Op::Batch(
                    (0..2 + rng.below(6))
                        .map(|j| {
                            let k = rng.below(KEYS);
                            let n = u64::try_from(i).unwrap_or(0) * 10 + j;
                            let put = (j % 2 == 0).then(|| n.to_le_bytes().to_vec());
                            (k, put)
                        })
                        .collect(),
                ),
                _ => Op::Compact,
            }
        })
        .collect()
}

/// The merge operand of op `i`: a letter, once to three times.
fn tick(i: usize) -> Vec<u8> {
    vec![b'a' + u8::try_from(i % 26).unwrap_or(0); 1 + (i % 3)]
}

fn apply(model: &mut BTreeMap<u64, Vec<u8>>, op: &Op, i: usize) {
    let tick = tick(i);
    match op {
        Op::Put(k, v) => {
            model.insert(*k, v.clone());
        }
        Op::Delete(k) => {
            model.remove(k);
        }
        Op::Merge(k, v) => model.entry(*k).or_default().extend_from_slice(v),
        Op::Batch(items) => {
            for (k, put) in items {
                match put {
                    Some(v) => {
                        model.insert(*k, v.clone());
                    }
                    None => model.entry(*k).or_default().extend_from_slice(&tick),
                }
            }
        }
        Op::Compact => {}
    }
}

fn run_op(db: &Engine, op: &Op, i: usize) {
    let tick = tick(i);
    // One write in three is Buffered in this Sync engine: a kill keeps the
    // page cache, so every acknowledged write must survive either way.
    let wo = if i % 3 == 2 {
        WriteOptions::durability(Durability::Buffered)
    } else {
        WriteOptions::default()
    };
    match op {
        Op::Put(k, v) => db.put_with(*k, v, wo).expect("put"),
        Op::Delete(k) => db.delete_with(*k, wo).expect("delete"),
        Op::Merge(k, v) => db.merge_with(*k, v, wo).expect("merge"),
        Op::Batch(items) => {
            let mut b = WriteBatch::new();
            for (k, put) in items {
                match put {
                    Some(v) => b.put(*k, v),
                    None => b.merge(*k, &tick),
                };
            }
            db.write_with(&b, wo).expect("batch");
        }
        Op::Compact => {
            db.compact().expect("compact");
        }
    }
}

fn child_opts() -> EngineOptions {
    let mut o = opts(4);
    o.store.durability = Durability::Sync;
    o.store.auto_compact = true;
    o.store.thresholds.pending_ops = 16;
    o.store.thresholds.min_interval = std::time::Duration::ZERO;
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
    let db = Engine::open(Path::new(&dir), child_opts()).expect("child open");
    let mut out = std::io::stdout().lock();
    for (i, op) in workload(seed, 100_000).iter().enumerate() {
        run_op(&db, op, i);
        writeln!(out, "{ACK}{i}").expect("stdout");
        out.flush().expect("stdout");
    }
}

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_write_and_splits_no_batch() {
    let iterations: u64 = std::env::var("SILO_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut rng = Rng(0xe7e1_0e5e ^ iterations);
    let mut checked = 0;
    for iteration in 0..iterations {
        let dir = tempfile::tempdir().expect("tempdir");
        let seed = rng.next();
        let kill_after = 1 + usize::try_from(rng.below(150)).unwrap_or(0);
        let acked = kill_child_after(
            "crash::crash_child_process",
            &[
                (CHILD_DIR, dir.path().to_string_lossy().into_owned()),
                (CHILD_SEED, seed.to_string()),
            ],
            ACK,
            kill_after,
        );
        let ops = workload(seed, acked.map_or(0, |a| a + 2));
        let done = acked.map_or(0, |a| a + 1);
        let mut before = BTreeMap::new();
        for (i, op) in ops[..done].iter().enumerate() {
            apply(&mut before, op, i);
        }
        let mut after = before.clone();
        if let Some(op) = ops.get(done) {
            apply(&mut after, op, done);
        }
        let db = Engine::open(dir.path(), child_opts())
            .unwrap_or_else(|e| panic!("iteration {iteration} (seed {seed}): reopen failed: {e}"));
        let found: BTreeMap<u64, Vec<u8>> = db.iter().map(|r| r.expect("iter")).collect();
        assert!(
            found == before || found == after,
            "iteration {iteration} (seed {seed}, {done} acknowledged): neither the acknowledged state nor it plus the op in flight ({:?})",
            ops.get(done)
        );
        checked += done;
    }
    println!("engine crash test: {iterations} kills, {checked} acknowledged operations verified");
}

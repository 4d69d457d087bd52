//! The engine against a `BTreeMap` model: puts, deletes, merges,
//! cross-shard batches, snapshots, compactions, checkpoints and reopens
//! (clean and not), with the background scheduler compacting throughout.

use std::collections::BTreeMap;

use proptest::prelude::*;
use silo_core::WriteBatch;
use std::time::Duration;

use silo_engine::{Engine, SchedulerOptions};

use crate::common::{contents, opts};

#[derive(Clone, Debug)]
enum Op {
    Put(u64, Vec<u8>),
    Delete(u64),
    Merge(u64, Vec<u8>),
    Batch(Vec<(u8, u64, Vec<u8>)>),
    CheckSnapshot,
    Compact { cold: bool },
    Checkpoint,
    Reopen { clean: bool },
}

fn key() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0u64..8, 1 => 0u64..200]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..24)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key().prop_map(Op::Delete),
        3 => (key(), value()).prop_map(|(k, v)| Op::Merge(k, v)),
        3 => prop::collection::vec((0u8..3, key(), value()), 1..6).prop_map(Op::Batch),
        1 => Just(Op::CheckSnapshot),
        1 => any::<bool>().prop_map(|cold| Op::Compact { cold }),
        1 => Just(Op::Checkpoint),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

type Model = BTreeMap<u64, Vec<u8>>;

fn apply(model: &mut Model, kind: u8, key: u64, v: &[u8]) {
    match kind {
        0 => {
            model.insert(key, v.to_vec());
        }
        1 => {
            model.remove(&key);
        }
        _ => model.entry(key).or_default().extend_from_slice(v),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SILO_ENGINE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_a_btreemap(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let cps = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut checkpoints = 0;
        let mut rest: &[Op] = &ops;
        // One engine per stretch of operations between reopens, each with
        // the background scheduler compacting beside the operations.
        loop {
            let e = Engine::open(dir.path(), model_opts()).unwrap();
            let bg = e.start_background(SchedulerOptions {
                interval: Duration::from_millis(1),
                ..SchedulerOptions::default()
            }).unwrap();
            let mut reopen = None;
            while let Some((op, tail)) = rest.split_first() {
                rest = tail;
                match op {
                    Op::Put(k, v) => { e.put(*k, v).unwrap(); apply(&mut model, 0, *k, v); }
                    Op::Delete(k) => { e.delete(*k).unwrap(); apply(&mut model, 1, *k, &[]); }
                    Op::Merge(k, v) => { e.merge(*k, v).unwrap(); apply(&mut model, 2, *k, v); }
                    Op::Batch(items) => {
                        let mut b = WriteBatch::new();
                        for (kind, k, v) in items {
                            match kind { 0 => b.put(*k, v), 1 => b.delete(*k), _ => b.merge(*k, v) };
                            apply(&mut model, *kind, *k, v);
                        }
                        e.write(&b).unwrap();
                    }
                    Op::CheckSnapshot => {
                        let snap = e.snapshot().unwrap();
                        let seen: Model = snap.iter().map(|r| r.unwrap()).collect();
                        prop_assert_eq!(&seen, &model);
                    }
                    Op::Compact { cold } => {
                        e.compact_with(silo_engine::CompactOptions { threads: None, cold: *cold, ..Default::default() }).unwrap();
                    }
                    Op::Checkpoint => {
                        checkpoints += 1;
                        let cp = cps.path().join(format!("cp-{checkpoints}"));
                        e.checkpoint(&cp).unwrap();
                        let copy = Engine::open(&cp, opts(4)).unwrap();
                        prop_assert_eq!(&contents(&copy), &model);
                    }
                    Op::Reopen { clean } => {
                        reopen = Some(*clean);
                        break;
                    }
                }
            }
            prop_assert_eq!(bg.stats().errors, 0, "{:?}", bg.stats());
            drop(bg);
            match reopen {
                Some(true) => e.close().unwrap(),
                Some(false) => drop(e),
                None => {
                    for k in 0..200u64 {
                        prop_assert_eq!(e.get(k).unwrap(), model.get(&k).cloned(), "key {}", k);
                    }
                    prop_assert_eq!(&contents(&e), &model);
                    break;
                }
            }
        }
    }
}

/// The model's engine: 4 shards whose policy finds work often, so the
/// scheduler compacts during the run.
fn model_opts() -> silo_engine::EngineOptions {
    let mut o = opts(4);
    o.store.thresholds.pending_ops = 4;
    o.store.thresholds.min_interval = Duration::ZERO;
    o
}

/// Every file under `dir` (`LOCK` aside), by relative path.
fn files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if entry.file_name() != "LOCK" {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SILO_ENGINE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12),
        ..ProptestConfig::default()
    })]

    /// Two engines given the same writes and the same index seed, one
    /// compacted on one thread and the other on two, read the same and
    /// hold byte-for-byte the same files.
    #[test]
    fn parallel_and_sequential_compaction_give_identical_reads_and_files(
        ops in prop::collection::vec(op(), 1..80),
        cold in any::<bool>(),
    ) {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut o = opts(8);
        o.store.index_seed = Some(0x5EED);
        let engines: Vec<Engine> = dirs.iter().map(|d| Engine::open(d.path(), o.clone()).unwrap()).collect();
        for e in &engines {
            for op in &ops {
                match op {
                    Op::Put(k, v) => e.put(*k, v).unwrap(),
                    Op::Delete(k) => e.delete(*k).unwrap(),
                    Op::Merge(k, v) => e.merge(*k, v).unwrap(),
                    Op::Batch(items) => {
                        let mut b = WriteBatch::new();
                        for (kind, k, v) in items {
                            match kind { 0 => b.put(*k, v), 1 => b.delete(*k), _ => b.merge(*k, v) };
                        }
                        e.write(&b).unwrap();
                    }
                    _ => {}
                }
            }
        }
        for (e, threads) in engines.iter().zip([1, 2]) {
            e.compact_with(silo_engine::CompactOptions { threads: Some(threads), cold, ..Default::default() }).unwrap();
        }
        prop_assert_eq!(contents(&engines[0]), contents(&engines[1]));
        for e in engines {
            e.close().unwrap();
        }
        let (a, b) = (files(dirs[0].path()), files(dirs[1].path()));
        prop_assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (name, bytes) in &a {
            prop_assert!(bytes == &b[name], "{} differs", name);
        }
    }
}

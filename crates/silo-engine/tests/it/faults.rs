//! Fault injection through silo-io's seam into the engine: every write,
//! sync, rename, allocation, truncation, creation and removal of a workload
//! (shards, batch log, engine manifest, checkpoints) is failed in turn, and
//! every write torn; the failing call returns an error, a reopen holds every
//! acknowledged write (and perhaps the failed one, whole), and every
//! checkpoint that succeeded opens with exactly its contents.

use std::collections::BTreeMap;
use std::path::Path;

use silo_core::WriteBatch;
use silo_engine::Engine;
use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};

use crate::common::{contents, keys_on_distinct_shards, opts};

#[derive(Clone, Debug)]
enum Op {
    Put(u64, Vec<u8>),
    Merge(u64, Vec<u8>),
    Delete(u64),
    Batch(Vec<(u64, Vec<u8>)>),
    Compact,
    Cold,
    Flush,
    Checkpoint,
}

type Model = BTreeMap<u64, Vec<u8>>;

fn workload() -> Vec<Op> {
    let keys = keys_on_distinct_shards(2);
    let mut ops = Vec::new();
    for round in 0..2u8 {
        for k in 0..4u64 {
            let len = if k % 2 == 0 { 20 } else { 50 };
            ops.push(Op::Put(k, vec![b'a' + round; len]));
        }
        ops.push(Op::Merge(keys[1], vec![b'0' + round; 3]));
        ops.push(Op::Batch(
            keys.iter()
                .map(|k| (*k + 100, vec![b'b' + round; 40]))
                .collect(),
        ));
        ops.push(Op::Delete(u64::from(round)));
        ops.push(Op::Compact);
        ops.push(Op::Checkpoint);
        ops.push(Op::Flush);
        if round == 0 {
            ops.push(Op::Cold);
        }
    }
    ops
}

fn apply(model: &mut Model, op: &Op) {
    match op {
        Op::Put(k, v) => {
            model.insert(*k, v.clone());
        }
        Op::Merge(k, v) => model.entry(*k).or_default().extend_from_slice(v),
        Op::Delete(k) => {
            model.remove(k);
        }
        Op::Batch(puts) => {
            for (k, v) in puts {
                model.insert(*k, v.clone());
            }
        }
        _ => {}
    }
}

struct Outcome {
    acked: Model,
    maybe: Model,
    checkpoints: Vec<(std::path::PathBuf, Model)>,
    fired: u64,
    counts: Vec<(FaultOp, u64)>,
}

/// Runs the workload on `root/db` with `plan` installed over `root`.
fn run_with(root: &Path, plan: FaultPlan) -> Outcome {
    let db = Engine::open(root.join("db"), opts(2)).expect("open");
    let guard = install(root, plan);
    let mut out = Outcome {
        acked: Model::new(),
        maybe: Model::new(),
        checkpoints: Vec::new(),
        fired: 0,
        counts: Vec::new(),
    };
    for (i, op) in workload().iter().enumerate() {
        let result = match op {
            Op::Put(k, v) => db.put(*k, v),
            Op::Merge(k, v) => db.merge(*k, v),
            Op::Delete(k) => db.delete(*k),
            Op::Batch(puts) => {
                let mut b = WriteBatch::new();
                for (k, v) in puts {
                    b.put(*k, v);
                }
                db.write(&b)
            }
            Op::Compact => db.compact().map(drop),
            Op::Cold => db
                .compact_with(silo_engine::CompactOptions {
                    cold: true,
                    ..Default::default()
                })
                .map(drop),
            Op::Flush => db.flush(),
            Op::Checkpoint => {
                let cp = root.join(format!("cp-{i}"));
                let r = db.checkpoint(&cp);
                if r.is_ok() {
                    out.checkpoints.push((cp, out.acked.clone()));
                }
                r
            }
        };
        out.maybe = out.acked.clone();
        apply(&mut out.maybe, op);
        match result {
            Ok(()) => out.acked = out.maybe.clone(),
            Err(_) => break,
        }
    }
    // Closing may fail too (a store refuses writes after a failure).
    drop(db);
    out.fired = guard.fired();
    out.counts = FaultOp::ALL
        .iter()
        .map(|op| (*op, guard.count(*op)))
        .collect();
    drop(guard);
    out
}

#[test]
fn every_failed_or_torn_call_leaves_an_engine_that_recovers_acknowledged_writes() {
    let probe = tempfile::tempdir().unwrap();
    let clean = run_with(probe.path(), FaultPlan::new());
    assert_eq!(clean.checkpoints.len(), 2, "both checkpoints ran");
    let mut cases = 0;
    for (op, n) in clean.counts {
        let actions: &[FaultAction] = if op == FaultOp::Write {
            &[FaultAction::Fail, FaultAction::Torn { keep: 70 }]
        } else {
            &[FaultAction::Fail]
        };
        for nth in 1..=n {
            for action in actions {
                let root = tempfile::tempdir().unwrap();
                let o = run_with(root.path(), FaultPlan::new().on(op, nth, *action));
                if o.fired == 0 {
                    continue;
                }
                let case = format!("{op:?} #{nth} {action:?}");
                let db = Engine::open(root.path().join("db"), opts(2))
                    .unwrap_or_else(|e| panic!("{case}: reopen failed: {e}"));
                let found = contents(&db);
                assert!(
                    found == o.acked || found == o.maybe,
                    "{case}: the engine holds neither the acknowledged writes nor them plus the failed one"
                );
                for (cp, expected) in &o.checkpoints {
                    let copy = Engine::open(cp, opts(2))
                        .unwrap_or_else(|e| panic!("{case}: checkpoint {cp:?} does not open: {e}"));
                    assert_eq!(&contents(&copy), expected, "{case}: checkpoint {cp:?}");
                }
                cases += 1;
            }
        }
    }
    println!("engine fault matrix: {cases} cases");
    assert!(cases > 20, "only {cases} fault cases ran");
}

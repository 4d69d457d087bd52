//! Model-based property test: random operations against a `BTreeMap`,
//! with both store durabilities, per-write durability overrides, hot keys
//! among a few hundred, and snapshots read while writes go on.

use std::collections::BTreeMap;

use proptest::prelude::*;
use silo_core::{Durability, Silo, WriteBatch, WriteOptions};

use crate::common::{open, opts};

#[derive(Clone, Debug)]
enum Op {
    Put(u64, Vec<u8>, WriteOptions),
    Delete(u64, WriteOptions),
    Merge(u64, Vec<u8>, WriteOptions),
    Batch(Vec<(u8, u64, Vec<u8>)>, WriteOptions),
    /// Take a snapshot, write these, then check the snapshot still shows
    /// the store as it was.
    Snapshot(Vec<(u8, u64, Vec<u8>)>),
    Compact,
    ColdCompact,
    Reopen,
    Checkpoint,
    Flush,
}

/// Keys not among the hot ones.
const COLD_KEYS: u64 = 300;

/// Mostly a few hot keys, then a few hundred others and the extremes, so 0
/// and u64::MAX are exercised and the index grows.
fn key() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..8,
        3 => 0u64..COLD_KEYS,
        1 => prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 40)],
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(b'a'..=b'z', 0..8),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

fn write_options() -> impl Strategy<Value = WriteOptions> {
    prop_oneof![
        6 => Just(WriteOptions::default()),
        1 => Just(WriteOptions::durability(Durability::Sync)),
        1 => Just(WriteOptions::durability(Durability::Buffered)),
    ]
}

fn writes() -> impl Strategy<Value = Vec<(u8, u64, Vec<u8>)>> {
    proptest::collection::vec((0u8..3, key(), bytes()), 1..6)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), bytes(), write_options()).prop_map(|(k, v, w)| Op::Put(k, v, w)),
        2 => (key(), write_options()).prop_map(|(k, w)| Op::Delete(k, w)),
        5 => (key(), proptest::collection::vec(b'a'..=b'z', 1..6), write_options())
            .prop_map(|(k, v, w)| Op::Merge(k, v, w)),
        2 => (writes(), write_options()).prop_map(|(b, w)| Op::Batch(b, w)),
        1 => writes().prop_map(Op::Snapshot),
        2 => Just(Op::Compact),
        1 => Just(Op::ColdCompact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Flush),
    ]
}

fn apply_model(model: &mut BTreeMap<u64, Vec<u8>>, tag: u8, key: u64, v: &[u8]) {
    match tag {
        0 => {
            model.insert(key, v.to_vec());
        }
        1 => {
            model.remove(&key);
        }
        _ => model.entry(key).or_default().extend_from_slice(v),
    }
}

fn batch_of(ops: &[(u8, u64, Vec<u8>)], model: &mut BTreeMap<u64, Vec<u8>>) -> WriteBatch {
    let mut b = WriteBatch::new();
    for (tag, k, v) in ops {
        match tag {
            0 => b.put(*k, v),
            1 => b.delete(*k),
            _ => b.merge(*k, v),
        };
        apply_model(model, *tag, *k, v);
    }
    b
}

fn verify(silo: &Silo, model: &BTreeMap<u64, Vec<u8>>, keys: &[u64]) -> Result<(), TestCaseError> {
    for k in keys {
        prop_assert_eq!(
            silo.get(*k).expect("get"),
            model.get(k).cloned(),
            "key {}",
            k
        );
    }
    let mut all: Vec<(u64, Vec<u8>)> = silo.iter().collect::<Result<_, _>>().expect("iter");
    all.sort();
    let want: Vec<(u64, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
    prop_assert_eq!(all, want);
    Ok(())
}

fn run(ops: Vec<Op>, slack: u32, durability: Durability) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let mut o = opts();
    o.value_slack_percent = slack;
    o.durability = durability;
    let mut silo = Some(Silo::open(&path, o.clone()).expect("open"));
    let mut model = BTreeMap::new();
    let keys: Vec<u64> = (0..COLD_KEYS)
        .chain([u64::MAX, u64::MAX - 1, 1 << 40])
        .collect();
    for (step, op) in ops.into_iter().enumerate() {
        let s = silo.as_ref().expect("open");
        match op {
            Op::Put(k, v, w) => {
                s.put_with(k, &v, w).expect("put");
                apply_model(&mut model, 0, k, &v);
            }
            Op::Delete(k, w) => {
                s.delete_with(k, w).expect("delete");
                apply_model(&mut model, 1, k, &[]);
            }
            Op::Merge(k, v, w) => {
                s.merge_with(k, &v, w).expect("merge");
                apply_model(&mut model, 2, k, &v);
            }
            Op::Batch(ops, w) => {
                let b = batch_of(&ops, &mut model);
                s.write_with(&b, w).expect("batch");
            }
            Op::Snapshot(ops) => {
                let before = model.clone();
                let snap = s.snapshot().expect("snapshot");
                let b = batch_of(&ops, &mut model);
                s.write(&b).expect("batch beside a snapshot");
                for k in &keys {
                    prop_assert_eq!(snap.get(*k).expect("snapshot get"), before.get(k).cloned());
                }
                let mut all: Vec<(u64, Vec<u8>)> = snap
                    .iter()
                    .collect::<Result<_, _>>()
                    .expect("snapshot iter");
                all.sort();
                let want: Vec<(u64, Vec<u8>)> =
                    before.iter().map(|(k, v)| (*k, v.clone())).collect();
                prop_assert_eq!(all, want);
            }
            Op::Compact => {
                s.compact().expect("compact");
            }
            Op::ColdCompact => {
                s.compact_cold().expect("cold compact");
            }
            Op::Flush => s.flush().expect("flush"),
            Op::Reopen => {
                silo.take().expect("open").close().expect("close");
                silo = Some(Silo::open(&path, o.clone()).expect("reopen"));
            }
            Op::Checkpoint => {
                let dest = dir.path().join(format!("checkpoint-{step}"));
                s.checkpoint(&dest).expect("checkpoint");
                let copy = Silo::open(&dest, o.clone()).expect("open checkpoint");
                verify(&copy, &model, &keys)?;
            }
        }
        verify(silo.as_ref().expect("open"), &model, &keys)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_btreemap(
        ops in proptest::collection::vec(op(), 1..120),
        slack in prop_oneof![Just(0u32), Just(50)],
        durability in prop_oneof![Just(Durability::Buffered), Just(Durability::Sync)],
    ) {
        run(ops, slack, durability)?;
    }
}

#[test]
fn regression_merge_over_in_place_record_is_not_applied_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.put(1, b"abcdefgh").expect("put");
    s.compact().expect("compact");
    s.merge(1, b"x").expect("merge");
    s.compact().expect("compact in place");
    assert_eq!(s.get(1).expect("get").as_deref(), Some(&b"abcdefghx"[..]));
    s.merge(1, b"y").expect("merge");
    assert_eq!(s.get(1).expect("get").as_deref(), Some(&b"abcdefghxy"[..]));
}

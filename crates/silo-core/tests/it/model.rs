//! Model-based property test: random operations against a `BTreeMap`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use silo_core::{Silo, WriteBatch};

use crate::common::{open, opts};

#[derive(Clone, Debug)]
enum Op {
    Put(u64, Vec<u8>),
    Delete(u64),
    Merge(u64, Vec<u8>),
    Batch(Vec<(u8, u64, Vec<u8>)>),
    Compact,
    ColdCompact,
    Reopen,
    Checkpoint,
}

/// Keys mix small numbers with the extremes, so 0 and u64::MAX are exercised.
fn key() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..12, Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 40)]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(b'a'..=b'z', 0..8),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), bytes()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key().prop_map(Op::Delete),
        5 => (key(), proptest::collection::vec(b'a'..=b'z', 1..6)).prop_map(|(k, v)| Op::Merge(k, v)),
        2 => proptest::collection::vec((0u8..3, key(), bytes()), 1..6).prop_map(Op::Batch),
        2 => Just(Op::Compact),
        1 => Just(Op::ColdCompact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Checkpoint),
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

fn run(ops: Vec<Op>, slack: u32) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let mut o = opts();
    o.value_slack_percent = slack;
    let mut silo = Some(Silo::open(&path, o.clone()).expect("open"));
    let mut model = BTreeMap::new();
    let keys: Vec<u64> = (0..12).chain([u64::MAX, u64::MAX - 1, 1 << 40]).collect();
    for (step, op) in ops.into_iter().enumerate() {
        let s = silo.as_ref().expect("open");
        match op {
            Op::Put(k, v) => {
                s.put(k, &v).expect("put");
                apply_model(&mut model, 0, k, &v);
            }
            Op::Delete(k) => {
                s.delete(k).expect("delete");
                apply_model(&mut model, 1, k, &[]);
            }
            Op::Merge(k, v) => {
                s.merge(k, &v).expect("merge");
                apply_model(&mut model, 2, k, &v);
            }
            Op::Batch(ops) => {
                let mut b = WriteBatch::new();
                for (tag, k, v) in &ops {
                    match tag {
                        0 => b.put(*k, v),
                        1 => b.delete(*k),
                        _ => b.merge(*k, v),
                    };
                    apply_model(&mut model, *tag, *k, v);
                }
                s.write(&b).expect("batch");
            }
            Op::Compact => {
                s.compact().expect("compact");
            }
            Op::ColdCompact => {
                s.compact_cold().expect("cold compact");
            }
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
    fn store_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..60), slack in prop_oneof![Just(0u32), Just(50)]) {
        run(ops, slack)?;
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

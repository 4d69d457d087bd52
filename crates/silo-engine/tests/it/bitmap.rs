//! The bitmap layer: the registry, single-bit operations, whole bitmaps,
//! batches, bulk builds and the alive bitmap, against `BTreeSet` models,
//! across compactions and reopens (clean and not).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use roaring::RoaringBitmap;
use silo_engine::{
    BitmapBatch, BitmapStore, EngineError, EngineOptions, FieldKind, MAX_FIELD_NAME,
};

fn opts() -> EngineOptions {
    let mut o = EngineOptions {
        shards: Some(4),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    };
    o.store.auto_compact = false;
    o
}

fn bits(b: &RoaringBitmap) -> Vec<u32> {
    b.iter().collect()
}

#[test]
fn fields_keep_their_ids_across_reopen_and_kinds_do_not_mix() {
    let dir = tempfile::tempdir().unwrap();
    let s = BitmapStore::open(dir.path(), opts()).unwrap();
    let color = s.field("color").unwrap();
    let size = s.field("size").unwrap();
    assert_ne!(color, size);
    assert_eq!(
        s.field("color").unwrap(),
        color,
        "registering twice gives the same id"
    );
    s.set(size, 3, 9).unwrap();
    s.close().unwrap();
    let s = BitmapStore::open(dir.path(), opts()).unwrap();
    assert_eq!(s.field_id("color"), Some(color));
    assert_eq!(s.field_id("size"), Some(size));
    assert_eq!(s.field_id("weight"), None);
    assert_eq!(
        s.fields(),
        vec![(color, "color".to_owned()), (size, "size".to_owned())]
    );
    assert_eq!(bits(&s.get(size, 3).unwrap()), vec![9]);
    let weight = s.field("weight").unwrap();
    assert!(weight.get() > size.get(), "ids are never reused");
    drop(s);
    // Registered before an unclean end: still there.
    let s = BitmapStore::open(dir.path(), opts()).unwrap();
    assert_eq!(s.field_id("weight"), Some(weight));
    let _ = FieldKind::SortLayers;
}

#[test]
fn bad_arguments_are_typed_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let s = BitmapStore::open(dir.path(), opts()).unwrap();
    let t = BitmapStore::open(other.path(), opts()).unwrap();
    let a = s.field("a").unwrap();
    assert!(matches!(
        s.set(a, 1 << 48, 1),
        Err(EngineError::InvalidArgument { name: "value", .. })
    ));
    assert!(matches!(
        s.field(""),
        Err(EngineError::InvalidArgument {
            name: "field name",
            ..
        })
    ));
    assert!(matches!(
        s.field(&"x".repeat(MAX_FIELD_NAME + 1)),
        Err(EngineError::InvalidArgument { .. })
    ));
    assert!(s.field(&"x".repeat(MAX_FIELD_NAME)).is_ok());
    // An id another store gave out, for a field this one does not have.
    let t1 = t.field("t1").unwrap();
    let t2 = t.field("t2").unwrap();
    let t3 = t.field("t3").unwrap();
    assert!(matches!(
        s.set(t3, 1, 1),
        Err(EngineError::InvalidField { .. })
    ));
    let mut batch = BitmapBatch::new();
    batch.set(a, 1, 1).unwrap().set(t3, 1, 1).unwrap();
    assert!(matches!(
        s.write(&batch),
        Err(EngineError::InvalidField { .. })
    ));
    assert!(
        s.get(a, 1).unwrap().is_empty(),
        "a refused batch writes nothing"
    );
    let bulk = s.bulk();
    bulk.part().add(t3, 1, 1).unwrap();
    bulk.part().add(a, 2, 2).unwrap();
    assert!(bulk.finish().is_err());
    assert!(
        s.get(a, 2).unwrap().is_empty(),
        "a refused build writes nothing"
    );
    let _ = (t1, t2);
    // A sort field's id is not a bitmap field's, nor the other way round.
    let score = s.sort_field("a").unwrap();
    assert_ne!(score, a, "one name, two kinds, two ids");
    assert!(matches!(
        s.set(score, 1, 1),
        Err(EngineError::InvalidField { .. })
    ));
    assert!(matches!(
        s.sort_range(a, silo_engine::SortRange::Lt(5)),
        Err(EngineError::InvalidField { .. })
    ));
    let mut batch = BitmapBatch::new();
    batch.change_sort_value(a, 1, None, Some(3));
    assert!(matches!(
        s.write(&batch),
        Err(EngineError::InvalidField { .. })
    ));
    // A merge operator of the caller's own is refused.
    let mut o = opts();
    o.store.merge_operator = Some(std::sync::Arc::new(silo_engine::LayerOperator));
    let third = tempfile::tempdir().unwrap();
    assert!(matches!(
        BitmapStore::open(third.path(), o),
        Err(EngineError::InvalidOptions { .. })
    ));
}

#[test]
fn a_damaged_stored_bitmap_is_a_typed_error_not_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = BitmapStore::open(dir.path(), opts()).unwrap();
    let a = s.field("a").unwrap();
    s.set(a, 5, 1).unwrap();
    // Bytes that are not a bitmap, put under the bitmap's key directly.
    let k = (u64::from(a.get()) << 48) | 5;
    s.engine().put(k, b"not a bitmap").unwrap();
    assert!(matches!(
        s.get(a, 5),
        Err(EngineError::Value { what: "bitmap", .. })
    ));
}

#[derive(Clone, Debug)]
enum Op {
    Set(u8, u64, u32),
    Clear(u8, u64, u32),
    Put(u8, u64, Vec<u32>),
    Delete(u8, u64),
    Alive(bool, u32),
    Batch(Vec<(u8, u8, u64, u32)>),
    Bulk(Vec<(u8, u64, u32)>),
    Compact { cold: bool },
    Reopen { clean: bool },
}

fn doc() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..40, 1 => any::<u32>(), 1 => 65_530u32..65_550]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..4, 1 => Just((1 << 48) - 1)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, value(), doc()).prop_map(|(f, v, d)| Op::Set(f, v, d)),
        3 => (0u8..3, value(), doc()).prop_map(|(f, v, d)| Op::Clear(f, v, d)),
        1 => (0u8..3, value(), prop::collection::vec(doc(), 0..30)).prop_map(|(f, v, d)| Op::Put(f, v, d)),
        1 => (0u8..3, value()).prop_map(|(f, v)| Op::Delete(f, v)),
        2 => (any::<bool>(), doc()).prop_map(|(on, d)| Op::Alive(on, d)),
        2 => prop::collection::vec((0u8..4, 0u8..3, value(), doc()), 1..12).prop_map(Op::Batch),
        1 => prop::collection::vec((0u8..3, value(), doc()), 0..60).prop_map(Op::Bulk),
        1 => any::<bool>().prop_map(|cold| Op::Compact { cold }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// `(field, value)` -> set bits; `None` field: the alive bitmap.
type Model = BTreeMap<(Option<u8>, u64), BTreeSet<u32>>;

fn set_bit(model: &mut Model, at: (Option<u8>, u64), doc: u32, on: bool) {
    let bits = model.entry(at).or_default();
    if on {
        bits.insert(doc);
    } else {
        bits.remove(&doc);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SILO_ENGINE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn bitmaps_match_btreesets(ops in prop::collection::vec(op(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut rest: &[Op] = &ops;
        loop {
            let s = BitmapStore::open(dir.path(), opts()).unwrap();
            let fields = [s.field("f0").unwrap(), s.field("f1").unwrap(), s.field("f2").unwrap()];
            let mut reopen = None;
            while let Some((op, tail)) = rest.split_first() {
                rest = tail;
                match op {
                    Op::Set(f, v, d) => {
                        s.set(fields[*f as usize], *v, *d).unwrap();
                        set_bit(&mut model, (Some(*f), *v), *d, true);
                    }
                    Op::Clear(f, v, d) => {
                        s.clear(fields[*f as usize], *v, *d).unwrap();
                        set_bit(&mut model, (Some(*f), *v), *d, false);
                    }
                    Op::Put(f, v, docs) => {
                        s.put_bitmap(fields[*f as usize], *v, &docs.iter().copied().collect()).unwrap();
                        model.insert((Some(*f), *v), docs.iter().copied().collect());
                    }
                    Op::Delete(f, v) => {
                        s.delete_bitmap(fields[*f as usize], *v).unwrap();
                        model.remove(&(Some(*f), *v));
                    }
                    Op::Alive(on, d) => {
                        if *on { s.set_alive(*d).unwrap() } else { s.clear_alive(*d).unwrap() }
                        set_bit(&mut model, (None, 0), *d, *on);
                    }
                    Op::Batch(items) => {
                        let mut b = BitmapBatch::new();
                        for (kind, f, v, d) in items {
                            let field = fields[*f as usize];
                            match kind {
                                0 => { b.set(field, *v, *d).unwrap(); set_bit(&mut model, (Some(*f), *v), *d, true); }
                                1 => { b.clear(field, *v, *d).unwrap(); set_bit(&mut model, (Some(*f), *v), *d, false); }
                                2 => {
                                    let docs: RoaringBitmap = [*d, d.wrapping_add(1)].into_iter().collect();
                                    b.put(field, *v, &docs).unwrap();
                                    model.insert((Some(*f), *v), docs.iter().collect());
                                }
                                _ => { b.delete(field, *v).unwrap(); model.remove(&(Some(*f), *v)); }
                            }
                        }
                        s.write(&b).unwrap();
                    }
                    Op::Bulk(triples) => {
                        let bulk = s.bulk();
                        std::thread::scope(|sc| {
                            for half in triples.chunks(triples.len().div_ceil(2).max(1)) {
                                let bulk = &bulk;
                                sc.spawn(move || {
                                    let mut part = bulk.part();
                                    for (f, v, d) in half {
                                        part.add(fields[*f as usize], *v, *d).unwrap();
                                    }
                                });
                            }
                        });
                        bulk.finish().unwrap();
                        for (f, v, d) in triples {
                            set_bit(&mut model, (Some(*f), *v), *d, true);
                        }
                    }
                    Op::Compact { cold } => {
                        s.engine().compact_with(silo_engine::CompactOptions { cold: *cold, ..Default::default() }).unwrap();
                    }
                    Op::Reopen { clean } => {
                        reopen = Some(*clean);
                        break;
                    }
                }
            }
            match reopen {
                Some(true) => s.close().unwrap(),
                Some(false) => drop(s),
                None => {
                    for f in 0..3u8 {
                        for v in [0, 1, 2, 3, (1 << 48) - 1] {
                            let want: Vec<u32> = model.get(&(Some(f), v)).map(|b| b.iter().copied().collect()).unwrap_or_default();
                            prop_assert_eq!(bits(&s.get(fields[f as usize], v).unwrap()), want, "field {} value {}", f, v);
                        }
                    }
                    let alive: Vec<u32> = model.get(&(None, 0)).map(|b| b.iter().copied().collect()).unwrap_or_default();
                    prop_assert_eq!(bits(&s.alive().unwrap()), alive);
                    break;
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
enum SortOp {
    /// Change through the diff path (the model supplies the old value).
    Change(u32, Option<u64>),
    /// Set whatever the old value was.
    Set(u32, Option<u64>),
    /// A bulk build of values for documents that have none yet.
    Bulk(Vec<(u32, u64)>),
    Compact {
        cold: bool,
    },
    Reopen {
        clean: bool,
    },
}

fn sort_value() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..16, 1 => any::<u64>(), 1 => Just(u64::MAX)]
}

fn sort_op() -> impl Strategy<Value = SortOp> {
    let doc = || prop_oneof![4 => 0u32..30, 1 => any::<u32>()];
    prop_oneof![
        6 => (doc(), prop::option::weighted(0.85, sort_value())).prop_map(|(d, v)| SortOp::Change(d, v)),
        2 => (doc(), prop::option::weighted(0.85, sort_value())).prop_map(|(d, v)| SortOp::Set(d, v)),
        1 => prop::collection::vec((doc(), sort_value()), 0..12).prop_map(SortOp::Bulk),
        1 => any::<bool>().prop_map(|cold| SortOp::Compact { cold }),
        1 => any::<bool>().prop_map(|clean| SortOp::Reopen { clean }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SILO_ENGINE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        ..ProptestConfig::default()
    })]

    /// Sort layers through the store: values changed by diff or set whole,
    /// across compactions and reopens; ranges, values and top-k pages
    /// (both orders, ties by id) against a scan of the model.
    #[test]
    fn sort_layers_match_a_scan(
        ops in prop::collection::vec(sort_op(), 1..40),
        bounds in prop::collection::vec(sort_value(), 1..4),
        limit in 1usize..6,
    ) {
        use silo_engine::{Order, SortCursor, SortRange};
        let dir = tempfile::tempdir().unwrap();
        let mut model: BTreeMap<u32, u64> = BTreeMap::new();
        let mut rest: &[SortOp] = &ops;
        loop {
            let s = BitmapStore::open(dir.path(), opts()).unwrap();
            let score = s.sort_field("score").unwrap();
            let mut reopen = None;
            while let Some((op, tail)) = rest.split_first() {
                rest = tail;
                match op {
                    SortOp::Change(d, v) => {
                        s.change_sort_value(score, *d, model.get(d).copied(), *v).unwrap();
                        match v { Some(v) => { model.insert(*d, *v); } None => { model.remove(d); } }
                    }
                    SortOp::Set(d, v) => {
                        s.set_sort_value(score, *d, *v).unwrap();
                        match v { Some(v) => { model.insert(*d, *v); } None => { model.remove(d); } }
                    }
                    SortOp::Bulk(items) => {
                        let bulk = s.bulk();
                        let mut part = bulk.part();
                        for (d, v) in items {
                            if !model.contains_key(d) {
                                part.add_sort_value(score, *d, *v);
                                model.insert(*d, *v);
                            }
                        }
                        drop(part);
                        bulk.finish().unwrap();
                    }
                    SortOp::Compact { cold } => {
                        s.engine().compact_with(silo_engine::CompactOptions { cold: *cold, ..Default::default() }).unwrap();
                    }
                    SortOp::Reopen { clean } => { reopen = Some(*clean); break; }
                }
            }
            match reopen {
                Some(true) => s.close().unwrap(),
                Some(false) => drop(s),
                None => {
                    for (d, v) in &model {
                        prop_assert_eq!(s.sort_value(score, *d).unwrap(), Some(*v));
                    }
                    for b in &bounds {
                        for r in [SortRange::Lt(*b), SortRange::Ge(*b), SortRange::Eq(*b), SortRange::Between(b / 2, *b)] {
                            let want: Vec<u32> = model.iter().filter(|(_, v)| r.contains(**v)).map(|(d, _)| *d).collect();
                            prop_assert_eq!(bits(&s.sort_range(score, r).unwrap()), want, "{:?}", r);
                        }
                    }
                    let everything: RoaringBitmap = (0..30).chain(model.keys().copied()).collect();
                    for order in [Order::Descending, Order::Ascending] {
                        let mut want: Vec<(u32, u64)> = model.iter().map(|(d, v)| (*d, *v)).collect();
                        want.sort_by(|a, b| match order {
                            Order::Descending => b.1.cmp(&a.1),
                            Order::Ascending => a.1.cmp(&b.1),
                        }.then(a.0.cmp(&b.0)));
                        let mut got = Vec::new();
                        let mut cursor: Option<SortCursor> = None;
                        loop {
                            let page = s.top_k(score, &everything, order, limit, cursor).unwrap();
                            got.extend_from_slice(&page.hits);
                            match page.next { Some(c) => cursor = Some(c), None => break }
                            prop_assert!(got.len() <= want.len());
                        }
                        prop_assert_eq!(&got, &want, "{:?}", order);
                    }
                    break;
                }
            }
        }
    }
}

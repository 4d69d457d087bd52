//! The document layer against a model of field maps with the merge rules,
//! across compactions and reopens (clean and not).

use std::collections::BTreeMap;

use proptest::prelude::*;
use silo_engine::{DocStore, EngineError, EngineOptions};
use silo_format::Value;

use crate::common::merge_field;

fn opts() -> EngineOptions {
    let mut o = EngineOptions {
        shards: Some(4),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    };
    o.store.auto_compact = false;
    o
}

const NAMES: [&str; 4] = ["title", "score", "tags", "flag"];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::U64),
        (-1e9f64..1e9).prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        "[a-z]{0,6}".prop_map(Value::Str),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Value::Bytes),
        (prop::collection::vec(any::<i64>(), 0..4), any::<bool>())
            .prop_map(|(items, reset)| Value::I64List { items, reset }),
    ]
}

fn fields(deleted: bool) -> impl Strategy<Value = Vec<(usize, Value)>> {
    let v = if deleted {
        prop_oneof![4 => value(), 1 => Just(Value::Deleted)].boxed()
    } else {
        value().boxed()
    };
    prop::collection::btree_map(0..NAMES.len(), v, 0..4).prop_map(|m| m.into_iter().collect())
}

#[derive(Clone, Debug)]
enum Op {
    Put(u32, Vec<(usize, Value)>),
    Merge(u32, Vec<(usize, Value)>),
    Delete(u32),
    /// A phased bulk merge: the partials in order, the first `split` in one
    /// part (handed over first), the rest in another.
    BulkMerge(Vec<(u32, Vec<(usize, Value)>)>, usize),
    Compact {
        cold: bool,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let doc = || prop_oneof![4 => 0u32..6, 1 => any::<u32>()];
    prop_oneof![
        3 => (doc(), fields(false)).prop_map(|(d, f)| Op::Put(d, f)),
        5 => (doc(), fields(true)).prop_map(|(d, f)| Op::Merge(d, f)),
        1 => doc().prop_map(Op::Delete),
        2 => (prop::collection::vec((doc(), fields(true)), 0..10), 0usize..10)
            .prop_map(|(m, split)| Op::BulkMerge(m, split)),
        1 => any::<bool>().prop_map(|cold| Op::Compact { cold }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

type Doc = BTreeMap<String, Value>;

/// The merge rules, on the model.
fn merge(doc: &mut Doc, partial: &[(usize, Value)]) {
    for (f, v) in partial {
        merge_field(doc, NAMES[*f].to_owned(), v);
    }
}

fn named(fields: &[(usize, Value)]) -> Vec<(&'static str, Value)> {
    fields.iter().map(|(f, v)| (NAMES[*f], v.clone())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SILO_ENGINE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn documents_match_field_maps_with_the_merge_rules(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model: BTreeMap<u32, Doc> = BTreeMap::new();
        let mut rest: &[Op] = &ops;
        loop {
            let s = DocStore::open(dir.path(), opts()).unwrap();
            let mut reopen = None;
            while let Some((op, tail)) = rest.split_first() {
                rest = tail;
                match op {
                    Op::Put(d, f) => {
                        s.put(*d, &named(f)).unwrap();
                        let mut doc = Doc::new();
                        merge(&mut doc, f);
                        model.insert(*d, doc);
                    }
                    Op::Merge(d, f) => {
                        s.merge(*d, &named(f)).unwrap();
                        merge(model.entry(*d).or_default(), f);
                    }
                    Op::Delete(d) => {
                        s.delete(*d).unwrap();
                        model.remove(d);
                    }
                    Op::BulkMerge(merges, split) => {
                        let bulk = s.bulk_merge();
                        let (first, second) = merges.split_at((*split).min(merges.len()));
                        for list in [first, second] {
                            let mut part = bulk.part();
                            for (d, f) in list {
                                part.merge(*d, &named(f)).unwrap();
                            }
                        }
                        let report = bulk.finish().unwrap();
                        let docs: std::collections::BTreeSet<u32> = merges.iter().map(|(d, _)| *d).collect();
                        prop_assert_eq!(report.documents, docs.len() as u64);
                        prop_assert_eq!(report.in_place + report.fallbacks, report.documents);
                        for (d, f) in merges {
                            merge(model.entry(*d).or_default(), f);
                        }
                    }
                    Op::Compact { cold } => {
                        s.engine().compact_with(silo_engine::CompactOptions { cold: *cold, ..Default::default() }).unwrap();
                    }
                    Op::Reopen { clean } => { reopen = Some(*clean); break; }
                }
            }
            match reopen {
                Some(true) => s.close().unwrap(),
                Some(false) => drop(s),
                None => {
                    for d in (0..6).chain(model.keys().copied()) {
                        let want = model.get(&d);
                        let got = s.get(d).unwrap();
                        prop_assert_eq!(got.as_ref(), want, "doc {}", d);
                        let partial = s.get_fields(d, &["tags", "nope", "title"]).unwrap();
                        let want_partial = want.map(|m| vec![m.get("tags").cloned(), None, m.get("title").cloned()]);
                        prop_assert_eq!(partial, want_partial, "doc {} fields", d);
                    }
                    break;
                }
            }
        }
    }
}

#[test]
fn a_field_given_twice_or_a_damaged_document_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = DocStore::open(dir.path(), opts()).unwrap();
    assert!(matches!(
        s.put(1, &[("a", Value::I64(1)), ("a", Value::I64(2))]),
        Err(EngineError::InvalidArgument {
            name: "document",
            ..
        })
    ));
    assert_eq!(s.get(1).unwrap(), None, "nothing was written");
    s.engine()
        .put(silo_engine::keyspace::doc_key(2), b"junk")
        .unwrap();
    assert!(matches!(
        s.get(2),
        Err(EngineError::Value {
            what: "document",
            ..
        })
    ));
    assert!(matches!(
        s.get_fields(2, &["a"]),
        Err(EngineError::Value { .. })
    ));
    // A document naming a field id the registry never gave out.
    let mut doc = Vec::new();
    silo_format::encode_document(&[(900, Value::Bool(true))], &mut doc).unwrap();
    s.engine()
        .put(silo_engine::keyspace::doc_key(3), &doc)
        .unwrap();
    assert!(matches!(s.get(3), Err(EngineError::Value { .. })));
}

/// A phased bulk merge rewrites in place the documents whose merged form
/// fits their record, and sends the others through the log: both counted,
/// none lost.
#[test]
fn a_bulk_merge_rewrites_in_place_what_fits_and_logs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let s = DocStore::open(dir.path(), opts()).unwrap();
    for id in 0..200u32 {
        s.put(
            id,
            &[
                ("title", Value::Str(format!("t{id:04}"))),
                ("size", Value::I64(1)),
            ],
        )
        .unwrap();
    }
    s.engine().compact().unwrap();
    let bulk = s.bulk_merge();
    let mut part = bulk.part();
    for id in 0..200u32 {
        if id % 2 == 0 {
            // The same size: fits the record.
            part.merge(id, &[("size", Value::I64(2))]).unwrap();
        } else {
            // Far larger: cannot.
            let tags = Value::I64List {
                items: (0..200).collect(),
                reset: false,
            };
            part.merge(id, &[("tags", tags)]).unwrap();
        }
    }
    drop(part);
    let report = bulk.finish().unwrap();
    assert_eq!(report.documents, 200);
    assert_eq!(report.in_place, 100, "{report:?}");
    assert_eq!(report.fallbacks, 100, "{report:?}");
    s.close().unwrap();
    let s = DocStore::open(dir.path(), opts()).unwrap();
    for id in 0..200u32 {
        let doc = s.get(id).unwrap().unwrap();
        assert_eq!(doc["title"], Value::Str(format!("t{id:04}")));
        if id % 2 == 0 {
            assert_eq!(doc["size"], Value::I64(2));
            assert!(!doc.contains_key("tags"));
        } else {
            assert_eq!(doc["size"], Value::I64(1));
            assert_eq!(
                doc["tags"],
                Value::I64List {
                    items: (0..200).collect(),
                    reset: false
                }
            );
        }
    }
}

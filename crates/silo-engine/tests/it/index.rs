//! The index against a brute-force model: documents upserted, patched and
//! deleted, across compactions and reopens (clean and not); every query
//! (filter expressions, both sort orders, pages through cursors), count and
//! facet checked against a scan of the model documents.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use proptest::prelude::*;
use silo_engine::{
    Cursor, EngineError, EngineOptions, FieldSpec, FieldType, Filter, Index, Order, Query, Schema,
    sort_key_f64, sort_key_i64,
};
use silo_format::Value;

use crate::common::{json_line, merge_field};

fn opts() -> EngineOptions {
    let mut o = EngineOptions {
        shards: Some(4),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    };
    o.store.auto_compact = false;
    o
}

fn schema() -> Schema {
    Schema::new(vec![
        FieldSpec::filter("color", FieldType::Str),
        FieldSpec {
            sort: true,
            ..FieldSpec::filter("size", FieldType::I64)
        },
        FieldSpec::sort("price", FieldType::F64),
        FieldSpec::filter("tags", FieldType::Tags),
        FieldSpec::filter("flag", FieldType::Bool),
        FieldSpec::stored("title", FieldType::Str),
    ])
}

type Doc = BTreeMap<&'static str, Value>;

fn color() -> impl Strategy<Value = Value> {
    prop_oneof![Just("red"), Just("blue"), Just("green")].prop_map(|s| Value::Str(s.into()))
}
fn size() -> impl Strategy<Value = Value> {
    prop_oneof![4 => -3i64..4, 1 => Just(i64::MIN), 1 => Just(i64::MAX)].prop_map(Value::I64)
}
fn price() -> impl Strategy<Value = Value> {
    prop_oneof![Just(-1.5f64), Just(0.0), Just(2.25), Just(100.0)].prop_map(Value::F64)
}
fn tags(reset: bool) -> impl Strategy<Value = Value> {
    let r = if reset {
        any::<bool>().boxed()
    } else {
        Just(false).boxed()
    };
    (prop::collection::vec(0i64..5, 0..4), r)
        .prop_map(|(items, reset)| Value::I64List { items, reset })
}

/// A document: each field present or not.
fn doc() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    (
        prop::option::of(color()),
        prop::option::of(size()),
        prop::option::of(price()),
        prop::option::of(tags(false)),
        prop::option::of(any::<bool>().prop_map(Value::Bool)),
        prop::option::of("[a-z]{0,4}".prop_map(Value::Str)),
    )
        .prop_map(|(c, s, p, t, f, ti)| {
            [
                ("color", c),
                ("size", s),
                ("price", p),
                ("tags", t),
                ("flag", f),
                ("title", ti),
            ]
            .into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect()
        })
}

/// A patch: some fields changed, some deleted.
fn patch() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let del = |s: BoxedStrategy<Value>| prop_oneof![3 => s, 1 => Just(Value::Deleted)];
    (
        prop::option::of(del(color().boxed())),
        prop::option::of(del(size().boxed())),
        prop::option::of(del(price().boxed())),
        prop::option::of(del(tags(true).boxed())),
        prop::option::of(del(any::<bool>().prop_map(Value::Bool).boxed())),
    )
        .prop_map(|(c, s, p, t, f)| {
            [
                ("color", c),
                ("size", s),
                ("price", p),
                ("tags", t),
                ("flag", f),
            ]
            .into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect()
        })
}

fn leaf() -> impl Strategy<Value = Filter> {
    let bound = |s: BoxedStrategy<Value>| {
        prop_oneof![
            s.clone().prop_map(Bound::Included),
            s.prop_map(Bound::Excluded),
            Just(Bound::Unbounded)
        ]
    };
    prop_oneof![
        Just(Filter::All),
        color().prop_map(|v| Filter::Eq("color".into(), v)),
        size().prop_map(|v| Filter::Eq("size".into(), v)),
        (0i64..6).prop_map(|v| Filter::Eq("tags".into(), Value::I64(v))),
        any::<bool>().prop_map(|v| Filter::Eq("flag".into(), Value::Bool(v))),
        prop::collection::vec(color(), 0..3).prop_map(|vs| Filter::In("color".into(), vs)),
        prop::collection::vec((0i64..6).prop_map(Value::I64), 0..3)
            .prop_map(|vs| Filter::In("tags".into(), vs)),
        color().prop_map(|v| Filter::NotEq("color".into(), v)),
        prop::collection::vec(size(), 0..3).prop_map(|vs| Filter::NotIn("size".into(), vs)),
        (bound(size().boxed()), bound(size().boxed())).prop_map(|(lo, hi)| Filter::Range {
            field: "size".into(),
            lo,
            hi
        }),
        (bound(price().boxed()), bound(price().boxed())).prop_map(|(lo, hi)| Filter::Range {
            field: "price".into(),
            lo,
            hi
        }),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

/// The sort key of a model value, as the index orders it.
fn key_of(v: &Value) -> u64 {
    match v {
        Value::I64(v) => sort_key_i64(*v),
        Value::F64(v) => sort_key_f64(*v),
        other => panic!("not a sort value: {other:?}"),
    }
}

fn holds(doc: &Doc, field: &str, v: &Value) -> bool {
    match doc.get(field) {
        Some(Value::I64List { items, .. }) => matches!(v, Value::I64(t) if items.contains(t)),
        Some(x) => x == v,
        None => false,
    }
}

fn in_bound(k: u64, lo: &Bound<Value>, hi: &Bound<Value>) -> bool {
    let lo_ok = match lo {
        Bound::Included(v) => k >= key_of(v),
        Bound::Excluded(v) => k > key_of(v),
        Bound::Unbounded => true,
    };
    let hi_ok = match hi {
        Bound::Included(v) => k <= key_of(v),
        Bound::Excluded(v) => k < key_of(v),
        Bound::Unbounded => true,
    };
    lo_ok && hi_ok
}

fn matches(doc: &Doc, f: &Filter) -> bool {
    match f {
        Filter::All => true,
        Filter::Eq(field, v) => holds(doc, field, v),
        Filter::In(field, vs) => vs.iter().any(|v| holds(doc, field, v)),
        Filter::NotEq(field, v) => !holds(doc, field, v),
        Filter::NotIn(field, vs) => !vs.iter().any(|v| holds(doc, field, v)),
        Filter::Range { field, lo, hi } => doc
            .get(field.as_str())
            .is_some_and(|v| in_bound(key_of(v), lo, hi)),
        Filter::And(fs) => fs.iter().all(|f| matches(doc, f)),
        Filter::Or(fs) => fs.iter().any(|f| matches(doc, f)),
        Filter::Not(f) => !matches(doc, f),
    }
}

/// The model's patch rules.
fn apply_patch(doc: &mut Doc, patch: &[(&'static str, Value)]) {
    for (name, v) in patch {
        merge_field(doc, *name, v);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Upsert(u32, Vec<(&'static str, Value)>),
    UpsertMany(BTreeMap<u32, Vec<(&'static str, Value)>>),
    Patch(u32, Vec<(&'static str, Value)>),
    Delete(u32),
    DeleteMany(std::collections::BTreeSet<u32>),
    /// JSON lines imported (ids may repeat: the last line wins), in chunks
    /// of `chunk` bytes.
    Import(Vec<(u32, Vec<(&'static str, Value)>)>, usize),
    Compact {
        cold: bool,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let id = || prop_oneof![5 => 0u32..12, 1 => any::<u32>()];
    prop_oneof![
        5 => (id(), doc()).prop_map(|(d, f)| Op::Upsert(d, f)),
        3 => (id(), patch()).prop_map(|(d, f)| Op::Patch(d, f)),
        2 => prop::collection::btree_map(id(), doc(), 0..6).prop_map(Op::UpsertMany),
        2 => (prop::collection::vec((id(), doc()), 0..12), 1usize..300).prop_map(|(d, c)| Op::Import(d, c)),
        1 => id().prop_map(Op::Delete),
        1 => prop::collection::btree_set(id(), 0..5).prop_map(Op::DeleteMany),
        1 => any::<bool>().prop_map(|cold| Op::Compact { cold }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// Every page of `q` through its cursors.
fn all_pages(index: &Index, q: &Query) -> Vec<u32> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = index.query(&q.clone().after(cursor)).unwrap();
        assert!(page.hits.len() <= q.limit);
        out.extend(page.hits.iter().map(|h| h.doc));
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
        assert!(out.len() < 10_000, "pages never end");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SILO_ENGINE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn queries_match_a_scan_of_the_model(
        ops in prop::collection::vec(op(), 1..30),
        filters in prop::collection::vec(filter(), 1..5),
        limit in 1usize..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut model: BTreeMap<u32, Doc> = BTreeMap::new();
        let mut rest: &[Op] = &ops;
        loop {
            let index = Index::open(dir.path(), schema(), opts()).unwrap();
            let mut reopen = None;
            while let Some((op, tail)) = rest.split_first() {
                rest = tail;
                match op {
                    Op::Upsert(d, fields) => {
                        index.upsert(*d, fields).unwrap();
                        let mut doc = Doc::new();
                        apply_patch(&mut doc, fields);
                        model.insert(*d, doc);
                    }
                    Op::UpsertMany(docs) => {
                        let list: Vec<(u32, Vec<(&str, Value)>)> = docs.iter().map(|(d, f)| (*d, f.clone())).collect();
                        index.upsert_many(&list).unwrap();
                        for (d, fields) in docs {
                            let mut doc = Doc::new();
                            apply_patch(&mut doc, fields);
                            model.insert(*d, doc);
                        }
                    }
                    Op::Import(docs, chunk) => {
                        let path = dir.path().join("import.jsonl");
                        // A header line, skipped.
                        let text: String = std::iter::once("not a document\n".to_owned())
                            .chain(docs.iter().map(|(d, f)| json_line(*d, f) + "\n"))
                            .collect();
                        std::fs::write(&path, text).unwrap();
                        let opts = silo_engine::ImportOptions::threads(2).chunk_bytes(*chunk).skip_lines(1);
                        let report = index.import_json_lines_with(&path, opts).unwrap();
                        prop_assert_eq!(report.documents, docs.len() as u64);
                        for (d, fields) in docs {
                            let mut doc = Doc::new();
                            apply_patch(&mut doc, fields);
                            model.insert(*d, doc);
                        }
                    }
                    Op::Patch(d, fields) => {
                        index.patch(*d, fields).unwrap();
                        apply_patch(model.entry(*d).or_default(), fields);
                    }
                    Op::Delete(d) => {
                        index.delete(*d).unwrap();
                        model.remove(d);
                    }
                    Op::DeleteMany(ds) => {
                        index.delete_many(&ds.iter().copied().collect::<Vec<_>>()).unwrap();
                        for d in ds {
                            model.remove(d);
                        }
                    }
                    Op::Compact { cold } => {
                        index.engine().compact_with(silo_engine::CompactOptions { cold: *cold, ..Default::default() }).unwrap();
                    }
                    Op::Reopen { clean } => { reopen = Some(*clean); break; }
                }
            }
            match reopen {
                Some(true) => index.close().unwrap(),
                Some(false) => drop(index),
                None => {
                    for (d, doc) in &model {
                        let got = index.get(*d).unwrap().unwrap();
                        let want: BTreeMap<String, Value> = doc.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
                        prop_assert_eq!(got, want, "doc {}", d);
                    }
                    for f in &filters {
                        let want: Vec<u32> = model.iter().filter(|(_, doc)| matches(doc, f)).map(|(d, _)| *d).collect();
                        prop_assert_eq!(index.count(f).unwrap(), want.len() as u64, "count {:?}", f);
                        prop_assert_eq!(all_pages(&index, &Query::new(f.clone(), limit)), want.clone(), "{:?}", f);
                        for (field, order) in [("size", Order::Descending), ("price", Order::Ascending), ("size", Order::Ascending)] {
                            let mut sorted: Vec<(u32, u64)> = model.iter()
                                .filter(|(_, doc)| matches(doc, f))
                                .filter_map(|(d, doc)| doc.get(field).map(|v| (*d, key_of(v))))
                                .collect();
                            sorted.sort_by(|a, b| match order {
                                Order::Descending => b.1.cmp(&a.1),
                                Order::Ascending => a.1.cmp(&b.1),
                            }.then(a.0.cmp(&b.0)));
                            let want: Vec<u32> = sorted.into_iter().map(|(d, _)| d).collect();
                            let q = Query::new(f.clone(), limit).sorted_by(field, order);
                            prop_assert_eq!(all_pages(&index, &q), want, "{:?} by {} {:?}", f, field, order);
                        }
                        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                        for doc in model.values().filter(|doc| matches(doc, f)) {
                            if let Some(Value::Str(c)) = doc.get("color") {
                                *counts.entry(c.clone()).or_default() += 1;
                            }
                        }
                        let facets = index.facets("color", f).unwrap();
                        prop_assert!(facets.windows(2).all(|w| w[0].1 >= w[1].1), "most first");
                        let got: BTreeMap<String, u64> = facets.into_iter().map(|(v, n)| match v {
                            Value::Str(s) => (s, n),
                            other => panic!("{other:?}"),
                        }).collect();
                        prop_assert_eq!(got, counts, "facets {:?}", f);
                    }
                    prop_assert_eq!(index.verify_consistency().unwrap(), vec![]);
                    // Stored fields come back with the hits.
                    let q = Query::new(Filter::All, 100).with_fields(&["title", "color"]);
                    for hit in index.query(&q).unwrap().hits {
                        let doc = &model[&hit.doc];
                        prop_assert_eq!(hit.fields, vec![doc.get("title").cloned(), doc.get("color").cloned()]);
                    }
                    break;
                }
            }
        }
    }
}

#[test]
fn bad_documents_and_queries_are_typed_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), schema(), opts()).unwrap();
    index
        .upsert(1, &[("color", Value::Str("red".into()))])
        .unwrap();
    let before = index.get(1).unwrap();
    assert!(matches!(
        index.upsert(1, &[("colour", Value::Str("red".into()))]),
        Err(EngineError::UnknownField { .. })
    ));
    assert!(matches!(
        index.upsert(1, &[("size", Value::Str("big".into()))]),
        Err(EngineError::FieldType {
            expected: "i64",
            found: "str",
            ..
        })
    ));
    assert!(matches!(
        index.patch(1, &[("color", Value::I64(3))]),
        Err(EngineError::FieldType { .. })
    ));
    assert!(matches!(
        index.upsert(
            1,
            &[("flag", Value::Bool(true)), ("flag", Value::Bool(false))]
        ),
        Err(EngineError::InvalidArgument { .. })
    ));
    assert_eq!(
        index.get(1).unwrap(),
        before,
        "refused changes wrote nothing"
    );
    assert_eq!(
        index
            .count(&Filter::Eq("flag".into(), Value::Bool(true)))
            .unwrap(),
        0
    );
    let bad_queries = [
        Filter::Eq("title".into(), Value::Str("x".into())),
        Filter::Eq("nope".into(), Value::I64(1)),
        Filter::Eq("size".into(), Value::U64(1)),
        Filter::Eq("tags".into(), Value::Str("x".into())),
        Filter::Range {
            field: "color".into(),
            lo: Bound::Unbounded,
            hi: Bound::Unbounded,
        },
        Filter::Range {
            field: "size".into(),
            lo: Bound::Included(Value::F64(1.0)),
            hi: Bound::Unbounded,
        },
        Filter::And(vec![
            Filter::All,
            Filter::Not(Box::new(Filter::Eq("nope".into(), Value::I64(1)))),
        ]),
    ];
    for f in bad_queries {
        assert!(index.count(&f).is_err(), "{f:?}");
    }
    assert!(
        index
            .query(&Query::new(Filter::All, 5).sorted_by("color", Order::Ascending))
            .is_err()
    );
    assert!(
        index
            .query(&Query::new(Filter::All, 5).with_fields(&["nope"]))
            .is_err()
    );
    let sorted = Query::new(Filter::All, 1).sorted_by("size", Order::Ascending);
    assert!(
        index.query(&sorted.after(Some(Cursor::Id(3)))).is_err(),
        "a cursor of another order"
    );
    assert!(index.facets("title", &Filter::All).is_err());
    index.close().unwrap();
    // Another schema for the same index is refused.
    let mut other = schema();
    other.fields.pop();
    assert!(matches!(
        Index::open(dir.path(), other, opts()),
        Err(EngineError::SchemaMismatch { .. })
    ));
    let index = Index::open(dir.path(), schema(), opts()).unwrap();
    assert_eq!(index.count(&Filter::All).unwrap(), 1);
}

#[test]
fn an_unchanged_upsert_writes_only_the_document_and_its_alive_bit() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), schema(), opts()).unwrap();
    let doc = [
        ("color", Value::Str("red".into())),
        ("size", Value::I64(3)),
        (
            "tags",
            Value::I64List {
                items: vec![1, 2],
                reset: false,
            },
        ),
    ];
    index.upsert(7, &doc).unwrap();
    index.engine().compact().unwrap();
    let ops = |index: &Index| -> u64 {
        index
            .engine()
            .stats()
            .shards
            .iter()
            .map(|s| s.pending_ops)
            .sum()
    };
    index.upsert(7, &doc).unwrap();
    assert_eq!(ops(&index), 2, "the document and the alive bit, no bitmap");
    index.engine().compact().unwrap();
    index.patch(7, &[("size", Value::I64(2))]).unwrap();
    // 3 -> 2: one slice differs (bit 0); size 2 is a new value, so its
    // dictionary entry is written too.
    assert_eq!(
        ops(&index),
        6,
        "document, alive, size's bitmaps (clear 3, set 2), one slice, one dictionary entry"
    );
    let all: BTreeSet<u32> = index
        .query(&Query::new(Filter::Eq("size".into(), Value::I64(2)), 10))
        .unwrap()
        .hits
        .iter()
        .map(|h| h.doc)
        .collect();
    assert_eq!(all, BTreeSet::from([7]));
}

#[test]
fn json_lines_import_checks_every_line_first_and_later_lines_win() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), schema(), opts()).unwrap();
    let input = dir.path().join("docs.jsonl");
    let mut text = String::new();
    for id in 0..2500u32 {
        let color = ["red", "blue", "green"][id as usize % 3];
        text.push_str(&format!(
            "{{\"id\": {id}, \"color\": \"{color}\", \"size\": {}, \"tags\": [{}, {}], \"price\": {}.5, \"flag\": {}}}\n",
            i64::from(id % 7) - 3,
            id % 5,
            (id + 1) % 5,
            id % 100,
            id % 2 == 0
        ));
        if id % 1000 == 0 {
            text.push('\n');
        }
    }
    // A later line for document 7 replaces the earlier one.
    text.push_str("{\"id\": 7, \"color\": \"blue\", \"title\": \"again\", \"size\": null}\n");
    std::fs::write(&input, &text).unwrap();
    // Small chunks: several batches, document 7's two lines in different ones.
    let report = index
        .import_json_lines_with(
            &input,
            silo_engine::ImportOptions::threads(2).chunk_bytes(20_000),
        )
        .unwrap();
    assert_eq!(report.documents, 2501);
    assert_eq!(report.blank_lines, 3);
    assert!(report.batches >= 3, "{report:?}");
    assert_eq!(report.superseded, 1);
    assert_eq!(index.count(&Filter::All).unwrap(), 2500);
    let doc7 = index.get(7).unwrap().unwrap();
    assert_eq!(doc7.get("title"), Some(&Value::Str("again".into())));
    assert_eq!(doc7.get("size"), None);
    let reds = index
        .count(&Filter::Eq("color".into(), Value::Str("red".into())))
        .unwrap();
    assert_eq!(
        reds,
        (0..2500u32).filter(|id| id % 3 == 0 && *id != 7).count() as u64
    );
    let tag4 = index
        .count(&Filter::Eq("tags".into(), Value::I64(4)))
        .unwrap();
    assert_eq!(
        tag4,
        (0..2500u32)
            .filter(|id| *id != 7 && (id % 5 == 4 || (id + 1) % 5 == 4))
            .count() as u64
    );

    // A bad line anywhere: an error naming it, and nothing written.
    let other = tempfile::tempdir().unwrap();
    let fresh = Index::open(other.path(), schema(), opts()).unwrap();
    for (bad, line, what) in [
        ("{\"id\": 1, \"size\": \"big\"}", 3, "size"),
        ("{\"id\": 1, \"colour\": \"red\"}", 3, "colour"),
        ("{\"size\": 1}", 3, "id"),
        ("{\"id\": 5000000000}", 3, "id"),
        ("[1, 2]", 3, "object"),
        ("{\"id\": 1, ", 3, "JSON"),
        ("{\"id\": 1, \"tags\": [1, \"x\"]}", 3, "tags"),
    ] {
        let path = other.path().join("bad.jsonl");
        std::fs::write(
            &path,
            format!("{{\"id\": 10}}\n{{\"id\": 11}}\n{bad}\n{{\"id\": 12}}\n"),
        )
        .unwrap();
        match fresh.import_json_lines(&path, 2) {
            Err(EngineError::Import { line: l, reason }) => {
                assert_eq!(l, line, "{bad}");
                assert!(reason.contains(what), "{bad}: {reason}");
            }
            other => panic!("{bad}: {other:?}"),
        }
        assert_eq!(
            fresh.count(&Filter::All).unwrap(),
            0,
            "{bad}: nothing written"
        );
    }
    assert!(matches!(
        fresh.import_json_lines(&other.path().join("missing.jsonl"), 1),
        Err(EngineError::Import { line: 0, .. })
    ));
}

/// A document created by another writer after an import has planned its
/// writes (the import held at the fault seam's hold point meanwhile) is
/// diffed, not treated as new: its old bits go, and the index agrees with
/// the imported documents exactly.
#[test]
fn an_import_replaces_a_document_created_under_it() {
    use silo_engine::HOLD_IMPORT_WRITE_PASS;
    use silo_io::fault::{FaultPlan, install};
    let dir = tempfile::tempdir().unwrap();
    let guard = install(dir.path(), FaultPlan::new().hold(HOLD_IMPORT_WRITE_PASS));
    let index = Index::open(dir.path(), schema(), opts()).unwrap();
    let path = dir.path().join("docs.jsonl");
    let text: String = (0..50u32)
        .map(|id| format!("{{\"id\": {id}, \"color\": \"red\", \"tags\": [1], \"size\": 1}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    let report = std::thread::scope(|s| {
        let import = s.spawn(|| index.import_json_lines(&path, 2).unwrap());
        guard.wait_held(HOLD_IMPORT_WRITE_PASS, 1);
        index
            .upsert(
                7,
                &[
                    ("color", Value::Str("blue".into())),
                    (
                        "tags",
                        Value::I64List {
                            items: vec![2],
                            reset: false,
                        },
                    ),
                    ("price", Value::F64(5.0)),
                ],
            )
            .unwrap();
        guard.release(HOLD_IMPORT_WRITE_PASS);
        import.join().unwrap()
    });
    assert_eq!(report.replaced, 1, "{report:?}");
    let count = |f: Filter| index.count(&f).unwrap();
    assert_eq!(count(Filter::All), 50);
    assert_eq!(
        count(Filter::Eq("color".into(), Value::Str("red".into()))),
        50
    );
    assert_eq!(
        count(Filter::Eq("color".into(), Value::Str("blue".into()))),
        0
    );
    assert_eq!(count(Filter::Eq("tags".into(), Value::I64(2))), 0);
    assert_eq!(count(Filter::Eq("tags".into(), Value::I64(1))), 50);
    let priced = Filter::Range {
        field: "price".into(),
        lo: Bound::Unbounded,
        hi: Bound::Unbounded,
    };
    assert_eq!(count(priced), 0, "document 7's price went with it");
    assert_eq!(index.get(7).unwrap().unwrap().get("price"), None);
}

/// The catalogue generator's documents through a JSON lines import: counts,
/// facets and a sorted page against a scan of the generated documents.
#[test]
fn the_catalogue_imports_and_answers_like_a_scan() {
    use silo_engine::catalog::Catalog;
    let dir = tempfile::tempdir().unwrap();
    let cat = Catalog::new(11);
    let index = Index::open(dir.path(), cat.schema(), opts()).unwrap();
    let n = 3000u32;
    let path = dir.path().join("catalog.jsonl");
    let text: String = (0..n).map(|id| cat.json_line(id) + "\n").collect();
    std::fs::write(&path, text).unwrap();
    index.import_json_lines(&path, 2).unwrap();
    let docs: Vec<(u32, BTreeMap<&str, Value>)> = (0..n)
        .map(|id| (id, cat.document(id).into_iter().collect()))
        .collect();
    let red = Filter::And(vec![
        Filter::Eq("color".into(), Value::Str("red".into())),
        Filter::Eq("in_stock".into(), Value::Bool(true)),
    ]);
    let is_red = |d: &BTreeMap<&str, Value>| {
        d["color"] == Value::Str("red".into()) && d["in_stock"] == Value::Bool(true)
    };
    assert_eq!(
        index.count(&red).unwrap(),
        docs.iter().filter(|(_, d)| is_red(d)).count() as u64
    );
    let mut by_price: Vec<(u32, u64)> = docs
        .iter()
        .filter(|(_, d)| is_red(d))
        .map(|(id, d)| (*id, key_of(&d["price"])))
        .collect();
    by_price.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<u32> = index
        .query(&Query::new(red.clone(), 10).sorted_by("price", Order::Descending))
        .unwrap()
        .hits
        .iter()
        .map(|h| h.doc)
        .collect();
    assert_eq!(
        top,
        by_price
            .iter()
            .take(10)
            .map(|(d, _)| *d)
            .collect::<Vec<_>>()
    );
    let facets = index.facets("category", &red).unwrap();
    let total: u64 = facets.iter().map(|(_, c)| c).sum();
    assert_eq!(
        total,
        index.count(&red).unwrap(),
        "each red document has one category"
    );
    let tag0 = docs
        .iter()
        .filter(|(_, d)| matches!(d.get("tags"), Some(Value::I64List { items, .. }) if items.contains(&0)))
        .count() as u64;
    assert_eq!(
        index
            .count(&Filter::Eq("tags".into(), Value::I64(0)))
            .unwrap(),
        tag0
    );
}

/// A damaged registry entry or dictionary entry is a typed error at open,
/// naming the key, never a wrong field or value.
#[test]
fn a_damaged_registry_or_dictionary_entry_refuses_to_open() {
    use silo_engine::keyspace::REGISTRY_FIELD;
    for damage_registry in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), schema(), opts()).unwrap();
        index
            .upsert(1, &[("color", Value::Str("red".into()))])
            .unwrap();
        // Registry id 1 is `color` as a document field; its dictionary is
        // registered after it, and holds `red` as value 1.
        let (field, value) = if damage_registry {
            (REGISTRY_FIELD, 1u64)
        } else {
            let dict = 3u64; // color: document 1, bitmap 2, dictionary 3
            (u16::try_from(dict).unwrap(), 1u64)
        };
        let key = (u64::from(field) << 48) | value;
        assert!(
            index.engine().get(key).unwrap().is_some(),
            "the entry exists"
        );
        index.engine().put(key, &[9, 0xFF]).unwrap();
        index.close().unwrap();
        match Index::open(dir.path(), schema(), opts()) {
            Err(EngineError::Value { key: k, .. }) => assert_eq!(k, key),
            other => panic!("registry {damage_registry}: expected Value, got {other:?}"),
        }
    }
}

/// The consistency check finds a document removed behind the index's back
/// (its bits stay) and a damaged document.
#[test]
fn verify_consistency_finds_bits_without_documents_and_damaged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), schema(), opts()).unwrap();
    for d in 0..20u32 {
        let color = Value::Str(["red", "blue"][d as usize % 2].into());
        index
            .upsert(d, &[("color", color), ("size", Value::I64(i64::from(d)))])
            .unwrap();
    }
    assert_eq!(index.verify_consistency().unwrap(), vec![]);
    index
        .engine()
        .delete(silo_engine::keyspace::doc_key(4))
        .unwrap();
    index
        .engine()
        .put(silo_engine::keyspace::doc_key(7), b"garbage")
        .unwrap();
    let problems = index.verify_consistency().unwrap();
    let text: Vec<&str> = problems.iter().map(|p| p.what.as_str()).collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("document 7 does not decode")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("the alive bitmap: 0 documents missing")
                && t.contains("2 too many")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.starts_with("field `color`")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.starts_with("sort field `size`")),
        "{text:?}"
    );
}

/// `parse_json_line` gives the id and the fields present, by name, with
/// typed values; a bad line is an import error naming the given line.
#[test]
fn a_json_line_parses_into_named_typed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), schema(), opts()).unwrap();
    let (id, fields) = index
        .parse_json_line(r#"{"id": 9, "size": -2, "color": "red", "title": null}"#, 4)
        .unwrap();
    assert_eq!(id, 9);
    let fields: BTreeMap<String, Value> = fields.into_iter().collect();
    assert_eq!(
        fields,
        BTreeMap::from([
            ("color".to_owned(), Value::Str("red".into())),
            ("size".to_owned(), Value::I64(-2)),
        ])
    );
    assert!(matches!(
        index.parse_json_line(r#"{"id": 1, "size": "x"}"#, 4),
        Err(EngineError::Import { line: 4, .. })
    ));
}

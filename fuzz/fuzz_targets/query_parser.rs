//! Fuzz target: filters written as text (`silo query`), parsed against a
//! schema and evaluated on a small index.
//!
//! Besides "never panics" (nor overflows the stack: nesting is bounded),
//! it checks that an error names a column inside the text (or just past
//! it), that a parsed filter parses the same inside parentheses, and that
//! evaluating it agrees with itself: `count` equals the number of hits of
//! an unlimited query, and a filter and its negation split the documents.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use silo_engine::{EngineError, EngineOptions, FieldSpec, FieldType, Filter, Index, Query, Schema};
use silo_format::Value;

const DOCS: u32 = 64;

fn schema() -> Schema {
    Schema::new(vec![
        FieldSpec::filter("color", FieldType::Str),
        FieldSpec::filter("tags", FieldType::Tags),
        FieldSpec::filter("ok", FieldType::Bool),
        FieldSpec::filter("n", FieldType::U64),
        FieldSpec::sort("price", FieldType::F64),
        FieldSpec::sort("rank", FieldType::I64),
    ])
}

/// One index for the whole run, in a directory that lives as long.
fn index() -> &'static Index {
    static INDEX: OnceLock<(tempfile::TempDir, Index)> = OnceLock::new();
    &INDEX
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let opts = EngineOptions {
                shards: Some(2),
                ..EngineOptions::default()
            };
            let index = Index::open(dir.path().join("db"), schema(), opts).expect("open index");
            for id in 0..DOCS {
                let fields = vec![
                    (
                        "color",
                        Value::Str(["red", "blue", "dark blue"][id as usize % 3].into()),
                    ),
                    (
                        "tags",
                        Value::I64List {
                            items: vec![i64::from(id % 5), 7],
                            reset: false,
                        },
                    ),
                    ("ok", Value::Bool(id % 2 == 0)),
                    ("n", Value::U64(u64::from(id % 9))),
                    ("price", Value::F64(f64::from(id) * 1.5 - 20.0)),
                    ("rank", Value::I64(i64::from(id % 11) - 5)),
                ];
                index.upsert(id, &fields).expect("upsert");
            }
            (dir, index)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schema = schema();
    let filter = match Filter::parse(text, &schema) {
        Ok(filter) => filter,
        Err(EngineError::QuerySyntax { column, reason }) => {
            assert!(
                column >= 1 && column <= text.chars().count() + 1,
                "column {column}: {reason}"
            );
            assert!(!reason.is_empty());
            return;
        }
        Err(other) => panic!("a parse error that is not QuerySyntax: {other:?}"),
    };
    // The nesting limit counts the parentheses added here, so only check
    // texts that leave room for them.
    if let Ok(again) = Filter::parse(&format!("({text})"), &schema) {
        assert_eq!(again, filter);
    }
    let index = index();
    let count = index.count(&filter).expect("count");
    assert!(count <= u64::from(DOCS));
    let hits = index
        .query(&Query::new(filter.clone(), DOCS as usize + 1))
        .expect("query");
    assert_eq!(hits.hits.len() as u64, count, "count and query agree");
    let not = index
        .count(&Filter::Not(Box::new(filter)))
        .expect("count not");
    assert_eq!(
        count + not,
        u64::from(DOCS),
        "a filter and its negation split the documents"
    );
});

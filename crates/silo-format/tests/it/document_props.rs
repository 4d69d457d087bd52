//! Property tests of document merging: associativity, and agreement of
//! `compact(merge(a, b))` with a simple map model of "apply b over a".

use std::collections::BTreeMap;

use proptest::prelude::*;
use silo_format::{DocumentRef, Value, ValueRef, compact, encode_document, merge};

use crate::strategies;

fn merged(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    merge(a, b, &mut out).expect("valid documents merge");
    out
}

/// The stored form of a document: Deleted dropped, RESET cleared.
fn base_model(doc: &[u8]) -> BTreeMap<u16, Value> {
    DocumentRef::parse(doc)
        .unwrap()
        .iter()
        .filter_map(|(id, v)| match v {
            ValueRef::Deleted => None,
            ValueRef::I64List(l) => Some((
                id,
                Value::I64List {
                    items: l.iter().collect(),
                    reset: false,
                },
            )),
            other => Some((id, other.to_value())),
        })
        .collect()
}

/// Applies the fields of `newer` over a stored base, by the documented rules.
fn apply(mut base: BTreeMap<u16, Value>, newer: &[u8]) -> BTreeMap<u16, Value> {
    for (id, v) in DocumentRef::parse(newer).unwrap().iter() {
        match v {
            ValueRef::Deleted => {
                base.remove(&id);
            }
            ValueRef::I64List(l) if !l.reset() => match base.get_mut(&id) {
                Some(Value::I64List { items, .. }) => items.extend(l.iter()),
                _ => {
                    base.insert(
                        id,
                        Value::I64List {
                            items: l.iter().collect(),
                            reset: false,
                        },
                    );
                }
            },
            ValueRef::I64List(l) => {
                base.insert(
                    id,
                    Value::I64List {
                        items: l.iter().collect(),
                        reset: false,
                    },
                );
            }
            other => {
                base.insert(id, other.to_value());
            }
        }
    }
    base
}

fn encode_model(model: BTreeMap<u16, Value>) -> Vec<u8> {
    let fields: Vec<(u16, Value)> = model.into_iter().collect();
    let mut out = Vec::new();
    encode_document(&fields, &mut out).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn merge_is_associative(a in strategies::document(6), b in strategies::document(6), c in strategies::document(6)) {
        let left = merged(&merged(&a, &b), &c);
        let right = merged(&a, &merged(&b, &c));
        prop_assert_eq!(left, right);
    }

    #[test]
    fn compacted_merge_matches_model(a in strategies::document(6), b in strategies::document(6)) {
        let mut stored = Vec::new();
        compact(&merged(&a, &b), &mut stored).unwrap();
        let expected = encode_model(apply(base_model(&a), &b));
        prop_assert_eq!(stored, expected);
    }

    #[test]
    fn chains_of_merges_match_model(docs in prop::collection::vec(strategies::document(6), 1..6)) {
        // Folding every newer document into the oldest, then compacting, is
        // the same as applying them one by one to the stored base.
        let mut acc = docs[0].clone();
        let mut model = base_model(&docs[0]);
        for d in &docs[1..] {
            acc = merged(&acc, d);
            model = apply(model, d);
        }
        let mut stored = Vec::new();
        compact(&acc, &mut stored).unwrap();
        prop_assert_eq!(stored, encode_model(model));
    }

    #[test]
    fn merge_with_empty_is_identity(a in strategies::document(6)) {
        let empty = encode_model(BTreeMap::new());
        prop_assert_eq!(merged(&a, &empty), a.clone());
        prop_assert_eq!(merged(&empty, &a), a);
    }
}

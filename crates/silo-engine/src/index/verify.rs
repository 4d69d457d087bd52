//! An index checked against itself: every filter bitmap, sort slice and
//! the alive bitmap rebuilt from the stored documents and compared with
//! what is stored.

use std::collections::{BTreeMap, HashMap};

use roaring::RoaringBitmap;
use silo_format::DocumentRef;

use crate::bitmap::slice_key;
use crate::bitmap::sort::EXISTS_SLICE;
use crate::error::{EngineError, Result};
use crate::index::dictionary::canonical_values;
use crate::index::{Index, sort_key_ref};
use crate::keyspace::{DOC_FIELD, alive_key, key};
use crate::layers::read_bitmap;

/// One disagreement between an index's documents and its bitmaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexProblem {
    /// The key of the bitmap, slice or document concerned.
    pub key: u64,
    /// What is wrong.
    pub what: String,
}

impl Index {
    /// Rebuilds, from the stored documents, what every filter bitmap, sort
    /// slice and the alive bitmap must hold, and compares each with what
    /// is stored: each disagreement, and each document that does not
    /// decode, is a problem. Reads every document once; the expected
    /// bitmaps are held in memory. Changes of the index wait while it runs
    /// (it holds the index's read lock, as a query does).
    pub fn verify_consistency(&self) -> Result<Vec<IndexProblem>> {
        let _view = self.view.read();
        let engine = self.engine();
        let mut problems = Vec::new();
        let mut present = RoaringBitmap::new();
        // Expected bits: by bitmap key (filter values and sort slices).
        let mut expected: HashMap<u64, RoaringBitmap> = HashMap::new();
        let first_doc = key(DOC_FIELD, 0)?;
        let dicts = self.dicts.read();
        for item in engine.iter() {
            let (k, bytes) = item?;
            if k < first_doc {
                continue;
            }
            let doc = u32::try_from(k - first_doc).map_err(|_| EngineError::Value {
                what: "document",
                key: k,
                reason: "a document key past 2^32".to_owned(),
            })?;
            let parsed = match DocumentRef::parse(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(IndexProblem {
                        key: k,
                        what: format!("document {doc} does not decode: {e}"),
                    });
                    continue;
                }
            };
            present.insert(doc);
            for (id, value) in parsed.iter() {
                let Some(&i) = self.by_doc_field.get(&id) else {
                    problems.push(IndexProblem {
                        key: k,
                        what: format!("document {doc} holds field id {id}, not in the schema"),
                    });
                    continue;
                };
                let r = &self.fields[i];
                if let Some((bitmap, _, at)) = r.filter {
                    for c in canonical_values(&value) {
                        match dicts[at].id(&c) {
                            Some(id) => {
                                expected.entry(key(bitmap.0, id)?).or_default().insert(doc);
                            }
                            None => problems.push(IndexProblem {
                                key: k,
                                what: format!(
                                    "document {doc}: a value of field `{}` is not in its dictionary",
                                    r.spec.name
                                ),
                            }),
                        }
                    }
                }
                if let (Some(sort), Some(mut v)) = (r.sort, sort_key_ref(&value)) {
                    while v != 0 {
                        let bit = u64::from(v.trailing_zeros());
                        expected
                            .entry(slice_key(sort, bit))
                            .or_default()
                            .insert(doc);
                        v &= v - 1;
                    }
                    expected
                        .entry(slice_key(sort, EXISTS_SLICE))
                        .or_default()
                        .insert(doc);
                }
            }
        }
        let mut compare = |k: u64, what: &dyn Fn() -> String, want: &RoaringBitmap| -> Result<()> {
            let got = read_bitmap(engine, k)?;
            if &got != want {
                let (missing, extra) = (want - &got, &got - want);
                problems.push(IndexProblem {
                    key: k,
                    what: format!(
                        "{}: {} documents missing (first {:?}), {} too many (first {:?})",
                        what(),
                        missing.len(),
                        missing.min(),
                        extra.len(),
                        extra.min()
                    ),
                });
            }
            Ok(())
        };
        compare(alive_key(), &|| "the alive bitmap".to_owned(), &present)?;
        let empty = RoaringBitmap::new();
        for r in &self.fields {
            if let Some((bitmap, _, at)) = r.filter {
                for (id, _) in dicts[at].entries() {
                    let k = key(bitmap.0, id)?;
                    let want = expected.get(&k).unwrap_or(&empty);
                    compare(k, &|| format!("field `{}`, value {id}", r.spec.name), want)?;
                }
            }
            if let Some(sort) = r.sort {
                let slices: BTreeMap<u64, u64> = (0..=EXISTS_SLICE)
                    .map(|s| (s, slice_key(sort, s)))
                    .collect();
                for (slice, k) in slices {
                    let want = expected.get(&k).unwrap_or(&empty);
                    compare(
                        k,
                        &|| format!("sort field `{}`, slice {slice}", r.spec.name),
                        want,
                    )?;
                }
            }
        }
        Ok(problems)
    }
}

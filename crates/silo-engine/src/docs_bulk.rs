//! Phased bulk merges into a [`DocStore`] (bitdex's phased import: the main
//! file first, then a tags file merged into the documents it names). Each
//! thread accumulates partial documents per document id in a
//! [`DocBulkPart`] (no write per line); [`DocBulkMerge::finish`] then makes
//! one merge per document through the engine's merge writer: in place when
//! the merged document fits its record, through the log otherwise (counted
//! in [`DocBulkReport::fallbacks`]). Nothing is dropped.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use parking_lot::Mutex;
use silo_core::UpdateOutcome;
use silo_format::Value;

use crate::docs::DocStore;
use crate::error::{EngineError, Result};
use crate::keyspace::doc_key;

/// A phased bulk merge in progress; see the module documentation.
///
/// ```
/// use silo_engine::{DocStore, EngineOptions};
/// use silo_format::Value;
/// let dir = tempfile::tempdir().unwrap();
/// let docs = DocStore::open(dir.path(), EngineOptions { shards: Some(2), ..Default::default() })?;
/// for id in 0..100u32 {
///     docs.put(id, &[("title", Value::Str(format!("item {id}")))])?;
/// }
/// // The tags file, line by line: many lines per document.
/// let bulk = docs.bulk_merge();
/// let mut part = bulk.part();
/// for (id, tag) in [(3u32, 10i64), (5, 11), (3, 12)] {
///     part.merge(id, &[("tags", Value::I64List { items: vec![tag], reset: false })])?;
/// }
/// drop(part);
/// let report = bulk.finish()?;
/// assert_eq!(report.documents, 2);
/// assert_eq!(docs.get(3)?.unwrap()["tags"], Value::I64List { items: vec![10, 12], reset: false });
/// # Ok::<(), silo_engine::EngineError>(())
/// ```
pub struct DocBulkMerge<'d> {
    store: &'d DocStore,
    /// Per document, the partials the parts handed over, in that order.
    gathered: Mutex<HashMap<u32, Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for DocBulkMerge<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocBulkMerge")
            .field("documents", &self.gathered.lock().len())
            .finish()
    }
}

/// One thread's share of a [`DocBulkMerge`]; handed over when dropped.
/// Within a part, partials merge in the order given; parts hand over in
/// the order they are dropped.
pub struct DocBulkPart<'b, 'd> {
    bulk: &'b DocBulkMerge<'d>,
    local: HashMap<u32, Vec<u8>>,
}

impl std::fmt::Debug for DocBulkPart<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocBulkPart")
            .field("documents", &self.local.len())
            .finish()
    }
}

/// What [`DocBulkMerge::finish`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DocBulkReport {
    /// Documents merged (one merge each).
    pub documents: u64,
    /// Of them, rewritten in place in their record.
    pub in_place: u64,
    /// Of them, written through the log (no record, or the merged document
    /// did not fit it).
    pub fallbacks: u64,
}

/// `newer` merged over `older` (both partial documents).
fn merged(older: &[u8], newer: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(older.len() + newer.len());
    silo_format::merge(older, newer, &mut out).map_err(|e| EngineError::InvalidArgument {
        name: "document",
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Adds `partial` after what `into` holds for `doc`.
fn accumulate(into: &mut HashMap<u32, Vec<u8>>, doc: u32, partial: Vec<u8>) -> Result<()> {
    match into.entry(doc) {
        Entry::Occupied(mut e) => {
            let m = merged(e.get(), &partial)?;
            e.insert(m);
        }
        Entry::Vacant(e) => {
            e.insert(partial);
        }
    }
    Ok(())
}

impl DocStore {
    /// A phased bulk merge into this store (see [`DocBulkMerge`]).
    pub fn bulk_merge(&self) -> DocBulkMerge<'_> {
        DocBulkMerge {
            store: self,
            gathered: Mutex::new(HashMap::new()),
        }
    }
}

impl<'d> DocBulkMerge<'d> {
    /// A part for one thread to add to.
    pub fn part(&self) -> DocBulkPart<'_, 'd> {
        DocBulkPart {
            bulk: self,
            local: HashMap::new(),
        }
    }

    /// Merges every accumulated partial into its document, one merge per
    /// document in id order, then makes the in-place results durable.
    /// Parts must be dropped first (a part still alive is not included).
    pub fn finish(self) -> Result<DocBulkReport> {
        // Every document's partials folded first: an error writes nothing.
        let mut gathered: HashMap<u32, Vec<u8>> = HashMap::new();
        for (doc, partials) in self.gathered.into_inner() {
            for partial in partials {
                accumulate(&mut gathered, doc, partial)?;
            }
        }
        let mut ids: Vec<u32> = gathered.keys().copied().collect();
        ids.sort_unstable();
        let mut report = DocBulkReport::default();
        let writer = self.store.engine().merge_writer()?;
        let mut failure = None;
        for id in ids {
            let Some(partial) = gathered.get(&id) else {
                continue;
            };
            let key = doc_key(id);
            let outcome = writer.update(key, |current| {
                let result = match current {
                    Some(stored) => merged(stored, partial),
                    None => Ok(partial.clone()),
                }
                .and_then(|doc| {
                    let mut out = Vec::with_capacity(doc.len());
                    silo_format::compact(&doc, &mut out)
                        .map(|()| out)
                        .map_err(|e| EngineError::Value {
                            what: "document",
                            key,
                            reason: e.to_string(),
                        })
                });
                match result {
                    Ok(doc) => doc,
                    Err(e) => {
                        // Keep what is stored; the error is returned.
                        failure.get_or_insert(e);
                        current.map(<[u8]>::to_vec).unwrap_or_default()
                    }
                }
            })?;
            if failure.is_some() {
                break;
            }
            report.documents += 1;
            match outcome {
                UpdateOutcome::InPlace => report.in_place += 1,
                UpdateOutcome::Fallback => report.fallbacks += 1,
            }
        }
        writer.finish()?;
        failure.map_or(Ok(report), Err)
    }
}

impl DocBulkPart<'_, '_> {
    /// Merges `partial` into document `doc`, after what this part already
    /// holds for it (the rules of [`DocStore::merge`]). Nothing is written
    /// until [`DocBulkMerge::finish`].
    pub fn merge(&mut self, doc: u32, partial: &[(&str, Value)]) -> Result<()> {
        let bytes = self.bulk.store.encode(partial, true)?;
        accumulate(&mut self.local, doc, bytes)
    }
}

impl Drop for DocBulkPart<'_, '_> {
    fn drop(&mut self) {
        let local = std::mem::take(&mut self.local);
        let mut gathered = self.bulk.gathered.lock();
        for (doc, partial) in local {
            gathered.entry(doc).or_default().push(partial);
        }
    }
}

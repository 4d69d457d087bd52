//! The index: documents with a schema, kept consistent with the bitmaps of
//! their filter fields and the sort layers of their sort fields, and
//! queried by filter expressions with sort, limit and cursor, counts and
//! facets.
//!
//! Every change of a document (upsert, patch, delete) is one atomic engine
//! batch holding the document and exactly the bitmap and sort-layer bits
//! whose values changed (a diff against the stored document, read under a
//! per-document lock). After a crash, a document and its bitmaps therefore
//! always agree. Queries read the engine while no change is being written
//! (an index-wide reader-writer lock: queries share it, the write of a
//! change takes it alone), so a query never mixes two points in time, and
//! costs no engine snapshot (whose copy of the pending operations grows
//! until compaction).
//!
//! ```
//! use silo_engine::{EngineOptions, FieldSpec, FieldType, Filter, Index, Order, Query, Schema};
//! use silo_format::Value;
//! let dir = tempfile::tempdir().unwrap();
//! let schema = Schema::new(vec![
//!     FieldSpec::filter("color", FieldType::Str),
//!     FieldSpec::sort("price", FieldType::U64),
//! ]);
//! let index = Index::open(dir.path(), schema, EngineOptions { shards: Some(2), ..Default::default() })?;
//! index.upsert(1, &[("color", Value::Str("red".into())), ("price", Value::U64(30))])?;
//! index.upsert(2, &[("color", Value::Str("red".into())), ("price", Value::U64(10))])?;
//! index.upsert(3, &[("color", Value::Str("blue".into())), ("price", Value::U64(20))])?;
//! let q = Query::new(Filter::Eq("color".into(), Value::Str("red".into())), 10)
//!     .sorted_by("price", Order::Ascending);
//! let docs: Vec<u32> = index.query(&q)?.hits.iter().map(|h| h.doc).collect();
//! assert_eq!(docs, vec![2, 1]);
//! assert_eq!(index.count(&Filter::All)?, 3);
//! # Ok::<(), silo_engine::EngineError>(())
//! ```

mod chunks;
mod dictionary;
mod filter_text;
mod import;
mod json;
mod query;
mod schema;
mod verify;

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;
use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_format::{DocumentRef, DocumentWriter, Value, ValueRef};

pub use chunks::MAX_LINE_BYTES;
pub use filter_text::MAX_FILTER_DEPTH;
pub use import::{
    HOLD_IMPORT_WRITE_PASS, IMPORT_CHUNK_BYTES, ImportOptions, ImportReport, ImportedDoc,
};
pub use query::{Cursor, Filter, Hit, Query, QueryResult};
pub use schema::{FieldSpec, FieldType, Schema};
pub use verify::IndexProblem;

use crate::bitmap::sort::Slices;
use crate::bitmap::{BitmapBatch, SortRange, sort_key_f64, sort_key_i64};
use crate::docs::{DocStore, Document};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::keyspace::{SCHEMA_ENTRY, SYSTEM_FIELD, alive_key, doc_key, key};
use crate::layers::{Reader, Shared, read_bitmap};
use crate::options::EngineOptions;
use crate::registry::{FieldId, FieldKind};
use dictionary::{Canonical, Dictionary, add_values, canonical_values, decode_canonical};
use json::Row;
use schema::type_name;

/// Per-document locks: a change reads the stored document and writes the
/// new one with its bitmaps under its document's lock.
const DOC_LOCKS: usize = 256;

/// One schema field and the registry ids it is kept under.
#[derive(Debug)]
struct Resolved {
    spec: FieldSpec,
    /// Its id in documents.
    doc: FieldId,
    /// Filter fields: the bitmap id, the dictionary id, and the
    /// dictionary's place in `Index::dicts`.
    filter: Option<(FieldId, FieldId, usize)>,
    /// Sort fields: the sort layers' id.
    sort: Option<FieldId>,
}

/// Documents, bitmaps and sort layers kept consistent. See the module
/// documentation.
pub struct Index {
    shared: Arc<Shared>,
    docs: DocStore,
    schema: Schema,
    fields: Vec<Resolved>,
    /// Document field id to schema field.
    by_doc_field: HashMap<u16, usize>,
    /// The schema fields in document field id order (the encoding's).
    doc_order: Vec<usize>,
    dicts: RwLock<Vec<Dictionary>>,
    /// Serializes dictionary additions.
    adding: Mutex<()>,
    /// Queries hold it shared, the writes of changes exclusively: a query
    /// reads the engine directly (no snapshot, whose cost grows with the
    /// operations not yet compacted) and still sees one point in time.
    view: RwLock<()>,
    doc_locks: Vec<Mutex<()>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// Opens (or creates) the index in `dir` with `schema`. An existing
    /// index must have been created with the same schema
    /// ([`EngineError::SchemaMismatch`] otherwise). `opts` must not set a
    /// merge operator.
    pub fn open(dir: impl AsRef<Path>, schema: Schema, opts: EngineOptions) -> Result<Index> {
        schema.validate()?;
        Index::on_shared(Shared::open(dir.as_ref(), opts, "index")?, schema)
    }

    /// The schema an index was created with, if `engine` holds an index
    /// (`None`: no index was ever created in it). `engine` must have been
    /// opened with the layers' merge operator ([`crate::LayerOperator`]) if
    /// it holds one.
    pub fn stored_schema(engine: &Engine) -> Result<Option<Schema>> {
        let schema_key = key(SYSTEM_FIELD, SCHEMA_ENTRY)?;
        let Some(stored) = engine.get(schema_key)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&stored).map_err(|e| EngineError::Value {
            what: "index schema",
            key: schema_key,
            reason: e.to_string(),
        })?;
        Schema::from_text(text)
            .map(Some)
            .map_err(|e| EngineError::Value {
                what: "index schema",
                key: schema_key,
                reason: e.to_string(),
            })
    }

    /// Opens the index held by `engine` (which must have been opened with
    /// the layers' merge operator: without it, reads of keys with pending
    /// merges fail) with `schema` (as [`Index::open`]: created if `engine`
    /// holds none; [`EngineError::SchemaMismatch`] if it holds another).
    pub fn open_on(engine: Engine, schema: Schema) -> Result<Index> {
        schema.validate()?;
        Index::on_shared(Shared::on_engine(engine)?, schema)
    }

    fn on_shared(shared: Arc<Shared>, schema: Schema) -> Result<Index> {
        let text = schema.to_text();
        let schema_key = key(SYSTEM_FIELD, SCHEMA_ENTRY)?;
        match shared.engine.get(schema_key)? {
            Some(stored) if stored == text.as_bytes() => {}
            Some(stored) => {
                return Err(EngineError::SchemaMismatch {
                    stored: String::from_utf8_lossy(&stored).into_owned(),
                    given: text,
                });
            }
            None => shared.engine.put_with(
                schema_key,
                text.as_bytes(),
                WriteOptions::durability(Durability::Sync),
            )?,
        }
        let mut fields = Vec::with_capacity(schema.fields.len());
        let mut dicts = Vec::new();
        for spec in &schema.fields {
            let doc = shared.field(&spec.name, FieldKind::Document)?;
            let filter = if spec.filter {
                let bitmap = shared.field(&spec.name, FieldKind::Bitmap)?;
                let dict = shared.field(&spec.name, FieldKind::Dictionary)?;
                dicts.push(Dictionary::load(&shared.engine, dict)?);
                Some((bitmap, dict, dicts.len() - 1))
            } else {
                None
            };
            let sort = if spec.sort {
                Some(shared.field(&spec.name, FieldKind::SortLayers)?)
            } else {
                None
            };
            fields.push(Resolved {
                spec: spec.clone(),
                doc,
                filter,
                sort,
            });
        }
        let by_doc_field = fields
            .iter()
            .enumerate()
            .map(|(i, r)| (r.doc.0, i))
            .collect();
        let mut doc_order: Vec<usize> = (0..fields.len()).collect();
        doc_order.sort_by_key(|i| fields[*i].doc.0);
        Ok(Index {
            doc_order,
            docs: DocStore::on(Arc::clone(&shared)),
            shared,
            schema,
            fields,
            by_doc_field,
            dicts: RwLock::new(dicts),
            adding: Mutex::new(()),
            view: RwLock::new(()),
            doc_locks: (0..DOC_LOCKS).map(|_| Mutex::new(())).collect(),
        })
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The engine underneath: compaction, checkpoints, stats, flush.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Flushes and closes the engine.
    pub fn close(self) -> Result<()> {
        let Index { shared, docs, .. } = self;
        drop(docs);
        Shared::close(shared)
    }

    /// Document `doc`'s stored fields, if it exists.
    pub fn get(&self, doc: u32) -> Result<Option<Document>> {
        self.docs.get(doc)
    }

    /// The schema field named `name`.
    fn field_at(&self, name: &str) -> Result<usize> {
        self.fields
            .iter()
            .position(|r| r.spec.name == name)
            .ok_or_else(|| EngineError::UnknownField {
                name: name.to_owned(),
                kind: "index",
            })
    }

    /// `fields` by schema field, checked: every name in the schema, once,
    /// with a value of its type (`Deleted` allowed when `deletions`).
    fn checked(&self, fields: &[(&str, Value)], deletions: bool) -> Result<Vec<Option<Value>>> {
        let mut row: Vec<Option<Value>> = vec![None; self.fields.len()];
        for (name, value) in fields {
            let i = self.field_at(name)?;
            if row[i].is_some() {
                return Err(EngineError::InvalidArgument {
                    name: "document",
                    reason: format!("field `{name}` given twice"),
                });
            }
            let ty = self.fields[i].spec.ty;
            let ok = ty.matches(&value.as_ref()) || (deletions && *value == Value::Deleted);
            if !ok {
                return Err(EngineError::FieldType {
                    field: (*name).to_owned(),
                    expected: ty.name(),
                    found: type_name(value),
                });
            }
            row[i] = Some(value.clone());
        }
        Ok(row)
    }

    /// Stores document `doc` with exactly `fields` (every name a schema
    /// field, each value of its type), replacing any earlier one, and
    /// updates exactly the bitmaps and sort layers whose values changed.
    pub fn upsert(&self, doc: u32, fields: &[(&str, Value)]) -> Result<()> {
        let new: Row = self
            .checked(fields, false)?
            .into_iter()
            .map(|v| v.map(stored_form))
            .collect();
        let _lock = self.lock(doc);
        let old = self.read_row(self.engine(), doc)?;
        self.write_change(doc, old.as_ref(), Some(&new))
    }

    /// Changes the given fields of document `doc` (creating it if absent):
    /// scalars and strings replace, a tags list without `reset` extends the
    /// stored one and one with `reset` replaces it, `Deleted` removes the
    /// field. The bitmaps and sort layers follow, in the same batch.
    pub fn patch(&self, doc: u32, fields: &[(&str, Value)]) -> Result<()> {
        let patch = self.checked(fields, true)?;
        let _lock = self.lock(doc);
        let old = self.read_row(self.engine(), doc)?;
        let mut new: Row = old.clone().unwrap_or_else(|| vec![None; self.fields.len()]);
        for (slot, change) in new.iter_mut().zip(patch) {
            match change {
                None => {}
                Some(Value::Deleted) => *slot = None,
                Some(Value::I64List {
                    items,
                    reset: false,
                }) => match slot {
                    Some(Value::I64List { items: old, .. }) => old.extend_from_slice(&items),
                    _ => {
                        *slot = Some(Value::I64List {
                            items,
                            reset: false,
                        })
                    }
                },
                Some(v) => *slot = Some(stored_form(v)),
            }
        }
        self.write_change(doc, old.as_ref(), Some(&new))
    }

    /// Removes document `doc` with its bits in every bitmap and sort layer.
    pub fn delete(&self, doc: u32) -> Result<()> {
        let _lock = self.lock(doc);
        match self.read_row(self.engine(), doc)? {
            Some(old) => self.write_change(doc, Some(&old), None),
            None => Ok(()),
        }
    }

    fn lock(&self, doc: u32) -> parking_lot::MutexGuard<'_, ()> {
        self.doc_locks[stripe(doc)].lock()
    }

    /// The stored row of `doc`.
    fn read_row(&self, reader: &impl Reader, doc: u32) -> Result<Option<Row>> {
        let k = doc_key(doc);
        reader.read_with(k, |bytes| {
            let Some(bytes) = bytes else { return Ok(None) };
            let parsed = DocumentRef::parse(bytes).map_err(|e| bad_doc(k, e.to_string()))?;
            let mut row: Row = vec![None; self.fields.len()];
            for (id, value) in parsed.iter() {
                let i = *self
                    .by_doc_field
                    .get(&id)
                    .ok_or_else(|| bad_doc(k, format!("field id {id} is not in the schema")))?;
                row[i] = Some(value.to_value());
            }
            Ok(Some(row))
        })?
    }

    /// The filter values of `row`'s field `i`.
    fn values_of(row: Option<&Row>, i: usize) -> BTreeSet<Canonical> {
        row.and_then(|r| r[i].as_ref())
            .map(|v| canonical_values(&v.as_ref()).into_iter().collect())
            .unwrap_or_default()
    }

    /// Writes `new` (`None`: removal) over `old` in one batch: the
    /// document, the bits of the filter values and sort values that
    /// changed, and the alive bit. New filter values get dictionary ids
    /// first (a `Sync` write of their entries).
    fn write_change(&self, doc: u32, old: Option<&Row>, new: Option<&Row>) -> Result<()> {
        self.write_changes(&[(doc, old, new)])
    }

    /// [`Index::write_change`] for many documents (each once) in one
    /// atomic batch; the caller holds their locks.
    fn write_changes(&self, changes: &[(u32, Option<&Row>, Option<&Row>)]) -> Result<()> {
        let batch = self.changes_batch(changes)?;
        self.apply(&batch)
    }

    /// Writes `batch`, a change of the index, while no query runs.
    fn apply(&self, batch: &WriteBatch) -> Result<()> {
        let _view = self.view.write();
        self.engine().write(batch)
    }

    /// The batch [`Index::write_changes`] writes (new filter values get
    /// their dictionary ids first).
    fn changes_batch(&self, changes: &[(u32, Option<&Row>, Option<&Row>)]) -> Result<WriteBatch> {
        let mut fresh: Vec<(usize, FieldId, Canonical)> = Vec::new();
        {
            let dicts = self.dicts.read();
            for (_, _, new) in changes {
                for (i, r) in self.fields.iter().enumerate() {
                    if let Some((_, dict, at)) = r.filter {
                        for v in Self::values_of(*new, i) {
                            if dicts[at].id(&v).is_none() {
                                fresh.push((at, dict, v));
                            }
                        }
                    }
                }
            }
        }
        if !fresh.is_empty() {
            let _adding = self.adding.lock();
            add_values(self.engine(), &self.dicts, &fresh)?;
        }
        let mut batch = BitmapBatch::new();
        let mut docs: Vec<(u32, Option<Vec<u8>>)> = Vec::with_capacity(changes.len());
        {
            let dicts = self.dicts.read();
            for &(doc, old, new) in changes {
                self.diff_into(&mut batch, &dicts, doc, old, new)?;
                let bytes = match new {
                    Some(row) => Some(self.encode_row(row)?),
                    None => None,
                };
                docs.push((doc, bytes));
            }
        }
        let mut write = batch.to_write_batch();
        for (doc, bytes) in &docs {
            match bytes {
                Some(bytes) => write.put(doc_key(*doc), bytes),
                None => write.delete(doc_key(*doc)),
            };
        }
        Ok(write)
    }

    /// Adds to `batch` the bit changes that take `doc` from `old` to `new`.
    fn diff_into(
        &self,
        batch: &mut BitmapBatch,
        dicts: &[Dictionary],
        doc: u32,
        old: Option<&Row>,
        new: Option<&Row>,
    ) -> Result<()> {
        for (i, r) in self.fields.iter().enumerate() {
            if let Some((bitmap, _, at)) = r.filter {
                let (before, after) = (Self::values_of(old, i), Self::values_of(new, i));
                for v in before.difference(&after) {
                    if let Some(id) = dicts[at].id(v) {
                        batch.clear(bitmap, id, doc)?;
                    }
                }
                for v in after.difference(&before) {
                    let id = dicts[at]
                        .id(v)
                        .ok_or_else(|| EngineError::InvalidArgument {
                            name: "document",
                            reason: format!("field `{}`: a value without an id", r.spec.name),
                        })?;
                    batch.set(bitmap, id, doc)?;
                }
            }
            if let Some(sort) = r.sort {
                let value = |row: Option<&Row>| row.and_then(|r| r[i].as_ref()).and_then(sort_key);
                let (before, after) = (value(old), value(new));
                if before != after {
                    batch.change_sort_value(sort, doc, before, after);
                }
            }
        }
        if new.is_some() {
            batch.set_alive(doc);
        } else {
            batch.clear_alive(doc);
        }
        Ok(())
    }

    /// `row` in the document encoding, by document field id.
    fn encode_row(&self, row: &Row) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.encode_row_into(row, &mut bytes)?;
        Ok(bytes)
    }

    /// [`Index::encode_row`] appending to `out`.
    fn encode_row_into(&self, row: &Row, out: &mut Vec<u8>) -> Result<()> {
        self.encode_fields_into(|i| row[i].as_ref().map(Value::as_ref), out)
    }

    /// The document whose schema field `i` holds `value(i)`, appended to
    /// `out` in the document encoding.
    fn encode_fields_into<'v>(
        &self,
        value: impl Fn(usize) -> Option<ValueRef<'v>>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        let written = (|| {
            let mut writer = DocumentWriter::new(out);
            for &i in &self.doc_order {
                if let Some(v) = value(i) {
                    writer.field(self.fields[i].doc.0, v)?;
                }
            }
            writer.finish();
            Ok(())
        })();
        written.map_err(|e: silo_format::FormatError| {
            out.truncate(start);
            EngineError::InvalidArgument {
                name: "document",
                reason: e.to_string(),
            }
        })
    }

    /// Upserts many documents in one atomic batch (one sync of the engine's
    /// batch log for all of them, and one operand per bitmap): the bulk
    /// path. Every document is checked before anything is written; a
    /// document id given twice is an error.
    pub fn upsert_many(&self, docs: &[(u32, Vec<(&str, Value)>)]) -> Result<()> {
        let mut rows = Vec::with_capacity(docs.len());
        let mut seen = std::collections::HashSet::with_capacity(docs.len());
        for (doc, fields) in docs {
            if !seen.insert(*doc) {
                return Err(EngineError::InvalidArgument {
                    name: "documents",
                    reason: format!("document {doc} given twice"),
                });
            }
            let row: Row = self
                .checked(fields, false)?
                .into_iter()
                .map(|v| v.map(stored_form))
                .collect();
            rows.push((*doc, row));
        }
        let mut stripes: Vec<usize> = rows.iter().map(|(d, _)| stripe(*d)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        // In stripe order, so that two bulk writers never wait on each other
        // in a cycle.
        let _locks: Vec<_> = stripes.iter().map(|i| self.doc_locks[*i].lock()).collect();
        let olds = rows
            .iter()
            .map(|(doc, _)| self.read_row(self.engine(), *doc))
            .collect::<Result<Vec<_>>>()?;
        let changes: Vec<(u32, Option<&Row>, Option<&Row>)> = rows
            .iter()
            .zip(&olds)
            .map(|((doc, new), old)| (*doc, old.as_ref(), Some(new)))
            .collect();
        self.write_changes(&changes)
    }

    /// Removes many documents (each id at most once; absent ones are
    /// skipped) with their bits, in one atomic batch.
    pub fn delete_many(&self, docs: &[u32]) -> Result<()> {
        let mut seen = std::collections::HashSet::with_capacity(docs.len());
        if let Some(twice) = docs.iter().find(|d| !seen.insert(**d)) {
            return Err(EngineError::InvalidArgument {
                name: "documents",
                reason: format!("document {twice} given twice"),
            });
        }
        let mut stripes: Vec<usize> = docs.iter().map(|d| stripe(*d)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _locks: Vec<_> = stripes.iter().map(|i| self.doc_locks[*i].lock()).collect();
        let olds = docs
            .iter()
            .map(|doc| Ok((*doc, self.read_row(self.engine(), *doc)?)))
            .collect::<Result<Vec<_>>>()?;
        let changes: Vec<(u32, Option<&Row>, Option<&Row>)> = olds
            .iter()
            .filter_map(|(doc, old)| old.as_ref().map(|old| (*doc, Some(old), None)))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        self.write_changes(&changes)
    }

    /// The documents matching `filter` (at one point in time).
    pub fn count(&self, filter: &Filter) -> Result<u64> {
        let _view = self.view.read();
        let snap = &self.shared.engine;
        Ok(self.eval(snap, filter)?.len())
    }

    /// How many documents matching `filter` hold each value of filter field
    /// `field` (values held by none left out), most first, ties in the
    /// order values were first seen.
    pub fn facets(&self, field: &str, filter: &Filter) -> Result<Vec<(Value, u64)>> {
        let i = self.field_at(field)?;
        let Some((bitmap, _, at)) = self.fields[i].filter else {
            return Err(not_a(field, "filter"));
        };
        let _view = self.view.read();
        let snap = &self.shared.engine;
        let matched = self.eval(snap, filter)?;
        let dicts = self.dicts.read();
        let mut out = Vec::new();
        for (id, value) in dicts[at].entries() {
            let n = read_bitmap(snap, key(bitmap.0, id)?)?.intersection_len(&matched);
            if n > 0
                && let Some(v) = decode_canonical(value)
            {
                out.push((v, n));
            }
        }
        out.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        Ok(out)
    }

    /// A page of the documents matching `q.filter`, in `q.sort` order, with
    /// the stored fields asked for (all at one point in time).
    pub fn query(&self, q: &Query) -> Result<QueryResult> {
        let wanted: Vec<usize> = q
            .fields
            .iter()
            .map(|f| self.field_at(f))
            .collect::<Result<_>>()?;
        let _view = self.view.read();
        let snap = &self.shared.engine;
        let matched = self.eval(snap, &q.filter)?;
        let (docs, next): (Vec<u32>, Option<Cursor>) =
            match &q.sort {
                Some((name, order)) => {
                    let i = self.field_at(name)?;
                    let sort = self.fields[i].sort.ok_or_else(|| not_a(name, "sort"))?;
                    let after = match q.cursor {
                        None => None,
                        Some(Cursor::Sorted(c)) => Some(c),
                        Some(Cursor::Id(_)) => return Err(bad_cursor()),
                    };
                    let hits = Slices::read(snap, sort)?.top(&matched, *order, q.limit, after);
                    let next = (hits.len() == q.limit).then(|| hits.last()).flatten().map(
                        |(doc, value)| {
                            Cursor::Sorted(crate::bitmap::SortCursor {
                                value: *value,
                                doc: *doc,
                            })
                        },
                    );
                    (hits.into_iter().map(|(d, _)| d).collect(), next)
                }
                None => {
                    let mut rest = matched;
                    match q.cursor {
                        None => {}
                        Some(Cursor::Id(d)) => {
                            rest.remove_range(..=d);
                        }
                        Some(Cursor::Sorted(_)) => return Err(bad_cursor()),
                    }
                    let docs: Vec<u32> = rest.iter().take(q.limit).collect();
                    let next = (docs.len() == q.limit)
                        .then(|| docs.last().map(|d| Cursor::Id(*d)))
                        .flatten();
                    (docs, next)
                }
            };
        let mut hits = Vec::with_capacity(docs.len());
        for doc in docs {
            let fields = if wanted.is_empty() {
                Vec::new()
            } else {
                let row = self.read_row(snap, doc)?;
                wanted
                    .iter()
                    .map(|i| row.as_ref().and_then(|r| r[*i].clone()))
                    .collect()
            };
            hits.push(Hit { doc, fields });
        }
        Ok(QueryResult { hits, next })
    }

    /// The documents `filter` matches, read from `snap`.
    fn eval(&self, snap: &impl Reader, filter: &Filter) -> Result<RoaringBitmap> {
        Ok(match filter {
            Filter::All => read_bitmap(snap, alive_key())?,
            Filter::Eq(f, v) => self.eq(snap, f, v)?,
            Filter::In(f, vs) => {
                let mut out = RoaringBitmap::new();
                for v in vs {
                    out |= self.eq(snap, f, v)?;
                }
                out
            }
            Filter::NotEq(f, v) => read_bitmap(snap, alive_key())? - self.eq(snap, f, v)?,
            Filter::NotIn(f, vs) => {
                read_bitmap(snap, alive_key())?
                    - self.eval(snap, &Filter::In(f.clone(), vs.clone()))?
            }
            Filter::Range { field, lo, hi } => self.range(snap, field, lo, hi)?,
            Filter::And(fs) => {
                let mut parts = fs.iter();
                let mut out = match parts.next() {
                    Some(f) => self.eval(snap, f)?,
                    None => read_bitmap(snap, alive_key())?,
                };
                for f in parts {
                    if out.is_empty() {
                        break;
                    }
                    out &= self.eval(snap, f)?;
                }
                out
            }
            Filter::Or(fs) => {
                let mut out = RoaringBitmap::new();
                for f in fs {
                    out |= self.eval(snap, f)?;
                }
                out
            }
            Filter::Not(f) => read_bitmap(snap, alive_key())? - self.eval(snap, f)?,
        })
    }

    /// The documents whose filter field `field` holds `value`.
    fn eq(&self, snap: &impl Reader, field: &str, value: &Value) -> Result<RoaringBitmap> {
        let i = self.field_at(field)?;
        let r = &self.fields[i];
        let Some((bitmap, _, at)) = r.filter else {
            return Err(not_a(field, "filter"));
        };
        let ok = match r.spec.ty {
            FieldType::Tags => matches!(value, Value::I64(_)),
            ty => ty.matches(&value.as_ref()),
        };
        if !ok {
            return Err(EngineError::FieldType {
                field: field.to_owned(),
                expected: if r.spec.ty == FieldType::Tags {
                    "i64 (a tag)"
                } else {
                    r.spec.ty.name()
                },
                found: type_name(value),
            });
        }
        let Some(canonical) = canonical_values(&value.as_ref()).into_iter().next() else {
            return Ok(RoaringBitmap::new());
        };
        let id = self.dicts.read()[at].id(&canonical);
        match id {
            Some(id) => read_bitmap(snap, key(bitmap.0, id)?),
            // A value no document ever held.
            None => Ok(RoaringBitmap::new()),
        }
    }

    /// The documents whose sort field `field` is within `lo`..`hi`.
    fn range(
        &self,
        snap: &impl Reader,
        field: &str,
        lo: &Bound<Value>,
        hi: &Bound<Value>,
    ) -> Result<RoaringBitmap> {
        let i = self.field_at(field)?;
        let r = &self.fields[i];
        let sort = r.sort.ok_or_else(|| not_a(field, "sort"))?;
        let bound_key = |v: &Value| -> Result<u64> {
            if !r.spec.ty.matches(&v.as_ref()) {
                return Err(EngineError::FieldType {
                    field: field.to_owned(),
                    expected: r.spec.ty.name(),
                    found: type_name(v),
                });
            }
            sort_key(v).ok_or_else(|| not_a(field, "sort"))
        };
        let slices = Slices::read(snap, sort)?;
        let mut out = match lo {
            Bound::Included(v) => slices.range(SortRange::Ge(bound_key(v)?)),
            Bound::Excluded(v) => slices.range(SortRange::Gt(bound_key(v)?)),
            Bound::Unbounded => slices.range(SortRange::Ge(0)),
        };
        match hi {
            Bound::Included(v) => out &= slices.range(SortRange::Le(bound_key(v)?)),
            Bound::Excluded(v) => out &= slices.range(SortRange::Lt(bound_key(v)?)),
            Bound::Unbounded => {}
        }
        Ok(out)
    }
}

/// The lock stripe of document `doc`.
pub(crate) fn stripe(doc: u32) -> usize {
    doc as usize % DOC_LOCKS
}

/// A value as a sort layer holds it.
fn sort_key(value: &Value) -> Option<u64> {
    sort_key_ref(&value.as_ref())
}

/// [`sort_key`] of a borrowed value.
pub(crate) fn sort_key_ref(value: &ValueRef<'_>) -> Option<u64> {
    match value {
        ValueRef::I64(v) => Some(sort_key_i64(*v)),
        ValueRef::U64(v) => Some(*v),
        ValueRef::F64(v) => Some(sort_key_f64(*v)),
        ValueRef::Bool(v) => Some(u64::from(*v)),
        _ => None,
    }
}

/// A value as a document stores it (a tags list's `reset` dropped).
fn stored_form(value: Value) -> Value {
    match value {
        Value::I64List { items, .. } => Value::I64List {
            items,
            reset: false,
        },
        v => v,
    }
}

fn not_a(field: &str, kind: &str) -> EngineError {
    EngineError::InvalidArgument {
        name: "query",
        reason: format!("field `{field}` is not a {kind} field of the schema"),
    }
}

fn bad_cursor() -> EngineError {
    EngineError::InvalidArgument {
        name: "cursor",
        reason: "a cursor from a query sorted differently".to_owned(),
    }
}

fn bad_doc(key: u64, reason: String) -> EngineError {
    EngineError::Value {
        what: "document",
        key,
        reason,
    }
}

//! Bulk import from JSON lines: one document a line, an object with an
//! `"id"` (a `u32`) and schema fields (`null`: absent).
//!
//! Two passes over the file, each read in chunks of whole lines by one
//! thread and parsed by `threads` workers:
//!
//! 1. **Check.** Every line is parsed and checked against the schema, and
//!    the ids and filter values are gathered. A bad line is an error
//!    naming it (the first bad line of the file), and nothing is written.
//!    Then the new filter values get dictionary ids (one `Sync` write),
//!    and an id given on several lines is noted with its last line: only
//!    that line is written (an upsert replaces the whole document, so the
//!    earlier lines would leave nothing).
//! 2. **Write.** Each chunk becomes one atomic engine batch. A document
//!    that did not exist when the import began (the common case) costs no
//!    read and no per-bit operation: the chunk's new documents are
//!    inverted in memory, per bitmap and per sort-layer slice, and each
//!    bitmap receives one union operand. A document that existed is
//!    diffed against its stored form, as [`Index::upsert`] does. The batch
//!    is built outside any lock and written holding every document lock,
//!    after checking that no document it treats as new was created by
//!    another writer meanwhile (if one was, the chunk is rebuilt with it
//!    diffed).
//!
//! A crash during the write pass leaves every chunk whole or absent: the
//! documents present agree with their bitmaps and sort layers. Running the
//! import again completes it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use roaring::RoaringBitmap;
use silo_core::WriteBatch;
use silo_format::{Value, encode_union_operand};

use crate::bitmap::slice_key;
use crate::bitmap::sort::EXISTS_SLICE;
use crate::error::{EngineError, Result};
use crate::index::chunks::{Chunk, is_blank, run_chunks};
use crate::index::dictionary::{Canonical, add_values, each_canonical};
use crate::index::json::{Parsed, ParsedRow, Row, parse_row};
use crate::index::{Index, sort_key_ref};
use crate::keyspace::{alive_key, doc_key, key};
use crate::layers::read_bitmap;
use crate::registry::FieldId;

/// The sort layers' "has a value" slice, as an index.
const EXISTS: usize = 64;
const _: () = assert!(EXISTS as u64 == EXISTS_SLICE);

/// Bytes of input per chunk (one atomic batch) by default.
pub const IMPORT_CHUNK_BYTES: usize = 8 << 20;

/// How [`Index::import_json_lines_with`] works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Threads parsing and writing (at least 1).
    pub threads: usize,
    /// Bytes of input per chunk: each chunk is one atomic batch.
    pub chunk_bytes: usize,
    /// Lines at the start of the file that are not documents (a header):
    /// skipped unread.
    pub skip_lines: u64,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            threads: 2,
            chunk_bytes: IMPORT_CHUNK_BYTES,
            skip_lines: 0,
        }
    }
}

impl ImportOptions {
    /// The defaults with `threads` threads.
    pub fn threads(threads: usize) -> ImportOptions {
        ImportOptions {
            threads,
            ..ImportOptions::default()
        }
    }

    /// These options skipping the first `lines` lines (a header).
    pub fn skip_lines(self, lines: u64) -> ImportOptions {
        ImportOptions {
            skip_lines: lines,
            ..self
        }
    }

    /// These options with chunks of `bytes` bytes of input.
    pub fn chunk_bytes(self, bytes: usize) -> ImportOptions {
        ImportOptions {
            chunk_bytes: bytes,
            ..self
        }
    }
}

/// The fault seam's hold point between an import's check pass and its
/// write pass (tests hold an import there to change the index under it;
/// nothing without silo-io's `fault-injection` feature).
pub const HOLD_IMPORT_WRITE_PASS: &str = "index: between an import's check and write passes";

/// What [`Index::import_json_lines`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Document lines read (a line repeating an id counts again).
    pub documents: u64,
    /// Of them, lines replaced by a later line with the same id (not
    /// written).
    pub superseded: u64,
    /// Documents that existed before and were diffed against their stored
    /// form.
    pub replaced: u64,
    /// Atomic batches written.
    pub batches: u64,
    /// Lines skipped because they were blank.
    pub blank_lines: u64,
}

/// A document read from a line: its id and fields.
pub type ImportedDoc = (u32, Vec<(String, Value)>);

/// Distinct filter values (a fast hash: values are looked up per line).
type ValueSet = HashSet<Canonical, foldhash::fast::RandomState>;

/// What the check pass learned of one chunk.
struct Checked {
    /// Ids with their lines, in file order.
    ids: Vec<(u32, u64)>,
    /// Filter values, by dictionary place.
    values: Vec<ValueSet>,
    blank: u64,
}

/// What the write pass needs to know of the whole file.
struct Plan {
    /// Ids given on several lines, with the last of them.
    last_line: HashMap<u32, u64>,
    /// The documents that existed when the import began.
    existed: RoaringBitmap,
}

/// What the write pass did with one chunk.
#[derive(Default)]
struct Written {
    superseded: u64,
    replaced: u64,
    batches: u64,
}

impl Index {
    /// Converts one JSON line into a document for this schema: `"id"` a
    /// `u32`, every other key a schema field with a value of its type
    /// (`null`: absent). `line` numbers the error.
    pub fn parse_json_line(&self, text: &str, line: u64) -> Result<ImportedDoc> {
        let (id, row) = parse_row(&self.schema, text.as_bytes())
            .map_err(|reason| EngineError::Import { line, reason })?;
        let fields = self
            .schema
            .fields
            .iter()
            .zip(row)
            .filter_map(|(spec, v)| v.map(|v| (spec.name.clone(), v.into_value())))
            .collect();
        Ok((id, fields))
    }

    /// Imports the JSON lines of the file at `path` with `threads` threads
    /// and the default chunk size; see [`Index::import_json_lines_with`].
    pub fn import_json_lines(&self, path: &Path, threads: usize) -> Result<ImportReport> {
        self.import_json_lines_with(path, ImportOptions::threads(threads))
    }

    /// Imports the JSON lines of the file at `path` (see the module
    /// documentation): every line is checked first, then the documents are
    /// written in atomic batches of a chunk each. A later line with the
    /// same id replaces the earlier one, and a document that existed is
    /// replaced, its bitmaps and sort layers following.
    pub fn import_json_lines_with(&self, path: &Path, opts: ImportOptions) -> Result<ImportReport> {
        let threads = opts.threads.max(1);
        let filters = self.fields.iter().filter(|r| r.filter.is_some()).count();
        // 1. Check every line.
        let checked = run_chunks(path, opts.chunk_bytes, threads, |chunk| {
            self.check_chunk(chunk, filters, opts.skip_lines)
        })?;
        let mut report = ImportReport::default();
        let mut fresh: Vec<(usize, FieldId, Canonical)> = Vec::new();
        let mut seen = RoaringBitmap::new();
        let mut repeated = RoaringBitmap::new();
        let mut values: Vec<ValueSet> = vec![ValueSet::default(); filters];
        for c in &checked {
            report.blank_lines += c.blank;
            report.documents += c.ids.len() as u64;
            for (id, _) in &c.ids {
                if !seen.insert(*id) {
                    repeated.insert(*id);
                }
            }
        }
        let mut last_line = HashMap::new();
        for c in checked {
            if !repeated.is_empty() {
                last_line.extend(
                    c.ids
                        .iter()
                        .copied()
                        .filter(|(id, _)| repeated.contains(*id)),
                );
            }
            for (all, part) in values.iter_mut().zip(c.values) {
                all.extend(part);
            }
        }
        {
            let dicts = self.dicts.read();
            for r in &self.fields {
                if let Some((_, dict, at)) = r.filter {
                    for v in std::mem::take(&mut values[at]) {
                        if dicts[at].id(&v).is_none() {
                            fresh.push((at, dict, v));
                        }
                    }
                }
            }
        }
        if !fresh.is_empty() {
            let _adding = self.adding.lock();
            add_values(self.engine(), &self.dicts, &fresh)?;
        }
        drop(fresh);
        // 2. Write, a chunk a batch.
        let plan = Plan {
            last_line,
            existed: read_bitmap(self.engine(), alive_key())?,
        };
        silo_io::fault::hold_point(self.engine().dir(), HOLD_IMPORT_WRITE_PASS);
        let written = run_chunks(path, opts.chunk_bytes, threads, |chunk| {
            self.write_chunk(chunk, &plan, opts.skip_lines)
        })?;
        for w in written {
            report.superseded += w.superseded;
            report.replaced += w.replaced;
            report.batches += w.batches;
        }
        Ok(report)
    }

    /// The check pass over one chunk.
    fn check_chunk(&self, chunk: &Chunk, filters: usize, skip: u64) -> Result<Checked> {
        let mut out = Checked {
            ids: Vec::new(),
            values: vec![ValueSet::default(); filters],
            blank: 0,
        };
        let mut canonical = Vec::new();
        for (line, text) in chunk.lines().filter(|(n, _)| *n > skip) {
            if is_blank(text) {
                out.blank += 1;
                continue;
            }
            let (id, row) = parse_row(&self.schema, text)
                .map_err(|reason| EngineError::Import { line, reason })?;
            out.ids.push((id, line));
            for (r, v) in self.fields.iter().zip(&row) {
                if let (Some((_, _, at)), Some(v)) = (r.filter, v) {
                    let set = &mut out.values[at];
                    each_canonical(&v.as_value_ref(), &mut canonical, |c| {
                        if !set.contains(c) {
                            set.insert(c.to_vec());
                        }
                        Ok(())
                    })?;
                }
            }
        }
        Ok(out)
    }

    /// The write pass over one chunk: its documents in one atomic batch.
    fn write_chunk(&self, chunk: &Chunk, plan: &Plan, skip: u64) -> Result<Written> {
        let mut written = Written::default();
        let mut new = Vec::new();
        let mut existing: Vec<(u32, Row)> = Vec::new();
        for (line, text) in chunk.lines().filter(|(n, _)| *n > skip) {
            if is_blank(text) {
                continue;
            }
            let (id, row) = parse_row(&self.schema, text)
                .map_err(|reason| EngineError::Import { line, reason })?;
            if plan.last_line.get(&id).is_some_and(|last| *last != line) {
                written.superseded += 1;
                continue;
            }
            if plan.existed.contains(id) {
                existing.push((id, owned(row)));
            } else {
                new.push((id, row));
            }
        }
        if new.is_empty() && existing.is_empty() {
            return Ok(written);
        }
        let mut batch = self.new_documents_batch(&new)?;
        let _locks: Vec<_> = self.doc_locks.iter().map(|l| l.lock()).collect();
        let alive = read_bitmap(self.engine(), alive_key())?;
        if new.iter().any(|(id, _)| alive.contains(*id)) {
            // Another writer created some of them since the import began.
            let (raced, still_new): (Vec<_>, Vec<_>) =
                new.into_iter().partition(|(id, _)| alive.contains(*id));
            existing.extend(raced.into_iter().map(|(id, row)| (id, owned(row))));
            batch = self.new_documents_batch(&still_new)?;
        }
        written.replaced = existing.len() as u64;
        if !existing.is_empty() {
            let olds = existing
                .iter()
                .map(|(doc, _)| self.read_row(self.engine(), *doc))
                .collect::<Result<Vec<_>>>()?;
            let changes: Vec<(u32, Option<&Row>, Option<&Row>)> = existing
                .iter()
                .zip(&olds)
                .map(|((doc, new), old)| (*doc, old.as_ref(), Some(new)))
                .collect();
            for op in self.changes_batch(&changes)?.ops() {
                batch.push(op);
            }
        }
        self.apply(&batch)?;
        written.batches = 1;
        Ok(written)
    }

    /// One batch creating `docs`, none of which exists: the documents, and
    /// for each bitmap and sort-layer slice one union operand of the new
    /// documents' bits, and one for the alive bitmap. Every filter value
    /// must have its dictionary id already.
    fn new_documents_batch(&self, docs: &[(u32, ParsedRow<'_>)]) -> Result<WriteBatch> {
        // Documents by bitmap: per filter field, by value id.
        let mut by_value: Vec<(FieldId, Vec<Vec<u32>>)> = Vec::new();
        // Documents by slice, per sort field.
        let mut by_slice: Vec<(FieldId, Vec<Vec<u32>>)> = Vec::new();
        for r in &self.fields {
            if let Some((bitmap, _, _)) = r.filter {
                by_value.push((bitmap, Vec::new()));
            }
            if let Some(sort) = r.sort {
                by_slice.push((sort, vec![Vec::new(); EXISTS + 1]));
            }
        }
        let mut batch = WriteBatch::new();
        let mut encoded = Vec::new();
        let mut canonical = Vec::new();
        {
            let dicts = self.dicts.read();
            for (doc, row) in docs {
                let (mut f, mut s) = (0, 0);
                for (r, v) in self.fields.iter().zip(row) {
                    if let Some((_, _, at)) = r.filter {
                        let lists = &mut by_value[f].1;
                        f += 1;
                        if let Some(v) = v {
                            each_canonical(&v.as_value_ref(), &mut canonical, |c| {
                                let id = dicts[at].id(c).ok_or_else(|| no_id(&r.spec.name))?;
                                let id = usize::try_from(id).map_err(|_| no_id(&r.spec.name))?;
                                if lists.len() <= id {
                                    lists.resize_with(id + 1, Vec::new);
                                }
                                lists[id].push(*doc);
                                Ok(())
                            })?;
                        }
                    }
                    if r.sort.is_some() {
                        let layers = &mut by_slice[s].1;
                        s += 1;
                        if let Some(mut value) =
                            v.as_ref().and_then(|v| sort_key_ref(&v.as_value_ref()))
                        {
                            while value != 0 {
                                layers[value.trailing_zeros() as usize].push(*doc);
                                value &= value - 1;
                            }
                            layers[EXISTS].push(*doc);
                        }
                    }
                }
                encoded.clear();
                self.encode_fields_into(
                    |i| row[i].as_ref().map(Parsed::as_value_ref),
                    &mut encoded,
                )?;
                batch.put(doc_key(*doc), &encoded);
            }
        }
        let mut operand = Vec::new();
        let mut union = |k: u64, mut docs: Vec<u32>| -> Result<()> {
            if docs.is_empty() {
                return Ok(());
            }
            docs.sort_unstable();
            docs.dedup();
            let bitmap = RoaringBitmap::from_sorted_iter(docs).map_err(|e| {
                EngineError::InvalidArgument {
                    name: "documents",
                    reason: e.to_string(),
                }
            })?;
            operand.clear();
            encode_union_operand(&bitmap, &mut operand);
            batch.merge(k, &operand);
            Ok(())
        };
        for (bitmap, lists) in by_value {
            for (id, docs) in (0u64..).zip(lists) {
                if !docs.is_empty() {
                    union(key(bitmap.0, id)?, docs)?;
                }
            }
        }
        for (sort, layers) in by_slice {
            for (slice, docs) in (0u64..).zip(layers) {
                union(slice_key(sort, slice), docs)?;
            }
        }
        union(alive_key(), docs.iter().map(|(d, _)| *d).collect())?;
        Ok(batch)
    }
}

/// A parsed row, owned.
fn owned(row: ParsedRow<'_>) -> Row {
    row.into_iter().map(|v| v.map(Parsed::into_value)).collect()
}

fn no_id(field: &str) -> EngineError {
    EngineError::InvalidArgument {
        name: "document",
        reason: format!("field `{field}`: a value without a dictionary id"),
    }
}

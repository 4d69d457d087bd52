//! Bulk import from JSON lines: one document a line, an object with an
//! `"id"` (a `u32`) and schema fields. Every line is checked before any is
//! written (a first pass), so a bad line writes nothing; then documents are
//! written in atomic batches of [`IMPORT_BATCH`] by `threads` writers, each
//! owning the documents of its lock stripes (writers never wait on each
//! other's documents).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crossbeam::channel;
use serde_json::Value as Json;
use silo_format::Value;

use crate::error::{EngineError, Result};
use crate::index::schema::FieldType;
use crate::index::{Index, stripe};

/// A file opened through silo-io, read from start to end.
struct ReadFile(silo_io::SiloFile);

impl std::io::Read for ReadFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.as_std().read(buf)
    }
}

/// Documents per atomic batch of an import.
pub const IMPORT_BATCH: usize = 1000;

/// What [`Index::import_json_lines`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Documents written (a line repeating an id counts again).
    pub documents: u64,
    /// Atomic batches they took.
    pub batches: u64,
    /// Lines skipped because they were empty.
    pub blank_lines: u64,
}

/// A document read from a line: its id and fields.
pub type ImportedDoc = (u32, Vec<(String, Value)>);

impl Index {
    /// Converts one JSON line into a document for this schema: `"id"` a
    /// `u32`, every other key a schema field with a value of its type
    /// (`null`: absent). `line` numbers the error.
    pub fn parse_json_line(&self, text: &str, line: u64) -> Result<ImportedDoc> {
        let bad = |reason: String| EngineError::Import { line, reason };
        let json: Json = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Json::Object(object) = json else {
            return Err(bad("not a JSON object".to_owned()));
        };
        let id = object
            .get("id")
            .and_then(Json::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| bad("no `id` that is a whole number below 2^32".to_owned()))?;
        let mut fields = Vec::with_capacity(object.len());
        for (name, value) in &object {
            if name == "id" || value.is_null() {
                continue;
            }
            let spec = self
                .schema
                .field(name)
                .ok_or_else(|| bad(format!("field `{name}` is not in the schema")))?;
            let wrong = || {
                bad(format!(
                    "field `{name}` takes {} values, got {value}",
                    spec.ty.name()
                ))
            };
            let v = match spec.ty {
                FieldType::I64 => Value::I64(value.as_i64().ok_or_else(wrong)?),
                FieldType::U64 => Value::U64(value.as_u64().ok_or_else(wrong)?),
                FieldType::F64 => Value::F64(value.as_f64().ok_or_else(wrong)?),
                FieldType::Bool => Value::Bool(value.as_bool().ok_or_else(wrong)?),
                FieldType::Str => Value::Str(value.as_str().ok_or_else(wrong)?.to_owned()),
                FieldType::Tags => Value::I64List {
                    items: value
                        .as_array()
                        .ok_or_else(wrong)?
                        .iter()
                        .map(|t| t.as_i64().ok_or_else(wrong))
                        .collect::<Result<_>>()?,
                    reset: false,
                },
            };
            fields.push((name.clone(), v));
        }
        Ok((id, fields))
    }

    /// Imports the JSON lines of the file at `path` (see the module
    /// documentation): every line is checked first, then the documents
    /// are upserted in atomic batches by `threads` writers. A later line
    /// with the same id replaces the earlier one.
    pub fn import_json_lines(&self, path: &Path, threads: usize) -> Result<ImportReport> {
        let threads = threads.max(1);
        let lines = || -> Result<_> {
            let file = silo_io::SiloFile::open_read(path).map_err(|e| EngineError::Import {
                line: 0,
                reason: e.to_string(),
            })?;
            Ok(BufReader::new(ReadFile(file))
                .lines()
                .enumerate()
                .map(|(i, l)| {
                    let n = i as u64 + 1;
                    l.map(|l| (n, l)).map_err(|e| EngineError::Import {
                        line: n,
                        reason: format!("unreadable: {e}"),
                    })
                }))
        };
        // 1. Check every line.
        for line in lines()? {
            let (n, text) = line?;
            if !text.trim().is_empty() {
                self.parse_json_line(&text, n)?;
            }
        }
        // 2. Write, each writer the documents of its stripes.
        let mut report = ImportReport::default();
        std::thread::scope(|s| -> Result<()> {
            let (senders, handles): (Vec<_>, Vec<_>) = (0..threads)
                .map(|_| {
                    let (tx, rx) = channel::bounded::<Vec<ImportedDoc>>(4);
                    let handle = s.spawn(move || -> Result<u64> {
                        let mut batches = 0;
                        for chunk in rx {
                            let docs: Vec<(u32, Vec<(&str, Value)>)> = chunk
                                .iter()
                                .map(|(d, f)| {
                                    (*d, f.iter().map(|(n, v)| (n.as_str(), v.clone())).collect())
                                })
                                .collect();
                            self.upsert_many(&docs)?;
                            batches += 1;
                        }
                        Ok(batches)
                    });
                    (tx, handle)
                })
                .unzip();
            let mut pending: Vec<(Vec<ImportedDoc>, HashSet<u32>)> =
                (0..threads).map(|_| (Vec::new(), HashSet::new())).collect();
            let mut failed = None;
            for line in lines()? {
                let (n, text) = line?;
                if text.trim().is_empty() {
                    report.blank_lines += 1;
                    continue;
                }
                let (doc, fields) = self.parse_json_line(&text, n)?;
                let w = stripe(doc) % threads;
                let (buf, ids) = &mut pending[w];
                // A repeated id goes in the next batch, after the earlier one.
                if ids.contains(&doc) || buf.len() >= IMPORT_BATCH {
                    if senders[w].send(std::mem::take(buf)).is_err() {
                        failed = Some(w);
                        break;
                    }
                    ids.clear();
                }
                ids.insert(doc);
                buf.push((doc, fields));
                report.documents += 1;
            }
            for (w, (buf, _)) in pending.into_iter().enumerate() {
                if !buf.is_empty() && failed.is_none() && senders[w].send(buf).is_err() {
                    failed = Some(w);
                }
            }
            drop(senders);
            let mut first_error = None;
            for handle in handles {
                match handle.join() {
                    Ok(Ok(b)) => report.batches += b,
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(_) => {
                        first_error.get_or_insert(EngineError::Import {
                            line: 0,
                            reason: "an import writer panicked".to_owned(),
                        });
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })?;
        Ok(report)
    }
}

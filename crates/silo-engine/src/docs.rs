//! The document layer: documents keyed by `u32` id, fields by name through
//! the registry, typed values in silo-format's document encoding.
//!
//! ```
//! use silo_engine::{DocStore, EngineOptions};
//! use silo_format::Value;
//! let dir = tempfile::tempdir().unwrap();
//! let docs = DocStore::open(dir.path(), EngineOptions { shards: Some(2), ..Default::default() })?;
//! docs.put(7, &[("title", Value::Str("a".into())), ("tags", Value::I64List { items: vec![1], reset: false })])?;
//! docs.merge(7, &[("tags", Value::I64List { items: vec![2], reset: false }), ("title", Value::Deleted)])?;
//! let doc = docs.get(7)?.unwrap();
//! assert_eq!(doc.get("tags"), Some(&Value::I64List { items: vec![1, 2], reset: false }));
//! assert_eq!(doc.get("title"), None);
//! assert_eq!(docs.get_fields(7, &["tags", "size"])?.unwrap()[1], None);
//! # Ok::<(), silo_engine::EngineError>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use silo_format::{DocumentRef, Value, encode_document};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::keyspace::doc_key;
use crate::layers::Shared;
use crate::options::EngineOptions;
use crate::registry::{FieldId, FieldKind};

/// A document read back: field name to value.
pub type Document = BTreeMap<String, Value>;

/// Documents over a sharded engine. See the module documentation.
pub struct DocStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DocStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocStore")
            .field("fields", &self.fields().len())
            .finish_non_exhaustive()
    }
}

impl DocStore {
    /// Opens (or creates) the document store in `dir`: an engine whose
    /// merge operator is the layers' ([`crate::LayerOperator`]). `opts`
    /// must not set a merge operator of its own.
    pub fn open(dir: impl AsRef<Path>, opts: EngineOptions) -> Result<DocStore> {
        Ok(DocStore {
            shared: Shared::open(dir.as_ref(), opts, "document store")?,
        })
    }

    /// A handle on `shared` (the index layer's).
    pub(crate) fn on(shared: Arc<Shared>) -> DocStore {
        DocStore { shared }
    }

    /// The engine underneath: compaction, checkpoints, stats, flush.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Flushes and closes the engine (if no other handle shares it).
    pub fn close(self) -> Result<()> {
        Shared::close(self.shared)
    }

    /// The id of document field `name`, registering it (durably) if new.
    pub fn field(&self, name: &str) -> Result<FieldId> {
        self.shared.field(name, FieldKind::Document)
    }

    /// The registered document fields, in id order.
    pub fn fields(&self) -> Vec<(FieldId, String)> {
        self.shared.fields(FieldKind::Document)
    }

    /// Encodes `fields` by field id (registering new names). A name given
    /// twice is an error; nothing is registered for a refused document
    /// beyond the names before the duplicate.
    pub(crate) fn encode(&self, fields: &[(&str, Value)], keep_deleted: bool) -> Result<Vec<u8>> {
        let mut seen = HashSet::with_capacity(fields.len());
        let mut by_id = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            if !seen.insert(*name) {
                return Err(EngineError::InvalidArgument {
                    name: "document",
                    reason: format!("field `{name}` given twice"),
                });
            }
            let value = match value {
                Value::Deleted if !keep_deleted => continue,
                // A whole document's list replaces nothing: no RESET.
                Value::I64List { items, .. } if !keep_deleted => Value::I64List {
                    items: items.clone(),
                    reset: false,
                },
                v => v.clone(),
            };
            by_id.push((self.field(name)?.0, value));
        }
        let mut out = Vec::new();
        encode_document(&by_id, &mut out).map_err(|e| EngineError::InvalidArgument {
            name: "document",
            reason: e.to_string(),
        })?;
        Ok(out)
    }

    /// Stores document `doc` with exactly `fields` (a `Deleted` value
    /// means the field is absent; a list's `reset` flag is dropped).
    pub fn put(&self, doc: u32, fields: &[(&str, Value)]) -> Result<()> {
        let bytes = self.encode(fields, false)?;
        self.engine().put(doc_key(doc), &bytes)
    }

    /// Merges `partial` into document `doc` (creating it if absent):
    /// scalars, strings and bytes replace the stored value; an `I64List`
    /// without `reset` extends a stored list (older items first) and one
    /// with `reset` replaces it; `Deleted` removes the field. One
    /// merge operand: compaction or the next read folds it.
    pub fn merge(&self, doc: u32, partial: &[(&str, Value)]) -> Result<()> {
        let bytes = self.encode(partial, true)?;
        self.engine().merge(doc_key(doc), &bytes)
    }

    /// Removes document `doc`.
    pub fn delete(&self, doc: u32) -> Result<()> {
        self.engine().delete(doc_key(doc))
    }

    /// Document `doc`, if it exists.
    pub fn get(&self, doc: u32) -> Result<Option<Document>> {
        let k = doc_key(doc);
        self.engine().get_with(k, |bytes| {
            let Some(bytes) = bytes else { return Ok(None) };
            let parsed = DocumentRef::parse(bytes).map_err(|e| bad_doc(k, e.to_string()))?;
            let registry = self.shared.registry.read();
            let mut out = Document::new();
            for (id, value) in parsed.iter() {
                let name = match registry.field(FieldId(id)) {
                    Some((name, FieldKind::Document)) => name,
                    _ => return Err(bad_doc(k, format!("field id {id} is not a document field"))),
                };
                out.insert(name.to_owned(), value.to_value());
            }
            Ok(Some(out))
        })?
    }

    /// The values of `names` in document `doc` (`None` for a field it
    /// lacks or a name never registered), decoding only those fields;
    /// `None` if the document does not exist.
    pub fn get_fields(&self, doc: u32, names: &[&str]) -> Result<Option<Vec<Option<Value>>>> {
        let ids: Vec<Option<FieldId>> = names
            .iter()
            .map(|n| self.shared.field_id(n, FieldKind::Document))
            .collect();
        let k = doc_key(doc);
        self.engine().get_with(k, |bytes| {
            let Some(bytes) = bytes else { return Ok(None) };
            let parsed = DocumentRef::parse(bytes).map_err(|e| bad_doc(k, e.to_string()))?;
            Ok(Some(
                ids.iter()
                    .map(|id| id.and_then(|id| parsed.get(id.0)).map(|v| v.to_value()))
                    .collect(),
            ))
        })?
    }
}

fn bad_doc(key: u64, reason: String) -> EngineError {
    EngineError::Value {
        what: "document",
        key,
        reason,
    }
}

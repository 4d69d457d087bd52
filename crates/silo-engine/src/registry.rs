//! The field registry: field names to `u16` ids, per kind of field, kept in
//! the engine itself (key `(0, id)` holds `kind u8 | name`), so that
//! checkpoints, crash recovery and replication carry it with the data.
//!
//! Ids are given out densely from [`FIRST_USER_FIELD`] and never reused;
//! an entry is durable (a `Sync` put) before its id is handed out, so no
//! bitmap or document can use an id the registry could lose. Open reads the
//! entries from id 1 up to the first absent one.

use std::collections::HashMap;

use silo_core::{Durability, WriteOptions};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::keyspace::{FIRST_USER_FIELD, LAST_USER_FIELD, REGISTRY_FIELD, key};

/// The longest field name, in bytes.
pub const MAX_FIELD_NAME: usize = 255;

/// What a field is for. One name may be registered once per kind, each
/// with its own id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FieldKind {
    /// Bitmaps keyed by value: exact-value filters and tags.
    Bitmap,
    /// Bit-sliced sort layers of a numeric field.
    SortLayers,
    /// A field of the stored documents.
    Document,
    /// The value dictionary of an index filter field: its values to the
    /// ids its bitmaps are keyed by.
    Dictionary,
}

impl FieldKind {
    fn code(self) -> u8 {
        match self {
            FieldKind::Bitmap => 1,
            FieldKind::SortLayers => 2,
            FieldKind::Document => 3,
            FieldKind::Dictionary => 4,
        }
    }

    fn from_code(code: u8) -> Option<FieldKind> {
        match code {
            1 => Some(FieldKind::Bitmap),
            2 => Some(FieldKind::SortLayers),
            3 => Some(FieldKind::Document),
            4 => Some(FieldKind::Dictionary),
            _ => None,
        }
    }

    /// The kind's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Bitmap => "bitmap",
            FieldKind::SortLayers => "sort",
            FieldKind::Document => "document",
            FieldKind::Dictionary => "dictionary",
        }
    }
}

/// A registered field's id. Only a registry gives them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub(crate) u16);

impl FieldId {
    /// The id as stored in keys and documents.
    pub fn get(self) -> u16 {
        self.0
    }
}

/// The registered fields of one engine.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// By id: `entries[id - FIRST_USER_FIELD]`.
    entries: Vec<(String, FieldKind)>,
    by_name: HashMap<(String, FieldKind), FieldId>,
}

impl Registry {
    /// Reads the registry held by `engine`.
    pub(crate) fn load(engine: &Engine) -> Result<Registry> {
        let mut registry = Registry::default();
        for id in FIRST_USER_FIELD..=LAST_USER_FIELD {
            let k = key(REGISTRY_FIELD, u64::from(id))?;
            let Some(entry) = engine.get(k)? else { break };
            let (name, kind) = decode_entry(&entry).map_err(|reason| EngineError::Value {
                what: "field registry entry",
                key: k,
                reason,
            })?;
            registry.insert(FieldId(id), name, kind);
        }
        Ok(registry)
    }

    /// Adds the entry of `id`, the next id in order.
    fn insert(&mut self, id: FieldId, name: String, kind: FieldKind) -> FieldId {
        self.entries.push((name.clone(), kind));
        self.by_name.insert((name, kind), id);
        id
    }

    /// The id the next registered field gets, if any is left.
    fn next_id(&self) -> Option<FieldId> {
        u16::try_from(self.entries.len())
            .ok()
            .and_then(|n| FIRST_USER_FIELD.checked_add(n))
            .filter(|id| *id <= LAST_USER_FIELD)
            .map(FieldId)
    }

    /// The id of `name` as a field of `kind`, if registered.
    pub(crate) fn id(&self, name: &str, kind: FieldKind) -> Option<FieldId> {
        self.by_name.get(&(name.to_owned(), kind)).copied()
    }

    /// The name and kind of `id`, if this registry gave it out.
    pub(crate) fn field(&self, id: FieldId) -> Option<(&str, FieldKind)> {
        let at = id.0.checked_sub(FIRST_USER_FIELD)?;
        self.entries
            .get(usize::from(at))
            .map(|(n, k)| (n.as_str(), *k))
    }

    /// `id` if this registry gave it out for a field of `kind`.
    pub(crate) fn check(&self, id: FieldId, kind: FieldKind) -> Result<FieldId> {
        match self.field(id) {
            Some((_, k)) if k == kind => Ok(id),
            _ => Err(EngineError::InvalidField {
                id: id.0,
                kind: kind.name(),
            }),
        }
    }

    /// Registered fields, in id order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (FieldId, &str, FieldKind)> {
        (FIRST_USER_FIELD..=LAST_USER_FIELD)
            .zip(&self.entries)
            .map(|(id, (n, k))| (FieldId(id), n.as_str(), *k))
    }

    /// The id of `name` as a field of `kind`, registering it (durably, in
    /// `engine`) if it is new.
    pub(crate) fn register(
        &mut self,
        engine: &Engine,
        name: &str,
        kind: FieldKind,
    ) -> Result<FieldId> {
        if let Some(id) = self.id(name, kind) {
            return Ok(id);
        }
        if name.is_empty() || name.len() > MAX_FIELD_NAME {
            return Err(EngineError::InvalidArgument {
                name: "field name",
                reason: format!("{} bytes; a name has 1 to {MAX_FIELD_NAME}", name.len()),
            });
        }
        let Some(id) = self.next_id() else {
            return Err(EngineError::TooManyFields {
                max: usize::from(LAST_USER_FIELD - FIRST_USER_FIELD) + 1,
            });
        };
        let mut entry = Vec::with_capacity(1 + name.len());
        entry.push(kind.code());
        entry.extend_from_slice(name.as_bytes());
        engine.put_with(
            key(REGISTRY_FIELD, u64::from(id.0))?,
            &entry,
            WriteOptions::durability(Durability::Sync),
        )?;
        Ok(self.insert(id, name.to_owned(), kind))
    }
}

/// `kind u8 | name` back to its parts.
fn decode_entry(entry: &[u8]) -> Result<(String, FieldKind), String> {
    let (&code, name) = entry.split_first().ok_or("an empty entry")?;
    let kind = FieldKind::from_code(code).ok_or_else(|| format!("unknown field kind {code}"))?;
    if name.is_empty() || name.len() > MAX_FIELD_NAME {
        return Err(format!("a name of {} bytes", name.len()));
    }
    let name = std::str::from_utf8(name).map_err(|e| format!("a name that is not UTF-8: {e}"))?;
    Ok((name.to_owned(), kind))
}

//! [`BitmapBatch`]: many bitmap changes applied at once.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;
use silo_core::WriteBatch;
use silo_format::{BitOp, encode_bit_ops, serialize_bitmap};

use crate::bitmap::slice_key;
use crate::bitmap::sort::{value_ops, value_ops_unknown};
use crate::error::Result;
use crate::keyspace::{alive_key, key};
use crate::registry::{FieldId, FieldKind};

/// What a batch does to one bitmap: an optional new base (a replacement
/// or a removal), then bit operations over it.
#[derive(Clone, Debug, Default)]
struct Change {
    /// `Some(Some(b))`: replaced by `b` (later operations already applied);
    /// `Some(None)`: removed; `None`: changed only by `ops`.
    base: Option<Option<RoaringBitmap>>,
    ops: Vec<BitOp>,
}

/// Bitmap changes that [`crate::BitmapStore::write`] applies at once. Each
/// bitmap's changes become one write (a replacement, or one operand holding
/// all its bit operations), in the order they were added.
#[derive(Clone, Debug, Default)]
pub struct BitmapBatch {
    changes: BTreeMap<u64, Change>,
    /// The user fields touched, with the kind each was used as.
    fields: BTreeMap<FieldId, FieldKind>,
}

impl BitmapBatch {
    /// An empty batch.
    pub fn new() -> BitmapBatch {
        BitmapBatch::default()
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    fn op(&mut self, k: u64, op: BitOp) {
        let change = self.changes.entry(k).or_default();
        match &mut change.base {
            Some(Some(bitmap)) => {
                match op {
                    BitOp::Set(d) => bitmap.insert(d),
                    BitOp::Clear(d) => bitmap.remove(d),
                };
            }
            Some(None) => {
                let mut bitmap = RoaringBitmap::new();
                if let BitOp::Set(d) = op {
                    bitmap.insert(d);
                }
                change.base = Some(Some(bitmap));
            }
            None => change.ops.push(op),
        }
    }

    /// The key of `(field, value)`, noting `field` as used as `kind`.
    fn key_of(&mut self, field: FieldId, kind: FieldKind, value: u64) -> Result<u64> {
        let k = key(field.0, value)?;
        self.fields.insert(field, kind);
        Ok(k)
    }

    /// Sets `doc`'s bit in the bitmap of `(field, value)`.
    pub fn set(&mut self, field: FieldId, value: u64, doc: u32) -> Result<&mut Self> {
        let k = self.key_of(field, FieldKind::Bitmap, value)?;
        self.op(k, BitOp::Set(doc));
        Ok(self)
    }

    /// Clears `doc`'s bit in the bitmap of `(field, value)`.
    pub fn clear(&mut self, field: FieldId, value: u64, doc: u32) -> Result<&mut Self> {
        let k = self.key_of(field, FieldKind::Bitmap, value)?;
        self.op(k, BitOp::Clear(doc));
        Ok(self)
    }

    /// Changes `doc`'s value in sort field `field` from `old` to `new`
    /// (`None`: no value); only the slices that differ are written, so
    /// `old` must be what the store holds. See
    /// [`crate::BitmapStore::change_sort_value`].
    pub fn change_sort_value(
        &mut self,
        field: FieldId,
        doc: u32,
        old: Option<u64>,
        new: Option<u64>,
    ) -> &mut Self {
        self.fields.insert(field, FieldKind::SortLayers);
        for (slice, op) in value_ops(doc, old, new) {
            self.op(slice_key(field, slice), op);
        }
        self
    }

    /// Gives `doc` the value `new` in sort field `field` (`None`: no value)
    /// whatever it held: every slice is written.
    pub fn set_sort_value(&mut self, field: FieldId, doc: u32, new: Option<u64>) -> &mut Self {
        self.fields.insert(field, FieldKind::SortLayers);
        for (slice, op) in value_ops_unknown(doc, new) {
            self.op(slice_key(field, slice), op);
        }
        self
    }

    /// Replaces the bitmap of `(field, value)`.
    pub fn put(&mut self, field: FieldId, value: u64, bitmap: &RoaringBitmap) -> Result<&mut Self> {
        let k = self.key_of(field, FieldKind::Bitmap, value)?;
        self.changes.insert(
            k,
            Change {
                base: Some(Some(bitmap.clone())),
                ops: Vec::new(),
            },
        );
        Ok(self)
    }

    /// Removes the bitmap of `(field, value)`.
    pub fn delete(&mut self, field: FieldId, value: u64) -> Result<&mut Self> {
        let k = self.key_of(field, FieldKind::Bitmap, value)?;
        self.changes.insert(
            k,
            Change {
                base: Some(None),
                ops: Vec::new(),
            },
        );
        Ok(self)
    }

    /// Marks `doc` as existing.
    pub fn set_alive(&mut self, doc: u32) -> &mut Self {
        self.op(alive_key(), BitOp::Set(doc));
        self
    }

    /// Marks `doc` as gone.
    pub fn clear_alive(&mut self, doc: u32) -> &mut Self {
        self.op(alive_key(), BitOp::Clear(doc));
        self
    }

    /// The user fields the batch touches, with the kind each was used as.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (FieldId, FieldKind)> + '_ {
        self.fields.iter().map(|(f, k)| (*f, *k))
    }

    /// The store writes that do what the batch says.
    pub(crate) fn to_write_batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        let mut bytes = Vec::new();
        for (k, change) in &self.changes {
            match &change.base {
                Some(Some(bitmap)) => {
                    bytes.clear();
                    serialize_bitmap(bitmap, &mut bytes);
                    batch.put(*k, &bytes);
                }
                Some(None) => {
                    batch.delete(*k);
                }
                None => {
                    bytes.clear();
                    encode_bit_ops(&change.ops, &mut bytes);
                    batch.merge(*k, &bytes);
                }
            }
        }
        batch
    }
}

//! The bitmap layer: persistent roaring bitmaps keyed by (field, value),
//! changed by single-bit operations that cost one 5-byte merge operand, and
//! read as the frozen base with the pending operations applied (the
//! stores' pending view folds them; no log is scanned).
//!
//! ```
//! use silo_engine::{BitmapStore, EngineOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let store = BitmapStore::open(dir.path(), EngineOptions { shards: Some(2), ..Default::default() })?;
//! let color = store.field("color")?;
//! store.set(color, 7, 42)?; // document 42 has color 7
//! store.set(color, 7, 43)?;
//! store.clear(color, 7, 42)?;
//! assert_eq!(store.get(color, 7)?.iter().collect::<Vec<_>>(), vec![43]);
//! store.engine().compact()?; // folds the operations into the stored bitmap
//! assert!(store.get(color, 7)?.contains(43));
//! # Ok::<(), silo_engine::EngineError>(())
//! ```

mod batch;
mod bulk;
pub(crate) mod sort;

use std::path::Path;
use std::sync::Arc;

use roaring::RoaringBitmap;
use silo_format::{BitOp, serialize_bitmap};

pub use batch::BitmapBatch;
pub use bulk::{BulkBitmaps, BulkPart, BulkReport};
pub use sort::{
    EXISTS_SLICE, Order, SORT_BITS, SortCursor, SortPage, SortRange, sort_key_f64, sort_key_i64,
};

use crate::engine::Engine;
use crate::error::Result;
use crate::keyspace::{alive_key, key};
use crate::layers::{Shared, read_bitmap};

/// The key of slice `slice` (0..64, or [`EXISTS_SLICE`]) of sort field
/// `field`.
pub(crate) fn slice_key(field: FieldId, slice: u64) -> u64 {
    (u64::from(field.0) << silo_format::bitmap::BITMAP_VALUE_BITS) | slice
}
use crate::options::EngineOptions;
use crate::registry::{FieldId, FieldKind};

/// Bitmaps over a sharded engine. See the module documentation.
pub struct BitmapStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BitmapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitmapStore")
            .field("fields", &self.fields().len())
            .finish_non_exhaustive()
    }
}

impl BitmapStore {
    /// Opens (or creates) the bitmap store in `dir`: an engine whose merge
    /// operator is the layers' ([`crate::LayerOperator`]). `opts` must not
    /// set a merge operator of its own.
    pub fn open(dir: impl AsRef<Path>, opts: EngineOptions) -> Result<BitmapStore> {
        Ok(BitmapStore {
            shared: Shared::open(dir.as_ref(), opts, "bitmap store")?,
        })
    }

    /// The engine underneath: compaction, checkpoints, stats, flush.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Flushes and closes the engine (if no other handle shares it).
    pub fn close(self) -> Result<()> {
        Shared::close(self.shared)
    }

    /// The id of bitmap field `name`, registering it (durably) if new.
    pub fn field(&self, name: &str) -> Result<FieldId> {
        self.shared.field(name, FieldKind::Bitmap)
    }

    /// The id of bitmap field `name`, if registered.
    pub fn field_id(&self, name: &str) -> Option<FieldId> {
        self.shared.field_id(name, FieldKind::Bitmap)
    }

    /// The registered bitmap fields, in id order.
    pub fn fields(&self) -> Vec<(FieldId, String)> {
        self.shared.fields(FieldKind::Bitmap)
    }

    /// The key of `(field, value)`, the field checked against the registry.
    fn key_of(&self, field: FieldId, value: u64) -> Result<u64> {
        self.shared.check(field, FieldKind::Bitmap)?;
        key(field.0, value)
    }

    /// Sets `doc`'s bit in the bitmap of `(field, value)`.
    pub fn set(&self, field: FieldId, value: u64, doc: u32) -> Result<()> {
        let k = self.key_of(field, value)?;
        self.engine().merge(k, &BitOp::Set(doc).to_bytes())
    }

    /// Clears `doc`'s bit in the bitmap of `(field, value)`.
    pub fn clear(&self, field: FieldId, value: u64, doc: u32) -> Result<()> {
        let k = self.key_of(field, value)?;
        self.engine().merge(k, &BitOp::Clear(doc).to_bytes())
    }

    /// Replaces the bitmap of `(field, value)` with `bitmap`.
    pub fn put_bitmap(&self, field: FieldId, value: u64, bitmap: &RoaringBitmap) -> Result<()> {
        let k = self.key_of(field, value)?;
        let mut bytes = Vec::new();
        serialize_bitmap(bitmap, &mut bytes);
        self.engine().put(k, &bytes)
    }

    /// Removes the bitmap of `(field, value)` (it reads as empty).
    pub fn delete_bitmap(&self, field: FieldId, value: u64) -> Result<()> {
        let k = self.key_of(field, value)?;
        self.engine().delete(k)
    }

    /// The bitmap of `(field, value)`: empty if none was written.
    pub fn get(&self, field: FieldId, value: u64) -> Result<RoaringBitmap> {
        let k = self.key_of(field, value)?;
        self.read(k)
    }

    /// Whether `doc`'s bit is set in the bitmap of `(field, value)`.
    pub fn contains(&self, field: FieldId, value: u64, doc: u32) -> Result<bool> {
        Ok(self.get(field, value)?.contains(doc))
    }

    /// Marks `doc` as existing (its bit in the alive bitmap).
    pub fn set_alive(&self, doc: u32) -> Result<()> {
        self.engine()
            .merge(alive_key(), &BitOp::Set(doc).to_bytes())
    }

    /// Marks `doc` as gone.
    pub fn clear_alive(&self, doc: u32) -> Result<()> {
        self.engine()
            .merge(alive_key(), &BitOp::Clear(doc).to_bytes())
    }

    /// The documents that exist.
    pub fn alive(&self) -> Result<RoaringBitmap> {
        self.read(alive_key())
    }

    /// Applies every change of `batch` at once: after a crash all of them
    /// are there or none, and readers never see part of them.
    pub fn write(&self, batch: &BitmapBatch) -> Result<()> {
        for (field, kind) in batch.fields() {
            self.shared.check(field, kind)?;
        }
        self.engine().write(&batch.to_write_batch())
    }

    /// The id of sort field `name` (bit-sliced sort layers), registering
    /// it (durably) if new.
    pub fn sort_field(&self, name: &str) -> Result<FieldId> {
        self.shared.field(name, FieldKind::SortLayers)
    }

    /// The id of sort field `name`, if registered.
    pub fn sort_field_id(&self, name: &str) -> Option<FieldId> {
        self.shared.field_id(name, FieldKind::SortLayers)
    }

    /// Changes `doc`'s value in sort field `field` from `old` to `new`
    /// (`None`: no value), writing only the slices that differ, atomically.
    /// `old` must be what the store holds (the index layer knows it from
    /// the stored document); when it is not known, use
    /// [`BitmapStore::set_sort_value`].
    pub fn change_sort_value(
        &self,
        field: FieldId,
        doc: u32,
        old: Option<u64>,
        new: Option<u64>,
    ) -> Result<()> {
        let mut batch = BitmapBatch::new();
        batch.change_sort_value(field, doc, old, new);
        self.write(&batch)
    }

    /// Gives `doc` the value `new` in sort field `field` (`None`: no value)
    /// whatever it held, atomically: all 65 slices are written.
    pub fn set_sort_value(&self, field: FieldId, doc: u32, new: Option<u64>) -> Result<()> {
        let mut batch = BitmapBatch::new();
        batch.set_sort_value(field, doc, new);
        self.write(&batch)
    }

    /// `doc`'s value in sort field `field`, if it has one.
    pub fn sort_value(&self, field: FieldId, doc: u32) -> Result<Option<u64>> {
        Ok(self.slices(field)?.value(doc))
    }

    /// The documents whose value in sort field `field` is in `range`.
    pub fn sort_range(&self, field: FieldId, range: SortRange) -> Result<RoaringBitmap> {
        Ok(self.slices(field)?.range(range))
    }

    /// The first `limit` documents of `filter` (among those with a value)
    /// in `order` of their value in sort field `field`, ties by document
    /// id, starting after `cursor`; with their values, and the cursor of
    /// the next page.
    pub fn top_k(
        &self,
        field: FieldId,
        filter: &RoaringBitmap,
        order: Order,
        limit: usize,
        cursor: Option<SortCursor>,
    ) -> Result<SortPage> {
        let hits = self.slices(field)?.top(filter, order, limit, cursor);
        let next = (hits.len() == limit)
            .then(|| hits.last())
            .flatten()
            .map(|(doc, value)| SortCursor {
                value: *value,
                doc: *doc,
            });
        Ok(SortPage { hits, next })
    }

    /// The 64 slices and the "has a value" bitmap of sort field `field`.
    fn slices(&self, field: FieldId) -> Result<sort::Slices> {
        self.shared.check(field, FieldKind::SortLayers)?;
        sort::Slices::read(self.engine(), field)
    }

    /// A bulk build: `(field, value, doc)` triples from many threads,
    /// inverted in memory, then one write per bitmap. See [`BulkBitmaps`].
    pub fn bulk(&self) -> BulkBitmaps<'_> {
        BulkBitmaps::new(self)
    }

    /// The bitmap stored under `k`, its pending operations applied.
    fn read(&self, k: u64) -> Result<RoaringBitmap> {
        read_bitmap(self.engine(), k)
    }
}

//! Bulk builds (bitdex's "tags post-pass"): `(field, value, doc)` triples
//! from many threads are inverted in memory, then each bitmap is written
//! once, as one union operand, instead of one operation per bit.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use roaring::RoaringBitmap;
use silo_core::WriteBatch;
use silo_format::encode_union_operand;

use crate::bitmap::sort::{EXISTS_SLICE, SORT_BITS};
use crate::bitmap::{BitmapStore, slice_key};
use crate::error::Result;
use crate::keyspace::key;
use crate::registry::{FieldId, FieldKind};

/// Bytes of union operands gathered into one engine write.
const WRITE_BYTES: usize = 16 << 20;

/// A bulk build in progress. Each thread adds through a [`BulkPart`] of its
/// own (no lock per triple); [`BulkBitmaps::finish`] writes every bitmap.
///
/// The bits are added to what the store holds (a union): running the same
/// build twice, or after a crash in the middle of `finish`, gives the same
/// bitmaps. Each write of `finish` is atomic; the build as a whole is not.
///
/// ```
/// use silo_engine::{BitmapStore, EngineOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let store = BitmapStore::open(dir.path(), EngineOptions { shards: Some(2), ..Default::default() })?;
/// let tag = store.field("tag")?;
/// let bulk = store.bulk();
/// std::thread::scope(|s| {
///     for t in 0..2u32 {
///         let bulk = &bulk;
///         s.spawn(move || {
///             let mut part = bulk.part();
///             for doc in (t..1000).step_by(2) {
///                 part.add(tag, u64::from(doc % 3), doc).unwrap();
///             }
///         });
///     }
/// });
/// let report = bulk.finish()?;
/// assert_eq!(report.bitmaps, 3);
/// assert_eq!(store.get(tag, 0)?.len(), 334);
/// # Ok::<(), silo_engine::EngineError>(())
/// ```
pub struct BulkBitmaps<'s> {
    store: &'s BitmapStore,
    gathered: Mutex<Gathered>,
}

/// What the parts gathered: bits per key, and the fields used, by kind.
#[derive(Default)]
struct Gathered {
    bitmaps: HashMap<u64, RoaringBitmap>,
    fields: BTreeMap<FieldId, FieldKind>,
}

/// What [`BulkBitmaps::finish`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkReport {
    /// Bitmaps written (one union operand each).
    pub bitmaps: u64,
    /// Bits they set.
    pub bits: u64,
    /// Engine writes (atomic batches) it took.
    pub writes: u64,
    /// Bytes of operands written.
    pub bytes: u64,
}

/// One thread's share of a bulk build; merged into the build when dropped.
pub struct BulkPart<'b, 's> {
    bulk: &'b BulkBitmaps<'s>,
    local: Gathered,
}

impl<'s> BulkBitmaps<'s> {
    pub(crate) fn new(store: &'s BitmapStore) -> BulkBitmaps<'s> {
        BulkBitmaps {
            store,
            gathered: Mutex::new(Gathered::default()),
        }
    }

    /// A part for one thread to add to.
    pub fn part(&self) -> BulkPart<'_, 's> {
        BulkPart {
            bulk: self,
            local: Gathered::default(),
        }
    }

    /// Writes every gathered bitmap: one union operand each, many to an
    /// atomic engine write. Every field is checked against the registry
    /// first; an unknown one writes nothing.
    pub fn finish(self) -> Result<BulkReport> {
        let gathered = self.gathered.into_inner();
        for (field, kind) in &gathered.fields {
            self.store.shared.check(*field, *kind)?;
        }
        let gathered = gathered.bitmaps;
        let mut keys: Vec<u64> = gathered.keys().copied().collect();
        keys.sort_unstable();
        let mut report = BulkReport::default();
        let mut batch = WriteBatch::new();
        let mut batch_bytes = 0;
        let mut operand = Vec::new();
        for k in keys {
            let Some(bitmap) = gathered.get(&k) else {
                continue;
            };
            operand.clear();
            encode_union_operand(bitmap, &mut operand);
            batch.merge(k, &operand);
            batch_bytes += operand.len();
            report.bitmaps += 1;
            report.bits += bitmap.len();
            report.bytes += operand.len() as u64;
            if batch_bytes >= WRITE_BYTES {
                self.store.engine().write(&batch)?;
                report.writes += 1;
                batch.clear();
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            self.store.engine().write(&batch)?;
            report.writes += 1;
        }
        Ok(report)
    }
}

impl BulkPart<'_, '_> {
    /// Adds `doc` to the bitmap of `(field, value)`. The field is checked
    /// at [`BulkBitmaps::finish`]; a value of 2^48 or more is refused here.
    pub fn add(&mut self, field: FieldId, value: u64, doc: u32) -> Result<()> {
        let k = key(field.0, value)?;
        self.local.fields.insert(field, FieldKind::Bitmap);
        self.local.bitmaps.entry(k).or_default().insert(doc);
        Ok(())
    }

    /// Gives `doc` the value `value` in sort field `field`: its bit in each
    /// slice where `value` has a one, and in the "has a value" slice. For
    /// documents that have no value in the field yet (the build adds bits;
    /// it clears none).
    pub fn add_sort_value(&mut self, field: FieldId, doc: u32, value: u64) {
        self.local.fields.insert(field, FieldKind::SortLayers);
        for slice in (0..u64::from(SORT_BITS)).filter(|b| (value >> b) & 1 == 1) {
            self.local
                .bitmaps
                .entry(slice_key(field, slice))
                .or_default()
                .insert(doc);
        }
        self.local
            .bitmaps
            .entry(slice_key(field, EXISTS_SLICE))
            .or_default()
            .insert(doc);
    }

    /// Adds sorted or unsorted `docs` to the bitmap of `(field, value)`.
    pub fn add_many(&mut self, field: FieldId, value: u64, docs: &[u32]) -> Result<()> {
        let k = key(field.0, value)?;
        self.local.fields.insert(field, FieldKind::Bitmap);
        self.local
            .bitmaps
            .entry(k)
            .or_default()
            .extend(docs.iter().copied());
        Ok(())
    }
}

impl Drop for BulkPart<'_, '_> {
    fn drop(&mut self) {
        let local = std::mem::take(&mut self.local);
        let mut gathered = self.bulk.gathered.lock();
        gathered.fields.extend(local.fields);
        for (k, bitmap) in local.bitmaps {
            *gathered.bitmaps.entry(k).or_default() |= bitmap;
        }
    }
}

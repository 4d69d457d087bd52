//! The pending view: operations logged but not yet compacted, per key, in
//! memory, so a read costs one hash lookup and never scans a log.
//!
//! Each key keeps at most one base (the newest put or delete) and the merge
//! operands logged after it, each with its sequence number. A read folds the
//! operands newer than whatever base it ends up with (the pending base, or
//! the stored record, whose sequence number says which operands it already
//! holds).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use silo_io::map::ReadMap;
use thin_vec::ThinVec;

/// Shards of the view; a key's shard comes from the top bits of its hash.
const SHARDS: usize = 64;

/// Keys a batched call ([`PendingView::forget_many`],
/// [`PendingView::overlay_many`]) handles under one hold of a shard's
/// lock, freeing and copying values outside it: a writer to that shard
/// waits for at most this many keys' work (a whole shard's forgets, freed
/// under the lock, once held a put for 190 ms).
const LOCK_CHUNK: usize = 512;
/// Bookkeeping bytes counted per operation on top of its payload.
const OP_OVERHEAD: u64 = 48;

/// An immutable byte string held by the pending view: a slice of a shared
/// heap block (a write call's values lie together in a block many calls
/// share, see `value_slab`), or of a read-only map of a replayed log slot
/// (recovery copies nothing).
///
/// A mapped slice must not be read after its slot is emptied: compaction
/// forgets a slot's operations, then waits a grace period (readers hold a
/// grace guard while they use pending values; iterators and bulk writers
/// hold the compaction gate), and only then empties the slot.
#[derive(Clone)]
pub(crate) enum Bytes {
    /// A slice of a heap block (it carries its own bounds).
    Heap(bytes::Bytes),
    /// `map[start..start + len]`, in range by construction.
    Map {
        map: Arc<ReadMap>,
        start: usize,
        len: usize,
    },
}

impl Bytes {
    /// A copy of `bytes` in a block of its own.
    pub(crate) fn copy_of(bytes: &[u8]) -> Bytes {
        Bytes::Heap(bytes::Bytes::copy_from_slice(bytes))
    }

    /// `block[start..start + len]`; `None` if out of range.
    pub(crate) fn slice(block: &bytes::Bytes, start: usize, len: usize) -> Option<Bytes> {
        let end = start.checked_add(len)?;
        (end <= block.len()).then(|| Bytes::Heap(block.slice(start..end)))
    }

    /// `map[start..start + len]`; `None` if out of range.
    pub(crate) fn mapped(map: &Arc<ReadMap>, start: usize, len: usize) -> Option<Bytes> {
        let end = start.checked_add(len)?;
        (end <= map.as_slice().len()).then(|| Bytes::Map {
            map: Arc::clone(map),
            start,
            len,
        })
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Heap(block) => block,
            // In range by construction (`mapped` checked it).
            Bytes::Map { map, start, len } => map
                .as_slice()
                .get(*start..*start + *len)
                .unwrap_or_default(),
        }
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", &**self)
    }
}

/// One round of a short wait: spin a few times, then yield the core.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// The newest put or delete of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    /// The key was set to this value at `seq`.
    Put { seq: u64, value: Bytes },
    /// The key was deleted at `seq`.
    Delete { seq: u64 },
}

impl Base {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            Base::Put { seq, .. } | Base::Delete { seq } => *seq,
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Base::Put { value, .. } => value.len() as u64 + OP_OVERHEAD,
            Base::Delete { .. } => OP_OVERHEAD,
        }
    }
}

/// What is pending for one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyOps {
    /// The newest put or delete, if one is pending.
    pub(crate) base: Option<Base>,
    /// Merge operands logged after `base` (or after the stored value), oldest first.
    pub(crate) merges: ThinVec<(u64, Bytes)>,
}

impl KeyOps {
    fn bytes(&self) -> u64 {
        self.base.as_ref().map_or(0, Base::bytes)
            + self
                .merges
                .iter()
                .map(|(_, m)| m.len() as u64 + OP_OVERHEAD)
                .sum::<u64>()
    }

    fn ops(&self) -> u64 {
        u64::from(self.base.is_some()) + self.merges.len() as u64
    }

    /// The highest sequence number pending for the key.
    pub(crate) fn max_seq(&self) -> u64 {
        let merge = self.merges.last().map_or(0, |(s, _)| *s);
        merge.max(self.base.as_ref().map_or(0, Base::seq))
    }

    /// Adds one operation at `seq`.
    fn apply(&mut self, seq: u64, op: PendingOp) {
        match op {
            PendingOp::Put(value) => {
                self.base = Some(Base::Put { seq, value });
                self.merges.clear();
            }
            PendingOp::Delete => {
                self.base = Some(Base::Delete { seq });
                self.merges.clear();
            }
            PendingOp::Merge(operand) => self.merges.push((seq, operand)),
        }
    }

    /// Drops everything at or below `seq` (now folded into the stored record).
    fn forget_through(&mut self, seq: u64) {
        if self.base.as_ref().is_some_and(|b| b.seq() <= seq) {
            self.base = None;
        }
        self.merges.retain(|(s, _)| *s > seq);
    }

    /// [`KeyOps::forget_through`], returning what it forgets (for the
    /// caller to free outside its lock).
    fn take_through(&mut self, seq: u64) -> KeyOps {
        let base = if self.base.as_ref().is_some_and(|b| b.seq() <= seq) {
            self.base.take()
        } else {
            None
        };
        KeyOps {
            base,
            merges: self.take_merges_through(seq),
        }
    }

    /// Removes and returns the merge operands at or below `seq`.
    fn take_merges_through(&mut self, seq: u64) -> ThinVec<(u64, Bytes)> {
        // Operands are oldest first: the forgotten ones are a prefix.
        let keep = self.merges.partition_point(|(s, _)| *s <= seq);
        if keep == self.merges.len() {
            std::mem::take(&mut self.merges)
        } else {
            self.merges.drain(..keep).collect()
        }
    }
}

/// One operation to record in the view.
#[derive(Clone, Debug)]
pub(crate) enum PendingOp {
    Put(Bytes),
    Delete,
    Merge(Bytes),
}

/// murmur3's 64-bit finalizer: each bit of `key` moves about half the
/// bits of the result. The store's in-memory tables take their places
/// from it, never from a multiply alone: the engine routes keys to its
/// shards by the top bits of `key * 0x9E37_79B9_7F4A_7C15`, so all the keys
/// of one shard's store share those bits of that product, and a table
/// placed by them would crowd its keys into an eighth of its slots.
pub(crate) fn mix(key: u64) -> u64 {
    let mut h = key;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The pending view's tables' hasher: [`mix`].
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        mix(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, KeyOps, BuildHasherDefault<KeyHasher>>;

/// The in-memory map of pending operations, sharded for concurrent readers.
///
/// A write call records its operations shard by shard, then publishes its
/// last sequence number as visible. A reader that meets an operation above
/// the visible mark waits (a bounded, lock-free wait on in-memory work)
/// until the mark reaches it: by then every operation of that write call
/// is recorded, so no read that starts afterwards can miss part of a batch.
pub(crate) struct PendingView {
    shards: Box<[RwLock<Shard>]>,
    bytes: AtomicU64,
    ops: AtomicU64,
    /// Every operation at or below this sequence number is wholly recorded.
    visible: AtomicU64,
}

impl Default for PendingView {
    fn default() -> Self {
        PendingView {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            bytes: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            visible: AtomicU64::new(0),
        }
    }
}

/// The shard of `key`: six bits of [`mix`] that the shard's own table does
/// not use. hashbrown tags entries with the top seven bits of the hash and
/// places them by its lowest bits; if the shard were chosen by the tag's
/// bits, every key of a shard would share its tag, and each probe would
/// turn into key comparisons (cache misses). Nor may it come from the
/// engine's routing (the top bits of the key times a constant), or every
/// key of an engine shard whose keys are below 2^31 would land in one
/// eighth of the shards.
fn shard_of(key: u64) -> usize {
    // Bits 51..57: below the tag, above the place bits of any table that
    // fits in memory.
    usize::try_from((mix(key) >> 51) & 63).unwrap_or(0)
}

impl PendingView {
    fn read(&self, key: u64) -> RwLockReadGuard<'_, Shard> {
        self.shards[shard_of(key)]
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, key: u64) -> RwLockWriteGuard<'_, Shard> {
        self.shards[shard_of(key)]
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Which of `parts` disjoint groups of shards `key` belongs to: threads
    /// that each record only their part never touch the same shard.
    pub(crate) fn part_of(key: u64, parts: usize) -> usize {
        shard_of(key) % parts.max(1)
    }

    /// Makes room for about `keys` more keys spread over the shards, so a
    /// long replay does not rehash the tables as they grow.
    pub(crate) fn reserve(&self, keys: usize) {
        let per_shard = keys / SHARDS + keys / (SHARDS * 8);
        for shard in &*self.shards {
            shard
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .reserve(per_shard);
        }
    }

    /// Bytes held (payloads plus bookkeeping).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Operations held.
    pub(crate) fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Keys with pending operations.
    pub(crate) fn keys(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len() as u64)
            .sum()
    }

    fn account(&self, before: (u64, u64), after: (u64, u64)) {
        self.bytes
            .fetch_add(after.0.wrapping_sub(before.0), Ordering::Relaxed);
        self.ops
            .fetch_add(after.1.wrapping_sub(before.1), Ordering::Relaxed);
    }

    /// What is pending for `key`, if anything (a cheap clone of `Arc`s).
    /// Returns only once every write call that logged one of these
    /// operations is wholly recorded (see [`PendingView::publish`]).
    pub(crate) fn get(&self, key: u64) -> Option<KeyOps> {
        let ops = self.read(key).get(&key).cloned();
        if let Some(ops) = &ops {
            self.wait_visible(ops.max_seq());
        }
        ops
    }

    /// Marks every operation through `seq` as wholly recorded. Writers call
    /// it, under the log mutex, right after recording a write call.
    pub(crate) fn publish(&self, seq: u64) {
        self.visible.fetch_max(seq, Ordering::Release);
    }

    /// The highest sequence number published.
    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Returns once `seq` is published. The writer recording it holds the
    /// log mutex and does no I/O until it publishes, so this is short.
    fn wait_visible(&self, seq: u64) {
        let mut spins = 0u32;
        while self.visible.load(Ordering::Acquire) < seq {
            backoff(&mut spins);
        }
    }

    /// Records `op` for `key` at `seq`. Sequence numbers must grow per key.
    pub(crate) fn record(&self, key: u64, seq: u64, op: PendingOp) {
        let mut shard = self.write(key);
        let entry = shard.entry(key).or_default();
        let before = (entry.bytes(), entry.ops());
        entry.apply(seq, op);
        let after = (entry.bytes(), entry.ops());
        self.account(before, after);
    }

    /// Records many operations (each key's in sequence order), taking each
    /// shard's lock once.
    pub(crate) fn record_many(&self, ops: Vec<(u64, u64, PendingOp)>) {
        if ops.len() < 64 {
            for (key, seq, op) in ops {
                self.record(key, seq, op);
            }
            return;
        }
        let mut by_shard: Vec<Vec<(u64, u64, PendingOp)>> =
            (0..SHARDS).map(|_| Vec::new()).collect();
        for item in ops {
            by_shard[shard_of(item.0)].push(item);
        }
        for (shard, items) in self.shards.iter().zip(by_shard) {
            if items.is_empty() {
                continue;
            }
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            shard.reserve(items.len());
            let (mut bytes, mut ops) = (0i64, 0i64);
            for (key, seq, op) in items {
                let entry = shard.entry(key).or_default();
                let before = (entry.bytes(), entry.ops());
                entry.apply(seq, op);
                bytes += entry.bytes() as i64 - before.0 as i64;
                ops += entry.ops() as i64 - before.1 as i64;
            }
            self.bytes
                .fetch_add(bytes.cast_unsigned(), Ordering::Relaxed);
            self.ops.fetch_add(ops.cast_unsigned(), Ordering::Relaxed);
        }
    }

    /// Makes `value` (the fold of everything through `seq`) the key's base,
    /// unless a newer put or delete is already pending. Compaction calls this
    /// before it rewrites the key's record in place, so readers stop reading
    /// that record.
    pub(crate) fn overlay(&self, key: u64, seq: u64, value: Bytes) {
        let mut shard = self.write(key);
        let entry = shard.entry(key).or_default();
        if entry.base.as_ref().is_some_and(|b| b.seq() > seq) {
            return;
        }
        let before = (entry.bytes(), entry.ops());
        entry.base = Some(Base::Put { seq, value });
        entry.merges.retain(|(s, _)| *s > seq);
        let after = (entry.bytes(), entry.ops());
        self.account(before, after);
    }

    /// Groups `items` by shard (each shard's items in their given order).
    fn by_shard<T>(items: impl IntoIterator<Item = T>, key: impl Fn(&T) -> u64) -> Vec<Vec<T>> {
        let mut groups: Vec<Vec<T>> = (0..SHARDS).map(|_| Vec::new()).collect();
        for item in items {
            groups[shard_of(key(&item))].push(item);
        }
        groups
    }

    /// [`PendingView::overlay`] for many keys, taking each shard's lock
    /// once per [`LOCK_CHUNK`] keys. A key whose pending put or delete is at
    /// or above the result's sequence number needs no overlay (readers
    /// already stop there).
    pub(crate) fn overlay_many<'v>(&self, items: impl IntoIterator<Item = (u64, u64, &'v [u8])>) {
        let groups = Self::by_shard(items, |(key, _, _)| *key);
        for (shard, items) in self.shards.iter().zip(groups) {
            let (mut bytes, mut ops) = (0i64, 0i64);
            for part in items.chunks(LOCK_CHUNK) {
                // Most keys usually need nothing: the slot's own put is
                // still their pending base. Those are found under the read
                // lock, and only the others' values are copied (outside any
                // lock). Only this compaction forgets or overlays, and
                // writers only add newer operations, so a key found settled
                // here is still settled under the write lock below.
                let unsettled: Vec<&(u64, u64, &[u8])> = {
                    let shard = shard.read().unwrap_or_else(|p| p.into_inner());
                    part.iter()
                        .filter(|(key, seq, _)| !settled(shard.get(key), *seq))
                        .collect()
                };
                if unsettled.is_empty() {
                    continue;
                }
                let copies: Vec<(u64, u64, Bytes)> = unsettled
                    .into_iter()
                    .map(|(key, seq, value)| (*key, *seq, Bytes::copy_of(value)))
                    .collect();
                let mut replaced = Vec::with_capacity(copies.len());
                let mut unused = Vec::new();
                let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
                for (key, seq, value) in copies {
                    let entry = shard.entry(key).or_default();
                    if settled(Some(entry), seq) {
                        unused.push(value);
                        continue;
                    }
                    let before = (entry.bytes(), entry.ops());
                    let old = entry.base.replace(Base::Put { seq, value });
                    replaced.push(KeyOps {
                        base: old,
                        merges: entry.take_merges_through(seq),
                    });
                    bytes += entry.bytes() as i64 - before.0 as i64;
                    ops += entry.ops() as i64 - before.1 as i64;
                }
                drop(shard);
                drop((replaced, unused));
            }
            self.bytes
                .fetch_add(bytes.cast_unsigned(), Ordering::Relaxed);
            self.ops.fetch_add(ops.cast_unsigned(), Ordering::Relaxed);
        }
    }

    /// Empties the view and returns what it held, for the caller to drop
    /// outside its locks. Only for when every operation held is folded
    /// (the caller holds the log mutex, so no write is recorded meanwhile).
    pub(crate) fn take_all(&self) -> Vec<HashMap<u64, KeyOps, BuildHasherDefault<KeyHasher>>> {
        let taken = self
            .shards
            .iter()
            .map(|s| std::mem::take(&mut *s.write().unwrap_or_else(|p| p.into_inner())))
            .collect();
        self.bytes.store(0, Ordering::Relaxed);
        self.ops.store(0, Ordering::Relaxed);
        taken
    }

    /// [`PendingView::forget_through`] for many keys at one `seq`, taking
    /// each shard's lock once per [`LOCK_CHUNK`] keys.
    pub(crate) fn forget_many(&self, keys: &[u64], seq: u64) {
        let groups = Self::by_shard(keys.iter().copied(), |k| *k);
        for (shard, keys) in self.shards.iter().zip(groups) {
            let (mut bytes, mut ops) = (0i64, 0i64);
            for part in keys.chunks(LOCK_CHUNK) {
                // What is forgotten is freed outside the lock.
                let mut forgotten = Vec::with_capacity(part.len());
                let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
                for key in part {
                    let Some(entry) = shard.get_mut(key) else {
                        continue;
                    };
                    let before = (entry.bytes(), entry.ops());
                    forgotten.push(entry.take_through(seq));
                    bytes += entry.bytes() as i64 - before.0 as i64;
                    ops += entry.ops() as i64 - before.1 as i64;
                    if entry.base.is_none() && entry.merges.is_empty() {
                        shard.remove(key);
                    }
                }
                drop(shard);
                drop(forgotten);
            }
            self.bytes
                .fetch_add(bytes.cast_unsigned(), Ordering::Relaxed);
            self.ops.fetch_add(ops.cast_unsigned(), Ordering::Relaxed);
        }
    }

    /// Forgets what is folded into the stored record: every operation of
    /// `key` at or below `seq`.
    pub(crate) fn forget_through(&self, key: u64, seq: u64) {
        let mut shard = self.write(key);
        let Some(entry) = shard.get_mut(&key) else {
            return;
        };
        let before = (entry.bytes(), entry.ops());
        entry.forget_through(seq);
        let after = (entry.bytes(), entry.ops());
        if entry.base.is_none() && entry.merges.is_empty() {
            shard.remove(&key);
        }
        self.account(before, after);
    }

    /// A copy of every pending key and its operations.
    pub(crate) fn snapshot(&self) -> HashMap<u64, KeyOps> {
        let mut all = HashMap::new();
        for shard in &*self.shards {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            all.extend(shard.iter().map(|(k, v)| (*k, v.clone())));
        }
        all
    }
}

/// Whether `entry` already stops readers at or past `seq`: its pending
/// base (a put or delete) is that new, so an overlay of a result through
/// `seq` would change nothing readers see.
fn settled(entry: Option<&KeyOps>, seq: u64) -> bool {
    entry
        .and_then(|e| e.base.as_ref())
        .is_some_and(|b| b.seq() >= seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(b: &[u8]) -> Bytes {
        Bytes::copy_of(b)
    }

    #[test]
    fn a_put_supersedes_earlier_operands() {
        let v = PendingView::default();
        v.record(1, 1, PendingOp::Merge(val(b"a")));
        v.record(1, 2, PendingOp::Put(val(b"b")));
        v.record(1, 3, PendingOp::Merge(val(b"c")));
        v.publish(3);
        let ops = v.get(1).expect("pending");
        assert_eq!(
            ops.base,
            Some(Base::Put {
                seq: 2,
                value: val(b"b")
            })
        );
        assert_eq!(ops.merges, vec![(3, val(b"c"))]);
        assert_eq!(v.ops(), 2);
        assert_eq!(ops.max_seq(), 3);
    }

    #[test]
    fn forgetting_folded_ops_keeps_newer_ones_and_counts_down() {
        let v = PendingView::default();
        v.record(0, 5, PendingOp::Delete);
        v.record(0, 6, PendingOp::Merge(val(b"x")));
        v.record(u64::MAX, 7, PendingOp::Put(val(b"y")));
        v.publish(7);
        v.forget_through(0, 5);
        assert_eq!(v.get(0).expect("merge left").merges.len(), 1);
        assert!(v.get(0).expect("merge left").base.is_none());
        v.forget_through(0, 6);
        v.forget_through(u64::MAX, 7);
        assert_eq!(v.get(0), None);
        assert_eq!(v.get(u64::MAX), None);
        assert_eq!((v.ops(), v.bytes(), v.keys()), (0, 0, 0));
    }

    #[test]
    fn overlay_never_hides_a_newer_base() {
        let v = PendingView::default();
        v.record(9, 10, PendingOp::Put(val(b"new")));
        v.publish(10);
        v.overlay(9, 4, val(b"folded"));
        assert_eq!(
            v.get(9).expect("kept").base,
            Some(Base::Put {
                seq: 10,
                value: val(b"new")
            })
        );
        v.record(8, 3, PendingOp::Merge(val(b"m3")));
        v.record(8, 12, PendingOp::Merge(val(b"m12")));
        v.publish(12);
        v.overlay(8, 3, val(b"folded"));
        let ops = v.get(8).expect("overlaid");
        assert_eq!(
            ops.base,
            Some(Base::Put {
                seq: 3,
                value: val(b"folded")
            })
        );
        assert_eq!(ops.merges, vec![(12, val(b"m12"))]);
    }

    #[test]
    fn a_reader_waits_until_the_whole_write_call_is_published() {
        let v = PendingView::default();
        v.record(1, 1, PendingOp::Put(val(b"a")));
        v.publish(1);
        // Recorded but not yet published: a reader of key 2 waits for it.
        v.record(2, 2, PendingOp::Put(val(b"b")));
        std::thread::scope(|s| {
            let reader = s.spawn(|| v.get(2));
            assert_eq!(
                v.get(1).map(|o| o.max_seq()),
                Some(1),
                "published ops read at once"
            );
            v.record(3, 3, PendingOp::Put(val(b"c")));
            v.publish(3);
            let ops = reader.join().expect("reader");
            assert_eq!(ops.map(|o| o.max_seq()), Some(2));
        });
        assert_eq!(v.visible(), 3);
    }

    #[test]
    fn keys_of_one_shard_spread_over_table_tags() {
        // Regression: shards chosen from the table hash's top bits left every
        // key of a shard with the same hashbrown tag.
        let mut tags = std::collections::HashSet::new();
        let mut key = 0u64;
        while tags.len() < 100 && key < 1_000_000 {
            if shard_of(key) == 0 {
                let mut h = KeyHasher::default();
                h.write_u64(key);
                tags.insert(h.finish() >> 57);
            }
            key += 1;
        }
        assert!(
            tags.len() >= 100,
            "only {} distinct tags in one shard",
            tags.len()
        );
        let shards: std::collections::HashSet<usize> = (0..10_000u64).map(shard_of).collect();
        assert_eq!(shards.len(), SHARDS);
    }

    #[test]
    fn keys_of_one_engine_shard_spread_over_every_shard() {
        // Regression: shards chosen from the top bits of `key * 0x9E37...`
        // (as `(key ^ key >> 31)` is `key` below 2^31) put every small key
        // of one of the engine's 8 shards into 8 of the 64.
        let engine_shard = |key: u64| key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61;
        let mut counts = [0usize; SHARDS];
        for key in (0..200_000u64).filter(|k| engine_shard(*k) == 3) {
            counts[shard_of(key)] += 1;
        }
        let (least, most) = (counts.iter().min(), counts.iter().max());
        let expected = 25_000 / SHARDS;
        assert!(
            least.is_some_and(|l| *l > expected / 2) && most.is_some_and(|m| *m < expected * 2),
            "{counts:?}"
        );
    }

    #[test]
    fn the_mixers_are_the_documented_functions() {
        // murmur3's 64-bit finalizer, whichever way the key comes in.
        let hash = |key: u64| {
            let mut h = KeyHasher::default();
            h.write_u64(key);
            h.finish()
        };
        for (key, mixed) in [
            (0, 0),
            (1, 0xb456_bcfc_34c2_cb2c),
            (0x0102, 0xbbba_8814_cfcd_5636),
            (0xdead_beef_cafe_f00d, 0x9724_2897_596c_395d),
            (u64::MAX, 0x64b5_720b_4b82_5f21),
        ] {
            assert_eq!(hash(key), mixed, "{key:#x}");
        }
        let mut bytes = KeyHasher::default();
        bytes.write(&[1, 2]);
        assert_eq!(
            bytes.finish(),
            hash(0x0102),
            "bytes shift in, first highest"
        );
        // The shard: bits 51..57 of the same mix.
        for (key, shard) in [
            (1, 10),
            (0x0102, 55),
            (0xdead_beef_cafe_f00d, 36),
            (u64::MAX, 22),
        ] {
            assert_eq!(shard_of(key), shard, "{key:#x}");
        }
    }

    #[test]
    fn parts_split_the_shards_and_reserve_makes_room_in_each() {
        let mut counts = [0u32; 2];
        for key in 0..10_000u64 {
            let part = PendingView::part_of(key, 2);
            assert_eq!(part, shard_of(key) % 2, "a part is a set of whole shards");
            counts[part] += 1;
        }
        assert!(counts.iter().all(|c| *c > 4_000), "{counts:?}");
        assert_eq!(PendingView::part_of(u64::MAX, 1), 0);
        assert_eq!(PendingView::part_of(7, 0), 0, "no parts is one");
        let v = PendingView::default();
        let keys = SHARDS * 1_000;
        v.reserve(keys);
        for shard in &*v.shards {
            let capacity = shard.read().unwrap_or_else(|p| p.into_inner()).capacity();
            assert!(capacity >= 1_000 + 1_000 / 8, "{capacity}");
        }
    }

    #[test]
    fn mapped_bytes_are_the_map_s_bytes_in_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        let file = silo_io::file::SiloFile::open_read(&path).expect("open");
        let map = Arc::new(ReadMap::new(&file).expect("map"));
        let bytes = Bytes::mapped(&map, 3, 4).expect("in range");
        assert_eq!(&*bytes, b"3456");
        assert_eq!(bytes, val(b"3456"));
        assert!(Bytes::mapped(&map, 8, 3).is_none(), "past the end");
    }

    #[test]
    fn memory_is_counted_per_operation_and_freed_with_it() {
        let v = PendingView::default();
        v.record(1, 1, PendingOp::Put(val(&[7; 10])));
        v.record(1, 2, PendingOp::Merge(val(&[1; 3])));
        v.record(1, 3, PendingOp::Merge(val(&[2; 5])));
        v.record(2, 4, PendingOp::Delete);
        v.publish(4);
        let expected = (10 + OP_OVERHEAD) + (3 + OP_OVERHEAD) + (5 + OP_OVERHEAD) + OP_OVERHEAD;
        assert_eq!((v.bytes(), v.ops(), v.keys()), (expected, 4, 2));
        // A put replaces the key's operations and their bytes.
        v.record(1, 5, PendingOp::Put(val(&[9; 4])));
        v.publish(5);
        assert_eq!(v.bytes(), (4 + OP_OVERHEAD) + OP_OVERHEAD);
        v.forget_through(1, 5);
        assert_eq!(v.bytes(), OP_OVERHEAD);
    }

    #[test]
    fn a_pending_value_handle_stays_small() {
        // Every pending operation holds one: a heap slice carries its own
        // bounds (a pointer, a length and the shared block's handle), so
        // the handle is no larger than with a plain reference-counted block.
        assert!(
            std::mem::size_of::<Bytes>() <= 40,
            "{}",
            std::mem::size_of::<Bytes>()
        );
    }

    #[test]
    fn bytes_compare_by_content_wherever_they_live() {
        let block = bytes::Bytes::from_static(b"xxabcyy");
        let sliced = Bytes::slice(&block, 2, 3).expect("in range");
        assert_eq!(sliced, val(b"abc"));
        assert_ne!(sliced, val(b"abd"));
        assert_ne!(val(b"ab"), val(b"abc"));
        assert!(Bytes::slice(&block, 5, 3).is_none(), "past the end");
        assert!(Bytes::slice(&block, usize::MAX, 2).is_none(), "overflow");
        assert_eq!(format!("{sliced:?}"), format!("{:?}", b"abc"));
    }

    #[test]
    fn bulk_records_overlays_and_forgets_keep_exact_counts() {
        let v = PendingView::default();
        let base = |k: u64| v.get(k).and_then(|o| o.base);
        // 100 operations at once: record_many's per-shard path.
        v.record_many(
            (0..100u64)
                .map(|k| (k, k + 1, PendingOp::Put(val(&[1; 10]))))
                .collect(),
        );
        v.publish(100);
        assert_eq!((v.ops(), v.bytes()), (100, 100 * (10 + OP_OVERHEAD)));
        v.record_many(
            (0..100u64)
                .map(|k| (k, 200 + k, PendingOp::Merge(val(&[2; 3]))))
                .collect(),
        );
        v.publish(299);
        let merged = 100 * (10 + OP_OVERHEAD) + 100 * (3 + OP_OVERHEAD);
        assert_eq!((v.ops(), v.bytes()), (200, merged));
        // Keys 0..50 folded through seq 150: the fold becomes their base,
        // their newer operands stay.
        v.overlay_many((0..50u64).map(|k| (k, 150, &b"folded-value"[..])));
        assert_eq!(
            base(7),
            Some(Base::Put {
                seq: 150,
                value: val(b"folded-value")
            })
        );
        assert_eq!(v.get(7).map(|o| o.merges.len()), Some(1));
        let overlaid = merged + 50 * 2;
        assert_eq!((v.ops(), v.bytes()), (200, overlaid));
        // A pending put at or above the fold's seq is kept as it is.
        v.overlay_many([(60, 61, &b"same-seq"[..]), (80, 50, &b"older"[..])]);
        assert_eq!(
            base(60),
            Some(Base::Put {
                seq: 61,
                value: val(&[1; 10])
            })
        );
        assert_eq!(
            base(80),
            Some(Base::Put {
                seq: 81,
                value: val(&[1; 10])
            })
        );
        assert_eq!((v.ops(), v.bytes()), (200, overlaid));
        // A fold through an operand's own seq takes that operand with it:
        // key 90's merge at 290 is in the overlaid value.
        v.overlay_many([(90, 290, &b"through-the-merge"[..])]);
        assert_eq!(v.get(90).map(|o| o.merges.len()), Some(0));
        let dropped = overlaid - (10 + OP_OVERHEAD) - (3 + OP_OVERHEAD) + (17 + OP_OVERHEAD);
        assert_eq!((v.ops(), v.bytes()), (199, dropped));
        let overlaid = dropped;
        // Forgetting through 150 drops the folded bases of keys 0..50 and
        // the puts of the others, keeping every operand.
        let keys: Vec<u64> = (0..100).collect();
        let _ = overlaid;
        v.forget_many(&keys, 150);
        assert_eq!(
            (v.ops(), v.bytes()),
            (100, 99 * (3 + OP_OVERHEAD) + (17 + OP_OVERHEAD))
        );
        v.forget_many(&keys, 299);
        assert_eq!((v.ops(), v.bytes(), v.keys()), (0, 0, 0));
    }

    #[test]
    fn a_reader_of_an_unpublished_write_returns_only_once_it_is_published() {
        use std::sync::mpsc;
        use std::time::Duration;
        let v = PendingView::default();
        v.record(1, 1, PendingOp::Put(val(b"a")));
        v.publish(1);
        v.record(2, 2, PendingOp::Put(val(b"b")));
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let view = &v;
            s.spawn(move || tx.send(view.get(2).map(|o| o.max_seq())).expect("send"));
            // Not published: the reader must still be waiting. (On a
            // correct view the timeout always runs out.)
            assert!(
                rx.recv_timeout(Duration::from_millis(50)).is_err(),
                "a reader returned an unpublished write"
            );
            v.publish(2);
            // Published exactly through its seq: the reader returns.
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Some(2)));
        });
    }
}

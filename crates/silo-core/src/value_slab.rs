//! Where the values of write calls are kept while they are pending: copied
//! into large blocks, one being filled per store, each shared by reference
//! count with the pending values that slice it.
//!
//! A heap block per call made every put one small allocation, and a
//! compaction freed the folded ones by the million on its freeing thread.
//! glibc keeps such frees unmerged, and the writer's next large allocation
//! (a pending shard's table growing) merged all of them at once, holding
//! the arena: a put waited up to 135 ms at 5M keys. A block here is freed
//! once, when the last value in it is forgotten.
//!
//! What a block holds back: a store's values are copied in about the order
//! of their sequence numbers, and its compactions forget them in sequence
//! order, so every block but the one a fold's sequence number falls in is
//! freed whole. The block is the store's, not the thread's: a thread
//! writing to several stores (the engine's shards) would otherwise let one
//! rarely compacted store's few values hold back blocks full of the
//! others' forgotten ones.

use bytes::BytesMut;
use parking_lot::Mutex;

/// Bytes of one block.
pub(crate) const BLOCK_BYTES: usize = 256 << 10;
/// A call whose values are larger than this gets a block of its own (so a
/// large value never strands the rest of a shared block).
pub(crate) const OWN_BLOCK_FROM: usize = BLOCK_BYTES / 4;

/// A store's block being filled: what is written is split off and shared;
/// the capacity after it is the room left.
#[derive(Default)]
pub(crate) struct ValueSlab {
    filling: Mutex<BytesMut>,
}

impl ValueSlab {
    /// `parts` one after another in a shared block; `total` is their length.
    pub(crate) fn joined<'a>(
        &self,
        parts: impl Iterator<Item = &'a [u8]>,
        total: usize,
    ) -> bytes::Bytes {
        if total > OWN_BLOCK_FROM {
            let mut own = BytesMut::with_capacity(total);
            parts.for_each(|p| own.extend_from_slice(p));
            return own.freeze();
        }
        let mut block = self.filling.lock();
        // Empty since the last split: its capacity is the room left.
        if block.capacity() < total {
            *block = BytesMut::with_capacity(BLOCK_BYTES);
        }
        parts.for_each(|p| block.extend_from_slice(p));
        let joined = block.split().freeze();
        // The next call writes here: ask for its lines now (where many
        // stores fill blocks in turn, the CPU's own stream prefetch loses
        // track of each).
        silo_io::hint::prefetch(block.as_ptr().wrapping_add(64));
        silo_io::hint::prefetch(block.as_ptr().wrapping_add(128));
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCK_BYTES, OWN_BLOCK_FROM, ValueSlab};

    /// One call's `parts` through `slab`.
    fn join(slab: &ValueSlab, parts: &[&[u8]]) -> bytes::Bytes {
        slab.joined(parts.iter().copied(), parts.iter().map(|p| p.len()).sum())
    }

    #[test]
    fn calls_share_a_block_until_it_is_full() {
        // Each call's parts, back to back; consecutive calls lie next to
        // each other in one block until the next would not fit.
        let slab = ValueSlab::default();
        let a = join(&slab, &[b"ab", b"cde"]);
        let b = join(&slab, &[b"fg"]);
        assert_eq!(&a[..], b"abcde");
        assert_eq!(&b[..], b"fg");
        assert_eq!(a.as_ptr().wrapping_add(5), b.as_ptr(), "one block");
        // Three values of OWN_BLOCK_FROM (a quarter block) still fit after
        // those 7 bytes; a fourth does not, and starts a new block.
        let value = vec![7u8; OWN_BLOCK_FROM];
        let v: Vec<bytes::Bytes> = (0..4).map(|_| join(&slab, &[&value])).collect();
        assert!(v.iter().all(|x| x[..] == value[..]));
        assert_eq!(b.as_ptr().wrapping_add(2), v[0].as_ptr());
        assert_eq!(v[0].as_ptr().wrapping_add(value.len()), v[1].as_ptr());
        assert_eq!(v[1].as_ptr().wrapping_add(value.len()), v[2].as_ptr());
        assert_ne!(v[2].as_ptr().wrapping_add(value.len()), v[3].as_ptr());
    }

    #[test]
    fn a_call_that_fills_the_block_exactly_stays_in_it() {
        let slab = ValueSlab::default();
        let value = vec![5u8; BLOCK_BYTES / 4];
        let v: Vec<bytes::Bytes> = (0..4).map(|_| join(&slab, &[&value])).collect();
        for pair in v.windows(2) {
            assert_eq!(pair[0].as_ptr().wrapping_add(value.len()), pair[1].as_ptr());
        }
        let next = join(&slab, &[b"z"]);
        assert_ne!(
            v[3].as_ptr().wrapping_add(value.len()),
            next.as_ptr(),
            "full: a new block"
        );
    }

    #[test]
    fn a_large_call_gets_a_block_of_its_own() {
        let slab = ValueSlab::default();
        let small = join(&slab, &[b"x"]);
        let large = vec![3u8; OWN_BLOCK_FROM + 1];
        let big = join(&slab, &[&large]);
        let next = join(&slab, &[b"y"]);
        assert_eq!(&big[..], &large[..]);
        assert_eq!(
            small.as_ptr().wrapping_add(1),
            next.as_ptr(),
            "the shared block goes on"
        );
    }

    #[test]
    fn a_value_outlives_its_block_being_replaced() {
        let slab = ValueSlab::default();
        let first = join(&slab, &[b"kept"]);
        for _ in 0..(2 * BLOCK_BYTES / OWN_BLOCK_FROM) {
            drop(join(&slab, &[&[1u8; OWN_BLOCK_FROM]]));
        }
        assert_eq!(&first[..], b"kept");
    }
}

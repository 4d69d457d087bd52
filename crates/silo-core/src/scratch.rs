//! Buffers that compactions hand on to later ones: the frozen slot's
//! operations (read, then grouped by key) and the plan's writes, the
//! largest things a fold allocates (64, 64 and 80 MB for 2M operations
//! over 1M keys), and a new index's entries and body (16 and 23 MB for 1M
//! keys).
//!
//! Freed, each went back to the kernel, and the next fold's first touch of
//! fresh memory was a page fault every 4 KiB: 45k faults, in a profile a
//! fifth of a one-thread fold's time. Kept, a later fold writes into pages
//! it already has (a one-thread fold's median 643 ms instead of 682 ms
//! over fifteen folds each, for the first two kinds). A kept buffer's
//! pages are given up lazily (`MADV_FREE`): the kernel may take them back
//! under memory pressure, and then the next fold faults them in again as
//! before. Each pool keeps a few buffers (as many as are in use at once)
//! of at most 128 MiB each: at most 1.25 GiB in all, about 260 MB after
//! a one-thread fold of 2M operations over 1M keys.

use std::sync::Mutex;

/// Buffers of at least this many bytes are kept (smaller ones cost little
/// to allocate again).
const KEEP_FROM_BYTES: usize = 1 << 20;
/// Buffers of more than this many bytes are not kept: the pools hold at
/// most this many bytes a buffer they keep.
const KEEP_UP_TO_BYTES: usize = 128 << 20;

/// Emptied vectors of `T`, kept for reuse.
pub(crate) struct Pool<T> {
    kept: Mutex<Vec<Vec<T>>>,
    /// How many it keeps at most.
    most: usize,
}

impl<T: Send + 'static> Pool<T> {
    /// An empty pool that keeps up to `most` buffers.
    pub(crate) const fn new(most: usize) -> Pool<T> {
        Pool {
            kept: Mutex::new(Vec::new()),
            most,
        }
    }

    /// An empty vector with room for `items`: the smallest kept one that
    /// has it, else the largest kept one (it grows as it is filled), else
    /// `None`.
    pub(crate) fn take(&self, items: usize) -> Option<Vec<T>> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let fits = kept
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= items)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        let largest = kept
            .iter()
            .enumerate()
            .max_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        fits.or(largest).map(|i| kept.swap_remove(i))
    }

    /// Keeps `buffer`, emptied, for a later [`Pool::take`] when it is
    /// between [`KEEP_FROM_BYTES`] and [`KEEP_UP_TO_BYTES`] long; the
    /// pool then keeps its largest buffers, as many as it was made for. What it does not keep
    /// is freed: a large buffer on a thread of its own (unmapping one took
    /// milliseconds of a fold's time), a small one here.
    pub(crate) fn give(&self, mut buffer: Vec<T>) {
        buffer.clear();
        let bytes = buffer.capacity().saturating_mul(size_of::<T>());
        if bytes < KEEP_FROM_BYTES {
            return;
        }
        if bytes > KEEP_UP_TO_BYTES {
            crate::compaction::drop_elsewhere(buffer);
            return;
        }
        silo_io::hint::clear_lazily(&mut buffer);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.push(buffer);
        if kept.len() > self.most {
            let smallest = kept
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| v.capacity())
                .map_or(0, |(i, _)| i);
            let dropped = kept.swap_remove(smallest);
            drop(kept);
            crate::compaction::drop_elsewhere(dropped);
        }
    }

    /// The capacities of the kept buffers, smallest first (for tests).
    #[cfg(test)]
    fn capacities(&self) -> Vec<usize> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut caps: Vec<usize> = kept.iter().map(Vec::capacity).collect();
        caps.sort_unstable();
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB_OF_U64: usize = (1 << 20) / 8;

    #[test]
    fn a_given_buffer_comes_back_empty_with_its_room_and_memory() {
        let pool: Pool<u64> = Pool::new(2);
        assert!(pool.take(10).is_none(), "nothing kept yet");
        let mut v: Vec<u64> = Vec::with_capacity(4 * MIB_OF_U64);
        v.extend(0..1000);
        let (at, room) = (v.as_ptr() as usize, v.capacity());
        pool.give(v);
        let back = pool.take(room).expect("kept");
        assert!(back.is_empty());
        assert_eq!((back.as_ptr() as usize, back.capacity()), (at, room));
        // Written after the pages were given up lazily: every value reads
        // back as written.
        let mut back = back;
        back.extend((0..room as u64).rev());
        assert!(back.iter().rev().enumerate().all(|(i, x)| *x == i as u64));
        assert!(pool.take(1).is_none(), "taken");
    }

    #[test]
    fn small_and_huge_buffers_are_not_kept() {
        let pool: Pool<u8> = Pool::new(2);
        pool.give(Vec::with_capacity(KEEP_FROM_BYTES - 1));
        pool.give(Vec::with_capacity(KEEP_UP_TO_BYTES + 1));
        assert!(pool.capacities().is_empty());
        pool.give(Vec::with_capacity(KEEP_FROM_BYTES));
        assert_eq!(pool.capacities(), vec![KEEP_FROM_BYTES]);
        // Both bounds are kept (the room is reserved, never touched).
        pool.give(Vec::with_capacity(KEEP_UP_TO_BYTES));
        assert_eq!(pool.capacities(), vec![KEEP_FROM_BYTES, KEEP_UP_TO_BYTES]);
    }

    #[test]
    fn the_pool_keeps_its_largest_buffers_and_gives_the_best_fit() {
        let pool: Pool<u64> = Pool::new(2);
        for mib in [2, 8, 4] {
            pool.give(Vec::with_capacity(mib * MIB_OF_U64));
        }
        // Three given, two kept: the largest.
        assert_eq!(pool.capacities(), vec![4 * MIB_OF_U64, 8 * MIB_OF_U64]);
        // The smallest with room enough.
        assert_eq!(
            pool.take(3 * MIB_OF_U64).map(|v| v.capacity()),
            Some(4 * MIB_OF_U64)
        );
        pool.give(Vec::with_capacity(4 * MIB_OF_U64));
        // None has room enough: the largest, to grow.
        assert_eq!(
            pool.take(100 * MIB_OF_U64).map(|v| v.capacity()),
            Some(8 * MIB_OF_U64)
        );
        assert_eq!(pool.capacities(), vec![4 * MIB_OF_U64]);
    }
}

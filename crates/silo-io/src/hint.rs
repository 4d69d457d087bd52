//! CPU cache hints: ask for a cache line before it is needed, so that a
//! loop over scattered memory (hash-table slots, values spread over a
//! mapped file) overlaps its cache misses instead of taking them one by one.
//!
//! A hint never reads memory as far as the program can tell, never faults
//! (an address that is not mapped is simply not fetched) and changes no
//! result: code must be correct with every hint removed.

/// Hints the CPU to load the cache line holding the byte at `ptr` into all
/// cache levels. Any address is allowed, even one that is not mapped; off
/// x86-64 this does nothing.
///
/// ```
/// let values = vec![7u8; 4096];
/// silo_io::hint::prefetch(values.as_ptr().wrapping_add(2048));
/// assert_eq!(values[2048], 7);
/// ```
#[inline]
pub fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has (it is
    // in the target's baseline features). PREFETCHT0 is a hint: it does not
    // dereference `ptr` architecturally, cannot fault on any address, and
    // writes nothing, so no pointer validity is required.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// [`prefetch`] for the first `lines` cache lines (64 bytes each) of
/// `bytes`, as far as it reaches.
///
/// ```
/// let value = vec![1u8; 300];
/// silo_io::hint::prefetch_slice(&value, 2);
/// silo_io::hint::prefetch_slice(&[], 4);
/// ```
#[inline]
pub fn prefetch_slice(bytes: &[u8], lines: usize) {
    for line in 0..lines {
        let at = line * 64;
        if at >= bytes.len() {
            break;
        }
        prefetch(bytes.as_ptr().wrapping_add(at));
    }
}

/// Makes the C allocator merge the small blocks this thread's arena has
/// gathered for reuse, while there are few of them.
///
/// glibc keeps freed blocks of up to 128 bytes in "fast bins" without
/// merging them, and merges every one of them at once, holding the arena's
/// lock, at its next allocation of a large block or free of one of at least
/// 64 KiB. A store's writer frees a block per overwritten value, and a
/// compaction frees the folded ones, so a million can gather; one merge
/// then held a writer's next allocation for 300 ms. An allocation of a
/// block above the small-block range is such a trigger: called every few
/// thousand writes, each merge has only those writes' blocks to do. The
/// work is the same in total; it is only spread out. With other allocators
/// this is one cheap allocation and free.
///
/// ```
/// let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![0u8; 16 + i % 100]).collect();
/// drop(blocks);
/// silo_io::hint::settle_small_frees();
/// ```
#[inline]
pub fn settle_small_frees() {
    // Above glibc's small-bin range (1008 bytes) and its per-thread cache
    // (up to 1032 bytes), so the request reaches the arena.
    let block: Vec<u8> = Vec::with_capacity(4096);
    drop(std::hint::black_box(block));
}

/// Empties `buffer` and tells Linux that its memory holds nothing this
/// process needs (`MADV_FREE` on the whole pages of its room): under
/// memory pressure the kernel may take those pages back without writing
/// them anywhere; until then, and once written again, they stay the
/// process's, and filling the buffer again costs no page fault. For
/// buffers kept for reuse. Elsewhere than Linux, or for memory that is not
/// private and anonymous (the kernel refuses it), it only empties the
/// buffer.
///
/// ```
/// let mut kept: Vec<u64> = (0..1 << 20).collect();
/// silo_io::hint::clear_lazily(&mut kept);
/// assert!(kept.is_empty() && kept.capacity() >= 1 << 20);
/// kept.extend(0..1000);
/// assert_eq!(kept.iter().sum::<u64>(), 999 * 1000 / 2);
/// ```
pub fn clear_lazily<T>(buffer: &mut Vec<T>) {
    buffer.clear();
    #[cfg(target_os = "linux")]
    {
        let len = buffer.capacity().saturating_mul(size_of::<T>());
        let ptr = buffer.as_mut_ptr() as usize;
        let page = crate::map::page_size();
        let start = ptr.next_multiple_of(page);
        let end = ptr.saturating_add(len) / page * page;
        if end > start {
            // SAFETY: `start..end` is the whole pages inside the buffer's
            // allocation (rounded inwards, so no byte outside it, such as
            // an allocator's header, is touched). The buffer is empty, so
            // every byte of it is spare room, which Rust never reads
            // before it is written; MADV_FREE only lets the kernel turn
            // those bytes to zeros until they are written again, and
            // changes nothing else.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_FREE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{prefetch, prefetch_slice};

    #[test]
    fn hints_never_fault_or_change_memory() {
        // Null, unmapped and dangling addresses are fine for a hint.
        prefetch(std::ptr::null());
        prefetch(usize::MAX as *const u8);
        let bytes: Vec<u8> = (0..=255).collect();
        prefetch_slice(&bytes, 100);
        prefetch(bytes.as_ptr().wrapping_add(1 << 40));
        assert_eq!(bytes, (0..=255).collect::<Vec<u8>>());
    }
}

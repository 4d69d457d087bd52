//! Large zeroed buffers whose pages are all allocated when they are made
//! ([`ZeroedBuffer`]).
//!
//! A large zeroed allocation (`vec![0; n]`, which the allocator serves with
//! fresh pages from the kernel) maps each page to the kernel's shared zero
//! page when it is first read. The first write to that page then copies
//! it, and replacing a mapped page makes the kernel flush that address
//! from the TLB of every CPU running another thread of the process: an
//! interrupt on each. Code that reads a slot before writing it (building a
//! hash table) pays that for every page, and pays more the more threads
//! the process runs at once: building the indexes of a compaction on two
//! threads spent a sixth of its time there. A [`ZeroedBuffer`] has every
//! page allocated, zeroed and writable from the start: it writes a byte of
//! each page of a private anonymous map as it makes it, so the kernel gives
//! each a fresh zeroed page and the zero page is never mapped.
//!
//! Not `MAP_POPULATE`, which does the same in one call but holds the
//! process's memory-map lock (shared) while it does: every `mmap` and
//! `munmap` of the process (a thread starting or ending, a file mapped or
//! let go) waits for it, and every page fault queued behind those waits
//! too. A compaction's buffers held it up to 5 ms at a time, 190 ms in
//! all over an engine's two compactions, and its threads waited up to
//! 125 ms at a time to map or unmap. A write fault on fresh anonymous
//! memory takes only the lock of its own region.

use std::ops::{Deref, DerefMut};

use memmap2::{MmapMut, MmapOptions};

use crate::error::IoError;

/// A zeroed, writable buffer of a fixed length in memory of its own (an
/// anonymous private map), every page allocated up front. Its memory is
/// returned to the kernel when it drops.
///
/// ```
/// let mut buf = silo_io::buffer::ZeroedBuffer::new(10_000)?;
/// assert_eq!(buf.len(), 10_000);
/// assert!(buf.iter().all(|b| *b == 0));
/// buf[9_999] = 7;
/// assert_eq!(buf[9_999], 7);
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub struct ZeroedBuffer {
    map: Option<MmapMut>,
    len: usize,
}

impl ZeroedBuffer {
    /// A buffer of `len` zero bytes (`len` 0 maps nothing). Errors if the
    /// kernel will not map that much memory.
    pub fn new(len: usize) -> Result<ZeroedBuffer, IoError> {
        let map = if len == 0 {
            None
        } else {
            let mut map = MmapOptions::new().len(len).map_anon().map_err(|e| {
                IoError::io(
                    "map a zeroed buffer",
                    std::path::Path::new("anonymous memory"),
                    e,
                )
            })?;
            // A write to each page allocates it (see the module's note).
            for page in (0..len).step_by(crate::map::page_size()) {
                map[page] = 0;
            }
            Some(map)
        };
        Ok(ZeroedBuffer { map, len })
    }
}

impl Deref for ZeroedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.map {
            Some(map) => &map[..self.len],
            None => &[],
        }
    }
}

impl DerefMut for ZeroedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(map) => &mut map[..self.len],
            None => &mut [],
        }
    }
}

impl std::fmt::Debug for ZeroedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroedBuffer")
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::ZeroedBuffer;
    use crate::error::IoError;

    #[test]
    fn a_buffer_is_zeroed_writable_and_exactly_its_length() {
        for len in [0usize, 1, 4095, 4096, 4097, 3 << 20] {
            let mut buf = ZeroedBuffer::new(len).expect("buffer");
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|b| *b == 0), "{len}");
            let pattern = (0..=250u8).cycle();
            for (b, p) in buf.iter_mut().zip(pattern.clone()) {
                *b = p;
            }
            assert!(buf.iter().zip(pattern).all(|(b, p)| *b == p));
        }
    }

    #[test]
    fn more_memory_than_the_kernel_maps_is_a_typed_error() {
        let e = ZeroedBuffer::new(usize::MAX / 2).expect_err("no such map");
        assert!(matches!(e, IoError::Io { .. }), "{e}");
        assert!(e.to_string().contains("map a zeroed buffer"), "{e}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn its_pages_are_allocated_when_it_is_made() {
        // Reading then writing every page of a 16 MiB buffer takes no page
        // fault: each would be counted as a minor fault of this thread.
        let len = 16 << 20;
        let mut buf = ZeroedBuffer::new(len).expect("buffer");
        let before = crate::faults::thread_faults().expect("faults");
        for page in (0..len).step_by(4096) {
            let seen = std::hint::black_box(buf[page]);
            buf[page] = seen.wrapping_add(1);
        }
        let after = crate::faults::thread_faults().expect("faults");
        let taken = after.since(before).minor;
        assert!(taken < 64, "{taken} faults over {} pages", len / 4096);
        // A zeroed vector of the same size faults on first touch.
        let mut plain = vec![0u8; len];
        let before = crate::faults::thread_faults().expect("faults");
        for page in (0..len).step_by(4096) {
            let seen = std::hint::black_box(plain[page]);
            plain[page] = seen.wrapping_add(1);
        }
        let after = crate::faults::thread_faults().expect("faults");
        assert!(after.since(before).minor >= 1024, "the comparison holds");
    }
}

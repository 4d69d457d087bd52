//! [`CoalescedWrites`]: buffer positional writes, then issue them sorted,
//! de-overlapped and merged into as few `pwritev` calls as possible.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

use crate::error::IoError;
use crate::file::{SiloFile, WriteStats};

/// One buffered write: where it goes and where its bytes sit in the arena.
#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: u64,
    start: usize,
    len: usize,
}

impl Entry {
    fn end(&self) -> u64 {
        self.offset + self.len as u64
    }
}

/// A piece of the final file image: `len` bytes at `offset`, copied from
/// `arena[start..start + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    offset: u64,
    start: usize,
    len: usize,
}

/// A buffer of `(offset, bytes)` writes, copied into one internal arena.
///
/// [`flush`](Self::flush) sorts them by offset, resolves overlaps so the
/// later push wins (the file ends up exactly as if the writes were issued
/// one by one in push order), and writes each contiguous run with one
/// `pwritev` per `IOV_MAX` buffers, retrying `EINTR` and short writes.
///
/// ```
/// use silo_io::{CoalescedWrites, SiloFile};
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("f"))?;
/// let mut w = CoalescedWrites::new();
/// w.push(0, b"aaaa");
/// w.push(4, b"bbbb");
/// w.push(2, b"XX"); // overlaps: wins over the earlier bytes
/// w.push(100, b"far");
/// let stats = w.flush(&file)?;
/// assert_eq!((stats.requested, stats.syscalls), (4, 2));
/// let mut buf = [0u8; 8];
/// file.read_exact_at(&mut buf, 0)?;
/// assert_eq!(&buf, b"aaXXbbbb");
/// assert!(w.is_empty());
/// # Ok::<(), silo_io::IoError>(())
/// ```
#[derive(Debug, Default)]
pub struct CoalescedWrites {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

impl CoalescedWrites {
    /// An empty buffer.
    ///
    /// ```
    /// assert!(silo_io::CoalescedWrites::new().is_empty());
    /// ```
    pub fn new() -> CoalescedWrites {
        CoalescedWrites::default()
    }

    /// An empty buffer with room for `writes` writes totalling `bytes` bytes.
    ///
    /// ```
    /// let w = silo_io::CoalescedWrites::with_capacity(16, 4096);
    /// assert_eq!(w.len(), 0);
    /// ```
    pub fn with_capacity(writes: usize, bytes: usize) -> CoalescedWrites {
        CoalescedWrites {
            arena: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(writes),
        }
    }

    /// Buffers a copy of `bytes` to be written at `offset`. Empty writes are
    /// ignored.
    ///
    /// ```
    /// let mut w = silo_io::CoalescedWrites::new();
    /// w.push(8, b"x");
    /// w.push(9, b"");
    /// assert_eq!(w.len(), 1);
    /// ```
    pub fn push(&mut self, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.entries.push(Entry {
            offset,
            start: self.arena.len(),
            len: bytes.len(),
        });
        self.arena.extend_from_slice(bytes);
    }

    /// Buffers `len` bytes to be written at `offset`, filled in place by
    /// `fill` (which receives them zeroed), so the caller encodes straight
    /// into the buffer instead of copying; returns what `fill` returns. If
    /// `fill` reports a failure, the write stays buffered (with whatever
    /// `fill` left): discard the whole buffer then.
    ///
    /// ```
    /// let mut w = silo_io::CoalescedWrites::new();
    /// let n = w.push_with(4, 3, |buf| { buf.copy_from_slice(b"abc"); buf.len() });
    /// assert_eq!(n, 3);
    /// assert_eq!(w.writes().collect::<Vec<_>>(), vec![(4, &b"abc"[..])]);
    /// ```
    pub fn push_with<R>(
        &mut self,
        offset: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        let start = self.arena.len();
        self.arena.resize(start + len, 0);
        if len > 0 {
            self.entries.push(Entry { offset, start, len });
        }
        fill(&mut self.arena[start..])
    }

    /// The buffered writes in push order, as `(offset, bytes)`.
    ///
    /// ```
    /// let mut w = silo_io::CoalescedWrites::new();
    /// w.push(9, b"b");
    /// w.push(1, b"a");
    /// assert_eq!(w.writes().map(|(o, _)| o).collect::<Vec<_>>(), vec![9, 1]);
    /// ```
    pub fn writes(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.entries.iter().map(|e| {
            (
                e.offset,
                self.arena.get(e.start..e.start + e.len).unwrap_or_default(),
            )
        })
    }

    /// Number of buffered (non-empty) writes.
    ///
    /// ```
    /// let mut w = silo_io::CoalescedWrites::new();
    /// w.push(0, b"ab");
    /// assert_eq!(w.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is buffered.
    ///
    /// ```
    /// assert!(silo_io::CoalescedWrites::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes buffered (before overlaps are resolved).
    ///
    /// ```
    /// let mut w = silo_io::CoalescedWrites::new();
    /// w.push(0, b"ab");
    /// w.push(1, b"cd");
    /// assert_eq!(w.buffered_bytes(), 4);
    /// ```
    pub fn buffered_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Drops every buffered write, keeping the allocations.
    ///
    /// ```
    /// let mut w = silo_io::CoalescedWrites::new();
    /// w.push(0, b"ab");
    /// w.clear();
    /// assert!(w.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
    }

    /// Writes everything buffered to `file` and clears the buffer. On error
    /// the buffer is kept: some runs may be written, and flushing again
    /// rewrites them all (the writes are idempotent). Writes that would end
    /// past `u64::MAX` are an [`IoError::OutOfBounds`].
    ///
    /// `requested` in the result counts the pushes; `syscalls` the
    /// `pwritev` calls (at most `requested` unless the kernel or the fault
    /// seam shortened writes).
    ///
    /// ```
    /// use silo_io::{CoalescedWrites, SiloFile};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = SiloFile::create_new(&dir.path().join("f"))?;
    /// let mut w = CoalescedWrites::new();
    /// for i in 0..100u64 {
    ///     w.push(i * 4, &(i as u32).to_le_bytes());
    /// }
    /// let stats = w.flush(&file)?;
    /// assert_eq!((stats.requested, stats.syscalls, stats.bytes), (100, 1, 400));
    /// # Ok::<(), silo_io::IoError>(())
    /// ```
    pub fn flush(&mut self, file: &SiloFile) -> Result<WriteStats, IoError> {
        let mut stats = WriteStats::default();
        if self.entries.is_empty() {
            return Ok(stats);
        }
        if let Some(bad) = self
            .entries
            .iter()
            .find(|e| e.offset.checked_add(e.len as u64).is_none())
        {
            return Err(IoError::OutOfBounds {
                offset: bad.offset,
                len: bad.len as u64,
                size: u64::MAX,
            });
        }
        let segments = self.segments();
        let mut bufs: Vec<&[u8]> = Vec::new();
        for run in runs(&segments) {
            bufs.clear();
            // Segments that also follow each other in the arena (pushes made
            // in file order) become one buffer: a run pushed in order is one
            // plain write, however many pushes it took.
            let mut pending: Option<(usize, usize)> = None;
            for s in &segments[run.clone()] {
                match pending {
                    Some((start, len)) if start + len == s.start => {
                        pending = Some((start, len + s.len))
                    }
                    Some((start, len)) => {
                        bufs.push(&self.arena[start..start + len]);
                        pending = Some((s.start, s.len));
                    }
                    None => pending = Some((s.start, s.len)),
                }
            }
            if let Some((start, len)) = pending {
                bufs.push(&self.arena[start..start + len]);
            }
            let written = file.write_vectored_all_at(&bufs, segments[run.start].offset)?;
            stats.syscalls += written.syscalls;
            stats.bytes += written.bytes;
        }
        stats.requested = self.entries.len() as u64;
        self.clear();
        Ok(stats)
    }

    /// The final image as non-overlapping segments sorted by offset.
    fn segments(&self) -> Vec<Segment> {
        // Stable: equal offsets keep push order.
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        order.sort_by_key(|&i| self.entries[i].offset);
        let disjoint = order
            .windows(2)
            .all(|w| self.entries[w[0]].end() <= self.entries[w[1]].offset);
        if disjoint {
            return order
                .iter()
                .map(|&i| {
                    let e = self.entries[i];
                    Segment {
                        offset: e.offset,
                        start: e.start,
                        len: e.len,
                    }
                })
                .collect();
        }
        resolve_overlaps(&self.entries, &order)
    }
}

/// Sweeps the boundaries of all writes; in each elementary interval the
/// covering write pushed last wins. Adjacent pieces of the same write are
/// merged back into one segment.
fn resolve_overlaps(entries: &[Entry], order: &[usize]) -> Vec<Segment> {
    let mut points: Vec<u64> = entries.iter().flat_map(|e| [e.offset, e.end()]).collect();
    points.sort_unstable();
    points.dedup();
    // Max-heap on push index; entries that ended are removed lazily.
    let mut active: BinaryHeap<(usize, Reverse<u64>)> = BinaryHeap::new();
    let mut next = 0;
    let mut out: Vec<Segment> = Vec::new();
    for pair in points.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        while next < order.len() && entries[order[next]].offset <= from {
            active.push((order[next], Reverse(entries[order[next]].end())));
            next += 1;
        }
        while active.peek().is_some_and(|&(_, Reverse(end))| end <= from) {
            active.pop();
        }
        let Some(&(winner, _)) = active.peek() else {
            continue;
        };
        let e = entries[winner];
        let skip = usize::try_from(from - e.offset).expect("inside a write held in memory");
        let len = usize::try_from(to - from).expect("inside a write held in memory");
        let seg = Segment {
            offset: from,
            start: e.start + skip,
            len,
        };
        match out.last_mut() {
            Some(last)
                if last.offset + last.len as u64 == seg.offset
                    && last.start + last.len == seg.start =>
            {
                last.len += seg.len;
            }
            _ => out.push(seg),
        }
    }
    out
}

/// Index ranges of `segments` whose bytes are contiguous in the file.
fn runs(segments: &[Segment]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=segments.len() {
        let breaks = i == segments.len()
            || segments[i - 1].offset + segments[i - 1].len as u64 != segments[i].offset;
        if breaks {
            out.push(start..i);
            start = i;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: &CoalescedWrites) -> Vec<(u64, Vec<u8>)> {
        w.segments()
            .iter()
            .map(|s| (s.offset, w.arena[s.start..s.start + s.len].to_vec()))
            .collect()
    }

    #[test]
    fn later_push_wins_even_at_a_lower_offset() {
        let mut w = CoalescedWrites::new();
        w.push(2, b"bbbb");
        w.push(0, b"aaa");
        w.push(5, b"c");
        assert_eq!(
            image(&w),
            vec![
                (0, b"aaa".to_vec()),
                (3, b"bb".to_vec()),
                (5, b"c".to_vec())
            ]
        );
    }

    #[test]
    fn equal_offsets_keep_push_order() {
        let mut w = CoalescedWrites::new();
        w.push(0, b"xxxx");
        w.push(0, b"yy");
        w.push(1, b"z");
        assert_eq!(
            image(&w),
            vec![(0, b"y".to_vec()), (1, b"z".to_vec()), (2, b"xx".to_vec())]
        );
    }

    #[test]
    fn an_inner_write_splits_an_outer_one() {
        let mut w = CoalescedWrites::new();
        w.push(0, b"0123456789");
        w.push(3, b"ab");
        assert_eq!(
            image(&w),
            vec![
                (0, b"012".to_vec()),
                (3, b"ab".to_vec()),
                (5, b"56789".to_vec())
            ]
        );
    }

    #[test]
    fn runs_split_at_gaps() {
        let s = |offset, len| Segment {
            offset,
            start: 0,
            len,
        };
        assert_eq!(runs(&[s(0, 2), s(2, 3), s(9, 1)]), vec![0..2, 2..3]);
        assert_eq!(runs(&[]), Vec::<Range<usize>>::new());
    }

    #[test]
    fn flush_of_nothing_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let mut w = CoalescedWrites::new();
        w.push(7, b"");
        assert_eq!(w.flush(&f).unwrap(), WriteStats::default());
        assert_eq!(f.len().unwrap(), 0);
    }

    #[test]
    fn overflowing_offsets_are_rejected_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let mut w = CoalescedWrites::new();
        w.push(u64::MAX - 1, b"abc");
        assert!(matches!(w.flush(&f), Err(IoError::OutOfBounds { .. })));
        assert_eq!(w.len(), 1);
    }
}

//! One log slot file (`log-0` or `log-1`): a header, then frames, then a
//! zero-filled preallocated tail. Writers append under the log mutex by
//! copying frames into a read-write map of the file, or with `pwrite` for
//! large or durable appends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use silo_format::{FileHeader, FileKind, HEADER_LEN};
use silo_io::durable::{create_with_header, read_header, remove_file, rename, sync_dir, tmp_path};
use silo_io::file::SiloFile;
use silo_io::mlog::AppendMap;

use crate::error::{Error, Result};

/// How far the synced length may run ahead of the header's mark before a
/// sync moves the mark (a clean close sets it exactly).
pub(crate) const MARK_STEP: u64 = 1 << 20;

/// Bytes a slot file is allocated with, and shrinks back to when retired.
pub(crate) const INITIAL_SLOT_BYTES: u64 = 256 << 10;
/// The most a slot grows by at once.
const MAX_GROWTH: u64 = 64 << 20;
/// A slot whose map has reached this length asks for its next growth
/// step's space ahead of need, on a thread of its own (see
/// [`Preallocation`]).
const ALLOCATE_AHEAD_FROM: usize = 16 << 20;
/// Written bytes a slot's map keeps mapped before it releases them.
const RELEASE_STEP: usize = 1 << 20;
/// Appends of at least this many bytes go through `pwrite` (a call of
/// about 125 small puts or more), smaller ones through the map.
pub(crate) const PWRITE_FROM: usize = 16 << 10;

/// The path of slot `number` in `dir`.
pub(crate) fn slot_path(dir: &Path, number: usize) -> PathBuf {
    dir.join(format!("log-{number}"))
}

/// An open log slot.
pub(crate) struct LogSlot {
    /// 0 or 1.
    pub(crate) number: usize,
    /// The file, shared with group commit (which syncs it outside the log mutex).
    pub(crate) file: Arc<SiloFile>,
    map: AppendMap,
    /// The slot's header: generation (replay order) and base sequence number.
    pub(crate) header: FileHeader,
    /// Offset in the file of the next frame.
    pub(crate) end: usize,
    /// Frames in the slot (the ordinal of the next frame).
    pub(crate) frames: u64,
    /// Offset up to which the file is known to be synced (in memory; the
    /// header's mark may lag behind it, never run ahead).
    pub(crate) synced_end: usize,
    /// The slot's end when its last sync returned: every page holding a
    /// byte before it was cleaned by that sync, and so write-protected in
    /// the map (see [`LogSlot::append`]).
    cleaned_to: usize,
    /// Bumped whenever the slot is emptied: a sync started before an
    /// emptying must not credit its end to the emptied slot.
    pub(crate) epoch: u64,
    /// Offset up to which the map's pages were released
    /// ([`AppendMap::release_pages`]) after being written.
    released: usize,
    /// The next growth step's space, asked for ahead of need.
    ahead: Option<Preallocation>,
}

/// The space of a slot's next growth step, allocated (`fallocate`) on a
/// short-lived thread while appends go on in the space already there.
///
/// Allocating a step reads the file system's block bitmaps of the groups
/// it takes, and behind a compaction's writes and the discards of the
/// files it let go, one such read kept a writer 98 ms under the log
/// mutex. Asked for when half a step is left, the space is usually there
/// before the appends reach it; the growth then only maps it. It is
/// advice: a failed allocation is made again by the growth itself, which
/// reports its error.
pub(crate) struct Preallocation {
    /// The file length it allocates up to.
    len: u64,
    thread: std::thread::JoinHandle<bool>,
}

impl Preallocation {
    /// Returns once the allocation is done (or failed).
    pub(crate) fn settle(self) {
        let _ = self.thread.join();
    }

    /// Whether the file is allocated up to at least `len` bytes (waiting
    /// for the thread if it is still at work).
    fn covers(self, len: u64) -> bool {
        let done = self.thread.join().unwrap_or(false);
        done && self.len >= len
    }
}

impl LogSlot {
    /// Creates slot `number` with the given generation and base sequence number.
    pub(crate) fn create(
        dir: &Path,
        number: usize,
        generation: u64,
        base_seq: u64,
    ) -> Result<LogSlot> {
        let header = FileHeader {
            generation,
            base_seq,
            ..FileHeader::new(FileKind::OpsLog)
        };
        let file = create_with_header(&slot_path(dir, number), &header)?;
        file.allocate(0, INITIAL_SLOT_BYTES)?;
        file.sync_all()?;
        LogSlot::mapped(number, file, header, INITIAL_SLOT_BYTES)
    }

    /// Opens slot `number`; recovery replays its frames and then calls
    /// [`LogSlot::resume_at`].
    pub(crate) fn open(dir: &Path, number: usize) -> Result<LogSlot> {
        let file = SiloFile::open(&slot_path(dir, number))?;
        let header = read_header(&file, FileKind::OpsLog)?;
        let len = file.len()?.max(HEADER_LEN as u64);
        LogSlot::mapped(number, file, header, len)
    }

    /// A slot over `file`, its first `len` bytes mapped, appending after the header.
    fn mapped(number: usize, file: SiloFile, header: FileHeader, len: u64) -> Result<LogSlot> {
        let map = AppendMap::new(&file, to_usize(len)?)?;
        Ok(LogSlot {
            number,
            file: Arc::new(file),
            map,
            header,
            end: HEADER_LEN,
            frames: 0,
            synced_end: HEADER_LEN,
            cleaned_to: HEADER_LEN,
            epoch: 0,
            released: 0,
            ahead: None,
        })
    }

    /// Whether the file ends exactly where its header says it is synced:
    /// a slot trimmed by a clean close, with no tail to examine.
    pub(crate) fn ends_at_synced_length(&self) -> Result<bool> {
        Ok(self.header.param_a == self.file.len()?)
    }

    /// Cuts the file after `body_len` bytes of frames (a torn tail, or what
    /// follows damage when recovering), so the bytes past it can never be
    /// read as frames again, and maps what is left.
    ///
    /// A cut inside the synced length (recovered damage) first lowers the
    /// header's synced-length mark to the cut and syncs it: were the file
    /// cut first, a crash before the mark moved would leave a file that
    /// ends before its mark, which every later open refuses.
    pub(crate) fn cut_at(&mut self, body_len: usize) -> Result<()> {
        let len = HEADER_LEN + body_len;
        if self.header.param_a > len as u64 {
            let header = FileHeader {
                param_a: len as u64,
                ..self.header
            };
            self.file.write_all_at(&header.encode(), 0)?;
            self.file.sync_data()?;
            self.header = header;
        }
        if self.file.len()? == len as u64 {
            return Ok(());
        }
        self.file.set_len(len as u64)?;
        self.file.sync_all()?;
        self.map = AppendMap::new(&self.file, len)?;
        self.released = 0;
        Ok(())
    }

    /// Sets the append position after replay.
    pub(crate) fn resume_at(&mut self, body_len: usize, frames: u64) {
        self.end = HEADER_LEN + body_len;
        self.frames = frames;
        // What the mark says was synced; the rest is synced by the next flush.
        self.synced_end = usize::try_from(self.header.param_a)
            .unwrap_or(HEADER_LEN)
            .clamp(HEADER_LEN, self.end);
    }

    /// The sequence number the next frame gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.header.base_seq + self.frames
    }

    /// Body bytes the header says were synced (`param_a` holds the synced
    /// file length, written only after the bytes before it were synced).
    pub(crate) fn durable_body_len(&self) -> usize {
        usize::try_from(self.header.param_a)
            .unwrap_or(usize::MAX)
            .saturating_sub(HEADER_LEN)
    }

    /// Records in the header that the file is synced up to `end`; the
    /// caller syncs again afterwards. Only ever called after `end` was synced.
    pub(crate) fn record_durable(&mut self, end: usize) -> Result<()> {
        if self.header.param_a >= end as u64 || end <= HEADER_LEN {
            return Ok(());
        }
        self.header.param_a = end as u64;
        self.map.write_at(0, &self.header.encode())?;
        Ok(())
    }

    /// Whether the slot holds no frames.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Bytes of frames written.
    pub(crate) fn log_bytes(&self) -> u64 {
        (self.end - HEADER_LEN) as u64
    }

    /// Appends `count` already-encoded frames, growing the file as needed.
    /// With `syscall`, or [`PWRITE_FROM`] bytes or more, the bytes go
    /// through `pwrite` instead of the map. A page that fdatasync just
    /// cleaned is write-protected again, so a durable writer would take a
    /// page fault on every append through it. And every page written
    /// through the map must be write-protected when it is synced, one TLB
    /// flush (an interrupt to the writer's core) each: a batch's pages
    /// written with `pwrite` are never mapped, and a 5M-key load in 10k
    /// batches ran at 1.46-1.66M/s instead of 1.04-1.21M/s. So does an
    /// append that starts on a page the slot's last sync cleaned (a
    /// Buffered writer's `write` after a `flush`): through the map it would
    /// take that write fault too, on every `write` + `flush`.
    pub(crate) fn append(&mut self, frames: &[u8], count: u64, syscall: bool) -> Result<()> {
        let needed = self.end + frames.len();
        if needed > self.map.len() {
            self.grow(needed)?;
        }
        let page = silo_io::page_size();
        if by_syscall(syscall, self.end, frames.len(), self.cleaned_to, page) {
            self.file.write_all_at(frames, self.end as u64)?;
        } else {
            self.map.write_at(self.end, frames)?;
        }
        self.end = needed;
        self.frames += count;
        self.allocate_ahead();
        if self.end - self.released >= RELEASE_STEP {
            // Pages behind the append point are never written again: drop
            // them from the map, so that the slot's next sync need not
            // write-protect each one (a TLB flush, an interrupt to this
            // core, a page). Only speed depends on it, so a failure is
            // not an error: the pages stay mapped.
            let from = self.released;
            self.released = self
                .map
                .release_pages(from, self.end - from)
                .unwrap_or(from);
            // Nor are they changed again: their writeback may start now
            // rather than wait for the sync that needs them (a frozen
            // slot's, a `flush`), which then has only the last MiB left
            // to write. Not while a compaction runs: it fills the device's
            // queue, and starting a write then waits for room in it, under
            // the log mutex (a put waited up to 110 ms). Only speed depends
            // on it too.
            if self.released > from && !crate::store::compaction_running() {
                let _ = self
                    .file
                    .start_writeback(from as u64, (self.released - from) as u64);
            }
        }
        Ok(())
    }

    fn grow(&mut self, needed: usize) -> Result<()> {
        let new_len = grown_length(self.map.len() as u64, needed as u64);
        let allocated = self.ahead.take().is_some_and(|a| a.covers(new_len));
        if !allocated {
            self.file.allocate(0, new_len)?;
        }
        self.map.grow(&self.file, to_usize(new_len)?)?;
        Ok(())
    }

    /// Asks for the next growth step's space once half a step is left in
    /// a long slot's map, unless that is under way already.
    fn allocate_ahead(&mut self) {
        let mapped = self.map.len();
        let step = growth_step(mapped as u64);
        if self.ahead.is_some()
            || mapped < ALLOCATE_AHEAD_FROM
            || (mapped.saturating_sub(self.end) as u64) > step / 2
        {
            return;
        }
        // The next growth step (nothing more is needed yet).
        let len = grown_length(mapped as u64, 0);
        let file = Arc::clone(&self.file);
        // No thread, no advance: the growth allocates it.
        self.ahead = std::thread::Builder::new()
            .name("silo-log-space".to_owned())
            .spawn(move || file.allocate(0, len).is_ok())
            .ok()
            .map(|thread| Preallocation { len, thread });
    }

    /// Waits for a preallocation under way, so that nothing extends the
    /// file after the caller cuts or trims it.
    pub(crate) fn settle_allocation(&mut self) {
        if let Some(ahead) = self.take_allocation() {
            ahead.settle();
        }
    }

    /// The preallocation under way, if any, for the caller to settle
    /// outside the log mutex before it cuts the file.
    pub(crate) fn take_allocation(&mut self) -> Option<Preallocation> {
        self.ahead.take()
    }

    /// Cuts the preallocated zero tail off the file (on a clean close), so
    /// the next open reads only written frames. The slot must not be
    /// appended to afterwards without reopening.
    pub(crate) fn trim(&mut self) -> Result<()> {
        self.settle_allocation();
        self.file.set_len(self.end as u64)?;
        self.file.sync_all()?;
        Ok(())
    }

    /// Empties the slot's file and gives it a new generation and base
    /// sequence number; crash-safe: at every step the slot replays as
    /// empty. It needs only the file, so a frozen slot (which no writer
    /// touches) is emptied outside the log mutex; [`LogSlot::reset_done`]
    /// then updates the slot under it. `old` is the slot's current header; returns the new one.
    pub(crate) fn reset_file(
        file: &SiloFile,
        old: FileHeader,
        generation: u64,
        base_seq: u64,
    ) -> Result<FileHeader> {
        // First the header stops claiming synced frames: were the frames cut
        // on disk before it said so, the next open would take the missing
        // frames for damage. A crash after this replays old frames (already
        // folded: their sequence numbers skip them) or finds an empty slot.
        if old.param_a != 0 {
            let header = FileHeader { param_a: 0, ..old };
            file.write_all_at(&header.encode(), 0)?;
            file.sync_data()?;
        }
        // Then cut the frames, then give the slot its new identity.
        file.set_len(HEADER_LEN as u64)?;
        file.allocate(0, INITIAL_SLOT_BYTES)?;
        let header = FileHeader {
            generation,
            base_seq,
            ..FileHeader::new(FileKind::OpsLog)
        };
        file.write_all_at(&header.encode(), 0)?;
        file.sync_all()?;
        Ok(header)
    }

    /// Empties slot `number` by replacing its file with a new, empty one of
    /// the same generation and base sequence number (atomically: at every
    /// step the slot replays as the old file, whose operations are all
    /// folded, or as empty). For when other processes have the old file
    /// mapped: their maps stay whole. Returns the new file, to give to
    /// [`LogSlot::reset_done`], and its header.
    pub(crate) fn replace_file(
        dir: &Path,
        number: usize,
        old: FileHeader,
    ) -> Result<(SiloFile, FileHeader)> {
        let header = FileHeader {
            generation: old.generation,
            base_seq: old.base_seq,
            ..FileHeader::new(FileKind::OpsLog)
        };
        let path = slot_path(dir, number);
        let tmp = tmp_path(&path);
        if tmp.exists() {
            remove_file(&tmp)?;
        }
        let file = SiloFile::create_new(&tmp)?;
        file.write_all_at(&header.encode(), 0)?;
        file.allocate(0, INITIAL_SLOT_BYTES)?;
        file.sync_all()?;
        drop(file);
        rename(&tmp, &path)?;
        sync_dir(dir)?;
        // Opened again by its own name, which errors (and the fault seam's
        // power-cut model) then name.
        Ok((SiloFile::open(&path)?, header))
    }

    /// The in-memory part of emptying the slot, after [`LogSlot::reset_file`]
    /// (the same file) or [`LogSlot::replace_file`] (its new file). Returns
    /// the old map, and the old file if it was replaced, for the caller to
    /// drop outside the log mutex.
    pub(crate) fn reset_done(
        &mut self,
        header: FileHeader,
        replacement: Option<SiloFile>,
    ) -> Result<(AppendMap, Option<Arc<SiloFile>>)> {
        let old_file = replacement.map(|file| std::mem::replace(&mut self.file, Arc::new(file)));
        let map = AppendMap::new(&self.file, to_usize(INITIAL_SLOT_BYTES)?)?;
        let old_map = std::mem::replace(&mut self.map, map);
        self.released = 0;
        self.header = header;
        self.end = HEADER_LEN;
        self.frames = 0;
        self.synced_end = HEADER_LEN;
        self.cleaned_to = HEADER_LEN;
        self.epoch += 1;
        Ok((old_map, old_file))
    }

    /// Moves the header's synced-length mark up to what earlier syncs made
    /// durable, once it lags by [`MARK_STEP`] or more; the next sync of the
    /// file carries it (the mark never runs ahead of the truth).
    pub(crate) fn carry_mark(&mut self) -> Result<()> {
        let synced = self.synced_end;
        if synced as u64 >= self.header.param_a + MARK_STEP {
            self.record_durable(synced)?;
        }
        Ok(())
    }

    /// Records that a sync that started at `epoch`, when the slot ended at
    /// `end`, succeeded; ignored if the slot was emptied since.
    pub(crate) fn note_synced(&mut self, epoch: u64, end: usize) {
        if self.epoch == epoch {
            self.synced_end = self.synced_end.max(end.min(self.end));
            // Called under the log mutex once the sync returned: whatever
            // was written before now may have been cleaned by it.
            self.cleaned_to = self.end;
        }
    }

    /// Gives an emptied slot (cut and synced by [`LogSlot::reset_file`]) its
    /// next generation and base sequence number: one header write. The
    /// caller syncs the file before anything is appended to the slot (a
    /// frame that reached the disk under the old header would be replayed
    /// with the old identity).
    pub(crate) fn restamp(&mut self, generation: u64, base_seq: u64) -> Result<()> {
        debug_assert!(self.is_empty(), "only an emptied slot is restamped");
        let header = FileHeader {
            generation,
            base_seq,
            ..FileHeader::new(FileKind::OpsLog)
        };
        self.file.write_all_at(&header.encode(), 0)?;
        self.header = header;
        self.epoch += 1;
        Ok(())
    }
}

/// Whether an append of `len` bytes at `end` goes through `pwrite` rather
/// than the map ([`LogSlot::append`]): asked to (`syscall`), large, or
/// starting on a page (of `page` bytes) that holds a byte before
/// `cleaned_to`, which the last sync may have cleaned.
fn by_syscall(syscall: bool, end: usize, len: usize, cleaned_to: usize, page: usize) -> bool {
    syscall || len >= PWRITE_FROM || end < cleaned_to.next_multiple_of(page)
}

/// How much a slot whose map is `mapped` bytes long grows by at once.
fn growth_step(mapped: u64) -> u64 {
    mapped.clamp(INITIAL_SLOT_BYTES, MAX_GROWTH)
}

/// Lengths of 2 MiB and more are grown to multiples of this.
const HUGE_ALIGN: u64 = 2 << 20;

/// The length a map of `mapped` bytes grows to so that `needed` bytes
/// fit: by [`growth_step`]s, then up to a whole multiple of [`HUGE_ALIGN`]
/// (of [`INITIAL_SLOT_BYTES`] below it).
///
/// A slot trimmed by a clean close reopens at its frames' length, which
/// steps alone would carry into every later length. The page cache gives
/// the map's pages in 2 MiB folios (one fault each, `MADV_HUGEPAGE`) only
/// where such a folio ends before the file does: past the last whole 2
/// MiB of an odd length it takes small ones, and keeps them when the file
/// grows, so each growth of a reopened slot cost about 512 write faults
/// (one a 4 KiB page): 4.5k in a 2M-put load, against 500 for a new slot.
fn grown_length(mapped: u64, needed: u64) -> u64 {
    let step = growth_step(mapped);
    let mut len = mapped + step;
    while len < needed {
        len += step;
    }
    let align = if len >= HUGE_ALIGN {
        HUGE_ALIGN
    } else {
        INITIAL_SLOT_BYTES
    };
    len.next_multiple_of(align)
}

/// A file length as `usize`, refusing what does not fit the address space.
pub(crate) fn to_usize(n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::InvalidOptions {
        name: "file length",
        reason: format!("{n} bytes do not fit in this platform's address space"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_durable_mark_only_moves_forward_and_bytes_count_frames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 10).expect("create");
        assert_eq!((slot.log_bytes(), slot.next_seq()), (0, 10));
        // `append` copies bytes; what they hold is the caller's concern.
        slot.append(&[0xAB; 300], 3, false).expect("append");
        slot.append(&[0xCD; 100], 1, true)
            .expect("append by pwrite");
        assert_eq!((slot.log_bytes(), slot.next_seq()), (400, 14));
        slot.record_durable(HEADER_LEN + 200).expect("mark");
        assert_eq!(slot.durable_body_len(), 200);
        slot.record_durable(HEADER_LEN + 100)
            .expect("an older sync");
        assert_eq!(slot.durable_body_len(), 200, "the mark never moves back");
        slot.record_durable(HEADER_LEN).expect("nothing");
        assert_eq!(slot.durable_body_len(), 200);
        drop(slot);
        let reopened = LogSlot::open(dir.path(), 0).expect("open");
        assert_eq!(reopened.durable_body_len(), 200, "the mark is in the file");
        let bytes = std::fs::read(slot_path(dir.path(), 0)).expect("read");
        assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 300], &[0xAB; 300][..]);
        assert_eq!(&bytes[HEADER_LEN + 300..HEADER_LEN + 400], &[0xCD; 100][..]);
    }

    #[test]
    fn appends_on_a_page_a_sync_cleaned_go_through_pwrite() {
        let page = 4096;
        // (syscall, end, len, cleaned_to) -> by pwrite
        let table = [
            ((true, 10_000, 10, 64), true),
            ((false, 10_000, PWRITE_FROM, 64), true),
            ((false, 10_000, PWRITE_FROM - 1, 64), false),
            // The page holding the synced end, up to its last byte.
            ((false, 8_200, 10, 8_200), true),
            ((false, 12_287, 10, 8_200), true),
            // The next page, never written when the sync ran.
            ((false, 12_288, 10, 8_200), false),
            // A sync that ended on a page boundary cleaned nothing past it.
            ((false, 8_192, 10, 8_192), false),
            ((false, 8_191, 10, 8_192), true),
        ];
        for ((syscall, end, len, cleaned), want) in table {
            assert_eq!(
                by_syscall(syscall, end, len, cleaned, page),
                want,
                "{syscall} {end} {len} {cleaned}"
            );
        }
    }

    #[test]
    fn appends_after_a_sync_read_back_through_the_map_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 10).expect("create");
        slot.append(&[1; 100], 1, false).expect("append");
        slot.file.sync_data().expect("sync");
        slot.note_synced(slot.epoch, slot.end);
        assert_eq!(slot.cleaned_to, HEADER_LEN + 100);
        // On the cleaned page (by pwrite), then past it (through the map).
        slot.append(&[2; 100], 1, false).expect("append");
        slot.append(&[3; 8192], 1, false).expect("append");
        let want: Vec<u8> = [vec![1; 100], vec![2; 100], vec![3; 8192]].concat();
        let end = HEADER_LEN + want.len();
        assert_eq!(&slot.map.as_slice()[HEADER_LEN..end], &want[..]);
        slot.file.sync_data().expect("sync");
        let bytes = std::fs::read(slot_path(dir.path(), 0)).expect("read");
        assert_eq!(&bytes[HEADER_LEN..end], &want[..]);
        // A sync of an emptied slot credits nothing.
        let stale = slot.epoch;
        slot.epoch += 1;
        slot.note_synced(stale, end);
        assert_eq!(slot.cleaned_to, HEADER_LEN + 100);
    }

    #[test]
    fn a_large_append_lands_past_the_map_and_reads_back_through_it() {
        // Small and large appends interleaved, past the slot's first
        // allocation (it grows on the way): the file and the map agree.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 1).expect("create");
        let mut want = Vec::new();
        for i in 0..40u8 {
            let len = if i % 2 == 0 {
                100
            } else {
                PWRITE_FROM + 4 * usize::from(i)
            };
            let frames = vec![i + 1; len];
            slot.append(&frames, 1, false).expect("append");
            want.extend_from_slice(&frames);
        }
        assert!(want.len() as u64 > INITIAL_SLOT_BYTES, "the slot grew");
        assert_eq!(slot.log_bytes(), want.len() as u64);
        assert_eq!(slot.next_seq(), 41);
        assert_eq!(&slot.map.as_slice()[HEADER_LEN..slot.end], &want[..]);
        let bytes = std::fs::read(slot_path(dir.path(), 0)).expect("read");
        assert_eq!(&bytes[HEADER_LEN..slot.end], &want[..]);
    }

    #[test]
    fn a_long_slot_asks_for_its_next_step_ahead_and_grows_into_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 1).expect("create");
        let frame = vec![9u8; 1 << 20];
        // Short slots grow only when an append needs it.
        while slot.map.len() < ALLOCATE_AHEAD_FROM {
            assert!(slot.ahead.is_none(), "at {} bytes mapped", slot.map.len());
            slot.append(&frame, 1, false).expect("append");
        }
        // A long one asks for its next step once half a step is left, and
        // not before.
        let mapped = slot.map.len();
        let step = usize::try_from(growth_step(mapped as u64)).expect("fits");
        while slot.ahead.is_none() {
            assert!(mapped - slot.end > step / 2, "half a step left");
            slot.append(&frame, 1, false).expect("append");
            assert_eq!(slot.map.len(), mapped, "not grown yet");
        }
        assert!(mapped - slot.end <= step / 2, "asked too early");
        let ahead = slot.ahead.take().expect("asked ahead");
        assert_eq!(ahead.len, (mapped + step) as u64);
        slot.ahead = Some(ahead);
        slot.settle_allocation();
        assert_eq!(slot.file.len().expect("len"), (mapped + step) as u64);
        // The growth maps that space, and the appends read back.
        while slot.map.len() == mapped {
            slot.append(&frame, 1, false).expect("append");
        }
        assert_eq!(slot.map.len(), mapped + step);
        let mut back = vec![0u8; 64];
        slot.file
            .read_exact_at(&mut back, (slot.end - 64) as u64)
            .expect("read");
        assert_eq!(back, vec![9u8; 64]);
    }

    /// The growth maps only space that is allocated: when the allocation
    /// ahead failed, or covers less than an append needs, the growth
    /// allocates itself (a map past the file's end would fault).
    #[test]
    fn a_failed_or_short_allocation_ahead_leaves_the_growth_to_allocate() {
        use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 1).expect("create");
        let frame = vec![9u8; 1 << 20];
        // Long, with room for a frame, and no allocation under way (the
        // next one is asked for by the next append, before any growth).
        while slot.map.len() < ALLOCATE_AHEAD_FROM || slot.map.len() - slot.end < 2 * frame.len() {
            slot.append(&frame, 1, false).expect("append");
            slot.settle_allocation();
        }
        let mapped = slot.map.len();
        // The thread's allocation fails.
        let guard = install(
            dir.path(),
            FaultPlan::new().on(FaultOp::Allocate, 1, FaultAction::Fail),
        );
        while slot.map.len() == mapped {
            slot.append(&frame, 1, false).expect("append");
        }
        assert_eq!(guard.fired(), 1, "the allocation ahead was asked for");
        drop(guard);
        assert!(slot.file.len().expect("len") >= slot.map.len() as u64);
        // An append larger than the step asked for.
        while slot.ahead.is_none() {
            slot.append(&frame, 1, false).expect("append");
        }
        let asked =
            slot.map.len() + usize::try_from(growth_step(slot.map.len() as u64)).expect("fits");
        let big = vec![7u8; asked + (1 << 20) - slot.end];
        slot.append(&big, 1, false).expect("append");
        assert!(slot.map.len() > asked);
        assert!(slot.file.len().expect("len") >= slot.map.len() as u64);
    }

    #[test]
    fn a_slot_reopened_at_an_odd_length_grows_to_whole_huge_page_multiples() {
        // A clean close trims a slot to its frames; reopened, its length
        // is odd, and its growths must not carry that on (see
        // `grown_length`).
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 1).expect("create");
        slot.append(&vec![5u8; 1000], 1, false).expect("append");
        slot.trim().expect("trim");
        drop(slot);
        let mut slot = LogSlot::open(dir.path(), 0).expect("open");
        assert_eq!(slot.map.len(), HEADER_LEN + 1000);
        slot.resume_at(1000, 1);
        let frame = vec![6u8; 256 << 10];
        let mut lengths = Vec::new();
        while slot.map.len() < 40 << 20 {
            let before = slot.map.len();
            slot.append(&frame, 1, false).expect("append");
            slot.settle_allocation();
            if slot.map.len() != before {
                lengths.push(slot.map.len() as u64);
            }
        }
        for len in &lengths {
            let align = if *len >= HUGE_ALIGN {
                HUGE_ALIGN
            } else {
                INITIAL_SLOT_BYTES
            };
            assert_eq!(len % align, 0, "grown to {len} ({lengths:?})");
        }
        assert_eq!(lengths.first(), Some(&(2 * INITIAL_SLOT_BYTES)));
        assert!(lengths.len() >= 6, "{lengths:?}");
        assert!(slot.file.len().expect("len") >= slot.map.len() as u64);
    }

    #[test]
    fn growth_lengths_are_steps_rounded_up_to_their_alignment() {
        assert_eq!(
            grown_length(INITIAL_SLOT_BYTES, INITIAL_SLOT_BYTES + 1),
            2 * INITIAL_SLOT_BYTES
        );
        assert_eq!(grown_length(1064, 1065), 2 * INITIAL_SLOT_BYTES);
        assert_eq!(grown_length(4 << 20, (4 << 20) + 1), 8 << 20);
        assert_eq!(grown_length((4 << 20) + 1024, (4 << 20) + 1025), 10 << 20);
        assert_eq!(grown_length(64 << 20, 200 << 20), 256 << 20);
        assert_eq!(grown_length((1 << 20) + 5, (1 << 20) + 6), 4 << 20);
    }

    #[test]
    fn a_slot_filled_exactly_to_its_end_does_not_grow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 1).expect("create");
        let room = usize::try_from(INITIAL_SLOT_BYTES).expect("fits") - HEADER_LEN;
        slot.append(&vec![3u8; room], 1, false).expect("append");
        assert_eq!(slot.file.len().expect("len"), INITIAL_SLOT_BYTES);
        slot.append(&[4u8], 1, false).expect("append");
        assert!(slot.file.len().expect("len") > INITIAL_SLOT_BYTES);
    }

    #[test]
    fn an_append_many_growth_steps_long_then_a_small_one_fit() {
        // A 3 MiB append onto a 256 KiB slot needs several steps at once;
        // the small append after it goes through the map, which must
        // cover it.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 1).expect("create");
        slot.append(&vec![6u8; 3 << 20], 1, false).expect("large");
        slot.append(&[7u8; 100], 1, false).expect("small");
        assert!(slot.map.len() >= slot.end);
        let bytes = std::fs::read(slot_path(dir.path(), 0)).expect("read");
        assert!(
            bytes[HEADER_LEN..HEADER_LEN + (3 << 20)]
                .iter()
                .all(|b| *b == 6)
        );
        assert_eq!(&bytes[HEADER_LEN + (3 << 20)..slot.end], &[7u8; 100][..]);
    }

    #[test]
    fn written_pages_are_released_from_the_map_and_read_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 0, 1, 1).expect("create");
        let mut want = Vec::new();
        for i in 0..3000u32 {
            let frame: Vec<u8> = (0..1000u32).map(|j| (i * 7 + j).to_le_bytes()[0]).collect();
            slot.append(&frame, 1, false).expect("append");
            want.extend_from_slice(&frame);
        }
        if cfg!(target_os = "linux") {
            assert!(slot.released >= 2 << 20, "released up to {}", slot.released);
            assert!(slot.released <= slot.end);
            assert!(slot.end - slot.released < RELEASE_STEP);
        }
        assert_eq!(&slot.map.as_slice()[HEADER_LEN..slot.end], &want[..]);
        slot.file.sync_data().expect("sync");
        let bytes = std::fs::read(slot_path(dir.path(), 0)).expect("read");
        assert_eq!(&bytes[HEADER_LEN..slot.end], &want[..]);
        // Emptied, it starts releasing from the beginning again.
        let header = LogSlot::reset_file(&slot.file, slot.header, 2, 3001).expect("reset");
        slot.reset_done(header, None).expect("done");
        assert_eq!(slot.released, 0);
    }

    /// The header in `number`'s file on disk.
    fn header_on_disk(dir: &Path, number: usize) -> FileHeader {
        let bytes = std::fs::read(slot_path(dir, number)).expect("read");
        FileHeader::decode(&bytes, FileKind::OpsLog).expect("header")
    }

    #[test]
    fn an_emptied_slot_has_no_frames_and_the_identity_it_was_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slot = LogSlot::create(dir.path(), 1, 4, 100).expect("create");
        slot.append(&[0xAB; 500], 5, false).expect("append");
        slot.file.sync_data().expect("sync");
        slot.record_durable(HEADER_LEN + 500).expect("mark");
        let epoch = slot.epoch;
        // Emptied in place: frames cut, the mark cleared, a new identity.
        let header = LogSlot::reset_file(&slot.file, slot.header, 6, 105).expect("reset");
        assert_eq!(
            (header.generation, header.base_seq, header.param_a),
            (6, 105, 0)
        );
        assert_eq!(header_on_disk(dir.path(), 1), header);
        let bytes = std::fs::read(slot_path(dir.path(), 1)).expect("read");
        assert!(
            bytes[HEADER_LEN..].iter().all(|b| *b == 0),
            "no frame is left"
        );
        drop(slot.reset_done(header, None).expect("done"));
        assert_eq!(
            (slot.epoch, slot.log_bytes(), slot.next_seq()),
            (epoch + 1, 0, 105)
        );
        // Restamped at the next freeze: a new identity, a new epoch.
        slot.restamp(8, 230).expect("restamp");
        assert_eq!(slot.epoch, epoch + 2);
        let on_disk = header_on_disk(dir.path(), 1);
        assert_eq!(
            (on_disk.generation, on_disk.base_seq, on_disk.param_a),
            (8, 230, 0)
        );
        // Emptied by replacement: the same identity in a new file.
        slot.append(&[0xCD; 64], 1, false).expect("append");
        let (file, header) = LogSlot::replace_file(dir.path(), 1, slot.header).expect("replace");
        assert_eq!(
            (header.generation, header.base_seq, header.param_a),
            (8, 230, 0)
        );
        assert_eq!(header_on_disk(dir.path(), 1), header);
        let (_, old_file) = slot.reset_done(header, Some(file)).expect("done");
        assert!(old_file.is_some(), "the old file is handed back");
        assert_eq!(
            (slot.epoch, slot.log_bytes(), slot.next_seq()),
            (epoch + 3, 0, 230)
        );
        let bytes = std::fs::read(slot_path(dir.path(), 1)).expect("read");
        assert!(
            bytes[HEADER_LEN..].iter().all(|b| *b == 0),
            "no frame is left"
        );
        assert!(!tmp_path(&slot_path(dir.path(), 1)).exists());
    }
}

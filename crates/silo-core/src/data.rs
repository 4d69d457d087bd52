//! The data file (`data-<id>`): a header, then checksummed records at
//! 4-aligned offsets, then preallocated space. Records are written with
//! positional writes and read through a growable read-only map.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use silo_format::error::FormatError;
use silo_format::{
    Entry, FileHeader, FileKind, HEADER_LEN, RECORD_ALIGN, RECORD_HEADER_LEN, Record,
    decode_entry_at, decode_record, peek_record,
};
use silo_io::coalesce::CoalescedWrites;
use silo_io::durable::{create_fresh, create_with_header, read_header};
use silo_io::file::{SiloFile, WriteStats};
use silo_io::map::{GrowableMap, ReadMap};

use crate::READ_LIMIT;
use crate::error::{Error, Result};

/// Bytes a new data file is allocated with.
const INITIAL_DATA_BYTES: u64 = 1 << 20;
/// The most the file grows by at once, past what is needed.
const MAX_GROWTH: u64 = 64 << 20;
/// The file grows in steps of an eighth of its size (within the bounds
/// above): what it allocates past its end stays under 12.5% of it (or 64
/// MiB), and a growing file is still extended only O(log size) times.
const GROWTH_DIVISOR: u64 = 8;

/// The path of data file `id` in `dir`.
pub(crate) fn data_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("data-{id}"))
}

/// An open data file.
pub(crate) struct DataFile {
    /// The file id (`data-<id>`).
    pub(crate) id: u64,
    path: PathBuf,
    file: SiloFile,
    map: GrowableMap,
    /// End of the written records: the next append goes here.
    end: AtomicU64,
    /// Bytes allocated to the file.
    capacity: AtomicU64,
}

impl DataFile {
    /// Creates data file `id`, preallocated to hold `reserve` bytes of
    /// records, durably (header, length and name synced).
    pub(crate) fn create(dir: &Path, id: u64, reserve: u64) -> Result<DataFile> {
        DataFile::create_with(dir, id, reserve, true)
    }

    /// [`DataFile::create`] with nothing synced, for a rewrite whose files
    /// nothing names until it is published: the rewrite syncs the file
    /// ([`DataFile::sync_and_publish`], which takes its length and header
    /// too) and then the directory before a manifest names it.
    pub(crate) fn create_fresh(dir: &Path, id: u64, reserve: u64) -> Result<DataFile> {
        DataFile::create_with(dir, id, reserve, false)
    }

    fn create_with(dir: &Path, id: u64, reserve: u64, durable: bool) -> Result<DataFile> {
        let path = data_path(dir, id);
        let header = FileHeader {
            generation: id,
            ..FileHeader::new(FileKind::Data)
        };
        let file = if durable {
            create_with_header(&path, &header)?
        } else {
            create_fresh(&path, &header)?
        };
        let capacity = (HEADER_LEN as u64 + reserve).max(INITIAL_DATA_BYTES);
        file.allocate(0, capacity)?;
        if durable {
            file.sync_all()?;
        }
        Ok(DataFile {
            id,
            map: GrowableMap::new(&file)?,
            path,
            file,
            end: AtomicU64::new(HEADER_LEN as u64),
            capacity: AtomicU64::new(capacity),
        })
    }

    /// Opens data file `id` whose records end at `end` (from the manifest).
    pub(crate) fn open(dir: &Path, id: u64, end: u64) -> Result<DataFile> {
        let path = data_path(dir, id);
        let file = SiloFile::open(&path)?;
        let header = read_header(&file, FileKind::Data)?;
        let len = file.len()?;
        if header.generation != id || end < HEADER_LEN as u64 || end > len {
            return Err(Error::corrupt(
                &path,
                0,
                format!(
                    "data header says id {}, the manifest says records end at {end}, the file has {len} bytes",
                    header.generation
                ),
            ));
        }
        Ok(DataFile {
            id,
            map: GrowableMap::new(&file)?,
            path,
            file,
            end: AtomicU64::new(end),
            capacity: AtomicU64::new(len),
        })
    }

    /// The path of the file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file, its map dropped (for freeing a replaced file: see
    /// `compaction::after_syncs`).
    pub(crate) fn into_file(self) -> SiloFile {
        let DataFile { file, map, .. } = self;
        drop(map);
        file
    }

    /// The file.
    pub(crate) fn file(&self) -> &SiloFile {
        &self.file
    }

    /// End of the written records.
    pub(crate) fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// The current read view; keep it for as long as you read through it.
    pub(crate) fn view(&self) -> Arc<ReadMap> {
        self.map.view()
    }

    /// Decodes the record of `key` at `offset` in `view`, checking that it is
    /// whole, that its checksum matches and that it belongs to `key`.
    pub(crate) fn record<'v>(
        &self,
        view: &'v ReadMap,
        offset: u64,
        key: u64,
        max_len: u32,
    ) -> Result<Record<'v>> {
        self.decode_at(view, offset, key, |bytes| decode_record(bytes, max_len))
    }

    /// [`DataFile::record`] without the checksum (`peek_record`): for a
    /// first look at a record that is checked whole before anything of it
    /// is used (a cold rewrite's sizing pass).
    pub(crate) fn peek<'v>(
        &self,
        view: &'v ReadMap,
        offset: u64,
        key: u64,
        max_len: u32,
    ) -> Result<Record<'v>> {
        self.decode_at(view, offset, key, |bytes| peek_record(bytes, max_len))
    }

    /// The record at `offset` of `view` by `decode`, which must hold `key`.
    fn decode_at<'v>(
        &self,
        view: &'v ReadMap,
        offset: u64,
        key: u64,
        decode: impl FnOnce(&'v [u8]) -> std::result::Result<Record<'v>, FormatError>,
    ) -> Result<Record<'v>> {
        let at = usize::try_from(offset).ok().filter(|o| *o < view.len());
        let Some(bytes) = at.and_then(|o| view.as_slice().get(o..)) else {
            return Err(Error::corrupt(
                &self.path,
                offset,
                "the index points past the end of the data file",
            ));
        };
        let record = decode(bytes).map_err(|e| Error::format(&self.path, e))?;
        if record.key != key {
            return Err(Error::corrupt(
                &self.path,
                offset,
                format!(
                    "record holds key {} where the index expects key {key}",
                    record.key
                ),
            ));
        }
        Ok(record)
    }

    /// Reserves `len` bytes at the end for new records and returns their
    /// offset, allocating file space first (compaction only).
    pub(crate) fn reserve(&self, len: u64) -> Result<u64> {
        let offset = self.end.load(Ordering::Acquire);
        let needed = offset + len;
        let capacity = self.capacity.load(Ordering::Acquire);
        if needed > capacity {
            let step = (capacity / GROWTH_DIVISOR).clamp(INITIAL_DATA_BYTES, MAX_GROWTH);
            let new_capacity = needed.div_ceil(step) * step;
            self.file.allocate(0, new_capacity)?;
            self.capacity.store(new_capacity, Ordering::Release);
        }
        self.end.store(needed, Ordering::Release);
        Ok(offset)
    }

    /// Gives back the `len` bytes [`DataFile::reserve`] reserved at
    /// `offset`, when nothing was reserved after them: a compaction that
    /// failed before any manifest recorded them leaves no records past the
    /// end (`verify` would count them as live records the index lost).
    pub(crate) fn unreserve(&self, offset: u64, len: u64) {
        let _ =
            self.end
                .compare_exchange(offset + len, offset, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Passes `advice` on bytes `offset .. offset + len` to the kernel.
    pub(crate) fn advise(&self, offset: u64, len: u64, advice: silo_io::FileAdvice) -> Result<()> {
        Ok(self.file.advise(offset, len, advice)?)
    }

    /// Writes the buffered records.
    pub(crate) fn write(&self, writes: &mut CoalescedWrites) -> Result<WriteStats> {
        Ok(writes.flush(&self.file)?)
    }

    /// Syncs written records and makes them visible to new read views.
    /// Call before anything points at them.
    pub(crate) fn sync_and_publish(&self) -> Result<()> {
        self.file.sync_data()?;
        if self.map.view().len() as u64 != self.capacity.load(Ordering::Acquire) {
            self.map.remap(&self.file)?;
        }
        Ok(())
    }

    /// Calls `each(offset, entry)` for every record and tombstone from the
    /// first byte after the header to the end of the records, in file
    /// order, and `each(offset, Err(..))` at the start of each damaged
    /// stretch (see [`walk_entries`]).
    pub(crate) fn scan(
        &self,
        view: &ReadMap,
        mut each: impl FnMut(u64, std::result::Result<Entry<'_>, FormatError>),
    ) {
        let end = usize::try_from(self.end())
            .unwrap_or(usize::MAX)
            .min(view.len());
        let bytes = view.as_slice().get(..end).unwrap_or_default();
        walk_entries(bytes, HEADER_LEN, |at, step| match step {
            Step::Entry(entry) => each(at as u64, Ok(entry)),
            Step::Damage(e) => each(at as u64, Err(e)),
            Step::Zeros => {}
        });
    }

    /// Bytes the file takes on disk.
    pub(crate) fn disk_bytes(&self) -> Result<u64> {
        Ok(self.file.block_bytes()?)
    }
}

/// What [`walk_entries`] met at an offset.
pub(crate) enum Step<'a> {
    /// A record or tombstone that decodes.
    Entry(Entry<'a>),
    /// The first word of a stretch that is neither zero nor an entry.
    Damage(FormatError),
    /// The first word of a stretch of zeros (the unused end of a bulk
    /// writer's region, or preallocated space).
    Zeros,
}

/// Walks the entries of data-file bytes from `start` (4-aligned) to the
/// end of `bytes`. Each entry is stepped over whole. Where no entry
/// decodes, the stretch is skipped a word at a time until one does: a
/// stretch of zero words (the unused end of a bulk writer's region, or
/// preallocated space) is stepped as [`Step::Zeros`] once, where it
/// starts; any other stretch as [`Step::Damage`] once, where it starts.
///
/// Zeros are judged a word at a time, never by the bytes ahead: an entry
/// may begin with zero bytes itself (key 0, sequence number 0, as a bulk
/// writer's first record of key 0 has), and judging by a whole header's
/// bytes took the last words before an entry that follows zeros for
/// damage (verify reported bulk regions' boundaries as damaged).
pub(crate) fn walk_entries<'a>(
    bytes: &'a [u8],
    start: usize,
    mut each: impl FnMut(usize, Step<'a>),
) {
    let mut at = start;
    // What the last word that did not decode was: none, zeros, damage.
    let mut stretch: Option<bool> = None;
    while at + RECORD_HEADER_LEN <= bytes.len() {
        let rest = bytes.get(at..).unwrap_or_default();
        match decode_entry_at(rest, READ_LIMIT) {
            Ok(entry) => {
                stretch = None;
                let size = entry.key_seq_size().2;
                each(at, Step::Entry(entry));
                at += size;
            }
            Err(e) => {
                let zero = rest
                    .get(..RECORD_ALIGN)
                    .is_some_and(|w| w.iter().all(|b| *b == 0));
                if stretch != Some(zero) {
                    each(at, if zero { Step::Zeros } else { Step::Damage(e) });
                    stretch = Some(zero);
                }
                at += RECORD_ALIGN;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use silo_format::{encode_record, encode_tombstone};

    use super::*;

    /// Writes `bytes` at `offset` of `data`'s file (new read views see
    /// them after [`DataFile::sync_and_publish`]).
    fn put_bytes(data: &DataFile, offset: u64, bytes: &[u8]) {
        data.file().write_all_at(bytes, offset).expect("write");
    }

    /// A record of `key` with `value`, encoded.
    fn record(key: u64, seq: u64, value: &[u8]) -> Vec<u8> {
        let alloc = u32::try_from(value.len().next_multiple_of(RECORD_ALIGN)).expect("small");
        let mut out = vec![0u8; RECORD_HEADER_LEN + alloc as usize];
        let n = encode_record(&mut out, key, seq, value, alloc).expect("encode");
        out.truncate(n);
        out
    }

    #[test]
    fn a_new_file_is_allocated_its_reserve_past_the_header_and_at_least_a_mebibyte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = DataFile::create(dir.path(), 1, 0).expect("create");
        assert_eq!(small.file().len().expect("len"), 1 << 20);
        assert_eq!(small.end(), HEADER_LEN as u64);
        let large = DataFile::create(dir.path(), 2, 3 << 20).expect("create");
        assert_eq!(
            large.file().len().expect("len"),
            HEADER_LEN as u64 + (3 << 20)
        );
    }

    #[test]
    fn reserve_grows_the_file_by_an_eighth_within_bounds_and_only_when_needed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataFile::create(dir.path(), 1, (16 << 20) - HEADER_LEN as u64).expect("create");
        let len = || data.file().len().expect("len");
        assert_eq!(len(), 16 << 20);
        // Exactly up to the capacity: nothing grows.
        let room = (16 << 20) - HEADER_LEN as u64;
        assert_eq!(data.reserve(room).expect("reserve"), HEADER_LEN as u64);
        assert_eq!(len(), 16 << 20);
        assert_eq!(data.end(), 16 << 20);
        // One byte more: a step of an eighth (2 MiB).
        assert_eq!(data.reserve(1).expect("reserve"), 16 << 20);
        assert_eq!(len(), 18 << 20);
        // Several steps at once: up to the next multiple of the step
        // (18 MiB / 8, within [1 MiB, 64 MiB]).
        let step = (18u64 << 20) / 8;
        let before = data.end();
        data.reserve(5 * step).expect("reserve");
        assert_eq!(len(), (before + 5 * step).div_ceil(step) * step);
        // Filling a file whose size is not a multiple of its step exactly
        // to its end allocates nothing either.
        let odd = DataFile::create(dir.path(), 4, 3 << 20).expect("create");
        let odd_len = HEADER_LEN as u64 + (3 << 20);
        odd.reserve(3 << 20).expect("reserve");
        assert_eq!(odd.file().len().expect("len"), odd_len);
        // A small file still grows by at least 1 MiB; a huge one by at most 64 MiB.
        let tiny = DataFile::create(dir.path(), 2, 0).expect("create");
        tiny.reserve(1 << 20).expect("reserve");
        assert_eq!(tiny.file().len().expect("len"), 2 << 20);
        let huge = DataFile::create(dir.path(), 3, (1 << 30) - HEADER_LEN as u64).expect("create");
        huge.reserve(1 << 30).expect("reserve");
        assert_eq!(huge.file().len().expect("len"), (1 << 30) + (64 << 20));
    }

    #[test]
    fn open_checks_the_id_and_the_records_end_against_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataFile::create(dir.path(), 7, 0).expect("create");
        let len = data.file().len().expect("len");
        drop(data);
        // The end may be anywhere from the header to the file's length.
        for end in [HEADER_LEN as u64, 4096, len] {
            let open = DataFile::open(dir.path(), 7, end).expect("a valid end");
            assert_eq!(open.end(), end);
        }
        let refused = |id: u64, end: u64| {
            matches!(
                DataFile::open(dir.path(), id, end),
                Err(Error::Corrupt { .. })
            )
        };
        assert!(refused(7, len + 1), "an end past the file");
        assert!(
            refused(7, HEADER_LEN as u64 - 1),
            "an end inside the header"
        );
        std::fs::rename(data_path(dir.path(), 7), data_path(dir.path(), 8)).expect("rename");
        assert!(refused(8, 4096), "a header of another id");
    }

    #[test]
    fn a_record_at_or_past_the_views_end_is_an_index_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataFile::create(dir.path(), 1, 0).expect("create");
        let rec = record(5, 1, b"value");
        let at = data.reserve(rec.len() as u64).expect("reserve");
        put_bytes(&data, at, &rec);
        data.sync_and_publish().expect("publish");
        let view = data.view();
        let found = data.record(&view, at, 5, READ_LIMIT).expect("the record");
        assert_eq!(found.value, b"value");
        for offset in [view.len() as u64, view.len() as u64 + 1, u64::MAX] {
            match data.record(&view, offset, 5, READ_LIMIT) {
                Err(Error::Corrupt {
                    offset: o, reason, ..
                }) => {
                    assert_eq!(o, offset);
                    assert!(reason.contains("past the end"), "{reason}");
                }
                other => panic!("offset {offset}: {:?}", other.map(|r| r.key)),
            }
        }
        assert!(matches!(
            data.record(&view, at, 6, READ_LIMIT),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn scan_finds_every_entry_skips_zeros_and_reports_each_damaged_stretch_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataFile::create(dir.path(), 1, 0).expect("create");
        let mut tomb = vec![0u8; RECORD_HEADER_LEN];
        encode_tombstone(&mut tomb, 9, 4).expect("tombstone");
        // A record; zeros; a record of key 0 at seq 0 (16 zero bytes of its
        // own); garbage; a tombstone; zeros, then garbage; a record.
        let parts: Vec<Vec<u8>> = vec![
            record(1, 1, b"one"),
            vec![0u8; 64],
            record(0, 0, b"zero key"),
            vec![0xA5u8; 40],
            tomb,
            vec![0u8; 8],
            vec![0x5Au8; 8],
            record(3, 3, b"three"),
        ];
        let total: usize = parts.iter().map(Vec::len).sum();
        let start = data.reserve(total as u64).expect("reserve");
        let mut offsets = Vec::new();
        let mut at = start;
        for p in &parts {
            offsets.push(at);
            put_bytes(&data, at, p);
            at += p.len() as u64;
        }
        data.sync_and_publish().expect("publish");
        let mut seen = Vec::new();
        data.scan(&data.view(), |offset, entry| {
            seen.push((offset, entry.map(|e| e.key_seq_size().0).ok()));
        });
        let o = &offsets;
        assert_eq!(
            seen,
            vec![
                (o[0], Some(1)),
                (o[2], Some(0)),
                (o[3], None),
                (o[4], Some(9)),
                (o[6], None),
                (o[7], Some(3)),
            ]
        );
        // The walk underneath also says where each zero stretch starts
        // (salvage ends a damaged stretch there).
        let view = data.view();
        let bytes = &view.as_slice()[..usize::try_from(data.end()).expect("small")];
        let mut steps = Vec::new();
        walk_entries(bytes, HEADER_LEN, |at, step| {
            steps.push((
                at as u64,
                match step {
                    Step::Entry(_) => 'e',
                    Step::Zeros => 'z',
                    Step::Damage(_) => 'd',
                },
            ));
        });
        assert_eq!(
            steps,
            vec![
                (o[0], 'e'),
                (o[1], 'z'),
                (o[2], 'e'),
                (o[3], 'd'),
                (o[4], 'e'),
                (o[5], 'z'),
                (o[6], 'd'),
                (o[7], 'e'),
            ]
        );
    }
}

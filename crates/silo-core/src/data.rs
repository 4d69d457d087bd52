//! The data file (`data-<id>`): a header, then checksummed records at
//! 4-aligned offsets, then preallocated space. Records are written with
//! positional writes and read through a growable read-only map.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use silo_format::error::FormatError;
use silo_format::{
    Entry, FileHeader, FileKind, HEADER_LEN, RECORD_ALIGN, RECORD_HEADER_LEN, Record,
    decode_entry_at, decode_record,
};
use silo_io::coalesce::CoalescedWrites;
use silo_io::durable::{create_with_header, read_header};
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
    /// Creates data file `id`, preallocated to hold `reserve` bytes of records.
    pub(crate) fn create(dir: &Path, id: u64, reserve: u64) -> Result<DataFile> {
        let path = data_path(dir, id);
        let header = FileHeader {
            generation: id,
            ..FileHeader::new(FileKind::Data)
        };
        let file = create_with_header(&path, &header)?;
        let capacity = (HEADER_LEN as u64 + reserve).max(INITIAL_DATA_BYTES);
        file.allocate(0, capacity)?;
        file.sync_all()?;
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
        let at = usize::try_from(offset).ok().filter(|o| *o < view.len());
        let Some(bytes) = at.and_then(|o| view.as_slice().get(o..)) else {
            return Err(Error::corrupt(
                &self.path,
                offset,
                "the index points past the end of the data file",
            ));
        };
        let record = decode_record(bytes, max_len).map_err(|e| Error::format(&self.path, e))?;
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

    /// Bytes the file takes on disk.
    /// Calls `each(offset, entry)` for every record and tombstone from the
    /// first byte after the header to the end of the records, in file
    /// order. All-zero stretches (the unused ends of bulk writer regions)
    /// are skipped; bytes that are neither zero nor a valid entry are
    /// reported once per damaged stretch as `Err` and skipped a word at a
    /// time until an entry decodes again.
    pub(crate) fn scan(
        &self,
        view: &ReadMap,
        mut each: impl FnMut(u64, std::result::Result<Entry<'_>, FormatError>),
    ) {
        let end = usize::try_from(self.end())
            .unwrap_or(usize::MAX)
            .min(view.len());
        let bytes = view.as_slice().get(..end).unwrap_or_default();
        let mut at = HEADER_LEN;
        let mut in_damage = false;
        while at + RECORD_HEADER_LEN <= end {
            let rest = bytes.get(at..).unwrap_or_default();
            match decode_entry_at(rest, READ_LIMIT) {
                Ok(entry) => {
                    in_damage = false;
                    let size = entry.key_seq_size().2;
                    each(at as u64, Ok(entry));
                    at += size;
                }
                Err(e) => {
                    let zero = rest
                        .get(..RECORD_HEADER_LEN)
                        .is_some_and(|h| h.iter().all(|b| *b == 0));
                    if !zero && !in_damage {
                        each(at as u64, Err(e));
                        in_damage = true;
                    }
                    at += RECORD_ALIGN;
                }
            }
        }
    }

    pub(crate) fn disk_bytes(&self) -> Result<u64> {
        Ok(self.file.block_bytes()?)
    }
}

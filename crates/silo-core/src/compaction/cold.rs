//! Cold compaction: rewrite every live record into a new data file and a
//! new index, publish them through the manifest, then delete the old files.
//! Readers holding the old files keep reading them until they let go.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use silo_format::{FormatError, RECORD_HEADER_LEN, alloc_for, encode_record, record_size};
use silo_io::durable::{remove_file, sync_dir};
use silo_io::map::ReadMap;

use crate::READ_LIMIT;
use crate::compaction::CompactionReport;
use crate::compaction::after_syncs::Replaced;
use crate::compaction::apply::publish;
use crate::compaction::plan::{Plan, untouched_entries};
use crate::compaction::runs::Runs;
use crate::compaction::sink::RecordSink;
use crate::compaction::write_behind::WriteBehind;
use crate::data::DataFile;
use crate::error::{Error, Result};
use crate::index::{Index, PREFETCH_AHEAD, capacity_for};
use crate::store::{Core, GateWrite, Tables};
use crate::two_threads::both;
use crate::window_sort::{by_window, window_shift};

/// Bytes buffered before they are written out.
const WRITE_CHUNK: usize = 4 << 20;

/// Records in a rewrite from which its new index is built on a second
/// thread while the data file is written, when the compaction may use two
/// (below it, the thread costs more than it saves).
pub(crate) const PARALLEL_INDEX_FROM: usize = 1 << 16;

/// Runs a cold compaction on up to `threads` threads and adds what it did
/// to `report`.
pub(crate) fn run(
    silo: &Core,
    gate: &GateWrite<'_>,
    report: &mut CompactionReport,
    threads: usize,
) -> Result<()> {
    let mut rewrite = prepare(silo, gate, None, threads)?;
    if let Err(e) = rewrite.written() {
        rewrite.discard();
        return Err(e);
    }
    let (read, written) = (rewrite.bytes_read, rewrite.bytes_written);
    report.bytes_direct += rewrite.direct_bytes();
    report.reclaimed_bytes = finish(silo, gate, rewrite)?;
    report.bytes_read += read;
    report.bytes_written += written;
    report.cold = true;
    Ok(())
}

/// Records of at least this stretch of the data file (`1 << shift` bytes)
/// are read in index order by a rewrite: it fits the CPU's cache.
const ORDER_WINDOW_SHIFT: u32 = 16;
/// The most windows a rewrite's reads are ordered into (a larger file gets
/// larger windows).
const MAX_ORDER_WINDOWS: u64 = 1 << 20;

/// `live` (key, record offset) reordered by where the records lie in a
/// data file ending at `end`, to within a window of 64 KiB or more. The
/// index lists its entries in hash order, which scatters a rewrite's reads
/// over the whole file; in file order they go forward through it, and
/// what is not in the page cache comes in by readahead instead of a page
/// fault at a time.
fn in_file_order(live: Vec<(u64, u64)>, end: u64) -> Vec<(u64, u64)> {
    let shift = window_shift(end, ORDER_WINDOW_SHIFT, MAX_ORDER_WINDOWS);
    let windows = usize::try_from((end >> shift) + 1).unwrap_or(1);
    by_window(live, windows, |(_, offset)| {
        usize::try_from(offset >> shift).unwrap_or(usize::MAX)
    })
}

/// What the first pass of a rewrite found of its records.
struct Sizing {
    /// (sequence number, new alloc, value length | [`VERBATIM`]) of each.
    records: Vec<(u64, u32, u32)>,
    /// Bytes they take rewritten.
    total: u64,
    /// Bytes they take now.
    read: u64,
}

/// Reads the headers of the records of `live` (key, offset) in `data`
/// (their checksums are verified as they are copied: one pass over their
/// bytes instead of two).
fn size_records(
    data: &DataFile,
    view: &ReadMap,
    live: &[(u64, u64)],
    slack: u32,
) -> Result<Sizing> {
    let mut sizing = Sizing {
        records: Vec::with_capacity(live.len()),
        total: 0,
        read: 0,
    };
    for (i, (key, offset)) in live.iter().enumerate() {
        // The live records are read in file order to within a window:
        // ask for the headers a few keys ahead.
        if let Some(ahead) = live
            .get(i + PREFETCH_AHEAD)
            .and_then(|(_, o)| usize::try_from(*o).ok())
            .and_then(|o| view.as_slice().get(o..))
        {
            silo_io::hint::prefetch_slice(ahead, 1);
        }
        let record = data.peek(view, *offset, *key, READ_LIMIT)?;
        let alloc =
            alloc_for(record.value.len(), slack).map_err(|e| Error::format(data.path(), e))?;
        sizing.total += record_size(alloc) as u64;
        sizing.read += record.size() as u64;
        let len = u32::try_from(record.value.len()).unwrap_or(u32::MAX);
        // A record whose room stays the same is copied as it is: its
        // checksum, verified as it is copied, holds for the copy.
        let verbatim = if alloc == record.alloc { VERBATIM } else { 0 };
        sizing.records.push((record.seq, alloc, len | verbatim));
    }
    Ok(sizing)
}

/// Set in a rewrite's record length when the record is copied as it is
/// (lengths are at most [`READ_LIMIT`], 1 GiB).
const VERBATIM: u32 = 1 << 31;
const _: () = assert!(READ_LIMIT < VERBATIM);

/// A rewritten data file and index, synced but not yet published.
pub(crate) struct Rewrite {
    next: Tables,
    live_bytes: u64,
    old_end: u64,
    /// Bytes of old records read.
    pub(crate) bytes_read: u64,
    /// Bytes written to the new data file.
    pub(crate) bytes_written: u64,
    /// The new records' range, when they were written past the page cache.
    readahead: Option<(u64, u64)>,
    /// The copy of the live records and the sync of the new data file,
    /// behind ([`Rewrite::written`] waits for them).
    writing: WriteBehind,
}

impl Rewrite {
    /// Bytes of the new data file written past the page cache.
    pub(crate) fn direct_bytes(&self) -> u64 {
        self.readahead.map_or(0, |(_, len)| len)
    }

    /// Waits until the new data file is written and synced (the index is
    /// already): the rewrite may be published only after this returned
    /// `Ok`. On an error nothing is published: the caller discards it.
    pub(crate) fn written(&mut self) -> Result<()> {
        self.writing.wait()
    }

    /// Removes the unpublished files once nothing writes them any more
    /// (best effort: the next open removes any the manifest does not
    /// name).
    pub(crate) fn discard(mut self) {
        drop(self.writing.wait());
        let (data, index) = (
            self.next.data.path().to_path_buf(),
            self.next.index.path().to_path_buf(),
        );
        drop(self.next);
        let _ = remove_file(&data);
        let _ = remove_file(&index);
    }
}

/// Writes every live record into a new data file and a new index (files no
/// reader knows of yet), and syncs them: the index before this returns,
/// the data file behind it ([`Rewrite::written`]). Reads the store,
/// changes nothing of it: the sharded engine prepares several stores'
/// rewrites at once.
///
/// With `fold`, the plan of a frozen log slot is folded in on the way: the
/// keys it deletes or rewrites are left out of the copy and its results
/// written before it, so that the hot step's tombstones, appends and index
/// updates, which the rewrite would discard at once, are never written.
pub(crate) fn prepare(
    silo: &Core,
    _gate: &GateWrite<'_>,
    fold: Option<&Plan<'_>>,
    threads: usize,
) -> Result<Rewrite> {
    let tables = silo.tables();
    let old_end = tables.data.end();
    let live: Vec<(u64, u64)> = match fold {
        None => tables.index.live_entries().collect::<Result<_>>()?,
        Some(plan) => untouched_entries(&tables.index, plan)?,
    };
    let live = in_file_order(live, old_end);
    let no_writes = Runs::default();
    let folded_writes = fold.map_or(&no_writes, |plan| &plan.writes);
    let view = tables.data.view();
    let slack = silo.opts.value_slack_percent;
    // A first pass reads each record's header and keeps its sequence
    // number, alloc and length (16 bytes a key); the copy checks each
    // record whole as it copies it (or encodes its value). A large store's
    // headers are read by two threads, each taking half.
    let sized = if threads > 1 && live.len() >= PARALLEL_INDEX_FROM {
        let (first, second) = live.split_at(live.len() / 2);
        let (mine, theirs) = both(
            || size_records(&tables.data, &view, first, slack),
            || size_records(&tables.data, &view, second, slack),
        );
        let (mut a, b) = (mine?, theirs?);
        a.records.extend_from_slice(&b.records);
        a.total += b.total;
        a.read += b.read;
        a
    } else {
        size_records(&tables.data, &view, &live, slack)?
    };
    let Sizing {
        records,
        mut total,
        read,
    } = sized;
    let mut folded_allocs = Vec::with_capacity(folded_writes.len());
    for w in folded_writes {
        let alloc =
            alloc_for(w.value.len(), slack).map_err(|e| Error::format(tables.data.path(), e))?;
        total += record_size(alloc) as u64;
        folded_allocs.push(alloc);
    }
    // Nothing names the new files until the rewrite is published: they are
    // created without the syncs of a durable creation, and the directory
    // is synced once for both, below.
    let (dir, index_id, seed) = (&silo.dir, tables.index.id + 1, tables.index.seed());
    // Removed on any failure from here on (a full disk at the data file's
    // preallocation included), once the copy is done with them (it is
    // declared after, so dropped first), or else by the next open: a stray
    // left in a store that stays open would stop its next rewrite.
    let mut unpublished = Unpublished(vec![
        crate::data::data_path(dir, tables.data.id + 1),
        crate::index::index_path(dir, index_id),
    ]);
    let data = Arc::new(DataFile::create_fresh(dir, tables.data.id + 1, total)?);
    let first = data.reserve(total)?;
    // Where each record goes is known before any is written, so the new
    // index is built while the data is written: the plan's results first,
    // then the live records.
    let mut entries = Vec::with_capacity(records.len() + folded_writes.len());
    let mut at = first;
    let sizes = folded_allocs
        .iter()
        .copied()
        .chain(records.iter().map(|(_, alloc, _)| *alloc));
    let keys = folded_writes
        .iter()
        .map(|w| w.key)
        .chain(live.iter().map(|(key, _)| *key));
    for (key, alloc) in keys.zip(sizes) {
        entries.push((key, at));
        at += record_size(alloc) as u64;
    }
    let mut sink = RecordSink::open(&data, first, total, WRITE_CHUNK)?;
    let readahead = sink.is_direct().then_some((first, total));
    // The plan's results are encoded here: their values are in the frozen
    // log slot's map, which only this compaction holds.
    for (i, (w, alloc)) in folded_writes.iter().zip(&folded_allocs).enumerate() {
        crate::compaction::plan::prefetch_value_ahead(folded_writes, i);
        sink.push(&data, record_size(*alloc), |buf| {
            encode_record(buf, w.key, w.seq, &w.value, *alloc)
        })?;
    }
    // The live records are copied behind (see `write_behind`) while this
    // thread builds the index.
    let copy = LiveCopy {
        old: Arc::clone(&tables.data),
        data: Arc::clone(&data),
        view,
        live,
        records,
        sink,
    };
    let writing = WriteBehind::start(move || copy.run());
    let index = Index::create_fresh(
        dir,
        index_id,
        capacity_for(entries.len() as u64),
        seed,
        entries,
    )
    .and_then(|index| {
        // Both names durable before any manifest can name them.
        sync_dir(dir)?;
        Ok(Arc::new(index))
    })?;
    unpublished.0.clear();
    Ok(Rewrite {
        next: Tables { data, index },
        live_bytes: total,
        old_end,
        bytes_read: read,
        bytes_written: total,
        readahead,
        writing,
    })
}

/// Files of a rewrite that are removed when it is dropped (best effort:
/// the next open removes any the manifest does not name); emptied once the
/// rewrite is prepared.
struct Unpublished(Vec<std::path::PathBuf>);

impl Drop for Unpublished {
    fn drop(&mut self) {
        for path in &self.0 {
            if path.exists() {
                let _ = remove_file(path);
            }
        }
    }
}

/// Where a cold rewrite's copy waits, before its first record, when a test
/// holds it (`silo_io::fault` with the `fault-injection` feature; nothing
/// otherwise).
pub const HOLD_COLD_COPY: &str = "core: a cold rewrite's copy, before its first record";

/// A rewrite's live records and where they go, for the copy behind.
struct LiveCopy {
    /// The data file the records are in, read through `view`.
    old: Arc<DataFile>,
    /// The new data file.
    data: Arc<DataFile>,
    view: Arc<ReadMap>,
    /// (key, old offset), in the order they are written.
    live: Vec<(u64, u64)>,
    /// (sequence number, new alloc, value length | [`VERBATIM`]) of each.
    records: Vec<(u64, u32, u32)>,
    sink: RecordSink,
}

impl LiveCopy {
    /// Checks every live record whole and writes it after what the sink
    /// holds, then finishes the sink and syncs the new file.
    fn run(self) -> Result<()> {
        let LiveCopy {
            old,
            data,
            view,
            live,
            records,
            mut sink,
        } = self;
        if let Some(dir) = old.path().parent() {
            silo_io::fault::hold_point(dir, HOLD_COLD_COPY);
        }
        for (i, ((key, offset), (seq, alloc, len))) in live.iter().zip(&records).enumerate() {
            if let Some(ahead) = live
                .get(i + PREFETCH_AHEAD)
                .and_then(|(_, o)| usize::try_from(*o).ok())
                .and_then(|o| view.as_slice().get(o..))
            {
                silo_io::hint::prefetch_slice(ahead, 2);
            }
            let (verbatim, len) = (len & VERBATIM != 0, (len & !VERBATIM) as usize);
            // Checked whole (its checksum) before any of it is written: a
            // damaged record fails the rewrite, which publishes nothing.
            let record = old.record(&view, *offset, *key, READ_LIMIT)?;
            if record.seq != *seq || record.value.len() != len {
                return Err(Error::corrupt(
                    old.path(),
                    *offset,
                    "the record changed between the rewrite's passes",
                ));
            }
            let size = record_size(*alloc);
            if verbatim {
                let bytes = usize::try_from(*offset)
                    .ok()
                    .and_then(|o| {
                        view.as_slice()
                            .get(o..o.checked_add(RECORD_HEADER_LEN + len)?)
                    })
                    .ok_or_else(|| {
                        Error::corrupt(old.path(), *offset, "record moved while rewritten")
                    })?;
                // The sink hands out zeroed bytes: the padding stays zero.
                sink.push(&data, size, |buf| {
                    let available = buf.len();
                    let head = buf.get_mut(..bytes.len()).ok_or(FormatError::Truncated {
                        what: "record output buffer",
                        needed: bytes.len(),
                        available,
                    })?;
                    head.copy_from_slice(bytes);
                    Ok(size)
                })?;
            } else {
                sink.push(&data, size, |buf| {
                    encode_record(buf, *key, *seq, record.value, *alloc)
                })?;
            }
        }
        sink.finish(&data)?;
        data.sync_and_publish()
    }
}

/// Publishes a prepared rewrite through the manifest and deletes the old
/// files; returns the bytes of data file reclaimed.
pub(crate) fn finish(silo: &Core, gate: &GateWrite<'_>, rewrite: Rewrite) -> Result<u64> {
    finish_folded(silo, gate, rewrite, None)
}

/// [`finish`] for a rewrite prepared with a fold: the same manifest that
/// names the new files says that they hold every operation of the plan
/// (its folded sequence and batch tag).
pub(crate) fn finish_folded(
    silo: &Core,
    _gate: &GateWrite<'_>,
    mut rewrite: Rewrite,
    fold: Option<&Plan<'_>>,
) -> Result<u64> {
    // Callers wait first (a failed copy is no reason to poison the store);
    // this makes sure nothing unwritten is ever published.
    rewrite.written()?;
    let old = silo.tables();
    silo.space
        .live_bytes
        .store(rewrite.live_bytes, Ordering::Relaxed);
    silo.space.dead_bytes.store(0, Ordering::Relaxed);
    let next = Arc::new(rewrite.next);
    match fold {
        None => publish(silo, Arc::clone(&next))?,
        Some(plan) => {
            *silo.tables.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&next);
            let mut manifest = silo.current_manifest(plan.through_seq, false);
            manifest.batch_tag = manifest.batch_tag.max(plan.max_tag);
            silo.store_manifest(manifest)?;
        }
    }
    // The old files' removal need not be durable: if a crash brings their
    // names back, the next open removes them as files the manifest does
    // not name.
    remove_file(old.data.path())?;
    remove_file(old.index.path())?;
    if let Some((offset, len)) = rewrite.readahead {
        // Nothing of the new file is in the page cache: have the kernel
        // read it back, as the old one was cached. Only now, when no sync
        // of this compaction is left to wait behind that reading.
        let data = Arc::clone(&next.data);
        silo.after_syncs(|a| a.read_back(data, offset, len));
    }
    silo.counters
        .cold_compactions
        .fetch_add(1, Ordering::Relaxed);
    let reclaimed = rewrite.old_end.saturating_sub(next.data.end());
    // The old files are unlinked: closing them (here, their last
    // descriptors, unless a reader still holds them) frees their blocks
    // and cached pages, which a compaction of a large store need not wait
    // for.
    if rewrite.old_end >= crate::compaction::LONG_SLOT as u64 {
        silo.after_syncs(|a| a.release(Replaced::Tables(old)));
    }
    Ok(reclaimed)
}

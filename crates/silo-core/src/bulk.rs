//! Bulk writers.
//!
//! [`BulkWriter`] loads a fresh store from many threads at once: each
//! [`BulkHandle`] takes 1 MiB regions of the data file from a shared bump
//! pointer, fills them with records in memory and writes each region with
//! one positional write; `finish` builds the index directly. The log is
//! bypassed. The result is the state the same puts would leave if made one
//! by one (per key, the last put through a handle wins; across handles,
//! the handle finished last wins).
//!
//! [`MergeWriter`] does concurrent read-modify-write with 1024 striped
//! locks. A result that fits its record's allocated space is rewritten in
//! place (journaled, so a crash cannot tear it), unless a put or delete of
//! the key is pending in the log (a restart would replay it above the
//! record); otherwise it is written through the log like a `put` and
//! counted in [`crate::Stats::merge_fallbacks`]. Nothing is dropped. While
//! read-only opens in other processes have the files mapped, every result
//! goes through the log; a merge writer that rewrites in place keeps new
//! read-only opens waiting until it is finished. A flush
//! first makes the log durable (the records claim its sequence numbers),
//! and excludes updates while it rewrites records.
//!
//! Both hold the compaction gate while they live: compaction and
//! iterators wait; reads and ordinary writes go on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use silo_format::{alloc_for, encode_record, record_size};
use silo_io::coalesce::CoalescedWrites;

use crate::READ_LIMIT;
use crate::compaction::apply::publish;
use crate::compaction::journal;
use crate::error::{Error, Result};
use crate::index::{Index, capacity_for};
use crate::pending::Bytes;
use crate::reentry::{self, Hold, HoldGuard};
use crate::store::{Core, GateWrite, Tables};

/// Bytes of data file a [`BulkHandle`] takes at a time.
const REGION: u64 = 1 << 20;

/// Loads a fresh store from many threads; see the module docs.
pub struct BulkWriter<'a> {
    silo: &'a Core,
    _gate: GateWrite<'a>,
    _held: HoldGuard,
    /// The sequence number records are stamped with: the last one logged,
    /// so they rank above every tombstone already in the data file and
    /// below every later operation.
    seq: u64,
    tables: Arc<Tables>,
    region_lock: Mutex<()>,
    /// Per finished handle: its entries (key, offset, size) in put order.
    done: Mutex<Vec<Vec<(u64, u64, u64)>>>,
    /// Bytes of regions left unused at their end.
    wasted: AtomicU64,
    /// A handle that could not write its last region when dropped.
    failed: Mutex<Option<String>>,
}

impl std::fmt::Debug for BulkWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkWriter").finish_non_exhaustive()
    }
}

/// One thread's side of a [`BulkWriter`].
pub struct BulkHandle<'w, 'a> {
    writer: &'w BulkWriter<'a>,
    region_start: u64,
    buf: Vec<u8>,
    entries: Vec<(u64, u64, u64)>,
}

impl std::fmt::Debug for BulkHandle<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkHandle")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Core {
    /// See [`crate::Silo::bulk_writer`].
    pub(crate) fn bulk_writer(&self) -> Result<BulkWriter<'_>> {
        self.check_poisoned()?;
        reentry::refuse_held(self.id, "bulk_writer")?;
        let gate = self.gate.write();
        let tables = self.tables();
        let keys = tables.index.counts().0 + self.pending.ops();
        if keys > 0 {
            return Err(Error::NotEmpty { keys });
        }
        let seq = self.log.lock().next_seq().saturating_sub(1);
        Ok(BulkWriter {
            silo: self,
            _gate: gate,
            _held: reentry::hold(self.id, Hold::GateWriter),
            seq,
            tables,
            region_lock: Mutex::new(()),
            done: Mutex::new(Vec::new()),
            wasted: AtomicU64::new(0),
            failed: Mutex::new(None),
        })
    }
}

impl<'a> BulkWriter<'a> {
    /// A handle for one thread.
    pub fn handle(&self) -> BulkHandle<'_, 'a> {
        BulkHandle {
            writer: self,
            region_start: 0,
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn region(&self, len: u64) -> Result<u64> {
        let _one = self.region_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.tables.data.reserve(len)
    }

    /// Writes everything, builds the index and publishes the result.
    /// Handles must be finished first.
    pub fn finish(self) -> Result<()> {
        let silo = self.silo;
        let result = (|| {
            if let Some(cause) = self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(Error::Poisoned { cause });
            }
            let data = &self.tables.data;
            data.sync_and_publish()?;
            let mut done =
                std::mem::take(&mut *self.done.lock().unwrap_or_else(|p| p.into_inner()));
            // Later handles win over earlier ones, later puts over earlier ones.
            let mut latest: HashMap<u64, (u64, u64)> = HashMap::new();
            let mut dead = self.wasted.load(Ordering::Relaxed);
            for entries in done.drain(..) {
                for (key, offset, size) in entries {
                    if let Some((_, old)) = latest.insert(key, (offset, size)) {
                        dead += old;
                    }
                }
            }
            let live: u64 = latest.values().map(|(_, s)| *s).sum();
            let old = &self.tables.index;
            let index = Index::create(
                &silo.dir,
                old.id + 1,
                capacity_for(latest.len() as u64),
                old.seed(),
                latest.into_iter().map(|(k, (o, _))| (k, o)).collect(),
            )?;
            silo.space.live_bytes.store(live, Ordering::Relaxed);
            silo.space.dead_bytes.store(dead, Ordering::Relaxed);
            publish(
                silo,
                Arc::new(Tables {
                    data: Arc::clone(data),
                    index: Arc::new(index),
                }),
            )?;
            silo_io::durable::remove_file(old.path())?;
            Ok(())
        })();
        result.map_err(|e| silo.poison(e))
    }
}

impl BulkHandle<'_, '_> {
    /// Adds `key = value`. Records carry the last sequence number logged
    /// before the writer started, so any later operation on the key through
    /// the log is newer, and any tombstone already in the data file older.
    pub fn put(&mut self, key: u64, value: &[u8]) -> Result<()> {
        let max = self.writer.silo.opts.max_value_len;
        if value.len() > max as usize {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        let alloc = alloc_for(value.len(), self.writer.silo.opts.value_slack_percent)
            .map_err(|e| Error::format(self.writer.tables.data.path(), e))?;
        let size = record_size(alloc);
        if self.buf.len() + size > self.buf.capacity() || self.buf.capacity() == 0 {
            self.flush_region()?;
            let len = (size as u64).max(REGION);
            self.region_start = self.writer.region(len)?;
            self.buf = Vec::with_capacity(usize::try_from(len).unwrap_or(usize::MAX));
        }
        let at = self.buf.len();
        self.buf.resize(at + size, 0);
        encode_record(&mut self.buf[at..], key, self.writer.seq, value, alloc)
            .map_err(|e| Error::format(self.writer.tables.data.path(), e))?;
        self.entries
            .push((key, self.region_start + at as u64, size as u64));
        Ok(())
    }

    fn flush_region(&mut self) -> Result<()> {
        if self.buf.capacity() == 0 {
            return Ok(());
        }
        self.writer
            .tables
            .data
            .file()
            .write_all_at(&self.buf, self.region_start)?;
        let unused = self.buf.capacity() - self.buf.len();
        self.writer
            .wasted
            .fetch_add(unused as u64, Ordering::Relaxed);
        self.buf = Vec::new();
        Ok(())
    }

    /// Writes this handle's last region and hands its entries to the writer.
    /// (Dropping the handle does the same; only `finish` reports errors.)
    pub fn finish(mut self) -> Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<()> {
        self.flush_region()?;
        let entries = std::mem::take(&mut self.entries);
        self.writer
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entries);
        Ok(())
    }
}

impl Drop for BulkHandle<'_, '_> {
    fn drop(&mut self) {
        if self.entries.is_empty() && self.buf.capacity() == 0 {
            return;
        }
        // Puts that returned Ok are not dropped: write them now, and if that
        // fails make the writer's `finish` fail rather than index them.
        if let Err(e) = self.finish_inner() {
            self.writer
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e.to_string());
        }
    }
}

/// Number of lock stripes of a [`MergeWriter`].
const STRIPES: usize = 1024;
/// In-place results buffered before they are written.
const FLUSH_EVERY: usize = 4096;

/// A result waiting to be written over its record.
struct InPlace {
    offset: u64,
    alloc: u32,
    seq: u64,
    value: Vec<u8>,
}

/// Concurrent read-modify-write; see the module docs.
pub struct MergeWriter<'a> {
    silo: &'a Core,
    /// Held while results may be rewritten in place: no read-only open in
    /// another process has the files mapped, and none starts until the
    /// writer is finished. `None` when readers were there: every result
    /// goes through the log. Declared before the gate, so that it is
    /// released first: a compaction that takes the gate next takes its own.
    in_place: Option<silo_io::lock::LockGuard<'a>>,
    _gate: GateWrite<'a>,
    _held: HoldGuard,
    stripes: Box<[Mutex<()>]>,
    /// Updates hold it shared, a flush exclusively: no update reads a record
    /// while a flush rewrites it, and flushes never overlap.
    flushing: RwLock<()>,
    buffered: Mutex<HashMap<u64, InPlace>>,
}

/// What [`MergeWriter::update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The result fits the record: it will be rewritten in place.
    InPlace,
    /// The result did not fit (or the key had no record): written through the log.
    Fallback,
}

impl Core {
    /// See [`crate::Silo::merge_writer`].
    pub(crate) fn merge_writer(&self) -> Result<MergeWriter<'_>> {
        self.check_poisoned()?;
        reentry::refuse_held(self.id, "merge_writer")?;
        let gate = self.gate.write();
        // Taken under the gate, like every in-place guard of the store.
        let in_place = self.lock.try_rewrite_in_place()?;
        Ok(MergeWriter {
            silo: self,
            in_place,
            _gate: gate,
            _held: reentry::hold(self.id, Hold::GateWriter),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            flushing: RwLock::new(()),
            buffered: Mutex::new(HashMap::new()),
        })
    }
}

impl MergeWriter<'_> {
    /// Replaces the value of `key` with `f(current value)`. Visible to
    /// readers at once; durable after [`MergeWriter::flush`] or `finish`
    /// (or, for a fallback, as durable as a `put`).
    pub fn update(
        &self,
        key: u64,
        f: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<UpdateOutcome> {
        let silo = self.silo;
        // Every write path refuses after a failed write or sync.
        silo.check_poisoned()?;
        reentry::refuse_in_callback(silo.id, "MergeWriter::update")?;
        let stripe = usize::try_from(key % STRIPES as u64).unwrap_or(0);
        let no_flush = self.flushing.read().unwrap_or_else(|p| p.into_inner());
        let key_lock = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _reader = silo.grace.enter();
        let callback = reentry::hold(silo.id, Hold::Callback);
        let pending = silo.pending.get(key);
        let tables = silo.tables();
        let view = tables.data.view();
        let record = match tables.index.get(key)? {
            Some(offset) => Some((offset, tables.data.record(&view, offset, key, READ_LIMIT)?)),
            None => None,
        };
        let current = match &pending {
            Some(ops) => silo.resolve(
                key,
                ops.clone(),
                match record {
                    Some((_, r)) => crate::store::Stored::Present(r.seq, r.value),
                    None => crate::store::Stored::Absent,
                },
            )?,
            None => record.map(|(_, r)| r.value.to_vec()),
        };
        let new = f(current.as_deref());
        drop(callback);
        // The result takes the place right after everything it read.
        let seq = pending
            .as_ref()
            .map_or(0, |p| p.max_seq())
            .max(record.map_or(0, |(_, r)| r.seq));
        // In place only over merges: a pending put or delete from the log
        // would be replayed after a restart and, as a base, hide the record
        // whatever its sequence number. Our own earlier overlay is fine.
        let mine = self
            .buffered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .map(|w| w.seq);
        let base_ok = match pending.as_ref().and_then(|p| p.base.as_ref()) {
            None => true,
            Some(base) => mine == Some(base.seq()),
        };
        match record {
            Some((offset, r))
                if r.alloc as usize >= new.len() && base_ok && self.in_place.is_some() =>
            {
                silo.pending.overlay(key, seq, Bytes::copy_of(&new));
                let full = {
                    let mut buffered = self.buffered.lock().unwrap_or_else(|p| p.into_inner());
                    buffered.insert(
                        key,
                        InPlace {
                            offset,
                            alloc: r.alloc,
                            seq,
                            value: new,
                        },
                    );
                    buffered.len() >= FLUSH_EVERY
                };
                drop((_reader, key_lock, no_flush));
                if full {
                    self.flush()?;
                }
                Ok(UpdateOutcome::InPlace)
            }
            _ => {
                self.buffered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                drop(_reader);
                silo.put_no_compact(key, &new)?;
                silo.counters
                    .merge_fallbacks
                    .fetch_add(1, Ordering::Relaxed);
                Ok(UpdateOutcome::Fallback)
            }
        }
    }

    /// Writes the buffered in-place results durably: readers that may have
    /// read the old records finish first, the records are journaled, then
    /// overwritten and synced.
    pub fn flush(&self) -> Result<()> {
        let silo = self.silo;
        silo.check_poisoned()?;
        reentry::refuse_in_callback(silo.id, "MergeWriter::flush")?;
        let _exclusive = self.flushing.write().unwrap_or_else(|p| p.into_inner());
        let batch: Vec<(u64, InPlace)> = self
            .buffered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let result = (|| {
            // The records will claim sequence numbers of logged operations:
            // those must be durable first, or a crash could cut them from
            // the log and let new writes reuse the numbers.
            silo.log.sync_all()?;
            silo.grace.wait();
            let tables = silo.tables();
            let mut writes = CoalescedWrites::new();
            let mut records = Vec::with_capacity(batch.len());
            for (key, w) in &batch {
                let mut buf = vec![0u8; record_size(w.alloc)];
                encode_record(&mut buf, *key, w.seq, &w.value, w.alloc)
                    .map_err(|e| Error::format(tables.data.path(), e))?;
                writes.push(w.offset, &buf);
                records.push((w.offset, buf));
            }
            let entries: Vec<(u64, &[u8])> = records.iter().map(|(o, b)| (*o, &b[..])).collect();
            journal::write(&silo.dir, 0, entries.iter().copied())?;
            tables.data.write(&mut writes)?;
            tables.data.sync_and_publish()?;
            journal::remove(&silo.dir)?;
            for (key, w) in &batch {
                silo.pending.forget_through(*key, w.seq);
            }
            Ok(())
        })();
        result.map_err(|e| silo.poison(e))
    }

    /// Flushes and releases the store to compaction.
    pub fn finish(self) -> Result<()> {
        self.flush()
    }
}

impl Drop for MergeWriter<'_> {
    fn drop(&mut self) {
        // Results readers already see must not stay undurable: flush. A
        // failure poisons the store (see `flush`), so later calls report it.
        let _ = self.flush();
    }
}

//! `Core`: one store in one directory (the [`crate::Silo`] handle wraps it).
//! Opening and recovery, reads, writes,
//! flush, stats and close; compaction lives in [`crate::compaction`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use silo_format::{Manifest, Tag, encode_frame, frame_len};
use silo_io::lock::DirLock;

use crate::compaction::after_syncs::AfterSyncs;
use crate::compaction::policy::{self, CompactionKind, PolicyInput};
use crate::data::DataFile;
use crate::error::{Error, Result};
use crate::grace::Grace;
use crate::index::Index;
use crate::log::Log;
use crate::options::{Durability, Options, WriteOptions};
use crate::pending::{Base, Bytes, KeyOps, PendingOp, PendingView};
use crate::reentry::{self, Hold};
use crate::stats::Stats;
use crate::value_slab::ValueSlab;
use crate::{READ_LIMIT, WriteBatch, manifest, recovery};

/// The data file and index a reader uses; swapped whole by cold compaction
/// and index growth, so a reader keeps a consistent pair.
pub(crate) struct Tables {
    pub(crate) data: Arc<DataFile>,
    pub(crate) index: Arc<Index>,
}

/// The compaction gate held exclusively (compaction, bulk writers, checkpoint).
pub(crate) type GateWrite<'a> = parking_lot::RwLockWriteGuard<'a, ()>;
/// The compaction gate held shared (iterators).
pub(crate) type GateRead<'a> = parking_lot::RwLockReadGuard<'a, ()>;

/// A key's stored value, as [`crate::Silo::resolve`] should find it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stored<'a> {
    /// Look it up in the current tables.
    Lookup,
    /// The key has no stored value.
    Absent,
    /// The stored record's sequence number and value.
    Present(u64, &'a [u8]),
}

/// Space accounting of the data file, kept exact while open.
#[derive(Default)]
pub(crate) struct Space {
    pub(crate) live_bytes: AtomicU64,
    pub(crate) dead_bytes: AtomicU64,
}

/// A flag that threads can wait to see cleared.
#[derive(Default)]
pub(crate) struct Busy {
    busy: Mutex<bool>,
    idle: std::sync::Condvar,
}

/// Compactions running in this process, of every store (each holds its
/// store's [`Busy`] flag): a log slot starts no early writeback while one
/// runs (see `LogSlot::append`).
static COMPACTIONS_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Whether a compaction of any store of this process is running.
pub(crate) fn compaction_running() -> bool {
    COMPACTIONS_RUNNING.load(Ordering::Relaxed) > 0
}

impl Busy {
    /// Sets the flag until the returned guard drops (and counts the guard
    /// among the process's running compactions).
    pub(crate) fn enter(&self) -> BusyGuard<'_> {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = true;
        COMPACTIONS_RUNNING.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self)
    }

    /// Returns once the flag is clear.
    pub(crate) fn wait_idle(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = self.idle.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Clears a [`Busy`] flag when dropped.
pub(crate) struct BusyGuard<'a>(&'a Busy);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        COMPACTIONS_RUNNING.fetch_sub(1, Ordering::Relaxed);
        *self.0.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.idle.notify_all();
    }
}

/// Counters reported in [`Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) torn_tail_bytes: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) cold_compactions: AtomicU64,
    pub(crate) merge_fallbacks: AtomicU64,
}

/// The store itself, shared by the [`Silo`] handle and its background
/// compaction worker.
pub(crate) struct Core {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) log: Log,
    pub(crate) pending: PendingView,
    /// The blocks new pending values are copied into.
    values: ValueSlab,
    pub(crate) tables: RwLock<Arc<Tables>>,
    pub(crate) grace: Grace,
    /// Held (write) by compaction and the bulk writers; held (read) by iterators.
    pub(crate) gate: parking_lot::RwLock<()>,
    /// The last manifest written.
    pub(crate) manifest: Mutex<Manifest>,
    pub(crate) space: Space,
    pub(crate) counters: Counters,
    /// When the store was opened: the origin of `last_compaction_ms`.
    opened: Instant,
    /// Milliseconds after `opened` at which the last compaction ended, plus one (0: none yet).
    last_compaction_ms: AtomicU64,
    /// Bytes in the active log slot, mirrored out of the log mutex for the policy.
    pub(crate) active_log_bytes: AtomicU64,
    /// Why the last compaction failed, if it did.
    pub(crate) last_compaction_error: Mutex<Option<String>>,
    /// Whether a compaction is running (writers over the memory limit wait on it).
    pub(crate) compacting: Busy,
    /// The first write or sync failure; writes are refused after it.
    poisoned: Mutex<Option<String>>,
    is_poisoned: AtomicBool,
    pub(crate) closed: AtomicBool,
    /// Tells this store apart in the per-thread record of held callbacks and iterators.
    pub(crate) id: u64,
    /// Wakes the compaction worker (see `compactor.rs`).
    pub(crate) wake: crate::compactor::Wake,
    /// The highest tag of the tagged batches the store holds.
    pub(crate) batch_tag: AtomicU64,
    /// The directory's lock: the writer's, or a reader's (see `DirLock`).
    pub(crate) lock: DirLock,
    /// What the running compaction leaves until its syncs are done.
    pub(crate) after_syncs: Mutex<AfterSyncs>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// See [`crate::Silo::open`].
    pub(crate) fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Core> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let lock = if opts.read_only {
            DirLock::acquire_shared(&dir)?
        } else {
            // A new store's directory entry must survive a power cut too.
            silo_io::durable::create_dir_durable(&dir)?;
            DirLock::acquire(&dir)?
        };
        let recovered = recovery::recover(&dir, &opts, &lock)?;
        let silo = Core {
            log: Log::new(recovered.log),
            pending: recovered.pending,
            values: ValueSlab::default(),
            tables: RwLock::new(Arc::new(recovered.tables)),
            grace: Grace::default(),
            gate: parking_lot::RwLock::new(()),
            manifest: Mutex::new(recovered.manifest),
            space: Space {
                live_bytes: AtomicU64::new(recovered.manifest.live_bytes),
                dead_bytes: AtomicU64::new(recovered.manifest.dead_bytes),
            },
            counters: Counters {
                torn_tail_bytes: AtomicU64::new(recovered.torn_tail_bytes),
                ..Counters::default()
            },
            opened: Instant::now(),
            last_compaction_ms: AtomicU64::new(0),
            active_log_bytes: AtomicU64::new(0),
            last_compaction_error: Mutex::new(None),
            compacting: Busy::default(),
            poisoned: Mutex::new(None),
            is_poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            id: reentry::next_store_id(),
            wake: crate::compactor::Wake::default(),
            batch_tag: AtomicU64::new(recovered.batch_tag),
            dir,
            opts,
            lock,
            after_syncs: Mutex::default(),
        };
        // A compaction that was cut off left a frozen slot: finish it now,
        // so at most one slot is ever waiting to be folded. (Read-only:
        // its operations are in the pending view; reads see them.)
        if silo.log.lock().frozen && !silo.opts.read_only {
            match silo.compact_hot() {
                Ok(_) => {}
                // An operand the merge operator refuses must not make the
                // store unopenable: reads fold the pending operations and
                // report the error for that key; a put or delete of it
                // lets compaction through.
                Err(e) if e.is_operand_error() => silo.note_compaction_error(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(silo)
    }

    /// [`Error::ReadOnly`] for `call` if the store is open read-only.
    pub(crate) fn refuse_read_only(&self, call: &'static str) -> Result<()> {
        if self.opts.read_only {
            Err(Error::ReadOnly { call })
        } else {
            Ok(())
        }
    }

    /// See [`crate::Silo::dir`].
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// See [`crate::Silo::options`].
    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    /// The current data file and index.
    pub(crate) fn tables(&self) -> Arc<Tables> {
        Arc::clone(&self.tables.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes the compaction gate shared (iterators).
    /// Never waits behind a compaction that is only waiting for the gate,
    /// so a thread may hold several iterators.
    pub(crate) fn gate_shared(&self) -> GateRead<'_> {
        self.gate.read_recursive()
    }

    // ----- reads -------------------------------------------------------

    /// See [`crate::Silo::get`].
    pub(crate) fn get(&self, key: u64) -> Result<Option<Vec<u8>>> {
        self.get_with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// See [`crate::Silo::get_with`].
    pub(crate) fn get_with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        let _reader = self.grace.enter();
        let _callback = reentry::hold(self.id, Hold::Callback);
        let pending = self.pending.get(key);
        match pending {
            None => self.with_stored(&self.tables(), key, || {}, |r| f(r.map(|(_, v)| v))),
            // A pending put settles the read without copying the value.
            Some(KeyOps {
                base: Some(Base::Put { value, .. }),
                merges,
            }) if merges.is_empty() => Ok(f(Some(&value))),
            Some(ops) => self
                .resolve(key, ops, Stored::Lookup)
                .map(|v| f(v.as_deref())),
        }
    }

    /// Folds a key's pending operations over its stored value.
    pub(crate) fn resolve(
        &self,
        key: u64,
        ops: KeyOps,
        stored: Stored<'_>,
    ) -> Result<Option<Vec<u8>>> {
        match (&ops.base, ops.merges.is_empty()) {
            (Some(Base::Put { value, .. }), true) => return Ok(Some(value.to_vec())),
            (Some(Base::Delete { .. }), true) => return Ok(None),
            _ => {}
        }
        let operands = |floor: u64| -> Vec<&[u8]> {
            ops.merges
                .iter()
                .filter(|(s, _)| *s > floor)
                .map(|(_, m)| &m[..])
                .collect()
        };
        match &ops.base {
            Some(Base::Put { value, .. }) => {
                return self.fold(key, Some(value), &operands(0)).map(Some);
            }
            Some(Base::Delete { .. }) => return self.fold(key, None, &operands(0)).map(Some),
            None => {}
        }
        let fold_over = |record: Option<(u64, &[u8])>| {
            let ops = operands(record.map_or(0, |(seq, _)| seq));
            match (record, ops.is_empty()) {
                (Some((_, value)), true) => Ok(Some(value.to_vec())),
                (None, true) => Ok(None),
                (r, false) => self.fold(key, r.map(|(_, v)| v), &ops).map(Some),
            }
        };
        match stored {
            Stored::Absent => fold_over(None),
            Stored::Present(seq, value) => fold_over(Some((seq, value))),
            Stored::Lookup => {
                let tables = self.tables();
                self.with_stored(&tables, key, || {}, fold_over)?
            }
        }
    }

    /// Calls `f` with `key`'s stored record (`(seq, value)`, or `None`).
    /// The index entry is read first, then the data view: an entry read
    /// first may point at a record appended after an older view was taken,
    /// and such a view would end before it. `between` runs between the two
    /// (a seam for the test of that order; `|| {}` otherwise).
    pub(crate) fn with_stored<R>(
        &self,
        tables: &Tables,
        key: u64,
        between: impl FnOnce(),
        f: impl FnOnce(Option<(u64, &[u8])>) -> R,
    ) -> Result<R> {
        let offset = tables.index.get(key)?;
        between();
        let view = tables.data.view();
        match offset {
            Some(offset) => {
                let r = tables.data.record(&view, offset, key, READ_LIMIT)?;
                Ok(f(Some((r.seq, r.value))))
            }
            None => Ok(f(None)),
        }
    }

    /// Applies the merge operator.
    pub(crate) fn fold(
        &self,
        key: u64,
        base: Option<&[u8]>,
        operands: &[&[u8]],
    ) -> Result<Vec<u8>> {
        let op = self
            .opts
            .merge_operator
            .as_ref()
            .ok_or(Error::NoMergeOperator { key })?;
        let mut out = Vec::new();
        op.merge(key, base, operands, &mut out)
            .map_err(|message| Error::Merge { key, message })?;
        Ok(out)
    }

    // ----- writes ------------------------------------------------------

    /// See [`crate::Silo::put`].
    pub(crate) fn put(&self, key: u64, value: &[u8]) -> Result<()> {
        self.put_with(key, value, WriteOptions::default())
    }

    /// See [`crate::Silo::put_with`].
    pub(crate) fn put_with(&self, key: u64, value: &[u8], wo: WriteOptions) -> Result<()> {
        self.append(&[(Tag::Put, key, value)], None, self.durability_of(wo))?;
        self.paced(wo)
    }

    /// The durability a call with `wo` gets.
    fn durability_of(&self, wo: WriteOptions) -> Durability {
        wo.durability.unwrap_or(self.opts.durability)
    }

    /// A put that never starts or waits for a compaction (for writers that
    /// hold the compaction gate themselves).
    pub(crate) fn put_no_compact(&self, key: u64, value: &[u8]) -> Result<()> {
        self.append(&[(Tag::Put, key, value)], None, self.opts.durability)
    }

    /// See [`crate::Silo::delete`].
    pub(crate) fn delete(&self, key: u64) -> Result<()> {
        self.delete_with(key, WriteOptions::default())
    }

    /// See [`crate::Silo::delete_with`].
    pub(crate) fn delete_with(&self, key: u64, wo: WriteOptions) -> Result<()> {
        self.append(&[(Tag::Delete, key, &[])], None, self.durability_of(wo))?;
        self.paced(wo)
    }

    /// See [`crate::Silo::merge`].
    pub(crate) fn merge(&self, key: u64, operand: &[u8]) -> Result<()> {
        self.merge_with(key, operand, WriteOptions::default())
    }

    /// See [`crate::Silo::merge_with`].
    pub(crate) fn merge_with(&self, key: u64, operand: &[u8], wo: WriteOptions) -> Result<()> {
        if self.opts.merge_operator.is_none() {
            return Err(Error::NoMergeOperator { key });
        }
        self.append(&[(Tag::Merge, key, operand)], None, self.durability_of(wo))?;
        self.paced(wo)
    }

    /// See [`crate::Silo::write`].
    pub(crate) fn write(&self, batch: &WriteBatch) -> Result<()> {
        self.write_with(batch, WriteOptions::default())
    }

    /// See [`crate::Silo::write_with`].
    pub(crate) fn write_with(&self, batch: &WriteBatch, wo: WriteOptions) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.opts.merge_operator.is_none()
            && let Some((_, key, _)) = batch.iter().find(|(t, _, _)| *t == Tag::Merge)
        {
            return Err(Error::NoMergeOperator { key });
        }
        let ops: Vec<(Tag, u64, &[u8])> = batch.iter().collect();
        // One operation needs no batch markers, unless it carries a tag.
        let framing = (ops.len() > 1 || batch.tag != 0).then_some(batch.tag);
        self.append(&ops, framing, self.durability_of(wo))?;
        self.paced(wo)
    }

    /// Fails if an earlier write or sync failed.
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        if self.is_poisoned.load(Ordering::Acquire) {
            let cause = self
                .poisoned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(Error::Poisoned {
                cause: cause.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Whether an earlier write or sync failed.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.is_poisoned.load(Ordering::Acquire)
    }

    /// Records the first write or sync failure and passes the error on.
    pub(crate) fn poison(&self, e: Error) -> Error {
        let mut p = self.poisoned.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none() {
            *p = Some(e.to_string());
        }
        self.is_poisoned.store(true, Ordering::Release);
        e
    }

    /// Logs `ops` and records them in the pending view. `batch`: `None` for
    /// one operation without batch markers, `Some(tag)` for a batch (tag 0:
    /// untagged).
    fn append(
        &self,
        ops: &[(Tag, u64, &[u8])],
        batch: Option<u64>,
        durability: Durability,
    ) -> Result<()> {
        let durable = durability == Durability::Sync;
        self.check_poisoned()?;
        let max = self.opts.max_value_len;
        let mut size = 0;
        for (_, _, payload) in ops {
            if payload.len() > max as usize {
                return Err(Error::ValueTooLarge {
                    len: payload.len(),
                    max,
                });
            }
            size += frame_len(payload.len());
        }
        let tag_bytes = batch.filter(|t| *t != 0).map(u64::to_le_bytes);
        let tag_payload: &[u8] = tag_bytes.as_ref().map_or(&[], |b| &b[..]);
        let markers: u64 = if batch.is_some() { 2 } else { 0 };
        if batch.is_some() {
            size += frame_len(tag_payload.len()) + frame_len(0);
        }
        let count = ops.len() as u64 + markers;
        // Every value of the call lies in one of the store's shared blocks
        // (see `value_slab`), and the operations are built outside the log
        // mutex; only their sequence numbers are filled in under it.
        let block = self.values.joined(
            ops.iter().map(|(_, _, p)| *p),
            ops.iter().map(|(_, _, p)| p.len()).sum(),
        );
        let mut at = 0;
        let mut recorded: Vec<(u64, u64, PendingOp)> = Vec::with_capacity(ops.len());
        for (tag, key, payload) in ops {
            let bytes = || {
                Bytes::slice(&block, at, payload.len()).unwrap_or_else(|| Bytes::copy_of(payload))
            };
            let op = match tag {
                Tag::Put => PendingOp::Put(bytes()),
                Tag::Merge => PendingOp::Merge(bytes()),
                _ => PendingOp::Delete,
            };
            recorded.push((*key, 0, op));
            at += payload.len();
        }
        let appending = durable.then(|| self.log.commit.appending());
        let last_seq = {
            let mut st = self.log.lock();
            let mut scratch = std::mem::take(&mut st.scratch);
            scratch.clear();
            scratch.resize(size, 0);
            let mut at = 0;
            let mut put = |tag: Tag, key: u64, payload: &[u8]| -> Result<()> {
                at += encode_frame(&mut scratch[at..], tag, key, payload)
                    .map_err(|e| Error::format(self.dir.join("log"), e))?;
                Ok(())
            };
            if batch.is_some() {
                put(Tag::BatchBegin, ops.len() as u64, tag_payload)?;
            }
            for (tag, key, payload) in ops {
                put(*tag, *key, payload)?;
            }
            if batch.is_some() {
                put(Tag::BatchCommit, ops.len() as u64, &[])?;
            }
            let first = st.next_seq();
            let appended = st.active_mut().append(&scratch, count, durable);
            st.scratch = scratch;
            appended.map_err(|e| self.poison(e))?;
            for (seq, item) in (first + u64::from(batch.is_some())..).zip(recorded.iter_mut()) {
                item.1 = seq;
            }
            self.pending.record_many(recorded);
            if let Some(tag) = batch {
                self.batch_tag.fetch_max(tag, Ordering::Relaxed);
            }
            // The whole call is recorded: readers may now see any of it.
            self.pending.publish(first + count - 1);
            self.active_log_bytes
                .store(st.active().log_bytes(), Ordering::Relaxed);
            first + count - 1
        };
        drop(appending);
        settle_now_and_then(ops.len());
        if durable {
            self.log
                .commit
                .wait_durable(
                    last_seq,
                    || {
                        let mut st = self.log.lock();
                        let last = st.next_seq().saturating_sub(1);
                        let active = st.active_mut();
                        // The synced-length mark rides on this sync too, in
                        // steps (see `Log::sync_all`); a failure to write it
                        // only leaves it lagging.
                        let _ = active.carry_mark();
                        let token = (active.number, active.epoch, active.end);
                        (Arc::clone(&active.file), last, token)
                    },
                    |(number, epoch, end)| {
                        self.log.lock().slots[number].note_synced(epoch, end);
                    },
                )
                .map_err(|e| self.poison(e))?;
        }
        Ok(())
    }

    /// Wakes the compaction worker when compaction is due, and slows the
    /// writer as pending memory passes its limit. Never runs a compaction
    /// itself, and never waits for an iterator or a bulk writer.
    /// What a write does once logged, unless `wo` defers it.
    fn paced(&self, wo: WriteOptions) -> Result<()> {
        if wo.defer_pacing {
            return Ok(());
        }
        self.after_write()
    }

    /// See [`crate::Silo::pace_writer`].
    pub(crate) fn after_write(&self) -> Result<()> {
        // Inside a read callback or while holding an iterator, this thread
        // must not start or wait for a compaction: it would wait for itself.
        if !self.opts.auto_compact
            || reentry::holds(self.id, Hold::Callback)
            || reentry::holds(self.id, Hold::Iterator)
        {
            return Ok(());
        }
        let input = self.policy_input();
        if policy::decide(&input, &self.opts.thresholds).is_none() {
            return Ok(());
        }
        // The store's compaction worker does the work; this thread only
        // wakes it, and slows down as pending memory passes its limit: by
        // up to 1 ms a write between one and two times the limit (a yield
        // below 50 us, which a sleep cannot time), and past twice the limit
        // it waits for a running compaction to end.
        self.wake.kick();
        let limit = self.opts.pending_limit_bytes.max(1);
        if input.pending_bytes >= limit.saturating_mul(2) {
            self.compacting.wait_idle();
        } else if input.pending_bytes > limit {
            let over = (input.pending_bytes - limit) as f64 / limit as f64;
            let delay = Duration::from_secs_f64(over * 1e-3);
            if delay < Duration::from_micros(50) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(delay);
            }
        }
        Ok(())
    }

    /// See [`crate::Silo::flush`].
    pub(crate) fn flush(&self) -> Result<()> {
        self.check_poisoned()?;
        self.log.sync_all().map_err(|e| self.poison(e))?;
        Ok(())
    }

    // ----- figures -----------------------------------------------------

    /// Keeps a compaction failure for [`Stats::last_compaction_error`].
    pub(crate) fn note_compaction_error(&self, e: &Error) {
        *self
            .last_compaction_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Records that a compaction just ended.
    pub(crate) fn mark_compacted(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_compaction_ms.store(ms + 1, Ordering::Relaxed);
        let log_bytes = self.log.lock().active().log_bytes();
        self.active_log_bytes.store(log_bytes, Ordering::Relaxed);
    }

    /// What the policy looks at, now.
    pub(crate) fn policy_input(&self) -> PolicyInput {
        let log_bytes = self.active_log_bytes.load(Ordering::Relaxed);
        let since_last = match self.last_compaction_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.opened
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        };
        PolicyInput {
            live_bytes: self.space.live_bytes.load(Ordering::Relaxed),
            dead_bytes: self.space.dead_bytes.load(Ordering::Relaxed),
            log_bytes,
            pending_ops: self.pending.ops(),
            pending_bytes: self.pending.bytes(),
            pending_limit: self.opts.pending_limit_bytes,
            since_last,
        }
    }

    /// See [`crate::Silo::needs_compaction`].
    pub(crate) fn needs_compaction(&self) -> Option<CompactionKind> {
        policy::decide(&self.policy_input(), &self.opts.thresholds)
    }

    /// See [`crate::Silo::stats`].
    pub(crate) fn stats(&self) -> Stats {
        let tables = self.tables();
        let (log_bytes, last_seq) = {
            let st = self.log.lock();
            (st.log_bytes(), st.next_seq().saturating_sub(1))
        };
        let disk_bytes = self.disk_bytes().unwrap_or(0);
        Stats {
            index_keys: tables.index.counts().0,
            pending_keys: self.pending.keys(),
            pending_ops: self.pending.ops(),
            pending_bytes: self.pending.bytes(),
            log_bytes,
            live_bytes: self.space.live_bytes.load(Ordering::Relaxed),
            dead_bytes: self.space.dead_bytes.load(Ordering::Relaxed),
            data_end: tables.data.end(),
            disk_bytes,
            torn_tail_bytes: self.counters.torn_tail_bytes.load(Ordering::Relaxed),
            compactions: self.counters.compactions.load(Ordering::Relaxed),
            cold_compactions: self.counters.cold_compactions.load(Ordering::Relaxed),
            merge_fallbacks: self.counters.merge_fallbacks.load(Ordering::Relaxed),
            last_seq,
            log_syncs: self.log.commit.syncs(),
            last_compaction_error: self
                .last_compaction_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Bytes every file of the store takes on disk.
    fn disk_bytes(&self) -> Result<u64> {
        let tables = self.tables();
        let mut total = tables.data.disk_bytes()? + tables.index.disk_bytes()?;
        let st = self.log.lock();
        for slot in &st.slots {
            total += slot.file.block_bytes()?;
        }
        Ok(total + manifest::MANIFEST_DISK_BYTES)
    }

    /// The manifest describing the current files, with exact counts.
    pub(crate) fn current_manifest(&self, folded_seq: u64, clean: bool) -> Manifest {
        let tables = self.tables();
        let (index_live, index_used) = tables.index.counts();
        let previous = *self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        Manifest {
            generation: previous.generation + 1,
            data_id: tables.data.id,
            index_id: tables.index.id,
            folded_seq: folded_seq.max(previous.folded_seq),
            data_end: tables.data.end(),
            index_live,
            index_used,
            live_bytes: self.space.live_bytes.load(Ordering::Relaxed),
            dead_bytes: self.space.dead_bytes.load(Ordering::Relaxed),
            clean,
            batch_tag: previous.batch_tag,
        }
    }

    /// Writes `m` as the manifest.
    pub(crate) fn store_manifest(&self, m: Manifest) -> Result<()> {
        manifest::write(&self.dir, &m)?;
        *self.manifest.lock().unwrap_or_else(|p| p.into_inner()) = m;
        Ok(())
    }

    // ----- close -------------------------------------------------------

    pub(crate) fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) || self.opts.read_only {
            return Ok(());
        }
        self.check_poisoned()?;
        if self.opts.compact_on_close {
            // A refused merge operand leaves its slot to the next open; the
            // log is still flushed and the manifest written below.
            match self.compact_hot() {
                Err(e) if e.is_operand_error() => self.note_compaction_error(&e),
                other => {
                    other?;
                }
            }
        }
        self.flush()?;
        let gate = self.gate.write();
        // The next open then reads only written frames, no zero tails.
        // Cutting them waits for read-only opens in progress in other
        // processes (readers already open never read past their frames);
        // if those take too long, the tails stay for the next open to read.
        if let Ok(_no_opening_reader) = self.lock.exclude_opening_readers() {
            self.log.trim().map_err(|e| self.poison(e))?;
        }
        let m = self.current_manifest(0, true);
        self.store_manifest(m).map_err(|e| self.poison(e))?;
        drop(gate);
        Ok(())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Best effort: close() reports errors, Drop cannot.
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store's compaction flag counts among the process's running
    /// compactions while it is held (other tests' compactions may run too,
    /// so only the held state is certain).
    #[test]
    fn a_held_compaction_flag_is_a_running_compaction() {
        let busy = Busy::default();
        let guard = busy.enter();
        assert!(compaction_running());
        drop(guard);
        busy.wait_idle();
    }

    /// Regression (durability review, item 5): with the data view taken
    /// before the index entry, a compaction that appends the key's record
    /// past the old view (growing and remapping the data file) and points
    /// the index at it in between made the read fail with "the index
    /// points past the end of the data file".
    #[test]
    fn a_stored_lookup_survives_a_compaction_between_its_two_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            auto_compact: false,
            ..Options::default()
        };
        let core = Core::open(dir.path(), opts).expect("open");
        core.put(1, b"small").expect("put");
        core.compact().expect("compact");
        // A value several times the data file's first allocation: the next
        // compaction appends it past every view taken before.
        core.put(2, &vec![7u8; 4 << 20]).expect("put");
        core.put(1, &vec![9u8; 2 << 20]).expect("put");
        let tables = core.tables();
        let before = tables.data.view().len();
        let found = core
            .with_stored(
                &tables,
                1,
                || {
                    core.compact().expect("compact in between");
                },
                |r| r.map(|(_, v)| v.to_vec()),
            )
            .expect("no false corruption");
        assert!(tables.data.view().len() > before, "the data file grew");
        // The entry read first is the old record, still in place.
        assert_eq!(found.as_deref(), Some(&b"small"[..]));
    }
}

/// Operations a thread writes between two [`silo_io::hint::settle_small_frees`].
const SETTLE_EVERY_OPS: u32 = 4096;

thread_local! {
    /// Operations this thread wrote since it last settled small frees.
    static OPS_SINCE_SETTLE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts `ops` written by this thread, and every [`SETTLE_EVERY_OPS`] has
/// the allocator merge the small blocks freed meanwhile (overwritten
/// values, and those a compaction forgot). Left to gather, a million of
/// them were merged in one go under the allocator's lock, and a put waited
/// 300 ms for it (`benches/benches/compaction.rs`, put latency).
fn settle_now_and_then(ops: usize) {
    OPS_SINCE_SETTLE.with(|n| {
        let total = n
            .get()
            .saturating_add(u32::try_from(ops).unwrap_or(u32::MAX));
        if total >= SETTLE_EVERY_OPS {
            n.set(0);
            silo_io::hint::settle_small_frees();
        } else {
            n.set(total);
        }
    });
}

//! [`Silo`]: the handle to one store, and the owner of its compaction
//! worker. Every call goes to the shared store (`store.rs` and the modules
//! that extend it); the handle adds the worker's life cycle.

use std::path::Path;
use std::sync::Arc;

use crate::checkpoint::CheckpointCut;
use crate::compaction::CompactionReport;
use crate::compaction::policy::CompactionKind;
use crate::compaction::staged::StagedCompaction;
use crate::compactor::Worker;
use crate::error::Result;
use crate::iter::Iter;
use crate::options::{Options, WriteOptions};
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use crate::store::Core;
use crate::verify::VerifyReport;
use crate::{BulkWriter, MergeWriter, WriteBatch};

/// One store in one directory. `Send + Sync`: share it with `&Silo` or an `Arc`.
///
/// With `Options::auto_compact` (the default) the store owns a background
/// thread that compacts when the policy says so; writes never compact on
/// their own thread. Dropping or closing the handle stops it.
///
/// ```
/// use silo_core::{Options, Silo};
/// let dir = tempfile::tempdir().unwrap();
/// let silo = Silo::open(dir.path(), Options::default()).unwrap();
/// silo.put(0, b"zero").unwrap();
/// silo.put(u64::MAX, b"max").unwrap();
/// assert_eq!(silo.get(0).unwrap().as_deref(), Some(&b"zero"[..]));
/// silo.delete(0).unwrap();
/// assert_eq!(silo.get(0).unwrap(), None);
/// silo.compact().unwrap();
/// assert_eq!(silo.get(u64::MAX).unwrap().as_deref(), Some(&b"max"[..]));
/// silo.close().unwrap();
/// ```
pub struct Silo {
    core: Arc<Core>,
    worker: Option<Worker>,
}

impl std::fmt::Debug for Silo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Silo")
            .field("dir", &self.core.dir())
            .finish_non_exhaustive()
    }
}

impl Silo {
    /// Opens the store in `dir`, creating the directory and an empty store
    /// if missing, and recovering from the logs otherwise. A second
    /// read-write open of the same directory, from this process or another,
    /// gets `Error::Io(IoError::Locked)`; read-only opens
    /// (`Options::read_only`) may run in other processes beside it. With
    /// `Options::auto_compact`, starts the store's compaction worker.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Silo> {
        let auto = opts.auto_compact && !opts.read_only;
        let core = Arc::new(Core::open(dir, opts)?);
        let worker = if auto {
            Some(Worker::start(Arc::clone(&core))?)
        } else {
            None
        };
        Ok(Silo { core, worker })
    }

    /// Stops the compaction worker (after its current compaction), flushes,
    /// folds the log into the data file (with `Options::compact_on_close`),
    /// records exact counts, and closes.
    pub fn close(mut self) -> Result<()> {
        self.stop_worker();
        self.core.shutdown()
    }

    /// Asks the compaction worker to look at the policy now, and returns
    /// once it has (running the compaction it called for, if any). Returns
    /// at once without a worker (`Options::auto_compact = false`). Refused
    /// with [`crate::Error::WouldDeadlock`] inside a read callback or while
    /// this thread holds an iterator or snapshot: the worker waits for those.
    pub fn wait_background(&self) -> Result<()> {
        crate::reentry::refuse_held(self.core.id, "wait_background")?;
        if self.worker.is_some() {
            self.core.wake.kick_and_wait();
        }
        Ok(())
    }

    fn stop_worker(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.stop();
        }
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        self.core.dir()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        self.core.options()
    }

    /// The value of `key`, copied out; `None` if absent.
    pub fn get(&self, key: u64) -> Result<Option<Vec<u8>>> {
        self.core.get(key)
    }

    /// Calls `f` with the value of `key` (`None` if absent) without copying
    /// it when it is stored whole.
    ///
    /// `f` runs inside a grace period that compaction waits for, so calls
    /// from inside it that would wait for compaction (`iter`, `compact`,
    /// `compact_cold`, `checkpoint`, `bulk_writer`, `merge_writer`) return
    /// [`crate::Error::WouldDeadlock`]; reads and writes work, and a write made
    /// there never starts an automatic compaction.
    pub fn get_with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        self.core.get_with(key, f)
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: u64, value: &[u8]) -> Result<()> {
        self.core.refuse_read_only("put")?;
        self.core.put(key, value)
    }

    /// [`Silo::put`] with options for this call (its durability).
    pub fn put_with(&self, key: u64, value: &[u8], wo: WriteOptions) -> Result<()> {
        self.core.refuse_read_only("put")?;
        self.core.put_with(key, value, wo)
    }

    /// Removes `key` (a no-op if absent).
    pub fn delete(&self, key: u64) -> Result<()> {
        self.core.refuse_read_only("delete")?;
        self.core.delete(key)
    }

    /// [`Silo::delete`] with options for this call (its durability).
    pub fn delete_with(&self, key: u64, wo: WriteOptions) -> Result<()> {
        self.core.refuse_read_only("delete")?;
        self.core.delete_with(key, wo)
    }

    /// Adds a merge operand for `key`; needs `Options::merge_operator`.
    pub fn merge(&self, key: u64, operand: &[u8]) -> Result<()> {
        self.core.refuse_read_only("merge")?;
        self.core.merge(key, operand)
    }

    /// [`Silo::merge`] with options for this call (its durability).
    pub fn merge_with(&self, key: u64, operand: &[u8], wo: WriteOptions) -> Result<()> {
        self.core.refuse_read_only("merge")?;
        self.core.merge_with(key, operand, wo)
    }

    /// Applies `batch` atomically: after a crash, all of it or none.
    pub fn write(&self, batch: &WriteBatch) -> Result<()> {
        self.core.refuse_read_only("write")?;
        self.core.write(batch)
    }

    /// [`Silo::write`] with options for this call: with
    /// `Durability::Sync` it returns once the batch (and everything
    /// written before it) is durable, through group commit.
    pub fn write_with(&self, batch: &WriteBatch, wo: WriteOptions) -> Result<()> {
        self.core.refuse_read_only("write")?;
        self.core.write_with(batch, wo)
    }

    /// The highest tag of the tagged batches ([`WriteBatch::set_tag`]) the
    /// store holds, 0 if none. After a crash it is the highest tag among
    /// the batches that survived: a tagged batch and its tag are kept or
    /// lost together.
    pub fn batch_tag(&self) -> u64 {
        self.core
            .batch_tag
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What a write does after it is logged, for writes made with
    /// [`WriteOptions::defer_pacing`]: when the policy says compaction is
    /// due, wakes the compaction worker, and slows down (up to 1 ms) as
    /// pending memory passes its limit, or past twice the limit waits for a
    /// running compaction. Nothing when automatic compaction is off.
    pub fn pace_writer(&self) -> Result<()> {
        if self.core.options().read_only {
            return Ok(());
        }
        self.core.after_write()
    }

    /// Whether an earlier write or sync failed, so that the store refuses
    /// writes until it is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.core.is_poisoned()
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        if self.core.options().read_only {
            return Ok(());
        }
        self.core.flush()
    }

    /// What the compaction policy says now.
    pub fn needs_compaction(&self) -> Option<CompactionKind> {
        if self.core.options().read_only {
            return None;
        }
        self.core.needs_compaction()
    }

    /// Passes `advice` to the kernel for the files a compaction reads (the
    /// data file up to its end, the index): `FileAdvice::WillNeed` starts
    /// reading them into the page cache (the sharded engine prefetches the
    /// shards it is about to compact), `FileAdvice::DontNeed` drops their
    /// cached pages. Returns the bytes advised. Nothing else changes.
    pub fn advise(&self, advice: silo_io::FileAdvice) -> Result<u64> {
        let tables = self.core.tables();
        let end = tables.data.end();
        tables.data.file().advise(0, end, advice)?;
        let index_len = tables.index.file().len()?;
        tables.index.file().advise(0, index_len, advice)?;
        Ok(end + index_len)
    }

    /// The store's figures.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Compacts now, whatever the policy says: folds the log into the data
    /// file and index, then rewrites the data file if its dead space is
    /// over the threshold.
    ///
    /// When the log holds 8 MiB or more not yet synced (a load just
    /// written), the log is planned while the sync that must precede the
    /// fold writes it, on a thread of its own; if a writer appends
    /// meanwhile, that plan is dropped and the log planned again once
    /// frozen (`CompactionReport::planned_while_syncing` says which). The
    /// store's worker never plans early: it runs beside writers.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.core.refuse_read_only("compact")?;
        self.core.compact()
    }

    /// [`Silo::compact`] in stages, so that a caller compacting many stores
    /// can compute their plans in parallel and apply them one by one:
    /// freezes the log slot now (`None`: nothing to fold and no cold
    /// rewrite asked for or due; with one, the stages are staged with an
    /// empty plan and the rewrite); then
    /// [`StagedCompaction::plan`] and [`StagedCompaction::apply`]. With
    /// `cold`, the apply also rewrites the data file (as
    /// [`Silo::compact_cold`]). A thread holding an iterator or snapshot of
    /// this store gets [`crate::Error::WouldDeadlock`].
    pub fn stage_compaction(&self, cold: bool) -> Result<Option<StagedCompaction<'_>>> {
        self.core.refuse_read_only("stage_compaction")?;
        self.core.stage_compaction(cold)
    }

    /// [`Silo::stage_compaction`] if the compaction gate can be taken at
    /// once; `None` when there is nothing to fold or the gate is held (a
    /// compaction, bulk writer, iterator or snapshot).
    pub fn try_stage_compaction(&self, cold: bool) -> Result<Option<StagedCompaction<'_>>> {
        self.core.refuse_read_only("try_stage_compaction")?;
        self.core.try_stage_compaction(cold)
    }

    /// Rewrites the data file and index with only live records, whatever the dead space.
    pub fn compact_cold(&self) -> Result<CompactionReport> {
        self.core.refuse_read_only("compact_cold")?;
        self.core.compact_cold()
    }

    /// Writes a consistent copy of the store into `dest` (which must not
    /// exist or be empty). Writes continue meanwhile; compaction waits.
    /// The copy holds every write acknowledged before the call.
    pub fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<()> {
        self.core.refuse_read_only("checkpoint")?;
        self.core.checkpoint(dest)
    }

    /// The first half of [`Silo::checkpoint`]: fixes the copy's point in
    /// time now (every write acknowledged before this returns, nothing
    /// after); [`CheckpointCut::write_to`] then writes it while writes go
    /// on. Compaction waits while the cut lives. A thread holding an
    /// iterator or snapshot of this store gets [`crate::Error::WouldDeadlock`].
    pub fn checkpoint_cut(&self) -> Result<CheckpointCut<'_>> {
        self.core.refuse_read_only("checkpoint_cut")?;
        self.core.checkpoint_cut()
    }

    /// [`Silo::checkpoint_cut`] if it can be taken at once; `None` while a
    /// compaction, a bulk writer, an iterator or a snapshot of the store
    /// holds its compaction gate (the sharded engine never waits for one
    /// shard while holding others).
    pub fn try_checkpoint_cut(&self) -> Result<Option<CheckpointCut<'_>>> {
        self.core.refuse_read_only("try_checkpoint_cut")?;
        self.core.try_checkpoint_cut()
    }

    /// A bulk writer for this store, which must be empty (no keys, no
    /// pending operations).
    pub fn bulk_writer(&self) -> Result<BulkWriter<'_>> {
        self.core.refuse_read_only("bulk_writer")?;
        self.core.bulk_writer()
    }

    /// A read-modify-write writer; compaction waits until it is finished.
    pub fn merge_writer(&self) -> Result<MergeWriter<'_>> {
        self.core.refuse_read_only("merge_writer")?;
        self.core.merge_writer()
    }

    /// Every live `(key, value)`, in no particular order, as of this call.
    /// Compaction waits while the iterator lives; reads and writes do not.
    ///
    /// The iterator holds the compaction gate shared (recursively: a thread
    /// may hold several iterators even while another thread waits to
    /// compact). A thread holding one that calls `compact`, `compact_cold`,
    /// `checkpoint`, `bulk_writer` or `merge_writer` of the same store gets
    /// [`crate::Error::WouldDeadlock`] (those wait for every iterator to end).
    /// Called from inside a `get_with` or `MergeWriter::update` callback,
    /// the iterator yields that error once and ends.
    pub fn iter(&self) -> Iter<'_> {
        self.core.iter()
    }

    /// A read view of the store as of now: every write acknowledged before
    /// the call, whole batches only, and nothing written after it.
    ///
    /// What it costs: a copy of the pending view (the operations not yet
    /// compacted: at most `Options::pending_limit_bytes` and a little
    /// bookkeeping per operation) made at once, and while it lives,
    /// compaction waits, exactly as for an iterator: writes go on into the
    /// log and the pending view, which grow until the snapshot is dropped.
    /// Keep snapshots short-lived. A thread holding one gets
    /// [`crate::Error::WouldDeadlock`] from calls that wait for compaction
    /// (see [`Silo::iter`]), and one cannot be taken from inside a
    /// `get_with` or `MergeWriter::update` callback.
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        self.core.snapshot()
    }

    /// [`Silo::snapshot`] if it can be taken at once; `None` while a
    /// compaction, bulk writer or checkpoint holds the compaction gate.
    pub fn try_snapshot(&self) -> Result<Option<Snapshot<'_>>> {
        self.core.try_snapshot()
    }

    /// Checks the index against the data file: every record's and
    /// tombstone's checksum, every index slot, that each live key's newest
    /// record is what the index finds, that the index holds nothing else,
    /// and that every slot is reachable by a lookup of its key. Read-only;
    /// compaction waits while it runs (as for an iterator), reads and
    /// writes do not. Problems are listed in the report, not returned as
    /// errors; repair a damaged index with [`Silo::rebuild_index`].
    pub fn verify(&self) -> Result<VerifyReport> {
        self.core.verify()
    }

    /// Writes a new index from the data file (each key's newest live record;
    /// for bulk-loaded keys written more than once, the last in the file),
    /// publishes it through the manifest and deletes the old one. Returns
    /// the number of live keys. Space accounting is recounted. Compaction
    /// waits while it runs.
    pub fn rebuild_index(&self) -> Result<u64> {
        self.core.refuse_read_only("rebuild_index")?;
        self.core.rebuild_index()
    }
}

impl Drop for Silo {
    fn drop(&mut self) {
        // The worker first: it holds the store, whose own drop then closes it.
        self.stop_worker();
    }
}

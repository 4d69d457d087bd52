//! [`Engine`]: many silo-core stores (shards) behind one handle.
//!
//! Keys route to shards by [`crate::shard_of`]. A write to one shard is
//! that shard's write, with no lock shared with other shards (each shard
//! has its own writer gate, taken shared). A batch that spans shards goes
//! through the batch log (`batch_log.rs`): logged whole and synced, then
//! applied to its shards as tagged parts while readers are held back from
//! returning anything of it until every part is in (`applying`, below).
//! Snapshots and checkpoints fix one point in time across shards by taking
//! every writer gate at once, for as long as it takes to cut each shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use silo_core::{BatchOp, Durability, Silo, WriteBatch, WriteOptions};
use silo_io::durable::{create_dir_durable, sync_dir};
use silo_io::lock::DirLock;

use crate::batch_log::{BATCH_LOG_NAME, BatchLog, LoggedBatch};
use crate::error::{EngineError, Result};
use crate::manifest::{self, EngineManifest};
use crate::options::EngineOptions;
use crate::route::{shard_of, valid_shard_count};
use crate::snapshot::EngineSnapshot;
use crate::stats::EngineStats;
use crate::tuning::TuningProfile;

/// The batch log is emptied (after every shard syncs) once it holds this much.
const BATCH_LOG_RESET_BYTES: u64 = 4 << 20;

/// A shard: its store, its writer gate, and the delay the background
/// scheduler imposes on its writers in an emergency.
pub(crate) struct Shard {
    pub(crate) store: Silo,
    gate: Gate,
    /// Microseconds each write to the shard waits first (0: none).
    pub(crate) throttle_us: AtomicU32,
}

/// A shard's writer gate, alone on its cache lines so that writers of
/// neighbouring shards never contend on one.
#[repr(align(128))]
#[derive(Default)]
struct Gate(RwLock<()>);

/// The cross-shard batch state, behind one mutex: cross-shard batches are
/// numbered and applied one at a time.
struct Batches {
    log: BatchLog,
    /// The number the next cross-shard batch gets.
    next: u64,
    /// Why the last attempt to empty the log failed, if it did.
    last_reset_error: Option<String>,
}

/// Many silo-core stores behind one handle; see the crate documentation.
pub struct Engine {
    dir: PathBuf,
    /// Shared with the background scheduler's thread.
    shards: Arc<Vec<Shard>>,
    batches: Mutex<Batches>,
    /// Odd while a cross-shard batch is being applied to its shards.
    applying: AtomicU64,
    poisoned: Mutex<Option<String>>,
    is_poisoned: AtomicBool,
    /// Set, before readers are let go, when a cross-shard batch failed
    /// after some of its parts went in: reads are refused from then on.
    partial_batch: AtomicBool,
    /// The batch log's length and last reset error when `stats` last saw
    /// them.
    batch_log_seen: Mutex<(u64, Option<String>)>,
    pub(crate) counters: Counters,
    opts: EngineOptions,
    /// The engine directory's lock: the writer's, or a reader's. Its
    /// opening readers' byte keeps cross-shard batches (and the batch
    /// log's cuts) out of a read-only open's way; see [`Engine::open`].
    lock: DirLock,
}

/// Engine-wide counters reported by [`Engine::stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) cross_shard_batches: AtomicU64,
    pub(crate) reads_held_back: AtomicU64,
    pub(crate) batches_replayed: AtomicU64,
    /// Writes the scheduler's emergency delay slowed, and the microseconds
    /// they waited.
    pub(crate) writes_delayed: AtomicU64,
    pub(crate) write_delay_us: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.dir)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// The directory of shard `i`.
pub(crate) fn shard_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("shard-{i:04}"))
}

/// The fault seam's hold point between the first and the second part of a
/// cross-shard batch (tests hold a writer there to read a half-applied
/// batch; nothing without silo-io's `fault-injection` feature).
pub const HOLD_BETWEEN_PARTS: &str = "engine: between the parts of a cross-shard batch";

impl Engine {
    /// Opens the engine in `dir`, creating it if the directory holds none.
    ///
    /// A new engine gets `opts.shards` shards (default: from the machine,
    /// see [`TuningProfile`]); an existing one keeps its count, and asking
    /// for another is [`EngineError::ShardCount`]. Opening replays every
    /// shard and completes cross-shard batches a crash interrupted.
    pub fn open(dir: impl AsRef<Path>, opts: EngineOptions) -> Result<Engine> {
        let dir = dir.as_ref().to_path_buf();
        if let Some(n) = opts.shards
            && !valid_shard_count(n)
        {
            return Err(EngineError::InvalidOptions {
                name: "shards",
                reason: format!("{n} is not a power of two from 1 to 1024"),
            });
        }
        if opts.compaction_threads == Some(0) {
            return Err(EngineError::InvalidOptions {
                name: "compaction_threads",
                reason: "at least one thread".to_owned(),
            });
        }
        let read_only = opts.store.read_only;
        let lock = if read_only {
            DirLock::acquire_shared(&dir)?
        } else {
            create_dir_durable(&dir)?;
            DirLock::acquire(&dir)?
        };
        let shard_count = match manifest::read(&dir)? {
            Some(m) => match opts.shards {
                Some(n) if n != m.shards => {
                    return Err(EngineError::ShardCount {
                        dir,
                        found: m.shards,
                        requested: n,
                    });
                }
                _ => m.shards,
            },
            None if read_only => {
                return Err(EngineError::Store(silo_core::Error::NeedsRecovery {
                    dir,
                    reason: "it holds no engine (no ENGINE manifest) to open read-only".to_owned(),
                }));
            }
            None => {
                let n = opts
                    .shards
                    .unwrap_or_else(|| TuningProfile::detect().tuning().shards);
                create(&dir, n, &opts)?;
                n
            }
        };
        let shards = open_shards(&dir, shard_count, &opts)?;
        // A writer cuts the batch log's torn tail (and below, completes what
        // it holds) while no read-only open is reading it.
        let no_opening_reader = if read_only {
            None
        } else {
            Some(lock.exclude_opening_readers()?)
        };
        let (log, logged) = BatchLog::open(&dir, silo_format::DEFAULT_MAX_PAYLOAD, read_only)?;
        drop(no_opening_reader);
        let engine = Engine {
            batches: Mutex::new(Batches {
                next: 0,
                log,
                last_reset_error: None,
            }),
            dir,
            shards: Arc::new(shards),
            applying: AtomicU64::new(0),
            poisoned: Mutex::new(None),
            is_poisoned: AtomicBool::new(false),
            partial_batch: AtomicBool::new(false),
            batch_log_seen: Mutex::new((0, None)),
            counters: Counters::default(),
            opts,
            lock,
        };
        engine.complete_logged(logged)?;
        // A reader has everything: writers may apply cross-shard batches
        // again.
        engine.lock.opened()?;
        Ok(engine)
    }

    /// Applies the parts of logged batches that shards lack (a crash
    /// interrupted them), then syncs every shard and empties the log.
    fn complete_logged(&self, logged: Vec<LoggedBatch>) -> Result<()> {
        let mut st = self.batches.lock();
        let _no_opening_reader = if self.opts.store.read_only {
            None
        } else {
            Some(self.lock.exclude_opening_readers()?)
        };
        let mut next = st.log.base();
        for shard in self.shards.iter() {
            next = next.max(shard.store.batch_tag().saturating_add(1));
        }
        for LoggedBatch { number, batch } in &logged {
            for (i, mut part) in self.split(batch) {
                let store = &self.shards[i].store;
                if store.batch_tag() < *number && self.opts.store.read_only {
                    return Err(EngineError::Store(silo_core::Error::NeedsRecovery {
                        dir: self.dir.clone(),
                        reason: format!(
                            "cross-shard batch {number} was cut off before shard {i} had its part"
                        ),
                    }));
                }
                if store.batch_tag() < *number {
                    part.set_tag(*number);
                    store
                        .write_with(&part, WriteOptions::durability(Durability::Buffered))
                        .map_err(|e| match e {
                            // What the batch held was accepted when it was
                            // logged; the options changed since.
                            silo_core::Error::NoMergeOperator { .. }
                            | silo_core::Error::ValueTooLarge { .. } => {
                                EngineError::InvalidOptions {
                                    name: "store",
                                    reason: format!(
                                        "cross-shard batch {number}, logged before the engine closed, cannot be applied to shard {i}: {e}; open with the options it was written with (merge operator, max_value_len)"
                                    ),
                                }
                            }
                            e => EngineError::Shard {
                                shard: i,
                                source: e,
                            },
                        })?;
                    self.counters
                        .batches_replayed
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            next = next.max(number + 1);
        }
        st.next = next;
        if (!logged.is_empty() || st.log.base() != next) && !self.opts.store.read_only {
            self.flush_shards()?;
            st.log.reset(next)?;
        }
        Ok(())
    }

    /// The engine's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The number of shards (fixed at creation).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The options the engine was opened with.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Whether `dir` holds an engine (its manifest is there). Reads one
    /// directory entry; opens nothing.
    pub fn exists_in(dir: impl AsRef<Path>) -> bool {
        manifest::path(dir.as_ref()).is_file()
    }

    /// The shard holding `key`.
    pub(crate) fn route(&self, key: u64) -> usize {
        shard_of(key, self.shards.len())
    }

    pub(crate) fn shards(&self) -> &Arc<Vec<Shard>> {
        &self.shards
    }

    // ----- reads ---------------------------------------------------------

    /// The value of `key`, copied out; `None` if absent.
    pub fn get(&self, key: u64) -> Result<Option<Vec<u8>>> {
        self.get_with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// Calls `f` with the value of `key` (`None` if absent), without
    /// copying it when the shard can lend it.
    ///
    /// A read never returns a value of a cross-shard batch before the whole
    /// batch is visible: if it saw one while the batch was being applied,
    /// it waits (microseconds: the parts are in-memory appends, with no
    /// pacing) until the last part is in. `f` itself runs before that wait:
    /// what it does with the bytes is visible to others before the call
    /// returns. `f` must not write to the engine or take a snapshot or
    /// checkpoint of it.
    pub fn get_with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        let i = self.route(key);
        let out = self.shards[i]
            .store
            .get_with(key, f)
            .map_err(EngineError::shard(i))?;
        self.settle();
        self.check_whole()?;
        Ok(out)
    }

    /// Refuses reads once a cross-shard batch went into only some of its
    /// shards ([`EngineError::PartialBatch`]).
    fn check_whole(&self) -> Result<()> {
        if self.partial_batch.load(Ordering::Acquire) {
            return Err(EngineError::PartialBatch {
                cause: self.poisoned.lock().clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Returns once no cross-shard batch that was being applied when this
    /// was called is still being applied.
    fn settle(&self) {
        let seen = self.applying.load(Ordering::SeqCst);
        if seen & 1 == 0 {
            return;
        }
        self.counters
            .reads_held_back
            .fetch_add(1, Ordering::Relaxed);
        let mut spins = 0u32;
        while self.applying.load(Ordering::Acquire) == seen {
            backoff(&mut spins);
        }
    }

    /// Every live `(key, value)`, shard by shard, each shard as of the
    /// moment the iteration reaches it. For one point in time across every
    /// shard, iterate a [`Engine::snapshot`].
    ///
    /// Once a cross-shard batch has gone into only some of its shards, the
    /// next shard reached yields [`EngineError::PartialBatch`] and ends the
    /// iteration.
    pub fn iter(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + '_ {
        let mut refused = false;
        self.shards
            .iter()
            .enumerate()
            .map_while(move |(i, shard)| {
                if refused {
                    return None;
                }
                Some(match self.check_whole() {
                    Ok(()) => Box::new(
                        shard
                            .store
                            .iter()
                            .map(move |r| r.map_err(EngineError::shard(i))),
                    )
                        as Box<dyn Iterator<Item = Result<(u64, Vec<u8>)>> + '_>,
                    Err(e) => {
                        refused = true;
                        Box::new(std::iter::once(Err(e)))
                    }
                })
            })
            .flatten()
    }

    /// A read view of every shard at one point in time: every write
    /// acknowledged before the call, whole batches (cross-shard ones
    /// included), nothing written after it.
    ///
    /// Writers pause while each shard's view is taken (a copy of its
    /// pending operations; see [`silo_core::Silo::snapshot`] for what a
    /// live snapshot holds back: compaction of every shard waits while it
    /// lives), and only while every shard's can be taken at once: a shard
    /// being compacted is waited for with writers running. Readers never
    /// pause.
    pub fn snapshot(&self) -> Result<EngineSnapshot<'_>> {
        let (views, _) = self.across_shards(Silo::try_snapshot, |s| s.snapshot().map(drop))?;
        // A batch part-applied before the views were taken is in them (its
        // flag was set before its writer let the shards go).
        self.check_whole()?;
        Ok(EngineSnapshot::new(views))
    }

    /// Takes one `T` from every shard at one point in time: with writers
    /// paused, `try_take` of each shard in turn. When a shard cannot give
    /// one at once (a compaction, bulk writer, iterator or snapshot holds
    /// its gate), everything is let go, `wait` waits for that shard alone,
    /// and all is tried again: no shard is ever waited for while others
    /// are held, so no thread holding one of them can deadlock this.
    /// Returns the `T`s and the next batch number at that point.
    fn across_shards<'s, T>(
        &'s self,
        mut try_take: impl FnMut(&'s Silo) -> silo_core::Result<Option<T>>,
        mut wait: impl FnMut(&'s Silo) -> silo_core::Result<()>,
    ) -> Result<(Vec<T>, u64)> {
        loop {
            let pause = self.pause_writers();
            let mut taken = Vec::with_capacity(self.shards.len());
            let mut busy = None;
            for (i, shard) in self.shards.iter().enumerate() {
                match try_take(&shard.store).map_err(EngineError::shard(i))? {
                    Some(t) => taken.push(t),
                    None => {
                        busy = Some(i);
                        break;
                    }
                }
            }
            let Some(i) = busy else {
                return Ok((taken, pause.batches.next));
            };
            drop(taken);
            drop(pause);
            wait(&self.shards[i].store).map_err(EngineError::shard(i))?;
        }
    }

    /// Holds every writer back: cross-shard batches (the batch mutex) and
    /// each shard's writers (its gate, exclusively, in shard order).
    pub(crate) fn pause_writers(&self) -> Paused<'_> {
        let batches = self.batches.lock();
        let gates = self.shards.iter().map(|s| s.gate.0.write()).collect();
        Paused {
            batches,
            _gates: gates,
        }
    }

    // ----- writes --------------------------------------------------------

    pub(crate) fn check_poisoned(&self) -> Result<()> {
        if self.is_poisoned.load(Ordering::Acquire) {
            return Err(EngineError::Poisoned {
                cause: self.poisoned.lock().clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    fn poison(&self, cause: String) {
        let mut p = self.poisoned.lock();
        if p.is_none() {
            *p = Some(cause);
        }
        self.is_poisoned.store(true, Ordering::Release);
    }

    /// Enters shard `i` as a writer, after the scheduler's emergency delay
    /// if it set one.
    pub(crate) fn writer(&self, i: usize) -> RwLockReadGuard<'_, ()> {
        let delay = self.shards[i].throttle_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(u64::from(delay)));
            self.counters.writes_delayed.fetch_add(1, Ordering::Relaxed);
            self.counters
                .write_delay_us
                .fetch_add(u64::from(delay), Ordering::Relaxed);
        }
        self.shards[i].gate.0.read()
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: u64, value: &[u8]) -> Result<()> {
        self.put_with(key, value, WriteOptions::default())
    }

    /// [`Engine::put`] with options for this call.
    pub fn put_with(&self, key: u64, value: &[u8], wo: WriteOptions) -> Result<()> {
        self.check_poisoned()?;
        let i = self.route(key);
        let _w = self.writer(i);
        self.shards[i]
            .store
            .put_with(key, value, wo)
            .map_err(EngineError::shard(i))
    }

    /// Removes `key`.
    pub fn delete(&self, key: u64) -> Result<()> {
        self.delete_with(key, WriteOptions::default())
    }

    /// [`Engine::delete`] with options for this call.
    pub fn delete_with(&self, key: u64, wo: WriteOptions) -> Result<()> {
        self.check_poisoned()?;
        let i = self.route(key);
        let _w = self.writer(i);
        self.shards[i]
            .store
            .delete_with(key, wo)
            .map_err(EngineError::shard(i))
    }

    /// Adds a merge operand for `key` (the stores' merge operator folds it).
    pub fn merge(&self, key: u64, operand: &[u8]) -> Result<()> {
        self.merge_with(key, operand, WriteOptions::default())
    }

    /// [`Engine::merge`] with options for this call.
    pub fn merge_with(&self, key: u64, operand: &[u8], wo: WriteOptions) -> Result<()> {
        self.check_poisoned()?;
        let i = self.route(key);
        let _w = self.writer(i);
        self.shards[i]
            .store
            .merge_with(key, operand, wo)
            .map_err(EngineError::shard(i))
    }

    /// Applies `batch` atomically: after a crash all of it is there or none
    /// of it, and no reader sees part of it.
    pub fn write(&self, batch: &WriteBatch) -> Result<()> {
        self.write_with(batch, WriteOptions::default())
    }

    /// [`Engine::write`] with options for this call.
    ///
    /// A batch within one shard is that shard's batch. A batch spanning
    /// shards is first logged whole in the engine's batch log and synced,
    /// whatever the durability (one fdatasync: a shard may sync its own log
    /// at any time, and must never hold a part the batch log could lose);
    /// it is therefore durable when this returns.
    pub fn write_with(&self, batch: &WriteBatch, wo: WriteOptions) -> Result<()> {
        if self.opts.store.read_only {
            return Err(EngineError::Store(silo_core::Error::ReadOnly {
                call: "write",
            }));
        }
        if batch.tag() != 0 {
            return Err(EngineError::TaggedBatch);
        }
        self.check_poisoned()?;
        let mut shards_of = batch.ops().map(|op| self.route(op.key()));
        let Some(first) = shards_of.next() else {
            return Ok(());
        };
        if shards_of.all(|s| s == first) {
            let _w = self.writer(first);
            return self.shards[first]
                .store
                .write_with(batch, wo)
                .map_err(EngineError::shard(first));
        }
        self.validate(batch)?;
        let mut parts = self.split(batch);
        // A shard that refuses writes would refuse its part after the batch
        // is logged: refuse the batch now, whole.
        for (i, _) in &parts {
            if self.shards[*i].store.is_poisoned() {
                return Err(EngineError::Shard {
                    shard: *i,
                    source: silo_core::Error::Poisoned {
                        cause: "an earlier write or sync of this shard failed; reopen the engine"
                            .to_owned(),
                    },
                });
            }
        }
        let ops: Vec<BatchOp<'_>> = batch.ops().collect();
        let mut st = self.batches.lock();
        self.check_poisoned()?;
        // No read-only open (in another process) reads the shards while
        // the batch is logged and applied: each sees it whole or not at
        // all. Those opens are short; writes to one shard never wait.
        let no_opening_reader = self.lock.exclude_opening_readers()?;
        let number = st.next;
        if let Err(e) = st.log.append(number, &ops) {
            // The frame may be on disk even so (a failed sync says nothing
            // of what was written): the next open may complete the batch,
            // so no other batch may take its number or follow it.
            self.poison(format!("appending cross-shard batch {number}: {e}"));
            return Err(e);
        }
        st.next = number + 1;
        let failure = {
            let _writers: Vec<_> = parts.iter().map(|(i, _)| self.writer(*i)).collect();
            // Readers that see any part wait until this drops; it drops
            // even if a part's write panics.
            let _applying = Applying::begin(&self.applying);
            let mut failure = None;
            for (n, (i, part)) in parts.iter_mut().enumerate() {
                part.set_tag(number);
                // No pacing under the batch mutex with readers waiting: the
                // shards are paced below, once the batch is whole.
                let wo = WriteOptions::durability(Durability::Buffered).deferring_pacing();
                if let Err(e) = self.shards[*i].store.write_with(part, wo) {
                    failure.get_or_insert(EngineError::Shard {
                        shard: *i,
                        source: e,
                    });
                }
                if n == 0 {
                    silo_io::fault::hold_point(&self.dir, HOLD_BETWEEN_PARTS);
                }
            }
            if failure.is_some() {
                // Before readers held back by `_applying` go on: none of
                // them may return what the parts that went in wrote.
                self.partial_batch.store(true, Ordering::Release);
            }
            failure
        };
        if let Some(e) = failure {
            self.poison(format!("cross-shard batch {number}: {e}"));
            return Err(e);
        }
        self.counters
            .cross_shard_batches
            .fetch_add(1, Ordering::Relaxed);
        if st.log.body_len() >= BATCH_LOG_RESET_BYTES {
            let next = st.next;
            if let Err(e) = self.flush_shards().and_then(|()| st.log.reset(next)) {
                // The batch is logged and applied. The log cannot be emptied
                // while a shard cannot sync: writes stop here rather than
                // let it grow without bound.
                st.last_reset_error = Some(e.to_string());
                self.poison(format!("emptying the batch log: {e}"));
            }
        }
        drop(no_opening_reader);
        drop(st);
        for (i, _) in &parts {
            self.shards[*i]
                .store
                .pace_writer()
                .map_err(EngineError::shard(*i))?;
        }
        Ok(())
    }

    /// Refuses what a shard would refuse, before the batch is logged: a
    /// logged batch must apply.
    fn validate(&self, batch: &WriteBatch) -> Result<()> {
        let max = self.opts.store.max_value_len;
        for op in batch.ops() {
            let len = match op {
                BatchOp::Put { value, .. } => value.len(),
                BatchOp::Merge { key, operand } => {
                    if self.opts.store.merge_operator.is_none() {
                        return Err(EngineError::Store(silo_core::Error::NoMergeOperator {
                            key,
                        }));
                    }
                    operand.len()
                }
                BatchOp::Delete { .. } => 0,
            };
            if len > max as usize {
                return Err(EngineError::Store(silo_core::Error::ValueTooLarge {
                    len,
                    max,
                }));
            }
        }
        Ok(())
    }

    /// `batch` split into one batch per shard, in shard order, each keeping
    /// its operations' order.
    fn split(&self, batch: &WriteBatch) -> Vec<(usize, WriteBatch)> {
        let mut parts: BTreeMap<usize, WriteBatch> = BTreeMap::new();
        for op in batch.ops() {
            parts.entry(self.route(op.key())).or_default().push(op);
        }
        parts.into_iter().collect()
    }

    fn flush_shards(&self) -> Result<()> {
        for (i, shard) in self.shards.iter().enumerate() {
            shard.store.flush().map_err(EngineError::shard(i))?;
        }
        Ok(())
    }

    /// Makes every write so far durable: each shard syncs its log (one
    /// fdatasync per shard with unsynced writes), then the batch log, whose
    /// batches are now all in synced shards, is emptied.
    pub fn flush(&self) -> Result<()> {
        if self.opts.store.read_only {
            return Ok(());
        }
        let mut st = self.batches.lock();
        self.flush_shards()?;
        if st.log.body_len() > 0 {
            let next = st.next;
            let _no_opening_reader = self.lock.exclude_opening_readers()?;
            st.log.reset(next)?;
        }
        Ok(())
    }

    /// Drops every shard's data and index pages from the page cache
    /// (`DontNeed`; nothing a read sees changes): for measuring compactions
    /// of cold inputs, or to give memory back after a bulk job.
    pub fn drop_caches(&self) -> Result<()> {
        for (i, shard) in self.shards.iter().enumerate() {
            shard
                .store
                .advise(silo_io::FileAdvice::DontNeed)
                .map_err(EngineError::shard(i))?;
        }
        Ok(())
    }

    /// Engine and per-shard figures.
    pub fn stats(&self) -> EngineStats {
        // Never wait behind a cross-shard batch being written (its mutex is
        // held through a sync): the batch log figures are then as of the
        // last call that found it free.
        let (batch_log_bytes, last_batch_log_error) = match self.batches.try_lock() {
            Some(st) => {
                let seen = (st.log.body_len(), st.last_reset_error.clone());
                *self.batch_log_seen.lock() = seen.clone();
                seen
            }
            None => self.batch_log_seen.lock().clone(),
        };
        EngineStats {
            shards: self.shards.iter().map(|s| s.store.stats()).collect(),
            cross_shard_batches: self.counters.cross_shard_batches.load(Ordering::Relaxed),
            batches_replayed: self.counters.batches_replayed.load(Ordering::Relaxed),
            reads_held_back: self.counters.reads_held_back.load(Ordering::Relaxed),
            writes_delayed: self.counters.writes_delayed.load(Ordering::Relaxed),
            write_delay: Duration::from_micros(
                self.counters.write_delay_us.load(Ordering::Relaxed),
            ),
            batch_log_bytes,
            last_batch_log_error,
            open_files: crate::stats::ENGINE_FILES
                + crate::stats::FILES_PER_SHARD * self.shards.len() as u64,
            maps: crate::stats::MAPS_PER_SHARD * self.shards.len() as u64,
        }
    }

    /// Writes a consistent copy of the engine into `dest` (which must not
    /// exist or be empty): every write acknowledged before the call, whole
    /// batches, nothing after; it opens as a normal engine.
    ///
    /// Writers pause while each shard's point in time is fixed (only while
    /// every shard's is free at once: a shard that is compacting or
    /// iterated is waited for with writers running); the files are then
    /// copied while writes go on. Readers never pause. A poisoned engine is
    /// refused: reopen it first, which completes its logged batches.
    pub fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<()> {
        let dest = dest.as_ref();
        if dest.exists()
            && std::fs::read_dir(dest)
                .map_err(|e| silo_io::error::IoError::io("read directory", dest, e))?
                .next()
                .is_some()
        {
            return Err(EngineError::DestinationExists(dest.to_path_buf()));
        }
        // A poisoned engine may hold part of a cross-shard batch that only
        // its batch log can complete; a copy without it would keep the part.
        self.check_poisoned()?;
        let (cuts, next) =
            self.across_shards(Silo::try_checkpoint_cut, |s| s.checkpoint_cut().map(drop))?;
        create_dir_durable(dest)?;
        for (i, cut) in cuts.into_iter().enumerate() {
            cut.write_to(shard_dir(dest, i))
                .map_err(EngineError::shard(i))?;
        }
        // Every cross-shard batch before the cut is whole in the shards'
        // copied logs: the copy's batch log starts empty.
        let (mut log, _) = BatchLog::open(dest, silo_format::DEFAULT_MAX_PAYLOAD, false)?;
        log.reset(next)?;
        manifest::write(
            dest,
            &EngineManifest {
                generation: 1,
                shards: self.shards.len(),
            },
        )?;
        sync_dir(dest)?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Closes every shard (each folds its log, syncs and writes a clean
    /// manifest), then empties the batch log. The first error is returned;
    /// every shard is closed regardless.
    pub fn close(self) -> Result<()> {
        let Engine {
            shards,
            batches,
            opts,
            lock,
            ..
        } = self;
        // No scheduler can hold them: its handle borrows the engine.
        let shards = Arc::try_unwrap(shards).map_err(|_| EngineError::InvalidOptions {
            name: "close",
            reason: "the shards are still shared".to_owned(),
        })?;
        let mut first: Option<EngineError> = None;
        for (i, shard) in shards.into_iter().enumerate() {
            if let Err(e) = shard.store.close() {
                first.get_or_insert(EngineError::Shard {
                    shard: i,
                    source: e,
                });
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        let mut st = batches.into_inner();
        if st.log.body_len() > 0 && !opts.store.read_only {
            let next = st.next;
            let _no_opening_reader = lock.exclude_opening_readers()?;
            st.log.reset(next)?;
        }
        drop(lock);
        Ok(())
    }
}

/// Every writer held back (see [`Engine::pause_writers`]).
pub(crate) struct Paused<'a> {
    batches: parking_lot::MutexGuard<'a, Batches>,
    _gates: Vec<parking_lot::RwLockWriteGuard<'a, ()>>,
}

/// Creates the files of a new engine with `n` shards in `dir`, the manifest
/// last. What an interrupted creation left (empty shard stores, an empty
/// batch log) is reused; a shard or batch log holding data means the
/// manifest was lost, and is refused rather than overwritten.
fn create(dir: &Path, n: usize, opts: &EngineOptions) -> Result<()> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| silo_io::error::IoError::io("read directory", dir, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in &names {
        let holds_data = if let Some(number) = name.strip_prefix("shard-") {
            let found = number.parse::<usize>().ok();
            if found.is_none_or(|f| f >= n) {
                return Err(EngineError::Corrupt {
                    file: dir.join(name),
                    offset: 0,
                    reason: format!(
                        "ENGINE is missing and this is no shard of a {n}-shard engine; restore the manifest or open with its shard count"
                    ),
                });
            }
            let store = Silo::open(dir.join(name), opts.store.clone())
                .map_err(EngineError::shard(found.unwrap_or(0)))?;
            let s = store.stats();
            s.index_keys > 0 || s.pending_ops > 0
        } else if name == BATCH_LOG_NAME {
            !BatchLog::open(dir, silo_format::DEFAULT_MAX_PAYLOAD, false)?
                .1
                .is_empty()
        } else {
            false
        };
        if holds_data {
            return Err(EngineError::Corrupt {
                file: manifest::path(dir),
                offset: 0,
                reason: format!(
                    "ENGINE is missing but {name} holds data; restore the manifest or a checkpoint"
                ),
            });
        }
    }
    for i in 0..n {
        Silo::open(shard_dir(dir, i), opts.store.clone()).map_err(EngineError::shard(i))?;
    }
    BatchLog::open(dir, silo_format::DEFAULT_MAX_PAYLOAD, false)?;
    manifest::write(
        dir,
        &EngineManifest {
            generation: 1,
            shards: n,
        },
    )
}

/// Opens the `n` shards of `dir`, several at once.
fn open_shards(dir: &Path, n: usize, opts: &EngineOptions) -> Result<Vec<Shard>> {
    use rayon::prelude::*;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let path = shard_dir(dir, i);
            if !path.is_dir() {
                return Err(EngineError::Corrupt {
                    file: path,
                    offset: 0,
                    reason: "a shard of the engine is missing".to_owned(),
                });
            }
            Ok(Shard {
                store: Silo::open(&path, opts.store.clone()).map_err(EngineError::shard(i))?,
                gate: Gate::default(),
                throttle_us: AtomicU32::new(0),
            })
        })
        .collect()
}

/// The `applying` counter odd for as long as it lives (see
/// [`Engine::get_with`]).
struct Applying<'a>(&'a AtomicU64);

impl<'a> Applying<'a> {
    fn begin(counter: &'a AtomicU64) -> Applying<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Applying(counter)
    }
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// One step of a wait: spin for the first 64 calls, then yield the CPU.
fn backoff(spins: &mut u32) {
    if *spins < 64 {
        std::hint::spin_loop();
        *spins += 1;
    } else {
        std::thread::yield_now();
    }
}

//! [`LogStore`]: the Raft log in a silo engine (entries keyed by index, the
//! vote and the committed, purged and last log ids at reserved keys), with
//! a flusher thread that syncs appended entries for many appends at once.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, Vote};
use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_engine::{Engine, EngineOptions};

use crate::error::{RaftStoreError, Result};
use crate::keys::{
    LOG_COMMITTED_KEY, LOG_LAST_KEY, LOG_PURGED_KEY, LOG_VOTE_KEY, RESERVED_FROM, decode_record,
    encode_record,
};
use crate::types::TypeConfig;

/// Purged entries after which the flusher compacts the log engine.
pub const COMPACT_AFTER_PURGED: u64 = 1024;

/// What the log store and its readers share: the engine.
#[derive(Debug)]
struct LogShared {
    engine: Engine,
    /// Entries purged since the last compaction.
    purged_since_compact: AtomicU64,
    /// Compactions run by the flusher (for tests and stats).
    compactions: AtomicU64,
}

fn sync() -> WriteOptions {
    WriteOptions::durability(Durability::Sync)
}

impl LogShared {
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: u64,
    ) -> Result<Option<T>> {
        match self.engine.get(key)? {
            Some(bytes) => decode_record(what, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn last(&self) -> Result<Option<LogId<u64>>> {
        self.get("last log id", LOG_LAST_KEY)
    }

    fn purged(&self) -> Result<Option<LogId<u64>>> {
        self.get("purged log id", LOG_PURGED_KEY)
    }

    fn entry(&self, index: u64) -> Result<Option<Entry<TypeConfig>>> {
        if index >= RESERVED_FROM {
            return Ok(None);
        }
        self.get("log entry", index)
    }

    /// The entries in `range` that the log holds, in index order.
    fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry<TypeConfig>>> {
        let Some(last) = self.last()? else {
            return Ok(Vec::new());
        };
        let first = self.purged()?.map_or(0, |p| p.index + 1);
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(first);
        let end = match range.end_bound() {
            Bound::Included(&e) => e,
            Bound::Excluded(&0) => return Ok(Vec::new()),
            Bound::Excluded(&e) => e - 1,
            Bound::Unbounded => u64::MAX,
        }
        .min(last.index);
        let mut out = Vec::new();
        let mut index = start;
        while index <= end {
            match self.entry(index)? {
                Some(entry) => out.push(entry),
                // The log is contiguous from its first entry: before it
                // (a log that did not start at 0) there is nothing.
                None if out.is_empty() => {}
                None => {
                    return Err(RaftStoreError::BadRecord {
                        what: "log entry",
                        key: index,
                        reason: "missing inside the log (it must be contiguous)".to_owned(),
                    });
                }
            }
            index += 1;
        }
        Ok(out)
    }
}

/// Work for the flusher thread.
enum Job {
    /// Sync the log, then tell openraft the entries are durable.
    Flush(LogFlushed<TypeConfig>),
    /// Compact the engine (after purges).
    Compact,
}

/// The flusher thread: it syncs the engine once for every append queued
/// since its last sync (group commit) and runs compactions after purges,
/// off openraft's thread. Dropping it stops and joins the thread.
struct Flusher {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    fn start(shared: Arc<LogShared>) -> Result<Flusher> {
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("silo-raft-flush".to_owned())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = Vec::new();
                    let mut compact = false;
                    let mut take = |job| match job {
                        Job::Flush(cb) => waiting.push(cb),
                        Job::Compact => compact = true,
                    };
                    take(first);
                    while let Ok(job) = rx.try_recv() {
                        take(job);
                    }
                    if !waiting.is_empty() {
                        let result = shared.engine.flush();
                        for cb in waiting {
                            cb.log_io_completed(
                                result
                                    .as_ref()
                                    .map(drop)
                                    .map_err(|e| std::io::Error::other(e.to_string())),
                            );
                        }
                    }
                    if compact {
                        // A failed compaction leaves the log as it was (the
                        // entries are deleted already); space is reclaimed
                        // by the next one.
                        if shared.engine.compact().is_ok() {
                            shared.compactions.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
            .map_err(|e| RaftStoreError::Net {
                context: "spawn the log flusher thread".to_owned(),
                source: e,
            })?;
        Ok(Flusher {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| RaftStoreError::Raft("the log flusher thread has stopped".to_owned()))
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            // A panicked flusher has nothing left to clean up.
            let _ = h.join();
        }
    }
}

impl Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").finish_non_exhaustive()
    }
}

/// The Raft log of one node, in the silo engine of `<node>/log`.
///
/// Durability: `save_vote`, `truncate` and `purge` return after an
/// fdatasync; `append` returns once the entries are written (readable) and
/// calls openraft's callback from the flusher thread after the sync that
/// covers them; `save_committed` is buffered (openraft does not require it
/// durable; the next sync carries it).
#[derive(Debug)]
pub struct LogStore {
    shared: Arc<LogShared>,
    flusher: Flusher,
}

/// A reader of the log, for openraft's replication tasks.
#[derive(Clone, Debug)]
pub struct LogReader {
    shared: Arc<LogShared>,
}

impl LogStore {
    /// Opens (or creates) the log engine in `dir`.
    pub fn open(dir: &Path) -> Result<LogStore> {
        let opts = EngineOptions {
            shards: Some(1),
            compaction_threads: Some(1),
            ..EngineOptions::default()
        };
        let shared = Arc::new(LogShared {
            engine: Engine::open(dir, opts)?,
            purged_since_compact: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
        });
        let flusher = Flusher::start(Arc::clone(&shared))?;
        Ok(LogStore { shared, flusher })
    }

    /// Compactions the flusher has run after purges.
    pub fn compactions(&self) -> u64 {
        self.shared.compactions.load(Ordering::Relaxed)
    }

    /// The engine holding the log (for inspection in tests and tools).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The entries of `range` the log holds, with the crate's typed error
    /// (a damaged entry is [`RaftStoreError::BadRecord`] naming its index).
    pub fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry<TypeConfig>>> {
        self.shared.entries(range)
    }

    /// The last saved vote.
    pub fn vote(&self) -> Result<Option<Vote<u64>>> {
        self.shared.get("vote", LOG_VOTE_KEY)
    }

    fn write_sync(&self, batch: &WriteBatch) -> Result<()> {
        self.shared.engine.write_with(batch, sync())?;
        Ok(())
    }

    fn do_append(&self, entries: impl IntoIterator<Item = Entry<TypeConfig>>) -> Result<()> {
        let mut batch = WriteBatch::new();
        let mut last = None;
        for entry in entries {
            let index = entry.log_id.index;
            if index >= RESERVED_FROM {
                return Err(RaftStoreError::ReservedIndex { index });
            }
            batch.put(index, &encode_record("log entry", &entry)?);
            last = Some(entry.log_id);
        }
        if let Some(last) = last {
            batch.put(LOG_LAST_KEY, &encode_record("last log id", &last)?);
            self.shared.engine.write(&batch)?;
        }
        Ok(())
    }

    fn do_truncate(&self, log_id: LogId<u64>) -> Result<()> {
        let Some(last) = self.shared.last()? else {
            return Ok(());
        };
        let mut batch = WriteBatch::new();
        for index in log_id.index..=last.index {
            batch.delete(index);
        }
        let before = match log_id.index.checked_sub(1) {
            Some(prev) => self.shared.entry(prev)?.map(|e| e.log_id),
            None => None,
        };
        match before {
            Some(prev) => batch.put(LOG_LAST_KEY, &encode_record("last log id", &prev)?),
            None => batch.delete(LOG_LAST_KEY),
        };
        self.write_sync(&batch)
    }

    fn do_purge(&self, log_id: LogId<u64>) -> Result<()> {
        let from = self.shared.purged()?.map_or(0, |p| p.index + 1);
        let last = self.shared.last()?;
        let mut batch = WriteBatch::new();
        let upto = last.map_or(0, |l| l.index.min(log_id.index));
        let mut deleted = 0_u64;
        if last.is_some() {
            for index in from..=upto {
                batch.delete(index);
                deleted += 1;
            }
        }
        batch.put(LOG_PURGED_KEY, &encode_record("purged log id", &log_id)?);
        if last.is_some_and(|l| l.index <= log_id.index) {
            batch.delete(LOG_LAST_KEY);
        }
        self.write_sync(&batch)?;
        let total = self
            .shared
            .purged_since_compact
            .fetch_add(deleted, Ordering::Relaxed)
            + deleted;
        if total >= COMPACT_AFTER_PURGED {
            self.shared.purged_since_compact.store(0, Ordering::Relaxed);
            self.flusher.send(Job::Compact)?;
        }
        Ok(())
    }

    /// Asks the flusher to compact the log engine now (space of purged and
    /// truncated entries is reclaimed).
    pub fn request_compaction(&self) -> Result<()> {
        self.flusher.send(Job::Compact)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        self.shared
            .entries(range)
            .map_err(RaftStoreError::read_logs)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        self.shared
            .entries(range)
            .map_err(RaftStoreError::read_logs)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let purged = self.shared.purged().map_err(RaftStoreError::read_logs)?;
        let last = self.shared.last().map_err(RaftStoreError::read_logs)?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let mut batch = WriteBatch::new();
        let bytes = encode_record("vote", vote).map_err(|e| e.storage_vote_write())?;
        batch.put(LOG_VOTE_KEY, &bytes);
        self.write_sync(&batch).map_err(|e| e.storage_vote_write())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.vote()
            .map_err(|e| e.storage(openraft::ErrorSubject::Vote, openraft::ErrorVerb::Read))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let mut batch = WriteBatch::new();
        match committed {
            Some(id) => {
                let bytes =
                    encode_record("committed log id", &id).map_err(RaftStoreError::write_logs)?;
                batch.put(LOG_COMMITTED_KEY, &bytes)
            }
            None => batch.delete(LOG_COMMITTED_KEY),
        };
        self.shared
            .engine
            .write(&batch)
            .map_err(|e| RaftStoreError::from(e).write_logs())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.shared
            .get("committed log id", LOG_COMMITTED_KEY)
            .map_err(RaftStoreError::read_logs)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.do_append(entries)
            .map_err(RaftStoreError::write_logs)?;
        self.flusher
            .send(Job::Flush(callback))
            .map_err(RaftStoreError::write_logs)
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.do_truncate(log_id).map_err(RaftStoreError::write_logs)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.do_purge(log_id).map_err(RaftStoreError::write_logs)
    }
}

impl RaftStoreError {
    fn storage_vote_write(self) -> StorageError<u64> {
        self.storage(openraft::ErrorSubject::Vote, openraft::ErrorVerb::Write)
    }
}

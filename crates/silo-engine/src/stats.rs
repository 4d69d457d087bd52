//! [`EngineStats`]: the engine's figures and every shard's.

use silo_core::Stats;

/// The engine's figures at one moment (see [`crate::Engine::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Each shard's store figures, by shard number.
    pub shards: Vec<Stats>,
    /// Cross-shard batches written since open.
    pub cross_shard_batches: u64,
    /// Parts of logged cross-shard batches applied again at open (a crash
    /// had cut them off).
    pub batches_replayed: u64,
    /// Reads that waited for a cross-shard batch to finish applying.
    pub reads_held_back: u64,
    /// Writes slowed by the scheduler's emergency delay (a shard in an
    /// emergency), and the time they waited in all: the writer stall the
    /// scheduler imposed.
    pub writes_delayed: u64,
    /// See `writes_delayed`.
    pub write_delay: std::time::Duration,
    /// Bytes of batches in the batch log (while a cross-shard batch is being
    /// written, as of the last call to `stats` that found the log free).
    pub batch_log_bytes: u64,
    /// Why the last attempt to empty the batch log failed, if it did.
    pub last_batch_log_error: Option<String>,
    /// Descriptors the engine holds open between operations:
    /// [`ENGINE_FILES`] plus [`FILES_PER_SHARD`] per shard. A compaction
    /// or checkpoint in progress adds a few per shard it is working on
    /// (the journal, a new data or index file, the copies) and closes them
    /// when it ends; nothing grows with operations.
    pub open_files: u64,
    /// Memory maps the engine holds between operations: [`MAPS_PER_SHARD`]
    /// per shard (a compaction adds one for the frozen log slot, and a
    /// reader holding a data view during a data file's growth keeps the
    /// previous map until it is done).
    pub maps: u64,
}

/// Descriptors of the engine itself: its `LOCK` and batch log.
pub const ENGINE_FILES: u64 = 2;
/// Descriptors of one shard's store: `LOCK`, both log slots, the data file
/// and the index.
pub const FILES_PER_SHARD: u64 = 5;
/// Maps of one shard's store: both log slots, the data file and the index.
pub const MAPS_PER_SHARD: u64 = 4;

impl EngineStats {
    /// Live keys over every shard (keys in the index; pending ones are
    /// counted by their shard's `pending_keys`).
    pub fn index_keys(&self) -> u64 {
        self.shards.iter().map(|s| s.index_keys).sum()
    }

    /// Bytes of live records over every shard.
    pub fn live_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.live_bytes).sum()
    }

    /// Bytes of dead records over every shard.
    pub fn dead_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.dead_bytes).sum()
    }

    /// Operations not yet compacted, over every shard.
    pub fn pending_ops(&self) -> u64 {
        self.shards.iter().map(|s| s.pending_ops).sum()
    }
}

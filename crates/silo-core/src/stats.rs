//! `Stats`: what a store holds and how its space is used.

/// A store's figures at one moment (see [`crate::Silo::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys in the index (keys only in the pending view are not counted).
    pub index_keys: u64,
    /// Keys with operations in the pending view.
    pub pending_keys: u64,
    /// Operations in the pending view.
    pub pending_ops: u64,
    /// Bytes the pending view holds.
    pub pending_bytes: u64,
    /// Bytes of frames in the log slots.
    pub log_bytes: u64,
    /// Bytes of live records in the data file.
    pub live_bytes: u64,
    /// Bytes of dead records in the data file (reclaimed by cold compaction).
    pub dead_bytes: u64,
    /// End of the written records in the data file.
    pub data_end: u64,
    /// Bytes all the store's files take on disk.
    pub disk_bytes: u64,
    /// Bytes of torn log tail dropped when the store was opened.
    pub torn_tail_bytes: u64,
    /// Hot compactions run since open.
    pub compactions: u64,
    /// Cold compactions (full rewrites) run since open.
    pub cold_compactions: u64,
    /// `MergeWriter` results that did not fit their slot and went through the log.
    pub merge_fallbacks: u64,
    /// fdatasyncs group commit issued for `Sync` writes (compare with the
    /// writes made to see how many each sync carried).
    pub log_syncs: u64,
    /// The last sequence number given to an operation.
    pub last_seq: u64,
    /// Why the last compaction failed (for example a merge operand the
    /// operator refused), or `None` if it succeeded.
    pub last_compaction_error: Option<String>,
}

//! How an engine is opened.

use silo_core::Options;

use crate::tuning::TuningProfile;

/// How an engine is opened. `EngineOptions::default()` suits most uses.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Shards of a new engine: a power of two from 1 to 1024. `None`: from
    /// the machine ([`TuningProfile`]). An existing engine keeps its own
    /// count; asking for another is an error.
    pub shards: Option<usize>,
    /// Threads that compact shards in parallel. `None`: from the machine.
    pub compaction_threads: Option<usize>,
    /// The options every shard's store is opened with (durability, merge
    /// operator, limits). `pending_limit_bytes` is per shard.
    pub store: Options,
}

impl EngineOptions {
    /// The store options with a merge operator set, as
    /// [`silo_core::Options::with_merge_operator`].
    pub fn with_merge_operator(mut self, op: impl silo_core::MergeOperator) -> Self {
        self.store = self.store.with_merge_operator(op);
        self
    }

    /// The compaction threads to use.
    pub(crate) fn threads(&self) -> usize {
        self.compaction_threads
            .unwrap_or_else(|| TuningProfile::detect().tuning().compaction_threads)
            .max(1)
    }
}

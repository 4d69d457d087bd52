//! [`EngineMergeWriter`]: silo-core's [`silo_core::MergeWriter`] on every
//! shard, keys routed as the engine routes them. Concurrent
//! read-modify-write of single keys: a result that fits its record's space
//! is rewritten in place (journaled), anything else goes through the
//! shard's log like a put; nothing is dropped. Each shard's compaction
//! waits while the writer lives; reads and ordinary writes go on.

use silo_core::{MergeWriter, UpdateOutcome};

use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// A merge writer over every shard; see the module documentation.
pub struct EngineMergeWriter<'e> {
    engine: &'e Engine,
    writers: Vec<MergeWriter<'e>>,
}

impl std::fmt::Debug for EngineMergeWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineMergeWriter")
            .field("shards", &self.writers.len())
            .finish()
    }
}

impl Engine {
    /// A merge writer over every shard (see [`EngineMergeWriter`]).
    pub fn merge_writer(&self) -> Result<EngineMergeWriter<'_>> {
        self.check_poisoned()?;
        let writers = self
            .shards()
            .iter()
            .enumerate()
            .map(|(i, s)| s.store.merge_writer().map_err(EngineError::shard(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(EngineMergeWriter {
            engine: self,
            writers,
        })
    }
}

impl EngineMergeWriter<'_> {
    /// Replaces the value of `key` with `f(current value)`: visible to
    /// readers at once, durable after [`EngineMergeWriter::finish`] (or,
    /// for a fallback, as durable as a put).
    pub fn update(
        &self,
        key: u64,
        f: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<UpdateOutcome> {
        self.engine.check_poisoned()?;
        let i = self.engine.route(key);
        let _writer = self.engine.writer(i);
        self.writers[i]
            .update(key, f)
            .map_err(EngineError::shard(i))
    }

    /// Writes every in-place result durably, shard by shard, and releases
    /// the shards to compaction. The first failure is returned after every
    /// shard was tried.
    pub fn finish(self) -> Result<()> {
        let mut first = None;
        for (i, w) in self.writers.into_iter().enumerate() {
            if let Err(e) = w.finish() {
                first.get_or_insert(EngineError::Shard {
                    shard: i,
                    source: e,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

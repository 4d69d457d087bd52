//! Checking a store whole: every shard's data file against its index
//! (silo-core's verify; the logs, manifests and batch log were checked
//! frame by frame when the engine opened). An index adds its own check of
//! its bitmaps against its documents (`Index::verify_consistency`).

use silo_core::VerifyReport;

use crate::engine::Engine;
use crate::error::{EngineError, Result};

impl Engine {
    /// Every shard's data file scanned and checked against its index, by
    /// shard number. Reads only (it works on a read-only open).
    pub fn verify(&self) -> Result<Vec<VerifyReport>> {
        self.shards()
            .iter()
            .enumerate()
            .map(|(i, s)| s.store.verify().map_err(EngineError::shard(i)))
            .collect()
    }
}

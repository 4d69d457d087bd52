//! [`EngineSnapshot`]: one point in time across every shard.

use silo_core::Snapshot;

use crate::error::{EngineError, Result};
use crate::route::shard_of;

/// A read view of the whole engine at one point in time (see
/// [`crate::Engine::snapshot`]). Compaction of every shard waits while it
/// lives; keep it short-lived.
pub struct EngineSnapshot<'a> {
    views: Vec<Snapshot<'a>>,
}

impl std::fmt::Debug for EngineSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSnapshot")
            .field("shards", &self.views.len())
            .finish()
    }
}

impl<'a> EngineSnapshot<'a> {
    pub(crate) fn new(views: Vec<Snapshot<'a>>) -> Self {
        EngineSnapshot { views }
    }

    /// The value of `key` as of the snapshot.
    pub fn get(&self, key: u64) -> Result<Option<Vec<u8>>> {
        self.get_with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// Calls `f` with the value of `key` as of the snapshot.
    pub fn get_with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        let i = shard_of(key, self.views.len());
        self.views[i]
            .get_with(key, f)
            .map_err(EngineError::shard(i))
    }

    /// Every live `(key, value)` as of the snapshot, shard by shard, in no
    /// particular order within a shard.
    pub fn iter(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + '_ {
        self.views
            .iter()
            .enumerate()
            .flat_map(|(i, view)| view.iter().map(move |r| r.map_err(EngineError::shard(i))))
    }
}

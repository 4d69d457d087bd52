//! Helpers shared by the engine's integration tests.

use silo_core::MergeOperator;
use silo_engine::{Engine, EngineOptions};

/// Concatenates operands onto the value (so a doubled operand shows).
pub(crate) struct Concat;

impl MergeOperator for Concat {
    fn merge(
        &self,
        _key: u64,
        existing: Option<&[u8]>,
        operands: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(existing.unwrap_or_default());
        for op in operands {
            out.extend_from_slice(op);
        }
        Ok(())
    }
}

/// `shards` shards, the concat operator, no automatic compaction.
pub(crate) fn opts(shards: usize) -> EngineOptions {
    let mut o = EngineOptions {
        shards: Some(shards),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    }
    .with_merge_operator(Concat);
    o.store.auto_compact = false;
    o
}

pub(crate) fn open(dir: &std::path::Path, shards: usize) -> Engine {
    Engine::open(dir, opts(shards)).expect("open engine")
}

/// Keys `0..n` that all fall on different shards than `key`'s first.
pub(crate) fn keys_on_distinct_shards(shards: usize) -> Vec<u64> {
    let mut seen = vec![false; shards];
    let mut keys = Vec::new();
    for k in 0u64.. {
        let s = silo_engine::shard_of(k, shards);
        if !seen[s] {
            seen[s] = true;
            keys.push(k);
        }
        if keys.len() == shards {
            break;
        }
    }
    keys
}

/// Every `(key, value)` of the engine, sorted.
pub(crate) fn contents(db: &Engine) -> std::collections::BTreeMap<u64, Vec<u8>> {
    db.iter().map(|r| r.expect("iter")).collect()
}

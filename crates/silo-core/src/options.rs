//! Store options: durability, merge operator, value limits and compaction thresholds.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::merge::MergeOperator;

/// When a write is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// A write returns once its log bytes are in the page cache (it survives
    /// a crash of the process, not of the machine); the OS writes back, and
    /// [`crate::Silo::flush`] makes everything durable.
    #[default]
    Buffered,
    /// A write returns after its log bytes are fdatasync'ed. Concurrent
    /// writers share one fdatasync (group commit).
    Sync,
}

/// Options of one write call ([`crate::Silo::write_with`], `put_with`,
/// `delete_with`, `merge_with`).
///
/// ```
/// use silo_core::{Durability, Options, Silo, WriteOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let silo = Silo::open(dir.path(), Options::default()).unwrap(); // Buffered
/// silo.put(1, b"cached").unwrap();
/// // This one returns after an fdatasync, which covers the put above too.
/// silo.put_with(2, b"durable", WriteOptions::durability(Durability::Sync)).unwrap();
/// assert!(silo.stats().log_syncs >= 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// The durability of this call; `None` takes [`Options::durability`].
    pub durability: Option<Durability>,
    /// Skip what a write does after it is logged when compaction is due
    /// (wake the compaction worker; slow down, or wait for a running
    /// compaction, as pending memory passes its limit). The caller then
    /// calls [`crate::Silo::pace_writer`] itself, when it holds nothing
    /// others wait for: the sharded engine applies a cross-shard batch's
    /// parts while readers wait for the last one, and paces afterwards.
    pub defer_pacing: bool,
}

impl WriteOptions {
    /// A write with the given durability, whatever the store's default.
    pub fn durability(durability: Durability) -> WriteOptions {
        WriteOptions {
            durability: Some(durability),
            defer_pacing: false,
        }
    }

    /// The same options with pacing deferred (see [`WriteOptions::defer_pacing`]).
    pub fn deferring_pacing(self) -> WriteOptions {
        WriteOptions {
            defer_pacing: true,
            ..self
        }
    }
}

/// When compaction is due; see [`crate::compaction::policy`].
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionThresholds {
    /// Dead fraction of the data file above which a cold compaction (full
    /// rewrite) is due. Default 1/3: the data file holds at most 1.5 times
    /// its live record bytes before a rewrite is due, and each rewrite
    /// copies two live bytes for each dead one it reclaims (at 0.2, a
    /// quarter more file and four bytes copied).
    pub dead_ratio: f64,
    /// Dead fraction above which compaction is an emergency. Default 0.70.
    pub emergency_dead_ratio: f64,
    /// Log bytes in the active slot above which a hot compaction is due. Default 256 MiB.
    pub log_bytes: u64,
    /// Pending operations above which a hot compaction is due. Default 4 million.
    pub pending_ops: u64,
    /// Minimum time between two compactions the policy asks for (not
    /// emergencies, not [`crate::Silo::compact`]). Default 60 s.
    pub min_interval: Duration,
    /// A fold whose in-place results come to this share of the live
    /// record bytes or more (and to 4 MiB or more) goes into a cold
    /// rewrite instead: in place, each result is written twice (into the
    /// journal, then over its record), where a rewrite writes every live
    /// record once. Default 0.5 (measured: a fold rewriting every key took
    /// 1.8 times as long in place, a quarter of them 0.8 times). Any value
    /// above 1, `f64::INFINITY` included, keeps every fold in place.
    pub rewrite_share: f64,
}

impl Default for CompactionThresholds {
    fn default() -> Self {
        CompactionThresholds {
            dead_ratio: 1.0 / 3.0,
            emergency_dead_ratio: 0.70,
            log_bytes: 256 << 20,
            pending_ops: 4_000_000,
            min_interval: Duration::from_secs(60),
            rewrite_share: 0.5,
        }
    }
}

/// How a store is opened. `Options::default()` suits most uses.
#[derive(Clone)]
pub struct Options {
    /// When writes are durable. Default [`Durability::Buffered`].
    pub durability: Durability,
    /// The merge operator; `merge` fails without one.
    pub merge_operator: Option<Arc<dyn MergeOperator>>,
    /// Extra room allocated for a value, in percent of its length, so it can
    /// grow in place. Default 0.
    pub value_slack_percent: u32,
    /// Longest value or operand accepted, in bytes. Default 64 MiB; at most 1 GiB.
    pub max_value_len: u32,
    /// Memory the pending view may hold (values and operands not yet
    /// compacted). Reaching it makes compaction an emergency; at twice this,
    /// writers wait for compaction. Default 256 MiB.
    pub pending_limit_bytes: u64,
    /// Run compaction from the writing thread when the policy says it is due.
    /// Turn off when something else (silo-engine's scheduler) runs it. Default on.
    pub auto_compact: bool,
    /// Fold the log into the data file on close, so the next open is instant. Default on.
    pub compact_on_close: bool,
    /// On a corrupt frame in the middle of a log, keep what precedes it and
    /// drop the rest instead of refusing to open. Default off.
    pub recover_corrupt_log: bool,
    /// Open without changing anything on disk: the directory lock is taken
    /// as a reader (any number of read-only opens at once, in other
    /// processes, beside at most one read-write open in yet another; the
    /// open sees the store as it was at one moment and keeps that view
    /// while the writer goes on), recovery writes nothing (a
    /// torn log tail is skipped, not cut; a store with an interrupted
    /// in-place write to finish is refused with
    /// [`crate::Error::NeedsRecovery`]), no compaction worker runs, every
    /// write, compaction and bulk writer is refused with
    /// [`crate::Error::ReadOnly`], and close writes nothing. Default off.
    pub read_only: bool,
    /// Compaction thresholds.
    pub thresholds: CompactionThresholds,
    /// The hash seed of a new store's index. Default `None`: a random one
    /// per store, so that no set of keys collides on every store. A fixed
    /// seed makes two stores given the same writes byte-for-byte equal
    /// (the engine's tests compare parallel and sequential compaction so).
    /// An existing store keeps the seed in its index header.
    pub index_seed: Option<u64>,
    /// Threads the store's own compaction (`compact`, `compact_cold`, the
    /// worker's) computes on: planning a large slot, building a new index
    /// beside the data write. Default `None`: the machine's cores. Writes
    /// past the page cache go through a thread of their own either way,
    /// which waits on the device rather than computing. At least 1.
    pub compaction_threads: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Buffered,
            merge_operator: None,
            value_slack_percent: 0,
            max_value_len: 64 << 20,
            pending_limit_bytes: 256 << 20,
            auto_compact: true,
            compact_on_close: true,
            recover_corrupt_log: false,
            read_only: false,
            thresholds: CompactionThresholds::default(),
            index_seed: None,
            compaction_threads: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("durability", &self.durability)
            .field("merge_operator", &self.merge_operator.is_some())
            .field("value_slack_percent", &self.value_slack_percent)
            .field("max_value_len", &self.max_value_len)
            .field("pending_limit_bytes", &self.pending_limit_bytes)
            .field("auto_compact", &self.auto_compact)
            .field("compact_on_close", &self.compact_on_close)
            .field("recover_corrupt_log", &self.recover_corrupt_log)
            .field("read_only", &self.read_only)
            .field("thresholds", &self.thresholds)
            .field("index_seed", &self.index_seed)
            .field("compaction_threads", &self.compaction_threads)
            .finish()
    }
}

impl Options {
    /// Sets the merge operator.
    #[must_use]
    pub fn with_merge_operator(mut self, op: impl MergeOperator) -> Self {
        self.merge_operator = Some(Arc::new(op));
        self
    }

    /// Sets the durability.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Refuses options that cannot work.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(Error::InvalidOptions {
                name,
                reason: reason.to_owned(),
            })
        };
        if self.max_value_len == 0 || self.max_value_len > silo_format::frame::DEFAULT_MAX_PAYLOAD {
            return bad("max_value_len", "must be between 1 and 1 GiB");
        }
        if self.value_slack_percent > 1000 {
            return bad("value_slack_percent", "must be at most 1000");
        }
        if self.pending_limit_bytes < 1 << 16 {
            return bad("pending_limit_bytes", "must be at least 64 KiB");
        }
        let t = &self.thresholds;
        if !(0.0..=1.0).contains(&t.dead_ratio) || !(0.0..=1.0).contains(&t.emergency_dead_ratio) {
            return bad("thresholds", "dead ratios must be between 0 and 1");
        }
        if t.log_bytes < 1 << 16 {
            return bad("thresholds.log_bytes", "must be at least 64 KiB");
        }
        if t.rewrite_share.is_nan() || t.rewrite_share <= 0.0 {
            return bad("thresholds.rewrite_share", "must be above 0");
        }
        if self.compaction_threads == Some(0) {
            return bad("compaction_threads", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Options::default().validate().expect("defaults validate");
        let shown = format!("{:?}", Options::default());
        for field in [
            "compaction_threads: None",
            "rewrite_share: 0.5",
            "index_seed: None",
        ] {
            assert!(shown.contains(field), "{shown}");
        }
    }

    #[test]
    fn out_of_range_options_are_refused_by_name() {
        let o = Options {
            max_value_len: 0,
            ..Options::default()
        };
        assert!(matches!(
            o.validate(),
            Err(Error::InvalidOptions {
                name: "max_value_len",
                ..
            })
        ));
        let o = Options {
            thresholds: CompactionThresholds {
                dead_ratio: 1.5,
                ..CompactionThresholds::default()
            },
            ..Options::default()
        };
        assert!(matches!(
            o.validate(),
            Err(Error::InvalidOptions {
                name: "thresholds",
                ..
            })
        ));
        for share in [0.0, -1.0, f64::NAN] {
            let o = Options {
                thresholds: CompactionThresholds {
                    rewrite_share: share,
                    ..CompactionThresholds::default()
                },
                ..Options::default()
            };
            assert!(
                matches!(
                    o.validate(),
                    Err(Error::InvalidOptions {
                        name: "thresholds.rewrite_share",
                        ..
                    })
                ),
                "{share}"
            );
        }
        let never = Options {
            thresholds: CompactionThresholds {
                rewrite_share: f64::INFINITY,
                ..CompactionThresholds::default()
            },
            ..Options::default()
        };
        never
            .validate()
            .expect("infinity keeps every fold in place");
        let none = Options {
            compaction_threads: Some(0),
            ..Options::default()
        };
        assert!(matches!(
            none.validate(),
            Err(Error::InvalidOptions {
                name: "compaction_threads",
                ..
            })
        ));
    }
}

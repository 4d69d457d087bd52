//! Silo's single-shard store: one store in one directory.
//!
//! A [`Silo`] keeps u64-keyed values in a data file of checksummed records,
//! found through a persistent open-addressed hash index. Writes go to a
//! two-slot operations log and an in-memory pending view; compaction folds
//! the log into the data file (in place where a value fits its slot) in
//! strict phases, while readers go on. See `docs/ARCHITECTURE.md` for the
//! code map and `docs/FORMAT.md` for the files.
//!
//! | module | holds |
//! |---|---|
//! | `silo` | [`Silo`], the handle: every public call; starts and stops the compaction worker |
//! | `compactor` | the compaction worker: automatic compaction off the writers' threads |
//! | `store` | the store behind the handle: open, reads, writes, flush, stats, shutdown |
//! | `reentry` | refusing calls that would wait for the calling thread itself |
//! | `recovery` | creating a store, or replaying its logs on open |
//! | `log` | the two log slots, replay, group commit |
//! | `pending` | the pending view of operations not yet compacted |
//! | `index` | the persistent hash index |
//! | `data` | the data file |
//! | [`compaction`] | hot and cold compaction, the journal, the policy |
//! | `grace` | grace periods between in-place writes and readers |
//! | `verify` | the index checked against the data file, and rebuilt from it |
//! | `salvage` | what a damaged store still holds, read without opening it |
//! | `iter`, `snapshot`, `checkpoint`, `bulk` | iteration, point-in-time reads, online copies, bulk writers |
//!
//! ```
//! use silo_core::{Options, Silo, WriteBatch};
//! let dir = tempfile::tempdir().unwrap();
//! let silo = Silo::open(dir.path(), Options::default()).unwrap();
//! let mut batch = WriteBatch::new();
//! batch.put(1, b"a").put(2, b"b");
//! silo.write(&batch).unwrap();
//! silo.flush().unwrap();
//! let mut all: Vec<_> = silo.iter().collect::<Result<_, _>>().unwrap();
//! all.sort();
//! assert_eq!(all, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
//! ```
#![forbid(unsafe_code)]

mod batch;
mod bulk;
mod checkpoint;
pub mod compaction;
mod compactor;
mod data;
mod error;
mod grace;
mod index;
mod iter;
mod log;
mod manifest;
mod merge;
mod options;
mod pending;
mod recovery;
mod reentry;
mod salvage;
mod scratch;
mod silo;
mod snapshot;
mod stats;
mod store;
mod two_threads;
mod value_slab;
mod verify;
mod window_sort;

pub use batch::{BatchOp, WriteBatch};
pub use bulk::{BulkHandle, BulkWriter, MergeWriter, UpdateOutcome};
pub use checkpoint::CheckpointCut;
pub use compaction::CompactionReport;
pub use compaction::HOLD_EARLY_PLAN;
pub use compaction::cold::HOLD_COLD_COPY;
pub use compaction::policy::{CompactionKind, PolicyInput};
pub use compaction::staged::{ColdRewrite, CompactionPlan, FoldedRewrite, StagedCompaction};
pub use error::{Error, Result};
pub use iter::Iter;
pub use merge::{Append, MergeOperator};
pub use options::{CompactionThresholds, Durability, Options, WriteOptions};
pub use recovery::HOLD_READ_ONLY_REPLAY;
pub use salvage::{Damage, Salvage, SalvagedKey, salvage};
pub use silo::Silo;
pub use snapshot::Snapshot;
pub use stats::Stats;
pub use verify::{Problem, VerifyReport};

/// The largest value or operand a reader accepts from disk, whatever the
/// options of the writer were.
pub(crate) const READ_LIMIT: u32 = silo_format::DEFAULT_MAX_PAYLOAD;

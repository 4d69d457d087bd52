//! Silo's sharded engine: many `silo-core` stores (shards) behind one
//! handle, so that ingest, reads and compaction use every core.
//!
//! ```
//! use silo_engine::{Engine, EngineOptions};
//! use silo_core::WriteBatch;
//! let dir = tempfile::tempdir().unwrap();
//! let db = Engine::open(dir.path(), EngineOptions { shards: Some(4), ..Default::default() })?;
//! db.put(1, b"one")?;
//! let mut batch = WriteBatch::new();
//! batch.put(2, b"two").put(3, b"three"); // on different shards: atomic all the same
//! db.write(&batch)?;
//! assert_eq!(db.get(3)?.as_deref(), Some(&b"three"[..]));
//! db.compact()?;
//! db.close()?;
//! # Ok::<(), silo_engine::EngineError>(())
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | `engine.rs` | [`Engine`]: open and create, routing, reads, writes, cross-shard batches, snapshot, checkpoint, close |
//! | `batch_log.rs` | the batch log: cross-shard batches logged whole before their parts reach the shards |
//! | `compaction.rs` | [`Engine::compact`]: classify the shards, compact the chosen ones on a pool |
//! | `manifest.rs` | the `ENGINE` manifest: shard count and routing scheme |
//! | `route.rs` | [`shard_of`]: the stable key-to-shard function |
//! | `scheduler.rs` | [`Engine::start_background`]: the background scheduler, its I/O budget and emergency throttle |
//! | `tuning.rs` | [`TuningProfile`]: default shard and thread counts from the machine |
//! | `snapshot.rs` | [`EngineSnapshot`]: one point in time across every shard |
//! | `options.rs`, `stats.rs`, `error.rs` | [`EngineOptions`], [`EngineStats`], [`EngineError`] |
//! | [`keyspace`] | how the layers share the engine's keys: registry, user fields, system bitmaps, documents |
//! | `registry.rs` | the field registry: names to [`FieldId`]s, per [`FieldKind`], kept in the engine |
//! | `operator.rs` | [`LayerOperator`]: folds bitmap operands and partial documents |
//! | `layers.rs` | what the bitmap and document layers share: one engine with [`LayerOperator`], and its registry |
//! | `bitmap/` | [`BitmapStore`]: bitmaps with single-bit operations, [`BitmapBatch`], sort layers, bulk builds ([`BulkBitmaps`]) |
//! | `docs.rs` | [`DocStore`]: documents by id, fields by name, merges, partial reads |
//! | `docs_bulk.rs` | [`DocBulkMerge`]: phased bulk merges, one merge per document through the merge writer |
//! | `merge_writer.rs` | [`EngineMergeWriter`]: silo-core's merge writer on every shard |
//! | `verify.rs` | [`Engine::verify`]: every shard's data file against its index |
//! | `salvage.rs` | [`salvage`]: what a damaged engine still holds, read without opening it |
//!
//! | [`catalog`] | a synthetic product catalogue for benches, tests and demos |
//! | `index/` | [`Index`]: a [`Schema`], upserts, patches and deletes that keep bitmaps and sort layers consistent, queries ([`Filter`], sort, limit, [`Cursor`]), counts, facets |
#![forbid(unsafe_code)]

mod batch_log;
mod bitmap;
pub mod catalog;
mod compaction;
mod docs;
mod docs_bulk;
mod engine;
mod error;
mod index;
pub mod keyspace;
mod layers;
mod manifest;
mod merge_writer;
mod operator;
mod options;
mod registry;
mod route;
mod salvage;
mod scheduler;
mod snapshot;
mod stats;
mod tuning;
mod verify;

pub use bitmap::{
    BitmapBatch, BitmapStore, BulkBitmaps, BulkPart, BulkReport, EXISTS_SLICE, Order, SORT_BITS,
    SortCursor, SortPage, SortRange, sort_key_f64, sort_key_i64,
};
pub use compaction::{CompactOptions, EngineCompactionReport};
pub use docs::{DocStore, Document};
pub use docs_bulk::{DocBulkMerge, DocBulkPart, DocBulkReport};
pub use engine::{Engine, HOLD_BETWEEN_PARTS};
pub use error::{EngineError, Result};
pub use index::{
    Cursor, FieldSpec, FieldType, Filter, HOLD_IMPORT_WRITE_PASS, Hit, IMPORT_CHUNK_BYTES,
    ImportOptions, ImportReport, ImportedDoc, Index, IndexProblem, MAX_FILTER_DEPTH,
    MAX_LINE_BYTES, Query, QueryResult, Schema,
};
pub use merge_writer::EngineMergeWriter;
pub use operator::LayerOperator;
pub use options::EngineOptions;
pub use registry::{FieldId, FieldKind, MAX_FIELD_NAME};
pub use route::{MAX_SHARDS, ROUTING_SCHEME, shard_of};
pub use salvage::{EngineSalvage, salvage};
pub use scheduler::{Background, SchedulerOptions, SchedulerStats};
pub use snapshot::EngineSnapshot;
pub use stats::{ENGINE_FILES, EngineStats, FILES_PER_SHARD, MAPS_PER_SHARD};
pub use tuning::{Tuning, TuningProfile};

//! Silo's sharded engine. Not built yet: this crate will hold `ShardedSilo`
//! (many `silo-core` stores behind one handle, with a manifest), three-phase
//! parallel compaction (classify, prefetch and compute in parallel, apply and
//! commit), a background compaction scheduler with an I/O budget, and the
//! bitmap, document and index layers. See `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]

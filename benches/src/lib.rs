//! Workspace benchmarks: `benches/compare.rs` measures silo against redb, fjall, sled and heed; `benches/core.rs` is silo-core's criterion bench.
#![forbid(unsafe_code)]

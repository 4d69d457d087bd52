//! Shared helpers for the workspace benchmarks (the peer comparison lands with silo-core's bench).
#![forbid(unsafe_code)]

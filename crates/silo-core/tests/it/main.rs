//! silo-core's integration tests, one binary with a module per concern.

#![expect(
    clippy::cast_possible_truncation,
    reason = "test data is built from small counters; truncation is never reached"
)]

mod beside_a_writer;
mod bulk;
mod common;
mod concurrency;
mod corruption;
mod crash;
mod faults;
mod index_damage;
mod log_damage;
mod model;
mod power_cut;
mod read_only;
mod reentrancy;
mod replaced_files;
mod salvage;
mod store;

//! silo-raft's integration tests: openraft's storage suite, reopen,
//! snapshots and node directories.

mod cluster;
mod node_dir;
mod power_cut;
mod snapshot;
mod suite;

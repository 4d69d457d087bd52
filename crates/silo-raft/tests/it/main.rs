//! silo-raft's integration tests: openraft's storage suite, reopen,
//! snapshots, node directories, document commands through the index, and
//! three-process clusters.

mod cluster;
mod cluster_docs;
mod documents;
mod node_dir;
mod power_cut;
mod snapshot;
mod suite;

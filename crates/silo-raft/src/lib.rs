//! silo as the storage of [openraft](https://docs.rs/openraft) (0.9,
//! storage v2): the Raft log and the state machine each live in a silo
//! engine, snapshots are checkpoints of the state machine packed into a
//! streamed archive, and a small node binary (`silo-raft`) replicates a
//! key-value store over TCP.
//!
//! | module | what it holds |
//! |---|---|
//! | `types.rs` | [`TypeConfig`], [`Request`], [`Response`] |
//! | `keys.rs` | the key layout of both engines and the record encoding (version byte + JSON) |
//! | `meta_file.rs` | the `NODE` and `sm/CURRENT` files (magic, version, value, CRC32) |
//! | [`documents`] | document commands: JSON fields to typed values, resolved ops, the intent record |
//! | `node_dir.rs` | [`open_node`]: a node directory, checked against its node id |
//! | `log_store.rs` | [`LogStore`] (`RaftLogStorage`), [`LogReader`], the flusher thread (group commit) |
//! | `state_machine.rs` | [`StateMachine`] (`RaftStateMachine`), [`SnapshotBuilder`], snapshot build and install |
//! | `archive.rs` | the snapshot archive: pack a checkpoint, unpack and check it |
//! | `snapshot_file.rs` | [`SnapshotFile`]: openraft's snapshot data, a file read and written at a cursor |
//! | `error.rs` | [`RaftStoreError`] |
//! | [`wire`] | the node's TCP frames (`u32` length + JSON): openraft RPCs and client calls |
//! | `network.rs` | [`Network`]: openraft's `RaftNetworkFactory` over the wire protocol |
//! | [`bench`](mod@bench) | replicated write throughput and latency, and single-node `Sync` puts to compare |
//! | [`server`] | [`server::Node`]: a running node serving RPCs and clients on one port |
#![forbid(unsafe_code)]

pub mod archive;
pub mod bench;
pub mod documents;
mod error;
pub mod keys;
mod log_store;
pub mod meta_file;
mod network;
mod node_dir;
pub mod server;
mod snapshot_file;
mod state_machine;
mod types;
pub mod wire;

pub use error::{RaftStoreError, Result};
pub use log_store::{COMPACT_AFTER_PURGED, LogReader, LogStore};
pub use network::{Connection, Network};
pub use node_dir::{open_node, open_node_with};
pub use snapshot_file::SnapshotFile;
pub use state_machine::{
    AppliedState, CURRENT_SNAPSHOT, SmStore, SnapshotBuilder, StateMachine, StateReader,
    applied_state_of,
};
pub use types::{NodeId, Request, Response, TypeConfig};

//! A node directory: the `NODE` file naming the node it belongs to, the log
//! engine (`log/`), the state machine (`sm/`) and snapshots (`snap/`).

use std::path::Path;

use silo_io::DirLock;
use silo_io::durable::create_dir_durable;

use crate::error::{RaftStoreError, Result};
use crate::log_store::LogStore;
use crate::meta_file::{self, NODE_MAGIC};
use crate::state_machine::StateMachine;

/// Opens the storage of node `node_id` in `dir`, creating it if `dir`
/// holds none. A directory created for another node is
/// [`RaftStoreError::NodeIdMismatch`]; one that another process (or this
/// one) has open is `Locked`, and nothing in it is touched.
pub fn open_node(dir: &Path, node_id: u64) -> Result<(LogStore, StateMachine)> {
    open_node_with(dir, node_id, None)
}

/// [`open_node`] with an index schema for the state machine
/// ([`StateMachine::open_with`]).
pub fn open_node_with(
    dir: &Path,
    node_id: u64,
    schema: Option<silo_engine::Schema>,
) -> Result<(LogStore, StateMachine)> {
    create_dir_durable(dir)?;
    let node_file = dir.join("NODE");
    // Reading `NODE` first changes nothing, and names the mismatch even
    // while the directory's own node runs.
    check_node_id(dir, &node_file, node_id)?;
    // Before anything is written or swept: a second process on the same
    // directory gets `Locked` here and touches nothing.
    let lock = DirLock::acquire(dir)?;
    if !check_node_id(dir, &node_file, node_id)? {
        meta_file::write(&node_file, NODE_MAGIC, node_id)?;
    }
    let log = LogStore::open(&dir.join("log"))?;
    let sm = StateMachine::open_locked(dir, schema, lock)?;
    Ok((log, sm))
}

/// Whether `node_file` names `node_id` (`false`: there is none yet); a file
/// naming another node is [`RaftStoreError::NodeIdMismatch`].
fn check_node_id(dir: &Path, node_file: &Path, node_id: u64) -> Result<bool> {
    match meta_file::read(node_file, "node id file", NODE_MAGIC)? {
        Some(found) if found != node_id => Err(RaftStoreError::NodeIdMismatch {
            dir: dir.to_owned(),
            expected: node_id,
            found,
        }),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

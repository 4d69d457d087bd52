//! A node directory: the `NODE` file naming the node it belongs to, the log
//! engine (`log/`), the state machine (`sm/`) and snapshots (`snap/`).

use std::path::Path;

use silo_io::durable::create_dir_durable;

use crate::error::{RaftStoreError, Result};
use crate::log_store::LogStore;
use crate::meta_file::{self, NODE_MAGIC};
use crate::state_machine::StateMachine;

/// Opens the storage of node `node_id` in `dir`, creating it if `dir`
/// holds none. A directory created for another node is
/// [`RaftStoreError::NodeIdMismatch`].
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
    match meta_file::read(&node_file, "node id file", NODE_MAGIC)? {
        Some(found) if found != node_id => {
            return Err(RaftStoreError::NodeIdMismatch {
                dir: dir.to_owned(),
                expected: node_id,
                found,
            });
        }
        Some(_) => {}
        None => meta_file::write(&node_file, NODE_MAGIC, node_id)?,
    }
    let log = LogStore::open(&dir.join("log"))?;
    let sm = StateMachine::open_with(dir, schema)?;
    Ok((log, sm))
}

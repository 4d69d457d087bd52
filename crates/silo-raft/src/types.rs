//! The openraft type configuration: commands ([`Request`]), their results
//! ([`Response`]), node ids and addresses, and the snapshot data type.

use serde::{Deserialize, Serialize};

use crate::keys::RESERVED_FROM;
use crate::snapshot_file::SnapshotFile;

openraft::declare_raft_types!(
    /// silo-raft's openraft types: `u64` node ids, [`openraft::BasicNode`]
    /// addresses, [`Request`] commands and snapshots streamed from files.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A node id.
pub type NodeId = u64;

/// A command replicated through the log and applied to the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Store `value` under `key`.
    Put {
        /// The key; keys from [`RESERVED_FROM`] up are reserved.
        key: u64,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: u64,
    },
    /// Several commands applied atomically, in order.
    Batch(Vec<Request>),
}

impl Request {
    /// The first key of this command in the reserved range, if any.
    pub fn reserved_key(&self) -> Option<u64> {
        match self {
            Request::Put { key, .. } | Request::Delete { key } => {
                (*key >= RESERVED_FROM).then_some(*key)
            }
            Request::Batch(reqs) => reqs.iter().find_map(Request::reserved_key),
        }
    }
}

/// The result of applying one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The command was applied (or the entry carried no command).
    Applied,
    /// The command touched a reserved key and was not applied at all (every
    /// node refuses it the same way, so state machines stay identical).
    ReservedKey {
        /// The offending key.
        key: u64,
    },
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;
    use openraft::{Entry, EntryPayload, Vote};

    use super::*;

    /// The JSON shapes docs/FORMAT.md shows, byte for byte.
    #[test]
    fn json_shapes_match_the_format_document() {
        let put = Request::Put {
            key: 7,
            value: vec![104, 105],
        };
        let batch = Request::Batch(vec![put.clone(), Request::Delete { key: 8 }]);
        let json = serde_json::to_string(&batch).expect("encodes");
        assert_eq!(
            json,
            r#"{"Batch":[{"Put":{"key":7,"value":[104,105]}},{"Delete":{"key":8}}]}"#
        );
        let entry = Entry::<TypeConfig> {
            log_id: log_id(2, 1, 5),
            payload: EntryPayload::Normal(put),
        };
        let json = serde_json::to_string(&entry).expect("encodes");
        assert_eq!(
            json,
            r#"{"log_id":{"leader_id":{"term":2,"node_id":1},"index":5},"payload":{"Normal":{"Put":{"key":7,"value":[104,105]}}}}"#
        );
        let json = serde_json::to_string(&Vote::new(3, 1)).expect("encodes");
        assert_eq!(
            json,
            r#"{"leader_id":{"term":3,"node_id":1},"committed":false}"#
        );
    }
}

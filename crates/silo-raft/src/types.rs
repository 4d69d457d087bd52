//! The openraft type configuration: commands ([`Request`]), their results
//! ([`Response`]), node ids and addresses, and the snapshot data type.

use serde::{Deserialize, Serialize};

use crate::documents::{DocRefusal, JsonFields};
use crate::keys::user_key_allowed;
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
        /// The key; keys from [`crate::keys::RESERVED_FROM`] up are reserved
        /// (and with an index, keys outside the user window).
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
    /// Store document `doc` with exactly `fields` (JSON values of the
    /// index schema's types; `null`: absent), replacing any earlier one.
    UpsertDoc {
        /// The fingerprint of the index schema the command was written
        /// for ([`crate::documents::schema_fingerprint`]): a node whose
        /// schema differs stops instead of applying it.
        schema: u32,
        /// The document id.
        doc: u32,
        /// Its fields.
        fields: JsonFields,
    },
    /// Change the given fields of document `doc` (creating it if absent):
    /// values replace, a `tags` array extends the stored tags, `null`
    /// removes the field.
    PatchDoc {
        /// The fingerprint of the index schema the command was written
        /// for ([`crate::documents::schema_fingerprint`]): a node whose
        /// schema differs stops instead of applying it.
        schema: u32,
        /// The document id.
        doc: u32,
        /// The fields to change.
        fields: JsonFields,
    },
    /// Remove document `doc` (nothing if absent).
    DeleteDoc {
        /// The fingerprint of the index schema the command was written
        /// for ([`crate::documents::schema_fingerprint`]): a node whose
        /// schema differs stops instead of applying it.
        schema: u32,
        /// The document id.
        doc: u32,
    },
}

impl Request {
    /// The first key of this command in the reserved range (from
    /// [`crate::keys::RESERVED_FROM`] up), if any. The same on every node:
    /// it does not depend on the node's schema.
    pub fn reserved_key(&self) -> Option<u64> {
        self.first_key(|key| !user_key_allowed(key, false))
    }

    /// The first key of this command below the reserved range but outside
    /// the user window beside an index ([`crate::keys::INDEXED_USER_KEYS_FROM`]
    /// `..` [`crate::keys::INDEXED_USER_KEYS_TO`]): a key an index owns.
    /// Only a node with an index refuses it, so a leader with an index
    /// refuses it before it is logged, and a node with an index that
    /// finds one committed stops rather than answer unlike a node without.
    pub fn index_owned_key(&self) -> Option<u64> {
        self.first_key(|key| user_key_allowed(key, false) && !user_key_allowed(key, true))
    }

    /// The first key of a key-value command of this one that `pred` holds for.
    fn first_key(&self, pred: impl Fn(u64) -> bool + Copy) -> Option<u64> {
        match self {
            Request::Put { key, .. } | Request::Delete { key } => pred(*key).then_some(*key),
            Request::Batch(reqs) => reqs.iter().find_map(|r| r.first_key(pred)),
            Request::UpsertDoc { .. } | Request::PatchDoc { .. } | Request::DeleteDoc { .. } => {
                None
            }
        }
    }

    /// Whether this command holds a document command.
    pub fn has_documents(&self) -> bool {
        match self {
            Request::Put { .. } | Request::Delete { .. } => false,
            Request::Batch(reqs) => reqs.iter().any(Request::has_documents),
            Request::UpsertDoc { .. } | Request::PatchDoc { .. } | Request::DeleteDoc { .. } => {
                true
            }
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
    /// A document command did not fit the index schema; nothing of the
    /// entry was applied (every node decides it the same way).
    DocumentRefused {
        /// The document.
        doc: u32,
        /// Why.
        refusal: DocRefusal,
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

    /// The document shapes docs/FORMAT.md shows, byte for byte.
    #[test]
    fn document_json_shapes_match_the_format_document() {
        let fields: crate::documents::JsonFields =
            serde_json::from_str(r#"{"tags":[1,2],"price":30,"color":"red"}"#).expect("json");
        assert_eq!(
            serde_json::to_string(&fields).expect("encodes"),
            r#"{"color":"red","price":30,"tags":[1,2]}"#
        );
        let upsert = Request::UpsertDoc {
            schema: 0x1234,
            doc: 3,
            fields: fields.clone(),
        };
        assert_eq!(
            serde_json::to_string(&upsert).expect("encodes"),
            r#"{"UpsertDoc":{"schema":4660,"doc":3,"fields":{"color":"red","price":30,"tags":[1,2]}}}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::DeleteDoc {
                schema: 0x1234,
                doc: 3
            })
            .expect("encodes"),
            r#"{"DeleteDoc":{"schema":4660,"doc":3}}"#
        );
        let refused = Response::DocumentRefused {
            doc: 3,
            refusal: DocRefusal::WrongType {
                field: "price".into(),
                expected: "u64".into(),
                found: "a string".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&refused).expect("encodes"),
            r#"{"DocumentRefused":{"doc":3,"refusal":{"WrongType":{"field":"price","expected":"u64","found":"a string"}}}}"#
        );
        let intent = crate::documents::DocIntent {
            log_id: log_id(2, 1, 5),
            ops: vec![
                crate::documents::DocOp::Put { doc: 3, fields },
                crate::documents::DocOp::Remove { doc: 4 },
            ],
        };
        assert_eq!(
            serde_json::to_string(&intent).expect("encodes"),
            r#"{"log_id":{"leader_id":{"term":2,"node_id":1},"index":5},"ops":[{"Put":{"doc":3,"fields":{"color":"red","price":30,"tags":[1,2]}}},{"Remove":{"doc":4}}]}"#
        );
    }
}

//! The node's wire protocol: one TCP port per node carries both openraft's
//! RPCs and the client API, as frames of `length u32 LE | JSON` (a request
//! frame, then its reply frame, on one connection, in turn).

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::documents::{DocRefusal, JsonFields};
use crate::error::{RaftStoreError, Result};
use crate::types::{NodeId, TypeConfig};

/// Largest frame accepted: a longer length prefix is a protocol error, not
/// an allocation.
pub const MAX_FRAME: u32 = 64 << 20;

/// Largest client request frame a node turns into a log entry (4 MiB).
/// openraft gives an `AppendEntries` call one heartbeat interval (100 ms)
/// to be sent, decoded, appended and synced, and sends the same call again
/// when it times out: an entry must fit a call that makes it, or the
/// follower it goes to never catches up. Calls of several entries are
/// split to stay near this size (openraft's `PayloadTooLarge`).
pub const MAX_CLIENT_FRAME: u32 = 4 << 20;

/// A request frame.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireRequest {
    /// openraft: append entries (and heartbeats).
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// openraft: request a vote.
    Vote(VoteRequest<NodeId>),
    /// openraft: one chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client call.
    Client(ClientRequest),
}

/// A reply frame.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireReply {
    /// To `AppendEntries`.
    AppendEntries(std::result::Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To `Vote`.
    Vote(std::result::Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To `InstallSnapshot`.
    InstallSnapshot(
        std::result::Result<
            InstallSnapshotResponse<NodeId>,
            RaftError<NodeId, InstallSnapshotError>,
        >,
    ),
    /// To a client call.
    Client(ClientReply),
}

/// A client call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Replicate `Put`.
    Put {
        /// The key.
        key: u64,
        /// The value.
        value: Vec<u8>,
    },
    /// Replicate `Delete`.
    Delete {
        /// The key.
        key: u64,
    },
    /// Read a key: `linearizable` asks the leader to confirm its leadership
    /// and wait for its state machine first; otherwise the local state.
    Get {
        /// The key.
        key: u64,
        /// Whether the read must be linearizable.
        linearizable: bool,
    },
    /// Replicate `UpsertDoc`.
    UpsertDoc {
        /// The document id.
        doc: u32,
        /// Its fields (JSON values of the schema's types).
        fields: JsonFields,
    },
    /// Replicate `PatchDoc`.
    PatchDoc {
        /// The document id.
        doc: u32,
        /// The fields to change (`null` removes one).
        fields: JsonFields,
    },
    /// Replicate `DeleteDoc`.
    DeleteDoc {
        /// The document id.
        doc: u32,
    },
    /// Read a document (`linearizable` as for `Get`).
    GetDoc {
        /// The document id.
        doc: u32,
        /// Whether the read must be linearizable.
        linearizable: bool,
    },
    /// The documents matching `filter` (the index's filter text syntax),
    /// in id order or sorted by a sort field, with the asked-for fields.
    Query {
        /// The filter, as text (`color = "red" and price < 10`).
        filter: String,
        /// A sort field, if any.
        sort: Option<String>,
        /// Sort largest first.
        descending: bool,
        /// At most this many hits.
        limit: usize,
        /// The stored fields to return with each hit.
        fields: Vec<String>,
        /// Whether the read must be linearizable.
        linearizable: bool,
    },
    /// How many documents match `filter`.
    Count {
        /// The filter, as text.
        filter: String,
        /// Whether the read must be linearizable.
        linearizable: bool,
    },
    /// Initialize a new cluster with these voters (id to address).
    Init {
        /// The members.
        members: BTreeMap<NodeId, String>,
    },
    /// Add a learner.
    AddLearner {
        /// Its id.
        id: NodeId,
        /// Its address.
        addr: String,
    },
    /// Make `voters` the voters of the cluster.
    ChangeMembership {
        /// The new voter set.
        voters: BTreeSet<NodeId>,
    },
    /// This node's view of the cluster.
    Status,
    /// A digest of this node's state machine.
    Digest,
}

/// The reply to a client call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// Done (a write: committed and applied, at this log index).
    Written {
        /// The log index of the write.
        index: u64,
    },
    /// Done (a call that returns nothing).
    Done,
    /// The value read.
    Value(Option<Vec<u8>>),
    /// This node is not the leader: send it to the leader (if known).
    NotLeader {
        /// The leader's id.
        leader_id: Option<NodeId>,
        /// The leader's address.
        leader_addr: Option<String>,
    },
    /// The call failed.
    Failed(String),
    /// The request's frame was longer than [`MAX_CLIENT_FRAME`]: nothing
    /// of it was written.
    TooLarge {
        /// The frame's body length.
        bytes: u64,
        /// The longest accepted.
        max: u64,
    },
    /// A document command was refused: nothing of it was applied.
    DocumentRefused {
        /// The log index of the refused command.
        index: u64,
        /// The document.
        doc: u32,
        /// Why.
        refusal: DocRefusal,
    },
    /// The document read (`None`: absent).
    Document(Option<JsonFields>),
    /// The hits of a query, in order.
    Hits(Vec<DocHit>),
    /// How many documents matched.
    Count(u64),
    /// This node's view of the cluster.
    Status(NodeStatus),
    /// A digest of the state machine.
    Digest(StateDigest),
}

/// One hit of a query: the document and the asked-for fields it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocHit {
    /// The document.
    pub doc: u32,
    /// The asked-for fields it holds.
    pub fields: JsonFields,
}

/// A node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Whether it is the leader.
    pub is_leader: bool,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its term.
    pub term: u64,
    /// The index of its last applied entry.
    pub applied: Option<u64>,
    /// The index its log was purged up to.
    pub purged: Option<u64>,
    /// The index of its last snapshot.
    pub snapshot: Option<u64>,
}

/// A digest of a state machine's user keys: their count and a CRC32 over
/// `key u64 LE | len u64 LE | value` for each key in key order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    /// The index of the last applied entry.
    pub applied: Option<u64>,
    /// How many user keys the state holds.
    pub keys: u64,
    /// The CRC32 over them.
    pub crc: u32,
}

/// The digest of `pairs` (any order).
pub fn digest_of(applied: Option<u64>, mut pairs: Vec<(u64, Vec<u8>)>) -> StateDigest {
    pairs.sort_by_key(|(k, _)| *k);
    let mut crc = crc32fast::Hasher::new();
    for (k, v) in &pairs {
        crc.update(&k.to_le_bytes());
        crc.update(&(v.len() as u64).to_le_bytes());
        crc.update(v);
    }
    StateDigest {
        applied,
        keys: pairs.len() as u64,
        crc: crc.finalize(),
    }
}

fn net(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RaftStoreError {
    let context = context.into();
    move |source| RaftStoreError::Net { context, source }
}

/// `msg` encoded as one frame (length prefix included), or
/// [`RaftStoreError::FrameTooLarge`] if its body exceeds [`MAX_FRAME`].
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    let mut out = vec![0_u8; 4];
    serde_json::to_writer(&mut out, msg).map_err(|source| RaftStoreError::Encode {
        what: "frame",
        source,
    })?;
    let body = out.len() - 4;
    let len = u32::try_from(body).ok().filter(|n| *n <= MAX_FRAME).ok_or(
        RaftStoreError::FrameTooLarge {
            bytes: body as u64,
            max: u64::from(MAX_FRAME),
        },
    )?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Sends a frame made by [`encode_frame`].
pub async fn send_frame(stream: &mut TcpStream, frame: &[u8]) -> Result<()> {
    stream.write_all(frame).await.map_err(net("write frame"))
}

/// Writes `msg` as one frame.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, msg: &T) -> Result<()> {
    send_frame(stream, &encode_frame(msg)?).await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> Result<Option<T>> {
    Ok(read_frame_sized(stream).await?.map(|(msg, _)| msg))
}

/// [`read_frame`], with the length of the frame's body.
pub async fn read_frame_sized<T: for<'de> Deserialize<'de>>(
    stream: &mut TcpStream,
) -> Result<Option<(T, u32)>> {
    let mut len = [0_u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(net("read frame")(e)),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(RaftStoreError::FrameTooLarge {
            bytes: u64::from(len),
            max: u64::from(MAX_FRAME),
        });
    }
    let mut body = vec![0_u8; usize::try_from(len).unwrap_or(0)];
    stream
        .read_exact(&mut body)
        .await
        .map_err(net("read frame"))?;
    serde_json::from_slice(&body)
        .map(|msg| Some((msg, len)))
        .map_err(|e| RaftStoreError::Protocol(format!("undecodable frame: {e}")))
}

/// Sends `req` to `addr` on a new connection and returns the reply.
pub async fn call(addr: &str, req: &WireRequest) -> Result<WireReply> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(net(format!("connect {addr}")))?;
    stream.set_nodelay(true).map_err(net("set nodelay"))?;
    write_frame(&mut stream, req).await?;
    read_frame(&mut stream)
        .await?
        .ok_or_else(|| RaftStoreError::Protocol(format!("{addr} closed without a reply")))
}

/// Sends a client call to `addr`.
pub async fn client_call(addr: &str, req: ClientRequest) -> Result<ClientReply> {
    match call(addr, &WireRequest::Client(req)).await? {
        WireReply::Client(reply) => Ok(reply),
        other => Err(RaftStoreError::Protocol(format!(
            "a client call got a raft reply: {other:?}"
        ))),
    }
}

//! A running node: its storage, its `Raft`, and the TCP server that takes
//! openraft's RPCs and client calls on one port.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::net::{TcpListener, TcpStream};

use crate::documents::{json_document, schema_fingerprint};
use crate::error::{RaftStoreError, Result};
use crate::keys::{
    INDEXED_USER_KEYS_FROM, INDEXED_USER_KEYS_TO, RESERVED_FROM, SM_APPLIED_KEY, decode_record,
    user_key_allowed,
};
use crate::network::Network;
use crate::node_dir::open_node_with;
use crate::state_machine::StateReader;
use crate::types::{NodeId, Request, Response, TypeConfig};
use crate::wire::{
    ClientReply, ClientRequest, DocHit, MAX_CLIENT_FRAME, NodeStatus, StateDigest, WireReply,
    WireRequest, digest_of, encode_frame, read_frame_sized, send_frame,
};

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The node's id.
    pub id: NodeId,
    /// Its directory.
    pub dir: PathBuf,
    /// The address it listens on (RPCs and clients).
    pub listen: String,
    /// Every member's address, this node's included (for `Init`).
    pub peers: BTreeMap<NodeId, String>,
    /// Build a snapshot (and purge the log) every this many applied entries.
    pub snapshot_logs: u64,
    /// The index schema for document commands; every node of a cluster
    /// must be given the same one.
    pub schema: Option<silo_engine::Schema>,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    raft: Raft<TypeConfig>,
    state: StateReader,
    id: NodeId,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// openraft's configuration for a node on a LAN or loopback.
fn raft_config(snapshot_logs: u64) -> Result<Config> {
    Config {
        cluster_name: "silo-raft".to_owned(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_logs),
        // Purge everything a snapshot holds: lagging nodes catch up from it.
        max_in_snapshot_log_to_keep: 0,
        // A chunk of a snapshot is unpacked and synced before its reply:
        // openraft's 200 ms would cut off a slow disk's (or an instrumented
        // build's) install again and again, and the node never catch up.
        install_snapshot_timeout: 5_000,
        ..Config::default()
    }
    .validate()
    .map_err(|e| RaftStoreError::Usage(e.to_string()))
}

impl Node {
    /// Opens the node's storage and starts its `Raft`.
    pub async fn start(opts: &NodeOptions) -> Result<Node> {
        let (log, sm) = open_node_with(&opts.dir, opts.id, opts.schema.clone())?;
        let state = sm.reader();
        let config = Arc::new(raft_config(opts.snapshot_logs)?);
        let raft = Raft::new(opts.id, config, Network, log, sm)
            .await
            .map_err(|e| RaftStoreError::Raft(e.to_string()))?;
        Ok(Node {
            raft,
            state,
            id: opts.id,
        })
    }

    /// Serves RPCs and clients on `listener` until the process ends.
    pub async fn serve(self, listener: TcpListener) -> Result<()> {
        loop {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(|source| RaftStoreError::Net {
                    context: "accept".to_owned(),
                    source,
                })?;
            let node = self.clone();
            tokio::spawn(async move {
                // A broken connection ends only itself.
                let _ = node.connection(stream).await;
            });
        }
    }

    async fn connection(&self, mut stream: TcpStream) -> Result<()> {
        stream
            .set_nodelay(true)
            .map_err(|source| RaftStoreError::Net {
                context: "set nodelay".to_owned(),
                source,
            })?;
        while let Some((req, len)) = read_frame_sized::<WireRequest>(&mut stream).await? {
            let reply = match req {
                // Every log entry must fit in an `AppendEntries` frame.
                WireRequest::Client(_) if len > MAX_CLIENT_FRAME => {
                    WireReply::Client(ClientReply::TooLarge {
                        bytes: u64::from(len),
                        max: u64::from(MAX_CLIENT_FRAME),
                    })
                }
                req => self.handle(req).await,
            };
            let frame = match (encode_frame(&reply), reply) {
                (Ok(frame), _) => frame,
                // A reply too long for a frame (a huge value or query
                // result) is refused, and the connection goes on.
                (Err(RaftStoreError::FrameTooLarge { bytes, max }), WireReply::Client(_)) => {
                    encode_frame(&WireReply::Client(ClientReply::TooLarge { bytes, max }))?
                }
                (Err(e), _) => return Err(e),
            };
            send_frame(&mut stream, &frame).await?;
        }
        Ok(())
    }

    async fn handle(&self, req: WireRequest) -> WireReply {
        match req {
            WireRequest::AppendEntries(r) => {
                WireReply::AppendEntries(self.raft.append_entries(r).await)
            }
            WireRequest::Vote(r) => WireReply::Vote(self.raft.vote(r).await),
            WireRequest::InstallSnapshot(r) => {
                WireReply::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            WireRequest::Client(c) => WireReply::Client(self.client(c).await),
        }
    }

    async fn write(&self, req: Request) -> ClientReply {
        // Refused here, not logged: a node with an index would stop at it
        // (see `Request::index_owned_key`).
        let indexed = self.state.engine().index().is_some();
        if let Some(key) = req
            .reserved_key()
            .or_else(|| req.index_owned_key().filter(|_| indexed))
        {
            return reserved(key);
        }
        match self.raft.client_write(req).await {
            Ok(resp) => match resp.data {
                Response::Applied => ClientReply::Written {
                    index: resp.log_id.index,
                },
                Response::ReservedKey { key } => reserved(key),
                Response::DocumentRefused { doc, refusal } => ClientReply::DocumentRefused {
                    index: resp.log_id.index,
                    doc,
                    refusal,
                },
            },
            Err(e) => match e.forward_to_leader() {
                Some(f) => ClientReply::NotLeader {
                    leader_id: f.leader_id,
                    leader_addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
                },
                None => ClientReply::Failed(e.to_string()),
            },
        }
    }

    async fn client(&self, req: ClientRequest) -> ClientReply {
        match req {
            ClientRequest::Put { key, value } => self.write(Request::Put { key, value }).await,
            ClientRequest::Delete { key } => self.write(Request::Delete { key }).await,
            ClientRequest::UpsertDoc { doc, fields } => match self.fingerprint() {
                Ok(schema) => {
                    self.write(Request::UpsertDoc {
                        schema,
                        doc,
                        fields,
                    })
                    .await
                }
                Err(reply) => reply,
            },
            ClientRequest::PatchDoc { doc, fields } => match self.fingerprint() {
                Ok(schema) => {
                    self.write(Request::PatchDoc {
                        schema,
                        doc,
                        fields,
                    })
                    .await
                }
                Err(reply) => reply,
            },
            ClientRequest::DeleteDoc { doc } => match self.fingerprint() {
                Ok(schema) => self.write(Request::DeleteDoc { schema, doc }).await,
                Err(reply) => reply,
            },
            ClientRequest::GetDoc { doc, linearizable } => {
                if let Some(reply) = self.read_barrier(linearizable).await {
                    return reply;
                }
                self.with_index(|index| {
                    Ok(ClientReply::Document(
                        index.get(doc)?.as_ref().map(json_document),
                    ))
                })
            }
            ClientRequest::Query {
                filter,
                sort,
                descending,
                limit,
                fields,
                linearizable,
            } => {
                if let Some(reply) = self.read_barrier(linearizable).await {
                    return reply;
                }
                self.with_index(|index| {
                    let mut q = silo_engine::Query::new(
                        silo_engine::Filter::parse(&filter, index.schema())?,
                        limit,
                    );
                    if let Some(field) = &sort {
                        let order = if descending {
                            silo_engine::Order::Descending
                        } else {
                            silo_engine::Order::Ascending
                        };
                        q = q.sorted_by(field, order);
                    }
                    q.fields.clone_from(&fields);
                    let result = index.query(&q)?;
                    let hits = result
                        .hits
                        .into_iter()
                        .map(|hit| DocHit {
                            doc: hit.doc,
                            fields: fields
                                .iter()
                                .zip(&hit.fields)
                                .filter_map(|(name, v)| {
                                    v.as_ref()
                                        .map(|v| (name.clone(), crate::documents::json_of(v)))
                                })
                                .collect(),
                        })
                        .collect();
                    Ok(ClientReply::Hits(hits))
                })
            }
            ClientRequest::Count {
                filter,
                linearizable,
            } => {
                if let Some(reply) = self.read_barrier(linearizable).await {
                    return reply;
                }
                self.with_index(|index| {
                    let filter = silo_engine::Filter::parse(&filter, index.schema())?;
                    Ok(ClientReply::Count(index.count(&filter)?))
                })
            }
            ClientRequest::Get { key, linearizable } => {
                if let Some(reply) = self.read_barrier(linearizable).await {
                    return reply;
                }
                // Beside an index, keys outside the user window are the
                // index's own.
                if self.state.engine().index().is_some() && !user_key_allowed(key, true) {
                    return reserved(key);
                }
                match self.state.get(key) {
                    Ok(v) => ClientReply::Value(v),
                    Err(e) => ClientReply::Failed(e.to_string()),
                }
            }
            ClientRequest::Init { members } => {
                let members: BTreeMap<NodeId, BasicNode> = members
                    .into_iter()
                    .map(|(id, addr)| (id, BasicNode::new(addr)))
                    .collect();
                match self.raft.initialize(members).await {
                    Ok(()) => ClientReply::Done,
                    Err(e) => ClientReply::Failed(e.to_string()),
                }
            }
            ClientRequest::AddLearner { id, addr } => {
                match self.raft.add_learner(id, BasicNode::new(addr), true).await {
                    Ok(r) => ClientReply::Written {
                        index: r.log_id.index,
                    },
                    Err(e) => ClientReply::Failed(e.to_string()),
                }
            }
            ClientRequest::ChangeMembership { voters } => {
                match self.raft.change_membership(voters, false).await {
                    Ok(r) => ClientReply::Written {
                        index: r.log_id.index,
                    },
                    Err(e) => ClientReply::Failed(e.to_string()),
                }
            }
            ClientRequest::Status => {
                let m = self.raft.metrics().borrow().clone();
                ClientReply::Status(NodeStatus {
                    id: self.id,
                    is_leader: m.state == ServerState::Leader,
                    leader: m.current_leader,
                    term: m.current_term,
                    applied: m.last_applied.map(|l| l.index),
                    purged: m.purged.map(|l| l.index),
                    snapshot: m.snapshot.map(|l| l.index),
                })
            }
            ClientRequest::Digest => match self.digest() {
                Ok(d) => ClientReply::Digest(d),
                Err(e) => ClientReply::Failed(e.to_string()),
            },
        }
    }

    /// For a linearizable read: confirms leadership and waits for the
    /// state machine; the reply to send instead of reading, if any.
    async fn read_barrier(&self, linearizable: bool) -> Option<ClientReply> {
        if !linearizable {
            return None;
        }
        let e = self.raft.ensure_linearizable().await.err()?;
        Some(match e.forward_to_leader() {
            Some(f) => ClientReply::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
            },
            None => ClientReply::Failed(e.to_string()),
        })
    }

    /// The fingerprint of this node's index schema, stamped on the
    /// document commands it proposes (`Failed` without an index: nothing
    /// is proposed).
    fn fingerprint(&self) -> std::result::Result<u32, ClientReply> {
        self.state
            .engine()
            .index()
            .map(|index| schema_fingerprint(index.schema()))
            .ok_or_else(no_index)
    }

    /// Runs `read` on the live index (`Failed` without one).
    fn with_index(
        &self,
        read: impl FnOnce(&silo_engine::Index) -> silo_engine::Result<ClientReply>,
    ) -> ClientReply {
        let store = self.state.engine();
        let Some(index) = store.index() else {
            return no_index();
        };
        read(index).unwrap_or_else(|e| ClientReply::Failed(e.to_string()))
    }

    /// The digest of the live state machine, from one point in time.
    fn digest(&self) -> Result<StateDigest> {
        let engine = self.state.engine();
        let snap = engine.snapshot()?;
        let mut pairs = Vec::new();
        for kv in snap.iter() {
            let (k, v) = kv?;
            if k < RESERVED_FROM {
                pairs.push((k, v));
            }
        }
        let applied: Option<openraft::LogId<NodeId>> = match snap.get(SM_APPLIED_KEY)? {
            Some(b) => Some(decode_record("last applied log id", SM_APPLIED_KEY, &b)?),
            None => None,
        };
        let applied = applied.map(|l| l.index);
        Ok(digest_of(applied, pairs))
    }
}

fn reserved(key: u64) -> ClientReply {
    ClientReply::Failed(format!(
        "key {key:#x} is reserved (user keys are below {RESERVED_FROM:#x}, and with an index \
         from {INDEXED_USER_KEYS_FROM:#x} to {INDEXED_USER_KEYS_TO:#x})"
    ))
}

fn no_index() -> ClientReply {
    ClientReply::Failed("this node has no index schema (start it with --schema)".to_owned())
}

/// Opens the node, binds its address and serves until the process ends.
pub async fn run(opts: NodeOptions) -> Result<()> {
    let listener = TcpListener::bind(&opts.listen)
        .await
        .map_err(|source| RaftStoreError::Net {
            context: format!("listen on {}", opts.listen),
            source,
        })?;
    let node = Node::start(&opts).await?;
    node.serve(listener).await
}

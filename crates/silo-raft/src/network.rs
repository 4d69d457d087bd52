//! openraft's network over the wire protocol: one connection per target,
//! kept open and reopened after a failure.

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::net::TcpStream;

use crate::error::RaftStoreError;
use crate::types::{NodeId, TypeConfig};
use crate::wire::{WireReply, WireRequest, read_frame, write_frame};

/// Makes a [`Connection`] to each peer.
#[derive(Clone, Debug, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            stream: None,
        }
    }
}

/// A connection to one peer.
#[derive(Debug)]
pub struct Connection {
    target: NodeId,
    addr: String,
    stream: Option<TcpStream>,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, E>;

impl Connection {
    /// Sends `req` and reads the reply, on the kept connection or a new one.
    async fn round_trip<E: std::error::Error>(
        &mut self,
        req: &WireRequest,
        option: &RPCOption,
    ) -> Result<WireReply, RpcErr<E>> {
        let stream = match self.stream.take() {
            Some(s) => s,
            None => {
                let s = tokio::time::timeout(option.hard_ttl(), TcpStream::connect(&self.addr))
                    .await
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
                // Small frames must not wait for Nagle.
                s.set_nodelay(true)
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
                s
            }
        };
        let mut stream = stream;
        let exchange = async {
            write_frame(&mut stream, req).await?;
            read_frame::<WireReply>(&mut stream).await?.ok_or_else(|| {
                RaftStoreError::Protocol(format!("{} closed the connection", self.addr))
            })
        };
        match tokio::time::timeout(option.hard_ttl(), exchange).await {
            Ok(Ok(reply)) => {
                self.stream = Some(stream);
                Ok(reply)
            }
            Ok(Err(e)) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(elapsed) => Err(RPCError::Network(NetworkError::new(&elapsed))),
        }
    }

    fn unexpected<E: std::error::Error>(&self, reply: &WireReply) -> RpcErr<E> {
        let e = RaftStoreError::Protocol(format!("unexpected reply from {}: {reply:?}", self.addr));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        match self
            .round_trip(&WireRequest::AppendEntries(rpc), &option)
            .await?
        {
            WireReply::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        match self
            .round_trip(&WireRequest::InstallSnapshot(rpc), &option)
            .await?
        {
            WireReply::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        match self.round_trip(&WireRequest::Vote(rpc), &option).await? {
            WireReply::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }
}

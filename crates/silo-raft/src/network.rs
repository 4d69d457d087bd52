//! openraft's network over the wire protocol: one connection per target,
//! kept open and reopened after a failure.

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::net::TcpStream;

use crate::error::RaftStoreError;
use crate::types::{NodeId, TypeConfig};
use crate::wire::{
    MAX_CLIENT_FRAME, MAX_FRAME, WireReply, WireRequest, encode_frame, read_frame, send_frame,
};

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
        let frame = encode_frame(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send_encoded(&frame, option).await
    }

    /// Sends one encoded frame and reads the reply.
    async fn send_encoded<E: std::error::Error>(
        &mut self,
        frame: &[u8],
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
            send_frame(&mut stream, frame).await?;
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

/// The most bytes an `AppendEntries` frame of more than one entry carries:
/// one entry of the longest client request and its framing. openraft gives
/// the call one heartbeat interval (100 ms here) to be sent, decoded,
/// appended and synced, or times it out and sends it again, the same.
pub(crate) const APPEND_BUDGET: u64 = MAX_CLIENT_FRAME as u64 + (64 << 10);

/// How many of `entries` entries to send at a time when they took `bytes`
/// together: the share that fits in [`APPEND_BUDGET`], at least one and
/// fewer than `entries` (a client frame is at most `MAX_CLIENT_FRAME`, so
/// one entry always fits in a frame).
fn too_large(entries: usize, bytes: u64) -> PayloadTooLarge {
    const _: () = assert!(APPEND_BUDGET < MAX_FRAME as u64);
    let fit = (entries as u64).saturating_mul(APPEND_BUDGET) / bytes.max(1);
    PayloadTooLarge::new_entries_hint(fit.clamp(1, entries as u64 - 1))
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        let entries = rpc.entries.len();
        let frame = match encode_frame(&WireRequest::AppendEntries(rpc)) {
            Ok(frame) if frame.len() as u64 > APPEND_BUDGET && entries > 1 => {
                return Err(too_large(entries, frame.len() as u64).into());
            }
            Ok(frame) => frame,
            Err(RaftStoreError::FrameTooLarge { bytes, .. }) if entries > 1 => {
                return Err(too_large(entries, bytes).into());
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        match self.send_encoded(&frame, &option).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_append_is_split_into_parts_that_fit() {
        // 300 entries of eight budgets' worth: an eighth each time.
        assert_eq!(too_large(300, 8 * APPEND_BUDGET).entries_hint(), 37);
        // Never all of them, never none.
        assert_eq!(too_large(2, u64::from(MAX_FRAME) + 1).entries_hint(), 1);
        assert_eq!(too_large(2, APPEND_BUDGET + 1).entries_hint(), 1);
        assert_eq!(too_large(10, u64::MAX).entries_hint(), 1);
        assert_eq!(too_large(10, 0).entries_hint(), 9);
    }

    #[test]
    fn a_frame_over_the_limit_is_a_typed_error() {
        use openraft::testing::log_id;
        use openraft::{Entry, EntryPayload, Vote};

        use crate::types::Request;

        // Two entries that fit in a frame each, but not in one together.
        let value = vec![0_u8; (MAX_FRAME / 4) as usize];
        let entry = |i| Entry::<TypeConfig> {
            log_id: log_id(1, 1, i),
            payload: EntryPayload::Normal(Request::Put {
                key: i,
                value: value.clone(),
            }),
        };
        let req = |entries| {
            WireRequest::AppendEntries(AppendEntriesRequest {
                vote: Vote::new_committed(1, 1),
                prev_log_id: None,
                leader_commit: None,
                entries,
            })
        };
        assert!(encode_frame(&req(vec![entry(1)])).is_ok());
        match encode_frame(&req(vec![entry(1), entry(2)])) {
            Err(RaftStoreError::FrameTooLarge { bytes, max }) => {
                assert_eq!(max, u64::from(MAX_FRAME));
                assert!(bytes > max, "{bytes}");
            }
            other => panic!("expected FrameTooLarge, got {:?}", other.map(|f| f.len())),
        }
    }
}

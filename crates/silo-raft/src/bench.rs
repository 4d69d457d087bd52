//! Write throughput and commit latency: replicated puts through a running
//! cluster's leader, and single-node silo `Sync` puts for comparison
//! (`silo-raft bench` and `silo-raft bench-local`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use silo_core::{Durability, WriteOptions};
use silo_engine::{Engine, EngineOptions};
use tokio::net::TcpStream;

use crate::error::{RaftStoreError, Result};
use crate::wire::{
    ClientReply, ClientRequest, WireReply, WireRequest, client_call, read_frame, write_frame,
};

/// What a bench run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// Concurrent clients.
    pub clients: usize,
    /// Writes acknowledged.
    pub writes: u64,
    /// Writes per second over the whole run.
    pub writes_per_sec: f64,
    /// Median latency of one write, in microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, in microseconds.
    pub p99_us: u64,
}

fn report(clients: usize, mut lat: Vec<Duration>, elapsed: Duration) -> BenchReport {
    lat.sort();
    let pick = |q: usize| {
        lat.get((lat.len() * q / 100).min(lat.len().saturating_sub(1)))
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    };
    BenchReport {
        clients,
        writes: lat.len() as u64,
        writes_per_sec: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: pick(50),
        p99_us: pick(99),
    }
}

/// The address of the leader among `addrs`.
async fn leader(addrs: &[String]) -> Result<String> {
    for addr in addrs {
        if let Ok(ClientReply::Status(s)) = client_call(addr, ClientRequest::Status).await
            && s.is_leader
        {
            return Ok(addr.clone());
        }
    }
    Err(RaftStoreError::Raft(
        "no node among the addresses is the leader".to_owned(),
    ))
}

/// `clients` concurrent clients each put `writes` values of `value_len`
/// bytes through the leader, one at a time on a kept connection.
pub async fn replicated(
    addrs: &[String],
    clients: usize,
    writes: usize,
    value_len: usize,
) -> Result<BenchReport> {
    let leader = leader(addrs).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let leader = leader.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream =
                TcpStream::connect(&leader)
                    .await
                    .map_err(|source| RaftStoreError::Net {
                        context: format!("connect {leader}"),
                        source,
                    })?;
            stream
                .set_nodelay(true)
                .map_err(|source| RaftStoreError::Net {
                    context: "set nodelay".to_owned(),
                    source,
                })?;
            let mut lat = Vec::with_capacity(writes);
            for i in 0..writes {
                let key = (c * writes + i) as u64;
                let req = WireRequest::Client(ClientRequest::Put {
                    key,
                    value: vec![0x5a; value_len],
                });
                let t = Instant::now();
                write_frame(&mut stream, &req).await?;
                match read_frame::<WireReply>(&mut stream).await? {
                    Some(WireReply::Client(ClientReply::Written { .. })) => lat.push(t.elapsed()),
                    other => {
                        return Err(RaftStoreError::Raft(format!("put {key}: {other:?}")));
                    }
                }
            }
            Ok::<_, RaftStoreError>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let lat = t
            .await
            .map_err(|e| RaftStoreError::Raft(format!("bench client: {e}")))??;
        all.extend(lat);
    }
    Ok(report(clients, all, start.elapsed()))
}

/// The same load on one silo engine in `dir` (one shard, as the state
/// machine): `clients` threads each doing `writes` `Sync` puts.
pub fn local_sync(
    dir: &Path,
    clients: usize,
    writes: usize,
    value_len: usize,
) -> Result<BenchReport> {
    let engine = Engine::open(
        dir,
        EngineOptions {
            shards: Some(1),
            compaction_threads: Some(1),
            ..EngineOptions::default()
        },
    )?;
    let start = Instant::now();
    let results: Vec<Result<Vec<Duration>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let engine = &engine;
                s.spawn(move || {
                    let value = vec![0x5a; value_len];
                    let mut lat = Vec::with_capacity(writes);
                    for i in 0..writes {
                        let t = Instant::now();
                        engine.put_with(
                            (c * writes + i) as u64,
                            &value,
                            WriteOptions::durability(Durability::Sync),
                        )?;
                        lat.push(t.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(RaftStoreError::Raft("bench thread panicked".to_owned()))
                })
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    engine.close()?;
    Ok(report(clients, all, elapsed))
}

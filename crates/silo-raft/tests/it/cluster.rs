//! Three `silo-raft` processes on 127.0.0.1: writes through the leader, the
//! leader killed with SIGKILL, a new leader, more writes, the old leader
//! restarted and caught up (from a snapshot: the log it missed is purged),
//! and every node's state machine equal to what was acknowledged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use silo_raft::wire::{
    ClientReply, ClientRequest, NodeStatus, StateDigest, client_call, digest_of,
};

/// Applied entries between snapshots in this test (small, so the log the
/// killed node misses is purged before it returns).
const SNAPSHOT_LOGS: u64 = 40;

pub(crate) struct Cluster {
    pub(crate) root: PathBuf,
    pub(crate) addrs: BTreeMap<u64, String>,
    pub(crate) children: BTreeMap<u64, Child>,
    /// A schema file every node is started with (`--schema`), if any.
    pub(crate) schema: Option<PathBuf>,
}

impl Cluster {
    /// Three nodes under `root`, on free ports, none started yet.
    pub(crate) fn new(root: &Path, schema: Option<PathBuf>) -> Cluster {
        Cluster {
            root: root.to_owned(),
            addrs: free_addrs(3),
            children: BTreeMap::new(),
            schema,
        }
    }

    fn peers(&self) -> String {
        self.addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn start(&mut self, id: u64) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_silo-raft"));
        if let Some(schema) = &self.schema {
            cmd.arg("--schema").arg(schema);
        }
        let child = cmd
            .args(["--id", &id.to_string()])
            .arg("--dir")
            .arg(self.root.join(format!("node{id}")))
            .args(["--listen", &self.addrs[&id]])
            .args(["--peers", &self.peers()])
            .args(["--snapshot-logs", &SNAPSHOT_LOGS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A node prints only a fatal error; it shows in the test output.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn silo-raft");
        self.children.insert(id, child);
    }

    pub(crate) fn kill(&mut self, id: u64) {
        let mut child = self.children.remove(&id).expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn free_addrs(n: u64) -> BTreeMap<u64, String> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    (1..=n)
        .zip(&listeners)
        .map(|(id, l)| (id, l.local_addr().expect("addr").to_string()))
        .collect()
}

pub(crate) async fn status(addr: &str) -> Option<NodeStatus> {
    match client_call(addr, ClientRequest::Status).await {
        Ok(ClientReply::Status(s)) => Some(s),
        _ => None,
    }
}

async fn digest(addr: &str) -> Option<StateDigest> {
    match client_call(addr, ClientRequest::Digest).await {
        Ok(ClientReply::Digest(d)) => Some(d),
        _ => None,
    }
}

/// Polls until a node among `ids` leads in a term above `after_term`; its id and term.
pub(crate) async fn wait_leader(
    c: &Cluster,
    ids: &[u64],
    after_term: u64,
    deadline: Instant,
) -> (u64, u64) {
    loop {
        for id in ids {
            if let Some(s) = status(&c.addrs[id]).await
                && s.is_leader
                && s.term > after_term
            {
                return (*id, s.term);
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a write, following redirects and retrying (writes are idempotent
/// here) until it is acknowledged; returns its log index.
pub(crate) async fn write(
    c: &Cluster,
    alive: &[u64],
    req: ClientRequest,
    deadline: Instant,
) -> u64 {
    match write_reply(c, alive, req, deadline).await {
        ClientReply::Written { index } => index,
        other => panic!("expected Written, got {other:?}"),
    }
}

/// As [`write`], returning the leader's reply (`Written` or a refusal).
pub(crate) async fn write_reply(
    c: &Cluster,
    alive: &[u64],
    req: ClientRequest,
    deadline: Instant,
) -> ClientReply {
    let mut addr = c.addrs[&alive[0]].clone();
    let mut next = 0;
    loop {
        match client_call(&addr, req.clone()).await {
            Ok(reply @ (ClientReply::Written { .. } | ClientReply::DocumentRefused { .. })) => {
                return reply;
            }
            Ok(ClientReply::NotLeader {
                leader_addr: Some(leader),
                ..
            }) if c
                .addrs
                .iter()
                .any(|(id, a)| *a == leader && alive.contains(id)) =>
            {
                addr = leader;
                continue;
            }
            _ => {
                next = (next + 1) % alive.len();
                addr = c.addrs[&alive[next]].clone();
            }
        }
        assert!(Instant::now() < deadline, "write {req:?} not acknowledged",);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write_range(
    c: &Cluster,
    alive: &[u64],
    keys: std::ops::Range<u64>,
    expected: &mut BTreeMap<u64, Vec<u8>>,
    deadline: Instant,
) -> u64 {
    let mut last = 0;
    for key in keys {
        let value = format!("value-{key}-{}", key * 7).into_bytes();
        last = write(
            c,
            alive,
            ClientRequest::Put {
                key,
                value: value.clone(),
            },
            deadline,
        )
        .await;
        expected.insert(key, value);
        if key % 10 == 3 {
            // Every tenth key is deleted again.
            last = write(c, alive, ClientRequest::Delete { key: key - 1 }, deadline).await;
            expected.remove(&(key - 1));
        }
    }
    last
}

/// A deadline `secs` seconds from now: ten times that under a sanitizer
/// (`SILO_SANITIZER`, set by `cargo xtask sanitize`), where every process
/// of the cluster runs instrumented, many times slower.
pub(crate) fn deadline_in(secs: u64) -> Instant {
    let scale = if std::env::var_os("SILO_SANITIZER").is_some() {
        10
    } else {
        1
    };
    Instant::now() + Duration::from_secs(secs * scale)
}

/// Starts nodes 1 to 3, waits until each answers, initializes the
/// cluster and waits for a leader: its id and term.
pub(crate) async fn start_cluster(c: &mut Cluster, deadline: Instant) -> (u64, u64) {
    for id in 1..=3 {
        c.start(id);
    }
    for id in 1..=3 {
        while status(&c.addrs[&id]).await.is_none() {
            assert!(Instant::now() < deadline, "node {id} never answered",);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let init = client_call(
        &c.addrs[&1],
        ClientRequest::Init {
            members: c.addrs.clone(),
        },
    )
    .await
    .expect("init call");
    assert_eq!(init, ClientReply::Done);
    wait_leader(c, &[1, 2, 3], 0, deadline).await
}

/// The names under `dir` at every depth, sorted.
fn dir_listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

pub(crate) fn data_dir_exists(root: &Path, id: u64) -> bool {
    root.join(format!("node{id}/NODE")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_a_killed_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::new(dir.path(), None);
    let deadline = deadline_in(25);
    let all = [1, 2, 3];
    let (leader, term) = start_cluster(&mut c, deadline).await;

    let mut expected = BTreeMap::new();
    let before_kill = write_range(&c, &all, 0..30, &mut expected, deadline).await;

    // SIGKILL the leader; the other two elect a new one.
    c.kill(leader);
    let alive: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    let (new_leader, _) = wait_leader(&c, &alive, term, deadline).await;
    assert_ne!(new_leader, leader);
    // Enough writes that the new leader snapshots and purges past what the
    // old one holds.
    write_range(&c, &alive, 30..130, &mut expected, deadline).await;

    // Restart the old leader on its directory; it catches up.
    assert!(data_dir_exists(&c.root, leader));
    c.start(leader);
    let want = digest_of(None, expected.clone().into_iter().collect());
    let digests = loop {
        let mut ds = Vec::new();
        for id in all {
            ds.push(digest(&c.addrs[&id]).await);
        }
        let done = ds.iter().all(|d| {
            d.is_some_and(|d| {
                d.keys == want.keys
                    && d.crc == want.crc
                    && d.applied == ds[0].and_then(|x| x.applied)
            })
        });
        if done {
            break ds;
        }
        assert!(
            Instant::now() < deadline,
            "state machines differ: {ds:?}, want {want:?}",
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");

    // The restarted node got the state it missed from a snapshot: its log
    // was purged past the entries it held before it was killed.
    let restarted = status(&c.addrs[&leader]).await.expect("status");
    assert!(
        restarted.snapshot.is_some_and(|s| s > before_kill),
        "{restarted:?} (held up to {before_kill} before the kill)"
    );

    // A node started on another node's directory refuses to run.
    let spare = free_addrs(1);
    let out = Command::new(env!("CARGO_BIN_EXE_silo-raft"))
        .args(["--id", "9", "--listen", &spare[&1]])
        .arg("--dir")
        .arg(c.root.join(format!("node{new_leader}")))
        .args(["--peers", &c.peers()])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("belongs to node {new_leader}, not node 9")),
        "{err}"
    );
    // A second process for the same node, on its directory while it runs,
    // refuses to run before it sweeps or writes anything there.
    let node_dir = c.root.join(format!("node{new_leader}"));
    let before = dir_listing(&node_dir);
    let out = Command::new(env!("CARGO_BIN_EXE_silo-raft"))
        .args(["--id", &new_leader.to_string(), "--listen", &spare[&1]])
        .arg("--dir")
        .arg(&node_dir)
        .args(["--peers", &c.peers()])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is held by another open store"), "{err}");
    assert_eq!(dir_listing(&node_dir), before);

    // A write longer than a log entry may be (every entry must replicate
    // within openraft's time for one call) is refused whole.
    let zeros = usize::try_from(silo_raft::wire::MAX_CLIENT_FRAME / 2 + 1024).expect("fits");
    let got = client_call(
        &c.addrs[&new_leader],
        ClientRequest::Put {
            key: 7,
            value: vec![0; zeros],
        },
    )
    .await
    .expect("a reply");
    assert!(
        matches!(got, ClientReply::TooLarge { bytes, max }
            if bytes > max && max == u64::from(silo_raft::wire::MAX_CLIENT_FRAME)),
        "{got:?}"
    );

    // Every acknowledged write reads back through the leader, linearizably.
    let (now_leader, _) = wait_leader(&c, &all, 0, deadline).await;
    for key in 0..130 {
        let got = client_call(
            &c.addrs[&now_leader],
            ClientRequest::Get {
                key,
                linearizable: true,
            },
        )
        .await
        .expect("get");
        assert_eq!(
            got,
            ClientReply::Value(expected.get(&key).cloned()),
            "key {key}"
        );
    }
}

/// A follower that missed more log than one `AppendEntries` can carry in
/// openraft's time for it catches up: the leader's call is split
/// (openraft's `PayloadTooLarge`) instead of timing out on every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_by_more_than_one_append_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::new(dir.path(), None);
    let deadline = deadline_in(60);
    let all = [1, 2, 3];
    let (leader, _) = start_cluster(&mut c, deadline).await;
    let follower = all
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    c.kill(follower);
    let alive: Vec<u64> = all.iter().copied().filter(|id| *id != follower).collect();
    // 24 puts of 512 KiB: each 1.5 MiB of JSON, 36 MiB together (nine
    // times `APPEND_BUDGET`), and fewer entries than a snapshot is taken
    // after.
    let big: u64 = 1 << 19;
    let mut last = 0;
    for key in 0..24_u64 {
        let value: Vec<u8> = (0..big)
            .map(|i| b"0123456789"[((i ^ key) % 10) as usize])
            .collect();
        let req = ClientRequest::Put { key, value };
        last = write(&c, &alive, req, deadline).await;
    }
    assert!(last < SNAPSHOT_LOGS, "the follower must catch up by log");
    c.start(follower);
    loop {
        let want = digest(&c.addrs[&leader]).await;
        let got = digest(&c.addrs[&follower]).await;
        if want.is_some() && got == want {
            let s = status(&c.addrs[&follower]).await.expect("status");
            assert_eq!(s.snapshot, None, "caught up by log, not by snapshot");
            assert_eq!(got.expect("digest").keys, 24);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never caught up: {got:?} vs {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! Snapshots: built from a checkpoint, installed on another node; a
//! snapshot with a bad checksum is refused and the state machine stays as
//! it was.

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log_id;
use silo_raft::{RaftStoreError, Request, SnapshotFile, open_node};

use crate::node_dir::{entry, put_entries};

#[tokio::test]
async fn snapshot_moves_state_and_bad_checksum_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_l1, mut leader) = open_node(&dir.path().join("n1"), 1).expect("opens n1");
    let (_l2, mut follower) = open_node(&dir.path().join("n2"), 2).expect("opens n2");
    let entries: Vec<_> = put_entries(1..=200, |i| i.to_le_bytes().repeat(125));
    leader.apply(entries).await.expect("apply");
    follower
        .apply(vec![entry(
            1,
            Request::Put {
                key: 9999,
                value: b"old".to_vec(),
            },
        )])
        .await
        .expect("apply");
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("builds");
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 1, 200)));

    // A corrupt copy: one byte of file data flipped near the middle.
    let good_path = snap.snapshot.path().to_owned();
    let mut bytes = std::fs::read(&good_path).expect("read archive");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    let bad_path = dir.path().join("bad.snap");
    std::fs::write(&bad_path, &bytes).expect("write");
    let bad = SnapshotFile::open_read(&bad_path).expect("open");
    let generation = follower.generation();
    match follower.install_archive(&snap.meta, &bad) {
        Err(RaftStoreError::ChecksumMismatch { .. }) => {}
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert_eq!(follower.generation(), generation);
    assert_eq!(
        follower.engine().get(9999).expect("get").as_deref(),
        Some(&b"old"[..])
    );
    let (applied, _) = follower.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 1)));
    // Through openraft's entry point it is an error too.
    let bad = SnapshotFile::open_read(&bad_path).expect("open");
    assert!(
        follower
            .install_snapshot(&snap.meta, Box::new(bad))
            .await
            .is_err()
    );
    assert!(
        follower
            .get_current_snapshot()
            .await
            .expect("current")
            .is_none()
    );

    // The good one installs and replaces the state machine whole.
    follower
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("installs");
    assert_eq!(follower.generation(), generation + 1);
    assert_eq!(follower.engine().get(9999).expect("get"), None);
    assert_eq!(
        follower.engine().get(200).expect("get"),
        Some(200_u64.to_le_bytes().repeat(125))
    );
    let (applied, _) = follower.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 200)));
    let current = follower
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    assert_eq!(current.meta, snap.meta);
    drop(follower);
    drop(_l2);
    // Reopen: the installed generation is the live one.
    let (_l2, mut follower) = open_node(&dir.path().join("n2"), 2).expect("reopens");
    let (applied, _) = follower.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 200)));
}

#[tokio::test]
async fn an_install_cut_off_before_the_pointer_is_finished_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_l1, mut leader) = open_node(&dir.path().join("n1"), 1).expect("opens n1");
    let entries: Vec<_> = put_entries(1..=20, |i| i.to_le_bytes().to_vec());
    leader.apply(entries).await.expect("apply");
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("builds");
    let n2 = dir.path().join("n2");
    drop(open_node(&n2, 2).expect("creates n2"));
    // As if an install had published the archive and stopped before
    // switching `sm/CURRENT`.
    std::fs::copy(
        snap.snapshot.path(),
        n2.join("snap").join(silo_raft::CURRENT_SNAPSHOT),
    )
    .expect("copy");
    let (_l2, mut follower) = open_node(&n2, 2).expect("reopens n2");
    let (applied, _) = follower.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 20)));
    assert_eq!(follower.generation(), 2);
    assert_eq!(
        follower.engine().get(7).expect("get"),
        Some(7_u64.to_le_bytes().to_vec())
    );
}

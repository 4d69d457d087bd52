//! Node directories: reopen keeps the vote, the log and the applied state;
//! a directory of another node is refused with a typed error.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::log_id;
use openraft::{Entry, EntryPayload, RaftLogReader, Vote};
use silo_raft::{RaftStoreError, Request, Response, TypeConfig, open_node};

/// A normal entry holding `req` at `index` (term 1, leader 1).
pub(crate) fn entry(index: u64, req: Request) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(req),
    }
}

/// Normal entries for the indexes in `range`, entry `i` putting `value(i)`
/// at key `i`.
pub(crate) fn put_entries(
    range: std::ops::RangeInclusive<u64>,
    value: impl Fn(u64) -> Vec<u8>,
) -> Vec<Entry<TypeConfig>> {
    range
        .map(|i| {
            entry(
                i,
                Request::Put {
                    key: i,
                    value: value(i),
                },
            )
        })
        .collect()
}

/// Appends `entries` and waits for the flusher's callback (the sync).
pub(crate) async fn append(log: &mut silo_raft::LogStore, entries: Vec<Entry<TypeConfig>>) {
    log.blocking_append(entries).await.expect("append, synced");
}

#[tokio::test]
async fn reopen_keeps_vote_log_and_applied_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("n1");
    {
        let (mut log, mut sm) = open_node(&node, 1).expect("opens");
        log.save_vote(&Vote::new(3, 1)).await.expect("vote");
        let entries: Vec<_> = put_entries(1..=5, |i| i.to_le_bytes()[..3].to_vec());
        append(&mut log, entries.clone()).await;
        log.save_committed(Some(log_id(1, 1, 4)))
            .await
            .expect("committed");
        let responses = sm.apply(entries[..4].to_vec()).await.expect("apply");
        assert_eq!(responses, vec![Response::Applied; 4]);
    }
    let (mut log, mut sm) = open_node(&node, 1).expect("reopens");
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(1, 1, 4))
    );
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
    assert_eq!(state.last_purged_log_id, None);
    let got = log.try_get_log_entries(1..6).await.expect("entries");
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].log_id, log_id(1, 1, 5));
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 4)));
    assert_eq!(
        sm.engine().get(3).expect("get").as_deref(),
        Some(&[3_u8, 0, 0][..])
    );
    assert_eq!(sm.engine().get(5).expect("get"), None);
}

#[test]
fn another_nodes_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("n1");
    drop(open_node(&node, 1).expect("opens"));
    match open_node(&node, 2) {
        Err(RaftStoreError::NodeIdMismatch {
            expected, found, ..
        }) => assert_eq!((expected, found), (2, 1)),
        other => panic!("expected NodeIdMismatch, got {:?}", other.map(drop)),
    }
    // The right id still opens it.
    drop(open_node(&node, 1).expect("reopens"));
}

#[tokio::test]
async fn reserved_keys_are_refused_by_every_node_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open_node(&dir.path().join("n"), 1).expect("opens");
    let bad = Request::Batch(vec![
        Request::Put {
            key: 1,
            value: b"a".to_vec(),
        },
        Request::Delete { key: u64::MAX },
    ]);
    let r = sm.apply(vec![entry(1, bad)]).await.expect("apply");
    assert_eq!(r, vec![Response::ReservedKey { key: u64::MAX }]);
    assert_eq!(
        sm.engine().get(1).expect("get"),
        None,
        "the batch is refused whole"
    );
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 1)));
}

#[tokio::test]
async fn purge_deletes_entries_and_compacts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _sm) = open_node(&dir.path().join("n"), 1).expect("opens");
    let n = silo_raft::COMPACT_AFTER_PURGED + 10;
    let entries: Vec<_> = (0..n)
        .map(|i| {
            entry(
                i,
                Request::Put {
                    key: i,
                    value: vec![0; 100],
                },
            )
        })
        .collect();
    append(&mut log, entries).await;
    log.purge(log_id(1, 1, n - 5)).await.expect("purge");
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, n - 5)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, n - 1)));
    assert_eq!(log.engine().get(3).expect("get"), None);
    let rest = log.try_get_log_entries(0..n).await.expect("entries");
    assert_eq!(rest.len(), 4);
    // The flusher compacts after the purge; wait for it with a deadline.
    let deadline = crate::cluster::deadline_in(20);
    while log.compactions() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction after purge"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_corrupt_log_entry_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _sm) = open_node(&dir.path().join("n"), 1).expect("opens");
    let entries: Vec<_> = (1..=5)
        .map(|i| entry(i, Request::Delete { key: i }))
        .collect();
    append(&mut log, entries).await;
    // Damage entry 3 in place (a valid silo value that is no log entry).
    log.engine().put(3, b"\x01{\"log_id\":").expect("put");
    match log.entries(1..=5) {
        Err(RaftStoreError::BadRecord { what, key, .. }) => {
            assert_eq!((what, key), ("log entry", 3))
        }
        other => panic!("expected BadRecord, got {other:?}"),
    }
    assert!(log.try_get_log_entries(1..=5).await.is_err());
    // An unknown record version is refused too.
    log.engine().put(4, b"\x07{}").expect("put");
    assert!(matches!(
        log.entries(4..5),
        Err(RaftStoreError::UnsupportedVersion { version: 7, .. })
    ));
    // The entries around them still read.
    assert_eq!(log.entries(1..3).expect("entries").len(), 2);
    assert_eq!(log.entries(5..6).expect("entries").len(), 1);
}

#[test]
fn a_node_directory_in_use_is_locked_and_nothing_in_it_is_swept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("n1");
    let first = open_node(&node, 1).expect("opens");
    // What a running node has in flight: a snapshot being received, a state
    // machine generation being installed.
    let receiving = node.join("snap").join("recv-99.tmp");
    let installing = node.join("sm").join("gen-7");
    std::fs::write(&receiving, b"chunk").expect("write");
    std::fs::create_dir(&installing).expect("mkdir");
    for second in [
        open_node(&node, 1).map(drop),
        silo_raft::StateMachine::open(&node).map(drop),
    ] {
        match second {
            Err(RaftStoreError::Io(silo_io::IoError::Locked { .. })) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(receiving.exists() && installing.exists());
    }
    drop(first);
    // Once it is closed, the next open sweeps the leftovers.
    drop(open_node(&node, 1).expect("reopens"));
    assert!(!receiving.exists() && !installing.exists());
}

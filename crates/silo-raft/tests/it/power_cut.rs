//! Power cuts (silo-io's model: only what a sync made durable survives):
//! whatever a call acknowledged as durable is in the image a reboot finds.

use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log_id;
use openraft::{RaftLogReader, Vote};
use silo_io::fault::{FaultPlan, Unsynced, install};
use silo_raft::open_node;

use crate::node_dir::{append, put_entries};

fn images() -> [Unsynced; 2] {
    [Unsynced::Drop, Unsynced::Scramble { seed: 7 }]
}

#[tokio::test]
async fn acknowledged_vote_entries_and_applies_survive_a_power_cut() {
    for unsynced in images() {
        let root = tempfile::tempdir().expect("tempdir");
        let guard = install(root.path(), FaultPlan::new().track_durability());
        let node = root.path().join("n");
        let (mut log, mut sm) = open_node(&node, 1).expect("opens");
        log.save_vote(&Vote::new(5, 1)).await.expect("vote");
        let entries: Vec<_> = put_entries(1..=10, |i| i.to_le_bytes().to_vec());
        // Acknowledged: the flusher called back after its sync.
        append(&mut log, entries.clone()).await;
        sm.apply(entries[..6].to_vec()).await.expect("apply");
        let out = tempfile::tempdir().expect("tempdir");
        let img = out.path().join("img");
        guard.power_cut_image(&img, unsynced).expect("image");
        drop(guard);
        drop((log, sm));

        let (mut log, mut sm) = open_node(&img.join("n"), 1).expect("image opens");
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(5, 1)));
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 10)));
        assert_eq!(
            log.try_get_log_entries(1..=10)
                .await
                .expect("entries")
                .len(),
            10
        );
        let (applied, _) = sm.applied_state().await.expect("applied");
        assert_eq!(applied, Some(log_id(1, 1, 6)));
        assert_eq!(
            sm.engine().get(6).expect("get"),
            Some(6_u64.to_le_bytes().to_vec())
        );
    }
}

#[tokio::test]
async fn an_installed_snapshot_survives_a_power_cut() {
    for unsynced in images() {
        let root = tempfile::tempdir().expect("tempdir");
        let guard = install(root.path(), FaultPlan::new().track_durability());
        let (_l1, mut leader) = open_node(&root.path().join("n1"), 1).expect("opens n1");
        let (_l2, mut follower) = open_node(&root.path().join("n2"), 2).expect("opens n2");
        let entries: Vec<_> = put_entries(1..=30, |_| vec![1; 64]);
        leader.apply(entries).await.expect("apply");
        let snap = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("builds");
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .expect("installs");
        let out = tempfile::tempdir().expect("tempdir");
        let img = out.path().join("img");
        guard.power_cut_image(&img, unsynced).expect("image");
        drop(guard);

        let (_l, mut back) = open_node(&img.join("n2"), 2).expect("image opens");
        let (applied, _) = back.applied_state().await.expect("applied");
        assert_eq!(applied, Some(log_id(1, 1, 30)));
        assert_eq!(back.engine().get(30).expect("get"), Some(vec![1; 64]));
        let current = back
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        assert_eq!(current.meta, snap.meta);
    }
}

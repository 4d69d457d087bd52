//! openraft's own storage test suite, unchanged, on a fresh directory per test.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use silo_raft::{LogStore, StateMachine, TypeConfig, open_node};
use tempfile::TempDir;

/// Builds a node's storage in a new temporary directory.
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = open_node(&dir.path().join("node"), 0).expect("opens a new node");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite passes");
}

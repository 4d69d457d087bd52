//! Durable operations under injected faults: after a failure at any step of
//! `atomic_replace` the path holds the old or the new bytes, never a mix or
//! nothing; `create_with_header` and friends surface every fault.

use silo_format::header::{FileHeader, FileKind};
use silo_io::durable::{
    atomic_replace, copy_file, create_with_header, hard_link, read_header, remove_file, rename,
    tmp_path,
};
use silo_io::fault::{self, FaultAction, FaultOp, FaultPlan};
use silo_io::{IoError, SiloFile};

const OLD: &[u8] = b"the old manifest, longer than the new one";
const NEW: &[u8] = b"the new manifest";

/// Every step of `atomic_replace`, as the seam sees it, with the contents
/// `path` must hold after that step fails.
fn steps() -> Vec<(&'static str, FaultOp, u64, FaultAction, &'static [u8])> {
    vec![
        ("create tmp", FaultOp::Create, 1, FaultAction::Fail, OLD),
        ("write tmp", FaultOp::Write, 1, FaultAction::Fail, OLD),
        (
            "torn write of tmp",
            FaultOp::Write,
            1,
            FaultAction::Torn { keep: 5 },
            OLD,
        ),
        ("sync tmp", FaultOp::Sync, 1, FaultAction::Fail, OLD),
        ("rename", FaultOp::Rename, 1, FaultAction::Fail, OLD),
        ("sync dir", FaultOp::Sync, 2, FaultAction::Fail, NEW),
    ]
}

#[test]
fn atomic_replace_leaves_old_or_new_after_a_fault_at_each_step() {
    for (name, op, nth, action, expected) in steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("MANIFEST");
        atomic_replace(&path, OLD).unwrap();
        let guard = fault::install(dir.path(), FaultPlan::new().on(op, nth, action));
        let err = atomic_replace(&path, NEW).unwrap_err();
        assert!(err.is_injected(), "{name}: {err}");
        assert_eq!(guard.fired(), 1, "{name}");
        let now = std::fs::read(&path).unwrap();
        assert_eq!(
            now,
            expected,
            "{name}: path holds {:?}",
            String::from_utf8_lossy(&now)
        );
        drop(guard);
        // The leftover tmp is harmless: the next replace overwrites it.
        atomic_replace(&path, NEW).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), NEW, "{name}");
        assert!(!tmp_path(&path).exists(), "{name}");
    }
}

#[test]
fn atomic_replace_counts_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let guard = fault::install(dir.path(), FaultPlan::new());
    atomic_replace(&dir.path().join("M"), NEW).unwrap();
    let counts: Vec<u64> = [
        FaultOp::Create,
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Rename,
    ]
    .iter()
    .map(|&op| guard.count(op))
    .collect();
    assert_eq!(counts, [1, 1, 2, 1]);
}

#[test]
fn create_with_header_surfaces_each_fault() {
    let header = FileHeader::new(FileKind::Data);
    for (op, nth) in [
        (FaultOp::Create, 1),
        (FaultOp::Write, 1),
        (FaultOp::Sync, 1),
        (FaultOp::Rename, 1),
        (FaultOp::Sync, 2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data-1");
        let guard = fault::install(dir.path(), FaultPlan::new().on(op, nth, FaultAction::Fail));
        let err = create_with_header(&path, &header).unwrap_err();
        assert!(
            matches!(&err, IoError::InjectedFault { .. }),
            "{op:?} #{nth}: {err}"
        );
        drop(guard);
        // The file is there with its whole header (only the directory's
        // sync failed), or not at all; either way a retry works or says
        // the file exists.
        if path.exists() {
            assert_eq!((op, nth), (FaultOp::Sync, 2));
            let file = SiloFile::open_read(&path).unwrap();
            assert_eq!(read_header(&file, FileKind::Data).unwrap(), header);
        } else {
            create_with_header(&path, &header).unwrap();
        }
    }
    // A torn header write leaves no file at the path: an interrupted
    // creation is never mistaken for a damaged file (regression: a new
    // engine's batch log torn at creation made every later open fail).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data-1");
    let guard = fault::install(
        dir.path(),
        FaultPlan::new().on(FaultOp::Write, 1, FaultAction::Torn { keep: 20 }),
    );
    create_with_header(&path, &header).unwrap_err();
    drop(guard);
    assert!(!path.exists());
    // The leftover temporary file is replaced by the next creation.
    assert!(tmp_path(&path).exists());
    let file = create_with_header(&path, &header).unwrap();
    assert_eq!(read_header(&file, FileKind::Data).unwrap(), header);
    assert!(!tmp_path(&path).exists());
}

#[test]
fn rename_remove_link_and_copy_go_through_the_seam() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::write(&a, b"bytes").unwrap();
    let guard = fault::install(
        dir.path(),
        FaultPlan::new()
            .on(FaultOp::Rename, 1, FaultAction::Fail)
            .on(FaultOp::Remove, 1, FaultAction::Fail)
            .on(FaultOp::Link, 1, FaultAction::Fail)
            .on(FaultOp::Write, 1, FaultAction::Fail),
    );
    assert!(rename(&a, &dir.path().join("b")).unwrap_err().is_injected());
    assert!(remove_file(&a).unwrap_err().is_injected());
    assert!(
        hard_link(&a, &dir.path().join("c"))
            .unwrap_err()
            .is_injected()
    );
    assert!(
        copy_file(&a, &dir.path().join("d"))
            .unwrap_err()
            .is_injected()
    );
    assert!(a.exists() && !dir.path().join("b").exists() && !dir.path().join("c").exists());
    rename(&a, &dir.path().join("b")).unwrap();
    hard_link(&dir.path().join("b"), &dir.path().join("c")).unwrap();
    assert_eq!(
        copy_file(&dir.path().join("b"), &dir.path().join("d")).unwrap(),
        5
    );
    remove_file(&dir.path().join("b")).unwrap();
    assert_eq!(guard.fired(), 4);
}

#[test]
fn sync_interrupt_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("f")).unwrap();
    let guard = fault::install(
        dir.path(),
        FaultPlan::new().on(FaultOp::Sync, 1, FaultAction::Interrupt),
    );
    file.sync_data().unwrap();
    assert_eq!(guard.count(FaultOp::Sync), 2);
}

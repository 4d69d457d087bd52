//! Preallocation on real file systems (ext4 under the temp dir, tmpfs under
//! `/dev/shm`), and its failure modes.

use std::path::Path;

use silo_io::{AppendMap, IoError, SiloFile};

fn allocate_in(dir: &Path) {
    let file = SiloFile::create_new(&dir.join("prealloc")).unwrap();
    file.write_all_at(b"head", 0).unwrap();
    file.allocate(0, 4 << 20).unwrap();
    assert_eq!(file.len().unwrap(), 4 << 20);
    assert!(
        file.block_bytes().unwrap() >= 4 << 20,
        "blocks are reserved"
    );
    file.allocate(8 << 20, 4096).unwrap();
    assert_eq!(file.len().unwrap(), (8 << 20) + 4096);
    let mut head = [0u8; 4];
    file.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(&head, b"head");
    // A preallocated log can be mapped and written everywhere.
    let mut log = AppendMap::new(&file, 4 << 20).unwrap();
    log.write_at((4 << 20) - 3, b"end").unwrap();
    log.flush_range((4 << 20) - 3, 3).unwrap();
}

#[test]
fn allocate_reserves_blocks_on_the_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    allocate_in(dir.path());
}

#[test]
fn allocate_reserves_blocks_on_tmpfs() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return; // no tmpfs on this system
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    allocate_in(dir.path());
}

#[test]
fn impossible_allocation_is_an_io_error_not_a_later_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("huge")).unwrap();
    let err = file.allocate(0, 1 << 50).unwrap_err();
    let errno = err.raw_os_error();
    assert!(matches!(errno, Some(libc::ENOSPC | libc::EFBIG)), "{err}");
    assert!(
        matches!(
            err,
            IoError::Io {
                op: "fallocate",
                ..
            }
        ),
        "{err}"
    );
    assert!(file.len().unwrap() < 1 << 50);
}

#[test]
fn append_map_refuses_an_unallocated_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("log")).unwrap();
    file.allocate(0, 4096).unwrap();
    let err = AppendMap::new(&file, 8192).unwrap_err();
    assert!(
        matches!(
            err,
            IoError::OutOfBounds {
                offset: 0,
                len: 8192,
                size: 4096
            }
        ),
        "{err}"
    );
}

#[cfg(feature = "fault-injection")]
#[test]
fn injected_allocate_and_set_len_failures_surface() {
    use silo_io::fault::{self, FaultAction, FaultOp, FaultPlan};
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("f")).unwrap();
    let guard = fault::install(
        dir.path(),
        FaultPlan::new()
            .on(FaultOp::Allocate, 1, FaultAction::Fail)
            .on(FaultOp::SetLen, 1, FaultAction::Fail),
    );
    let err = file.allocate(0, 1 << 20).unwrap_err();
    assert!(
        matches!(&err, IoError::InjectedFault { op: "allocate", .. }),
        "{err}"
    );
    let err = file.set_len(1 << 20).unwrap_err();
    assert!(
        matches!(&err, IoError::InjectedFault { op: "set_len", .. }),
        "{err}"
    );
    assert_eq!(file.len().unwrap(), 0, "nothing was done");
    file.allocate(0, 1 << 20).unwrap();
    file.set_len(2 << 20).unwrap();
    assert_eq!(guard.count(FaultOp::Allocate), 2);
    assert_eq!(guard.count(FaultOp::SetLen), 2);
    assert_eq!(guard.fired(), 2);
}

#[cfg(feature = "fault-injection")]
#[test]
fn map_flushes_count_as_syncs() {
    use silo_io::AtomicMap;
    use silo_io::fault::{self, FaultAction, FaultOp, FaultPlan};
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("f")).unwrap();
    file.allocate(0, 8192).unwrap();
    let guard = fault::install(
        dir.path(),
        FaultPlan::new().on(FaultOp::Sync, 2, FaultAction::Fail),
    );
    let mut log = AppendMap::new(&file, 8192).unwrap();
    log.write_at(0, b"x").unwrap();
    log.flush_range(0, 1).unwrap();
    assert!(log.flush_range(0, 1).unwrap_err().is_injected());
    let index = AtomicMap::new(&file).unwrap();
    index.flush().unwrap();
    log.flush_async().unwrap();
    assert_eq!(guard.count(FaultOp::Sync), 3);
}

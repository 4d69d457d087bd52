//! Read-only opens: they read what a read-write open reads (the log's
//! operations included), change no byte of any file (a torn tail is
//! skipped, not cut), refuse every write with a typed error, share the
//! directory with other read-only opens (and, in other processes, with a
//! read-write one: `beside_a_writer.rs`), and refuse a store whose
//! interrupted in-place write only a read-write open may finish.

use std::collections::BTreeMap;
use std::path::Path;

use silo_core::{Error, Options, Silo, WriteBatch};

use crate::common::{file_starting, opts};

fn read_only() -> Options {
    Options {
        read_only: true,
        ..opts()
    }
}

/// Every file of `dir` (but `LOCK`) with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_read_only_open_reads_everything_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        compact_on_close: false,
        ..opts()
    };
    {
        let silo = Silo::open(dir.path(), o.clone()).unwrap();
        for k in 0..300u64 {
            silo.put(k, format!("v{k}").as_bytes()).unwrap();
        }
        silo.compact().unwrap();
        // These stay in the log.
        for k in 0..100u64 {
            silo.put(k, b"newer").unwrap();
        }
        silo.delete(299).unwrap();
        silo.close().unwrap();
    }
    // A torn tail after the last frame, as a crash may leave.
    let log = ["log-0", "log-1"]
        .into_iter()
        .map(|n| dir.path().join(n))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&log, &bytes).unwrap();
    let before = files(dir.path());

    let silo = Silo::open(dir.path(), read_only()).unwrap();
    assert!(silo.stats().torn_tail_bytes > 0);
    for k in 0..300u64 {
        let want = match k {
            0..100 => Some(b"newer".to_vec()),
            299 => None,
            _ => Some(format!("v{k}").into_bytes()),
        };
        assert_eq!(silo.get(k).unwrap(), want, "key {k}");
    }
    assert_eq!(silo.iter().count(), 299);
    assert!(silo.verify().unwrap().is_ok());
    let refused = |r: Result<(), Error>, what: &str| {
        assert!(matches!(r, Err(Error::ReadOnly { .. })), "{what}: {r:?}");
    };
    refused(silo.put(1, b"x"), "put");
    refused(silo.delete(1), "delete");
    refused(silo.merge(1, b"x"), "merge");
    refused(silo.write(&WriteBatch::new()), "write");
    refused(silo.compact().map(|_| ()), "compact");
    refused(silo.compact_cold().map(|_| ()), "compact_cold");
    refused(silo.bulk_writer().map(|_| ()), "bulk_writer");
    refused(silo.merge_writer().map(|_| ()), "merge_writer");
    refused(silo.rebuild_index().map(|_| ()), "rebuild_index");
    refused(
        silo.checkpoint(dir.path().join("copy")).map(|_| ()),
        "checkpoint",
    );
    assert!(silo.needs_compaction().is_none());
    silo.flush().unwrap();
    // Not beside a read-write open of this process.
    assert!(matches!(
        Silo::open(dir.path(), opts()),
        Err(Error::Io(silo_io::IoError::Locked { .. }))
    ));
    silo.close().unwrap();
    assert_eq!(files(dir.path()), before, "a read-only open changed a file");

    // A read-write open cuts the tail and reads the same.
    let silo = Silo::open(dir.path(), o).unwrap();
    assert_eq!(silo.get(5).unwrap().as_deref(), Some(&b"newer"[..]));
    assert_eq!(silo.get(150).unwrap().as_deref(), Some(&b"v150"[..]));
    silo.close().unwrap();
    assert_ne!(files(dir.path()), before);
}

#[test]
fn a_read_only_open_refuses_what_it_cannot_do_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    // No store at all.
    assert!(matches!(
        Silo::open(dir.path().join("none"), read_only()),
        Err(Error::Io(_))
    ));
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    std::fs::write(dir.path().join("empty").join("LOCK"), b"").unwrap();
    assert!(matches!(
        Silo::open(dir.path().join("empty"), read_only()),
        Err(Error::NeedsRecovery { .. })
    ));
    // A journal of an in-place write that was cut off.
    let store = dir.path().join("store");
    Silo::open(&store, opts()).unwrap().close().unwrap();
    std::fs::write(store.join("journal"), b"not finished").unwrap();
    let before = files(&store);
    match Silo::open(&store, read_only()) {
        Err(e @ Error::NeedsRecovery { .. }) => {
            assert!(e.to_string().contains("read-write"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(files(&store), before);
}

/// Damage fails a read-only open as it fails a read-write one (after the
/// retries that a writer in another process replacing files would call
/// for, which real damage fails the same way each time), and the open
/// changes nothing.
#[test]
fn a_read_only_open_of_a_damaged_store_reports_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let silo = Silo::open(dir.path(), opts()).unwrap();
        for k in 0..100u64 {
            silo.put(k, &k.to_le_bytes()).unwrap();
        }
        silo.close().unwrap();
    }
    let index = file_starting(dir.path(), "index-");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() - 16]).unwrap();
    let before = files(dir.path());
    assert!(matches!(
        Silo::open(dir.path(), read_only()),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(files(dir.path()), before);
    assert!(matches!(
        Silo::open(dir.path(), opts()),
        Err(Error::Corrupt { .. })
    ));
}

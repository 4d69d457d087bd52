//! The engine opened read-only: it reads what was written (cross-shard
//! batches and logs included), changes no byte, refuses writes,
//! compaction, checkpoints and the scheduler with typed errors, verifies,
//! and refuses to open when a cut-off cross-shard batch needs completing.

use std::collections::BTreeMap;
use std::path::Path;

use silo_core::WriteBatch;
use silo_engine::{Engine, EngineError, EngineOptions, SchedulerOptions};

fn opts() -> EngineOptions {
    let mut o = EngineOptions {
        shards: Some(4),
        ..EngineOptions::default()
    };
    o.store.compact_on_close = false;
    o
}

fn read_only() -> EngineOptions {
    let mut o = opts();
    o.store.read_only = true;
    o
}

fn tree(dir: &Path) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            out.extend(tree(&path));
        } else if entry.file_name() != "LOCK" {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

fn is_read_only(r: Result<(), EngineError>) -> bool {
    matches!(
        r,
        Err(EngineError::Store(silo_core::Error::ReadOnly { .. })
            | EngineError::Shard {
                source: silo_core::Error::ReadOnly { .. },
                ..
            })
    )
}

#[test]
fn a_read_only_engine_reads_verifies_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Engine::open(dir.path(), opts()).unwrap();
        for k in 0..500u64 {
            db.put(k, format!("v{k}").as_bytes()).unwrap();
        }
        db.compact().unwrap();
        let mut b = WriteBatch::new();
        for k in 0..40u64 {
            b.put(k * 3, b"batched");
        }
        db.write(&b).unwrap();
        db.delete(499).unwrap();
        db.close().unwrap();
    }
    let before = tree(dir.path());
    let db = Engine::open(dir.path(), read_only()).unwrap();
    for k in 0..500u64 {
        let want = if k == 499 {
            None
        } else if k % 3 == 0 && k < 120 {
            Some(b"batched".to_vec())
        } else {
            Some(format!("v{k}").into_bytes())
        };
        assert_eq!(db.get(k).unwrap(), want, "key {k}");
    }
    assert!(
        db.verify()
            .unwrap()
            .iter()
            .all(silo_core::VerifyReport::is_ok)
    );
    assert!(is_read_only(db.put(1, b"x")));
    assert!(is_read_only(db.delete(1)));
    let mut b = WriteBatch::new();
    b.put(1, b"x").put(2, b"y");
    assert!(is_read_only(db.write(&b)));
    assert!(is_read_only(db.compact().map(|_| ())));
    assert!(is_read_only(db.checkpoint(dir.path().join("copy"))));
    assert!(is_read_only(
        db.start_background(SchedulerOptions::default()).map(|_| ())
    ));
    db.flush().unwrap();
    // Not beside a read-write open.
    assert!(matches!(
        Engine::open(dir.path(), opts()),
        Err(EngineError::Io(silo_io::IoError::Locked { .. }))
    ));
    db.close().unwrap();
    assert_eq!(tree(dir.path()), before, "a read-only open changed a file");
    // No engine at all.
    assert!(Engine::open(dir.path().join("none"), read_only()).is_err());
}

/// A copy of a store taken while a cross-shard batch is half applied (the
/// writer held between its parts): a read-only open refuses it, saying a
/// read-write open must complete the batch, and changes nothing; a
/// read-write open then completes it.
#[test]
fn a_read_only_open_refuses_a_half_applied_batch() {
    use silo_engine::HOLD_BETWEEN_PARTS;
    use silo_io::fault::{FaultPlan, install};
    let dir = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let keys = crate::common::keys_on_distinct_shards(4);
    {
        let guard = install(dir.path(), FaultPlan::new().hold(HOLD_BETWEEN_PARTS));
        let db = Engine::open(dir.path(), opts()).unwrap();
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut b = WriteBatch::new();
                for k in &keys {
                    b.put(*k, b"whole");
                }
                db.write(&b).unwrap();
            });
            guard.wait_held(HOLD_BETWEEN_PARTS, 1);
            // What a crash now would leave (page cache included).
            for (path, bytes) in tree(dir.path()) {
                let to = image.path().join(path.strip_prefix(dir.path()).unwrap());
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::write(to, bytes).unwrap();
            }
            guard.release(HOLD_BETWEEN_PARTS);
            writer.join().unwrap();
        });
        db.close().unwrap();
    }
    for shard in std::fs::read_dir(image.path()).unwrap() {
        let shard = shard.unwrap().path();
        if shard.is_dir() {
            std::fs::write(shard.join("LOCK"), b"").unwrap();
        }
    }
    std::fs::write(image.path().join("LOCK"), b"").unwrap();
    let before = tree(image.path());
    match Engine::open(image.path(), read_only()) {
        Err(EngineError::Store(e @ silo_core::Error::NeedsRecovery { .. })) => {
            assert!(e.to_string().contains("cross-shard batch"), "{e}");
        }
        other => panic!("expected NeedsRecovery, got {:?}", other.map(|_| ())),
    }
    assert_eq!(tree(image.path()), before);
    let db = Engine::open(image.path(), opts()).unwrap();
    for k in &keys {
        assert_eq!(db.get(*k).unwrap().as_deref(), Some(&b"whole"[..]));
    }
    db.close().unwrap();
}

//! Open files and memory maps grow with the shard count, never with
//! operations or compactions. Its own test binary, one test: the process's
//! descriptor and map counts are not disturbed by other tests.

use silo_core::WriteBatch;
use silo_engine::{CompactOptions, Engine, EngineOptions};

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Maps of files under `dir`.
fn maps(dir: &std::path::Path) -> usize {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap();
    let dir = dir.to_string_lossy();
    text.lines().filter(|l| l.contains(dir.as_ref())).count()
}

#[test]
fn descriptors_and_maps_are_bounded_by_the_shard_count() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let before = fds();
    let mut o = EngineOptions {
        shards: Some(4),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    };
    o.store.auto_compact = false;
    let db = Engine::open(dir.path(), o).unwrap();
    let (open_fds, open_maps) = (fds() - before, maps(dir.path()));
    let st = db.stats();
    assert_eq!(
        (open_fds as u64, open_maps as u64),
        (st.open_files, st.maps),
        "{st:?}"
    );
    for round in 0..5u8 {
        for k in 0..3000u64 {
            db.put(k * 7 + u64::from(round), &[round; 64]).unwrap();
        }
        let mut b = WriteBatch::new();
        for k in 0..16u64 {
            b.put(k, b"batch");
        }
        db.write(&b).unwrap();
        db.compact_with(CompactOptions {
            cold: round % 2 == 1,
            ..CompactOptions::default()
        })
        .unwrap();
        db.checkpoint(out.path().join(format!("cp-{round}")))
            .unwrap();
        let snap = db.snapshot().unwrap();
        assert!(snap.iter().count() > 0);
        drop(snap);
        assert_eq!(fds() - before, open_fds, "round {round}: descriptors grew");
        assert_eq!(maps(dir.path()), open_maps, "round {round}: maps grew");
    }
    db.close().unwrap();
    assert_eq!(fds(), before, "close releases every descriptor");
    assert_eq!(maps(dir.path()), 0, "close releases every map");
}

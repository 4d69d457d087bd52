//! The engine through its public API.

use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_engine::{CompactOptions, Engine, EngineError, EngineOptions, shard_of};

use crate::common::{contents, keys_on_distinct_shards, open, opts};

#[test]
fn keys_spread_over_shards_and_survive_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 4);
    for k in 0..400u64 {
        db.put(k, &k.to_le_bytes()).unwrap();
    }
    db.delete(7).unwrap();
    db.merge(1000, b"a").unwrap();
    db.merge(1000, b"b").unwrap();
    let per_shard: Vec<u64> = db.stats().shards.iter().map(|s| s.pending_keys).collect();
    assert!(per_shard.iter().all(|n| *n > 60), "{per_shard:?}");
    let report = db.compact().unwrap();
    assert_eq!(report.shards.len(), 4, "every shard had work");
    assert_eq!(report.ops_folded, 403);
    assert_eq!(db.stats().index_keys(), 400);
    db.close().unwrap();
    let db = open(dir.path(), 4);
    assert_eq!(db.get(7).unwrap(), None);
    assert_eq!(db.get(399).unwrap(), Some(399u64.to_le_bytes().to_vec()));
    assert_eq!(db.get(1000).unwrap().as_deref(), Some(&b"ab"[..]));
    assert_eq!(contents(&db).len(), 400);
    // Each key is where the routing function says.
    for k in [0u64, 1, 399] {
        let s = shard_of(k, 4);
        let dir = dir.path().join(format!("shard-{s:04}"));
        drop(db.get(k).unwrap());
        assert!(dir.is_dir());
    }
}

#[test]
fn the_shard_count_is_fixed_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), 4).close().unwrap();
    match Engine::open(dir.path(), opts(8)) {
        Err(EngineError::ShardCount {
            found, requested, ..
        }) => assert_eq!((found, requested), (4, 8)),
        other => panic!("expected ShardCount, got {other:?}"),
    }
    // Without a count the engine's own is used.
    let o = EngineOptions {
        shards: None,
        ..opts(4)
    };
    assert_eq!(Engine::open(dir.path(), o).unwrap().shard_count(), 4);
}

#[test]
fn bad_options_and_bad_batches_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    for shards in [0, 3, 2048] {
        assert!(matches!(
            Engine::open(dir.path(), opts(shards)),
            Err(EngineError::InvalidOptions { name: "shards", .. })
        ));
    }
    let db = open(dir.path(), 2);
    assert!(matches!(
        Engine::open(dir.path(), opts(2)),
        Err(EngineError::Io(silo_io::IoError::Locked { .. }))
    ));
    let mut tagged = WriteBatch::new();
    tagged.put(1, b"x").set_tag(3);
    assert!(matches!(db.write(&tagged), Err(EngineError::TaggedBatch)));
    db.write(&WriteBatch::new())
        .expect("an empty batch is nothing");
    let keys = keys_on_distinct_shards(2);
    let mut too_big = WriteBatch::new();
    too_big
        .put(keys[0], b"small")
        .put(keys[1], &vec![0u8; (64 << 20) + 1]);
    assert!(matches!(
        db.write(&too_big),
        Err(EngineError::Store(silo_core::Error::ValueTooLarge { .. }))
    ));
    assert_eq!(db.get(keys[0]).unwrap(), None, "nothing of a refused batch");
    assert_eq!(
        db.stats().batch_log_bytes,
        0,
        "a refused batch is not logged"
    );
}

/// A cross-shard batch may hold values of exactly the store's limit; one
/// byte more is refused before anything is logged.
#[test]
fn a_value_of_exactly_the_limit_crosses_shards() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(2);
    o.store.max_value_len = 1000;
    let db = Engine::open(dir.path(), o).unwrap();
    let keys = keys_on_distinct_shards(2);
    let mut b = WriteBatch::new();
    b.put(keys[0], &[1u8; 1000]).merge(keys[1], &[2u8; 1000]);
    db.write(&b).expect("values at the limit");
    assert_eq!(db.get(keys[0]).unwrap().map(|v| v.len()), Some(1000));
    let mut over = WriteBatch::new();
    over.put(keys[0], b"x").put(keys[1], &[3u8; 1001]);
    assert!(matches!(
        db.write(&over),
        Err(EngineError::Store(silo_core::Error::ValueTooLarge {
            len: 1001,
            max: 1000
        }))
    ));
}

/// `close` leaves nothing to redo: the batch log is cut to its header, and
/// the next open replays no batch.
#[test]
fn close_empties_the_batch_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 4);
    let keys = keys_on_distinct_shards(4);
    let mut b = WriteBatch::new();
    for k in &keys {
        b.merge(*k, b"m");
    }
    db.write(&b).unwrap();
    let log = dir.path().join("batches");
    assert!(
        std::fs::metadata(&log).unwrap().len() > 64,
        "the batch is logged"
    );
    db.close().unwrap();
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        64,
        "only the header is left"
    );
    let db = open(dir.path(), 4);
    assert_eq!(db.stats().batches_replayed, 0);
    for k in &keys {
        assert_eq!(db.get(*k).unwrap().as_deref(), Some(&b"m"[..]));
    }
}

#[test]
fn a_merge_without_an_operator_is_refused_before_logging() {
    let dir = tempfile::tempdir().unwrap();
    let o = EngineOptions {
        shards: Some(2),
        ..EngineOptions::default()
    };
    let db = Engine::open(dir.path(), o).unwrap();
    let keys = keys_on_distinct_shards(2);
    let mut b = WriteBatch::new();
    b.put(keys[0], b"x").merge(keys[1], b"y");
    assert!(matches!(
        db.write(&b),
        Err(EngineError::Store(silo_core::Error::NoMergeOperator { .. }))
    ));
    assert_eq!(db.get(keys[0]).unwrap(), None);
}

#[test]
fn cross_shard_batches_apply_whole_and_empty_the_batch_log_on_flush() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 4);
    let keys = keys_on_distinct_shards(4);
    let mut b = WriteBatch::new();
    for k in &keys {
        b.put(*k, b"v1").merge(*k + 1_000_000, b"m");
    }
    db.write(&b).unwrap();
    db.write(&b).unwrap();
    let st = db.stats();
    assert_eq!(st.cross_shard_batches, 2);
    assert!(st.batch_log_bytes > 0);
    for k in &keys {
        assert_eq!(db.get(*k).unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(db.get(*k + 1_000_000).unwrap().as_deref(), Some(&b"mm"[..]));
    }
    db.flush().unwrap();
    assert_eq!(db.stats().batch_log_bytes, 0);
    db.close().unwrap();
    let db = open(dir.path(), 4);
    assert_eq!(
        db.stats().batches_replayed,
        0,
        "a clean close leaves nothing to redo"
    );
    for k in &keys {
        assert_eq!(db.get(*k + 1_000_000).unwrap().as_deref(), Some(&b"mm"[..]));
    }
}

/// After cross-shard batches, a process kill (every file as the page cache
/// holds it) and a drop without close: the next open completes nothing
/// twice (the merges would show it) and loses nothing.
#[test]
fn a_crash_after_cross_shard_batches_redoes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let killed = tempfile::tempdir().unwrap();
    let keys = keys_on_distinct_shards(4);
    {
        let db = open(dir.path(), 4);
        for round in 0..3u8 {
            let mut b = WriteBatch::new();
            for k in &keys {
                b.merge(*k, &[b'a' + round]);
            }
            db.write(&b).unwrap();
        }
        assert!(db.stats().batch_log_bytes > 0);
        copy_tree(dir.path(), killed.path());
        // Dropped without close: the batch log keeps its batches.
    }
    for path in [killed.path(), dir.path()] {
        let db = open(path, 4);
        for k in &keys {
            assert_eq!(db.get(*k).unwrap().as_deref(), Some(&b"abc"[..]), "key {k}");
        }
        assert_eq!(db.stats().batches_replayed, 0, "every shard had its parts");
        assert_eq!(db.stats().batch_log_bytes, 0, "the log is emptied at open");
    }
}

/// Copies a directory tree as a process kill leaves it (`LOCK` files aside).
pub(crate) fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name == "LOCK" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn snapshots_see_one_point_in_time_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 4);
    let keys = keys_on_distinct_shards(4);
    for k in &keys {
        db.put(*k, b"old").unwrap();
    }
    db.compact().unwrap();
    let snap = db.snapshot().unwrap();
    let mut b = WriteBatch::new();
    for k in &keys {
        b.put(*k, b"new");
    }
    db.write(&b).unwrap();
    db.delete(keys[0]).unwrap();
    for k in &keys {
        assert_eq!(snap.get(*k).unwrap().as_deref(), Some(&b"old"[..]));
    }
    let seen: Vec<(u64, Vec<u8>)> = snap.iter().map(|r| r.unwrap()).collect();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|(_, v)| v == b"old"));
    drop(snap);
    assert_eq!(db.get(keys[0]).unwrap(), None);
    assert_eq!(db.get(keys[1]).unwrap().as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_checkpoint_opens_as_an_engine_with_exactly_the_writes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let cp = out.path().join("nested/cp");
    let db = open(dir.path(), 4);
    let keys = keys_on_distinct_shards(4);
    for k in 0..200u64 {
        db.put(k, &k.to_le_bytes()).unwrap();
    }
    db.compact().unwrap();
    let mut b = WriteBatch::new();
    for k in &keys {
        b.merge(*k + 500, b"x");
    }
    db.write(&b).unwrap();
    db.checkpoint(&cp).unwrap();
    db.put(1, b"after").unwrap();
    let expected = {
        let mut c = contents(&db);
        c.insert(1, 1u64.to_le_bytes().to_vec());
        c
    };
    assert!(matches!(
        db.checkpoint(&cp),
        Err(EngineError::DestinationExists(_))
    ));
    let copy = Engine::open(&cp, opts(4)).unwrap();
    assert_eq!(contents(&copy), expected);
    // The copy is a working engine.
    copy.write(&b).unwrap();
    assert_eq!(
        copy.get(keys[0] + 500).unwrap().as_deref(),
        Some(&b"xx"[..])
    );
}

#[test]
fn parallel_and_sequential_compaction_give_the_same_reads() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (one, two) = (open(a.path(), 8), open(b.path(), 8));
    for db in [&one, &two] {
        for k in 0..2000u64 {
            db.put(k, &vec![(k % 251) as u8; (k % 50) as usize])
                .unwrap();
        }
        for k in (0..2000u64).step_by(3) {
            db.delete(k).unwrap();
        }
        for k in (0..2000u64).step_by(5) {
            db.merge(k, b"+").unwrap();
        }
    }
    let r1 = one
        .compact_with(CompactOptions {
            threads: Some(1),
            cold: false,
            ..CompactOptions::default()
        })
        .unwrap();
    let r2 = two
        .compact_with(CompactOptions {
            threads: Some(2),
            cold: false,
            ..CompactOptions::default()
        })
        .unwrap();
    assert_eq!((r1.threads, r2.threads), (1, 2));
    assert!(
        r1.prefetched_bytes > 0 && r2.prefetched_bytes > 0,
        "prefetch is on by default"
    );
    assert_eq!(r1.ops_folded, r2.ops_folded);
    assert_eq!(contents(&one), contents(&two));
    let cold = two
        .compact_with(CompactOptions {
            threads: Some(2),
            cold: true,
            ..CompactOptions::default()
        })
        .unwrap();
    assert_eq!(cold.shards.len(), 8);
    assert!(cold.shards.iter().all(|(_, r)| r.cold));
    // A cold rewrite's bytes are counted: each shard wrote its whole new
    // data file (its live bytes) and read every live record.
    let live: u64 = two.stats().shards.iter().map(|s| s.live_bytes).sum();
    assert_eq!(cold.bytes_written, live);
    assert!(cold.bytes_read >= live);
    let unfetched = one
        .compact_with(CompactOptions {
            cold: true,
            prefetch: false,
            ..CompactOptions::default()
        })
        .unwrap();
    assert_eq!(unfetched.prefetched_bytes, 0);
    assert_eq!(contents(&one), contents(&two));
    assert!(matches!(
        one.compact_with(CompactOptions {
            threads: Some(0),
            cold: false,
            ..CompactOptions::default()
        }),
        Err(EngineError::InvalidOptions { .. })
    ));
}

/// A cold compaction of shards with operations to fold writes them
/// straight into each shard's rewrite: nothing is rewritten in place or
/// journaled first, on one thread or two, and both read the same.
#[test]
fn a_cold_compaction_folds_the_operations_straight_into_the_rewrites() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let engines = [open(dirs[0].path(), 4), open(dirs[1].path(), 4)];
    for db in &engines {
        for k in 0..4000u64 {
            db.put(k, &[(k % 251) as u8; 40]).unwrap();
        }
        db.compact().unwrap();
        // Same-size values: a hot apply would rewrite them in place.
        for k in 0..4000u64 {
            match k % 4 {
                0 => db.delete(k).unwrap(),
                1 => db.merge(k, b"+").unwrap(),
                _ => db.put(k, &[(k % 7) as u8; 40]).unwrap(),
            }
        }
    }
    for (db, threads) in engines.iter().zip([1, 2]) {
        let r = db
            .compact_with(CompactOptions {
                threads: Some(threads),
                cold: true,
                ..CompactOptions::default()
            })
            .unwrap();
        assert_eq!(r.shards.len(), 4);
        assert_eq!(r.ops_folded, 4000);
        for (i, s) in &r.shards {
            assert!(
                s.cold && s.in_place == 0 && s.journal_bytes == 0 && s.appended > 0,
                "shard {i}: {s:?}"
            );
        }
        let st = db.stats();
        assert_eq!(
            (st.pending_ops(), st.dead_bytes()),
            (0, 0),
            "{threads} thread(s)"
        );
    }
    let reads = contents(&engines[0]);
    assert_eq!(reads, contents(&engines[1]));
    assert_eq!(reads.len(), 3000);
    assert_eq!(reads[&5], [vec![5u8; 40], b"+".to_vec()].concat());
    assert_eq!(reads[&6], vec![6u8; 40]);
}

/// A shard with nothing to fold is still chosen when its policy says a
/// compaction is due (here: dead space over the threshold, left by a run
/// that allowed more).
#[test]
fn compaction_chooses_a_shard_whose_policy_alone_calls_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut lax = opts(2);
    lax.store.thresholds.dead_ratio = 0.99;
    let db = Engine::open(dir.path(), lax.clone()).unwrap();
    for k in 0..40_000u64 {
        db.put(k, &[1u8; 100]).unwrap();
    }
    db.compact().unwrap();
    for k in 0..40_000u64 {
        db.put(k, &[2u8; 150]).unwrap();
    }
    let r = db.compact().unwrap();
    assert!(r.shards.iter().all(|(_, s)| !s.cold), "allowed: {r:?}");
    db.close().unwrap();
    let mut strict = lax;
    strict.store.thresholds.dead_ratio = 0.2;
    strict.store.thresholds.min_interval = std::time::Duration::ZERO;
    let db = Engine::open(dir.path(), strict).unwrap();
    let st = db.stats();
    let log_bytes: u64 = st.shards.iter().map(|s| s.log_bytes).sum();
    assert_eq!((st.pending_ops(), log_bytes), (0, 0), "nothing to fold");
    assert!(st.dead_bytes() > 2 << 20);
    let r = db.compact().unwrap();
    let chosen: Vec<usize> = r.shards.iter().map(|(i, _)| *i).collect();
    assert_eq!(chosen, vec![0, 1], "both shards, by their policy");
    assert!(
        r.shards
            .iter()
            .all(|(_, s)| s.cold && s.reclaimed_bytes > 0),
        "{r:?}"
    );
    assert_eq!(db.stats().dead_bytes(), 0);
    assert_eq!(db.get(7).unwrap(), Some(vec![2u8; 150]));
}

/// `compact` chooses exactly the shards with work (operations to fold, or
/// a policy that says so); `cold` chooses every shard. Each shard compacted
/// is in the report, so the choice shows.
#[test]
fn compaction_chooses_exactly_the_shards_with_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 4);
    let keys = keys_on_distinct_shards(4);
    db.put(keys[2], b"v").unwrap();
    let shards = |r: &silo_engine::EngineCompactionReport| -> Vec<usize> {
        r.shards.iter().map(|(i, _)| *i).collect()
    };
    let only = shard_of(keys[2], 4);
    let r = db.compact().unwrap();
    assert_eq!(shards(&r), vec![only], "only the shard written to");
    assert_eq!(r.ops_folded, 1);
    assert!(!r.shards[0].1.cold, "no dead space: no cold rewrite");
    assert_eq!(
        shards(&db.compact().unwrap()),
        Vec::<usize>::new(),
        "nothing left to do"
    );
    db.delete(keys[0]).unwrap();
    db.delete(keys[3]).unwrap();
    let mut want = vec![shard_of(keys[0], 4), shard_of(keys[3], 4)];
    want.sort_unstable();
    assert_eq!(shards(&db.compact().unwrap()), want, "deletes are work too");
    let cold = db
        .compact_with(CompactOptions {
            cold: true,
            ..CompactOptions::default()
        })
        .unwrap();
    assert_eq!(shards(&cold), vec![0, 1, 2, 3], "cold: every shard");
    assert!(cold.shards.iter().all(|(_, r)| r.cold));
    assert_eq!(cold.threads, 2, "the engine's compaction_threads");
    drop(db);
    // The configured thread count, not the machine's, is what compacts.
    let mut one = opts(4);
    one.compaction_threads = Some(1);
    let db = Engine::open(dir.path(), one).unwrap();
    let cold = db
        .compact_with(CompactOptions {
            cold: true,
            ..CompactOptions::default()
        })
        .unwrap();
    assert_eq!(cold.threads, 1);
}

/// A shard whose dead space is over the threshold is compacted (cold) by
/// `compact` even with nothing to fold.
#[test]
fn compaction_chooses_a_shard_due_for_its_dead_space_alone() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<u64> = (0u64..)
        .filter(|k| silo_engine::shard_of(*k, 2) == 1)
        .take(2000)
        .collect();
    {
        // No cold rewrite yet: the dead space stays.
        let mut o = opts(2);
        o.store.thresholds.dead_ratio = 0.99;
        o.store.thresholds.emergency_dead_ratio = 0.999;
        let db = Engine::open(dir.path(), o).unwrap();
        for k in &keys {
            db.put(*k, &[1; 1000]).unwrap();
        }
        db.compact().unwrap();
        for k in &keys {
            db.put(*k, &[2; 2000]).unwrap();
        }
        db.compact().unwrap();
        assert!(db.stats().shards[1].dead_bytes >= 1 << 20);
        db.close().unwrap();
    }
    let mut o = opts(2);
    o.store.thresholds.min_interval = std::time::Duration::ZERO;
    let db = Engine::open(dir.path(), o).unwrap();
    assert_eq!(db.stats().pending_ops(), 0, "nothing to fold");
    let r = db.compact().unwrap();
    let chosen: Vec<(usize, bool)> = r.shards.iter().map(|(i, r)| (*i, r.cold)).collect();
    assert_eq!(chosen, vec![(1, true)]);
    assert_eq!(db.stats().shards[1].dead_bytes, 0);
    assert_eq!(db.get(keys[7]).unwrap(), Some(vec![2; 2000]));
}

#[test]
fn a_lost_manifest_with_data_in_a_shard_is_refused() {
    // Data pending in a shard's log, or only in its index (compacted).
    for compacted in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path(), 2);
            db.put(1, b"one").unwrap();
            if compacted {
                db.compact().unwrap();
            }
            db.close().unwrap();
        }
        std::fs::remove_file(dir.path().join("ENGINE")).unwrap();
        match Engine::open(dir.path(), opts(2)) {
            Err(EngineError::Corrupt { reason, .. }) => {
                assert!(reason.contains("holds data"), "{reason}")
            }
            other => panic!("compacted {compacted}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn a_creation_cut_off_before_its_manifest_is_started_again() {
    use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};
    // Every rename of a creation (each shard's files and manifest, the
    // batch log, the engine's manifest) failed in turn.
    let probe = tempfile::tempdir().unwrap();
    let renames = {
        let guard = install(probe.path(), FaultPlan::new());
        open(probe.path(), 2);
        guard.count(FaultOp::Rename)
    };
    assert!(renames > 5, "{renames}");
    let mut with_log = [false, false];
    let mut cut = 0;
    for nth in 1..=renames {
        let dir = tempfile::tempdir().unwrap();
        let failed = {
            let guard = install(
                dir.path(),
                FaultPlan::new().on(FaultOp::Rename, nth, FaultAction::Fail),
            );
            // A failure in a drop (the clean-close manifest of a shard
            // made during creation) is left to the next open to recover.
            let failed = Engine::open(dir.path(), opts(2)).is_err();
            assert!(!failed || guard.fired() == 1, "rename {nth}");
            failed
        };
        if !failed {
            continue;
        }
        cut += 1;
        let engine_made = dir.path().join("ENGINE").exists();
        assert!(
            !engine_made || nth == renames,
            "rename {nth}: ENGINE before the last rename"
        );
        with_log[usize::from(dir.path().join("batches").exists())] = true;
        let db = open(dir.path(), 2);
        db.put(5, b"five").unwrap();
        db.close().unwrap();
        assert_eq!(
            open(dir.path(), 2).get(5).unwrap().as_deref(),
            Some(&b"five"[..]),
            "rename {nth}"
        );
    }
    // Cut both before the batch log was made and after.
    assert_eq!(with_log, [true, true]);
    assert!(cut > 5, "{cut} creations cut off");
}

#[test]
fn sync_writes_and_single_shard_batches_go_straight_to_their_shard() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 4);
    let k = 77u64;
    let same: Vec<u64> = (0u64..)
        .filter(|x| shard_of(*x, 4) == shard_of(k, 4))
        .take(3)
        .collect();
    let mut b = WriteBatch::new();
    for x in &same {
        b.put(*x, b"s");
    }
    db.write_with(&b, WriteOptions::durability(Durability::Sync))
        .unwrap();
    let st = db.stats();
    assert_eq!((st.cross_shard_batches, st.batch_log_bytes), (0, 0));
    assert!(st.shards[shard_of(k, 4)].log_syncs >= 1);
    assert_eq!(db.get(same[2]).unwrap().as_deref(), Some(&b"s"[..]));
}

/// A thread that iterates and writes, beside a checkpoint and a snapshot:
/// neither may wait for a shard (its iterator) while holding the writers
/// back, or the two deadlock. The watchdog turns a deadlock into a failure.
#[test]
fn an_iterating_writer_and_a_checkpoint_do_not_deadlock() {
    use std::sync::mpsc;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(open(dir.path(), 4));
    for k in 0..100u64 {
        db.put(k, b"v").unwrap();
    }
    db.compact().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let worker = {
        let db = std::sync::Arc::clone(&db);
        let cp = out.path().join("cp");
        std::thread::spawn(move || {
            let mut it = db.iter();
            // The first shard's iterator now holds its compaction gate.
            assert!(it.next().is_some());
            let checkpointer = {
                let db = std::sync::Arc::clone(&db);
                std::thread::spawn(move || {
                    db.checkpoint(&cp).unwrap();
                    drop(db.snapshot().unwrap());
                })
            };
            // Write for a while with the iterator held: long enough for the
            // checkpoint to reach that shard (a correct engine waits for it
            // with writers running, so these writes go through).
            let start = std::time::Instant::now();
            let mut k = 0u64;
            while start.elapsed() < Duration::from_millis(500) {
                db.put(1000 + k % 5000, b"w").unwrap();
                k += 1;
            }
            drop(it);
            checkpointer.join().unwrap();
            done_tx.send(()).unwrap();
        })
    };
    assert!(
        done_rx.recv_timeout(Duration::from_secs(60)).is_ok(),
        "an iterating writer and a checkpoint deadlocked"
    );
    worker.join().unwrap();
    let copy = Engine::open(out.path().join("cp"), opts(4)).unwrap();
    assert!(copy.get(5).unwrap().is_some());
}

/// A cross-shard batch touching a shard that refuses writes is refused
/// whole, before it is logged.
#[test]
fn a_batch_touching_a_poisoned_shard_is_refused_whole() {
    use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 2);
    let keys = keys_on_distinct_shards(2);
    {
        let _guard = install(
            dir.path(),
            FaultPlan::new().every(FaultOp::Sync, FaultAction::Fail),
        );
        assert!(
            db.put_with(keys[1], b"x", WriteOptions::durability(Durability::Sync))
                .is_err()
        );
    }
    let mut b = WriteBatch::new();
    b.put(keys[0], b"a").put(keys[1], b"b");
    assert!(matches!(
        db.write(&b),
        Err(EngineError::Shard { shard, .. }) if shard == shard_of(keys[1], 2)
    ));
    assert_eq!(db.get(keys[0]).unwrap(), None, "no part of it applied");
    assert_eq!(db.stats().batch_log_bytes, 0, "nor logged");
}

/// A batch log write that fails poisons the engine: writes and
/// checkpoints are refused until it is reopened, and the reopened engine
/// works.
#[test]
fn a_batch_that_reaches_only_some_shards_is_never_read_in_part_and_completes_at_reopen() {
    use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_on_distinct_shards(2);
    let (on_0, on_1) = if silo_engine::shard_of(keys[0], 2) == 0 {
        (keys[0], keys[1])
    } else {
        (keys[1], keys[0])
    };
    // Shard 0's part goes in first; shard 1's (long enough to be written
    // with a system call) fails.
    let long = vec![7u8; 64 << 10];
    let mut b = WriteBatch::new();
    b.put(on_0, b"first part").put(on_1, &long);
    {
        let db = open(dir.path(), 2);
        db.put(on_0, b"before").unwrap();
        let guard = install(
            &dir.path().join("shard-0001"),
            FaultPlan::new().every(FaultOp::Write, FaultAction::Fail),
        );
        let err = db.write(&b).expect_err("shard 1's part fails");
        assert!(guard.fired() >= 1);
        drop(guard);
        assert!(err.to_string().contains("shard 1"), "{err}");
        // Shard 0 holds its part: no read may return it, nor the old
        // value as if nothing had happened.
        for key in [on_0, on_1] {
            assert!(
                matches!(db.get(key), Err(EngineError::PartialBatch { .. })),
                "get {key}"
            );
        }
        let first = db.iter().next().expect("one item");
        assert!(matches!(first, Err(EngineError::PartialBatch { .. })));
        assert_eq!(db.iter().count(), 1, "the refusal ends the iteration");
        assert!(matches!(
            db.snapshot(),
            Err(EngineError::PartialBatch { .. })
        ));
        assert!(matches!(db.put(9, b"x"), Err(EngineError::Poisoned { .. })));
    }
    // The batch log completes it.
    let db = open(dir.path(), 2);
    assert_eq!(db.get(on_0).unwrap().as_deref(), Some(&b"first part"[..]));
    assert_eq!(db.get(on_1).unwrap(), Some(long));
}

#[test]
fn a_failed_batch_log_write_poisons_the_engine_until_reopen() {
    use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let keys = keys_on_distinct_shards(2);
    let mut b = WriteBatch::new();
    b.put(keys[0], b"a").put(keys[1], b"b");
    {
        let db = open(dir.path(), 2);
        let guard = install(
            dir.path(),
            FaultPlan::new().on(FaultOp::Write, 1, FaultAction::Fail),
        );
        assert!(db.write(&b).is_err());
        assert_eq!(guard.fired(), 1);
        drop(guard);
        assert!(matches!(db.put(9, b"x"), Err(EngineError::Poisoned { .. })));
        assert!(matches!(db.write(&b), Err(EngineError::Poisoned { .. })));
        assert!(matches!(
            db.checkpoint(out.path().join("cp")),
            Err(EngineError::Poisoned { .. })
        ));
        assert_eq!(db.get(keys[0]).unwrap(), None);
    }
    let db = open(dir.path(), 2);
    assert_eq!(
        db.get(keys[0]).unwrap(),
        None,
        "the failed batch is not there"
    );
    db.write(&b).unwrap();
    assert_eq!(db.get(keys[1]).unwrap().as_deref(), Some(&b"b"[..]));
}

//! Behaviour of one store through its public API.

use silo_core::{Durability, Error, Options, Silo, WriteBatch};

use crate::common::{assert_holds, in_place_opts, open, open_in_place, opts, put_values, value};

#[test]
fn every_key_including_zero_and_max_survives_compaction_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path());
        for k in [0, 1, u64::MAX] {
            s.put(k, &k.to_le_bytes()).expect("put");
        }
        s.compact().expect("compact");
        s.close().expect("close");
    }
    let s = open(dir.path());
    for k in [0, 1, u64::MAX] {
        assert_eq!(s.get(k).expect("get"), Some(k.to_le_bytes().to_vec()));
    }
    assert_eq!(s.stats().index_keys, 3);
}

#[test]
fn a_second_open_is_refused_with_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(dir.path());
    match Silo::open(dir.path(), opts()) {
        Err(Error::Io(silo_io::error::IoError::Locked { .. })) => {}
        other => panic!("expected a lock error, got {other:?}"),
    }
}

#[test]
fn merge_without_an_operator_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Silo::open(dir.path(), Options::default()).expect("open");
    assert!(matches!(
        s.merge(3, b"x"),
        Err(Error::NoMergeOperator { key: 3 })
    ));
    let mut b = WriteBatch::new();
    b.put(1, b"a").merge(2, b"b");
    assert!(matches!(
        s.write(&b),
        Err(Error::NoMergeOperator { key: 2 })
    ));
    assert_eq!(
        s.get(1).expect("get"),
        None,
        "a refused batch writes nothing"
    );
}

#[test]
fn a_failing_merge_operator_keeps_the_operands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.put(5, b"base").expect("put");
    s.merge(5, b"!bad").expect("merge is logged");
    assert!(matches!(s.get(5), Err(Error::Merge { key: 5, .. })));
    assert!(matches!(s.compact(), Err(Error::Merge { key: 5, .. })));
    // Nothing was replaced: a put supersedes the bad operand and compaction goes through.
    s.put(5, b"fixed").expect("put");
    s.compact().expect("compact");
    assert_eq!(s.get(5).expect("get").as_deref(), Some(&b"fixed"[..]));
    // A staged compaction's outcome is noted as `compact`'s is.
    s.merge(5, b"!bad").expect("merge is logged");
    let staged = s.stage_compaction(false).expect("stage").expect("work");
    let failed = staged.apply(staged.plan().expect("plan"));
    assert!(
        matches!(failed, Err(Error::Merge { key: 5, .. })),
        "{failed:?}"
    );
    drop(staged);
    let noted = s.stats().last_compaction_error.expect("noted");
    assert!(noted.contains("merge"), "{noted}");
    s.put(5, b"again").expect("put");
    let staged = s.stage_compaction(false).expect("stage").expect("work");
    staged.apply(staged.plan().expect("plan")).expect("apply");
    drop(staged);
    assert_eq!(s.stats().last_compaction_error, None);
    assert_eq!(s.get(5).expect("get").as_deref(), Some(&b"again"[..]));
}

#[test]
fn values_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.max_value_len = 10;
    let s = Silo::open(dir.path(), o).expect("open");
    assert!(matches!(
        s.put(1, &[0; 11]),
        Err(Error::ValueTooLarge { len: 11, max: 10 })
    ));
    s.put(1, &[0; 10]).expect("at the limit");
}

#[test]
fn updates_that_fit_are_rewritten_in_place_and_others_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.put(1, &[1; 100]).expect("put");
    s.compact().expect("compact");
    let end = s.stats().data_end;
    s.put(1, &[2; 96]).expect("smaller");
    let report = s.compact().expect("compact");
    assert_eq!((report.in_place, report.appended), (1, 0));
    assert_eq!(s.stats().data_end, end, "no growth for an in-place write");
    s.put(1, &[3; 200]).expect("bigger");
    let report = s.compact().expect("compact");
    assert_eq!((report.in_place, report.appended), (0, 1));
    assert!(s.stats().dead_bytes > 0, "the old slot is dead space");
    assert_eq!(s.get(1).expect("get"), Some(vec![3; 200]));
}

#[test]
fn cold_compaction_reclaims_dead_space_and_keeps_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    for k in 0..2000u64 {
        s.put(k, &[k as u8; 100]).expect("put");
    }
    s.compact().expect("compact");
    for k in (0..2000u64).step_by(2) {
        s.delete(k).expect("delete");
    }
    s.compact().expect("compact");
    let before = s.stats();
    assert!(before.dead_bytes > 0);
    let report = s.compact_cold().expect("cold");
    assert!(report.reclaimed_bytes > 0);
    // Small runs of records stay in the page cache.
    assert_eq!(report.bytes_direct, 0);
    let after = s.stats();
    assert_eq!(after.dead_bytes, 0);
    assert_eq!(after.index_keys, 1000);
    for k in 0..2000u64 {
        let want = (k % 2 == 1).then(|| vec![k as u8; 100]);
        assert_eq!(s.get(k).expect("get"), want, "key {k}");
    }
}

/// Whether the file system under `dir` takes `O_DIRECT`.
fn takes_direct(dir: &std::path::Path) -> bool {
    let probe = dir.join("direct-probe");
    std::fs::write(&probe, b"").expect("probe");
    let direct = silo_io::direct::DirectWriter::open(&probe, 0, 1)
        .expect("open")
        .is_some();
    std::fs::remove_file(&probe).expect("remove probe");
    direct
}

/// A rewrite of more records than `PARALLEL_INDEX_FROM` builds its index on
/// a second thread while it writes the data file; with operations in the
/// log it folds them into the rewrite. Every key reads back, before and
/// after a reopen, and `verify` finds the data file and index agreeing.
#[test]
fn a_large_cold_rewrite_with_a_fold_keeps_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 120_000_u64;
    let mut model = std::collections::BTreeMap::new();
    {
        let s = open(dir.path());
        put_values(&s, 0..n, 1, 40, &mut model);
        let first = s.compact().expect("compact");
        // 120k new records, about 10 MB: written past the page cache
        // wherever the file system takes O_DIRECT.
        assert_eq!(
            first.bytes_direct > 0,
            takes_direct(dir.path()),
            "{first:?}"
        );
        assert!(first.bytes_direct <= first.bytes_written);
        // In the log when the rewrite runs: deletes, overwrites that grow,
        // merges, and new keys.
        for k in (0..n).step_by(3) {
            s.delete(k).expect("delete");
            model.remove(&k);
        }
        for k in (1..n).step_by(7) {
            s.put(k, &value(k, 2, 90)).expect("put");
            model.insert(k, value(k, 2, 90));
        }
        for k in (2..n).step_by(11) {
            s.merge(k, b"+m").expect("merge");
            let mut v = model.get(&k).cloned().unwrap_or_default();
            v.extend_from_slice(b"+m");
            model.insert(k, v);
        }
        for k in n..n + 1000 {
            s.put(k, &value(k, 3, 10)).expect("put");
            model.insert(k, value(k, 3, 10));
        }
        let report = s.compact_cold().expect("cold");
        assert!(report.cold && report.ops_folded > 0, "{report:?}");
        assert_eq!(
            report.bytes_direct > 0,
            takes_direct(dir.path()),
            "{report:?}"
        );
        assert_eq!(s.stats().index_keys, model.len() as u64);
        for k in 0..n + 1000 {
            assert_eq!(s.get(k).expect("get"), model.get(&k).cloned(), "key {k}");
        }
    }
    let s = open(dir.path());
    let report = assert_holds(&s, &model, "reopened");
    assert_eq!(report.index_entries, model.len() as u64);
    for k in 0..n + 1000 {
        assert_eq!(s.get(k).expect("get"), model.get(&k).cloned(), "key {k}");
    }
}

/// A hot fold that rewrites many records in place and adds keys enough to
/// outgrow the index: its journal (about 10 MB) is written past the page
/// cache, a new index is built beside the data write, and a small in-place
/// fold's journal stays cached. Every key reads back, before and after a
/// reopen, and `verify` finds the data file and index agreeing.
#[test]
fn a_large_in_place_fold_with_a_growing_index_keeps_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 120_000_u64;
    let mut model = std::collections::BTreeMap::new();
    {
        let s = open_in_place(dir.path());
        for round in [1u64, 2] {
            // Round 2 overwrites every key with a value of the same length
            // (in place) and adds 60,000 keys (past the index's room).
            let keys = if round == 1 { n } else { n + 60_000 };
            put_values(&s, 0..keys, round, 40, &mut model);
            if round == 2 {
                for k in (0..n).step_by(9) {
                    s.delete(k).expect("delete");
                    model.remove(&k);
                }
            }
            let report = s.compact().expect("compact");
            if round == 2 {
                let rewritten = n - n.div_ceil(9);
                assert_eq!(
                    (report.in_place, report.appended, report.deleted),
                    (rewritten, 60_000, n.div_ceil(9)),
                    "{report:?}"
                );
                assert!(report.journal_bytes > 8 << 20, "{report:?}");
                assert!(
                    !dir.path().join("journal").exists(),
                    "the journal is removed once the new index is installed"
                );
                assert_eq!(
                    report.bytes_direct > report.journal_bytes,
                    takes_direct(dir.path()),
                    "{report:?}"
                );
            }
        }
        // A small in-place fold (of keys still there): its journal goes
        // through the page cache.
        for k in (1..20).filter(|k| k % 9 != 0) {
            s.put(k, &value(k, 3, 40)).expect("put");
            model.insert(k, value(k, 3, 40));
        }
        let small = s.compact().expect("compact");
        assert_eq!((small.in_place, small.appended), (17, 0), "{small:?}");
        assert!(small.journal_bytes > 0, "{small:?}");
        assert_eq!(small.bytes_direct, 0, "{small:?}");
        assert_eq!(s.stats().index_keys, model.len() as u64);
        for k in 0..n + 60_000 {
            assert_eq!(s.get(k).expect("get"), model.get(&k).cloned(), "key {k}");
        }
    }
    let s = open_in_place(dir.path());
    let report = assert_holds(&s, &model, "reopened");
    assert_eq!(report.index_entries, model.len() as u64);
    for k in 0..n + 60_000 {
        assert_eq!(s.get(k).expect("get"), model.get(&k).cloned(), "key {k}");
    }
}

#[test]
fn sync_durability_round_trips_and_flush_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Silo::open(dir.path(), opts().with_durability(Durability::Sync)).expect("open");
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..50 {
                    s.put(t * 1000 + i, b"v").expect("put");
                }
            });
        }
    });
    s.flush().expect("flush");
    assert_eq!(s.iter().count(), 200);
}

#[test]
fn a_directory_with_logs_but_no_manifest_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut o = opts();
        o.compact_on_close = false;
        let s = Silo::open(dir.path(), o).expect("open");
        s.put(1, b"x").expect("put");
        s.close().expect("close");
    }
    std::fs::remove_file(dir.path().join("MANIFEST")).expect("remove");
    assert!(matches!(
        Silo::open(dir.path(), opts()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_torn_log_tail_is_dropped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut o = opts();
        o.compact_on_close = false;
        let s = Silo::open(dir.path(), o).expect("open");
        s.put(1, b"kept").expect("put");
        s.close().expect("close");
    }
    // Append half a frame after the last one, as a crash mid-write would.
    let log = dir.path().join("log-0");
    let bytes = std::fs::read(&log).expect("read");
    let end = 64 + silo_format::frame_len(4);
    let mut torn = bytes.clone();
    // A clean close trims the slot; a crash leaves its zero-filled tail.
    torn.resize(torn.len().max(end + 4096), 0);
    torn[end..end + 9].copy_from_slice(&[1, 2, 0, 0, 0, 0, 0, 0, 0]);
    std::fs::write(&log, &torn).expect("write");
    let s = open(dir.path());
    assert_eq!(s.get(1).expect("get").as_deref(), Some(&b"kept"[..]));
    assert!(s.stats().torn_tail_bytes > 0);
    s.put(2, b"after").expect("put after the tear");
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.get(2).expect("get").as_deref(), Some(&b"after"[..]));
}

#[test]
fn a_failing_automatic_compaction_does_not_fail_the_write_that_started_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.auto_compact = true;
    o.thresholds.pending_ops = 3;
    o.thresholds.min_interval = std::time::Duration::ZERO;
    let s = Silo::open(dir.path(), o).expect("open");
    s.put(1, b"base").expect("put");
    s.merge(1, b"!bad").expect("merge is logged");
    s.put(2, b"x").expect("put");
    // This write crosses the threshold; the compaction it wakes the worker
    // for fails on key 1.
    s.put(3, b"y").expect("the write itself succeeded");
    s.wait_background().expect("wait for the worker");
    let stats = s.stats();
    assert!(
        stats
            .last_compaction_error
            .as_deref()
            .is_some_and(|e| e.contains("key 1")),
        "{stats:?}"
    );
    assert_eq!(s.get(3).expect("get").as_deref(), Some(&b"y"[..]));
    s.delete(1).expect("delete supersedes the bad operand");
    s.compact().expect("compaction goes through");
    assert_eq!(s.stats().last_compaction_error, None);
}

#[test]
fn an_unknown_format_version_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path()).close().expect("close");
    let path = dir.path().join("MANIFEST");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    match Silo::open(dir.path(), opts()) {
        Err(Error::Format {
            source: silo_format::FormatError::UnsupportedVersion { found: 2, .. },
            ..
        }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn truncated_or_foreign_files_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path());
        s.put(1, b"x").expect("put");
        s.close().expect("close");
    }
    let data = dir.path().join("data-1");
    let original = std::fs::read(&data).expect("read");
    std::fs::write(&data, &original[..10]).expect("truncate");
    assert!(Silo::open(dir.path(), opts()).is_err());
    // A data file where the index file should be.
    std::fs::write(&data, &original).expect("restore");
    std::fs::copy(&data, dir.path().join("index-1")).expect("copy");
    match Silo::open(dir.path(), opts()) {
        Err(Error::Io(silo_io::error::IoError::BadHeader {
            source: silo_format::FormatError::WrongKind { .. },
            ..
        })) => {}
        other => panic!("expected WrongKind, got {other:?}"),
    }
}

#[test]
fn a_long_log_replays_on_two_threads_without_losing_an_operation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.compact_on_close = false;
    o.pending_limit_bytes = 1 << 30;
    let keys = 70_000u64;
    {
        let s = Silo::open(dir.path(), o.clone()).expect("open");
        for k in 0..keys {
            s.put(k, &crate::common::value(k, 1, 120)).expect("put");
        }
        for k in (0..keys).step_by(7) {
            s.merge(k, b"+").expect("merge");
        }
        assert!(
            s.stats().log_bytes > 8 << 20,
            "the log must be long enough to replay in parallel"
        );
        s.close().expect("close");
    }
    let s = Silo::open(dir.path(), o).expect("reopen");
    assert_eq!(s.stats().pending_keys, keys);
    for k in 0..keys {
        let mut want = crate::common::value(k, 1, 120);
        if k % 7 == 0 {
            want.push(b'+');
        }
        assert_eq!(s.get(k).expect("get"), Some(want), "key {k}");
    }
}

#[test]
fn every_sync_write_is_covered_by_an_fdatasync_and_concurrent_ones_share_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Silo::open(dir.path(), opts().with_durability(Durability::Sync)).expect("open");
    for k in 0..10u64 {
        s.put(k, b"v").expect("put");
    }
    // One writer: nothing to share, so one fdatasync per write.
    assert_eq!(s.stats().log_syncs, 10);
    std::thread::scope(|scope| {
        for t in 1..=4u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..100 {
                    s.put(t * 1000 + i, b"v").expect("put");
                }
            });
        }
    });
    let syncs = s.stats().log_syncs - 10;
    assert!((1..=400).contains(&syncs), "{syncs} syncs for 400 writes");
}

#[test]
fn a_refused_operand_never_makes_the_store_unopenable() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path());
        s.put(1, b"base").expect("put");
        s.merge(1, b"!bad").expect("merge is logged");
        s.put(2, b"other").expect("put");
        // Close tries to fold the log, fails on key 1, and still closes.
        s.close().expect("close");
    }
    let s = open(dir.path());
    assert!(s.stats().last_compaction_error.is_some());
    assert!(matches!(s.get(1), Err(Error::Merge { key: 1, .. })));
    assert_eq!(s.get(2).expect("get").as_deref(), Some(&b"other"[..]));
    s.delete(1).expect("delete");
    s.compact()
        .expect("compaction goes through once the key is deleted");
    assert_eq!(s.get(1).expect("get"), None);
}

#[test]
fn a_lost_manifest_never_wipes_compacted_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(dir.path());
        s.put(1, b"x").expect("put");
        s.close().expect("close folds the log into the data file");
    }
    std::fs::remove_file(dir.path().join("MANIFEST")).expect("remove");
    assert!(matches!(
        Silo::open(dir.path(), opts()),
        Err(Error::Corrupt { .. })
    ));
    assert!(dir.path().join("data-1").exists(), "nothing was removed");
}

/// A compaction reports every operation it folded from the log.
#[test]
fn a_compaction_reports_the_operations_it_folded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.put(1, b"a").expect("put");
    s.put(2, b"b").expect("put");
    s.merge(1, b"+").expect("merge");
    s.delete(2).expect("delete");
    let mut b = WriteBatch::new();
    b.put(3, b"c").put(4, b"d");
    s.write(&b).expect("batch");
    let r = s.compact().expect("compact");
    // Four single operations and the batch's two (its markers are not operations).
    assert_eq!(r.ops_folded, 6);
    assert_eq!((r.appended, r.deleted), (3, 0), "{r:?}");
}

/// A merge result longer than readers accept is never written: the
/// compaction refuses (an operand error: the store stays usable and the
/// operands stay pending), the data file is left as it was.
#[test]
fn a_merge_result_over_the_read_limit_is_refused_by_compaction() {
    /// Turns the operand `huge` into a value one byte over 1 GiB (the
    /// limit readers accept); zeroed memory, so it costs little.
    struct Huge;
    impl silo_core::MergeOperator for Huge {
        fn merge(
            &self,
            _key: u64,
            existing: Option<&[u8]>,
            operands: &[&[u8]],
            out: &mut Vec<u8>,
        ) -> Result<(), String> {
            if operands.contains(&&b"huge"[..]) {
                *out = vec![0u8; (1 << 30) + 1];
            } else {
                out.extend_from_slice(existing.unwrap_or_default());
                operands.iter().for_each(|o| out.extend_from_slice(o));
            }
            Ok(())
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = Options::default().with_merge_operator(Huge);
    o.auto_compact = false;
    let s = Silo::open(dir.path(), o).expect("open");
    s.put(1, b"small").expect("put");
    s.put(2, b"other").expect("put");
    s.compact().expect("compact");
    let data_end = s.stats().data_end;
    s.merge(1, b"huge").expect("merge is logged");
    match s.compact() {
        Err(Error::ValueTooLarge { len, .. }) => assert_eq!(len, (1 << 30) + 1),
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert_eq!(s.stats().data_end, data_end, "nothing was written");
    assert_eq!(s.get(2).expect("get").as_deref(), Some(&b"other"[..]));
    // A put of the key supersedes the operand and lets compaction through.
    s.put(1, b"fixed").expect("put");
    s.compact().expect("compact");
    assert_eq!(s.get(1).expect("get").as_deref(), Some(&b"fixed"[..]));
}

/// Data and index files the manifest does not name (left by a cold
/// compaction or a rehash cut off by a crash) are removed at open, so the
/// next cold compaction can create its files again.
#[test]
fn stray_files_of_a_cut_off_compaction_are_removed_and_compaction_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.put(1, b"one").expect("put");
    s.compact().expect("compact");
    s.close().expect("close");
    // Files of a cut-off compaction, an atomic replace and two cut-off
    // file creations.
    let strays = [
        "data-2",
        "index-2",
        "MANIFEST.tmp",
        "data-3.tmp",
        "index-3.tmp",
    ];
    for stray in strays {
        std::fs::write(dir.path().join(stray), b"left by a crash").expect("stray");
    }
    let s = open(dir.path());
    for stray in strays {
        assert!(!dir.path().join(stray).exists(), "{stray} was kept");
    }
    s.compact_cold()
        .expect("cold compaction creates data-2 again");
    assert_eq!(s.get(1).expect("get").as_deref(), Some(&b"one"[..]));
}

/// After an unclean shutdown the space figures are recounted at open and
/// match the ones a clean close would have recorded.
#[test]
fn an_unclean_open_recounts_live_and_dead_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    for k in 0..50u64 {
        s.put(k, &vec![7u8; 40 + k as usize]).expect("put");
    }
    s.compact().expect("compact");
    for k in 0..10u64 {
        s.put(k, &[8u8; 200]).expect("put: moved");
    }
    for k in 40..45u64 {
        s.delete(k).expect("delete: a tombstone");
    }
    s.compact().expect("compact");
    let (live, dead) = (s.stats().live_bytes, s.stats().dead_bytes);
    assert!(live > 0 && dead > 0);
    // A process kill: every file as the page cache holds it, no clean close.
    let crashed = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        if entry.file_name() == "LOCK" {
            continue;
        }
        std::fs::copy(entry.path(), crashed.path().join(entry.file_name())).expect("copy");
    }
    drop(s);
    let s = open(crashed.path());
    assert_eq!((s.stats().live_bytes, s.stats().dead_bytes), (live, dead));
}

/// A compaction's report and the space accounting, exactly: appended
/// records and tombstones go out in one write call (they are contiguous),
/// so do in-place rewrites of neighbouring records; bytes written match the
/// data file's growth; live and dead bytes follow every append, rewrite and
/// delete; and no journal outlives the compaction that wrote it.
#[test]
fn a_compaction_writes_in_few_calls_and_accounts_for_every_byte() {
    use silo_format::RECORD_HEADER_LEN;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let journal = dir.path().join("journal");
    let end0 = s.stats().data_end;
    for k in 0..200u64 {
        s.put(k, &[1; 50]).expect("put");
    }
    let r = s.compact().expect("compact");
    let end1 = s.stats().data_end;
    let size = (end1 - end0) / 200;
    assert_eq!((end1 - end0) % 200, 0, "equal values take equal records");
    assert_eq!((r.appended, r.in_place, r.deleted), (200, 0, 0));
    assert_eq!(r.bytes_written, end1 - end0);
    assert_eq!(r.bytes_read, r.log_bytes_retired, "only the slot is read");
    assert_eq!(r.write_syscalls, 1, "contiguous appends are one write");
    assert_eq!(
        (s.stats().live_bytes, s.stats().dead_bytes),
        (200 * size, 0)
    );

    for k in 0..200u64 {
        s.put(k, &[2; 50]).expect("overwrite, same size");
    }
    let r = s.compact().expect("compact");
    assert_eq!((r.appended, r.in_place, r.deleted), (0, 200, 0));
    assert_eq!(r.bytes_written, 200 * size);
    assert_eq!(
        r.bytes_read,
        r.log_bytes_retired + 200 * size,
        "the slot and each stored record"
    );
    assert_eq!(r.write_syscalls, 1, "neighbouring rewrites are one write");
    assert_eq!(s.stats().data_end, end1);
    assert!(!journal.exists(), "the journal outlived its compaction");
    assert_eq!(
        (s.stats().live_bytes, s.stats().dead_bytes),
        (200 * size, 0)
    );

    for k in 0..10u64 {
        s.delete(k).expect("delete");
    }
    let r = s.compact().expect("compact");
    let tombstones = 10 * RECORD_HEADER_LEN as u64;
    assert_eq!((r.appended, r.in_place, r.deleted), (0, 0, 10));
    assert_eq!(r.bytes_written, tombstones);
    assert_eq!(r.write_syscalls, 1);
    assert_eq!(s.stats().data_end, end1 + tombstones);
    assert_eq!(
        (s.stats().live_bytes, s.stats().dead_bytes),
        (190 * size, 10 * size + tombstones)
    );

    // Growing values move: the new records are live, the old ones dead.
    let before = s.stats().data_end;
    for k in 10..15u64 {
        s.put(k, &[3; 500]).expect("grow");
    }
    let r = s.compact().expect("compact");
    let grown = s.stats().data_end - before;
    assert_eq!(
        (r.appended, r.bytes_written, r.write_syscalls),
        (5, grown, 1)
    );
    assert_eq!(
        (s.stats().live_bytes, s.stats().dead_bytes),
        (185 * size + grown, 15 * size + tombstones)
    );
    assert!(!journal.exists());
    for k in 0..200u64 {
        let want = match k {
            0..10 => None,
            10..15 => Some(vec![3; 500]),
            _ => Some(vec![2; 50]),
        };
        assert_eq!(s.get(k).expect("get"), want, "key {k}");
    }

    // A cold rewrite reads each live record once and writes the new file.
    let live = s.stats().live_bytes;
    let r = s.compact_cold().expect("cold");
    assert!(r.cold);
    assert_eq!(r.bytes_read, live, "every live record, once");
    assert_eq!(r.bytes_written, s.stats().data_end - end0);
    assert_eq!(r.bytes_written, s.stats().live_bytes);
}

/// The index is rehashed into a bigger file more than once, each with a
/// new id; every key stays findable, across a reopen too.
#[test]
fn the_index_grows_twice_and_keeps_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index_files = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("index-"))
            .collect();
        names.sort();
        names
    };
    let s = open(dir.path());
    let mut seen = vec![index_files(dir.path())];
    for round in 0..3u64 {
        for k in 0..(2000 << round) {
            s.put(k, &k.to_le_bytes()).expect("put");
        }
        s.compact().expect("compact");
        seen.push(index_files(dir.path()));
    }
    for names in &seen {
        assert_eq!(names.len(), 1, "one index file at a time: {seen:?}");
    }
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        4,
        "three rehashes, three new files: {seen:?}"
    );
    s.close().expect("close");
    let s = open(dir.path());
    assert_eq!(s.stats().index_keys, 8000);
    for k in (0..8000u64).step_by(7) {
        assert_eq!(s.get(k).expect("get"), Some(k.to_le_bytes().to_vec()));
    }
    assert!(s.verify().expect("verify").problems.is_empty());
}

/// A `journal` left in a directory by some earlier store (whose manifest
/// was lost) must not be replayed into a store created there.
#[test]
fn a_stale_journal_in_a_new_stores_directory_is_removed() {
    use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};
    let old = tempfile::tempdir().expect("tempdir");
    {
        let s = open(old.path());
        for k in 0..20u64 {
            s.put(k, &[b'o'; 40]).expect("put");
        }
        s.compact().expect("compact");
        for k in 0..20u64 {
            s.put(k, &[b'p'; 40]).expect("overwrite in place");
        }
        // The compaction removes any old journal before writing its own,
        // and that one after the rewrites: the second removal fails.
        let guard = install(
            old.path(),
            FaultPlan::new().on(FaultOp::Remove, 2, FaultAction::Fail),
        );
        assert!(s.compact().is_err());
        drop(guard);
    }
    assert!(old.path().join("journal").exists(), "no journal to reuse");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(old.path().join("journal"), dir.path().join("journal")).expect("copy");
    {
        let s = open(dir.path());
        assert!(!dir.path().join("journal").exists());
        for k in 0..40u64 {
            s.put(k, &value_of(k)).expect("put");
        }
        s.compact().expect("compact");
        s.close().expect("close");
    }
    let s = open(dir.path());
    for k in 0..40u64 {
        assert_eq!(s.get(k).expect("get"), Some(value_of(k)), "key {k}");
    }
}

fn value_of(k: u64) -> Vec<u8> {
    crate::common::value(k, 1, 40)
}

/// A creation cut off before its manifest (here: the manifest's rename
/// fails) leaves files with headers only; the next open creates the store.
#[test]
fn a_creation_cut_off_before_its_manifest_is_started_again() {
    use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let _guard = install(
            dir.path(),
            FaultPlan::new().every(FaultOp::Rename, FaultAction::Fail),
        );
        assert!(Silo::open(dir.path(), opts()).is_err());
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log-") || n.starts_with("data-"))
        .collect();
    assert!(!left.is_empty(), "the cut-off creation left no files");
    let s = open(dir.path());
    s.put(1, b"one").expect("put");
    s.compact().expect("compact");
    s.close().expect("close");
    assert_eq!(
        open(dir.path()).get(1).expect("get").as_deref(),
        Some(&b"one"[..])
    );
}

/// A batch's tag is kept exactly as its operations are: through the
/// pending view, compaction (the manifest), a clean close and a crash
/// (the logs), and a tagged batch of one operation still counts.
#[test]
fn batch_tags_are_kept_as_durably_as_their_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kill_copy = |from: &std::path::Path| {
        let to = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(from).expect("dir").flatten() {
            if entry.file_name() != "LOCK" {
                std::fs::copy(entry.path(), to.path().join(entry.file_name())).expect("copy");
            }
        }
        to
    };
    let s = open(dir.path());
    assert_eq!(s.batch_tag(), 0);
    let mut b = WriteBatch::new();
    b.put(1, b"one").set_tag(5);
    s.write(&b).expect("one tagged operation");
    assert_eq!(s.batch_tag(), 5);
    b.clear();
    assert_eq!(b.tag(), 0, "clear removes the tag");
    b.put(2, b"two").put(3, b"three").set_tag(3);
    s.write(&b).expect("a lower tag");
    assert_eq!(s.batch_tag(), 5, "the highest tag, not the last");
    // In the logs only: a crash image replays the tag.
    let crashed = kill_copy(dir.path());
    assert_eq!(open(crashed.path()).batch_tag(), 5);
    // Folded: the logs are emptied, the manifest keeps it.
    s.compact().expect("compact");
    let mut b = WriteBatch::new();
    b.put(4, b"four");
    s.write(&b).expect("untagged");
    let crashed = kill_copy(dir.path());
    let c = open(crashed.path());
    assert_eq!((c.batch_tag(), c.stats().pending_ops), (5, 1));
    drop(c);
    b.clear();
    b.delete(1).set_tag(8);
    s.write(&b).expect("tagged delete");
    s.compact_cold().expect("cold compaction keeps it too");
    s.close().expect("close");
    let s = open(dir.path());
    assert_eq!(s.batch_tag(), 8);
    assert_eq!(s.get(1).expect("get"), None);
    assert_eq!(s.get(3).expect("get").as_deref(), Some(&b"three"[..]));
}

/// `Stats::disk_bytes` is what the store's files take on disk: the data
/// file, the index, both log slots (by their allocated blocks) and the
/// manifest (one block).
#[test]
fn disk_bytes_count_every_file_of_the_store() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    for k in 0..300u64 {
        s.put(k, &[5; 100]).expect("put");
    }
    s.compact().expect("compact");
    let measured: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            ["data-", "index-", "log-"].iter().any(|p| n.starts_with(p))
        })
        .map(|e| e.metadata().expect("stat").blocks() * 512)
        .sum();
    assert_eq!(s.stats().disk_bytes, measured + 4096);
}

/// `advise` covers the data file up to its end and the whole index, and
/// changes nothing a read sees.
#[test]
fn advice_covers_the_compaction_inputs_and_changes_no_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    for k in 0..500u64 {
        s.put(k, &[4; 64]).expect("put");
    }
    s.compact().expect("compact");
    let index_len: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("index-"))
        .map(|e| e.metadata().expect("stat").len())
        .sum();
    let expected = s.stats().data_end + index_len;
    assert_eq!(
        s.advise(silo_io::FileAdvice::DontNeed).expect("drop"),
        expected
    );
    assert_eq!(s.get(77).expect("get"), Some(vec![4; 64]));
    assert_eq!(
        s.advise(silo_io::FileAdvice::WillNeed).expect("fetch"),
        expected
    );
    assert_eq!(s.get(499).expect("get"), Some(vec![4; 64]));
}

/// Many in-place results spread thin over the data file (one record in
/// eight rewritten) are appended instead, their old records counted dead;
/// as many packed together (every record of a range) are rewritten in
/// place. Both read back, before and after a reopen.
#[test]
fn sparse_in_place_results_are_appended_and_dense_ones_stay_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 640_000_u64;
    let mut model = std::collections::BTreeMap::new();
    {
        let s = open(dir.path());
        put_values(&s, 0..n, 1, 40, &mut model);
        // The first fold appends in key order: neighbours in key are
        // neighbours in the file.
        s.compact().expect("compact");
        let dead_before = s.stats().dead_bytes;
        for k in (0..n).step_by(8) {
            s.put(k, &value(k, 2, 40)).expect("put");
            model.insert(k, value(k, 2, 40));
        }
        let sparse = s.compact().expect("compact");
        assert_eq!((sparse.in_place, sparse.appended), (0, n / 8), "{sparse:?}");
        assert_eq!(sparse.journal_bytes, 0, "{sparse:?}");
        assert!(sparse.bytes_written >= 4 << 20, "{sparse:?}");
        let moved = s.stats().dead_bytes - dead_before;
        assert!(
            moved >= sparse.bytes_written * 9 / 10,
            "{moved} dead, {sparse:?}"
        );
        for k in 0..n / 8 {
            s.put(k, &value(k, 3, 40)).expect("put");
            model.insert(k, value(k, 3, 40));
        }
        let dense = s.compact().expect("compact");
        assert_eq!(dense.in_place + dense.appended, n / 8, "{dense:?}");
        assert!(dense.in_place >= n / 8 - n / 64, "{dense:?}");
        for k in (0..n).step_by(97) {
            assert_eq!(s.get(k).expect("get"), model.get(&k).cloned(), "key {k}");
        }
    }
    assert_holds(&open(dir.path()), &model, "reopened");
}

/// Which way a fold writes 4 MiB or more of in-place results, by what each
/// would cost: one small record in two rewritten is appended (a write call
/// each, though they share pages); one 370-byte record in four is
/// appended (a page each, though the calls alone would be cheap); every
/// record of a range of large ones stays in place.
/// A fold that would rewrite half the live record bytes or more in place
/// goes into a cold rewrite instead (each result would be written twice in
/// place, journal then record; the rewrite writes every live record once),
/// unless `rewrite_share` keeps it in place; below the share, it stays in
/// place. Every key reads back either way, and after a reopen.
#[test]
fn a_fold_rewriting_most_records_goes_into_a_rewrite() {
    // (the first 1/`part` of the keys overwritten: one run of records, in
    // place unless rewritten; `rewrite_share`; rewritten cold?)
    let n = 200_000u64;
    for (part, share, cold) in [
        (1u64, 0.5, true),
        (2, 0.5, true),
        (4, 0.5, false),
        (1, f64::INFINITY, false),
        (4, 0.2, true),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = opts();
        o.thresholds.rewrite_share = share;
        let mut model = std::collections::BTreeMap::new();
        let s = Silo::open(dir.path(), o.clone()).expect("open");
        put_values(&s, 0..n, 1, 100, &mut model);
        s.compact().expect("compact");
        let data_before = s.stats().data_end;
        let rewritten = n / part;
        put_values(&s, 0..rewritten, 2, 100, &mut model);
        let report = s.compact().expect("compact");
        let case = format!("1/{part} of the keys, share {share}: {report:?}");
        assert_eq!(report.cold, cold, "{case}");
        if cold {
            assert_eq!((report.in_place, report.journal_bytes), (0, 0), "{case}");
            assert_eq!(report.appended, rewritten, "{case}");
            // The live records written once, no dead space left.
            assert_eq!(s.stats().dead_bytes, 0, "{case}");
            assert_eq!(s.stats().data_end, data_before, "{case}");
        } else {
            assert_eq!((report.in_place, report.appended), (rewritten, 0), "{case}");
            assert!(report.journal_bytes > 0, "{case}");
        }
        for k in 0..n {
            assert_eq!(
                s.get(k).expect("get"),
                model.get(&k).cloned(),
                "{case}, key {k}"
            );
        }
        drop(s);
        let s = Silo::open(dir.path(), o).expect("reopen");
        assert_holds(&s, &model, &case);
    }
}

#[test]
fn the_cheaper_way_is_taken_for_many_in_place_results() {
    // (value length, keys, one key in `stride` rewritten, appended?)
    let cases = [
        (40usize, 160_000u64, 2u64, true),
        (370, 48_000, 4, true),
        (370, 12_000, 1, false),
    ];
    for (len, n, stride, appended) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open_in_place(dir.path());
        let mut model = std::collections::BTreeMap::new();
        put_values(&s, 0..n, 1, len, &mut model);
        s.compact().expect("compact");
        for k in (0..n).step_by(usize::try_from(stride).expect("fits")) {
            s.put(k, &value(k, 2, len)).expect("put");
            model.insert(k, value(k, 2, len));
        }
        let report = s.compact().expect("compact");
        let case = format!("{len}-byte values, one in {stride}: {report:?}");
        // Past the 4 MiB below which in place is always kept.
        let moved = if appended {
            report.bytes_written
        } else {
            report.journal_bytes
        };
        assert!(moved >= 4 << 20, "{case}");
        let rewritten = n / stride;
        let want = if appended {
            (0, rewritten)
        } else {
            (rewritten, 0)
        };
        assert_eq!((report.in_place, report.appended), want, "{case}");
        assert_holds(&s, &model, &case);
    }
}

/// The 4 MiB floor of the cost rule, exactly: sparse in-place results of
/// one record less than 4 MiB stay in place; of exactly 4 MiB they are
/// weighed, and (spread one record in four) appended.
#[test]
fn in_place_results_are_weighed_from_exactly_four_mebibytes() {
    // A value length whose record size divides 4 MiB.
    let slack = opts().value_slack_percent;
    let (len, size) = (400..1000usize)
        .find_map(|len| {
            let alloc = silo_format::alloc_for(len, slack).ok()?;
            let size = silo_format::record_size(alloc);
            (4usize << 20).is_multiple_of(size).then_some((len, size))
        })
        .expect("a length whose record divides 4 MiB");
    let at_floor = u64::try_from((4usize << 20) / size).expect("fits");
    for (rewritten, appended) in [(at_floor - 1, false), (at_floor, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path());
        let mut model = std::collections::BTreeMap::new();
        let n = 4 * at_floor;
        put_values(&s, 0..n, 1, len, &mut model);
        s.compact().expect("compact");
        for k in (0..n)
            .step_by(4)
            .take(usize::try_from(rewritten).expect("fits"))
        {
            s.put(k, &value(k, 2, len)).expect("put");
            model.insert(k, value(k, 2, len));
        }
        let report = s.compact().expect("compact");
        let want = if appended {
            (0, rewritten)
        } else {
            (rewritten, 0)
        };
        assert_eq!(
            (report.in_place, report.appended),
            want,
            "{rewritten} records of {size} bytes: {report:?}"
        );
        assert_holds(&s, &model, "after the fold");
    }
}

/// A hot compaction of `s` staged on `threads` threads, planned and
/// applied; the stage (which holds the compaction gate that reads take)
/// is dropped before this returns.
fn fold_staged(s: &Silo, threads: usize) -> silo_core::CompactionReport {
    let staged = s
        .stage_compaction(false)
        .expect("stage")
        .expect("work")
        .with_threads(threads);
    staged.apply(staged.plan().expect("plan")).expect("apply")
}

/// A large slot planned on two threads is cut between two keys, never
/// inside one key's operations: 25,001 keys with a put and two merges each
/// (75,003 operations; the middle one is a key's first merge) fold to the
/// same values as on one thread, each key once.
#[test]
fn a_slot_split_between_two_threads_keeps_each_keys_operations_together() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let keys = 25_001u64;
    let mut model = std::collections::BTreeMap::new();
    let mut reports = Vec::new();
    for (dir, threads) in dirs.iter().zip([1, 2]) {
        let s = open(dir.path());
        let mut b = WriteBatch::new();
        for k in 0..keys {
            let mut v = value(k, 1, 30);
            b.put(k, &v);
            for m in [&b"+a"[..], b"+b"] {
                b.merge(k, m);
                v.extend_from_slice(m);
            }
            model.insert(k, v);
        }
        s.write(&b).expect("write");
        let report = fold_staged(&s, threads);
        assert_eq!(report.ops_folded, 3 * keys, "{report:?}");
        assert_eq!(report.appended, keys, "each key written once: {report:?}");
        assert_holds(&s, &model, &format!("{threads} thread(s)"));
        reports.push((report.bytes_written, report.bytes_read));
    }
    assert_eq!(reports[0], reports[1]);
}

/// A long slot is read in two parts, cut between batches, and each key's
/// operations are gathered from both before it is folded: keys in two
/// bunches at the ends of the key space (the buckets they are sorted in
/// are then few and large), each put in the first half of the slot and
/// merged, deleted or put again in the second. One thread and two fold
/// the same values into byte-for-byte the same files.
#[test]
fn a_slot_read_in_two_parts_folds_each_keys_operations_from_both() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut o = opts();
    o.index_seed = Some(0xB0C7);
    let keys: Vec<u64> = (0..30_000u64).chain(u64::MAX - 30_000..u64::MAX).collect();
    let mut reports = Vec::new();
    let mut model = std::collections::BTreeMap::new();
    for (dir, threads) in dirs.iter().zip([1, 2]) {
        let s = Silo::open(dir.path(), o.clone()).expect("open");
        model.clear();
        let mut b = WriteBatch::new();
        for chunk in keys.chunks(2000) {
            b.clear();
            for k in chunk {
                let v = value(*k, 1, 60);
                b.put(*k, &v);
                model.insert(*k, v);
            }
            s.write(&b).expect("write");
        }
        for chunk in keys.chunks(2000) {
            b.clear();
            for k in chunk {
                match k % 7 {
                    0 => {
                        b.delete(*k);
                        model.remove(k);
                    }
                    1 => {
                        let v = value(*k, 2, 20);
                        b.put(*k, &v);
                        model.insert(*k, v);
                    }
                    _ => {
                        b.merge(*k, b"+m");
                        if let Some(v) = model.get_mut(k) {
                            v.extend_from_slice(b"+m");
                        }
                    }
                }
            }
            s.write(&b).expect("write");
        }
        let report = fold_staged(&s, threads);
        assert_eq!(report.ops_folded, 2 * keys.len() as u64, "{report:?}");
        assert_eq!(
            report.appended,
            model.len() as u64,
            "each key once: {report:?}"
        );
        assert_holds(&s, &model, &format!("{threads} thread(s)"));
        reports.push(figures(&report));
    }
    assert_eq!(reports[0], reports[1]);
    assert_same_files(dirs[0].path(), dirs[1].path(), "one thread and two");
}

/// A long slot whose cut leaves one operation on the far side (a batch
/// past the middle, then a single put) is read in two parts all the same,
/// and folds as on one thread.
#[test]
fn a_slot_read_in_two_uneven_parts_folds_as_on_one_thread() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut o = opts();
    o.index_seed = Some(0x0E7E);
    let mut model = std::collections::BTreeMap::new();
    for (dir, threads) in dirs.iter().zip([1, 2]) {
        let s = Silo::open(dir.path(), o.clone()).expect("open");
        model.clear();
        let mut b = WriteBatch::new();
        for k in 0..70_000u64 {
            let v = value(k, 1, 60);
            b.put(k * 7, &v);
            model.insert(k * 7, v);
        }
        s.write(&b).expect("write");
        s.put(3, b"last").expect("put");
        model.insert(3, b"last".to_vec());
        let report = fold_staged(&s, threads);
        assert_eq!(report.appended, 70_001, "{report:?}");
        assert_holds(&s, &model, &format!("{threads} thread(s)"));
    }
    assert_same_files(dirs[0].path(), dirs[1].path(), "one thread and two");
}

/// Damage found while a frozen slot is read for a plan is a typed error
/// that names the log and where in its body the damaged frame starts,
/// whichever part of the slot it is in and however many threads read it.
#[test]
fn damage_in_a_frozen_slot_is_reported_where_it_is() {
    for threads in [1, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path());
        let mut b = WriteBatch::new();
        for chunk in (0..70_000u64).collect::<Vec<_>>().chunks(2000) {
            b.clear();
            for k in chunk {
                b.put(*k, &value(*k, 1, 60));
            }
            s.write(&b).expect("write");
        }
        let body = s.stats().log_bytes;
        // The active slot is the longer file; its body follows the header.
        let log = ["log-0", "log-1"]
            .into_iter()
            .map(|n| dir.path().join(n))
            .max_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .expect("a log");
        let flip = body * 3 / 4;
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&log)
                .expect("open log");
            let at = silo_format::HEADER_LEN as u64 + flip;
            let mut byte = [0u8];
            f.read_exact_at(&mut byte, at).expect("read");
            f.write_all_at(&[byte[0] ^ 0x10], at).expect("write");
        }
        let staged = s
            .stage_compaction(false)
            .expect("stage")
            .expect("work")
            .with_threads(threads);
        match staged.plan() {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert!(file.to_string_lossy().contains("log"), "{file:?}");
                // The damaged frame starts at most one frame before the
                // flipped byte.
                assert!(
                    offset <= flip && flip - offset < 100,
                    "{threads} thread(s): damage at {offset}, byte {flip} flipped"
                );
            }
            other => panic!("{threads} thread(s): {other:?}"),
        }
    }
}

/// The data and index files in `dir`, by name, with their bytes.
fn data_and_index_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("data-") || n.starts_with("index-"))
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).expect("read");
            (n, bytes)
        })
        .collect();
    v.sort();
    v
}

/// Asserts that `a` and `b` hold the same data and index files, byte for
/// byte; returns them.
fn assert_same_files(
    a: &std::path::Path,
    b: &std::path::Path,
    what: &str,
) -> Vec<(String, Vec<u8>)> {
    let (x, y) = (data_and_index_files(a), data_and_index_files(b));
    assert_eq!(
        x.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        y.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "{what}"
    );
    for ((name, p), (_, q)) in x.iter().zip(&y) {
        assert!(p == q, "{what}: {name} differs");
    }
    x
}

/// What two compactions of the same work must agree on.
fn figures(r: &silo_core::CompactionReport) -> (u64, u64, u64, u64, u64, u64, u64) {
    (
        r.ops_folded,
        r.in_place,
        r.appended,
        r.deleted,
        r.bytes_read,
        r.bytes_written,
        r.reclaimed_bytes,
    )
}

/// A staged compaction on one thread and on two (the plan of a large slot
/// split between two, a new index built beside the data write, a cold
/// rewrite's index beside its data file) writes byte-for-byte the same
/// files from the same store.
/// `compact()` of a log with 8 MiB or more unsynced plans it while the
/// sync before the fold writes it, and leaves byte for byte the files a
/// staged compaction (which never plans early) leaves for the same writes.
/// When a writer appends between that plan and the freeze, the plan is
/// dropped and the slot frozen with the appended writes planned anew.
#[test]
fn an_early_plan_is_used_only_for_the_slot_it_planned() {
    use silo_io::fault::{FaultPlan, install};
    let mut o = opts();
    o.index_seed = Some(0x5EED);
    // 120,000 puts of 100 bytes: about 16 MB of log, none of it synced.
    let n = 120_000u64;
    let load = |dir: &std::path::Path| {
        let s = Silo::open(dir, o.clone()).expect("open");
        let mut model = std::collections::BTreeMap::new();
        put_values(&s, 0..n, 1, 100, &mut model);
        (s, model)
    };
    let [early, staged, held] = [(); 3].map(|()| tempfile::tempdir().expect("tempdir"));

    let (a, model) = load(early.path());
    let report = a.compact().expect("compact");
    assert!(report.planned_while_syncing, "{report:?}");
    assert_eq!(report.ops_folded, n, "{report:?}");
    assert_holds(&a, &model, "planned early");
    drop(a);

    let (b, _) = load(staged.path());
    let report = {
        let st = b.stage_compaction(false).expect("stage").expect("work");
        st.apply(st.plan().expect("plan")).expect("apply")
    };
    assert!(!report.planned_while_syncing, "{report:?}");
    drop(b);
    let files = assert_same_files(early.path(), staged.path(), "early and staged");
    assert!(files.len() >= 2, "{} files", files.len());

    let (c, mut model) = load(held.path());
    let guard = install(
        held.path(),
        FaultPlan::new().hold(silo_core::HOLD_EARLY_PLAN),
    );
    let report = std::thread::scope(|s| {
        let compacting = s.spawn(|| c.compact());
        guard.wait_held(silo_core::HOLD_EARLY_PLAN, 1);
        // Appended after the plan, before the freeze: the frozen slot is
        // not the one planned.
        put_values(&c, n..n + 1000, 2, 100, &mut model);
        put_values(&c, 0..10, 3, 100, &mut model);
        guard.release(silo_core::HOLD_EARLY_PLAN);
        compacting.join().expect("compaction thread")
    })
    .expect("compact");
    assert!(!report.planned_while_syncing, "{report:?}");
    assert_eq!(report.ops_folded, n + 1010, "{report:?}");
    assert_eq!(c.stats().pending_ops, 0);
    assert_holds(&c, &model, "planned again");
    drop(c);
    let c = Silo::open(held.path(), o.clone()).expect("reopen");
    assert_holds(&c, &model, "planned again, reopened");

    // A cold rewrite asked for plans early too; a short log (under 8 MiB
    // unsynced) does not.
    let cold = tempfile::tempdir().expect("tempdir");
    let (d, mut model) = load(cold.path());
    put_values(&d, 0..n, 4, 100, &mut model);
    let report = d.compact_cold().expect("cold");
    assert!(report.cold && report.planned_while_syncing, "{report:?}");
    assert_holds(&d, &model, "cold, planned early");
    put_values(&d, 0..1000, 5, 100, &mut model);
    let report = d.compact().expect("compact");
    assert_eq!(report.ops_folded, 1000, "{report:?}");
    assert!(!report.planned_while_syncing, "{report:?}");
    assert_holds(&d, &model, "short log");
}

#[test]
fn a_staged_compaction_on_one_or_two_threads_writes_the_same_files() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut o = in_place_opts();
    o.index_seed = Some(0x5EED);
    let stores: Vec<Silo> = dirs
        .iter()
        .map(|d| Silo::open(d.path(), o.clone()).expect("open"))
        .collect();
    // 70,000 keys, then every one overwritten (some longer, some merged)
    // with 40,000 new ones: a slot past both thresholds, folded into an
    // index that must grow; then a third deleted and a cold rewrite.
    for round in 0..3u64 {
        let mut reports = Vec::new();
        for (s, threads) in stores.iter().zip([1, 2]) {
            let mut b = WriteBatch::new();
            let keys = if round == 0 { 70_000 } else { 110_000 };
            for chunk in (0..keys).collect::<Vec<u64>>().chunks(5000) {
                b.clear();
                for k in chunk {
                    match (round, k % 5) {
                        (2, _) if k % 3 == 0 => b.delete(*k),
                        (_, 1) => b.merge(*k, b"+m"),
                        (_, 2) => b.put(*k, &value(*k, round, 60)),
                        _ => b.put(*k, &value(*k, round, 40)),
                    };
                }
                s.write(&b).expect("write");
            }
            let staged = s
                .stage_compaction(round == 2)
                .expect("stage")
                .expect("work")
                .with_threads(threads);
            let report = staged.apply(staged.plan().expect("plan")).expect("apply");
            assert_eq!(report.cold, round == 2, "{report:?}");
            reports.push(report);
        }
        // The figures agree too: the two halves' reads add up.
        assert_eq!(figures(&reports[0]), figures(&reports[1]), "round {round}");
        assert!(reports[0].bytes_read > 0);
        let a = assert_same_files(dirs[0].path(), dirs[1].path(), &format!("round {round}"));
        // Every index built since (grown, or by the cold rewrite) keeps the
        // store's hash seed.
        for (name, x) in a.iter().filter(|(n, _)| n.starts_with("index-")) {
            let header = silo_format::FileHeader::decode(x, silo_format::FileKind::Index)
                .expect("index header");
            assert_eq!(header.param_b, 0x5EED, "round {round}: {name}");
        }
    }
    let all: Vec<Vec<(u64, Vec<u8>)>> = stores
        .iter()
        .map(|s| {
            let mut v: Vec<(u64, Vec<u8>)> = s.iter().collect::<Result<_, _>>().expect("iter");
            v.sort();
            v
        })
        .collect();
    assert_eq!(all[0].len(), 110_000 - 110_000_usize.div_ceil(3));
    assert!(all[0] == all[1]);
}

/// `stage_compaction` is `compact` in three steps: nothing to fold is
/// `None` (unless a cold rewrite is asked for); a plan computed on another thread applies once; a cold stage
/// rewrites the data file; a thread holding an iterator is refused.
#[test]
fn a_staged_compaction_is_a_compaction_in_three_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    assert!(s.stage_compaction(false).expect("stage").is_none());
    for k in 0..100u64 {
        s.put(k, &[1; 30]).expect("put");
    }
    s.merge(7, b"+").expect("merge");
    let staged = s.stage_compaction(false).expect("stage").expect("work");
    // Writes go on into the other slot while the slot is frozen.
    s.put(500, b"during").expect("put while frozen");
    let plan = std::thread::scope(|t| {
        t.spawn(|| staged.plan().expect("plan"))
            .join()
            .expect("plan thread")
    });
    assert_eq!(plan.ops(), 101);
    let report = staged.apply(plan).expect("apply");
    assert_eq!(
        (report.appended, report.ops_folded, report.cold),
        (100, 101, false)
    );
    let again = staged.plan().map(|p| p.ops());
    assert!(
        matches!(again, Err(Error::InvalidOptions { .. })),
        "{again:?}"
    );
    drop(staged);
    assert_eq!(s.stats().index_keys, 100);
    assert_eq!(
        s.stats().pending_ops,
        1,
        "the write made while frozen stays pending"
    );
    let mut expected = vec![1u8; 30];
    expected.push(b'+');
    assert_eq!(s.get(7).expect("get"), Some(expected));
    for k in 0..50u64 {
        s.delete(k).expect("delete");
    }
    let staged = s.stage_compaction(true).expect("stage").expect("work");
    let report = staged.apply(staged.plan().expect("plan")).expect("apply");
    assert!(report.cold && report.reclaimed_bytes > 0, "{report:?}");
    drop(staged);
    // The cold rewrite in two steps; a prepared rewrite dropped unpublished
    // removes its files and changes nothing.
    for k in 50..80u64 {
        s.delete(k).expect("delete");
    }
    let files = |dir: &std::path::Path| -> Vec<String> {
        data_and_index_files(dir)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    let staged = s.stage_compaction(false).expect("stage").expect("work");
    staged.apply_hot(staged.plan().expect("plan")).expect("hot");
    let before = files(dir.path());
    drop(staged.prepare_cold().expect("prepare"));
    assert_eq!(files(dir.path()), before, "the unpublished rewrite is gone");
    let rewrite = staged.prepare_cold().expect("prepare again");
    assert!(staged.finish_cold(rewrite).expect("finish") > 0);
    drop(staged);
    assert_ne!(files(dir.path()), before, "the rewrite replaced the files");
    assert_eq!(s.get(90).expect("get"), Some(vec![1; 30]));
    assert_eq!(s.get(60).expect("get"), None);
    // Nothing to fold: no stage, unless a cold rewrite is asked for; then
    // an empty plan and the rewrite.
    assert!(s.stage_compaction(false).expect("stage").is_none());
    let staged = s.stage_compaction(true).expect("stage").expect("cold only");
    let plan = staged.plan().expect("plan");
    assert_eq!(plan.ops(), 0);
    let report = staged.apply(plan).expect("apply");
    assert!(report.cold && report.ops_folded == 0, "{report:?}");
    assert_eq!(report.bytes_written, s.stats().live_bytes);
    drop(staged);
    assert_eq!(s.get(90).expect("get"), Some(vec![1; 30]));
    let it = s.iter();
    assert!(matches!(
        s.stage_compaction(false),
        Err(Error::WouldDeadlock { .. })
    ));
    drop(it);
    // `try_stage_compaction` stages only if the gate is free at once: not
    // while another thread iterates.
    s.put(501, b"more").expect("put");
    let (held, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    std::thread::scope(|t| {
        t.spawn(|| {
            let it = s.iter();
            held.wait();
            release.wait();
            drop(it);
        });
        held.wait();
        let busy = s.try_stage_compaction(false).expect("try");
        assert!(busy.is_none(), "the gate is held by the iterator");
        release.wait();
    });
    let staged = s
        .try_stage_compaction(false)
        .expect("try")
        .expect("free now");
    assert_eq!(staged.plan().expect("plan").ops(), 1);
    drop(staged);
    assert_eq!(s.get(500).expect("get").as_deref(), Some(&b"during"[..]));
}

/// The data file grows in steps of an eighth of its size: after growing
/// several times, what it allocates past its end stays under that (or the
/// 1 MiB first step).
#[test]
fn the_data_file_allocates_little_past_its_end() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    for round in 0..6u64 {
        for k in 0..20_000u64 {
            s.put(round << 32 | k, &[7; 100]).expect("put");
        }
        s.compact().expect("compact");
        let end = s.stats().data_end;
        let allocated: u64 = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("data-"))
            .map(|e| e.metadata().expect("stat").blocks() * 512)
            .sum();
        assert!(
            allocated <= end + (end / 8).max(1 << 20) + 4096,
            "round {round}: {allocated} bytes allocated for {end}"
        );
    }
}

/// Creating a store removes only what an interrupted creation of a store
/// left: a file of the user's in the directory stays, and so does the
/// lock file of the store being opened.
#[test]
fn creating_a_store_leaves_foreign_files_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"mine").expect("write");
    let s = open(dir.path());
    assert_eq!(
        std::fs::read(dir.path().join("notes.txt")).expect("still there"),
        b"mine"
    );
    assert!(dir.path().join("LOCK").exists());
    s.put(1, b"one").expect("put");
}

/// A slot longer than the parallel replay's threshold (8 MiB) is replayed
/// by two threads, each recording its half of the keys: every key comes
/// back, each with its own last value, deletes included.
#[test]
fn a_long_log_replayed_by_two_threads_loses_and_mixes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.compact_on_close = false;
    let keys = 12_000u64;
    {
        let s = Silo::open(dir.path(), o.clone()).expect("open");
        for round in 0..3u64 {
            for k in 0..keys {
                s.put(k, &value(k, round, 240)).expect("put");
            }
        }
        for k in (0..keys).step_by(7) {
            s.delete(k).expect("delete");
        }
        s.close().expect("close");
    }
    let longest = ["log-0", "log-1"]
        .iter()
        .map(|n| std::fs::metadata(dir.path().join(n)).expect("slot").len())
        .max()
        .unwrap_or(0);
    assert!(
        longest > (8 << 20) + 64,
        "a slot of {longest} bytes is replayed by one thread"
    );
    let s = Silo::open(dir.path(), o).expect("reopen");
    for k in 0..keys {
        let expected = (k % 7 != 0).then(|| value(k, 2, 240));
        assert_eq!(s.get(k).expect("get"), expected, "key {k}");
    }
}

/// A cold rewrite copies a record whose room stays the same as it is, and
/// re-encodes one that shrank in place into the smaller room its value now
/// needs (one grown by slack, one written without it): the new file is the
/// live records back to back, each with the room the options give its
/// value and zero padding, and every value reads back.
#[test]
fn a_cold_rewrite_copies_or_reencodes_each_record_as_its_room_requires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = opts();
    o.value_slack_percent = 50;
    let n = 3_000_u64;
    let mut model = std::collections::BTreeMap::new();
    let s = Silo::open(dir.path(), o.clone()).expect("open");
    put_values(&s, 0..n, 1, 100, &mut model);
    s.compact().expect("compact");
    // Even keys shrink in place, keeping their room; a tenth are deleted.
    for k in (0..n).step_by(2) {
        let v = value(k, 2, 21);
        s.put(k, &v).expect("put");
        model.insert(k, v);
    }
    for k in (0..n).step_by(10) {
        s.delete(k).expect("delete");
        model.remove(&k);
    }
    let hot = s.compact().expect("compact");
    assert_eq!(hot.in_place, n / 2 - n / 10, "{hot:?}");
    let cold = s.compact_cold().expect("cold");
    let room = |len: usize| silo_format::alloc_for(len, 50).expect("alloc");
    let expected: u64 = model
        .values()
        .map(|v| silo_format::record_size(room(v.len())) as u64)
        .sum();
    assert_eq!(cold.bytes_written, expected, "{cold:?}");
    let data: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("data-"))
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect();
    assert_eq!(data.len(), 1, "the old data file is gone");
    let mut at = silo_format::HEADER_LEN;
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < model.len() {
        let record = silo_format::decode_record(&data[0][at..], 1 << 20).expect("record");
        assert_eq!(record.alloc, room(record.value.len()), "key {}", record.key);
        let end = at + record.size();
        let padding = &data[0][at + silo_format::RECORD_HEADER_LEN + record.value.len()..end];
        assert!(padding.iter().all(|b| *b == 0), "key {}", record.key);
        seen.insert(record.key, record.value.to_vec());
        at = end;
    }
    assert!(seen == model, "the new file holds exactly the live values");
    drop(s);
    assert_holds(
        &Silo::open(dir.path(), o).expect("reopen"),
        &model,
        "reopened",
    );
}

/// An in-place fold's journal holds each rewritten record in a frame, then
/// a commit frame: its size, as the report gives it, is exactly that.
#[test]
fn an_in_place_fold_journals_each_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let mut model = std::collections::BTreeMap::new();
    put_values(&s, 0..500, 1, 40, &mut model);
    s.compact().expect("compact");
    put_values(&s, 0..500, 2, 40, &mut model);
    let report = s.compact().expect("compact");
    assert_eq!(report.in_place, 500, "{report:?}");
    let record = silo_format::record_size(silo_format::alloc_for(40, 0).expect("alloc"));
    let journal = 500 * silo_format::frame_len(record) + silo_format::frame_len(0);
    assert_eq!(report.journal_bytes, journal as u64, "{report:?}");
    assert!(!dir.path().join("journal").exists(), "the journal is gone");
    assert_holds(&s, &model, "after the fold");
}

/// A plan's look ahead at the dead space its hot apply would leave (the
/// record bytes it appends, the stored records they and its deletes leave
/// behind) foresees what the apply then leaves: below the policy's dead
/// ratio when many new keys come with the outgrown ones, above it when
/// every key outgrows its record.
#[test]
fn a_plans_look_ahead_foresees_the_dead_space_its_apply_leaves() {
    let threshold = opts().thresholds.dead_ratio;
    // (keys outgrowing their 60-byte records, new keys, rewrite due)
    for (outgrown, new, due) in [(16_000u64, 60_000u64, false), (40_000, 0, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path());
        let mut model = std::collections::BTreeMap::new();
        put_values(&s, 0..40_000, 1, 60, &mut model);
        s.compact().expect("compact");
        put_values(&s, 0..outgrown, 2, 120, &mut model);
        put_values(&s, 40_000..40_000 + new, 2, 60, &mut model);
        let staged = s.stage_compaction(false).expect("stage").expect("work");
        let plan = staged.plan().expect("plan");
        let case = format!("{outgrown} outgrown, {new} new");
        assert_eq!(staged.folds_into_cold(&plan), due, "{case}");
        let hot = staged.apply_hot(plan).expect("hot");
        assert!(!hot.cold && hot.in_place == 0, "{case}: {hot:?}");
        assert_eq!(staged.cold_due(), due, "{case}: after the hot apply");
        drop(staged);
        let st = s.stats();
        let ratio = st.dead_bytes as f64 / (st.live_bytes + st.dead_bytes) as f64;
        assert_eq!(ratio > threshold, due, "{case}: {ratio} dead, {st:?}");
        assert_holds(&s, &model, &case);
    }
}

#[test]
fn a_staged_plan_whose_dead_space_calls_for_a_rewrite_goes_straight_into_it() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut o = opts();
    o.index_seed = Some(0xF01D);
    // The store's own compaction and a staged one, over the same writes.
    let (own, staged_store) = (
        Silo::open(dirs[0].path(), o.clone()).expect("open"),
        Silo::open(dirs[1].path(), o.clone()).expect("open"),
    );
    for s in [&own, &staged_store] {
        for k in 0..20_000u64 {
            s.put(k, &value(k, 0, 60)).expect("put");
        }
    }
    own.compact().expect("compact");
    // New keys only: no dead space, so the plan is applied hot.
    let staged = staged_store
        .stage_compaction(false)
        .expect("stage")
        .expect("work");
    let plan = staged.plan().expect("plan");
    assert!(!staged.folds_into_cold(&plan));
    let report = staged.apply(plan).expect("apply");
    assert!(!report.cold && report.appended == 20_000, "{report:?}");
    drop(staged);
    // Three keys in four outgrow their records, some are deleted or merged:
    // applied hot, that would leave a third of the file dead.
    for s in [&own, &staged_store] {
        for k in 0..20_000u64 {
            match k % 8 {
                0 => s.delete(k).expect("delete"),
                1 => s.merge(k, b"+m").expect("merge"),
                2 | 3 => {}
                _ => s.put(k, &value(k, 1, 120)).expect("put"),
            }
        }
    }
    let report = own.compact().expect("compact");
    assert!(report.cold && report.in_place == 0, "{report:?}");

    // A rewrite dropped unpublished removes its files; the slot stays
    // frozen and the next staged compaction folds it.
    let before = data_and_index_files(dirs[1].path());
    let staged = staged_store
        .stage_compaction(false)
        .expect("stage")
        .expect("work");
    let plan = staged.plan().expect("plan");
    assert!(staged.folds_into_cold(&plan));
    let folded = staged.prepare_folded(plan).expect("prepare");
    assert!(folded.bytes_written() > 0 && folded.bytes_read() > 0);
    let again = staged.plan().map(|p| p.ops());
    assert!(
        matches!(again, Err(Error::InvalidOptions { .. })),
        "{again:?}"
    );
    drop(folded);
    drop(staged);
    assert_eq!(
        data_and_index_files(dirs[1].path()),
        before,
        "the unpublished files are gone"
    );
    assert_eq!(staged_store.get(8).expect("get"), None, "still pending");

    let staged = staged_store
        .stage_compaction(false)
        .expect("stage")
        .expect("work");
    let plan = staged.plan().expect("plan");
    assert!(staged.folds_into_cold(&plan));
    let folded = staged.prepare_folded(plan).expect("prepare");
    // It copied the untouched records (keys 2 and 3 of every 8) and wrote
    // them and the results (merged 62-byte values, new 120-byte ones).
    let size = |len: usize| {
        silo_format::record_size(silo_format::alloc_for(len, o.value_slack_percent).expect("alloc"))
            as u64
    };
    let copied = 5000 * size(60);
    assert_eq!(folded.bytes_read(), copied);
    assert_eq!(
        folded.bytes_written(),
        copied + 2500 * size(62) + 10_000 * size(120)
    );
    let staged_report = staged.finish_folded(folded).expect("finish");
    drop(staged);
    assert_eq!(figures(&staged_report), figures(&report));
    assert!(staged_report.cold);
    assert_same_files(dirs[0].path(), dirs[1].path(), "own and staged");
    for s in [&own, &staged_store] {
        let st = s.stats();
        assert_eq!((st.pending_ops, st.dead_bytes, st.log_bytes), (0, 0, 0));
        for k in 0..20_000u64 {
            let want = match k % 8 {
                0 => None,
                1 => Some([value(k, 0, 60), b"+m".to_vec()].concat()),
                2 | 3 => Some(value(k, 0, 60)),
                _ => Some(value(k, 1, 120)),
            };
            assert_eq!(s.get(k).expect("get"), want, "key {k}");
        }
    }
    // Staged cold with nothing to fold: nothing goes straight in.
    let staged = staged_store
        .stage_compaction(true)
        .expect("stage")
        .expect("cold");
    let plan = staged.plan().expect("plan");
    assert!(!staged.folds_into_cold(&plan));
    let refused = staged.prepare_folded(plan).map(|f| f.bytes_written());
    assert!(
        matches!(refused, Err(Error::InvalidOptions { .. })),
        "{refused:?}"
    );
}

/// Files under `dir` that are deleted but still open or mapped by this
/// process (their blocks are not free yet).
fn held_deleted(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mut held: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .chain(
            std::fs::read_to_string("/proc/self/maps")
                .expect("maps")
                .lines()
                .filter_map(|l| l.split_once('/').map(|(_, p)| format!("/{p}")))
                .collect::<Vec<_>>(),
        )
        .filter(|p| p.starts_with(&dir) && p.ends_with(" (deleted)"))
        .collect();
    held.sort();
    held.dedup();
    held
}

/// Waits until no deleted file under `dir` is held, for up to 30 s.
fn let_go(dir: &std::path::Path) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let held = held_deleted(dir);
        if held.is_empty() || std::time::Instant::now() > deadline {
            return held;
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_compaction_lets_go_of_the_files_it_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    // Over 4 MiB of log and of data file: both are replaced, and let go of
    // on a thread of their own once the compaction's syncs are done.
    for k in 0..60_000u64 {
        s.put(k, &value(k, 0, 100)).expect("put");
    }
    let report = s.compact().expect("compact");
    assert!(report.log_bytes_retired >= 4 << 20, "{report:?}");
    assert_eq!(let_go(dir.path()), Vec::<String>::new(), "after a fold");
    for k in (0..60_000u64).step_by(2) {
        s.delete(k).expect("delete");
    }
    let report = s.compact_cold().expect("compact");
    assert!(report.cold && report.reclaimed_bytes > 0, "{report:?}");
    assert_eq!(let_go(dir.path()), Vec::<String>::new(), "after a rewrite");
    // The same through a staged compaction, once it is dropped (and not
    // before: the engine starts every shard's after its last publish).
    for k in 0..60_000u64 {
        s.put(k, &value(k, 1, 100)).expect("put");
    }
    s.compact().expect("compact");
    let before = s.stats().data_end;
    assert!(before >= 4 << 20, "a long data file: {before}");
    for k in 0..60_000u64 {
        s.put(k, &value(k, 2, 100)).expect("put");
    }
    let staged = s.stage_compaction(true).expect("stage").expect("work");
    let report = staged.apply(staged.plan().expect("plan")).expect("apply");
    assert!(
        report.cold && report.log_bytes_retired >= 4 << 20,
        "{report:?}"
    );
    assert!(!held_deleted(dir.path()).is_empty(), "held until the drop");
    drop(staged);
    assert_eq!(
        let_go(dir.path()),
        Vec::<String>::new(),
        "after a staged one"
    );
    assert_eq!(s.get(1).expect("get"), Some(value(1, 2, 100)));
}

/// Beside read-only opens in other processes (pretended) nothing is
/// rewritten in place: results planned in place are appended, leaving more
/// dead space than the plan foresaw, so the cold rewrite becomes due only
/// after the hot apply. `apply` then runs both, and reports their sum.
#[test]
fn a_staged_compaction_beside_readers_rewrites_after_its_hot_apply() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let _readers: Vec<_> = dirs
        .iter()
        .map(|d| {
            silo_io::fault::install(d.path(), silo_io::fault::FaultPlan::new().pretend_readers())
        })
        .collect();
    let mut o = opts();
    o.index_seed = Some(0xBE51DE);
    let stores: Vec<Silo> = dirs
        .iter()
        .map(|d| Silo::open(d.path(), o.clone()).expect("open"))
        .collect();
    for s in &stores {
        for k in 0..60_000u64 {
            s.put(k, &value(k, 0, 60)).expect("put");
        }
        s.compact().expect("compact");
        // Same-size values: planned in place, appended beside readers (two
        // records in three: 40% dead, past the default third).
        for k in (0..60_000u64).filter(|k| k % 3 != 0) {
            s.put(k, &value(k, 1, 60)).expect("put");
        }
    }
    let one_call = {
        let staged = stores[0]
            .stage_compaction(false)
            .expect("stage")
            .expect("work");
        let plan = staged.plan().expect("plan");
        assert!(!staged.folds_into_cold(&plan), "no dead space foreseen");
        staged.apply(plan).expect("apply")
    };
    let (hot, read, written, reclaimed) = {
        let staged = stores[1]
            .stage_compaction(false)
            .expect("stage")
            .expect("work");
        let hot = staged.apply_hot(staged.plan().expect("plan")).expect("hot");
        assert!(hot.beside_readers && hot.in_place == 0, "{hot:?}");
        assert!(staged.cold_due(), "due after the hot apply");
        let rewrite = staged.prepare_cold().expect("prepare");
        let (read, written) = (rewrite.bytes_read(), rewrite.bytes_written());
        (
            hot,
            read,
            written,
            staged.finish_cold(rewrite).expect("finish"),
        )
    };
    assert!(one_call.cold && reclaimed > 0, "{one_call:?}");
    // The rewrite read every live record and wrote it again, the same size.
    assert_eq!(written, stores[1].stats().live_bytes);
    assert_eq!(read, written);
    assert_eq!(
        (
            one_call.bytes_read,
            one_call.bytes_written,
            one_call.reclaimed_bytes
        ),
        (
            hot.bytes_read + read,
            hot.bytes_written + written,
            reclaimed
        )
    );
    for s in &stores {
        assert_eq!(s.stats().dead_bytes, 0);
        for k in (0..60_000u64).step_by(997) {
            let version = u64::from(k % 3 != 0);
            assert_eq!(
                s.get(k).expect("get"),
                Some(value(k, version, 60)),
                "key {k}"
            );
        }
    }
}

/// Waits (60 s at most) until `old`, a file a compaction replaced, is cut
/// to nothing: the compaction frees it on a thread of its own once done.
fn wait_until_freed(old: &silo_io::SiloFile, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while old.len().expect("len") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replaced {what} still holds {} bytes",
            old.len().expect("len")
        );
        std::thread::yield_now();
    }
}

/// A long log slot's old file, replaced when its compaction retires it,
/// is freed once that compaction is done (cut short in steps on a thread
/// of its own: closing it whole discarded hundreds of MiB in requests a
/// freeze's sync waited behind). Its data stays readable: it was folded.
#[test]
fn a_replaced_long_log_slot_is_freed_after_its_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silo = open(dir.path());
    // The store writes into log-0 first; a retired slot of 4 MiB or more
    // is replaced rather than cut (these frames: over 7 MiB).
    let keys = 60_000u64;
    let old = silo_io::SiloFile::open_read(&dir.path().join("log-0")).expect("log-0");
    for key in 0..keys {
        silo.put(key, &value(key, 1, 100)).expect("put");
    }
    let before = old.len().expect("len");
    assert!(before > 7 << 20, "{before}");
    silo.compact().expect("compact");
    // The file this test holds open is the old one: the slot's name now
    // belongs to a new file.
    let named = silo_io::SiloFile::open_read(&dir.path().join("log-0")).expect("log-0");
    assert!(named.len().expect("len") < before, "log-0 was replaced");
    wait_until_freed(&old, "slot");
    for key in (0..keys).step_by(997) {
        assert_eq!(silo.get(key).expect("get"), Some(value(key, 1, 100)));
    }
}

/// A long index, replaced when a compaction must grow it, is freed once
/// that compaction is done, as a replaced log slot is.
#[test]
fn a_replaced_long_index_is_freed_after_its_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silo = open(dir.path());
    // An index of more than 4 MiB (16-byte slots, filled to about 70%).
    for key in 0..200_000u64 {
        silo.put(key, &key.to_le_bytes()).expect("put");
    }
    silo.compact().expect("compact");
    let path = crate::common::file_starting(dir.path(), "index-");
    let old = silo_io::SiloFile::open_read(&path).expect("index");
    let len = old.len().expect("len");
    assert!(len > 4 << 20, "{len}");
    // As many new keys again: the index must grow into a new file.
    for key in 200_000..400_000u64 {
        silo.put(key, &key.to_le_bytes()).expect("put");
    }
    silo.compact().expect("compact");
    assert_ne!(crate::common::file_starting(dir.path(), "index-"), path);
    wait_until_freed(&old, "index");
    for key in (0..400_000u64).step_by(997) {
        assert_eq!(
            silo.get(key).expect("get"),
            Some(key.to_le_bytes().to_vec())
        );
    }
}

/// A long data file and its index, replaced by a cold rewrite, are freed
/// once that compaction is done.
#[test]
fn a_data_file_replaced_by_a_cold_rewrite_is_freed_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silo = open(dir.path());
    for key in 0..60_000u64 {
        silo.put(key, &value(key, 1, 100)).expect("put");
    }
    silo.compact().expect("compact");
    let path = crate::common::file_starting(dir.path(), "data-");
    let old = silo_io::SiloFile::open_read(&path).expect("data");
    let len = old.len().expect("len");
    assert!(len > 6 << 20, "{len}");
    silo.compact_cold().expect("cold");
    assert_ne!(crate::common::file_starting(dir.path(), "data-"), path);
    wait_until_freed(&old, "data file");
    for key in (0..60_000u64).step_by(997) {
        assert_eq!(silo.get(key).expect("get"), Some(value(key, 1, 100)));
    }
}

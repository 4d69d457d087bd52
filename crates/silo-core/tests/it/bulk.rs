//! Bulk writers: `BulkWriter` from several threads equals serial puts;
//! `MergeWriter` read-modify-write is exact under contention and its
//! overflow falls back to the log and is counted.

use std::collections::BTreeMap;

use silo_core::{Error, UpdateOutcome};

use crate::common::{open, value};

#[test]
fn bulk_load_from_two_threads_equals_serial_puts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serial_dir = tempfile::tempdir().expect("tempdir");
    let silo = open(dir.path());
    let serial = open(serial_dir.path());
    let mut model = BTreeMap::new();
    // Thread t writes keys k with k % 2 == t, each twice (the second put wins).
    for t in 0..2u64 {
        for round in 0..2u64 {
            for k in (t..20_000).step_by(2) {
                let v = value(k, round, 20 + (k % 200) as usize);
                serial.put(k, &v).expect("serial put");
                model.insert(k, v);
            }
        }
    }
    let writer = silo.bulk_writer().expect("bulk writer");
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let writer = &writer;
            s.spawn(move || {
                let mut h = writer.handle();
                for round in 0..2u64 {
                    for k in (t..20_000).step_by(2) {
                        h.put(k, &value(k, round, 20 + (k % 200) as usize))
                            .expect("bulk put");
                    }
                }
                h.finish().expect("handle finish");
            });
        }
    });
    writer.finish().expect("finish");
    let bulk: BTreeMap<u64, Vec<u8>> = silo.iter().map(|r| r.expect("iter")).collect();
    let serial: BTreeMap<u64, Vec<u8>> = serial.iter().map(|r| r.expect("iter")).collect();
    assert_eq!(bulk, model);
    assert_eq!(bulk, serial);
    assert_eq!(silo.stats().index_keys, 20_000);
    // The regions' unused ends are zeros followed by the next region's
    // records: verify finds them all, and no damage.
    let report = silo.verify().expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.live_keys, 20_000);
    // So does a salvage of the closed store.
    let dir_path = dir.path().to_path_buf();
    drop(silo);
    let salvaged = silo_core::salvage(&dir_path).expect("salvage");
    assert!(salvaged.damage.is_empty(), "{:?}", salvaged.damage);
    assert_eq!(salvaged.keys.len(), 20_000);
    let silo = open(dir.path());
    // Later log writes win over bulk-loaded records, also after reopen.
    silo.put(7, b"later").expect("put");
    silo.merge(8, b"+").expect("merge");
    drop(silo);
    let silo = open(dir.path());
    assert_eq!(silo.get(7).expect("get").as_deref(), Some(&b"later"[..]));
    let mut eight = model[&8].clone();
    eight.push(b'+');
    assert_eq!(silo.get(8).expect("get"), Some(eight));
    assert_eq!(silo.get(19_999).expect("get").as_ref(), model.get(&19_999));
}

#[test]
fn bulk_writer_needs_an_empty_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silo = open(dir.path());
    silo.put(1, b"x").expect("put");
    assert!(matches!(silo.bulk_writer(), Err(Error::NotEmpty { .. })));
}

/// Test options that leave the log unfolded on close, so reopening replays it.
fn no_fold() -> silo_core::Options {
    let mut o = crate::common::opts();
    o.compact_on_close = false;
    o
}

fn counter(bytes: Option<&[u8]>) -> u64 {
    bytes.map_or(0, |b| {
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
    })
}

#[test]
fn merge_writer_increments_exactly_and_counts_fallbacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silo = silo_core::Silo::open(dir.path(), no_fold()).expect("open");
    for k in 0..100u64 {
        silo.put(k, &0u64.to_le_bytes()).expect("put");
    }
    silo.merge(5, b"").expect("a pending operand on key 5");
    silo.compact().expect("compact");
    silo.put(6, &0u64.to_le_bytes())
        .expect("key 6 has a pending put");
    {
        let writer = silo.merge_writer().expect("merge writer");
        std::thread::scope(|s| {
            for _ in 0..2 {
                let writer = &writer;
                s.spawn(move || {
                    for _ in 0..300 {
                        for k in 0..100u64 {
                            let outcome = writer
                                .update(k, |v| (counter(v) + 1).to_le_bytes().to_vec())
                                .expect("update");
                            // Key 6 has a logged put pending: a record rewritten in
                            // place would be hidden by it after a restart, so its
                            // updates go through the log.
                            let want = if k == 6 {
                                UpdateOutcome::Fallback
                            } else {
                                UpdateOutcome::InPlace
                            };
                            assert_eq!(outcome, want, "key {k}");
                        }
                    }
                });
            }
        });
        // Readers see the results before they are flushed.
        assert_eq!(counter(silo.get(3).expect("get").as_deref()), 600);
        // A result that outgrows its record goes through the log.
        let outcome = writer.update(3, |v| {
            let mut grown = v.expect("present").to_vec();
            grown.extend_from_slice(&[9; 100]);
            grown
        });
        assert_eq!(outcome.expect("update"), UpdateOutcome::Fallback);
        writer.finish().expect("finish");
    }
    assert_eq!(silo.stats().merge_fallbacks, 600 + 1);
    // Reopened without folding the log, replayed operations must not hide
    // the in-place results (regression: a logged put pending under an
    // in-place result came back after a restart).
    drop(silo);
    let silo = silo_core::Silo::open(dir.path(), no_fold()).expect("reopen");
    for k in 0..100u64 {
        let v = silo.get(k).expect("get");
        assert_eq!(counter(v.as_deref()), 600, "key {k}");
        assert_eq!(
            v.expect("present").len(),
            if k == 3 { 108 } else { 8 },
            "key {k}"
        );
    }
}

#[test]
fn a_bulk_handle_dropped_without_finish_keeps_its_puts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silo = open(dir.path());
    let writer = silo.bulk_writer().expect("bulk writer");
    {
        let mut h = writer.handle();
        h.put(1, b"kept").expect("put");
    }
    writer.finish().expect("finish");
    assert_eq!(silo.get(1).expect("get").as_deref(), Some(&b"kept"[..]));
}

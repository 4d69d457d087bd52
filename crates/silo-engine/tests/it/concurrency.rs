//! Readers against a writer of cross-shard batches, with compactions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use silo_core::WriteBatch;

use crate::common::{keys_on_distinct_shards, open};

/// A writer commits batches that write generation `g` to one key on every
/// shard; readers read the keys in order: a later key's generation is never
/// below an earlier key's (a read that saw generation g of one key is
/// followed only by reads that see g or later of the others), and
/// snapshots see one generation for all.
#[test]
fn readers_never_see_part_of_a_cross_shard_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 4);
    let keys = keys_on_distinct_shards(4);
    let done = AtomicBool::new(false);
    let checked = AtomicU64::new(0);
    let generation =
        |v: Option<Vec<u8>>| v.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    std::thread::scope(|s| {
        let (db, keys, done, checked) = (&db, &keys, &done, &checked);
        for reader in 0..2 {
            s.spawn(move || {
                while !done.load(Ordering::Acquire) {
                    let mut last = 0;
                    for k in keys {
                        let g = generation(db.get(*k).unwrap());
                        assert!(g >= last, "reader {reader}: key {k} at {g} after {last}");
                        last = g;
                    }
                    let snap = db.snapshot().unwrap();
                    let gens: Vec<u64> = keys
                        .iter()
                        .map(|k| generation(snap.get(*k).unwrap()))
                        .collect();
                    assert!(gens.windows(2).all(|w| w[0] == w[1]), "snapshot {gens:?}");
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        s.spawn(move || {
            while !done.load(Ordering::Acquire) {
                db.compact().unwrap();
            }
        });
        for g in 1..=400u64 {
            let mut b = WriteBatch::new();
            // Reverse order: the last shard's part is applied first.
            for k in keys.iter().rev() {
                b.put(*k, &g.to_le_bytes());
            }
            db.write(&b).unwrap();
        }
        done.store(true, Ordering::Release);
    });
    assert!(checked.load(Ordering::Relaxed) > 0);
    for k in &keys {
        assert_eq!(generation(db.get(*k).unwrap()), 400);
    }
}

/// Two writers on different shards ingest beside each other (no shared
/// lock); every write lands.
#[test]
fn writers_on_different_shards_run_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 4);
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let db = &db;
            s.spawn(move || {
                for i in 0..5000u64 {
                    db.put(w << 32 | i, &i.to_le_bytes()).unwrap();
                }
            });
        }
    });
    assert_eq!(db.iter().count(), 10_000);
}

/// A writer held between the first and second part of a cross-shard batch
/// (the fault seam's hold point): a reader started then waits for the
/// whole batch, and sees all of it. Deterministic: without the wait the
/// reader finishes while the writer is held and sees one part only.
#[test]
fn a_reader_during_a_half_applied_batch_waits_for_all_of_it() {
    use silo_engine::HOLD_BETWEEN_PARTS;
    use silo_io::fault::{FaultPlan, install};
    let dir = tempfile::tempdir().unwrap();
    let guard = install(dir.path(), FaultPlan::new().hold(HOLD_BETWEEN_PARTS));
    let db = open(dir.path(), 4);
    let keys = keys_on_distinct_shards(4);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut b = WriteBatch::new();
            for k in &keys {
                b.put(*k, b"new");
            }
            db.write(&b).unwrap();
        });
        guard.wait_held(HOLD_BETWEEN_PARTS, 1);
        let reader = s.spawn(|| keys.iter().map(|k| db.get(*k).unwrap()).collect::<Vec<_>>());
        // Until the reader is held back (or, if it is not, done).
        while !reader.is_finished() && db.stats().reads_held_back == 0 {
            std::thread::yield_now();
        }
        guard.release(HOLD_BETWEEN_PARTS);
        let seen = reader.join().unwrap();
        writer.join().unwrap();
        assert!(
            seen.iter().all(|v| v.as_deref() == Some(&b"new"[..])),
            "the reader saw part of the batch: {seen:?}"
        );
        assert!(db.stats().reads_held_back > 0);
    });
}

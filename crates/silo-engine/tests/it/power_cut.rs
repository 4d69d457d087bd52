//! Power cuts (silo-io's model: only what a sync made durable survives)
//! in the middle of cross-shard batches: each batch is in every shard or
//! in none, and every batch acknowledged is there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_engine::Engine;
use silo_io::fault::{FaultAction, FaultGuard, FaultOp, FaultPlan, Unsynced, install};

use crate::common::{keys_on_distinct_shards, open, opts};

struct Tracked {
    _root: tempfile::TempDir,
    db: PathBuf,
    guard: FaultGuard,
}

fn tracked() -> Tracked {
    let root = tempfile::tempdir().unwrap();
    let guard = install(root.path(), FaultPlan::new().track_durability());
    let db = root.path().join("db");
    Tracked {
        _root: root,
        db,
        guard,
    }
}

fn image(t: &Tracked, unsynced: Unsynced) -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let img = out.path().join("img");
    t.guard.power_cut_image(&img, unsynced).unwrap();
    (out, img.join("db"))
}

#[test]
fn a_cross_shard_batch_whose_parts_never_synced_is_completed_from_the_batch_log() {
    let t = tracked();
    let db = open(&t.db, 4);
    let keys = keys_on_distinct_shards(4);
    let mut b = WriteBatch::new();
    for k in &keys {
        b.merge(*k, b"x");
    }
    db.write(&b).unwrap();
    let (_out, img) = image(&t, Unsynced::Drop);
    drop(db);
    let back = open(&img, 4);
    assert_eq!(
        back.stats().batches_replayed,
        4,
        "every part was lost and redone"
    );
    for k in &keys {
        assert_eq!(back.get(*k).unwrap().as_deref(), Some(&b"x"[..]), "key {k}");
    }
}

/// Copies the directory tree `from` to `to` and syncs every file and
/// directory through silo-io, so that the durability tracker counts the
/// copy as on disk.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
            silo_io::SiloFile::open(&dest).unwrap().sync_all().unwrap();
        }
    }
    silo_io::durable::sync_dir(to).unwrap();
    if let Some(parent) = to.parent() {
        silo_io::durable::sync_dir(parent).unwrap();
    }
}

/// Two power cuts in a row, each losing every part of a cross-shard batch:
/// the batch written after the first replay gets a number of its own, so
/// the second open redoes it too.
#[test]
fn a_batch_after_a_replayed_one_is_numbered_anew_and_completed_too() {
    let keys = keys_on_distinct_shards(4);
    let merge_all = |db: &Engine, operand: &[u8]| {
        let mut b = WriteBatch::new();
        for k in &keys {
            b.merge(*k, operand);
        }
        db.write(&b).unwrap();
    };
    let first = tracked();
    let db = open(&first.db, 4);
    merge_all(&db, b"x");
    let (_out1, img1) = image(&first, Unsynced::Drop);
    drop(db);
    let second = tracked();
    copy_tree(&img1, &second.db);
    let back = open(&second.db, 4);
    assert_eq!(back.stats().batches_replayed, 4);
    merge_all(&back, b"y");
    let (_out2, img2) = image(&second, Unsynced::Drop);
    drop(back);
    let again = open(&img2, 4);
    for k in &keys {
        assert_eq!(
            again.get(*k).unwrap().as_deref(),
            Some(&b"xy"[..]),
            "key {k}"
        );
    }
}

/// `flush` makes every write durable: buffered single writes and the parts
/// of a cross-shard batch survive a power cut right after it, although the
/// batch log was emptied by that flush.
#[test]
fn everything_flushed_survives_a_power_cut_with_the_batch_log_emptied() {
    let t = tracked();
    let db = open(&t.db, 4);
    let keys = keys_on_distinct_shards(4);
    let mut b = WriteBatch::new();
    for k in &keys {
        b.put(*k, b"batch");
    }
    db.write(&b).unwrap();
    db.put(keys[0] + 1_000_003, b"single").unwrap();
    db.flush().unwrap();
    assert_eq!(
        db.stats().batch_log_bytes,
        0,
        "the flush emptied the batch log"
    );
    let (_out, img) = image(&t, Unsynced::Drop);
    drop(db);
    let back = open(&img, 4);
    for k in &keys {
        assert_eq!(
            back.get(*k).unwrap().as_deref(),
            Some(&b"batch"[..]),
            "key {k}"
        );
    }
    assert_eq!(
        back.get(keys[0] + 1_000_003).unwrap().as_deref(),
        Some(&b"single"[..])
    );
}

/// A checkpoint written into an empty directory the caller made (and never
/// synced) survives a power cut: the checkpoint syncs the directory's entry
/// in its parent last.
#[test]
fn a_checkpoint_into_a_directory_the_caller_made_survives_a_power_cut() {
    let t = tracked();
    let db = open(&t.db, 4);
    let keys = keys_on_distinct_shards(4);
    let mut b = WriteBatch::new();
    for k in &keys {
        b.put(*k, b"kept");
    }
    db.write(&b).unwrap();
    let cp = t.db.with_file_name("cp");
    std::fs::create_dir(&cp).unwrap();
    db.checkpoint(&cp).unwrap();
    let (_out, img) = image(&t, Unsynced::Drop);
    drop(db);
    let copy = Engine::open(img.with_file_name("cp"), opts(4)).unwrap();
    for k in &keys {
        assert_eq!(
            copy.get(*k).unwrap().as_deref(),
            Some(&b"kept"[..]),
            "key {k}"
        );
    }
}

#[test]
fn a_part_a_shard_synced_is_not_applied_twice() {
    let t = tracked();
    let db = open(&t.db, 4);
    let keys = keys_on_distinct_shards(4);
    let mut b = WriteBatch::new();
    for k in &keys {
        b.merge(*k, b"x");
    }
    db.write(&b).unwrap();
    // A durable write to the first key's shard syncs that shard's log, the
    // batch's part included; the other parts stay unsynced.
    db.put_with(
        keys[0] + 4096 * 4,
        b"sync",
        WriteOptions::durability(Durability::Sync),
    )
    .unwrap();
    let (_out, img) = image(&t, Unsynced::Drop);
    drop(db);
    let back = open(&img, 4);
    for k in &keys {
        assert_eq!(back.get(*k).unwrap().as_deref(), Some(&b"x"[..]), "key {k}");
    }
    assert!(back.stats().batches_replayed >= 3);
}

const BATCH_KEYS: u64 = 6;

/// Fresh keys for batch `n`: never written again, so a batch is whole
/// exactly when all its keys are there.
fn batch_keys(n: u64) -> Vec<u64> {
    (0..BATCH_KEYS).map(|j| n * 64 + j * 7).collect()
}

/// A writer of cross-shard batches, single puts (some `Sync`) and flushes,
/// compactions beside it, the power cut at a random sync.
fn run(seed: u64) {
    let t = tracked();
    let mut rng = seed | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let cut_at = 1 + next() % 120;
    t.guard
        .schedule(FaultOp::Sync, cut_at, FaultAction::PowerCut);
    let db = Engine::open(&t.db, opts(4)).unwrap();
    let done = AtomicBool::new(false);
    let mut acked: BTreeMap<u64, bool> = BTreeMap::new(); // batch -> durable when acked
    let mut singles: Vec<(u64, bool)> = Vec::new(); // key -> durable
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let _ = db.compact();
            }
        });
        for n in 0..60u64 {
            let cut_before = t.guard.is_cut();
            match next() % 4 {
                0 => {
                    let key = 1_000_000 + n;
                    let sync = next() % 3 == 0;
                    let d = if sync {
                        Durability::Sync
                    } else {
                        Durability::Buffered
                    };
                    db.put_with(key, b"single", WriteOptions::durability(d))
                        .unwrap();
                    singles.push((key, sync && !t.guard.is_cut()));
                }
                1 if next() % 2 == 0 => {
                    db.flush().unwrap();
                    if !t.guard.is_cut() {
                        for v in acked.values_mut() {
                            *v = true;
                        }
                        for s in &mut singles {
                            s.1 = true;
                        }
                    }
                }
                _ => {
                    let mut b = WriteBatch::new();
                    for k in batch_keys(n) {
                        b.put(k, &n.to_le_bytes());
                    }
                    db.write(&b).unwrap();
                    // Logged and synced before it returned.
                    acked.insert(n, !cut_before && !t.guard.is_cut());
                }
            }
        }
        done.store(true, Ordering::Release);
    });
    let (_out, img) = image(
        &t,
        if seed.is_multiple_of(2) {
            Unsynced::Drop
        } else {
            Unsynced::Scramble { seed }
        },
    );
    drop(db);
    let back = Engine::open(&img, opts(4)).unwrap_or_else(|e| {
        panic!("seed {seed} cut at sync {cut_at}: the image does not open: {e}")
    });
    for (n, durable) in &acked {
        let found: Vec<bool> = batch_keys(*n)
            .iter()
            .map(|k| back.get(*k).unwrap().is_some())
            .collect();
        let whole = found.iter().all(|f| *f);
        assert!(
            whole || found.iter().all(|f| !*f),
            "seed {seed} cut at sync {cut_at}: batch {n} is partly there: {found:?}"
        );
        assert!(
            whole || !durable,
            "seed {seed} cut at sync {cut_at}: durable batch {n} is lost"
        );
    }
    for (key, durable) in singles {
        assert!(
            !durable || back.get(key).unwrap().is_some(),
            "seed {seed} cut at sync {cut_at}: durable put {key} is lost"
        );
    }
}

#[test]
fn random_power_cuts_leave_every_cross_shard_batch_whole() {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let start = var("SILO_POWER_CUT_SEED").unwrap_or(0);
    for seed in start..start + var("SILO_POWER_CUT_ITERATIONS").unwrap_or(8) {
        run(seed);
    }
}

/// A logged batch that a reopen must complete, opened without the merge
/// operator its merges need: a clear error naming the option, not a
/// store error.
#[test]
fn completing_a_logged_batch_needs_the_options_it_was_written_with() {
    let t = tracked();
    let db = open(&t.db, 2);
    let keys = keys_on_distinct_shards(2);
    let mut b = WriteBatch::new();
    b.merge(keys[0], b"x").merge(keys[1], b"y");
    db.write(&b).unwrap();
    let (_out, img) = image(&t, Unsynced::Drop);
    drop(db);
    let bare = silo_engine::EngineOptions {
        shards: Some(2),
        ..silo_engine::EngineOptions::default()
    };
    match Engine::open(&img, bare) {
        Err(silo_engine::EngineError::InvalidOptions { reason, .. }) => {
            assert!(reason.contains("merge operator"), "{reason}");
        }
        other => panic!("expected InvalidOptions, got {other:?}"),
    }
    let back = open(&img, 2);
    assert_eq!(back.get(keys[1]).unwrap().as_deref(), Some(&b"y"[..]));
}

/// Power cuts at every sync of a multi-chunk index import: the image opens,
/// each document is there whole or absent, the bitmaps and sort layers
/// agree with the documents found (`verify_consistency`), and an import
/// that returned before the cut is there entirely (each chunk is a
/// cross-shard batch, synced in the batch log before it is acknowledged).
#[test]
fn power_cuts_during_an_index_import_leave_it_consistent() {
    use silo_engine::{EngineOptions, FieldSpec, FieldType, Filter, ImportOptions, Index, Schema};
    let schema = || {
        Schema::new(vec![
            FieldSpec::filter("color", FieldType::Str),
            FieldSpec::sort("rank", FieldType::I64),
        ])
    };
    let index_opts = || EngineOptions {
        shards: Some(4),
        ..EngineOptions::default()
    };
    let text: String = (0..60u32)
        .map(|id| {
            format!(
                "{{\"id\": {id}, \"color\": \"{}\", \"rank\": {}}}\n",
                ["red", "blue"][id as usize % 2],
                id % 7
            )
        })
        .collect();
    let mut cuts = 0;
    for cut_at in (1..80u64).step_by(3) {
        let t = tracked();
        t.guard
            .schedule(FaultOp::Sync, cut_at, FaultAction::PowerCut);
        let input = t._root.path().join("in.jsonl");
        std::fs::write(&input, &text).unwrap();
        let index = Index::open(&t.db, schema(), index_opts()).unwrap();
        index
            .import_json_lines_with(&input, ImportOptions::threads(1).chunk_bytes(300))
            .unwrap();
        let whole = !t.guard.is_cut();
        cuts += usize::from(!whole);
        let (_out, img) = image(&t, Unsynced::Drop);
        drop(index);
        // A cut before the index's first writes leaves no index to open.
        let Ok(back) = Index::open(&img, schema(), index_opts()) else {
            assert!(
                !whole,
                "cut at sync {cut_at}: a finished import does not open"
            );
            continue;
        };
        assert_eq!(
            back.verify_consistency().unwrap(),
            vec![],
            "cut at sync {cut_at}"
        );
        let found = back.count(&Filter::All).unwrap();
        for id in 0..60u32 {
            if let Some(doc) = back.get(id).unwrap() {
                assert_eq!(
                    doc.len(),
                    2,
                    "cut at sync {cut_at}: document {id} is partial"
                );
            }
        }
        if whole {
            assert_eq!(
                found, 60,
                "cut at sync {cut_at}: an acknowledged import lost documents"
            );
        }
    }
    assert!(cuts > 0, "no cut fell inside an import");
}

//! A full disk: writes into an engine on a small tmpfs until the file system
//! is out of space (with compactions going on), then frees space and checks
//! that the engine reopens with every acknowledged write and takes writes
//! again. Where mounting is not permitted (not root), the same workload runs
//! with every write and preallocation failed through silo-io's fault seam
//! instead, which is the closest a non-root test can get.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_engine::{Engine, EngineError};

use crate::common::{contents, opts};

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB on `at`, or `None` where that is not permitted.
    fn mount(at: &Path, mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs { at: at.to_owned() })
    }

    /// Grows the file system to `mib` MiB ("space is freed").
    fn resize(&self, mib: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.at)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "remount: {out:?}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

type Model = BTreeMap<u64, Vec<u8>>;

fn value(key: u64, round: u64) -> Vec<u8> {
    let mut v = vec![(key % 251) as u8; 3000 + (key % 7) as usize * 300];
    v[..8].copy_from_slice(&round.to_le_bytes());
    v
}

/// Writes (single puts with per-write durabilities, cross-shard batches,
/// overwrites and compactions) until a call fails; returns the
/// acknowledged state, the state with the failed call, and its error.
fn fill(
    db: &Engine,
    acked: &mut Model,
    max_calls: u64,
    compact_every: u64,
) -> Option<(Model, EngineError)> {
    for i in 0..max_calls {
        // Keys keep coming (the data set grows), with overwrites and
        // deletes of recent ones.
        let round = i % 3;
        let key = i / 3;
        let mut maybe = acked.clone();
        let result = match i % 5 {
            0 | 1 => {
                let wo = WriteOptions::durability(if i % 2 == 0 {
                    Durability::Sync
                } else {
                    Durability::Buffered
                });
                let v = value(key, round);
                maybe.insert(key, v.clone());
                db.put_with(key, &v, wo)
            }
            2 => {
                let mut b = WriteBatch::new();
                for k in [key, key + 500, key + 77_777] {
                    let v = value(k, round);
                    b.put(k, &v);
                    maybe.insert(k, v);
                }
                db.write(&b)
            }
            3 => {
                maybe.remove(&(key + 500));
                db.delete(key + 500)
            }
            _ if i % compact_every == 4 => db.compact().map(drop),
            _ => db.flush(),
        };
        match result {
            Ok(()) => *acked = maybe,
            Err(e) => return Some((maybe, e)),
        }
    }
    None
}

#[test]
fn a_full_disk_fails_writes_clearly_and_loses_nothing_acknowledged() {
    // File systems of several sizes run out at different points: in a log
    // append, a log rotation, a compaction's new data file, a checkpoint.
    let mut seen = Vec::new();
    // Where mounting is refused (not root), the fault seam plays the full
    // disk instead; `SILO_REQUIRE_MOUNT=1` makes that a failure.
    let probe = tempfile::tempdir().expect("tempdir");
    if Tmpfs::mount(&probe.path().join("mnt"), 1).is_none() {
        assert!(
            std::env::var_os("SILO_REQUIRE_MOUNT").is_none(),
            "mounting a tmpfs was refused"
        );
        println!("mount not permitted: the fault seam plays the full disk");
        seam_full_disk(&probe.path().join("seam"));
        return;
    }
    for (mib, compact_every) in [(3, 25), (4, 1000), (5, 1000), (7, 25), (9, 7)] {
        let root = tempfile::tempdir().expect("tempdir");
        let mnt = root.path().join("mnt");
        let tmpfs = Tmpfs::mount(&mnt, mib).expect("mounting worked a moment ago");
        let dir = mnt.join("db");
        let mut acked = Model::new();
        let db = Engine::open(&dir, opts(2)).expect("open");
        let (failed, err) = fill(&db, &mut acked, 100_000, compact_every)
            .expect("a few MiB cannot hold 100k writes of 3 KiB: some write must fail");
        assert_eq!(
            err.raw_os_error(),
            Some(ENOSPC),
            "a full disk is reported as ENOSPC, got: {err}"
        );
        println!("{mib} MiB: full after {} keys: {err}", acked.len());
        seen.push(err.to_string());
        // A later write either goes through (a failed compaction or
        // rotation changed nothing, and the log still has room) or is
        // refused naming the full disk; reads still answer, all of the
        // failed call or none of it, unless it was a cross-shard batch that
        // went into only some of its shards: then they are refused (the
        // reopen below completes it).
        let (mut acked, mut failed) = (acked, failed);
        match db.put(1, b"x") {
            Ok(()) => {
                acked.insert(1, b"x".to_vec());
                failed.insert(1, b"x".to_vec());
            }
            Err(again) => assert!(again.to_string().contains("No space"), "{again}"),
        }
        match db.iter().collect::<Result<Model, _>>() {
            Ok(found) => assert!(found == acked || found == failed, "reads after the failure"),
            Err(EngineError::PartialBatch { cause }) => {
                assert!(cause.contains("No space"), "{cause}");
            }
            Err(e) => panic!("reads after the failure: {e}"),
        }
        drop(db);
        // Reopening on the full disk may fail (recovery writes), but with
        // a clear error, and it changes nothing acknowledged.
        if let Err(e) = Engine::open(&dir, opts(2)) {
            assert_eq!(e.raw_os_error(), Some(ENOSPC), "reopen on a full disk: {e}");
        }
        tmpfs.resize(64);
        check_reopen(&dir, &acked, &failed);
    }
    // Out of space in a log's growth and in a compaction's new data file.
    assert!(
        seen.iter().any(|e| e.contains("/log-")) && seen.iter().any(|e| e.contains("/data-")),
        "failures: {seen:?}"
    );
}

/// Without mount: every write and preallocation under the directory fails
/// through the fault seam (as `InjectedFault`), then the plan is removed.
fn seam_full_disk(mnt: &Path) {
    use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};
    let dir = mnt.join("db");
    let mut acked = Model::new();
    let db = Engine::open(&dir, opts(2)).expect("open");
    assert!(fill(&db, &mut acked, 200, 25).is_none(), "no fault yet");
    let guard = install(
        mnt,
        FaultPlan::new()
            .every(FaultOp::Write, FaultAction::Fail)
            .every(FaultOp::Allocate, FaultAction::Fail),
    );
    let (failed, err) = fill(&db, &mut acked, 1000, 25).expect("a write fails");
    assert!(err.to_string().contains("injected"), "{err}");
    drop(db);
    drop(guard);
    check_reopen(&dir, &acked, &failed);
}

/// Reopens with space available: every acknowledged write (and perhaps the
/// failed one, whole), then new writes and a compaction succeed and last.
fn check_reopen(dir: &Path, acked: &Model, failed: &Model) {
    let db = Engine::open(dir, opts(2)).expect("reopen once space is freed");
    let found = contents(&db);
    assert!(
        &found == acked || &found == failed,
        "after freeing space: {} keys found, {} acknowledged",
        found.len(),
        acked.len()
    );
    let mut more = Model::new();
    assert!(
        fill(&db, &mut more, 300, 25).is_none(),
        "writes after space was freed"
    );
    db.compact().expect("compaction after space was freed");
    drop(db);
    let db = Engine::open(dir, opts(2)).expect("reopen");
    for report in db.verify().expect("verify") {
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    for (k, v) in &more {
        assert_eq!(db.get(*k).expect("get").as_deref(), Some(&v[..]), "key {k}");
    }
}

/// ENOSPC: 28 on every Linux architecture.
const ENOSPC: i32 = 28;

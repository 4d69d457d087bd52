//! The background scheduler.

use std::time::Duration;

use silo_core::MergeOperator;
use silo_engine::{Engine, EngineOptions, SchedulerOptions};

use crate::common::opts;

/// Refuses the operand `!bad`; panics the first time it meets `!panic`;
/// concatenates otherwise.
struct Picky;

static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl MergeOperator for Picky {
    fn merge(
        &self,
        _key: u64,
        existing: Option<&[u8]>,
        operands: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(existing.unwrap_or_default());
        for op in operands {
            match *op {
                b"!bad" => return Err("refused".to_owned()),
                b"!panic" if !PANICKED.swap(true, std::sync::atomic::Ordering::SeqCst) => {
                    panic!("merge operator panicked on purpose")
                }
                other => out.extend_from_slice(other),
            }
        }
        Ok(())
    }
}

fn due_soon(shards: usize) -> EngineOptions {
    let mut o = opts(shards);
    o.store.thresholds.pending_ops = 16;
    o.store.thresholds.min_interval = Duration::ZERO;
    o
}

fn quiet() -> SchedulerOptions {
    SchedulerOptions {
        // Passes only when asked: the tests drive them with run_pass.
        interval: Duration::from_secs(3600),
        ..SchedulerOptions::default()
    }
}

#[test]
fn a_pass_compacts_every_due_shard() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engine::open(dir.path(), due_soon(4)).unwrap();
    for k in 0..400u64 {
        db.put(k, &[1; 32]).unwrap();
    }
    let bg = db.start_background(quiet()).unwrap();
    bg.run_pass();
    let st = bg.stats();
    assert_eq!((st.passes, st.compactions, st.errors), (1, 4, 0), "{st:?}");
    assert!(st.bytes_written > 400 * 32);
    assert_eq!(db.stats().pending_ops(), 0);
    // Nothing is due now: a pass does nothing.
    bg.run_pass();
    assert_eq!(bg.stats().compactions, 4);
    // A kick starts a pass without waiting for the (hour-long) interval.
    let before = bg.stats().passes;
    bg.kick();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while bg.stats().passes == before {
        assert!(
            std::time::Instant::now() < deadline,
            "a kick started no pass"
        );
        std::thread::yield_now();
    }
    bg.stop();
}

#[test]
fn errors_and_panics_are_reported_and_the_scheduler_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = due_soon(2).with_merge_operator(Picky);
    o.store.thresholds.pending_ops = 0;
    let db = Engine::open(dir.path(), o).unwrap();
    db.merge(1, b"!bad").unwrap();
    db.merge(1, b"x").unwrap();
    let bg = db.start_background(quiet()).unwrap();
    bg.run_pass();
    let st = bg.stats();
    assert!(st.errors >= 1, "{st:?}");
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{st:?}"
    );
    // A put supersedes the refused operand; the next pass compacts.
    db.put(1, b"fixed").unwrap();
    bg.run_pass();
    assert!(bg.stats().compactions >= 1, "{:?}", bg.stats());
    assert_eq!(db.get(1).unwrap().as_deref(), Some(&b"fixed"[..]));
    // A panic in a compaction is reported too; the thread survives it.
    db.merge(2, b"!panic").unwrap();
    db.merge(2, b"x").unwrap();
    let errors = bg.stats().errors;
    bg.run_pass();
    let st = bg.stats();
    assert!(st.errors > errors, "{st:?}");
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("panicked")),
        "{st:?}"
    );
    bg.run_pass();
    assert_eq!(bg.stats().passes, st.passes + 1, "still running");
    assert_eq!(db.get(2).unwrap().as_deref(), Some(&b"!panicx"[..]));
}

#[test]
fn the_io_budget_spaces_compactions_by_what_they_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engine::open(dir.path(), due_soon(2)).unwrap();
    for k in 0..300u64 {
        db.put(k, &[7; 200]).unwrap();
    }
    // 10 MB/s at 30%: 3 MB/s, so each written byte costs a third of a microsecond.
    let bg = db
        .start_background(SchedulerOptions {
            device_bytes_per_sec: 10_000_000,
            ..quiet()
        })
        .unwrap();
    bg.run_pass();
    let st = bg.stats();
    assert_eq!(st.compactions, 2);
    let expected = st.bytes_written as f64 / 3_000_000.0;
    let waited = st.budget_wait.as_secs_f64();
    assert!(
        (waited - expected).abs() <= expected * 0.01,
        "waited {waited}s for {} bytes (expected {expected}s)",
        st.bytes_written
    );
    for bad in [
        SchedulerOptions {
            normal_budget_percent: 0,
            ..quiet()
        },
        SchedulerOptions {
            interval: Duration::ZERO,
            ..quiet()
        },
    ] {
        assert!(db.start_background(bad).is_err());
    }
}

#[test]
fn a_shard_over_its_pending_limit_is_an_emergency() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(2);
    o.store.pending_limit_bytes = 64 << 10;
    let db = Engine::open(dir.path(), o).unwrap();
    for k in 0..2000u64 {
        db.put(k, &[3; 64]).unwrap();
    }
    let bg = db.start_background(quiet()).unwrap();
    bg.run_pass();
    let st = bg.stats();
    assert!(st.emergencies >= 1 && st.compactions >= 1, "{st:?}");
    assert_eq!(db.stats().pending_ops(), 0);
    assert_eq!(
        db.stats().writes_delayed,
        0,
        "no emergency is left: no write waits"
    );
}

/// A shard whose emergency compaction fails keeps slowing its writers
/// until a compaction of it succeeds.
#[test]
fn writers_to_a_shard_stuck_in_an_emergency_are_slowed_until_it_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(1).with_merge_operator(Picky);
    o.store.pending_limit_bytes = 64 << 10;
    let db = Engine::open(dir.path(), o).unwrap();
    db.merge(1, b"!bad").unwrap();
    for k in 2..1000u64 {
        db.put(k, &[1; 64]).unwrap();
    }
    let bg = db.start_background(quiet()).unwrap();
    bg.run_pass();
    let st = bg.stats();
    assert!(st.emergencies >= 1 && st.errors >= 1, "{st:?}");
    db.put(500, b"slowed").unwrap();
    let delayed = db.stats();
    assert_eq!(delayed.writes_delayed, 1, "{delayed:?}");
    assert_eq!(
        delayed.write_delay,
        SchedulerOptions::default().emergency_write_delay
    );
    // The put of key 1 supersedes the refused operand: the next pass
    // compacts, and writes go at full speed again.
    db.put(1, b"fixed").unwrap();
    bg.run_pass();
    assert!(bg.stats().compactions >= 1, "{:?}", bg.stats());
    let before = db.stats().writes_delayed;
    db.put(501, b"free").unwrap();
    assert_eq!(db.stats().writes_delayed, before);
}

#[test]
fn the_scheduler_compacts_on_its_own_and_stops_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let db = Engine::open(dir.path(), due_soon(2)).unwrap();
    let bg = db
        .start_background(SchedulerOptions {
            interval: Duration::from_millis(5),
            ..SchedulerOptions::default()
        })
        .unwrap();
    for k in 0..1000u64 {
        db.put(k, &[9; 16]).unwrap();
    }
    bg.run_pass();
    assert!(bg.stats().compactions >= 1);
    drop(bg);
    db.close().unwrap();
}

/// A pass compacts the shard in an emergency first, then the others by
/// dead bytes, most first.
#[test]
fn a_pass_takes_emergencies_first_then_the_most_dead_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = due_soon(4);
    o.store.pending_limit_bytes = 64 << 10;
    let db = Engine::open(dir.path(), o).unwrap();
    // Keys of each shard.
    let of = |shard: usize, n: usize| -> Vec<u64> {
        (0u64..)
            .filter(|k| silo_engine::shard_of(*k, 4) == shard)
            .take(n)
            .collect()
    };
    // Dead bytes: shard 1 rewrites 60 records with longer values, shard 2
    // rewrites 20; both are then due (pending operations), not emergencies.
    for (shard, moved) in [(1usize, 60usize), (2, 20)] {
        for k in of(shard, 60) {
            db.put(k, &[1; 32]).unwrap();
        }
        db.compact().unwrap();
        for k in of(shard, moved) {
            db.put(k, &[2; 200]).unwrap();
        }
        db.compact().unwrap();
    }
    for shard in [1usize, 2] {
        for k in of(shard, 80).into_iter().skip(60) {
            db.put(k, b"due").unwrap();
        }
    }
    // Shard 3 in an emergency: over its pending limit.
    for k in of(3, 1200) {
        db.put(k, &[3; 64]).unwrap();
    }
    let dead: Vec<u64> = db.stats().shards.iter().map(|s| s.dead_bytes).collect();
    assert!(dead[1] > dead[2] && dead[2] > 0, "{dead:?}");
    let bg = db.start_background(quiet()).unwrap();
    bg.run_pass();
    let st = bg.stats();
    assert_eq!(st.last_pass, vec![3, 1, 2], "{st:?}");
    assert_eq!(st.errors, 0);
}

/// The name and CPU priority (nice value) of each thread a merge ran on.
static MERGED_ON: std::sync::Mutex<Vec<(String, i32)>> = std::sync::Mutex::new(Vec::new());

/// Concatenates, noting the thread it runs on.
struct Noting;

impl MergeOperator for Noting {
    fn merge(
        &self,
        _key: u64,
        existing: Option<&[u8]>,
        operands: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        let nice = silo_io::advice::cpu_priority_of_this_thread().map_err(|e| e.to_string())?;
        MERGED_ON
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name, nice));
        out.extend_from_slice(existing.unwrap_or_default());
        operands.iter().for_each(|op| out.extend_from_slice(op));
        Ok(())
    }
}

#[test]
fn the_scheduler_and_the_threads_of_its_compactions_run_below_the_callers_cpu_priority() {
    let own = silo_io::advice::cpu_priority_of_this_thread().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Two shards on two compaction threads: the merges run on the pool's
    // threads, which the scheduler's thread started.
    let mut o = due_soon(2).with_merge_operator(Noting);
    o.compaction_threads = Some(2);
    let db = Engine::open(dir.path(), o).unwrap();
    for k in 0..200u64 {
        db.merge(k, b"a").unwrap();
        db.merge(k, b"b").unwrap();
    }
    let bg = db
        .start_background(SchedulerOptions { nice: 3, ..quiet() })
        .unwrap();
    bg.run_pass();
    assert_eq!(bg.stats().compactions, 2, "{:?}", bg.stats());
    bg.stop();
    let seen = std::mem::take(&mut *MERGED_ON.lock().unwrap());
    let by_silo: Vec<_> = seen
        .iter()
        .filter(|(n, _)| n.starts_with("silo-"))
        .collect();
    assert!(
        !by_silo.is_empty(),
        "no merge ran on a compaction thread: {seen:?}"
    );
    let lowered = if cfg!(target_os = "linux") {
        (own + 3).min(19)
    } else {
        own
    };
    assert!(
        by_silo.iter().all(|(_, nice)| *nice == lowered),
        "{by_silo:?}, expected {lowered}"
    );
    // The caller's own thread keeps its priority, and reads merge at it.
    assert_eq!(silo_io::advice::cpu_priority_of_this_thread().unwrap(), own);
    assert_eq!(db.get(7).unwrap().as_deref(), Some(&b"ab"[..]));
}

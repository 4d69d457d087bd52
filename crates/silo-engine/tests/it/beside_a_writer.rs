//! Read-only engine opens beside a writer in another process: the writer
//! applies cross-shard batches without pause, with the background scheduler
//! on and parallel compactions (hot and cold) between; this process opens
//! the engine read-only again and again. Every open must see each
//! cross-shard batch whole or not at all, include everything acknowledged
//! before the open began, never go back, and keep its view while the
//! writer goes on.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Read as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_engine::{CompactOptions, Engine, SchedulerOptions};

use crate::common::opts;

const CHILD_DIR: &str = "SILO_ENGINE_BESIDE_WRITER_DIR";
const SHARDS: usize = 4;

/// Keys every round's batch puts (spread over every shard), all with the
/// round's number.
const GROUP: std::ops::Range<u64> = 0..64;
/// Round `r` also puts `MARKERS + r` and deletes `MARKERS + r - 3`: a view
/// at round `r` holds exactly the markers of rounds `r - 2` to `r`.
const MARKERS: u64 = 1 << 30;

fn round_value(key: u64, round: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&round.to_le_bytes());
    v.resize(
        16 + usize::try_from((round + key) % 4).unwrap_or(0) * 40,
        0xa5,
    );
    v
}

/// The round a value made by [`round_value`] carries (checking the rest).
fn round_of(key: u64, v: &[u8]) -> u64 {
    let round = u64::from_le_bytes(v[8..16].try_into().expect("a short value"));
    assert_eq!(
        v,
        round_value(key, round),
        "key {key}: a torn or foreign value"
    );
    round
}

/// Not a test by itself: the body of the writer process (it does nothing
/// unless the parent set its environment). Writes rounds until its stdin
/// closes, saying `ROUND r` after each.
#[test]
fn engine_writer_child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
        stopper.store(true, Ordering::Release);
    });
    let db = Engine::open(&dir, opts(SHARDS)).expect("writer open");
    let background = db
        .start_background(SchedulerOptions {
            interval: Duration::from_millis(5),
            ..SchedulerOptions::default()
        })
        .expect("scheduler");
    let mut round = 0u64;
    while !stop.load(Ordering::Acquire) {
        round += 1;
        let mut batch = WriteBatch::new();
        for key in GROUP {
            batch.put(key, &round_value(key, round));
        }
        batch.put(MARKERS + round, &round_value(MARKERS + round, round));
        if round > 3 {
            batch.delete(MARKERS + round - 3);
        }
        let durability = if round.is_multiple_of(2) {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        db.write_with(&batch, WriteOptions::durability(durability))
            .expect("write");
        if round.is_multiple_of(6) {
            db.compact().expect("compact");
        }
        if round.is_multiple_of(61) {
            db.compact_with(CompactOptions {
                cold: true,
                ..CompactOptions::default()
            })
            .expect("cold compaction");
        }
        if round.is_multiple_of(9) {
            db.flush().expect("flush");
        }
        println!("ROUND {round}");
    }
    background.stop();
    db.close().expect("close");
}

/// Every key of a read-only open, by point reads and by a scan (which must
/// agree); checks that it is one whole round and returns the round.
fn whole_round(db: &Engine) -> (u64, BTreeMap<u64, Vec<u8>>) {
    let values: BTreeMap<u64, Vec<u8>> = db.iter().map(|entry| entry.expect("iterate")).collect();
    for (key, v) in &values {
        assert_eq!(db.get(*key).expect("get").as_ref(), Some(v), "key {key}");
    }
    let rounds: Vec<u64> = GROUP
        .map(|key| round_of(key, values.get(&key).expect("a group key is missing")))
        .collect();
    let round = rounds[0];
    assert!(
        rounds.iter().all(|r| *r == round),
        "a cross-shard batch seen in part: {rounds:?}"
    );
    let markers: Vec<u64> = values.range(MARKERS..).map(|(k, _)| k - MARKERS).collect();
    assert_eq!(
        markers,
        (round.saturating_sub(2).max(1)..=round).collect::<Vec<_>>(),
        "the markers of another round than {round}"
    );
    assert_eq!(values.len(), GROUP.count() + markers.len(), "a stray key");
    (round, values)
}

#[test]
fn read_only_engine_opens_beside_a_working_writer_see_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("engine");
    Engine::open(&store, opts(SHARDS)).unwrap().close().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "beside_a_writer::engine_writer_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &store)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel::<u64>();
    let forward = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(r) = line.strip_prefix("ROUND ")
                && tx.send(r.parse().expect("round")).is_err()
            {
                break;
            }
        }
    });
    let mut said = 0u64;
    let until = |said: &mut u64, at_least: u64| {
        while *said < at_least {
            *said = lines.recv().expect("the writer stopped early");
        }
    };
    until(&mut said, 1);
    let mut last = 0;
    let mut read_only = opts(SHARDS);
    read_only.store.read_only = true;
    for open in 0..30u64 {
        while let Ok(r) = lines.try_recv() {
            said = r;
        }
        let acked = said;
        let db = Engine::open(&store, read_only.clone()).unwrap();
        let (round, view) = whole_round(&db);
        assert!(
            round >= acked && round >= last,
            "open {open}: round {round}, after the writer had said {acked} (last seen {last})"
        );
        // Compactions and cross-shard batches go on; this view does not move.
        until(&mut said, acked + 10 + open % 13);
        assert_eq!(whole_round(&db).1, view, "open {open}: the view changed");
        for report in db.verify().unwrap() {
            assert!(report.is_ok(), "open {open}: {report:?}");
        }
        db.close().unwrap();
        last = round;
        if open % 4 == 3 {
            let next = said + 8;
            until(&mut said, next);
        }
    }
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    while let Ok(r) = lines.recv() {
        said = r;
    }
    forward.join().unwrap();
    assert!(status.success(), "the writer failed: {status:?}");
    let db = Engine::open(&store, opts(SHARDS)).unwrap();
    assert_eq!(whole_round(&db).0, said);
}

//! Read-only opens beside a writer in another process: a child process
//! writes whole batches, compacts (hot and cold), rewrites through a merge
//! writer and flushes with mixed durabilities, without pause; this process
//! opens the store read-only again and again while it does. Every open
//! must see one consistent state (every batch whole, each key's value
//! whole), include every write the writer acknowledged before the open
//! began, never go back in time, and keep its view unchanged while the
//! writer goes on for many rounds and compactions.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use silo_core::{Durability, Options, Silo, WriteBatch, WriteOptions};

use crate::common::{check, child_test, opts, value};

const CHILD_DIR: &str = "SILO_BESIDE_WRITER_DIR";

/// Keys every round's batch puts, all with the round's number.
const GROUP: std::ops::Range<u64> = 0..48;
/// Keys of which every round deletes one (`round % 16`) and puts the rest.
const ROTATING: std::ops::Range<u64> = 100..116;
/// Keys a merge writer rewrites every 25 rounds (a pass count each).
const COUNTERS: std::ops::Range<u64> = 1000..1024;
/// Round `r` also puts key `MARKERS + r`, and no other round does: a view
/// at round `r` holds the markers of rounds 1 to `r` and no other.
const MARKERS: u64 = 1 << 20;

/// A value whose length changes with the round, so that a compaction finds
/// some results that fit their records (in place) and some that do not.
fn round_value(key: u64, round: u64) -> Vec<u8> {
    value(
        key,
        round,
        16 + usize::try_from((round * 7 + key) % 5).unwrap_or(0) * 48,
    )
}

/// Writes round `round`'s batch (see the key ranges above).
fn write_round(silo: &Silo, round: u64) {
    let mut batch = WriteBatch::new();
    for key in GROUP {
        batch.put(key, &round_value(key, round));
    }
    for key in ROTATING {
        if key - ROTATING.start == round % 16 {
            batch.delete(key);
        } else {
            batch.put(key, &round_value(key, round));
        }
    }
    batch.put(MARKERS + round, &value(MARKERS + round, round, 16));
    let durability = if round.is_multiple_of(3) {
        Durability::Sync
    } else {
        Durability::Buffered
    };
    silo.write_with(&batch, WriteOptions::durability(durability))
        .expect("write");
}

/// Not a test by itself: the body of the writer process (it does nothing
/// unless the parent set its environment). Writes rounds until its stdin
/// closes; says `ROUND r` after round `r` is written, `PASS p` after merge
/// pass `p` is finished, and `BESIDE n` with the compactions that ran
/// beside readers when it stops.
#[test]
fn writer_child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = Arc::clone(&stop);
    let (tx, commands) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
        stopper.store(true, Ordering::Release);
    });
    let silo = Silo::open(&dir, opts()).expect("writer open");
    let (mut in_place, mut beside) = (0u64, 0u64);
    let mut pass = 0u64;
    let mut round = 0u64;
    let mut rotate = None;
    while !stop.load(Ordering::Acquire) {
        // "pause": say so and wait for the next command; "rotate": write a
        // round, then rotate the log slots and say so before the rest of
        // the compaction (which waits for an opening reader); "rotate
        // quietly": the same, but write nothing more until told "go".
        if let Ok(command) = commands.try_recv() {
            assert_eq!(command, "pause");
            // Leave the emptied slot with one round's frames behind it, so
            // that the rounds written into it after the rotation below
            // reach past the manifest's folded sequence.
            for _ in 0..2 {
                round += 1;
                write_round(&silo, round);
                println!("ROUND {round}");
                silo.compact().expect("compact");
            }
            println!("PAUSED");
            match commands.recv() {
                Ok(command) => {
                    assert!(command.starts_with("rotate"), "{command}");
                    rotate = Some(command == "rotate quietly");
                }
                Err(_) => break,
            }
        }
        round += 1;
        write_round(&silo, round);
        if round.is_multiple_of(7) {
            silo.flush().expect("flush");
        }
        if let Some(quietly) = rotate.take() {
            let staged = silo
                .stage_compaction(false)
                .expect("stage")
                .expect("something to fold");
            println!("FROZEN");
            if quietly && commands.recv().as_deref() != Ok("go") {
                break;
            }
            // Rounds into the slot the rotation just restamped, before the
            // compaction goes on.
            for _ in 0..3 {
                round += 1;
                write_round(&silo, round);
                println!("ROUND {round}");
            }
            let plan = staged.plan().expect("plan");
            let report = staged.apply(plan).expect("apply");
            beside += u64::from(report.beside_readers);
        } else if round.is_multiple_of(5) {
            let report = silo.compact().expect("compact");
            in_place += report.in_place;
            beside += u64::from(report.beside_readers);
        }
        if round.is_multiple_of(97) {
            let report = silo.compact_cold().expect("compact_cold");
            beside += u64::from(report.beside_readers);
        }
        if round.is_multiple_of(25) {
            pass += 1;
            let writer = silo.merge_writer().expect("merge writer");
            for key in COUNTERS {
                writer
                    .update(key, |_| value(key, pass, 16))
                    .expect("update");
            }
            writer.finish().expect("finish");
            println!("PASS {pass}");
        }
        println!("ROUND {round}");
    }
    silo.close().expect("close");
    println!("BESIDE {beside} IN_PLACE {in_place}");
}

/// What one read-only open sees.
#[derive(Debug, PartialEq, Eq)]
struct View {
    values: BTreeMap<u64, Vec<u8>>,
}

impl View {
    fn read(silo: &Silo) -> View {
        let mut values = BTreeMap::new();
        for key in GROUP.chain(ROTATING).chain(COUNTERS) {
            if let Some(v) = silo.get(key).expect("get") {
                values.insert(key, v.to_vec());
            }
        }
        let mut marker = MARKERS + 1;
        while let Some(v) = silo.get(marker).expect("get") {
            values.insert(marker, v.to_vec());
            marker += 1;
        }
        // A scan sees the same as the point reads.
        let scanned: BTreeMap<u64, Vec<u8>> = silo
            .iter()
            .map(|entry| {
                let (k, v) = entry.expect("iterate");
                (k, v.to_vec())
            })
            .collect();
        assert_eq!(scanned, values, "a scan disagrees with point reads");
        View { values }
    }

    /// The round the view is at, after checking that it is one whole
    /// round: every group key at it, the rotating keys as that round left
    /// them, every value whole.
    fn round(&self) -> u64 {
        let rounds: Vec<u64> = GROUP
            .map(|key| {
                let v = self.values.get(&key).expect("a group key is missing");
                check(key, v).unwrap_or_else(|| panic!("key {key}: a torn or foreign value"))
            })
            .collect();
        let round = rounds[0];
        assert!(
            rounds.iter().all(|r| *r == round),
            "a batch seen in part: {rounds:?}"
        );
        for key in ROTATING {
            let expected = (key - ROTATING.start != round % 16).then(|| round_value(key, round));
            assert_eq!(
                self.values.get(&key),
                expected.as_ref(),
                "rotating key {key} at round {round}"
            );
        }
        let markers: Vec<u64> = self.values.range(MARKERS..).map(|(k, _)| *k).collect();
        assert_eq!(
            markers,
            (MARKERS + 1..=MARKERS + round).collect::<Vec<_>>(),
            "the markers of another round than {round}"
        );
        round
    }

    /// The merge writer's pass each counter key shows.
    fn passes(&self) -> Vec<u64> {
        COUNTERS
            .map(|key| {
                self.values
                    .get(&key)
                    .map_or(0, |v| check(key, v).expect("a torn counter"))
            })
            .collect()
    }
}

/// What the writer said so far.
#[derive(Default)]
struct Said {
    round: u64,
    pass: u64,
    frozen: u64,
    paused: u64,
    last: Option<String>,
}

impl Said {
    /// Takes the writer's lines until it has said round `at_least`.
    fn until(&mut self, lines: &mpsc::Receiver<String>, at_least: u64) {
        while self.round < at_least {
            let line = lines.recv().expect("the writer stopped early");
            self.take(line);
        }
    }

    /// Takes what the writer has said already, without waiting.
    fn drain(&mut self, lines: &mpsc::Receiver<String>) {
        while let Ok(line) = lines.try_recv() {
            self.take(line);
        }
    }

    fn take(&mut self, line: String) {
        if let Some(r) = line.strip_prefix("ROUND ") {
            self.round = r.parse().expect("round");
        } else if let Some(p) = line.strip_prefix("PASS ") {
            self.pass = p.parse().expect("pass");
        } else if line == "FROZEN" {
            self.frozen += 1;
        } else if line == "PAUSED" {
            self.paused += 1;
        } else if line.starts_with("BESIDE ") {
            self.last = Some(line);
        }
    }
}

fn read_only() -> Options {
    Options {
        read_only: true,
        ..opts()
    }
}

#[test]
fn read_only_opens_beside_a_working_writer_see_whole_fixed_states() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // The store exists before the writer starts, so that readers can open.
    Silo::open(&store, opts()).unwrap().close().unwrap();
    let mut child = child_test("beside_a_writer::writer_child_process")
        .env(CHILD_DIR, &store)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let reader_thread = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = Said::default();
    let mut last_round = 0;
    let mut last_passes = vec![0; COUNTERS.count()];
    said.until(&lines, 1);
    for open in 0..40u64 {
        said.drain(&lines);
        let (acked, passed) = (said.round, said.pass);
        let silo = if open % 5 == 2 {
            // The writer rotates the log slots between this open's reading
            // of their headers and its replay of their frames.
            // (Paused first, so that no compaction of its own is under
            // way, waiting for this open to end.)
            let stdin = child.stdin.as_mut().unwrap();
            let mut tell = |command: &str| {
                writeln!(stdin, "{command}").unwrap();
                stdin.flush().unwrap();
            };
            tell("pause");
            let paused = said.paused;
            while said.paused == paused {
                said.take(lines.recv().expect("the writer stopped early"));
            }
            // Every other time, it writes nothing into the restamped slot
            // until this open is done: the replay then finds nothing wrong
            // with the frames it reads, and only the slots' changed headers
            // make it start again.
            let quietly = open % 10 == 7;
            let silo = held_open(&store, || {
                tell(if quietly { "rotate quietly" } else { "rotate" });
                let frozen = said.frozen;
                while said.frozen == frozen {
                    said.take(lines.recv().expect("the writer stopped early"));
                }
                if !quietly {
                    // And the rounds it writes into the restamped slot.
                    let round = said.round;
                    said.until(&lines, round + 3);
                }
            });
            if quietly {
                tell("go");
            }
            silo
        } else {
            Silo::open(&store, read_only()).unwrap()
        };
        let view = View::read(&silo);
        let round = view.round();
        assert!(
            round >= acked && round >= last_round,
            "open {open}: saw round {round}, after the writer had said {acked} (last seen {last_round})"
        );
        let passes = view.passes();
        for (p, last) in passes.iter().zip(&last_passes) {
            assert!(
                *p >= passed && p >= last,
                "counters {passes:?} after pass {passed}"
            );
        }
        // The writer goes on (compactions included, in place or not);
        // this view does not move.
        said.until(&lines, acked + 12 + open % 20);
        assert_eq!(View::read(&silo), view, "open {open}: the view changed");
        let report = silo.verify().unwrap();
        assert!(report.is_ok(), "open {open}: {report:?}");
        silo.close().unwrap();
        (last_round, last_passes) = (round, passes);
        // Now and then, let compactions run with no reader at all.
        if open % 4 == 3 {
            said.until(&lines, said.round + 10);
        }
    }
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    while let Ok(line) = lines.recv() {
        said.take(line);
    }
    reader_thread.join().unwrap();
    assert!(status.success(), "the writer failed: {status:?}");
    // Both kinds of compaction ran: beside readers, and in place alone.
    let last = said.last.expect("the writer's summary");
    let numbers: Vec<u64> = last
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(numbers[0] > 0 && numbers[1] > 0, "{last}");
    // And the writer's own reopen sees the last round whole.
    let silo = Silo::open(&store, opts()).unwrap();
    let view = View::read(&silo);
    assert_eq!(view.round(), said.round);
    assert!(silo.verify().unwrap().is_ok());
    assert_store_files_only(&store);
}

/// Opens `store` read-only, holding the open between reading the log
/// slots' headers and replaying them while `meanwhile` lets the writer
/// rotate them.
fn held_open(store: &Path, meanwhile: impl FnOnce()) -> Silo {
    use silo_io::fault::{FaultPlan, install};
    let guard = install(
        store,
        FaultPlan::new().hold(silo_core::HOLD_READ_ONLY_REPLAY),
    );
    std::thread::scope(|s| {
        let opening = s.spawn(|| Silo::open(store, read_only()));
        guard.wait_held(silo_core::HOLD_READ_ONLY_REPLAY, 1);
        meanwhile();
        guard.release(silo_core::HOLD_READ_ONLY_REPLAY);
        opening.join().unwrap().unwrap()
    })
}

/// No file is left behind by the replacements (a `.tmp`, an old index).
fn assert_store_files_only(dir: &Path) {
    let mut indexes = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "left behind: {name}");
        indexes += usize::from(name.starts_with("index-"));
    }
    assert_eq!(indexes, 1, "more than one index file");
}

//! Calls from inside read callbacks and while holding an iterator: those
//! that would wait for the calling thread itself return `WouldDeadlock`
//! instead of hanging; reads and writes work there.

use silo_core::{Error, Options};

use crate::common::{open, opts};

fn would_deadlock<T: std::fmt::Debug>(r: Result<T, Error>, call: &str) {
    match r {
        Err(Error::WouldDeadlock { call: c }) => assert_eq!(c, call),
        other => panic!("{call}: expected WouldDeadlock, got {other:?}"),
    }
}

#[test]
fn calls_that_wait_for_compaction_are_refused_inside_get_with() {
    let dir = tempfile::tempdir().unwrap();
    let silo = open(dir.path());
    silo.put(1, b"one").unwrap();
    silo.compact().unwrap();
    let cp = dir.path().join("cp");
    silo.get_with(1, |v| {
        assert_eq!(v, Some(&b"one"[..]));
        would_deadlock(silo.compact(), "compact");
        would_deadlock(silo.compact_cold(), "compact_cold");
        would_deadlock(silo.checkpoint(&cp), "checkpoint");
        would_deadlock(silo.bulk_writer().map(|_| ()), "bulk_writer");
        would_deadlock(silo.merge_writer().map(|_| ()), "merge_writer");
        let mut it = silo.iter();
        would_deadlock(it.next().expect("the refusal").map(|_| ()), "iter");
        assert!(it.next().is_none());
        // Reads and writes are fine.
        assert_eq!(silo.get(1).unwrap().as_deref(), Some(&b"one"[..]));
        silo.put(2, b"two").unwrap();
    })
    .unwrap();
    assert_eq!(silo.get(2).unwrap().as_deref(), Some(&b"two"[..]));
    // Outside the callback everything works again.
    silo.compact().unwrap();
    assert_eq!(silo.iter().count(), 2);
}

/// Writes from inside a callback go on while the compaction worker, woken
/// by them, waits for the callback's grace period: the writer never waits
/// for a compaction that waits for it.
#[test]
fn writes_inside_a_callback_never_wait_for_the_compaction_they_wake() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.auto_compact = true;
    o.thresholds.pending_ops = 1;
    o.thresholds.min_interval = std::time::Duration::ZERO;
    // The smallest pending limit: the writes below go far over it, where
    // writes outside a callback wait for a running compaction.
    o.pending_limit_bytes = 64 << 10;
    let silo = silo_core::Silo::open(dir.path(), o).unwrap();
    silo.put(1, b"x").unwrap();
    silo.compact().unwrap();
    silo.get_with(1, |_| {
        for k in 0..2000 {
            silo.put(k % 200, &[b'w'; 200]).unwrap();
        }
        silo.put(199, b"written from a callback").unwrap();
    })
    .unwrap();
    silo.wait_background().unwrap();
    assert!(silo.stats().compactions > 1, "the worker compacted");
    assert_eq!(
        silo.get(199).unwrap().as_deref(),
        Some(&b"written from a callback"[..])
    );
    would_deadlock(
        silo.get_with(1, |_| silo.wait_background()).unwrap(),
        "wait_background",
    );
}

#[test]
fn a_thread_holding_an_iterator_is_refused_what_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let silo = open(dir.path());
    silo.put(1, b"one").unwrap();
    let it = silo.iter();
    would_deadlock(silo.compact(), "compact");
    would_deadlock(silo.checkpoint(dir.path().join("cp")), "checkpoint");
    // A second iterator on the same thread is fine.
    assert_eq!(silo.iter().count(), 1);
    drop(it);
    silo.compact().unwrap();
}

#[test]
fn merge_writer_calls_inside_its_own_update_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let silo = open(dir.path());
    silo.put(1, b"abc").unwrap();
    silo.compact().unwrap();
    let writer = silo.merge_writer().unwrap();
    writer
        .update(1, |v| {
            would_deadlock(writer.update(2, |_| Vec::new()), "MergeWriter::update");
            would_deadlock(writer.flush(), "MergeWriter::flush");
            would_deadlock(silo.compact(), "compact");
            v.map(<[u8]>::to_vec).unwrap_or_default()
        })
        .unwrap();
    writer.finish().unwrap();
    assert_eq!(silo.get(1).unwrap().as_deref(), Some(&b"abc"[..]));
}

#[test]
fn an_operator_that_does_not_fold_in_steps_changes_values_at_compaction() {
    /// Breaks `merge(merge(b, x), y) == merge(b, x ++ y)`: it records how
    /// many operands one call folded.
    struct CountsCalls;
    impl silo_core::MergeOperator for CountsCalls {
        fn merge(
            &self,
            _key: u64,
            existing: Option<&[u8]>,
            operands: &[&[u8]],
            out: &mut Vec<u8>,
        ) -> Result<(), String> {
            out.extend_from_slice(existing.unwrap_or_default());
            out.extend_from_slice(format!("[{}]", operands.len()).as_bytes());
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::default().with_merge_operator(CountsCalls);
    o.auto_compact = false;
    let silo = silo_core::Silo::open(dir.path(), o).unwrap();
    // The same two merges, folded in one call (no compaction between
    // them) or in two (a compaction between them), give two values: what
    // the documentation of MergeOperator warns of.
    silo.merge(2, b"a").unwrap();
    silo.merge(2, b"b").unwrap();
    let all_at_once = silo.get(2).unwrap();
    silo.compact().unwrap();
    silo.merge(3, b"a").unwrap();
    silo.compact().unwrap();
    silo.merge(3, b"b").unwrap();
    silo.compact().unwrap();
    assert_eq!(all_at_once.as_deref(), Some(&b"[2]"[..]));
    assert_eq!(silo.get(3).unwrap().as_deref(), Some(&b"[1][1]"[..]));
}

/// A thread holding a bulk or merge writer (the gate, exclusively) is
/// refused what would wait for that gate, instead of hanging.
#[test]
fn a_thread_holding_a_writer_is_refused_what_waits_for_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.auto_compact = true;
    let silo = silo_core::Silo::open(dir.path(), o).unwrap();
    let writer = silo.merge_writer().unwrap();
    would_deadlock(silo.compact(), "compact");
    would_deadlock(silo.wait_background(), "wait_background");
    would_deadlock(silo.snapshot().map(|_| ()), "snapshot");
    would_deadlock(silo.verify().map(|_| ()), "verify");
    would_deadlock(silo.rebuild_index().map(|_| ()), "rebuild_index");
    let mut it = silo.iter();
    would_deadlock(it.next().expect("the refusal").map(|_| ()), "iter");
    drop(it);
    writer.finish().unwrap();
    let bulk = silo.bulk_writer().unwrap();
    would_deadlock(silo.checkpoint(dir.path().join("cp")), "checkpoint");
    bulk.finish().unwrap();
    silo.wait_background().unwrap();
    assert!(silo.verify().unwrap().is_ok());
}

/// A merge operator that panics on the compaction worker poisons the
/// store and is reported; nobody waiting for the worker hangs.
#[test]
fn a_panic_on_the_compaction_worker_is_reported_and_waiters_return() {
    struct PanicsOnBoom;
    impl silo_core::MergeOperator for PanicsOnBoom {
        fn merge(
            &self,
            _key: u64,
            existing: Option<&[u8]>,
            operands: &[&[u8]],
            out: &mut Vec<u8>,
        ) -> Result<(), String> {
            assert!(!operands.contains(&&b"boom"[..]), "operator panics on boom");
            out.extend_from_slice(existing.unwrap_or_default());
            for op in operands {
                out.extend_from_slice(op);
            }
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::default().with_merge_operator(PanicsOnBoom);
    o.thresholds.pending_ops = 1;
    o.thresholds.min_interval = std::time::Duration::ZERO;
    let silo = silo_core::Silo::open(dir.path(), o).unwrap();
    silo.put(1, b"base").unwrap();
    silo.merge(1, b"boom").unwrap();
    silo.put(2, b"x").unwrap();
    // Returns although the worker died on the way.
    silo.wait_background().unwrap();
    silo.wait_background().unwrap();
    let stats = silo.stats();
    assert!(
        stats
            .last_compaction_error
            .as_deref()
            .is_some_and(|e| e.contains("panicked")),
        "{stats:?}"
    );
    assert!(matches!(silo.put(3, b"y"), Err(Error::Poisoned { .. })));
}

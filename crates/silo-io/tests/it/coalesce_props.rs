//! Property tests: `CoalescedWrites` leaves a file byte-identical to issuing
//! the same writes one by one in push order, with and without short writes
//! and `EINTR` injected through the fault seam.

use proptest::prelude::*;
use silo_io::{CoalescedWrites, SiloFile, WriteStats, iov_max};

/// Up to 40 writes at offsets within 4 KiB, 0..300 bytes each, overlapping freely.
fn writes() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
    proptest::collection::vec(
        (0u64..4096, proptest::collection::vec(any::<u8>(), 0..300)),
        0..40,
    )
}

/// The file contents after issuing `writes` one by one.
fn one_by_one(writes: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("reference")).unwrap();
    for (offset, bytes) in writes {
        file.write_all_at(bytes, *offset).unwrap();
    }
    std::fs::read(file.path()).unwrap()
}

/// Pushes `writes` and flushes them to a new file in `dir`.
fn coalesced(dir: &std::path::Path, writes: &[(u64, Vec<u8>)]) -> (Vec<u8>, WriteStats) {
    let file = SiloFile::create_new(&dir.join("coalesced")).unwrap();
    let mut buffer = CoalescedWrites::new();
    for (offset, bytes) in writes {
        buffer.push(*offset, bytes);
    }
    let stats = buffer.flush(&file).unwrap();
    assert!(buffer.is_empty());
    (std::fs::read(file.path()).unwrap(), stats)
}

proptest! {
    #[test]
    fn coalesced_equals_one_by_one(writes in writes()) {
        let dir = tempfile::tempdir().unwrap();
        let (got, stats) = coalesced(dir.path(), &writes);
        prop_assert_eq!(got, one_by_one(&writes));
        let non_empty = writes.iter().filter(|(_, b)| !b.is_empty()).count() as u64;
        prop_assert_eq!(stats.requested, non_empty);
        prop_assert!(stats.syscalls <= stats.requested);
    }

    #[test]
    fn contiguous_input_takes_one_call_per_iov_max_chunk(
        sizes in proptest::collection::vec(1usize..40, 1..3000),
        start in 0u64..10_000,
    ) {
        let mut writes = Vec::new();
        let mut at = start;
        for (i, size) in sizes.iter().enumerate() {
            writes.push((at, vec![u8::try_from(i % 256).unwrap(); *size]));
            at += *size as u64;
        }
        // Shuffle deterministically: the buffer sorts by offset itself.
        writes.reverse();
        let dir = tempfile::tempdir().unwrap();
        let (got, stats) = coalesced(dir.path(), &writes);
        prop_assert_eq!(&got, &one_by_one(&writes));
        prop_assert_eq!(stats.syscalls, sizes.len().div_ceil(iov_max()) as u64);
        prop_assert_eq!(stats.bytes, at - start);
    }
}

#[cfg(feature = "fault-injection")]
mod with_faults {
    use super::*;
    use silo_io::fault::{self, FaultAction, FaultOp, FaultPlan};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn short_writes_and_eintr_still_give_the_same_file(
            writes in writes(),
            max in 3usize..64,
            interrupt_at in 1u64..6,
        ) {
            let expected = one_by_one(&writes);
            let dir = tempfile::tempdir().unwrap();
            let guard = fault::install(
                dir.path(),
                FaultPlan::new()
                    .every(FaultOp::Write, FaultAction::Short { max })
                    .on(FaultOp::Write, interrupt_at, FaultAction::Interrupt),
            );
            let (got, stats) = coalesced(dir.path(), &writes);
            prop_assert_eq!(got, expected);
            let bytes: u64 = stats.bytes;
            prop_assert!(stats.syscalls >= bytes.div_ceil(max as u64));
            if stats.syscalls >= interrupt_at {
                prop_assert_eq!(guard.count(FaultOp::Write), stats.syscalls + 1, "the interrupted call is counted");
            }
        }
    }

    #[test]
    fn interrupt_on_every_call_still_completes() {
        let dir = tempfile::tempdir().unwrap();
        let _guard = fault::install(
            dir.path(),
            FaultPlan::new().every(FaultOp::Write, FaultAction::Interrupt),
        );
        let writes = vec![
            (0, vec![1u8; 100]),
            (50, vec![2u8; 100]),
            (400, vec![3u8; 10]),
        ];
        let (got, _) = coalesced(dir.path(), &writes);
        assert_eq!(got, one_by_one(&writes));
    }

    #[test]
    fn a_failed_flush_keeps_the_buffer_for_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let file = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let guard = fault::install(
            dir.path(),
            FaultPlan::new().on(FaultOp::Write, 2, FaultAction::Torn { keep: 3 }),
        );
        let mut buffer = CoalescedWrites::new();
        buffer.push(0, b"first run");
        buffer.push(100, b"second run");
        assert!(buffer.flush(&file).unwrap_err().is_injected());
        assert_eq!(buffer.len(), 2);
        buffer.flush(&file).unwrap();
        drop(guard);
        let bytes = std::fs::read(file.path()).unwrap();
        assert_eq!(&bytes[..9], b"first run");
        assert_eq!(&bytes[100..], b"second run");
    }
}

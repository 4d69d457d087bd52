//! `AtomicMap`: typed errors for bad offsets, values visible after reopen,
//! and concurrent atomic updates through one mapping.

use std::sync::atomic::Ordering;

use silo_io::{AtomicMap, IoError, SiloFile};

#[test]
fn bad_offsets_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("index")).unwrap();
    file.set_len(64).unwrap();
    let map = AtomicMap::new(&file).unwrap();
    for offset in [1, 4, 7, 9, 63] {
        match map.atomic_u64(offset) {
            Err(IoError::Misaligned {
                offset: o,
                align: 8,
            }) => assert_eq!(o, offset as u64),
            other => panic!("offset {offset}: expected Misaligned, got {other:?}"),
        }
    }
    for offset in [64, 72, usize::MAX - 7] {
        assert!(
            matches!(
                map.atomic_u64(offset),
                Err(IoError::OutOfBounds {
                    len: 8,
                    size: 64,
                    ..
                })
            ),
            "offset {offset}"
        );
    }
    assert!(map.atomic_u64(56).is_ok());
}

#[test]
fn stored_values_are_visible_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    {
        let file = SiloFile::create_new(&path).unwrap();
        file.allocate(0, 1 << 16).unwrap();
        let map = AtomicMap::new(&file).unwrap();
        for slot in 0..(1 << 13) {
            map.store_le(slot * 8, (slot as u64) << 8 | 0xAB, Ordering::Release)
                .unwrap();
        }
        map.flush_range(0, 1 << 16).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[8..16], &(0x1ABu64).to_le_bytes());
    let file = SiloFile::open(&path).unwrap();
    let map = AtomicMap::new(&file).unwrap();
    for slot in 0..(1 << 13) {
        assert_eq!(
            map.load_le(slot * 8, Ordering::Acquire).unwrap(),
            (slot as u64) << 8 | 0xAB
        );
    }
}

#[test]
fn concurrent_readers_and_writers_share_one_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("index")).unwrap();
    file.set_len(4096).unwrap();
    let map = AtomicMap::new(&file).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..10_000usize {
                    map.atomic_u64((i % 512) * 8)
                        .unwrap()
                        .fetch_add(1, Ordering::AcqRel);
                }
            });
        }
        s.spawn(|| {
            // A reader never sees a value above the final count.
            for _ in 0..10_000 {
                assert!(map.atomic_u64(0).unwrap().load(Ordering::Acquire) <= 4 * 20);
            }
        });
    });
    let total: u64 = (0..512)
        .map(|i| map.atomic_u64(i * 8).unwrap().load(Ordering::Acquire))
        .sum();
    assert_eq!(total, 40_000);
}

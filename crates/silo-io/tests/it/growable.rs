//! `GrowableMap`: readers keep reading correct bytes from old views while
//! another thread grows the file and remaps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use silo_io::{GrowableMap, SiloFile};

const CHUNK: usize = 4096;
const ROUNDS: usize = 64;

/// The byte every position of chunk `round` holds.
fn fill(round: usize) -> u8 {
    u8::try_from(round % 251).unwrap() + 1
}

#[test]
fn old_views_stay_valid_while_the_file_grows() {
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("data")).unwrap();
    file.write_all_at(&[fill(0); CHUNK], 0).unwrap();
    let maps = GrowableMap::new(&file).unwrap();
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    // Taken before growth starts; readers keep it through every remap.
    let first = maps.view();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    assert_eq!(first.len(), CHUNK);
                    assert!(first.as_slice().iter().all(|&b| b == fill(0)));
                    let latest = maps.view();
                    assert_eq!(latest.len() % CHUNK, 0);
                    for (round, chunk) in latest.as_slice().chunks(CHUNK).enumerate() {
                        assert!(chunk.iter().all(|&b| b == fill(round)), "chunk {round}");
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        s.spawn(|| {
            for round in 1..ROUNDS {
                file.write_all_at(&[fill(round); CHUNK], (round * CHUNK) as u64)
                    .unwrap();
                let view = maps.remap(&file).unwrap();
                assert_eq!(view.len(), (round + 1) * CHUNK);
                std::thread::yield_now();
            }
            done.store(true, Ordering::Release);
        });
    });
    let last = maps.view();
    assert_eq!(last.len(), ROUNDS * CHUNK);
    assert_eq!(last.as_slice()[ROUNDS * CHUNK - 1], fill(ROUNDS - 1));
    assert!(reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn growth_by_set_len_and_allocate_is_seen_after_remap() {
    let dir = tempfile::tempdir().unwrap();
    let file = SiloFile::create_new(&dir.path().join("data")).unwrap();
    let maps = GrowableMap::new(&file).unwrap();
    let empty = maps.view();
    file.set_len(100).unwrap();
    assert_eq!(maps.remap(&file).unwrap().len(), 100);
    file.allocate(0, 1 << 20).unwrap();
    assert_eq!(maps.remap(&file).unwrap().len(), 1 << 20);
    assert!(empty.is_empty());
}

//! Readers verify self-checking values while a writer and repeated hot and
//! cold compactions run: no torn, stale or double-merged read is ever seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::common::{check, open, value};

const PUT_KEYS: u64 = 200;
/// Keys that get merges: operand n is the byte n, so a value must read 0, 1, 2, ...
const MERGE_KEYS: u64 = 8;

fn check_merged(key: u64, bytes: &[u8]) -> usize {
    for (i, b) in bytes.iter().enumerate() {
        assert_eq!(
            *b, i as u8,
            "merge key {key}: operand {i} missing, repeated or out of order"
        );
    }
    bytes.len()
}

#[test]
fn readers_never_see_torn_stale_or_double_merged_values_during_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silo = open(dir.path());
    for k in 0..PUT_KEYS {
        silo.put(k, &value(k, 0, 40)).expect("seed");
    }
    silo.compact().expect("first compaction");
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let compactions = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for version in 1..=40_000u64 {
                let k = version % PUT_KEYS;
                // Sizes vary so some updates fit in place and some move.
                let len = 24 + (version % 7) as usize * 16;
                silo.put(k, &value(k, version, len)).expect("put");
                let j = version - 1;
                if j / MERGE_KEYS < 250 {
                    silo.merge(PUT_KEYS + j % MERGE_KEYS, &[(j / MERGE_KEYS) as u8])
                        .expect("merge");
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            let mut round = 0u64;
            while !done.load(Ordering::SeqCst) {
                if round % 5 == 4 {
                    silo.compact_cold().expect("cold compaction");
                } else {
                    silo.compact().expect("hot compaction");
                }
                round += 1;
                compactions.fetch_add(1, Ordering::Relaxed);
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                let mut seen: HashMap<u64, u64> = HashMap::new();
                let mut merged: HashMap<u64, usize> = HashMap::new();
                let mut i = 0u64;
                while !done.load(Ordering::SeqCst) {
                    i += 1;
                    let k = i.wrapping_mul(0x9e37_79b9) % PUT_KEYS;
                    let bytes = silo.get(k).expect("get").expect("a put key never vanishes");
                    let version =
                        check(k, &bytes).unwrap_or_else(|| panic!("torn value for key {k}"));
                    let last = seen.insert(k, version).unwrap_or(0);
                    assert!(
                        version >= last,
                        "key {k}: read version {version} after {last}"
                    );
                    let m = PUT_KEYS + i % MERGE_KEYS;
                    if let Some(bytes) = silo.get(m).expect("get merged") {
                        let len = check_merged(m, &bytes);
                        let last = merged.insert(m, len).unwrap_or(0);
                        assert!(len >= last, "merge key {m} shrank from {last} to {len}");
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert!(reads.load(Ordering::Relaxed) > 0 && compactions.load(Ordering::Relaxed) > 0);
    silo.compact().expect("final compaction");
    for m in PUT_KEYS..PUT_KEYS + MERGE_KEYS {
        let bytes = silo.get(m).expect("get").expect("merged");
        assert_eq!(check_merged(m, &bytes), 250);
    }
}

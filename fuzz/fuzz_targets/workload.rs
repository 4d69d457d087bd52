//! Fuzz target: a workload turned from the input into operations on a store
//! (puts, deletes, merges, batches, hot and cold compactions, snapshots,
//! reopens), checked against a model after every read
//! and in full at the end.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use silo_core::{Append, Options, Silo, WriteBatch};

fn opts() -> Options {
    let mut o = Options::default().with_merge_operator(Append);
    o.auto_compact = false;
    o
}

type Model = BTreeMap<u64, Vec<u8>>;

fn check_all(silo: &Silo, model: &Model) {
    let found: Model = silo.iter().map(|r| r.expect("iter")).collect();
    assert_eq!(&found, model);
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut silo = Silo::open(dir.path(), opts()).expect("open");
    let mut model = Model::new();
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let mut ops = 0;
    while let (Some(code), Some(k)) = (next(), next()) {
        ops += 1;
        if ops > 400 {
            break;
        }
        // A small key space, with a few far keys.
        let key = if k >= 250 {
            u64::MAX - u64::from(k)
        } else {
            u64::from(k % 32)
        };
        let len = usize::from(next().unwrap_or(0)) * 3;
        let value = vec![code ^ k; len];
        match code % 11 {
            0..=2 => {
                silo.put(key, &value).expect("put");
                model.insert(key, value);
            }
            3 => {
                silo.delete(key).expect("delete");
                model.remove(&key);
            }
            4 => {
                let operand = &value[..len.min(7)];
                silo.merge(key, operand).expect("merge");
                model.entry(key).or_default().extend_from_slice(operand);
            }
            5 => {
                let mut b = WriteBatch::new();
                for i in 0..(k % 5) {
                    let kk = (key + u64::from(i) * 7) % 40;
                    if i % 2 == 0 {
                        b.put(kk, &value);
                        model.insert(kk, value.clone());
                    } else {
                        b.delete(kk);
                        model.remove(&kk);
                    }
                }
                silo.write(&b).expect("batch");
            }
            6 => assert_eq!(
                silo.get(key).expect("get").as_ref(),
                model.get(&key),
                "key {key}"
            ),
            7 => {
                if k % 4 == 0 {
                    silo.compact_cold().expect("cold compaction");
                } else {
                    silo.compact().expect("compaction");
                }
            }
            8 => {
                // A snapshot keeps its view while writes go on.
                let before = model.clone();
                let snap = silo.snapshot().expect("snapshot");
                silo.put(key, b"after the snapshot").expect("put");
                model.insert(key, b"after the snapshot".to_vec());
                assert_eq!(
                    snap.get(key).expect("snapshot get").as_ref(),
                    before.get(&key)
                );
                let seen: Model = snap.iter().map(|r| r.expect("snapshot iter")).collect();
                assert_eq!(seen, before);
            }
            9 => {
                // Reopen, closed explicitly or by drop.
                if k % 2 == 0 {
                    silo.close().expect("close");
                } else {
                    silo.flush().expect("flush");
                    drop(silo);
                }
                silo = Silo::open(dir.path(), opts()).expect("reopen");
            }
            _ => check_all(&silo, &model),
        }
    }
    check_all(&silo, &model);
});

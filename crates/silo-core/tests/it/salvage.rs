//! `salvage`: what a store holds, read back from its files alone. On a
//! healthy store it is exactly what reads return (merge operands over
//! their base, deletes, batches); damage in the data file or a log costs
//! only the entries in the damaged stretch, each stretch reported with its
//! file and offset; the files are never changed.

use std::collections::BTreeMap;

use silo_core::{Options, Silo, WriteBatch, salvage};

use crate::common::{file_starting, opts};

fn fold(s: &silo_core::SalvagedKey) -> Option<Vec<u8>> {
    if s.value.is_none() && s.merges.is_empty() {
        return None;
    }
    let mut v = s.value.clone().unwrap_or_default();
    for m in &s.merges {
        v.extend_from_slice(m);
    }
    Some(v)
}

#[test]
fn a_healthy_store_salvages_to_exactly_what_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        compact_on_close: false,
        ..opts()
    };
    let silo = Silo::open(dir.path(), o).unwrap();
    for k in 0..200u64 {
        silo.put(k, format!("v{k}").as_bytes()).unwrap();
    }
    silo.compact().unwrap();
    for k in 0..50u64 {
        silo.merge(k, b"+m").unwrap();
    }
    silo.delete(60).unwrap();
    let mut b = WriteBatch::new();
    b.put(70, b"batched").merge(71, b"+b").delete(72);
    silo.write(&b).unwrap();
    silo.put(500, b"new").unwrap();
    let want: BTreeMap<u64, Vec<u8>> = (0..600u64)
        .filter_map(|k| silo.get(k).unwrap().map(|v| (k, v)))
        .collect();
    silo.close().unwrap();
    let s = salvage(dir.path()).unwrap();
    assert!(s.damage.is_empty(), "{:?}", s.damage);
    let got: BTreeMap<u64, Vec<u8>> = s
        .keys
        .iter()
        .filter_map(|(k, v)| fold(v).map(|v| (*k, v)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(s.records, 200);
}

#[test]
fn damage_costs_only_the_damaged_stretch_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        compact_on_close: false,
        ..opts()
    };
    let silo = Silo::open(dir.path(), o).unwrap();
    for k in 0..100u64 {
        silo.put(k, &[b'a'; 40]).unwrap();
    }
    silo.compact().unwrap();
    for k in 100..200u64 {
        silo.put(k, &[b'b'; 40]).unwrap();
    }
    silo.close().unwrap();
    let data = file_starting(dir.path(), "data-");
    let log = ["log-0", "log-1"]
        .iter()
        .map(|n| dir.path().join(n))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    // One byte inside a record in the middle of the data file, one inside
    // a frame in the middle of the log.
    for (file, at) in [(&data, 64 + 50 * 84 + 40), (&log, 64 + 50 * 57 + 20)] {
        let mut bytes = std::fs::read(file).unwrap();
        bytes[at] ^= 0x5A;
        std::fs::write(file, bytes).unwrap();
    }
    let before: Vec<Vec<u8>> = [&data, &log]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let s = salvage(dir.path()).unwrap();
    let after: Vec<Vec<u8>> = [&data, &log]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "salvage changed a file");
    let files: Vec<_> = s.damage.iter().map(|d| d.file.clone()).collect();
    assert!(
        files.contains(&data) && files.contains(&log),
        "{:?}",
        s.damage
    );
    let present = |range: std::ops::Range<u64>| {
        range
            .filter(|k| s.keys.get(k).and_then(fold).is_some())
            .count()
    };
    // At most one record and one frame are lost.
    assert!(present(0..100) >= 99, "{}", present(0..100));
    assert!(present(100..200) >= 99, "{}", present(100..200));
}

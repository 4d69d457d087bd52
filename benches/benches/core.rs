//! Criterion microbenches of silo-core at 100-byte values: get hit, get miss, buffered put, merge.
//!
//! Run with `cargo bench -p silo-benches --bench core -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::Criterion;
use silo_core::{MergeOperator, Options, Silo, WriteBatch};

/// Keys loaded before the benches run.
const KEYS: u64 = 100_000;
/// Bytes of every value.
const VALUE_LEN: usize = 100;

/// Values are 100 bytes whose first 8 are a little-endian counter; operands are increments.
struct AddToHead;

impl MergeOperator for AddToHead {
    fn merge(
        &self,
        _key: u64,
        existing: Option<&[u8]>,
        operands: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let read = |b: &[u8]| {
            b.get(..8)
                .and_then(|h| <[u8; 8]>::try_from(h).ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| "shorter than 8 bytes".to_owned())
        };
        let mut sum = existing.map(read).transpose()?.unwrap_or(0);
        for op in operands {
            sum = sum.wrapping_add(read(op)?);
        }
        out.extend_from_slice(&sum.to_le_bytes());
        out.extend_from_slice(
            existing
                .and_then(|e| e.get(8..))
                .unwrap_or(&[0; VALUE_LEN - 8]),
        );
        Ok(())
    }
}

/// A well-mixed key for index `i` (splitmix64 finaliser).
fn key(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn loaded() -> (tempfile::TempDir, Silo) {
    let dir = tempfile::Builder::new()
        .prefix("silo-core-bench-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let silo = Silo::open(
        dir.path(),
        Options::default().with_merge_operator(AddToHead),
    )
    .expect("open");
    let mut b = WriteBatch::new();
    for i in 0..KEYS {
        b.put(key(i), &[7u8; VALUE_LEN]);
        if b.len() == 10_000 {
            silo.write(&b).expect("write");
            b.clear();
        }
    }
    silo.write(&b).expect("write");
    silo.compact().expect("compact");
    (dir, silo)
}

fn benches(c: &mut Criterion) {
    let (_dir, silo) = loaded();
    let mut g = c.benchmark_group("silo-core");
    g.sample_size(20);

    let mut i = 0u64;
    g.bench_function("get hit (compacted)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(silo.get_with(key(i), |v| v.map(<[u8]>::len)).expect("get"))
        });
    });
    let mut m = 0u64;
    g.bench_function("get miss", |b| {
        b.iter(|| {
            m += 1;
            black_box(silo.get_with(key(KEYS + m), |v| v.is_some()).expect("get"))
        });
    });
    let value = [9u8; VALUE_LEN];
    let mut p = 0u64;
    g.bench_function("put buffered (overwrite)", |b| {
        b.iter(|| {
            p = (p + 1) % KEYS;
            silo.put(key(p), black_box(&value)).expect("put");
        });
    });
    let one = 1u64.to_le_bytes();
    let mut q = 0u64;
    g.bench_function("merge (8-byte operand)", |b| {
        b.iter(|| {
            q = (q + 1) % KEYS;
            silo.merge(key(q), black_box(&one)).expect("merge");
        });
    });
    let mut r = 0u64;
    g.bench_function("get hit (pending merge folded)", |b| {
        b.iter(|| {
            r = (r + 1) % 1000;
            black_box(silo.get_with(key(r), |v| v.map(<[u8]>::len)).expect("get"))
        });
    });
    g.finish();
}

fn main() {
    // What criterion_group!/criterion_main! expand to, without the undocumented items.
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}

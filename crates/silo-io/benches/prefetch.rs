//! First touch of every page of a cold 256 MiB mapped file, with and without
//! `MapAdvice::WillNeed` first. The file's page cache is dropped between runs
//! with `FileAdvice::DontNeed` (the file is synced, so every page is clean).
//!
//! Pages are touched in file order (kernel read-ahead already helps) and in
//! a fixed random order (what index lookups do; read-ahead cannot guess it).
//!
//! Prints a one-shot summary (time and major faults for each case) before
//! the criterion runs.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use silo_io::{FaultCounts, FileAdvice, MapAdvice, ReadMap, SiloFile, page_size, process_faults};

const LEN: u64 = 256 << 20;

fn cold_file() -> (tempfile::TempDir, SiloFile) {
    let dir = tempfile::tempdir_in("/tmp").expect("temp dir");
    let file = SiloFile::create_new(&dir.path().join("prefetch.bench")).expect("create");
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| i.to_le_bytes()[1]).collect();
    let mut at = 0;
    while at < LEN {
        file.write_all_at(&chunk, at).expect("write");
        at += chunk.len() as u64;
    }
    file.sync_all().expect("sync");
    (dir, file)
}

/// Drops the file's pages from the page cache (they are clean after the sync).
fn drop_cache(file: &SiloFile) {
    file.sync_data().expect("sync");
    file.advise(0, 0, FileAdvice::DontNeed).expect("fadvise");
}

/// Page offsets in file order, or shuffled by a fixed xorshift sequence.
fn page_order(random: bool) -> Vec<usize> {
    let pages = usize::try_from(LEN).expect("fits") / page_size();
    let mut order: Vec<usize> = (0..pages).map(|p| p * page_size()).collect();
    if random {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, usize::try_from(x % (i as u64 + 1)).expect("fits"));
        }
    }
    order
}

/// Maps the cold file, optionally advises WillNeed, touches one byte per
/// page in `order`. Returns the touch time (advice included) and the faults.
fn touch(file: &SiloFile, will_need: bool, order: &[usize]) -> (Duration, FaultCounts) {
    drop_cache(file);
    let map = ReadMap::new(file).expect("map");
    let bytes = map.as_slice();
    let before = process_faults().expect("faults");
    let start = Instant::now();
    if will_need {
        map.advise(0, map.len(), MapAdvice::WillNeed)
            .expect("madvise");
    }
    let mut sum = 0u64;
    for &at in order {
        sum = sum.wrapping_add(u64::from(bytes[at]));
    }
    std::hint::black_box(sum);
    let elapsed = start.elapsed();
    (elapsed, process_faults().expect("faults").since(before))
}

fn summary(file: &SiloFile, random: bool) {
    let order = page_order(random);
    println!(
        "prefetch summary: first touch of 256 MiB ({} pages) in {} order, cold cache, best of 3",
        order.len(),
        if random { "random" } else { "file" }
    );
    let mut results = Vec::new();
    for will_need in [false, true] {
        let mut best = (Duration::MAX, FaultCounts::default());
        for _ in 0..3 {
            let run = touch(file, will_need, &order);
            if run.0 < best.0 {
                best = run;
            }
        }
        println!(
            "  {}: {:.1} ms, {} major faults, {} minor faults",
            if will_need {
                "WillNeed first"
            } else {
                "no advice    "
            },
            best.0.as_secs_f64() * 1e3,
            best.1.major,
            best.1.minor
        );
        results.push(best.0);
    }
    println!(
        "  speed-up with WillNeed: {:.2}x",
        results[0].as_secs_f64() / results[1].as_secs_f64()
    );
    // Prefetch issued ahead of the reads (as compaction does between
    // classifying and reading): advice, a 1 s head start, then the timed touch.
    drop_cache(file);
    let map = ReadMap::new(file).expect("map");
    map.advise(0, map.len(), MapAdvice::WillNeed)
        .expect("madvise");
    std::thread::sleep(Duration::from_secs(1));
    let bytes = map.as_slice();
    let before = process_faults().expect("faults");
    let start = Instant::now();
    let mut sum = 0u64;
    for &at in &order {
        sum = sum.wrapping_add(u64::from(bytes[at]));
    }
    std::hint::black_box(sum);
    let (t, f) = (
        start.elapsed(),
        process_faults().expect("faults").since(before),
    );
    println!(
        "  WillNeed 1 s ahead: touch {:.1} ms, {} major faults, {} minor faults ({:.1}x vs no advice)",
        t.as_secs_f64() * 1e3,
        f.major,
        f.minor,
        results[0].as_secs_f64() / t.as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    let (_dir, file) = cold_file();
    for random in [false, true] {
        summary(&file, random);
    }
    let mut group = c.benchmark_group("first_touch_256MiB");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(LEN));
    for (random, will_need) in [(false, false), (false, true), (true, false), (true, true)] {
        let order = page_order(random);
        let name = match (random, will_need) {
            (false, false) => "file_order/no_advice",
            (false, true) => "file_order/will_need",
            (true, false) => "random_order/no_advice",
            (true, true) => "random_order/will_need",
        };
        group.bench_with_input(
            BenchmarkId::from_parameter(name),
            &will_need,
            |b, &will_need| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut majors = 0;
                    for _ in 0..iters {
                        let (t, f) = touch(&file, will_need, &order);
                        total += t;
                        majors += f.major;
                    }
                    eprintln!(
                        "  [{name}] {iters} runs, {:.0} major faults per run",
                        majors as f64 / iters as f64
                    );
                    total
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

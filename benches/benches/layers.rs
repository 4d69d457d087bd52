//! The bitmap and document layers (issue 9), ratios in one run:
//! - single-bit `set`/`clear` through the bitmap layer vs rewriting the
//!   whole bitmap for each change (read, change, `put_bitmap`);
//! - top-k (descending, limit 100) through sort layers vs reading the
//!   score of every filtered document and keeping the best 100, over
//!   N = 1M matches; the answers are checked equal.
//!
//! `cargo bench -p silo-benches --bench layers`; `SILO_BENCH_DOCS` (default
//! 1 000 000) sets N.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::time::{Duration, Instant};

use roaring::RoaringBitmap;
use silo_engine::{BitmapStore, DocStore, EngineOptions, Order};
use silo_format::Value;

use silo_benches::Rng;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn opts() -> EngineOptions {
    EngineOptions {
        shards: Some(8),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    }
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort_unstable();
    d[d.len() / 2]
}

/// Single-bit changes against whole-bitmap rewrites, on bitmaps of about
/// n / 16 documents each.
fn single_bits(root: &Path, n: u32) -> Res<()> {
    let store = BitmapStore::open(root.join("bits"), opts())?;
    let color = store.field("color")?;
    let bulk = store.bulk();
    {
        let mut part = bulk.part();
        for doc in 0..n {
            part.add(color, u64::from(doc % 16), doc)?;
        }
    }
    bulk.finish()?;
    store.engine().compact()?;
    let changes = 20_000usize;
    let mut rng = Rng(0xB17);
    let picks: Vec<(u64, u32, bool)> = (0..changes)
        .map(|_| {
            let r = rng.next_u64();
            (
                r % 16,
                u32::try_from((r >> 8) % u64::from(n)).unwrap_or(0),
                (r >> 40) & 1 == 1,
            )
        })
        .collect();
    let t = Instant::now();
    for (value, doc, on) in &picks {
        if *on {
            store.set(color, *value, *doc)?;
        } else {
            store.clear(color, *value, *doc)?;
        }
    }
    let bits = t.elapsed();
    let rewrites = changes / 10;
    let t = Instant::now();
    for (value, doc, on) in &picks[..rewrites] {
        let mut b = store.get(color, *value)?;
        if *on {
            b.insert(*doc);
        } else {
            b.remove(*doc);
        }
        store.put_bitmap(color, *value, &b)?;
    }
    let whole = t.elapsed();
    let bit_rate = changes as f64 / bits.as_secs_f64();
    let whole_rate = rewrites as f64 / whole.as_secs_f64();
    println!(
        "single-bit set/clear: {:.0}k/s; whole-bitmap rewrite ({} bits a bitmap): {:.1}k/s; ratio {:.0}x",
        bit_rate / 1e3,
        n / 16,
        whole_rate / 1e3,
        bit_rate / whole_rate
    );
    store.close()?;
    Ok(())
}

/// Top 100 by score over every document: sort layers vs scoring documents.
fn top_k(root: &Path, n: u32) -> Res<()> {
    let mut rng = Rng(0x70_9C);
    let scores: Vec<u64> = (0..n).map(|_| rng.next_u64() % 1_000_000).collect();
    let store = BitmapStore::open(root.join("sort"), opts())?;
    let score = store.sort_field("score")?;
    let t = Instant::now();
    let bulk = store.bulk();
    {
        let mut part = bulk.part();
        for (doc, s) in (0..n).zip(&scores) {
            part.add_sort_value(score, doc, *s);
        }
    }
    bulk.finish()?;
    store.engine().compact()?;
    let built = t.elapsed();
    let docs = DocStore::open(root.join("docs"), opts())?;
    let t = Instant::now();
    for (doc, s) in (0..n).zip(&scores) {
        docs.put(
            doc,
            &[
                ("score", Value::U64(*s)),
                ("title", Value::Str(format!("doc {doc}"))),
            ],
        )?;
    }
    docs.engine().compact()?;
    let loaded = t.elapsed();
    let filter: RoaringBitmap = (0..n).collect();
    let limit = 100;
    let mut layer_times = Vec::new();
    let mut scan_times = Vec::new();
    let mut answers = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let page = store.top_k(score, &filter, Order::Descending, limit, None)?;
        layer_times.push(t.elapsed());
        answers.0 = page.hits;
        let t = Instant::now();
        let mut heap: BinaryHeap<Reverse<(u64, Reverse<u32>)>> =
            BinaryHeap::with_capacity(limit + 1);
        for doc in &filter {
            let Some(fields) = docs.get_fields(doc, &["score"])? else {
                continue;
            };
            let Some(Value::U64(s)) = fields[0] else {
                continue;
            };
            heap.push(Reverse((s, Reverse(doc))));
            if heap.len() > limit {
                heap.pop();
            }
        }
        let mut best: Vec<(u32, u64)> = heap
            .into_iter()
            .map(|Reverse((s, Reverse(d)))| (d, s))
            .collect();
        best.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        scan_times.push(t.elapsed());
        answers.1 = best;
    }
    assert_eq!(answers.0, answers.1, "sort layers and the scan disagree");
    let (layer, scan) = (median(layer_times), median(scan_times));
    println!(
        "top-{limit} of {n} matches: sort layers {layer:.2?}, scoring documents {scan:.2?} (medians of 5): {:.1}x (goal >= 5x); bulk build of the layers {built:.2?}, document load {loaded:.2?}",
        scan.as_secs_f64() / layer.as_secs_f64()
    );
    store.close()?;
    docs.close()?;
    Ok(())
}

fn main() -> Res<()> {
    let n: u32 = std::env::var("SILO_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = tempfile::tempdir()?;
    single_bits(root.path(), n)?;
    top_k(root.path(), n)?;
    Ok(())
}

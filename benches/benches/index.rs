//! The index (issue 9) on the synthetic catalogue, silo alone (the SQLite
//! and tantivy columns are not built yet):
//! - bulk import of N documents from JSON lines (2 writer threads), then
//!   a compaction, documents per second;
//! - a query mix (`And` of two or three `Eq`/`In` over tags and fields, a
//!   `Range`, `NotEq`, each sorted descending with limit 100; a count; a
//!   facet): median and p99 latency per kind;
//! - upserts that change documents with their bitmaps kept consistent:
//!   single upserts and batches of 1000, 1 and 2 threads.
//!
//! `cargo bench -p silo-benches --bench index`; `SILO_BENCH_DOCS` (default
//! 1 000 000) sets N.

use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use silo_engine::catalog::Catalog;
use silo_engine::{EngineOptions, Filter, Index, Order, Query};
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

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

fn pick(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// One query of each kind, parameters drawn from the catalogue's
/// distributions (popular tags and brands, so results are not empty).
fn mix(rng: &mut Rng) -> Vec<(&'static str, Query)> {
    let cat = format!("category-{:02}", pick(rng, 20));
    let tag = Value::I64(i64::try_from(pick(rng, 50)).unwrap_or(0));
    let brand = format!("brand-{:05}", pick(rng, 100));
    let colors = ["black", "white", "red", "blue", "green", "yellow"];
    let c1 = colors[usize::try_from(pick(rng, 6)).unwrap_or(0)];
    let c2 = colors[usize::try_from(pick(rng, 6)).unwrap_or(0)];
    vec![
        (
            "category and tag, by popularity",
            Query::new(
                Filter::And(vec![
                    Filter::Eq("category".into(), s(&cat)),
                    Filter::Eq("tags".into(), tag.clone()),
                ]),
                100,
            )
            .sorted_by("popularity", Order::Descending),
        ),
        (
            "two colours, in stock, tag, by price",
            Query::new(
                Filter::And(vec![
                    Filter::In("color".into(), vec![s(c1), s(c2)]),
                    Filter::Eq("in_stock".into(), Value::Bool(true)),
                    Filter::Eq("tags".into(), tag),
                ]),
                100,
            )
            .sorted_by("price", Order::Descending),
        ),
        (
            "category and price range, by date",
            Query::new(
                Filter::And(vec![
                    Filter::Eq("category".into(), s(&cat)),
                    Filter::Range {
                        field: "price".into(),
                        lo: Bound::Included(Value::F64(10.0)),
                        hi: Bound::Excluded(Value::F64(100.0)),
                    },
                ]),
                100,
            )
            .sorted_by("created", Order::Descending),
        ),
        (
            "brand, not black, by rating",
            Query::new(
                Filter::And(vec![
                    Filter::Eq("brand".into(), s(&brand)),
                    Filter::NotEq("color".into(), s("black")),
                ]),
                100,
            )
            .sorted_by("rating", Order::Descending),
        ),
    ]
}

fn percentile(mut d: Vec<Duration>, p: usize) -> Duration {
    d.sort_unstable();
    d[(d.len() * p / 100).min(d.len() - 1)]
}

fn main() -> Res<()> {
    let n: u32 = std::env::var("SILO_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = tempfile::tempdir()?;
    let cat = Catalog::new(2026);
    let input = root.path().join("catalog.jsonl");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input)?);
        for id in 0..n {
            writeln!(out, "{}", cat.json_line(id))?;
        }
    }
    let index = Index::open(root.path().join("index"), cat.schema(), opts())?;
    let t = Instant::now();
    let report = index.import_json_lines(&input, 2)?;
    let imported = t.elapsed();
    let t = Instant::now();
    index.engine().compact()?;
    let compacted = t.elapsed();
    let total = imported + compacted;
    println!(
        "import of {n} documents from JSON lines: {imported:.2?} ({} batches) + compaction {compacted:.2?} = {:.0} documents/s; disk {:.0} bytes a document",
        report.batches,
        f64::from(n) / total.as_secs_f64(),
        disk(&root.path().join("index"))? as f64 / f64::from(n)
    );

    let mut rng = Rng(0x9E7);
    let mut by_kind: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut counts = Vec::new();
    let mut facets = Vec::new();
    let mut all = Vec::new();
    for _ in 0..100 {
        for (kind, q) in mix(&mut rng) {
            let t = Instant::now();
            let hits = index.query(&q)?.hits.len();
            let d = t.elapsed();
            assert!(hits <= 100);
            all.push(d);
            match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, v)) => v.push(d),
                None => by_kind.push((kind, vec![d])),
            }
        }
        let cat_filter = Filter::Eq(
            "category".into(),
            s(&format!("category-{:02}", pick(&mut rng, 20))),
        );
        let t = Instant::now();
        index.count(&Filter::And(vec![
            cat_filter.clone(),
            Filter::Eq("in_stock".into(), Value::Bool(true)),
        ]))?;
        counts.push(t.elapsed());
        let t = Instant::now();
        index.facets("color", &cat_filter)?;
        facets.push(t.elapsed());
    }
    for (kind, d) in by_kind {
        println!(
            "  {kind}: median {:.2?}, p99 {:.2?}",
            percentile(d.clone(), 50),
            percentile(d, 99)
        );
    }
    println!(
        "  count: median {:.2?}, p99 {:.2?}",
        percentile(counts.clone(), 50),
        percentile(counts, 99)
    );
    println!(
        "  facet (colour): median {:.2?}, p99 {:.2?}",
        percentile(facets.clone(), 50),
        percentile(facets, 99)
    );
    println!(
        "  sorted queries together: median {:.2?}, p99 {:.2?}",
        percentile(all.clone(), 50),
        percentile(all, 99)
    );

    // Upserts of changed documents (another catalogue's fields), bitmaps
    // and sort layers kept consistent.
    let changed = Catalog::new(7);
    for threads in [1u32, 2] {
        let per = 1000 / threads;
        let t = Instant::now();
        std::thread::scope(|sc| {
            for w in 0..threads {
                let index = &index;
                let changed = &changed;
                sc.spawn(move || {
                    for i in 0..per {
                        let id = (w * per + i) * 97 % n;
                        index.upsert(id, &changed.document(id)).expect("upsert");
                    }
                });
            }
        });
        let single = f64::from(per * threads) / t.elapsed().as_secs_f64();
        let per_batch = 1000u32;
        let batches = 10 / threads;
        let t = Instant::now();
        std::thread::scope(|sc| {
            for w in 0..threads {
                let index = &index;
                let changed = &changed;
                sc.spawn(move || {
                    for b in 0..batches {
                        let docs: Vec<(u32, Vec<(&str, Value)>)> = (0..per_batch)
                            .map(|i| {
                                let id = ((w * batches + b) * per_batch + i) * 31 % n;
                                (id, changed.document(id))
                            })
                            .collect::<std::collections::BTreeMap<_, _>>()
                            .into_iter()
                            .collect();
                        index.upsert_many(&docs).expect("upsert_many");
                    }
                });
            }
        });
        let batched = f64::from(per_batch * batches * threads) / t.elapsed().as_secs_f64();
        println!(
            "upserts, {threads} thread(s): single {:.0}/s, batches of {per_batch} {:.0} documents/s",
            single, batched
        );
    }
    index.close()?;
    Ok(())
}

/// Bytes allocated by the files under `dir`.
fn disk(dir: &Path) -> Res<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

//! `silo demo`: silo's main job, end to end, on a synthetic catalogue.
//!
//! 1. generate the catalogue as JSON lines (silo-engine's `catalog`);
//! 2. import it into an index over the sharded engine;
//! 3. stream upserts and deletes while the background scheduler compacts;
//! 4. ask filter-and-sort queries (written in `silo query`'s syntax), a
//!    count and a facet, timing each;
//! 5. close, reopen, ask again: the answers must be the same;
//! 6. report throughputs, latencies, bytes on disk per document,
//!    compactions and major faults.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use silo_engine::catalog::Catalog;
use silo_engine::{EngineOptions, Filter, ImportOptions, Index, Order, Query, SchedulerOptions};
use silo_format::Value;

use crate::admin::figures;
use crate::fail::{Fail, Outcome};
use crate::progress::Step;
use crate::store::{self, Store};

/// The catalogue's seed, and the seed of the changed documents.
const SEED: u64 = 2026;
const CHANGED_SEED: u64 = 7;
/// Times each query is asked for its latencies.
const REPEATS: usize = 30;
/// Documents per upsert batch while streaming changes.
const BATCH: u32 = 1000;

/// The demo's questions: a name, a filter, a sort field and whether it
/// is descending.
const QUERIES: [(&str, &str, &str, bool); 5] = [
    (
        "category and tag, by popularity",
        "category = category-03 and tags = 1",
        "popularity",
        true,
    ),
    (
        "two colours in stock with a tag, by price",
        "color in (red, blue) and in_stock = true and tags = 2",
        "price",
        false,
    ),
    (
        "category and price range, by date",
        "category = category-07 and price >= 100 and price < 500",
        "created",
        true,
    ),
    (
        "brand, not black, by rating",
        "brand = brand-00001 and color != black",
        "rating",
        true,
    ),
    (
        "well rated, out of stock, by popularity",
        "rating >= 40 and not in_stock = true",
        "popularity",
        true,
    ),
];
const COUNT: &str = "tags in (1, 2, 3) or category = category-11";
const FACET: (&str, &str) = ("color", "category = category-05");

/// What the questions answered.
#[derive(Debug, PartialEq)]
struct Answers {
    pages: Vec<Vec<u32>>,
    count: u64,
    facet: Vec<(Value, u64)>,
}

pub(crate) fn run(dir: Option<PathBuf>, docs: u32, keep: bool) -> Outcome {
    if docs == 0 {
        return Err(Fail::input("--docs must be at least 1"));
    }
    let dir = match dir {
        Some(d) => {
            let busy = d.exists()
                && std::fs::read_dir(&d)
                    .map_err(|e| Fail::input(format!("{}: {e}", d.display())))?
                    .next()
                    .is_some();
            if busy {
                return Err(Fail::input(format!(
                    "{} is not empty; the demo works in a new or empty directory",
                    d.display()
                )));
            }
            d
        }
        None => std::env::temp_dir().join(format!(
            "silo-demo-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        )),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Fail::system(format!("creating {}: {e}", dir.display())))?;
    let result = run_in(&dir, docs);
    if keep {
        println!(
            "kept {}: `silo stats {}` shows the index",
            dir.display(),
            dir.join("index").display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run_in(dir: &Path, docs: u32) -> Outcome {
    let faults_at_start = silo_io::faults::process_faults().ok();
    let cat = Catalog::new(SEED);
    let input = dir.join("catalog.jsonl");
    let store_dir = dir.join("index");
    println!(
        "silo demo: {docs} catalogue documents, index in {}",
        store_dir.display()
    );

    // 1. The catalogue.
    let step = Step::start("generate", Some(u64::from(docs)));
    generate(&cat, docs, &input, &step)?;
    let bytes = std::fs::metadata(&input).map_or(0, |m| m.len());
    step.finish(&format!("{docs} documents, {bytes} bytes of JSON lines"));

    // 2. Import. The background scheduler compacts, with thresholds for a
    // store of this size (the defaults wait for 256 MiB of log per shard).
    let mut opts = EngineOptions::default();
    opts.store.auto_compact = false;
    opts.store.thresholds.log_bytes = 16 << 20;
    opts.store.thresholds.min_interval = Duration::from_secs(1);
    let index = store::open_index_with(&store_dir, cat.schema(), opts)?;
    let background = index
        .engine()
        .start_background(SchedulerOptions::default())
        .map_err(|e| Fail::engine(&store_dir, e))?;
    let step = Step::start("import", None);
    let t = Instant::now();
    let report = index
        .import_json_lines_with(&input, ImportOptions::threads(2))
        .map_err(|e| Fail::engine(&store_dir, e))?;
    let import_rate = f64::from(docs) / t.elapsed().as_secs_f64();
    step.finish(&format!(
        "{} documents in {} atomic batches: {import_rate:.0} documents/s",
        report.documents, report.batches
    ));

    // 3. Changes while the scheduler compacts.
    let rounds = docs.div_ceil(10).div_ceil(BATCH);
    let step = Step::start("changes", Some(u64::from(rounds)));
    let changed = Catalog::new(CHANGED_SEED);
    let t = Instant::now();
    let (mut upserts, mut deletes) = (0u64, 0u64);
    for round in 0..rounds {
        let batch: Vec<(u32, Vec<(&str, Value)>)> = (0..BATCH)
            .map(|i| spread(round, BATCH, i, 7, docs))
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .map(|id| (id, changed.document(id)))
            .collect();
        upserts += batch.len() as u64;
        index
            .upsert_many(&batch)
            .map_err(|e| Fail::engine(&store_dir, e))?;
        let gone: Vec<u32> = (0..BATCH / 5)
            .map(|i| spread(round, BATCH / 5, i, 13, docs))
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect();
        deletes += gone.len() as u64;
        index
            .delete_many(&gone)
            .map_err(|e| Fail::engine(&store_dir, e))?;
        step.advance(1);
    }
    let change_rate = (upserts + deletes) as f64 / t.elapsed().as_secs_f64();
    step.finish(&format!(
        "{upserts} documents upserted and {deletes} deleted in batches: {change_rate:.0} changes/s"
    ));
    let scheduler = background.stats();
    background.stop();
    if let Some(e) = scheduler.last_error {
        return Err(Fail::store(format!(
            "{}: background compaction failed: {e}",
            store_dir.display()
        )));
    }

    // 4. Questions.
    let step = Step::start("queries", Some(REPEATS as u64));
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); QUERIES.len() + 2];
    let mut answers = None;
    for _ in 0..REPEATS {
        answers = Some(ask(&index, &store_dir, Some(&mut times))?);
        step.advance(1);
    }
    let answers = answers.ok_or_else(|| Fail::problem("no query was asked"))?;
    step.finish(&format!(
        "{} questions asked {REPEATS} times each",
        QUERIES.len() + 2
    ));
    index.close().map_err(|e| Fail::engine(&store_dir, e))?;

    // 5. Reopen and ask again.
    let step = Step::start("reopen", None);
    let store = store::open_existing(&store_dir)?;
    let Store::Index(index) = &store else {
        return Err(Fail::problem("the reopened store is not an index"));
    };
    let again = ask(index, &store_dir, None)?;
    if again != answers {
        return Err(Fail::problem(format!(
            "after reopening, the answers changed:\nbefore {answers:?}\nafter  {again:?}"
        )));
    }
    let f = figures(&store, &store_dir)?;
    store.close(&store_dir)?;
    step.finish("reopened: every answer is unchanged");

    // 6. The report.
    let faults = match (faults_at_start, silo_io::faults::process_faults().ok()) {
        (Some(a), Some(b)) => b.since(a).major.to_string(),
        _ => "unknown".to_owned(),
    };
    let documents = f.documents.unwrap_or(0);
    println!();
    println!("report");
    println!("  import:            {import_rate:.0} documents/s");
    println!("  changes:           {change_rate:.0} upserts and deletes/s");
    println!("  query latency (median / p99 over {REPEATS}):");
    let names = QUERIES
        .iter()
        .map(|(name, ..)| *name)
        .chain(["count", "facet (colour)"]);
    for (name, t) in names.zip(&mut times) {
        t.sort_unstable();
        println!(
            "    {name:<42} {:>10.2?} / {:>10.2?}",
            percentile(t, 50),
            percentile(t, 99)
        );
    }
    println!("  documents:         {documents}");
    println!("  disk bytes:        {}", f.disk_bytes);
    println!(
        "  bytes per document: {:.0}",
        f.disk_bytes as f64 / documents.max(1) as f64
    );
    println!(
        "  compactions:       {} by the background scheduler ({} bytes written)",
        scheduler.compactions, scheduler.bytes_written
    );
    println!("  major faults:      {faults}");
    Ok(())
}

/// Document `(round * per + i) * step % docs`, computed without overflow:
/// the `i`-th document of a round's batch, spread over the catalogue.
fn spread(round: u32, per: u32, i: u32, step: u64, docs: u32) -> u32 {
    let n = (u64::from(round) * u64::from(per) + u64::from(i)) * step % u64::from(docs);
    u32::try_from(n).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Asks every question once, adding the times to `times` if given.
fn ask(index: &Index, dir: &Path, mut times: Option<&mut Vec<Vec<Duration>>>) -> Outcome<Answers> {
    let schema = index.schema();
    let parse = |text: &str| Filter::parse(text, schema).map_err(|e| Fail::engine(dir, e));
    let mut timed = |slot: usize, t: Instant| {
        if let Some(times) = times.as_deref_mut() {
            times[slot].push(t.elapsed());
        }
    };
    let mut pages = Vec::with_capacity(QUERIES.len());
    for (slot, (_, filter, sort, desc)) in QUERIES.iter().enumerate() {
        let order = if *desc {
            Order::Descending
        } else {
            Order::Ascending
        };
        let t = Instant::now();
        let q = Query::new(parse(filter)?, 100).sorted_by(sort, order);
        let hits = index.query(&q).map_err(|e| Fail::engine(dir, e))?.hits;
        timed(slot, t);
        pages.push(hits.iter().map(|h| h.doc).collect());
    }
    let t = Instant::now();
    let count = index
        .count(&parse(COUNT)?)
        .map_err(|e| Fail::engine(dir, e))?;
    timed(QUERIES.len(), t);
    let t = Instant::now();
    let facet = index
        .facets(FACET.0, &parse(FACET.1)?)
        .map_err(|e| Fail::engine(dir, e))?;
    timed(QUERIES.len() + 1, t);
    Ok(Answers {
        pages,
        count,
        facet,
    })
}

/// Writes documents `0..docs` of `cat` to `path` as JSON lines, two
/// threads formatting alternate blocks.
fn generate(cat: &Catalog, docs: u32, path: &Path, step: &Step) -> Outcome {
    const BLOCK: u32 = 50_000;
    let file = silo_io::SiloFile::create(path)
        .map_err(|e| Fail::system(format!("{}: {e}", path.display())))?;
    let mut out = std::io::BufWriter::new(file.as_std());
    let write_err = |e: std::io::Error| Fail::system(format!("{}: {e}", path.display()));
    let block = |start: u32| -> String {
        let end = start.saturating_add(BLOCK).min(docs);
        let mut text = String::new();
        for id in start..end {
            text.push_str(&cat.json_line(id));
            text.push('\n');
        }
        text
    };
    let mut start = 0u32;
    while start < docs {
        let next = start.saturating_add(BLOCK);
        let (a, b) = std::thread::scope(|s| {
            let second = s.spawn(|| (next < docs).then(|| block(next)));
            (block(start), second.join())
        });
        let b = b.map_err(|_| Fail::system("a generator thread panicked"))?;
        out.write_all(a.as_bytes()).map_err(write_err)?;
        step.advance(u64::from(next.min(docs) - start));
        if let Some(b) = b {
            out.write_all(b.as_bytes()).map_err(write_err)?;
            step.advance(u64::from(next.saturating_add(BLOCK).min(docs) - next));
        }
        start = next.saturating_add(BLOCK);
    }
    out.flush().map_err(write_err)?;
    drop(out);
    file.sync_data()
        .map_err(|e| Fail::system(format!("{}: {e}", path.display())))
}

//! The index (issue 9) on the synthetic catalogue, against SQLite
//! (rusqlite, bundled, WAL, indexes on the filter and sort columns, a tags
//! join table) and tantivy (raw-string and indexed numeric filter fields,
//! fast sort fields, one index writer), all loading the same JSON lines:
//! - bulk import of N documents from JSON lines (silo: 2 writer threads,
//!   then a compaction; the peers as their docs advise), time;
//! - a query mix (`And` of two or three `Eq`/`In` over tags and fields, a
//!   `Range`, `NotEq`, each sorted descending with limit 100; a count; a
//!   facet) asked of all three with the same parameters, answers checked
//!   equal: median and p99 latency per kind and over the mix;
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
    let sampler = RssSampler::start();
    let t = Instant::now();
    let report = index.import_json_lines(&input, 2)?;
    let imported = t.elapsed();
    let t = Instant::now();
    index.engine().compact()?;
    let compacted = t.elapsed();
    let total = imported + compacted;
    let silo_rss = sampler.stop();
    println!(
        "import of {n} documents from JSON lines: {imported:.2?} ({} batches) + compaction {compacted:.2?} = {:.0} documents/s; disk {:.0} bytes a document",
        report.batches,
        f64::from(n) / total.as_secs_f64(),
        disk(&root.path().join("index"))? as f64 / f64::from(n)
    );

    // The peers load the same JSON lines.
    let sampler = RssSampler::start();
    let t = Instant::now();
    let conn = sqlite::load(root.path(), &input)?;
    let sqlite_load = t.elapsed();
    let sqlite_rss = sampler.stop();
    let sampler = RssSampler::start();
    let t = Instant::now();
    let tv = tv::load(root.path(), &input)?;
    let tantivy_load = t.elapsed();
    let tantivy_rss = sampler.stop();
    println!(
        "  import: silo {:.1?}, SQLite {sqlite_load:.1?} ({:.2}x silo's time), tantivy {tantivy_load:.1?} ({:.2}x)",
        total,
        sqlite_load.as_secs_f64() / total.as_secs_f64(),
        tantivy_load.as_secs_f64() / total.as_secs_f64()
    );

    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    println!(
        "  peak resident memory growth during the import, anonymous (heap) + file-backed (mapped files): silo {:.0} + {:.0} MiB, SQLite {:.0} + {:.0} MiB, tantivy {:.0} + {:.0} MiB",
        mib(silo_rss.0),
        mib(silo_rss.1),
        mib(sqlite_rss.0),
        mib(sqlite_rss.1),
        mib(tantivy_rss.0),
        mib(tantivy_rss.1)
    );
    println!(
        "  bytes on disk a document: silo {:.0}, SQLite {:.0}, tantivy {:.0}",
        disk(&root.path().join("index"))? as f64 / f64::from(n),
        ["", "-wal", "-shm"]
            .iter()
            .map(|ext| allocated(&root.path().join(format!("catalog.sqlite{ext}"))))
            .sum::<u64>() as f64
            / f64::from(n),
        disk(&root.path().join("tantivy"))? as f64 / f64::from(n)
    );

    // The query mix: the same questions to all three, answers checked.
    let mut rng = Rng(0x9E7);
    let all: Vec<Params> = (0..100).map(|_| params(&mut rng)).collect();
    let mut times: Vec<[Vec<Duration>; 3]> = (0..KINDS.len()).map(|_| Default::default()).collect();
    for p in &all {
        for (kind, slot) in times.iter_mut().enumerate() {
            let t = Instant::now();
            let a = silo_answer(&index, kind, p)?;
            slot[0].push(t.elapsed());
            let t = Instant::now();
            let b = sqlite::answer(&conn, kind, p)?;
            slot[1].push(t.elapsed());
            let t = Instant::now();
            let c = tv::answer(&tv, kind, p)?;
            slot[2].push(t.elapsed());
            assert!(
                same(&a, &b),
                "{}: silo and SQLite disagree for {p:?}:\n{a:?}\n{b:?}",
                KINDS[kind]
            );
            assert!(
                same(&a, &c),
                "{}: silo and tantivy disagree for {p:?}:\n{a:?}\n{c:?}",
                KINDS[kind]
            );
        }
    }
    println!(
        "  query mix ({} of each, answers checked equal), median / p99:",
        all.len()
    );
    // The results page's rows: silo against the faster peer.
    let mut advantages: Vec<(String, &str, f64)> = Vec::new();
    let against_best = |name: String, silo: f64, sqlite: f64, tantivy: f64| {
        let (peer, best) = if sqlite <= tantivy {
            ("SQLite", sqlite)
        } else {
            ("tantivy", tantivy)
        };
        (name, peer, best / silo.max(1e-12))
    };
    advantages.push(against_best(
        format!("index: import of {n} documents from JSON lines"),
        total.as_secs_f64(),
        sqlite_load.as_secs_f64(),
        tantivy_load.as_secs_f64(),
    ));
    let mut merged: [Vec<Duration>; 3] = Default::default();
    for (kind, slot) in times.into_iter().enumerate() {
        let m: Vec<Duration> = slot.iter().map(|d| percentile(d.clone(), 50)).collect();
        advantages.push(against_best(
            format!("index: {} (median)", KINDS[kind]),
            m[0].as_secs_f64(),
            m[1].as_secs_f64(),
            m[2].as_secs_f64(),
        ));
        let q: Vec<Duration> = slot.iter().map(|d| percentile(d.clone(), 99)).collect();
        println!(
            "    {}: silo {:.2?} / {:.2?}; SQLite {:.2?} / {:.2?} ({:.1}x); tantivy {:.2?} / {:.2?} ({:.1}x)",
            KINDS[kind],
            m[0],
            q[0],
            m[1],
            q[1],
            m[1].as_secs_f64() / m[0].as_secs_f64(),
            m[2],
            q[2],
            m[2].as_secs_f64() / m[0].as_secs_f64()
        );
        for (all, d) in merged.iter_mut().zip(slot) {
            all.extend(d);
        }
    }
    let m: Vec<Duration> = merged.iter().map(|d| percentile(d.clone(), 50)).collect();
    let q: Vec<Duration> = merged.iter().map(|d| percentile(d.clone(), 99)).collect();
    println!(
        "    whole mix: silo {:.2?} / {:.2?}; SQLite {:.2?} / {:.2?}: median {:.1}x (goal >= 10x); tantivy {:.2?} / {:.2?}: median {:.1}x (goal >= 2x)",
        m[0],
        q[0],
        m[1],
        q[1],
        m[1].as_secs_f64() / m[0].as_secs_f64(),
        m[2],
        q[2],
        m[2].as_secs_f64() / m[0].as_secs_f64()
    );
    advantages.push(against_best(
        "index: the whole query mix (median)".to_owned(),
        m[0].as_secs_f64(),
        m[1].as_secs_f64(),
        m[2].as_secs_f64(),
    ));
    silo_benches::write_advantages("index", &advantages)?;
    drop(conn);
    drop(tv);

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

/// A `/proc/self/status` line's kB value, in bytes (0 if unreadable).
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .unwrap_or(0)
        * 1024
}

/// Samples the process's anonymous and file-backed resident memory every
/// 20 ms while it runs; `stop` gives how far each peaked above its level
/// at the start.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
    base: (u64, u64),
}

impl RssSampler {
    fn sample() -> (u64, u64) {
        (status_bytes("RssAnon:"), status_bytes("RssFile:"))
    }

    fn start() -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let base = Self::sample();
        let handle = std::thread::spawn(move || {
            let mut peak = base;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Self::sample();
                peak = (peak.0.max(now.0), peak.1.max(now.1));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        RssSampler { stop, handle, base }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let now = Self::sample();
        let peak = self.handle.join().unwrap_or(now);
        let peak = (peak.0.max(now.0), peak.1.max(now.1));
        (
            peak.0.saturating_sub(self.base.0),
            peak.1.saturating_sub(self.base.1),
        )
    }
}

/// Bytes allocated by the file at `path` (0 if there is none).
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
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

/// One parsed catalogue line, for the peers (the same JSON parse as silo's).
struct Row {
    id: u32,
    category: String,
    brand: String,
    color: String,
    price: f64,
    rating: u64,
    created: i64,
    in_stock: bool,
    tags: Vec<i64>,
    popularity: u64,
    title: String,
}

fn parse_row(line: &str) -> Res<Row> {
    let j: serde_json::Value = serde_json::from_str(line)?;
    let text = |k: &str| j[k].as_str().unwrap_or_default().to_owned();
    Ok(Row {
        id: u32::try_from(j["id"].as_u64().unwrap_or(0))?,
        category: text("category"),
        brand: text("brand"),
        color: text("color"),
        price: j["price"].as_f64().unwrap_or(0.0),
        rating: j["rating"].as_u64().unwrap_or(0),
        created: j["created"].as_i64().unwrap_or(0),
        in_stock: j["in_stock"].as_bool().unwrap_or(false),
        tags: j["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
            .unwrap_or_default(),
        popularity: j["popularity"].as_u64().unwrap_or(0),
        title: text("title"),
    })
}

fn lines(path: &Path) -> Res<impl Iterator<Item = std::io::Result<String>>> {
    use std::io::BufRead;
    Ok(std::io::BufReader::new(std::fs::File::open(path)?).lines())
}

/// The query mix's parameters, so every engine answers the same questions.
#[derive(Clone, Debug)]
struct Params {
    category: String,
    tag: i64,
    brand: String,
    c1: &'static str,
    c2: &'static str,
}

/// A query's answer: documents in order with their sort values (as `f64`,
/// exact for these fields' ranges), or a count, or facet counts.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Hits(Vec<(u32, f64)>),
    Count(u64),
    Facets(Vec<(String, u64)>),
}

/// Sorted hits agree if their values agree in order and the documents
/// strictly before the last value agree (ties at the limit may be broken
/// differently: SQLite and silo by id, tantivy by its own document order).
fn same(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (Answer::Hits(x), Answer::Hits(y)) => {
            if x.len() != y.len() || x.iter().zip(y).any(|(p, q)| p.1 != q.1) {
                return false;
            }
            let Some(last) = x.last().map(|h| h.1) else {
                return true;
            };
            let strict = |h: &[(u32, f64)]| -> std::collections::BTreeSet<u32> {
                h.iter()
                    .filter(|(_, v)| *v != last)
                    .map(|(d, _)| *d)
                    .collect()
            };
            strict(x) == strict(y)
        }
        (Answer::Facets(x), Answer::Facets(y)) => {
            let mut x = x.clone();
            let mut y = y.clone();
            x.sort();
            y.sort();
            x == y
        }
        _ => a == b,
    }
}

const KINDS: [&str; 6] = [
    "category and tag, by popularity",
    "two colours, in stock, tag, by price",
    "category and price range, by date",
    "brand, not black, by rating",
    "count",
    "facet (colour)",
];

fn params(rng: &mut Rng) -> Params {
    let colors = ["black", "white", "red", "blue", "green", "yellow"];
    Params {
        category: format!("category-{:02}", pick(rng, 20)),
        tag: i64::try_from(pick(rng, 50)).unwrap_or(0),
        brand: format!("brand-{:05}", pick(rng, 100)),
        c1: colors[usize::try_from(pick(rng, 6)).unwrap_or(0)],
        c2: colors[usize::try_from(pick(rng, 6)).unwrap_or(0)],
    }
}

/// silo's answer to query `kind` of `p`.
fn silo_answer(index: &Index, kind: usize, p: &Params) -> Res<Answer> {
    let cat = Filter::Eq("category".into(), s(&p.category));
    let tag = Filter::Eq("tags".into(), Value::I64(p.tag));
    let (filter, sort) = match kind {
        0 => (Filter::And(vec![cat, tag]), "popularity"),
        1 => (
            Filter::And(vec![
                Filter::In("color".into(), vec![s(p.c1), s(p.c2)]),
                Filter::Eq("in_stock".into(), Value::Bool(true)),
                tag,
            ]),
            "price",
        ),
        2 => (
            Filter::And(vec![
                cat,
                Filter::Range {
                    field: "price".into(),
                    lo: Bound::Included(Value::F64(10.0)),
                    hi: Bound::Excluded(Value::F64(100.0)),
                },
            ]),
            "created",
        ),
        3 => (
            Filter::And(vec![
                Filter::Eq("brand".into(), s(&p.brand)),
                Filter::NotEq("color".into(), s("black")),
            ]),
            "rating",
        ),
        4 => {
            let f = Filter::And(vec![cat, Filter::Eq("in_stock".into(), Value::Bool(true))]);
            return Ok(Answer::Count(index.count(&f)?));
        }
        _ => {
            let facets = index.facets("color", &cat)?;
            return Ok(Answer::Facets(
                facets
                    .into_iter()
                    .map(|(v, n)| {
                        (
                            match v {
                                Value::Str(s) => s,
                                other => format!("{other:?}"),
                            },
                            n,
                        )
                    })
                    .collect(),
            ));
        }
    };
    let q = Query::new(filter, 100)
        .sorted_by(sort, Order::Descending)
        .with_fields(&[sort]);
    let hits = index
        .query(&q)?
        .hits
        .into_iter()
        .map(|h| {
            let v = match h.fields.first().cloned().flatten() {
                Some(Value::U64(v)) => v as f64,
                Some(Value::I64(v)) => v as f64,
                Some(Value::F64(v)) => v,
                _ => f64::NAN,
            };
            (h.doc, v)
        })
        .collect();
    Ok(Answer::Hits(hits))
}

mod sqlite {
    use super::*;
    use rusqlite::{Connection, params};

    /// Loads the JSON lines into SQLite with its best bulk settings: WAL,
    /// `synchronous=NORMAL`, one transaction, indexes built after the load,
    /// then `ANALYZE`.
    pub(super) fn load(dir: &Path, input: &Path) -> Res<Connection> {
        let conn = Connection::open(dir.join("catalog.sqlite"))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-262144;
             PRAGMA temp_store=MEMORY;
             CREATE TABLE docs(id INTEGER PRIMARY KEY, category TEXT, brand TEXT, color TEXT,
               price REAL, rating INTEGER, created INTEGER, in_stock INTEGER,
               popularity INTEGER, title TEXT);
             CREATE TABLE tags(tag INTEGER, doc INTEGER);",
        )?;
        let tx = conn.unchecked_transaction()?;
        {
            let mut doc =
                tx.prepare("INSERT OR REPLACE INTO docs VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)")?;
            let mut tag = tx.prepare("INSERT INTO tags VALUES (?1, ?2)")?;
            for line in lines(input)? {
                let r = parse_row(&line?)?;
                doc.execute(params![
                    r.id,
                    r.category,
                    r.brand,
                    r.color,
                    r.price,
                    r.rating as i64,
                    r.created,
                    r.in_stock,
                    r.popularity as i64,
                    r.title
                ])?;
                for t in &r.tags {
                    tag.execute(params![t, r.id])?;
                }
            }
        }
        tx.commit()?;
        conn.execute_batch(
            "CREATE INDEX docs_category ON docs(category);
             CREATE INDEX docs_brand ON docs(brand);
             CREATE INDEX docs_color ON docs(color);
             CREATE INDEX docs_rating ON docs(rating);
             CREATE INDEX docs_in_stock ON docs(in_stock);
             CREATE INDEX docs_price ON docs(price);
             CREATE INDEX docs_created ON docs(created);
             CREATE INDEX docs_popularity ON docs(popularity);
             CREATE INDEX tags_tag ON tags(tag, doc);
             ANALYZE;",
        )?;
        Ok(conn)
    }

    pub(super) fn answer(conn: &Connection, kind: usize, p: &Params) -> Res<Answer> {
        let hits = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Res<Answer> {
            let mut st = conn.prepare_cached(sql)?;
            let rows = st.query_map(args, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, v) = row?;
                out.push((u32::try_from(id)?, v));
            }
            Ok(Answer::Hits(out))
        };
        match kind {
            0 => hits(
                "SELECT d.id, d.popularity FROM docs d JOIN tags t ON t.doc = d.id
                 WHERE d.category = ?1 AND t.tag = ?2 ORDER BY d.popularity DESC, d.id LIMIT 100",
                &[&p.category, &p.tag],
            ),
            1 => hits(
                "SELECT d.id, d.price FROM docs d JOIN tags t ON t.doc = d.id
                 WHERE d.color IN (?1, ?2) AND d.in_stock = 1 AND t.tag = ?3
                 ORDER BY d.price DESC, d.id LIMIT 100",
                &[&p.c1, &p.c2, &p.tag],
            ),
            2 => hits(
                "SELECT id, created FROM docs WHERE category = ?1 AND price >= 10.0 AND price < 100.0
                 ORDER BY created DESC, id LIMIT 100",
                &[&p.category],
            ),
            3 => hits(
                "SELECT id, rating FROM docs WHERE brand = ?1 AND color <> 'black'
                 ORDER BY rating DESC, id LIMIT 100",
                &[&p.brand],
            ),
            4 => {
                let n: i64 = conn.prepare_cached("SELECT COUNT(*) FROM docs WHERE category = ?1 AND in_stock = 1")?
                    .query_row([&p.category], |r| r.get(0))?;
                Ok(Answer::Count(u64::try_from(n)?))
            }
            _ => {
                let mut st = conn.prepare_cached("SELECT color, COUNT(*) FROM docs WHERE category = ?1 GROUP BY color")?;
                let rows = st.query_map([&p.category], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                let mut out = Vec::new();
                for row in rows {
                    let (c, n) = row?;
                    out.push((c, u64::try_from(n)?));
                }
                Ok(Answer::Facets(out))
            }
        }
    }
}

mod tv {
    use super::*;
    use tantivy::collector::{Count, FacetCollector, TopDocs};
    use tantivy::query::{BooleanQuery, Occur, Query as TQuery, RangeQuery, TermQuery};
    use tantivy::schema::{
        FAST, Facet, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING,
        Schema as TSchema,
    };
    use tantivy::{DocAddress, Index as TIndex, IndexReader, IndexWriter, TantivyDocument, Term};

    pub(super) struct Tv {
        pub(super) reader: IndexReader,
        f: Fields,
    }

    struct Fields {
        category: Field,
        brand: Field,
        color: Field,
        price: Field,
        in_stock: Field,
        tags: Field,
    }

    /// Builds a tantivy index of the JSON lines: filter fields as raw
    /// strings and indexed numbers, sort fields as fast fields, one index
    /// writer (2 threads, 1 GiB budget), one commit, merges waited for.
    pub(super) fn load(dir: &Path, input: &Path) -> Res<Tv> {
        let mut sb = TSchema::builder();
        let id = sb.add_u64_field("id", INDEXED | FAST);
        let category = sb.add_text_field("category", STRING);
        let brand = sb.add_text_field("brand", STRING);
        let color = sb.add_text_field("color", STRING);
        let color_facet = sb.add_facet_field("color_facet", FacetOptions::default());
        let price = sb.add_f64_field("price", INDEXED | FAST);
        let rating = sb.add_u64_field("rating", INDEXED | FAST);
        let created = sb.add_i64_field("created", INDEXED | FAST);
        let in_stock = sb.add_bool_field("in_stock", INDEXED);
        let tags = sb.add_i64_field("tags", INDEXED);
        let popularity = sb.add_u64_field("popularity", FAST);
        let title = sb.add_text_field("title", STORED);
        let path = dir.join("tantivy");
        std::fs::create_dir_all(&path)?;
        let index = TIndex::create_in_dir(&path, sb.build())?;
        let mut writer: IndexWriter = index.writer_with_num_threads(2, 1 << 30)?;
        for line in lines(input)? {
            let r = parse_row(&line?)?;
            let mut d = TantivyDocument::default();
            d.add_u64(id, u64::from(r.id));
            d.add_text(category, &r.category);
            d.add_text(brand, &r.brand);
            d.add_text(color, &r.color);
            d.add_facet(color_facet, Facet::from(format!("/{}", r.color).as_str()));
            d.add_f64(price, r.price);
            d.add_u64(rating, r.rating);
            d.add_i64(created, r.created);
            d.add_bool(in_stock, r.in_stock);
            for t in &r.tags {
                d.add_i64(tags, *t);
            }
            d.add_u64(popularity, r.popularity);
            d.add_text(title, &r.title);
            writer.add_document(d)?;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        let reader = index.reader()?;
        reader.reload()?;
        Ok(Tv {
            reader,
            f: Fields {
                category,
                brand,
                color,
                price,
                in_stock,
                tags,
            },
        })
    }

    fn term(field: Field, text: &str) -> Box<dyn TQuery> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, text),
            IndexRecordOption::Basic,
        ))
    }

    pub(super) fn answer(tv: &Tv, kind: usize, p: &Params) -> Res<Answer> {
        let f = &tv.f;
        let searcher = tv.reader.searcher();
        let tag = || -> Box<dyn TQuery> {
            Box::new(TermQuery::new(
                Term::from_field_i64(f.tags, p.tag),
                IndexRecordOption::Basic,
            ))
        };
        let must = |qs: Vec<Box<dyn TQuery>>| -> BooleanQuery {
            BooleanQuery::new(qs.into_iter().map(|q| (Occur::Must, q)).collect())
        };
        let ids = |addrs: &[DocAddress]| -> Res<Vec<u32>> {
            addrs
                .iter()
                .map(|a| {
                    let col = searcher
                        .segment_reader(a.segment_ord)
                        .fast_fields()
                        .u64("id")?;
                    Ok(u32::try_from(col.first(a.doc_id).unwrap_or(u64::MAX))?)
                })
                .collect()
        };
        macro_rules! top {
            ($q:expr, $field:expr, $ty:ty) => {{
                let found: Vec<($ty, DocAddress)> = searcher.search(
                    &$q,
                    &TopDocs::with_limit(100)
                        .order_by_fast_field::<$ty>($field, tantivy::Order::Desc),
                )?;
                let addrs: Vec<DocAddress> = found.iter().map(|(_, a)| *a).collect();
                let ids = ids(&addrs)?;
                Ok(Answer::Hits(
                    ids.into_iter()
                        .zip(found.iter().map(|(v, _)| *v as f64))
                        .collect(),
                ))
            }};
        }
        match kind {
            0 => top!(
                must(vec![term(f.category, &p.category), tag()]),
                "popularity",
                u64
            ),
            1 => {
                let colors = BooleanQuery::new(vec![
                    (Occur::Should, term(f.color, p.c1)),
                    (Occur::Should, term(f.color, p.c2)),
                ]);
                let stock: Box<dyn TQuery> = Box::new(TermQuery::new(
                    Term::from_field_bool(f.in_stock, true),
                    IndexRecordOption::Basic,
                ));
                top!(must(vec![Box::new(colors), stock, tag()]), "price", f64)
            }
            2 => {
                let range: Box<dyn TQuery> = Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_f64(f.price, 10.0)),
                    Bound::Excluded(Term::from_field_f64(f.price, 100.0)),
                ));
                top!(
                    must(vec![term(f.category, &p.category), range]),
                    "created",
                    i64
                )
            }
            3 => {
                let q = BooleanQuery::new(vec![
                    (Occur::Must, term(f.brand, &p.brand)),
                    (Occur::MustNot, term(f.color, "black")),
                ]);
                top!(q, "rating", u64)
            }
            4 => {
                let stock: Box<dyn TQuery> = Box::new(TermQuery::new(
                    Term::from_field_bool(f.in_stock, true),
                    IndexRecordOption::Basic,
                ));
                let n =
                    searcher.search(&must(vec![term(f.category, &p.category), stock]), &Count)?;
                Ok(Answer::Count(n as u64))
            }
            _ => {
                let mut collector = FacetCollector::for_field("color_facet");
                collector.add_facet("/");
                let counts =
                    searcher.search(&must(vec![term(f.category, &p.category)]), &collector)?;
                Ok(Answer::Facets(
                    counts
                        .get("/")
                        .map(|(facet, n)| {
                            (
                                facet
                                    .to_path()
                                    .last()
                                    .map(|s| (*s).to_owned())
                                    .unwrap_or_default(),
                                n,
                            )
                        })
                        .collect(),
                ))
            }
        }
    }
}

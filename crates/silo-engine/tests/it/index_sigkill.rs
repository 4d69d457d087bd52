//! Crash test of the index: a child process upserts, patches and deletes
//! documents and imports small JSON lines files (with compactions of its
//! own beside each shard's worker) and reports every acknowledged change;
//! the parent kills it with SIGKILL after a random number of
//! acknowledgements, reopens the index and checks that it holds the
//! acknowledged documents (or those plus the change in flight; an import
//! in flight, written in several chunks, may have left each of its
//! documents before or after) and that every filter bitmap, sort layer and
//! the alive bitmap agree exactly with the documents found.
//!
//! `SILO_CRASH_ITERATIONS` sets the number of kills (default 6;
//! `cargo xtask crash --layer index` runs 200).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use silo_core::Durability;
use silo_engine::{
    EngineOptions, FieldSpec, FieldType, Filter, Index, Order, Query, Schema, sort_key_i64,
};
use silo_format::Value;

use crate::common::{json_line, kill_child_after, merge_field};

const CHILD_DIR: &str = "SILO_INDEX_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "SILO_INDEX_CRASH_CHILD_SEED";
const ACK: &str = "SILO-ACK ";
const DOCS: u64 = 40;
const COLORS: [&str; 3] = ["red", "blue", "green"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn schema() -> Schema {
    Schema::new(vec![
        FieldSpec::filter("color", FieldType::Str),
        FieldSpec {
            sort: true,
            ..FieldSpec::filter("rank", FieldType::I64)
        },
        FieldSpec::filter("tags", FieldType::Tags),
    ])
}

fn opts() -> EngineOptions {
    let mut o = EngineOptions {
        shards: Some(4),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    };
    o.store.durability = Durability::Sync;
    o.store.auto_compact = true;
    o.store.thresholds.pending_ops = 32;
    o.store.thresholds.min_interval = std::time::Duration::ZERO;
    o
}

#[derive(Clone, Debug)]
enum Op {
    Upsert(u32, Vec<(&'static str, Value)>),
    Patch(u32, Vec<(&'static str, Value)>),
    Delete(u32),
    /// JSON lines imported in chunks of a few lines (an id may repeat).
    Import(Vec<(u32, Vec<(&'static str, Value)>)>),
    Compact,
}

fn workload(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    (0..count)
        .map(|_| {
            let doc = u32::try_from(rng.below(DOCS)).unwrap_or(0);
            let color = Value::Str(COLORS[usize::try_from(rng.below(3)).unwrap_or(0)].into());
            let rank = Value::I64(i64::try_from(rng.below(9)).unwrap_or(0) - 4);
            let tags = Value::I64List {
                items: (0..rng.below(3))
                    .map(|_| i64::try_from(rng.below(5)).unwrap_or(0))
                    .collect(),
                reset: rng.below(2) == 0,
            };
            match rng.below(100) {
                0..=39 => Op::Upsert(doc, vec![("color", color), ("rank", rank), ("tags", tags)]),
                40..=44 => Op::Import(
                    (0..1 + rng.below(6))
                        .map(|_| {
                            let doc = u32::try_from(rng.below(DOCS)).unwrap_or(0);
                            let rank = Value::I64(i64::try_from(rng.below(9)).unwrap_or(0) - 4);
                            let tags = Value::I64List {
                                items: (0..rng.below(3))
                                    .map(|_| i64::try_from(rng.below(5)).unwrap_or(0))
                                    .collect(),
                                reset: false,
                            };
                            (doc, vec![("rank", rank), ("tags", tags)])
                        })
                        .collect(),
                ),
                45..=79 => Op::Patch(
                    doc,
                    match rng.below(3) {
                        0 => vec![("rank", rank)],
                        1 => vec![("tags", tags), ("color", Value::Deleted)],
                        _ => vec![("color", color)],
                    },
                ),
                80..=96 => Op::Delete(doc),
                _ => Op::Compact,
            }
        })
        .collect()
}

type Doc = BTreeMap<String, Value>;

fn apply(model: &mut BTreeMap<u32, Doc>, op: &Op) {
    match op {
        Op::Upsert(d, fields) => {
            let mut doc = Doc::new();
            for (name, v) in fields {
                merge_field(&mut doc, (*name).to_owned(), v);
            }
            model.insert(*d, doc);
        }
        Op::Patch(d, fields) => {
            let doc = model.entry(*d).or_default();
            for (name, v) in fields {
                merge_field(doc, (*name).to_owned(), v);
            }
        }
        Op::Delete(d) => {
            model.remove(d);
        }
        Op::Import(docs) => {
            for (d, fields) in docs {
                apply(model, &Op::Upsert(*d, fields.clone()));
            }
        }
        Op::Compact => {}
    }
}

fn run_op(index: &Index, op: &Op, scratch: &Path) {
    match op {
        Op::Import(docs) => {
            let text: String = docs.iter().map(|(d, f)| json_line(*d, f) + "\n").collect();
            std::fs::write(scratch, text).expect("import file");
            // One writer and chunks of about two lines: several batches,
            // in file order.
            let opts = silo_engine::ImportOptions::threads(1).chunk_bytes(60);
            index.import_json_lines_with(scratch, opts).expect("import");
        }
        Op::Upsert(d, fields) => index.upsert(*d, fields).expect("upsert"),
        Op::Patch(d, fields) => index.patch(*d, fields).expect("patch"),
        Op::Delete(d) => index.delete(*d).expect("delete"),
        Op::Compact => {
            index.engine().compact().expect("compact");
        }
    }
}

/// Not a test by itself: the body of the child process the crash test
/// spawns (it does nothing unless the parent set its environment).
#[test]
fn crash_child_process() {
    let (Ok(dir), Ok(seed)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().expect("seed");
    let index = Index::open(Path::new(&dir).join("index"), schema(), opts()).expect("child open");
    let scratch = Path::new(&dir).join("import.jsonl");
    let mut out = std::io::stdout().lock();
    for (i, op) in workload(seed, 100_000).iter().enumerate() {
        run_op(&index, op, &scratch);
        writeln!(out, "{ACK}{i}").expect("stdout");
        out.flush().expect("stdout");
    }
}

/// Every bitmap and sort layer of `index` against the documents it holds.
fn check_consistent(index: &Index, docs: &BTreeMap<u32, Doc>, context: &str) {
    let ids = |f: Filter| -> Vec<u32> {
        index
            .query(&Query::new(f, 10_000))
            .expect("query")
            .hits
            .iter()
            .map(|h| h.doc)
            .collect()
    };
    let want = |pred: &dyn Fn(&Doc) -> bool| -> Vec<u32> {
        docs.iter()
            .filter(|(_, d)| pred(d))
            .map(|(id, _)| *id)
            .collect()
    };
    assert_eq!(ids(Filter::All), want(&|_| true), "{context}: alive");
    for c in COLORS {
        let v = Value::Str(c.into());
        assert_eq!(
            ids(Filter::Eq("color".into(), v.clone())),
            want(&|d| d.get("color") == Some(&v)),
            "{context}: color {c}"
        );
    }
    for r in -4..=4i64 {
        let v = Value::I64(r);
        assert_eq!(
            ids(Filter::Eq("rank".into(), v.clone())),
            want(&|d| d.get("rank") == Some(&v)),
            "{context}: rank {r}"
        );
    }
    for t in 0..5i64 {
        assert_eq!(
            ids(Filter::Eq("tags".into(), Value::I64(t))),
            want(
                &|d| matches!(d.get("tags"), Some(Value::I64List { items, .. }) if items.contains(&t))
            ),
            "{context}: tag {t}"
        );
    }
    let sorted: Vec<u32> = index
        .query(&Query::new(Filter::All, 10_000).sorted_by("rank", Order::Descending))
        .expect("sorted")
        .hits
        .iter()
        .map(|h| h.doc)
        .collect();
    let mut by_rank: Vec<(u32, u64)> = docs
        .iter()
        .filter_map(|(id, d)| match d.get("rank") {
            Some(Value::I64(r)) => Some((*id, sort_key_i64(*r))),
            _ => None,
        })
        .collect();
    by_rank.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(
        sorted,
        by_rank.into_iter().map(|(d, _)| d).collect::<Vec<_>>(),
        "{context}: sort layers"
    );
}

#[test]
fn sigkill_during_changes_leaves_documents_and_bitmaps_in_agreement() {
    let iterations: u64 = std::env::var("SILO_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut rng = Rng(0x1d3c_5eed ^ iterations);
    let mut checked = 0;
    let mut imports_cut = 0;
    for iteration in 0..iterations {
        let dir = tempfile::tempdir().expect("tempdir");
        let seed = rng.next();
        let kill_after = 1 + usize::try_from(rng.below(120)).unwrap_or(0);
        let acked = kill_child_after(
            "index_sigkill::crash_child_process",
            &[
                (CHILD_DIR, dir.path().to_string_lossy().into_owned()),
                (CHILD_SEED, seed.to_string()),
            ],
            ACK,
            kill_after,
        );
        let done = acked.map_or(0, |a| a + 1);
        let ops = workload(seed, done + 1);
        let mut before = BTreeMap::new();
        for op in &ops[..done] {
            apply(&mut before, op);
        }
        let mut after = before.clone();
        if let Some(op) = ops.get(done) {
            apply(&mut after, op);
        }
        let context = format!("iteration {iteration} (seed {seed}, {done} acknowledged)");
        let index = Index::open(dir.path().join("index"), schema(), opts())
            .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
        let found: BTreeMap<u32, Doc> = (0..u32::try_from(DOCS).unwrap_or(0))
            .filter_map(|d| index.get(d).expect("get").map(|doc| (d, doc)))
            .collect();
        if let Some(Op::Import(_)) = ops.get(done) {
            imports_cut += 1;
            // Chunk by chunk: each document as before or as after.
            for d in 0..u32::try_from(DOCS).unwrap_or(0) {
                let f = found.get(&d);
                assert!(
                    f == before.get(&d) || f == after.get(&d),
                    "{context}: document {d} is {f:?}, neither {:?} nor {:?}",
                    before.get(&d),
                    after.get(&d)
                );
            }
        } else {
            assert!(
                found == before || found == after,
                "{context}: neither the acknowledged documents nor them plus the change in flight ({:?})",
                ops.get(done)
            );
        }
        check_consistent(&index, &found, &context);
        checked += done;
    }
    println!(
        "index crash test: {iterations} kills ({imports_cut} during an import), {checked} acknowledged changes verified"
    );
}

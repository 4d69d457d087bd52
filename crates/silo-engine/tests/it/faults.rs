//! Fault injection through silo-io's seam into the engine: every write,
//! sync, rename, allocation, truncation, creation and removal of a workload
//! (shards, batch log, engine manifest, checkpoints) is failed in turn, and
//! every write torn; the failing call returns an error, a reopen holds every
//! acknowledged write (and perhaps the failed one, whole), and every
//! checkpoint that succeeded opens with exactly its contents.

use std::collections::BTreeMap;
use std::path::Path;

use silo_core::WriteBatch;
use silo_engine::Engine;
use silo_io::fault::{FaultAction, FaultOp, FaultPlan, install};

use crate::common::{contents, keys_on_distinct_shards, opts};

#[derive(Clone, Debug)]
enum Op {
    Put(u64, Vec<u8>),
    Merge(u64, Vec<u8>),
    Delete(u64),
    Batch(Vec<(u64, Vec<u8>)>),
    Compact,
    Cold,
    Flush,
    Checkpoint,
}

type Model = BTreeMap<u64, Vec<u8>>;

/// What each call of `op` is made to do in turn: fail, and for writes also
/// tear (70 bytes: past a file header, inside a record or frame).
fn actions(op: FaultOp) -> &'static [FaultAction] {
    if op == FaultOp::Write {
        &[FaultAction::Fail, FaultAction::Torn { keep: 70 }]
    } else {
        &[FaultAction::Fail]
    }
}

fn workload() -> Vec<Op> {
    let keys = keys_on_distinct_shards(2);
    let mut ops = Vec::new();
    for round in 0..2u8 {
        for k in 0..4u64 {
            let len = if k % 2 == 0 { 20 } else { 50 };
            ops.push(Op::Put(k, vec![b'a' + round; len]));
        }
        ops.push(Op::Merge(keys[1], vec![b'0' + round; 3]));
        ops.push(Op::Batch(
            keys.iter()
                .map(|k| (*k + 100, vec![b'b' + round; 40]))
                .collect(),
        ));
        ops.push(Op::Delete(u64::from(round)));
        ops.push(Op::Compact);
        ops.push(Op::Checkpoint);
        ops.push(Op::Flush);
        if round == 0 {
            ops.push(Op::Cold);
        }
    }
    ops
}

fn apply(model: &mut Model, op: &Op) {
    match op {
        Op::Put(k, v) => {
            model.insert(*k, v.clone());
        }
        Op::Merge(k, v) => model.entry(*k).or_default().extend_from_slice(v),
        Op::Delete(k) => {
            model.remove(k);
        }
        Op::Batch(puts) => {
            for (k, v) in puts {
                model.insert(*k, v.clone());
            }
        }
        _ => {}
    }
}

struct Outcome {
    acked: Model,
    maybe: Model,
    /// What the engine read right after the failure, before it was closed.
    live: Option<Result<Model, silo_engine::EngineError>>,
    /// What `verify` found in the live engine's files then.
    live_damage: Vec<String>,
    checkpoints: Vec<(std::path::PathBuf, Model)>,
    fired: u64,
    counts: Vec<(FaultOp, u64)>,
}

/// Runs the workload on `root/db` with `plan` installed over `root`.
fn run_with(root: &Path, plan: FaultPlan) -> Outcome {
    // Installed before the engine is created: creating its manifest and
    // shards is in the matrix.
    let guard = install(root, plan);
    let mut out = Outcome {
        acked: Model::new(),
        maybe: Model::new(),
        checkpoints: Vec::new(),
        fired: 0,
        counts: Vec::new(),
        live: None,
        live_damage: Vec::new(),
    };
    let Ok(db) = Engine::open(root.join("db"), opts(2)) else {
        out.fired = guard.fired();
        return out;
    };
    for (i, op) in workload().iter().enumerate() {
        let result = match op {
            Op::Put(k, v) => db.put(*k, v),
            Op::Merge(k, v) => db.merge(*k, v),
            Op::Delete(k) => db.delete(*k),
            Op::Batch(puts) => {
                let mut b = WriteBatch::new();
                for (k, v) in puts {
                    b.put(*k, v);
                }
                db.write(&b)
            }
            Op::Compact => db.compact().map(drop),
            Op::Cold => db
                .compact_with(silo_engine::CompactOptions {
                    cold: true,
                    ..Default::default()
                })
                .map(drop),
            Op::Flush => db.flush(),
            Op::Checkpoint => {
                let cp = root.join(format!("cp-{i}"));
                let r = db.checkpoint(&cp);
                if r.is_ok() {
                    out.checkpoints.push((cp, out.acked.clone()));
                }
                r
            }
        };
        out.maybe = out.acked.clone();
        apply(&mut out.maybe, op);
        match result {
            Ok(()) => out.acked = out.maybe.clone(),
            Err(_) => break,
        }
    }
    out.live = Some(db.iter().collect());
    if matches!(out.live, Some(Ok(_))) {
        // Every shard's files agree with what it reads.
        let reports = db.verify().expect("verify the live engine");
        out.live_damage = reports
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.problems
                    .iter()
                    .take(3)
                    .map(move |p| format!("shard {i}: {p:?}"))
            })
            .collect();
    }
    // Closing may fail too (a store refuses writes after a failure).
    drop(db);
    out.fired = guard.fired();
    out.counts = FaultOp::ALL
        .iter()
        .map(|op| (*op, guard.count(*op)))
        .collect();
    drop(guard);
    out
}

#[test]
fn every_failed_or_torn_call_leaves_an_engine_that_recovers_acknowledged_writes() {
    let probe = tempfile::tempdir().unwrap();
    let clean = run_with(probe.path(), FaultPlan::new());
    assert_eq!(clean.checkpoints.len(), 2, "both checkpoints ran");
    let mut cases = 0;
    for (op, n) in clean.counts {
        for nth in 1..=n {
            for action in actions(op) {
                let root = tempfile::tempdir().unwrap();
                let o = run_with(root.path(), FaultPlan::new().on(op, nth, *action));
                if o.fired == 0 {
                    continue;
                }
                let case = format!("{op:?} #{nth} {action:?}");
                // Before it closed, the engine read what was acknowledged,
                // perhaps with the failed call whole, or refused to read
                // part of a cross-shard batch.
                match &o.live {
                    None => {}
                    Some(Ok(live)) => assert!(
                        *live == o.acked || *live == o.maybe,
                        "{case}: after the failure the engine read neither the acknowledged writes nor them plus the failed one"
                    ),
                    Some(Err(silo_engine::EngineError::PartialBatch { .. })) => {}
                    Some(Err(e)) => panic!("{case}: reads after the failure: {e}"),
                }
                // A failed call wrote nothing, so the live files agree
                // with the reads (a torn in-place rewrite is real damage
                // until the reopen repairs it from the journal).
                assert!(
                    o.live_damage.is_empty() || matches!(action, FaultAction::Torn { .. }),
                    "{case}: verify after the failure: {:?}",
                    o.live_damage
                );
                let db = Engine::open(root.path().join("db"), opts(2))
                    .unwrap_or_else(|e| panic!("{case}: reopen failed: {e}"));
                let found = contents(&db);
                assert!(
                    found == o.acked || found == o.maybe,
                    "{case}: the engine holds neither the acknowledged writes nor them plus the failed one"
                );
                for (cp, expected) in &o.checkpoints {
                    let copy = Engine::open(cp, opts(2))
                        .unwrap_or_else(|e| panic!("{case}: checkpoint {cp:?} does not open: {e}"));
                    assert_eq!(&contents(&copy), expected, "{case}: checkpoint {cp:?}");
                }
                cases += 1;
            }
        }
    }
    println!("engine fault matrix: {cases} cases");
    assert!(cases > 20, "only {cases} fault cases ran");
}

/// An index operation of the fault matrix's index workload.
#[derive(Clone, Debug)]
enum IndexOp {
    Upsert(u32, &'static str, i64),
    UpsertMany(Vec<(u32, &'static str, i64)>),
    Delete(u32),
    DeleteMany(Vec<u32>),
    /// Imports a JSON lines file of these documents, in chunks of about two lines.
    Import(Vec<(u32, &'static str, i64)>),
    Compact,
}

/// Documents by id: (color, rank).
type Docs = BTreeMap<u32, (String, i64)>;

fn index_workload() -> Vec<IndexOp> {
    let colors = ["red", "blue", "green"];
    let mut ops = Vec::new();
    for round in 0..2i64 {
        for id in 0..4u32 {
            ops.push(IndexOp::Upsert(
                id,
                colors[id as usize % 3],
                round * 10 + i64::from(id),
            ));
        }
        ops.push(IndexOp::UpsertMany(
            (10..14u32)
                .map(|id| (id, colors[(id as usize + 1) % 3], -i64::from(id)))
                .collect(),
        ));
        ops.push(IndexOp::Delete(u32::try_from(round).unwrap_or(0)));
        ops.push(IndexOp::Import(
            (2..9u32)
                .map(|id| (id * 3, colors[(id as usize + 2) % 3], round + i64::from(id)))
                .collect(),
        ));
        ops.push(IndexOp::DeleteMany(vec![11, 12]));
        ops.push(IndexOp::Compact);
    }
    ops
}

fn apply_index(docs: &mut Docs, op: &IndexOp) {
    match op {
        IndexOp::Upsert(id, c, r) => {
            docs.insert(*id, ((*c).to_owned(), *r));
        }
        IndexOp::UpsertMany(list) | IndexOp::Import(list) => {
            for (id, c, r) in list {
                docs.insert(*id, ((*c).to_owned(), *r));
            }
        }
        IndexOp::Delete(id) => {
            docs.remove(id);
        }
        IndexOp::DeleteMany(ids) => {
            for id in ids {
                docs.remove(id);
            }
        }
        IndexOp::Compact => {}
    }
}

/// Two shards, no automatic compaction (the index installs its own operator).
fn index_opts() -> silo_engine::EngineOptions {
    let mut o = silo_engine::EngineOptions {
        shards: Some(2),
        ..silo_engine::EngineOptions::default()
    };
    o.store.auto_compact = false;
    o
}

fn index_schema() -> silo_engine::Schema {
    use silo_engine::{FieldSpec, FieldType, Schema};
    Schema::new(vec![
        FieldSpec::filter("color", FieldType::Str),
        FieldSpec::sort("rank", FieldType::I64),
    ])
}

fn run_index_op(index: &silo_engine::Index, op: &IndexOp, input: &Path) -> silo_engine::Result<()> {
    use silo_format::Value;
    let fields =
        |c: &'static str, r: i64| vec![("color", Value::Str(c.into())), ("rank", Value::I64(r))];
    match op {
        IndexOp::Upsert(id, c, r) => index.upsert(*id, &fields(c, *r)),
        IndexOp::UpsertMany(list) => {
            let docs: Vec<(u32, Vec<(&str, Value)>)> =
                list.iter().map(|(id, c, r)| (*id, fields(c, *r))).collect();
            index.upsert_many(&docs)
        }
        IndexOp::Delete(id) => index.delete(*id),
        IndexOp::DeleteMany(ids) => index.delete_many(ids),
        IndexOp::Import(list) => {
            let text: String = list
                .iter()
                .map(|(id, c, r)| format!("{{\"id\": {id}, \"color\": \"{c}\", \"rank\": {r}}}\n"))
                .collect();
            std::fs::write(input, text).expect("write the import file");
            index
                .import_json_lines_with(
                    input,
                    silo_engine::ImportOptions::threads(1).chunk_bytes(80),
                )
                .map(drop)
        }
        IndexOp::Compact => index.engine().compact().map(drop),
    }
}

/// The documents an index holds, as (color, rank) by id.
fn index_docs(index: &silo_engine::Index) -> Docs {
    try_index_docs(index).expect("get")
}

/// [`index_docs`], or the first read's error.
fn try_index_docs(index: &silo_engine::Index) -> silo_engine::Result<Docs> {
    use silo_format::Value;
    let mut docs = Docs::new();
    for id in 0..40u32 {
        if let Some(doc) = index.get(id)? {
            let (Some(Value::Str(c)), Some(Value::I64(r))) = (doc.get("color"), doc.get("rank"))
            else {
                panic!("document {id} is partial: {doc:?}");
            };
            docs.insert(id, (c.to_string(), *r));
        }
    }
    Ok(docs)
}

/// Runs the index workload on `root/db` with `plan`; returns the states a
/// reopen may find (the acknowledged documents, then those plus the failed
/// op: whole, or for an import, which commits one batch per chunk, any
/// prefix of its lines), the faults fired and the counts per op. Right
/// after the failure, before it is closed, the index reads one of those
/// states, consistent with its bitmaps, or refuses to read part of a
/// cross-shard batch.
fn run_index_with(root: &Path, plan: FaultPlan) -> (Vec<Docs>, u64, Vec<(FaultOp, u64)>) {
    let index =
        silo_engine::Index::open(root.join("db"), index_schema(), index_opts()).expect("open");
    let input = root.join("import.jsonl");
    let guard = install(&root.join("db"), plan);
    let mut acked = Docs::new();
    let mut allowed = Vec::new();
    for op in index_workload() {
        let mut maybe = acked.clone();
        apply_index(&mut maybe, &op);
        match run_index_op(&index, &op, &input) {
            Ok(()) => acked = maybe,
            Err(_) => {
                if let IndexOp::Import(list) = &op {
                    for j in 1..list.len() {
                        let mut part = acked.clone();
                        apply_index(&mut part, &IndexOp::Import(list[..j].to_vec()));
                        allowed.push(part);
                    }
                }
                allowed.push(maybe);
                match try_index_docs(&index) {
                    Ok(live) => {
                        assert!(
                            live == acked || allowed.contains(&live),
                            "{op:?} failed: the live index reads neither the acknowledged documents nor them plus (part of) the failed op\nread {live:?}\nacknowledged {acked:?}\nallowed {allowed:?}"
                        );
                        assert_eq!(
                            index.verify_consistency().expect("verify"),
                            vec![],
                            "{op:?} failed: the live index"
                        );
                    }
                    Err(silo_engine::EngineError::PartialBatch { .. }) => {}
                    Err(e) => panic!("{op:?} failed: reads of the live index: {e}"),
                }
                break;
            }
        }
    }
    allowed.insert(0, acked);
    drop(index);
    let fired = guard.fired();
    let counts = FaultOp::ALL
        .iter()
        .map(|op| (*op, guard.count(*op)))
        .collect();
    (allowed, fired, counts)
}

#[test]
fn every_failed_or_torn_call_of_index_upserts_and_imports_leaves_a_consistent_index() {
    let probe = tempfile::tempdir().unwrap();
    let (clean, _, counts) = run_index_with(probe.path(), FaultPlan::new());
    assert!(clean[0].len() > 10, "{clean:?}");
    let mut cases = 0;
    for (op, n) in counts {
        for nth in 1..=n {
            for action in actions(op) {
                let root = tempfile::tempdir().unwrap();
                let (allowed, fired, _) =
                    run_index_with(root.path(), FaultPlan::new().on(op, nth, *action));
                if fired == 0 {
                    continue;
                }
                let case = format!("{op:?} #{nth} {action:?}");
                let index =
                    silo_engine::Index::open(root.path().join("db"), index_schema(), index_opts())
                        .unwrap_or_else(|e| panic!("{case}: reopen failed: {e}"));
                let found = index_docs(&index);
                assert!(
                    allowed.contains(&found),
                    "{case}: the index holds neither the acknowledged documents nor them plus (part of) the failed op\nfound {found:?}\nallowed {allowed:?}"
                );
                assert_eq!(
                    index.verify_consistency().expect("verify"),
                    vec![],
                    "{case}"
                );
                cases += 1;
            }
        }
    }
    println!("index fault matrix: {cases} cases");
    assert!(cases > 20, "only {cases} fault cases ran");
}

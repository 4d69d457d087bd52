//! Document commands through the state machine's index: typed refusals,
//! key-value commands beside them, reopen, snapshot build and install on
//! another node, and power cuts at every sync of an entry that patches a
//! tags list (replayed from its intent, never applied twice).

use openraft::Entry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log_id;
use silo_engine::{Filter, Index, Order, Query, Schema};
use silo_io::fault::{FaultAction, FaultOp, FaultPlan, Unsynced, install};
use silo_raft::documents::{DocRefusal, JsonFields, json_document, schema_fingerprint};
use silo_raft::keys::{INDEXED_USER_KEYS_FROM, SM_DOC_INTENT_KEY};
use silo_raft::{
    RaftStoreError, Request, Response, StateMachine, TypeConfig, open_node, open_node_with,
};

use crate::node_dir::entry;

pub(crate) const SCHEMA: &str = r#"
[[field]]
name = "color"
type = "str"
filter = true

[[field]]
name = "price"
type = "u64"
sort = true

[[field]]
name = "tags"
type = "tags"
filter = true
"#;

pub(crate) fn schema() -> Schema {
    Schema::from_toml(SCHEMA).expect("schema")
}

pub(crate) fn fields(json: &str) -> JsonFields {
    serde_json::from_str(json).expect("json fields")
}

fn fingerprint() -> u32 {
    schema_fingerprint(&schema())
}

fn upsert(doc: u32, json: &str) -> Request {
    Request::UpsertDoc {
        schema: fingerprint(),
        doc,
        fields: fields(json),
    }
}

fn patch(doc: u32, json: &str) -> Request {
    Request::PatchDoc {
        schema: fingerprint(),
        doc,
        fields: fields(json),
    }
}

/// Everything a client can observe of the documents: each query's hits
/// with all fields, and the counts.
fn answers(index: &Index) -> Vec<String> {
    let all = ["color", "price", "tags"];
    let queries = [
        Query::new(Filter::All, 100).with_fields(&all),
        Query::new(
            Filter::parse("color = red", index.schema()).expect("f"),
            100,
        )
        .sorted_by("price", Order::Descending)
        .with_fields(&all),
        Query::new(Filter::parse("tags = 2", index.schema()).expect("f"), 100).with_fields(&all),
    ];
    let mut out: Vec<String> = queries
        .iter()
        .map(|q| format!("{:?}", index.query(q).expect("query").hits))
        .collect();
    for f in ["all", "color = blue", "tags = 1", "price >= 20"] {
        let filter = Filter::parse(f, index.schema()).expect("filter");
        out.push(format!("{f}: {}", index.count(&filter).expect("count")));
    }
    out
}

fn index_answers(sm: &StateMachine) -> Vec<String> {
    answers(sm.engine().index().expect("an index"))
}

/// The commands of the main test, one per entry from index 1.
fn commands() -> Vec<Request> {
    vec![
        upsert(1, r#"{"color":"red","price":30,"tags":[1]}"#),
        upsert(2, r#"{"color":"blue","price":10}"#),
        patch(1, r#"{"tags":[2],"price":25}"#),
        // Refused whole: the key-value put beside it is not applied either.
        Request::Batch(vec![
            Request::Put {
                key: INDEXED_USER_KEYS_FROM + 1,
                value: b"no".to_vec(),
            },
            upsert(3, r#"{"color":7}"#),
        ]),
        upsert(4, r#"{"size":1}"#),
        // Documents and key-value commands in one batch.
        Request::Batch(vec![
            upsert(3, r#"{"color":"red","price":20,"tags":[2,3]}"#),
            patch(3, r#"{"tags":[4],"color":null}"#),
            Request::Put {
                key: INDEXED_USER_KEYS_FROM + 2,
                value: b"yes".to_vec(),
            },
        ]),
        delete(2),
        upsert(5, r#"{"color":"red","price":40}"#),
    ]
}

fn delete(doc: u32) -> Request {
    Request::DeleteDoc {
        schema: fingerprint(),
        doc,
    }
}

fn entries(reqs: &[Request]) -> Vec<Entry<TypeConfig>> {
    reqs.iter()
        .enumerate()
        .map(|(i, r)| entry(i as u64 + 1, r.clone()))
        .collect()
}

#[tokio::test]
async fn documents_apply_reopen_and_move_by_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = dir.path().join("n1");
    let (_l1, mut sm) = open_node_with(&n1, 1, Some(schema())).expect("opens");
    let responses = sm.apply(entries(&commands())).await.expect("apply");
    assert_eq!(responses[0], Response::Applied);
    assert_eq!(
        responses[3],
        Response::DocumentRefused {
            doc: 3,
            refusal: DocRefusal::WrongType {
                field: "color".into(),
                expected: "str".into(),
                found: "an unsigned integer".into(),
            },
        }
    );
    assert_eq!(
        responses[4],
        Response::DocumentRefused {
            doc: 4,
            refusal: DocRefusal::UnknownField {
                field: "size".into()
            },
        }
    );
    assert_eq!(responses[5], Response::Applied);
    let engine = sm.engine();
    let index = engine.index().expect("index");
    assert_eq!(
        index.get(1).expect("get").as_ref().map(json_document),
        Some(fields(r#"{"color":"red","price":25,"tags":[1,2]}"#))
    );
    assert_eq!(
        index.get(3).expect("get").as_ref().map(json_document),
        Some(fields(r#"{"price":20,"tags":[2,3,4]}"#))
    );
    assert_eq!(index.get(2).expect("get"), None);
    assert_eq!(engine.get(INDEXED_USER_KEYS_FROM + 1).expect("get"), None);
    assert_eq!(
        engine.get(INDEXED_USER_KEYS_FROM + 2).expect("get"),
        Some(b"yes".to_vec())
    );
    assert_eq!(engine.get(SM_DOC_INTENT_KEY).expect("get"), None);
    drop(engine);
    let expected = index_answers(&sm);
    assert!(expected[1].contains("doc: 5"), "{expected:?}");

    // Reopen without --schema: the stored schema is used.
    drop((_l1, sm));
    let (_l1, mut sm) = open_node(&n1, 1).expect("reopens");
    assert_eq!(index_answers(&sm), expected);
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, commands().len() as u64)));

    // A snapshot installed on another node answers the same.
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("builds");
    let (_l2, mut other) =
        open_node_with(&dir.path().join("n2"), 2, Some(schema())).expect("opens n2");
    other
        .apply(vec![entry(1, upsert(9, r#"{"color":"green"}"#))])
        .await
        .expect("apply");
    other
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("installs");
    assert_eq!(index_answers(&other), expected);
    assert_eq!(
        other.engine().get(INDEXED_USER_KEYS_FROM + 2).expect("get"),
        Some(b"yes".to_vec())
    );

    // A node with another schema refuses the snapshot, typed.
    let other_schema = Schema::from_toml(&SCHEMA.replace("\"u64\"", "\"i64\"")).expect("schema");
    let (_l3, third) =
        open_node_with(&dir.path().join("n3"), 3, Some(other_schema)).expect("opens n3");
    let snap = sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("some");
    match third.install_archive(&snap.meta, &snap.snapshot) {
        Err(RaftStoreError::Engine(silo_engine::EngineError::SchemaMismatch { .. })) => {}
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_of_the_index_stops_an_indexed_node_and_a_reserved_key_is_refused_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_li, mut indexed) =
        open_node_with(&dir.path().join("i"), 1, Some(schema())).expect("opens");
    let (_lp, mut plain) = open_node(&dir.path().join("p"), 2).expect("opens");
    let put = |key| Request::Put {
        key,
        value: b"v".to_vec(),
    };
    // A reserved key: the same answer on both, whatever their schema.
    for sm in [&mut indexed, &mut plain] {
        let r = sm
            .apply(vec![entry(
                1,
                Request::Batch(vec![put(1 << 60), put(u64::MAX - 1)]),
            )])
            .await
            .expect("apply");
        assert_eq!(r, vec![Response::ReservedKey { key: u64::MAX - 1 }]);
    }
    // Key 5 is the index's beside an index: a node without one applies it,
    // a node with one stops instead of answering otherwise.
    let r = plain.apply(vec![entry(2, put(5))]).await.expect("apply");
    assert_eq!(r, vec![Response::Applied]);
    assert_eq!(plain.engine().get(5).expect("get"), Some(b"v".to_vec()));
    match indexed
        .apply(vec![entry(
            2,
            Request::Batch(vec![put(INDEXED_USER_KEYS_FROM), put(5)]),
        )])
        .await
    {
        Err(e) => assert!(
            e.to_string().contains("belongs to this node's index"),
            "{e}"
        ),
        Ok(r) => panic!("expected the node to stop, got {r:?}"),
    }
    let (applied, _) = indexed.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 1)));
    assert_eq!(
        indexed.engine().get(INDEXED_USER_KEYS_FROM).expect("get"),
        None
    );
}

#[tokio::test]
async fn document_commands_without_an_index_stop_the_node_and_a_late_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = dir.path().join("n1");
    let (_l1, mut sm) = open_node(&n1, 1).expect("opens");
    sm.apply(vec![entry(
        1,
        Request::Put {
            key: 5,
            value: b"v".to_vec(),
        },
    )])
    .await
    .expect("a put");
    // Not an answer that could differ from an indexed node's: an error
    // that stops applying.
    assert!(
        sm.apply(vec![entry(2, upsert(1, r#"{"color":"red"}"#))])
            .await
            .is_err()
    );
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 1)));
    drop((_l1, sm));
    match open_node_with(&n1, 1, Some(schema())) {
        Err(RaftStoreError::SchemaRefused { .. }) => {}
        other => panic!("expected SchemaRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_command_for_another_schema_stops_the_node_instead_of_diverging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_l, mut sm) = open_node_with(&dir.path().join("n"), 1, Some(schema())).expect("opens");
    sm.apply(vec![entry(1, upsert(1, r#"{"color":"red"}"#))])
        .await
        .expect("apply");
    let other = Schema::from_toml(&SCHEMA.replace("\"u64\"", "\"i64\"")).expect("schema");
    let foreign = Request::Batch(vec![
        upsert(2, r#"{"color":"blue"}"#),
        Request::UpsertDoc {
            schema: schema_fingerprint(&other),
            doc: 3,
            fields: fields(r#"{"price":-1}"#),
        },
    ]);
    assert!(sm.apply(vec![entry(2, foreign)]).await.is_err());
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 1, 1)));
    let engine = sm.engine();
    let index = engine.index().expect("index");
    assert_eq!(index.get(2).expect("get"), None);
    assert_eq!(index.count(&Filter::All).expect("count"), 1);
}

/// The power fails at the `n`th sync after the first two entries: the
/// image reboots, openraft applies again from its applied id, and the
/// documents end as on a node that never stopped (the patch's tags are
/// extended once).
#[tokio::test]
async fn a_power_cut_at_any_sync_of_a_patch_replays_it_once() {
    let reqs = vec![
        upsert(1, r#"{"color":"red","price":30,"tags":[1]}"#),
        upsert(2, r#"{"color":"blue","price":10,"tags":[1]}"#),
        Request::Batch(vec![
            patch(1, r#"{"tags":[2],"color":"green"}"#),
            patch(2, r#"{"tags":[2,3]}"#),
            delete(2),
            patch(2, r#"{"tags":[5]}"#),
            Request::Put {
                key: INDEXED_USER_KEYS_FROM,
                value: b"kv".to_vec(),
            },
        ]),
        patch(1, r#"{"tags":[3]}"#),
    ];
    let all = entries(&reqs);
    let reference = {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_l, mut sm) = open_node_with(&dir.path().join("n"), 1, Some(schema())).expect("opens");
        sm.apply(all.clone()).await.expect("apply");
        let index_doc = sm.engine().index().expect("index").get(1).expect("get");
        assert_eq!(
            index_doc.as_ref().map(json_document),
            Some(fields(r#"{"color":"green","price":30,"tags":[1,2,3]}"#))
        );
        index_answers(&sm)
    };
    let mut cut_before_the_end = 0;
    for n in 1..=12 {
        let root = tempfile::tempdir().expect("tempdir");
        let guard = install(root.path(), FaultPlan::new().track_durability());
        let node = root.path().join("n");
        let (log, mut sm) = open_node_with(&node, 1, Some(schema())).expect("opens");
        sm.apply(all[..2].to_vec()).await.expect("apply");
        guard.schedule(FaultOp::Sync, n, FaultAction::PowerCut);
        // The calls go on after the cut; only what was synced before it
        // is in the image.
        sm.apply(all[2..].to_vec()).await.expect("apply");
        if guard.is_cut() {
            cut_before_the_end += 1;
        }
        let out = tempfile::tempdir().expect("tempdir");
        let img = out.path().join("img");
        guard.power_cut_image(&img, Unsynced::Drop).expect("image");
        drop(guard);
        drop((log, sm));

        let (_log, mut sm) = open_node(&img.join("n"), 1).expect("image opens");
        let (applied, _) = sm.applied_state().await.expect("applied");
        let from = usize::try_from(applied.map_or(0, |l| l.index)).expect("small index");
        assert!(from >= 2, "the first two applies were acknowledged");
        if from < all.len() {
            sm.apply(all[from..].to_vec()).await.expect("replay");
        }
        assert_eq!(index_answers(&sm), reference, "power cut at sync {n}");
        assert_eq!(
            sm.engine().get(SM_DOC_INTENT_KEY).expect("get"),
            None,
            "sync {n}"
        );
    }
    assert!(cut_before_the_end > 0, "some cut fell inside the applies");
}

/// `docs/FORMAT.md` states the document keys and limits the code uses.
#[test]
fn the_format_document_states_the_document_constants() {
    use silo_raft::keys::{INDEXED_USER_KEYS_TO, MAX_INDEXED_FIELDS};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/FORMAT.md");
    let text = std::fs::read_to_string(&path).expect("FORMAT.md");
    let rows = [
        format!(
            "| `SM_DOC_INTENT_KEY` | 2^64 - {} |",
            u64::MAX - SM_DOC_INTENT_KEY + 1
        ),
        format!(
            "| `INDEXED_USER_KEYS_FROM` | `{:#x} << 48` |",
            INDEXED_USER_KEYS_FROM >> 48
        ),
        format!(
            "| `INDEXED_USER_KEYS_TO` | `{:#X} << 48` |",
            INDEXED_USER_KEYS_TO >> 48
        )
        .replace("0X", "0x"),
        format!("| `MAX_INDEXED_FIELDS` | {MAX_INDEXED_FIELDS} |"),
    ];
    for row in rows {
        assert!(text.contains(&row), "FORMAT.md lacks {row}");
    }
}

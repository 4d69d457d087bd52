//! Three `silo-raft` processes started with an index schema: document
//! upserts through the leader, the leader killed with SIGKILL, more
//! upserts (enough for a snapshot that purges what it missed), the old
//! leader restarted, and every node answering each query identically and
//! as the acknowledged writes say.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use silo_raft::documents::JsonFields;
use silo_raft::wire::{ClientReply, ClientRequest, DocHit, client_call};

use crate::cluster::{
    Cluster, data_dir_exists, start_cluster, status, wait_leader, write, write_reply,
};
use crate::documents::{SCHEMA, fields};

/// The fields of document `doc`: a color from three, a unique price, tags.
fn doc_fields(doc: u32) -> JsonFields {
    let color = ["red", "blue", "green"][doc as usize % 3];
    fields(&format!(
        r#"{{"color":"{color}","price":{},"tags":[{},{}]}}"#,
        u64::from(doc) * 3 + 1,
        doc % 4,
        doc % 7
    ))
}

async fn upsert_range(
    c: &Cluster,
    alive: &[u64],
    docs: std::ops::Range<u32>,
    model: &mut BTreeMap<u32, JsonFields>,
    deadline: Instant,
) {
    for doc in docs {
        let f = doc_fields(doc);
        write(
            c,
            alive,
            ClientRequest::UpsertDoc {
                doc,
                fields: f.clone(),
            },
            deadline,
        )
        .await;
        model.insert(doc, f);
        if doc % 10 == 5 {
            // A scalar patch (idempotent, so a retried call is harmless)
            // and a delete.
            let patch = fields(r#"{"color":"red"}"#);
            write(
                c,
                alive,
                ClientRequest::PatchDoc {
                    doc,
                    fields: patch.clone(),
                },
                deadline,
            )
            .await;
            model.entry(doc).or_default().extend(patch);
            write(
                c,
                alive,
                ClientRequest::DeleteDoc { doc: doc - 1 },
                deadline,
            )
            .await;
            model.remove(&(doc - 1));
        }
    }
}

fn all_docs_query(linearizable: bool) -> ClientRequest {
    ClientRequest::Query {
        filter: "all".to_owned(),
        sort: None,
        descending: false,
        limit: 1000,
        fields: vec!["color".into(), "price".into(), "tags".into()],
        linearizable,
    }
}

fn sorted_query() -> ClientRequest {
    ClientRequest::Query {
        filter: "color = red or tags = 3".to_owned(),
        sort: Some("price".to_owned()),
        descending: true,
        limit: 1000,
        fields: vec!["price".into()],
        linearizable: false,
    }
}

/// A node's local answers to the test's reads.
async fn answers(addr: &str) -> Option<Vec<ClientReply>> {
    let mut out = Vec::new();
    for req in [
        all_docs_query(false),
        sorted_query(),
        ClientRequest::Count {
            filter: "color = red".to_owned(),
            linearizable: false,
        },
        ClientRequest::GetDoc {
            doc: 7,
            linearizable: false,
        },
    ] {
        out.push(client_call(addr, req).await.ok()?);
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_with_an_index_answer_queries_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, SCHEMA).expect("write schema");
    let mut c = Cluster::new(dir.path(), Some(schema));
    let deadline = crate::cluster::deadline_in(25);
    let all = [1, 2, 3];
    let (leader, term) = start_cluster(&mut c, deadline).await;

    let mut model = BTreeMap::new();
    upsert_range(&c, &all, 0..25, &mut model, deadline).await;
    // A bad field type is answered, typed, and changes nothing.
    let refused = write_reply(
        &c,
        &all,
        ClientRequest::UpsertDoc {
            doc: 1,
            fields: fields(r#"{"price":"cheap"}"#),
        },
        deadline,
    )
    .await;
    assert!(
        matches!(refused, ClientReply::DocumentRefused { doc: 1, .. }),
        "{refused:?}"
    );
    // A put into the index's own keys is refused before it is logged (a
    // committed one would stop every node with an index).
    let refused = client_call(
        &c.addrs[&leader],
        ClientRequest::Put {
            key: 5,
            value: b"v".to_vec(),
        },
    )
    .await
    .expect("a reply");
    assert!(
        matches!(&refused, ClientReply::Failed(m) if m.contains("key 0x5 is reserved")),
        "{refused:?}"
    );

    c.kill(leader);
    let alive: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    let (new_leader, _) = wait_leader(&c, &alive, term, deadline).await;
    assert_ne!(new_leader, leader);
    upsert_range(&c, &alive, 25..80, &mut model, deadline).await;

    assert!(data_dir_exists(&c.root, leader));
    c.start(leader);

    // The model's answer to the unsorted query, through the leader.
    let want_hits: Vec<DocHit> = model
        .iter()
        .map(|(doc, f)| DocHit {
            doc: *doc,
            fields: f.clone(),
        })
        .collect();
    let through_leader = client_call(&c.addrs[&new_leader], all_docs_query(true))
        .await
        .expect("query");
    assert_eq!(through_leader, ClientReply::Hits(want_hits.clone()));
    let want_red = model
        .values()
        .filter(|f| f.get("color").and_then(|v| v.as_str()) == Some("red"))
        .count() as u64;

    // Every node (the restarted one included) answers the same, locally.
    let final_answers = loop {
        let mut per_node = Vec::new();
        for id in all {
            per_node.push(answers(&c.addrs[&id]).await);
        }
        let done = per_node.iter().all(|a| {
            a.as_ref().is_some_and(|a| {
                a[0] == ClientReply::Hits(want_hits.clone())
                    && a[2] == ClientReply::Count(want_red)
                    && Some(a) == per_node[0].as_ref()
            })
        });
        if done {
            break per_node;
        }
        assert!(
            Instant::now() < deadline,
            "nodes answer differently: {:?}",
            per_node
                .iter()
                .map(|a| a.as_ref().map(|a| (a.len(), &a[2])))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sorted = &final_answers[0].as_ref().expect("answers")[1];
    let ClientReply::Hits(hits) = sorted else {
        panic!("expected hits, got {sorted:?}");
    };
    assert!(!hits.is_empty());
    let prices: Vec<u64> = hits
        .iter()
        .filter_map(|h| h.fields.get("price").and_then(|p| p.as_u64()))
        .collect();
    assert!(prices.windows(2).all(|w| w[0] > w[1]), "{prices:?}");

    // The restarted node caught up from a snapshot.
    let restarted = status(&c.addrs[&leader]).await.expect("status");
    assert!(restarted.snapshot.is_some(), "{restarted:?}");
}

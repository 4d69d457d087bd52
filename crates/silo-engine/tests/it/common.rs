//! Helpers shared by the engine's integration tests.

use silo_core::Append;
use silo_engine::{Engine, EngineOptions};

/// `shards` shards, the append operator, no automatic compaction.
pub(crate) fn opts(shards: usize) -> EngineOptions {
    let mut o = EngineOptions {
        shards: Some(shards),
        compaction_threads: Some(2),
        ..EngineOptions::default()
    }
    .with_merge_operator(Append);
    o.store.auto_compact = false;
    o
}

pub(crate) fn open(dir: &std::path::Path, shards: usize) -> Engine {
    Engine::open(dir, opts(shards)).expect("open engine")
}

/// Keys `0..n` that all fall on different shards than `key`'s first.
pub(crate) fn keys_on_distinct_shards(shards: usize) -> Vec<u64> {
    let mut seen = vec![false; shards];
    let mut keys = Vec::new();
    for k in 0u64.. {
        let s = silo_engine::shard_of(k, shards);
        if !seen[s] {
            seen[s] = true;
            keys.push(k);
        }
        if keys.len() == shards {
            break;
        }
    }
    keys
}

/// Every `(key, value)` of the engine, sorted.
pub(crate) fn contents(db: &Engine) -> std::collections::BTreeMap<u64, Vec<u8>> {
    db.iter().map(|r| r.expect("iter")).collect()
}

/// The document merge rules on a model document: `Deleted` removes the
/// field, a tags list without RESET extends a stored list (and replaces
/// anything else), every other value replaces; stored lists never keep
/// RESET.
pub(crate) fn merge_field<K: Ord>(
    doc: &mut std::collections::BTreeMap<K, silo_format::Value>,
    name: K,
    value: &silo_format::Value,
) {
    use silo_format::Value;
    match value {
        Value::Deleted => {
            doc.remove(&name);
        }
        Value::I64List { items, reset } => match doc.get_mut(&name) {
            Some(Value::I64List { items: old, .. }) if !reset => old.extend_from_slice(items),
            _ => {
                doc.insert(
                    name,
                    Value::I64List {
                        items: items.clone(),
                        reset: false,
                    },
                );
            }
        },
        v => {
            doc.insert(name, v.clone());
        }
    }
}

/// Runs test `child` of this binary in a child process with `env`, reading
/// its `ack` lines (`<ack><n>`), and kills it with SIGKILL once `kill_after`
/// operations are acknowledged. Returns the last acknowledged operation's
/// number; panics if the child ends before it is killed.
pub(crate) fn kill_child_after(
    child: &str,
    env: &[(&str, String)],
    ack: &str,
    kill_after: usize,
) -> Option<usize> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(&exe);
    cmd.args(["--exact", child, "--nocapture", "--test-threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = cmd.spawn().expect("spawn child");
    let stdout = proc.stdout.take().expect("child stdout");
    let mut acked: Option<usize> = None;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        if let Some(n) = line.strip_prefix(ack) {
            acked = Some(n.trim().parse().expect("ack number"));
            if !killed && acked.is_some_and(|a| a + 1 >= kill_after) {
                proc.kill().expect("SIGKILL");
                killed = true;
            }
        }
    }
    let status = proc.wait().expect("wait child");
    assert!(killed, "{child}: the child exited early ({status})");
    acked
}

/// Document `id` with `fields` as a JSON line.
pub(crate) fn json_line(id: u32, fields: &[(&str, silo_format::Value)]) -> String {
    use silo_format::Value;
    let mut object = serde_json::Map::new();
    object.insert("id".into(), id.into());
    for (name, v) in fields {
        let json = match v {
            Value::Str(s) => s.clone().into(),
            Value::I64(v) => (*v).into(),
            Value::F64(v) => (*v).into(),
            Value::Bool(v) => (*v).into(),
            Value::I64List { items, .. } => items.clone().into(),
            other => panic!("{other:?}"),
        };
        object.insert((*name).to_owned(), json);
    }
    serde_json::Value::Object(object).to_string()
}

//! `dump` and `load`: a store as JSON lines and back.
//!
//! The first line is a header, `{"silo_dump":1,"kind":"kv"}` or
//! `{"silo_dump":1,"kind":"index","schema":"<the schema in TOML>"}`. A
//! plain store's lines are `{"key":K,"value":"text"}` (a value that is
//! UTF-8) or `{"key":K,"hex":"00ff"}`, shard by shard; an index's lines are
//! its documents in the import format (`{"id":N,...fields}`), in id order.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use serde_json::{Value as Json, json};
use silo_core::WriteBatch;
use silo_engine::{Engine, Filter, ImportOptions, Query, Schema};

use crate::fail::{Fail, Outcome};
use crate::store::{self, Store};

/// The dump format's version, in the header.
const DUMP_VERSION: u64 = 1;
/// Documents read per page while dumping an index.
const PAGE: usize = 10_000;
/// Bytes of values per atomic write while loading a plain store.
const LOAD_BATCH_BYTES: usize = 8 << 20;

fn out_err(e: std::io::Error) -> Fail {
    Fail::system(format!("writing to standard output: {e}"))
}

pub(crate) fn dump(dir: &Path) -> Outcome {
    let store = store::open_existing(dir)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match &store {
        Store::Plain(engine) => {
            writeln!(out, "{}", json!({"silo_dump": DUMP_VERSION, "kind": "kv"}))
                .map_err(out_err)?;
            for item in engine.iter() {
                let (k, v) = item.map_err(|e| Fail::engine(dir, e))?;
                let line = match std::str::from_utf8(&v) {
                    Ok(text) => json!({"key": k, "value": text}),
                    Err(_) => json!({"key": k, "hex": hex(&v)}),
                };
                writeln!(out, "{line}").map_err(out_err)?;
            }
        }
        Store::Index(index) => {
            let schema = index.schema();
            writeln!(
                out,
                "{}",
                json!({"silo_dump": DUMP_VERSION, "kind": "index", "schema": schema.to_toml()})
            )
            .map_err(out_err)?;
            let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
            let mut cursor = None;
            loop {
                let q = Query::new(Filter::All, PAGE)
                    .with_fields(&names)
                    .after(cursor);
                let page = index.query(&q).map_err(|e| Fail::engine(dir, e))?;
                for hit in &page.hits {
                    let doc = names
                        .iter()
                        .zip(&hit.fields)
                        .filter_map(|(n, v)| v.clone().map(|v| ((*n).to_owned(), v)))
                        .collect();
                    writeln!(out, "{}", crate::json::document(hit.doc, &doc)?).map_err(out_err)?;
                }
                match page.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
    }
    out.flush().map_err(out_err)?;
    drop(out);
    store.close(dir)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lines of `file`, numbered from 1.
fn lines(file: &Path) -> Outcome<impl Iterator<Item = Outcome<(u64, String)>>> {
    let f = silo_io::SiloFile::open_read(file)
        .map_err(|e| Fail::input(format!("{}: {e}", file.display())))?;
    struct ReadFile(silo_io::SiloFile);
    impl Read for ReadFile {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.as_std().read(buf)
        }
    }
    let shown = file.display().to_string();
    Ok(BufReader::new(ReadFile(f))
        .lines()
        .zip(1u64..)
        .map(move |(l, n)| {
            l.map(|l| (n, l))
                .map_err(|e| Fail::input(format!("{shown}, line {n}: unreadable: {e}")))
        }))
}

/// One key and value of a plain store's dump.
fn kv_line(text: &str) -> Result<(u64, Vec<u8>), String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let key = json
        .get("key")
        .and_then(Json::as_u64)
        .ok_or("no \"key\" that is a whole number from 0 to 2^64-1")?;
    let value = match (json.get("value"), json.get("hex")) {
        (Some(Json::String(v)), None) => v.clone().into_bytes(),
        (None, Some(Json::String(h))) => {
            unhex(h).ok_or("\"hex\" is not an even run of hex digits")?
        }
        _ => return Err("exactly one of \"value\" (a string) and \"hex\" is needed".to_owned()),
    };
    if json.as_object().is_some_and(|o| o.len() != 2) {
        return Err(
            "a line holds \"key\" and one of \"value\" or \"hex\", nothing else".to_owned(),
        );
    }
    Ok((key, value))
}

pub(crate) fn load(dir: &Path, file: &Path) -> Outcome {
    if Engine::exists_in(dir) {
        return Err(Fail::input(format!(
            "{} already holds a store; load into a new directory",
            dir.display()
        )));
    }
    let bad =
        |n: u64, reason: String| Fail::input(format!("{}, line {n}: {reason}", file.display()));
    let (_, header) = lines(file)?
        .next()
        .ok_or_else(|| bad(1, "empty: a dump starts with its header line".to_owned()))??;
    let header: Json =
        serde_json::from_str(&header).map_err(|e| bad(1, format!("not a dump header: {e}")))?;
    match header.get("silo_dump").and_then(Json::as_u64) {
        Some(DUMP_VERSION) => {}
        Some(v) => {
            return Err(bad(
                1,
                format!("dump version {v}; this silo reads version {DUMP_VERSION}"),
            ));
        }
        None => return Err(bad(1, "not a dump header (no \"silo_dump\")".to_owned())),
    }
    let existed = dir.exists();
    let result = match header.get("kind").and_then(Json::as_str) {
        Some("kv") => load_kv(dir, file),
        Some("index") => {
            let schema = header
                .get("schema")
                .and_then(Json::as_str)
                .ok_or_else(|| bad(1, "an index dump's header has no \"schema\"".to_owned()))?;
            let schema = Schema::from_toml(schema).map_err(|e| bad(1, e.to_string()))?;
            load_index(dir, file, schema)
        }
        _ => Err(bad(1, "\"kind\" must be \"kv\" or \"index\"".to_owned())),
    };
    if result.is_err() && !existed {
        // Nothing of a failed load is kept: the store is removed whole.
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn load_kv(dir: &Path, file: &Path) -> Outcome {
    let bad =
        |n: u64, reason: String| Fail::input(format!("{}, line {n}: {reason}", file.display()));
    // Every line checked before anything is written.
    for line in lines(file)?.skip(1) {
        let (n, text) = line?;
        kv_line(&text).map_err(|r| bad(n, r))?;
    }
    let store = store::open(dir)?;
    let engine = store.engine();
    let mut batch = WriteBatch::new();
    let mut bytes = 0;
    for line in lines(file)?.skip(1) {
        let (n, text) = line?;
        let (k, v) = kv_line(&text).map_err(|r| bad(n, r))?;
        bytes += v.len();
        batch.put(k, &v);
        if bytes >= LOAD_BATCH_BYTES {
            engine.write(&batch).map_err(|e| Fail::engine(dir, e))?;
            batch.clear();
            bytes = 0;
        }
    }
    engine.write(&batch).map_err(|e| Fail::engine(dir, e))?;
    store.close(dir)
}

fn load_index(dir: &Path, file: &Path, schema: Schema) -> Outcome {
    let index = store::open_index(dir, schema)?;
    index
        .import_json_lines_with(file, ImportOptions::threads(2).skip_lines(1))
        .map_err(|e| Fail::engine(dir, e))?;
    index.close().map_err(|e| Fail::engine(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines_parse_back_and_bad_ones_say_why() {
        assert_eq!(
            kv_line(r#"{"key": 7, "value": "é"}"#).unwrap(),
            (7, "é".as_bytes().to_vec())
        );
        assert_eq!(
            kv_line(r#"{"key": 8, "hex": "00ff"}"#).unwrap(),
            (8, vec![0, 255])
        );
        assert_eq!(unhex(&hex(&[1, 2, 254])).unwrap(), vec![1, 2, 254]);
        for (bad, why) in [
            ("{", "not JSON"),
            (r#"{"value": "a"}"#, "key"),
            (r#"{"key": -1, "value": "a"}"#, "key"),
            (r#"{"key": 1}"#, "exactly one"),
            (r#"{"key": 1, "value": "a", "hex": "00"}"#, "exactly one"),
            (r#"{"key": 1, "hex": "0"}"#, "hex"),
            (r#"{"key": 1, "hex": "zz"}"#, "hex"),
            (r#"{"key": 1, "value": 3}"#, "exactly one"),
            (r#"{"key": 1, "value": "a", "x": 1}"#, "nothing else"),
        ] {
            let e = kv_line(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}

//! `get`, `put`, `del`: one key of a plain store, or one document of an
//! index.

use std::io::Write;
use std::path::Path;

use crate::fail::{Fail, Outcome};
use crate::store::{self, Store};

/// A key as the user wrote it: decimal, or hex after `0x`.
pub(crate) fn parse_key(text: &str) -> Outcome<u64> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| {
        Fail::input(format!(
            "`{text}` is not a key (a whole number from 0 to 2^64-1, decimal or 0x hex)"
        ))
    })
}

/// A document id: a key below 2^32.
fn parse_doc(text: &str) -> Outcome<u32> {
    u32::try_from(parse_key(text)?)
        .map_err(|_| Fail::input(format!("`{text}` is not a document id (0 to 2^32-1)")))
}

pub(crate) fn get(dir: &Path, key: &str) -> Outcome {
    let store = store::open_existing(dir)?;
    let found = match &store {
        Store::Index(index) => {
            let id = parse_doc(key)?;
            match index.get(id).map_err(|e| Fail::engine(dir, e))? {
                Some(doc) => {
                    let mut line = crate::json::document(id, &doc)?.to_string();
                    line.push('\n');
                    Some(line.into_bytes())
                }
                None => None,
            }
        }
        Store::Plain(engine) => {
            let k = parse_key(key)?;
            engine
                .get(k)
                .map_err(|e| Fail::engine(dir, e))?
                .map(|mut v| {
                    v.push(b'\n');
                    v
                })
        }
    };
    store.close(dir)?;
    match found {
        Some(bytes) => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| Fail::system(format!("writing to standard output: {e}"))),
        None => Err(Fail::problem(format!("{key} is not in {}", dir.display()))),
    }
}

pub(crate) fn put(dir: &Path, key: &str, value: &str) -> Outcome {
    let store = store::open(dir)?;
    match &store {
        Store::Index(index) => {
            let id = parse_doc(key)?;
            // The value is the document's fields; the id comes from KEY.
            let json: serde_json::Value = serde_json::from_str(value)
                .map_err(|e| Fail::input(format!("the value is not JSON: {e}")))?;
            let serde_json::Value::Object(mut object) = json else {
                return Err(Fail::input("the value must be a JSON object of fields"));
            };
            if object.insert("id".into(), id.into()).is_some() {
                return Err(Fail::input(
                    "give the document id as KEY, not as an \"id\" field",
                ));
            }
            let line = serde_json::Value::Object(object).to_string();
            let (_, fields) = index.parse_json_line(&line, 1).map_err(|e| match e {
                silo_engine::EngineError::Import { reason, .. } => {
                    Fail::input(format!("the document: {reason}"))
                }
                e => Fail::engine(dir, e),
            })?;
            let fields: Vec<(&str, silo_format::Value)> = fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.clone()))
                .collect();
            index
                .upsert(id, &fields)
                .map_err(|e| Fail::engine(dir, e))?;
        }
        Store::Plain(engine) => {
            let k = parse_key(key)?;
            engine
                .put(k, value.as_bytes())
                .map_err(|e| Fail::engine(dir, e))?;
        }
    }
    store.close(dir)
}

pub(crate) fn del(dir: &Path, key: &str) -> Outcome {
    let store = store::open_existing(dir)?;
    match &store {
        Store::Index(index) => {
            let id = parse_doc(key)?;
            index.delete(id).map_err(|e| Fail::engine(dir, e))?;
        }
        Store::Plain(engine) => {
            let k = parse_key(key)?;
            engine.delete(k).map_err(|e| Fail::engine(dir, e))?;
        }
    }
    store.close(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_in_decimal_and_hex_and_bad_ones_are_input_errors() {
        assert_eq!(parse_key("42").unwrap(), 42);
        assert_eq!(parse_key(" 0xff ").unwrap(), 255);
        assert_eq!(parse_key("0XFFFFFFFFFFFFFFFF").unwrap(), u64::MAX);
        for bad in ["", "-1", "0x", "1e3", "18446744073709551616", "x12"] {
            let e = parse_key(bad).unwrap_err();
            assert_eq!(e.code, crate::fail::code::INPUT, "{bad}");
        }
        assert!(parse_doc("4294967296").is_err());
        assert_eq!(parse_doc("4294967295").unwrap(), u32::MAX);
    }
}

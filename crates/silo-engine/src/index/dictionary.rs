//! Value dictionaries: each filter field's values (typed, in canonical
//! bytes) to dense ids from 1, which key the field's bitmaps. Kept in the
//! engine under the field's dictionary id (kind `Dictionary`): key
//! `(dict, n)` holds the canonical bytes of value `n`. Ids are never reused;
//! a new value's entry is durable (a `Sync` write) before any bitmap uses
//! its id. Loaded whole at open; facets enumerate it.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;

use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_format::{Value, ValueRef};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::keyspace::key;
use crate::registry::FieldId;

/// A filter value in canonical bytes: a type byte, then the value.
pub(crate) type Canonical = Vec<u8>;

/// The canonical bytes of the filter values `value` gives (a tag list
/// gives one per distinct tag; `Deleted`, floats and bytes give none).
pub(crate) fn canonical_values(value: &ValueRef<'_>) -> Vec<Canonical> {
    let one = |tag: u8, bytes: &[u8]| {
        let mut c = Vec::with_capacity(1 + bytes.len());
        c.push(tag);
        c.extend_from_slice(bytes);
        c
    };
    match value {
        ValueRef::I64(v) => vec![one(b'i', &v.to_le_bytes())],
        ValueRef::U64(v) => vec![one(b'u', &v.to_le_bytes())],
        ValueRef::Bool(v) => vec![one(b'b', &[u8::from(*v)])],
        ValueRef::Str(s) => vec![one(b's', s.as_bytes())],
        ValueRef::I64List(list) => {
            let mut tags: Vec<Canonical> =
                list.iter().map(|v| one(b'i', &v.to_le_bytes())).collect();
            tags.sort_unstable();
            tags.dedup();
            tags
        }
        ValueRef::Deleted | ValueRef::F64(_) | ValueRef::Bytes(_) => Vec::new(),
    }
}

/// Calls `f` with the canonical bytes of each filter value `value` gives,
/// built in `buf` (no allocation per value): as [`canonical_values`], but a
/// tag repeated in a list is given again.
pub(crate) fn each_canonical(
    value: &ValueRef<'_>,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut one = |tag: u8, bytes: &[u8]| {
        buf.clear();
        buf.push(tag);
        buf.extend_from_slice(bytes);
        f(buf)
    };
    match value {
        ValueRef::I64(v) => one(b'i', &v.to_le_bytes()),
        ValueRef::U64(v) => one(b'u', &v.to_le_bytes()),
        ValueRef::Bool(v) => one(b'b', &[u8::from(*v)]),
        ValueRef::Str(s) => one(b's', s.as_bytes()),
        ValueRef::I64List(list) => list.iter().try_for_each(|v| one(b'i', &v.to_le_bytes())),
        ValueRef::Deleted | ValueRef::F64(_) | ValueRef::Bytes(_) => Ok(()),
    }
}

/// The value canonical bytes stand for.
pub(crate) fn decode_canonical(bytes: &[u8]) -> Option<Value> {
    let (&tag, rest) = bytes.split_first()?;
    Some(match tag {
        b'i' => Value::I64(i64::from_le_bytes(rest.try_into().ok()?)),
        b'u' => Value::U64(u64::from_le_bytes(rest.try_into().ok()?)),
        b'b' => match rest {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return None,
        },
        b's' => Value::Str(std::str::from_utf8(rest).ok()?.to_owned()),
        _ => return None,
    })
}

/// One field's dictionary.
#[derive(Debug, Default)]
pub(crate) struct Dictionary {
    /// A fast hash: every value of every imported or changed document is
    /// looked up here.
    ids: HashMap<Canonical, u64, foldhash::fast::RandomState>,
    /// `values[n - 1]` is value `n`.
    values: Vec<Canonical>,
}

impl Dictionary {
    /// Reads the dictionary kept under `dict` in `engine`.
    pub(crate) fn load(engine: &Engine, dict: FieldId) -> Result<Dictionary> {
        let mut d = Dictionary::default();
        for n in 1u64.. {
            let k = key(dict.0, n)?;
            let Some(bytes) = engine.get(k)? else { break };
            if decode_canonical(&bytes).is_none() || d.ids.contains_key(&bytes) {
                return Err(EngineError::Value {
                    what: "dictionary entry",
                    key: k,
                    reason: "not a filter value, or one already in the dictionary".to_owned(),
                });
            }
            d.ids.insert(bytes.clone(), n);
            d.values.push(bytes);
        }
        Ok(d)
    }

    /// The id of `value`, if it is in the dictionary.
    pub(crate) fn id(&self, value: &[u8]) -> Option<u64> {
        self.ids.get(value).copied()
    }

    /// Every `(id, value)`, in id order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, &[u8])> {
        (1u64..).zip(self.values.iter().map(Vec::as_slice))
    }

    /// The id the next value gets.
    fn next_id(&self) -> u64 {
        self.values.len() as u64 + 1
    }
}

/// Adds the values of `new` (dictionary index, dictionary id, value) that
/// are not there yet: one `Sync` write of every new entry, then the
/// in-memory dictionaries (readers wait only for that last step). The
/// caller serializes calls, so ids computed under the read lock stay free.
pub(crate) fn add_values(
    engine: &Engine,
    dicts: &RwLock<Vec<Dictionary>>,
    new: &[(usize, FieldId, Canonical)],
) -> Result<()> {
    let mut batch = WriteBatch::new();
    let mut added: Vec<(usize, Canonical)> = Vec::new();
    {
        let dicts = dicts.read();
        let mut queued: HashSet<(usize, &[u8])> = HashSet::new();
        let mut next: HashMap<usize, u64> = HashMap::new();
        for (at, dict, value) in new {
            let d = &dicts[*at];
            if d.id(value).is_some() || !queued.insert((*at, value.as_slice())) {
                continue;
            }
            let n = next.entry(*at).or_insert_with(|| d.next_id());
            batch.put(key(dict.0, *n)?, value);
            *n += 1;
            added.push((*at, value.clone()));
        }
    }
    if added.is_empty() {
        return Ok(());
    }
    engine.write_with(&batch, WriteOptions::durability(Durability::Sync))?;
    let mut dicts = dicts.write();
    for (at, value) in added {
        let d = &mut dicts[at];
        let n = d.next_id();
        d.ids.insert(value.clone(), n);
        d.values.push(value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_values_round_trip_and_tags_give_each_tag_once() {
        for v in [
            Value::I64(-3),
            Value::U64(9),
            Value::Bool(true),
            Value::Str("é".into()),
        ] {
            let c = canonical_values(&v.as_ref());
            assert_eq!(c.len(), 1);
            assert_eq!(decode_canonical(&c[0]), Some(v));
        }
        let tags = Value::I64List {
            items: vec![5, 1, 5],
            reset: false,
        };
        let c = canonical_values(&tags.as_ref());
        assert_eq!(
            c.iter()
                .map(|b| decode_canonical(b).unwrap())
                .collect::<Vec<_>>(),
            vec![Value::I64(1), Value::I64(5)]
        );
        assert!(canonical_values(&Value::F64(1.0).as_ref()).is_empty());
        for v in [
            Value::I64(-3),
            Value::U64(9),
            Value::Bool(false),
            Value::Str("é".into()),
            Value::F64(2.0),
            tags,
        ] {
            let (mut buf, mut each) = (Vec::new(), Vec::new());
            each_canonical(&v.as_ref(), &mut buf, |c| {
                each.push(c.to_vec());
                Ok(())
            })
            .unwrap();
            each.sort();
            each.dedup();
            assert_eq!(each, canonical_values(&v.as_ref()), "{v:?}");
        }
        assert_eq!(decode_canonical(b"x"), None);
        assert_eq!(decode_canonical(b"b\x02"), None);
        assert_eq!(decode_canonical(b"i123"), None);
    }
}

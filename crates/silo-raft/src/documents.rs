//! Document commands over the state machine's index: field values mapped
//! from JSON with the schema's types (refusals are [`DocRefusal`], decided
//! from the command and the state before it alone, so every node answers
//! the same), resolved into idempotent [`DocOp`]s, and the [`DocIntent`]
//! record that makes a resolved entry survive a crash half-applied.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use silo_engine::{Document, FieldType, Index, Schema};
use silo_format::Value;

use crate::error::{RaftStoreError, Result};
use crate::types::Request;

/// A document's fields as JSON (field name to value).
pub type JsonFields = BTreeMap<String, Json>;

/// Why a document command was refused (nothing of its entry is applied;
/// every node refuses it the same way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DocRefusal {
    /// The field is not in the schema.
    UnknownField {
        /// The field.
        field: String,
    },
    /// The JSON value does not fit the field's type.
    WrongType {
        /// The field.
        field: String,
        /// The schema's type (`i64`, `u64`, `f64`, `bool`, `str`, `tags`).
        expected: String,
        /// The JSON given.
        found: String,
    },
}

impl std::fmt::Display for DocRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocRefusal::UnknownField { field } => {
                write!(f, "field `{field}` is not in the index schema")
            }
            DocRefusal::WrongType {
                field,
                expected,
                found,
            } => write!(f, "field `{field}` is {expected}, got {found}"),
        }
    }
}

/// A refused document command: the document and why.
pub type Refused = (u32, DocRefusal);

/// One resolved change of a document: idempotent (applying it twice
/// leaves what applying it once does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocOp {
    /// Store document `doc` with exactly `fields` (a patch resolved against
    /// the document it changed).
    Put {
        /// The document.
        doc: u32,
        /// Its whole content.
        fields: JsonFields,
    },
    /// Remove document `doc`.
    Remove {
        /// The document.
        doc: u32,
    },
}

/// The stored intent of one entry's document commands: written (with the
/// applied id of the entries before it) before the index is touched, and
/// removed with the applied id that covers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocIntent {
    /// The entry.
    pub log_id: openraft::LogId<u64>,
    /// Its document commands, resolved.
    pub ops: Vec<DocOp>,
}

/// The fingerprint of `schema` document commands carry: the CRC32 of its
/// text form ([`Schema::to_text`]).
pub fn schema_fingerprint(schema: &Schema) -> u32 {
    crc32fast::hash(schema.to_text().as_bytes())
}

/// `json` as a value of field `field` of type `ty`; `null` is `Deleted`.
pub fn value_of(field: &str, ty: FieldType, json: &Json) -> Result<Value, DocRefusal> {
    let wrong = || DocRefusal::WrongType {
        field: field.to_owned(),
        expected: ty.name().to_owned(),
        found: json_kind(json).to_owned(),
    };
    if json.is_null() {
        return Ok(Value::Deleted);
    }
    Ok(match ty {
        FieldType::I64 => Value::I64(json.as_i64().ok_or_else(wrong)?),
        FieldType::U64 => Value::U64(json.as_u64().ok_or_else(wrong)?),
        FieldType::F64 => Value::F64(json.as_f64().ok_or_else(wrong)?),
        FieldType::Bool => Value::Bool(json.as_bool().ok_or_else(wrong)?),
        FieldType::Str => Value::Str(json.as_str().ok_or_else(wrong)?.to_owned()),
        FieldType::Tags => {
            let items = json
                .as_array()
                .ok_or_else(wrong)?
                .iter()
                .map(Json::as_i64)
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(wrong)?;
            Value::I64List {
                items,
                reset: false,
            }
        }
    })
}

/// `value` as JSON (`Deleted` and bytes, which no schema type has, as
/// `null`).
pub fn json_of(value: &Value) -> Json {
    match value {
        Value::I64(v) => Json::from(*v),
        Value::U64(v) => Json::from(*v),
        Value::F64(v) => serde_json::Number::from_f64(*v).map_or(Json::Null, Json::Number),
        Value::Bool(v) => Json::Bool(*v),
        Value::Str(v) => Json::String(v.clone()),
        Value::I64List { items, .. } => Json::Array(items.iter().map(|i| Json::from(*i)).collect()),
        _ => Json::Null,
    }
}

/// A stored document as JSON fields.
pub fn json_document(doc: &Document) -> JsonFields {
    doc.iter().map(|(k, v)| (k.clone(), json_of(v))).collect()
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_u64() => "an unsigned integer",
        Json::Number(n) if n.is_i64() => "a negative integer",
        Json::Number(_) => "a float",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// `fields` checked against `schema`: each a schema field with a value of
/// its type (`null`: `Deleted`).
fn typed(schema: &Schema, fields: &JsonFields) -> Result<Vec<(String, Value)>, DocRefusal> {
    fields
        .iter()
        .map(|(name, json)| {
            let spec = schema.field(name).ok_or_else(|| DocRefusal::UnknownField {
                field: name.clone(),
            })?;
            Ok((name.clone(), value_of(name, spec.ty, json)?))
        })
        .collect()
}

/// Resolves the document commands of `req` (its key-value commands are
/// left out) against `index` as it is before them: the ops, or the
/// refusal of the first bad one. An error is the index failing to read,
/// or a command written for another schema
/// ([`RaftStoreError::SchemaFingerprint`], for the entry at `log_index`).
pub fn resolve(
    index: &Index,
    req: &Request,
    log_index: u64,
) -> Result<Result<Vec<DocOp>, Refused>> {
    let mut overlay: HashMap<u32, Option<Document>> = HashMap::new();
    let mut ops = Vec::new();
    let at = Resolving {
        index,
        fingerprint: schema_fingerprint(index.schema()),
        log_index,
    };
    match resolve_into(&at, req, &mut overlay, &mut ops)? {
        Ok(()) => Ok(Ok(ops)),
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// What resolving one entry needs.
struct Resolving<'i> {
    index: &'i Index,
    /// The fingerprint of the index's schema.
    fingerprint: u32,
    /// The entry's log index (for errors).
    log_index: u64,
}

impl Resolving<'_> {
    /// A command written for another schema stops the node.
    fn check(&self, command: u32) -> Result<()> {
        if command == self.fingerprint {
            Ok(())
        } else {
            Err(RaftStoreError::SchemaFingerprint {
                index: self.log_index,
                command,
                node: self.fingerprint,
            })
        }
    }
}

fn resolve_into(
    at: &Resolving<'_>,
    req: &Request,
    overlay: &mut HashMap<u32, Option<Document>>,
    ops: &mut Vec<DocOp>,
) -> Result<Result<(), Refused>> {
    let index = at.index;
    let schema = index.schema();
    match req {
        Request::Put { .. } | Request::Delete { .. } => {}
        Request::Batch(reqs) => {
            for r in reqs {
                if let Err(refusal) = resolve_into(at, r, overlay, ops)? {
                    return Ok(Err(refusal));
                }
            }
        }
        Request::UpsertDoc {
            schema: fingerprint,
            doc,
            fields,
        } => {
            at.check(*fingerprint)?;
            let typed = match typed(schema, fields) {
                Ok(t) => t,
                Err(refusal) => return Ok(Err((*doc, refusal))),
            };
            let new: Document = typed
                .into_iter()
                .filter(|(_, v)| *v != Value::Deleted)
                .collect();
            ops.push(DocOp::Put {
                doc: *doc,
                fields: json_document(&new),
            });
            overlay.insert(*doc, Some(new));
        }
        Request::PatchDoc {
            schema: fingerprint,
            doc,
            fields,
        } => {
            at.check(*fingerprint)?;
            let typed = match typed(schema, fields) {
                Ok(t) => t,
                Err(refusal) => return Ok(Err((*doc, refusal))),
            };
            let mut current = match overlay.get(doc) {
                Some(d) => d.clone().unwrap_or_default(),
                None => index.get(*doc)?.unwrap_or_default(),
            };
            for (name, value) in typed {
                match value {
                    Value::Deleted => {
                        current.remove(&name);
                    }
                    Value::I64List { items, .. } => match current.get_mut(&name) {
                        Some(Value::I64List { items: old, .. }) => old.extend_from_slice(&items),
                        _ => {
                            current.insert(
                                name,
                                Value::I64List {
                                    items,
                                    reset: false,
                                },
                            );
                        }
                    },
                    v => {
                        current.insert(name, v);
                    }
                }
            }
            ops.push(DocOp::Put {
                doc: *doc,
                fields: json_document(&current),
            });
            overlay.insert(*doc, Some(current));
        }
        Request::DeleteDoc {
            schema: fingerprint,
            doc,
        } => {
            at.check(*fingerprint)?;
            ops.push(DocOp::Remove { doc: *doc });
            overlay.insert(*doc, None);
        }
    }
    Ok(Ok(()))
}

/// Applies resolved `ops` to `index`, in order. Each op is one atomic
/// batch of the index and idempotent, so a replay after a crash in the
/// middle ends where a single run does.
pub fn apply_ops(index: &Index, ops: &[DocOp]) -> Result<()> {
    for op in ops {
        match op {
            DocOp::Put { doc, fields } => {
                let typed =
                    typed(index.schema(), fields).map_err(|refusal| RaftStoreError::BadRecord {
                        what: "document intent",
                        key: crate::keys::SM_DOC_INTENT_KEY,
                        reason: refusal.to_string(),
                    })?;
                let borrowed: Vec<(&str, Value)> =
                    typed.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
                index.upsert(*doc, &borrowed)?;
            }
            DocOp::Remove { doc } => index.delete(*doc)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use silo_engine::FieldSpec;

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            FieldSpec::filter("color", FieldType::Str),
            FieldSpec::sort("price", FieldType::U64),
            FieldSpec::filter("tags", FieldType::Tags),
        ])
    }

    #[test]
    fn json_values_map_to_the_schema_types_and_back() {
        let s = schema();
        let fields: JsonFields =
            serde_json::from_str(r#"{"color":"red","price":30,"tags":[1,-2]}"#).expect("json");
        let typed = typed(&s, &fields).expect("fits");
        assert_eq!(typed[0], ("color".to_owned(), Value::Str("red".into())));
        assert_eq!(typed[1], ("price".to_owned(), Value::U64(30)));
        let back: Document = typed.into_iter().collect();
        assert_eq!(json_document(&back), fields);
    }

    #[test]
    fn bad_fields_and_types_are_refused() {
        let s = schema();
        let unknown: JsonFields = serde_json::from_str(r#"{"size":1}"#).expect("json");
        assert_eq!(
            typed(&s, &unknown),
            Err(DocRefusal::UnknownField {
                field: "size".into()
            })
        );
        let negative: JsonFields = serde_json::from_str(r#"{"price":-1}"#).expect("json");
        assert!(matches!(
            typed(&s, &negative),
            Err(DocRefusal::WrongType { ref expected, .. }) if expected == "u64"
        ));
        let tags: JsonFields = serde_json::from_str(r#"{"tags":[1,"x"]}"#).expect("json");
        assert!(matches!(
            typed(&s, &tags),
            Err(DocRefusal::WrongType { .. })
        ));
    }
}

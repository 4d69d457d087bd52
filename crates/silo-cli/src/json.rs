//! Documents and values as JSON (dumps, query results).

use serde_json::{Map, Value as Json};
use silo_engine::Document;
use silo_format::Value;

use crate::fail::{Fail, Outcome};

/// `value` as JSON; a float JSON cannot carry (NaN, an infinity) is an
/// error naming `what`, never a silent `null`.
pub(crate) fn value(value: &Value, what: &dyn Fn() -> String) -> Outcome<Json> {
    Ok(match value {
        Value::I64(v) => (*v).into(),
        Value::U64(v) => (*v).into(),
        Value::F64(v) => serde_json::Number::from_f64(*v)
            .map(Json::Number)
            .ok_or_else(|| Fail::input(format!("{} holds {v}, which JSON cannot carry", what())))?,
        Value::Bool(v) => (*v).into(),
        Value::Str(v) => v.clone().into(),
        Value::I64List { items, .. } => items.clone().into(),
        Value::Bytes(b) => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
            .into(),
        Value::Deleted => Json::Null,
    })
}

/// Document `id` as one JSON object: `"id"` then its fields.
pub(crate) fn document(id: u32, doc: &Document) -> Outcome<Json> {
    let mut object = Map::new();
    object.insert("id".into(), id.into());
    for (name, v) in doc {
        object.insert(
            name.clone(),
            value(v, &|| format!("document {id}, field `{name}`,"))?,
        );
    }
    Ok(Json::Object(object))
}

//! One JSON line to one document row, parsed straight into the schema's
//! typed values (no intermediate JSON tree, no allocation per key, strings
//! borrowed from the line where they hold no escape): an object with an
//! `"id"` (a whole number below 2^32) and schema fields, `null` meaning
//! absent. Each error names the field and what was wrong.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use silo_format::{I64ListRef, Value, ValueRef};

use crate::index::schema::{FieldType, Schema};

/// A document row: the values by schema field.
pub(crate) type Row = Vec<Option<Value>>;

/// A value as parsed from a line, its string borrowed where it can be.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Parsed<'a> {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(Cow<'a, str>),
    Tags(Vec<i64>),
}

impl Parsed<'_> {
    /// The value, borrowed, as the document encoding takes it.
    pub(crate) fn as_value_ref(&self) -> ValueRef<'_> {
        match self {
            Parsed::I64(v) => ValueRef::I64(*v),
            Parsed::U64(v) => ValueRef::U64(*v),
            Parsed::F64(v) => ValueRef::F64(*v),
            Parsed::Bool(v) => ValueRef::Bool(*v),
            Parsed::Str(v) => ValueRef::Str(v),
            Parsed::Tags(items) => ValueRef::I64List(I64ListRef::Items {
                items,
                reset: false,
            }),
        }
    }

    /// The value, owned, as a stored document holds it.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Parsed::I64(v) => Value::I64(v),
            Parsed::U64(v) => Value::U64(v),
            Parsed::F64(v) => Value::F64(v),
            Parsed::Bool(v) => Value::Bool(v),
            Parsed::Str(v) => Value::Str(v.into_owned()),
            Parsed::Tags(items) => Value::I64List {
                items,
                reset: false,
            },
        }
    }
}

/// A row as parsed from a line.
pub(crate) type ParsedRow<'a> = Vec<Option<Parsed<'a>>>;

/// Parses `text` (one JSON object) into document id and row for `schema`.
/// The error is a reason naming the field, or saying the text is not JSON.
pub(crate) fn parse_row<'a>(
    schema: &Schema,
    text: &'a [u8],
) -> Result<(u32, ParsedRow<'a>), String> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = RowSeed { schema }
        .deserialize(&mut de)
        .and_then(|row| de.end().map(|()| row));
    parsed.map_err(|e| {
        // serde_json says "at line 1 column N": the line is the file's
        // line, so only the column is kept.
        let text = e.to_string();
        let what = text
            .rfind(" at line ")
            .map_or(text.as_str(), |at| &text[..at]);
        match e.classify() {
            serde_json::error::Category::Data => format!("{what} (column {})", e.column()),
            _ => format!("not JSON: {what} (column {})", e.column()),
        }
    })
}

/// What reads a row: the schema gives the fields.
struct RowSeed<'s> {
    schema: &'s Schema,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = (u32, ParsedRow<'de>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = (u32, ParsedRow<'de>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut row: ParsedRow<'de> = vec![None; self.schema.fields.len()];
        let mut given = vec![false; self.schema.fields.len()];
        let mut id = None;
        while let Some(key) = map.next_key_seed(KeySeed {
            schema: self.schema,
        })? {
            match key {
                Key::Id => {
                    if id.is_some() {
                        return Err(de::Error::custom("`id` given twice"));
                    }
                    id = Some(map.next_value_seed(IdSeed)?);
                }
                Key::Field(i) => {
                    let spec = &self.schema.fields[i];
                    if std::mem::replace(&mut given[i], true) {
                        return Err(de::Error::custom(format!(
                            "field `{}` given twice",
                            spec.name
                        )));
                    }
                    row[i] = map.next_value_seed(FieldSeed {
                        name: &spec.name,
                        ty: spec.ty,
                    })?;
                }
            }
        }
        let id = id.ok_or_else(|| de::Error::custom("no `id`"))?;
        Ok((id, row))
    }
}

/// An object key: `id`, or a schema field by its place.
enum Key {
    Id,
    Field(usize),
}

struct KeySeed<'s> {
    schema: &'s Schema,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        if name == "id" {
            return Ok(Key::Id);
        }
        self.schema
            .fields
            .iter()
            .position(|f| f.name.len() == name.len() && f.name == name)
            .map(Key::Field)
            .ok_or_else(|| E::custom(format!("field `{name}` is not in the schema")))
    }
}

/// The document id: a whole number below 2^32.
struct IdSeed;

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = u32;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IdSeed {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an `id` that is a whole number below 2^32")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom(format!("`id` {v} is not below 2^32")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom(format!("`id` {v} is not below 2^32")))
    }
}

/// A field's value, of the field's type (`null`: absent).
struct FieldSeed<'a> {
    name: &'a str,
    ty: FieldType,
}

impl FieldSeed<'_> {
    fn wrong<E: de::Error>(&self, got: fmt::Arguments<'_>) -> E {
        E::custom(format!(
            "field `{}` takes {} values, got {got}",
            self.name,
            self.ty.name()
        ))
    }
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<Parsed<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<Parsed<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} value for field `{}`", self.ty.name(), self.name)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        match self.ty {
            FieldType::Bool => Ok(Some(Parsed::Bool(v))),
            _ => Err(self.wrong(format_args!("{v}"))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match self.ty {
            FieldType::I64 => Ok(Some(Parsed::I64(v))),
            FieldType::U64 if v >= 0 => Ok(Some(Parsed::U64(v.unsigned_abs()))),
            FieldType::F64 => Ok(Some(Parsed::F64(v as f64))),
            _ => Err(self.wrong(format_args!("{v}"))),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match self.ty {
            FieldType::U64 => Ok(Some(Parsed::U64(v))),
            FieldType::I64 => i64::try_from(v)
                .map(|v| Some(Parsed::I64(v)))
                .map_err(|_| self.wrong(format_args!("{v}"))),
            FieldType::F64 => Ok(Some(Parsed::F64(v as f64))),
            _ => Err(self.wrong(format_args!("{v}"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        match self.ty {
            FieldType::F64 => Ok(Some(Parsed::F64(v))),
            _ => Err(self.wrong(format_args!("{v}"))),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        match self.ty {
            FieldType::Str => Ok(Some(Parsed::Str(Cow::Borrowed(v)))),
            _ => Err(self.wrong(format_args!("{v:?}"))),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match self.ty {
            FieldType::Str => Ok(Some(Parsed::Str(Cow::Owned(v.to_owned())))),
            _ => Err(self.wrong(format_args!("{v:?}"))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.ty != FieldType::Tags {
            return Err(self.wrong(format_args!("a list")));
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(tag) = seq.next_element_seed(TagSeed { field: &self })? {
            items.push(tag);
        }
        Ok(Some(Parsed::Tags(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Drain it so that the error names the field, not a syntax error.
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Err(self.wrong(format_args!("an object")))
    }
}

/// One tag of a tags field: a whole number that fits an i64.
struct TagSeed<'f, 'a> {
    field: &'f FieldSeed<'a>,
}

impl<'de> DeserializeSeed<'de> for TagSeed<'_, '_> {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagSeed<'_, '_> {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer tag in field `{}`", self.field.name)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| self.field.wrong(format_args!("the tag {v}")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        Err(self.field.wrong(format_args!("the tag {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        Err(self.field.wrong(format_args!("the tag {v:?}")))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<i64, E> {
        Err(self.field.wrong(format_args!("the tag {v}")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        Err(self.field.wrong(format_args!("the tag null")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::schema::FieldSpec;

    fn schema() -> Schema {
        Schema::new(vec![
            FieldSpec::filter("color", FieldType::Str),
            FieldSpec::sort("price", FieldType::F64),
            FieldSpec::filter("size", FieldType::I64),
            FieldSpec::filter("n", FieldType::U64),
            FieldSpec::filter("ok", FieldType::Bool),
            FieldSpec::filter("tags", FieldType::Tags),
        ])
    }

    #[test]
    fn rows_parse_typed_with_nulls_absent() {
        let text = br#"{"price": 3, "id": 9, "color": "r\u00e9d", "size": -2, "n": 7, "ok": false, "tags": [1, -5]}"#;
        let (id, row) = parse_row(&schema(), text).unwrap();
        assert_eq!(id, 9);
        let values: Vec<Option<Value>> =
            row.into_iter().map(|v| v.map(Parsed::into_value)).collect();
        assert_eq!(
            values,
            vec![
                Some(Value::Str("réd".into())),
                Some(Value::F64(3.0)),
                Some(Value::I64(-2)),
                Some(Value::U64(7)),
                Some(Value::Bool(false)),
                Some(Value::I64List {
                    items: vec![1, -5],
                    reset: false
                }),
            ]
        );
        for v in values.iter().flatten() {
            let parsed = match v {
                Value::Str(s) => Parsed::Str(Cow::Borrowed(s)),
                Value::I64List { items, .. } => Parsed::Tags(items.clone()),
                Value::I64(x) => Parsed::I64(*x),
                Value::U64(x) => Parsed::U64(*x),
                Value::F64(x) => Parsed::F64(*x),
                Value::Bool(x) => Parsed::Bool(*x),
                other => panic!("{other:?}"),
            };
            assert_eq!(parsed.as_value_ref(), v.as_ref());
        }
        // A string without escapes is borrowed from the line.
        let (_, row) = parse_row(&schema(), br#"{"id": 1, "color": "red"}"#).unwrap();
        assert!(matches!(&row[0], Some(Parsed::Str(Cow::Borrowed("red")))));
        let (_, row) = parse_row(&schema(), br#"{"id": 0, "color": null} "#).unwrap();
        assert!(row.iter().all(Option::is_none));
    }

    #[test]
    fn bad_lines_name_what_is_wrong() {
        for (text, what) in [
            (r#"{"id": 1, "size": "big"}"#, "field `size` takes i64"),
            (r#"{"id": 1, "n": -1}"#, "field `n` takes u64"),
            (r#"{"id": 1, "size": 1.5}"#, "field `size`"),
            (r#"{"id": 1, "ok": 1}"#, "field `ok` takes bool"),
            (r#"{"id": 1, "color": ["a"]}"#, "field `color`"),
            (r#"{"id": 1, "color": {"a": 1}}"#, "field `color`"),
            (r#"{"id": 1, "tags": [1, "x"]}"#, "field `tags`"),
            (r#"{"id": 1, "tags": [1, 1e3]}"#, "field `tags`"),
            (r#"{"id": 1, "tags": 3}"#, "field `tags`"),
            (
                r#"{"id": 1, "colour": "red"}"#,
                "`colour` is not in the schema",
            ),
            (
                r#"{"id": 1, "color": "a", "color": "b"}"#,
                "`color` given twice",
            ),
            (r#"{"id": 1, "id": 2}"#, "`id` given twice"),
            (r#"{"size": 1}"#, "no `id`"),
            (r#"{"id": 5000000000}"#, "`id` 5000000000"),
            (r#"{"id": -1}"#, "`id` -1"),
            (r#"{"id": "1"}"#, "id"),
            ("[1, 2]", "object"),
            (r#"{"id": 1, "#, "not JSON"),
            (r#"{"id": 1} x"#, "not JSON"),
        ] {
            let err = parse_row(&schema(), text.as_bytes()).unwrap_err();
            assert!(err.contains(what), "{text}: {err}");
        }
    }
}

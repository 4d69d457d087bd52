//! The index schema: which fields documents have, their types, and which
//! are filtered on (exact values, through bitmaps) or sorted by (numeric,
//! through sort layers). Every field is stored in the document.

use silo_format::{Value, ValueRef};

use crate::error::{EngineError, Result};

/// A field's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// A signed integer.
    I64,
    /// An unsigned integer.
    U64,
    /// A float (sortable; not a filter field).
    F64,
    /// A boolean.
    Bool,
    /// A string.
    Str,
    /// A list of integer tags (multi-value: a filter matches a document
    /// holding the value among its tags).
    Tags,
}

impl FieldType {
    /// The type's name, as schemas spell it.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::I64 => "i64",
            FieldType::U64 => "u64",
            FieldType::F64 => "f64",
            FieldType::Bool => "bool",
            FieldType::Str => "str",
            FieldType::Tags => "tags",
        }
    }

    fn from_name(name: &str) -> Option<FieldType> {
        Some(match name {
            "i64" => FieldType::I64,
            "u64" => FieldType::U64,
            "f64" => FieldType::F64,
            "bool" => FieldType::Bool,
            "str" => FieldType::Str,
            "tags" => FieldType::Tags,
            _ => return None,
        })
    }

    /// Whether `value` is of this type (`Deleted` is never).
    pub(crate) fn matches(self, value: &ValueRef<'_>) -> bool {
        matches!(
            (self, value),
            (FieldType::I64, ValueRef::I64(_))
                | (FieldType::U64, ValueRef::U64(_))
                | (FieldType::F64, ValueRef::F64(_))
                | (FieldType::Bool, ValueRef::Bool(_))
                | (FieldType::Str, ValueRef::Str(_))
                | (FieldType::Tags, ValueRef::I64List(_))
        )
    }

    /// Whether a field of this type can be sorted by.
    fn sortable(self) -> bool {
        matches!(
            self,
            FieldType::I64 | FieldType::U64 | FieldType::F64 | FieldType::Bool
        )
    }

    /// Whether a field of this type can be filtered on by exact value.
    fn filterable(self) -> bool {
        !matches!(self, FieldType::F64)
    }
}

/// The name of a value's type, for messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Deleted => "deleted",
        Value::I64(_) => "i64",
        Value::U64(_) => "u64",
        Value::F64(_) => "f64",
        Value::Bool(_) => "bool",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::I64List { .. } => "tags",
    }
}

/// One field of a schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// The field's name.
    pub name: String,
    /// Its type.
    pub ty: FieldType,
    /// Filtered on by exact value (`Eq`, `In`, `NotEq`, `NotIn`), counted
    /// in facets.
    pub filter: bool,
    /// Sorted by, and filtered on by `Range`.
    pub sort: bool,
}

impl FieldSpec {
    /// A stored field, neither filtered on nor sorted by.
    pub fn stored(name: &str, ty: FieldType) -> FieldSpec {
        FieldSpec {
            name: name.to_owned(),
            ty,
            filter: false,
            sort: false,
        }
    }

    /// A filter field.
    pub fn filter(name: &str, ty: FieldType) -> FieldSpec {
        FieldSpec {
            filter: true,
            ..FieldSpec::stored(name, ty)
        }
    }

    /// A sort field.
    pub fn sort(name: &str, ty: FieldType) -> FieldSpec {
        FieldSpec {
            sort: true,
            ..FieldSpec::stored(name, ty)
        }
    }
}

/// The fields of an index's documents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Schema {
    /// The fields, each name once.
    pub fields: Vec<FieldSpec>,
}

impl Schema {
    /// A schema of `fields`.
    pub fn new(fields: Vec<FieldSpec>) -> Schema {
        Schema { fields }
    }

    /// Checks names (unique, 1 to 255 bytes, no `:` or newline) and that
    /// each filter and sort field has a type that allows it.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for f in &self.fields {
            let bad = |reason: String| EngineError::InvalidArgument {
                name: "schema",
                reason,
            };
            if f.name.is_empty()
                || f.name.len() > crate::registry::MAX_FIELD_NAME
                || f.name.contains([':', '\n'])
            {
                return Err(bad(format!(
                    "field name `{}`: 1 to 255 bytes, no `:` or newline",
                    f.name
                )));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(bad(format!("field `{}` named twice", f.name)));
            }
            if f.sort && !f.ty.sortable() {
                return Err(bad(format!(
                    "field `{}` of type {} cannot be a sort field",
                    f.name,
                    f.ty.name()
                )));
            }
            if f.filter && !f.ty.filterable() {
                return Err(bad(format!(
                    "field `{}` of type {} cannot be a filter field (filter f64 with a range on a sort field)",
                    f.name,
                    f.ty.name()
                )));
            }
        }
        Ok(())
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The schema as text, one field a line: `name:type:flags` (flags `f`
    /// filter, `s` sort), as the index keeps it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.fields {
            let flags = match (f.filter, f.sort) {
                (true, true) => "fs",
                (true, false) => "f",
                (false, true) => "s",
                (false, false) => "",
            };
            out.push_str(&format!("{}:{}:{}\n", f.name, f.ty.name(), flags));
        }
        out
    }

    /// Parses [`Schema::to_text`]'s form.
    pub fn from_text(text: &str) -> Result<Schema> {
        let mut fields = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let bad = || EngineError::InvalidArgument {
                name: "schema",
                reason: format!("line {}: `{line}` is not `name:type:flags`", n + 1),
            };
            let mut parts = line.rsplitn(3, ':');
            let (Some(flags), Some(ty), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let ty = FieldType::from_name(ty).ok_or_else(bad)?;
            if !flags.chars().all(|c| c == 'f' || c == 's') {
                return Err(bad());
            }
            fields.push(FieldSpec {
                name: name.to_owned(),
                ty,
                filter: flags.contains('f'),
                sort: flags.contains('s'),
            });
        }
        let schema = Schema { fields };
        schema.validate()?;
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_round_trip_through_text_and_bad_ones_are_refused() {
        let s = Schema::new(vec![
            FieldSpec::filter("color", FieldType::Str),
            FieldSpec {
                sort: true,
                ..FieldSpec::filter("year", FieldType::I64)
            },
            FieldSpec::sort("score", FieldType::F64),
            FieldSpec::filter("tags", FieldType::Tags),
            FieldSpec::stored("title", FieldType::Str),
        ]);
        s.validate().unwrap();
        assert_eq!(Schema::from_text(&s.to_text()).unwrap(), s);
        for bad in [
            vec![FieldSpec::sort("t", FieldType::Str)],
            vec![FieldSpec::filter("f", FieldType::F64)],
            vec![FieldSpec::stored("", FieldType::I64)],
            vec![FieldSpec::stored("a:b", FieldType::I64)],
            vec![
                FieldSpec::stored("a", FieldType::I64),
                FieldSpec::stored("a", FieldType::U64),
            ],
        ] {
            assert!(Schema::new(bad.clone()).validate().is_err(), "{bad:?}");
        }
        assert!(Schema::from_text("a:i32:f\n").is_err());
        assert!(Schema::from_text("a:i64:x\n").is_err());
        assert!(Schema::from_text("nocolons\n").is_err());
    }
}

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

impl Schema {
    /// Parses a schema written in TOML: one `[[field]]` table per field, in
    /// order, each with a `name`, a `type` (`i64`, `u64`, `f64`, `bool`,
    /// `str`, `tags`) and optional `filter` and `sort` booleans (false if
    /// left out). Any other key is an error naming it.
    ///
    /// ```
    /// use silo_engine::{FieldType, Schema};
    /// let schema = Schema::from_toml(r#"
    ///     [[field]]
    ///     name = "color"
    ///     type = "str"
    ///     filter = true
    ///
    ///     [[field]]
    ///     name = "price"
    ///     type = "f64"
    ///     sort = true
    /// "#)?;
    /// assert_eq!(schema.fields[1].ty, FieldType::F64);
    /// assert_eq!(Schema::from_toml(&schema.to_toml())?, schema);
    /// # Ok::<(), silo_engine::EngineError>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Schema> {
        let bad = |reason: String| EngineError::InvalidArgument {
            name: "schema",
            reason,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad(format!("not TOML: {}", e.message())))?;
        if let Some(other) = table.keys().find(|k| *k != "field") {
            return Err(bad(format!(
                "unknown key `{other}` (fields are `[[field]]` tables)"
            )));
        }
        let Some(list) = table.get("field") else {
            return Err(bad("no `[[field]]` table".to_owned()));
        };
        let list = list
            .as_array()
            .ok_or_else(|| bad("`field` must be an array of tables (`[[field]]`)".to_owned()))?;
        let mut fields = Vec::with_capacity(list.len());
        for (n, entry) in list.iter().enumerate() {
            let at = n + 1;
            let entry = entry
                .as_table()
                .ok_or_else(|| bad(format!("field {at}: not a table")))?;
            if let Some(other) = entry
                .keys()
                .find(|k| !matches!(k.as_str(), "name" | "type" | "filter" | "sort"))
            {
                return Err(bad(format!("field {at}: unknown key `{other}`")));
            }
            let text_of = |key: &str| -> Result<&str> {
                entry
                    .get(key)
                    .ok_or_else(|| bad(format!("field {at}: no `{key}`")))?
                    .as_str()
                    .ok_or_else(|| bad(format!("field {at}: `{key}` must be a string")))
            };
            let flag = |key: &str| -> Result<bool> {
                entry.get(key).map_or(Ok(false), |v| {
                    v.as_bool()
                        .ok_or_else(|| bad(format!("field {at}: `{key}` must be true or false")))
                })
            };
            let name = text_of("name")?;
            let ty = text_of("type")?;
            let ty = FieldType::from_name(ty).ok_or_else(|| {
                bad(format!(
                    "field `{name}`: unknown type `{ty}` (i64, u64, f64, bool, str or tags)"
                ))
            })?;
            fields.push(FieldSpec {
                name: name.to_owned(),
                ty,
                filter: flag("filter")?,
                sort: flag("sort")?,
            });
        }
        let schema = Schema { fields };
        schema.validate()?;
        Ok(schema)
    }

    /// The schema in the TOML form [`Schema::from_toml`] reads.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for f in &self.fields {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str("[[field]]\n");
            out.push_str(&format!("name = {}\n", toml::Value::String(f.name.clone())));
            out.push_str(&format!("type = \"{}\"\n", f.ty.name()));
            if f.filter {
                out.push_str("filter = true\n");
            }
            if f.sort {
                out.push_str("sort = true\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_schemas_round_trip_and_bad_ones_name_the_problem() {
        let s = Schema::new(vec![
            FieldSpec::filter("color \"quoted\"", FieldType::Str),
            FieldSpec {
                sort: true,
                ..FieldSpec::filter("year", FieldType::I64)
            },
            FieldSpec::sort("score", FieldType::F64),
            FieldSpec::stored("title", FieldType::Str),
        ]);
        assert_eq!(Schema::from_toml(&s.to_toml()).unwrap(), s);
        for (text, what) in [
            ("[[field]\n", "not TOML"),
            ("x = 1\n", "unknown key `x`"),
            ("", "no `[[field]]`"),
            ("field = 3\n", "array of tables"),
            ("field = [1]\n", "not a table"),
            ("[[field]]\ntype = \"str\"\n", "no `name`"),
            ("[[field]]\nname = \"a\"\n", "no `type`"),
            (
                "[[field]]\nname = 1\ntype = \"str\"\n",
                "`name` must be a string",
            ),
            (
                "[[field]]\nname = \"a\"\ntype = \"i32\"\n",
                "unknown type `i32`",
            ),
            (
                "[[field]]\nname = \"a\"\ntype = \"str\"\nfilter = 1\n",
                "`filter` must be",
            ),
            (
                "[[field]]\nname = \"a\"\ntype = \"str\"\nindexed = true\n",
                "unknown key `indexed`",
            ),
            (
                "[[field]]\nname = \"a\"\ntype = \"str\"\nsort = true\n",
                "cannot be a sort field",
            ),
        ] {
            match Schema::from_toml(text) {
                Err(EngineError::InvalidArgument { reason, .. }) => {
                    assert!(reason.contains(what), "{text:?}: {reason}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

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

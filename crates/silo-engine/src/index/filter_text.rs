//! Filters written as text, for people (the `silo query` command):
//!
//! ```text
//! filter  := or
//! or      := and ( "or" and )*
//! and     := unary ( "and" unary )*
//! unary   := "not" unary | "(" filter ")" | "all" | test
//! test    := FIELD ( "=" | "!=" ) value
//!          | FIELD ( "<" | "<=" | ">" | ">=" ) value
//!          | FIELD [ "not" ] "in" "(" value ( "," value )* ")"
//! value   := a number | "a string" | a bare word | true | false
//! ```
//!
//! Keywords are case-insensitive. A value takes the type of its field in
//! the schema: `price > 10` compares an f64 field with 10.0, `color = red`
//! a string field with "red", `tags = 5` a tags field with the tag 5.
//! `=`, `!=` and `in` need a filter field, the comparisons a sort field.
//! A string with spaces or symbols is quoted (`"dark blue"`, `\"` and `\\`
//! escape). Every error names the column (from 1) where it was found.
//!
//! ```
//! use silo_engine::{FieldSpec, FieldType, Filter, Schema};
//! use silo_format::Value;
//! let schema = Schema::new(vec![
//!     FieldSpec::filter("color", FieldType::Str),
//!     FieldSpec::filter("tags", FieldType::Tags),
//! ]);
//! let f = Filter::parse("tags = 5 and not color in (red, \"dark blue\")", &schema)?;
//! assert_eq!(f, Filter::And(vec![
//!     Filter::Eq("tags".into(), Value::I64(5)),
//!     Filter::Not(Box::new(Filter::In("color".into(), vec![
//!         Value::Str("red".into()),
//!         Value::Str("dark blue".into()),
//!     ]))),
//! ]));
//! assert!(Filter::parse("tags = ", &schema).is_err());
//! # Ok::<(), silo_engine::EngineError>(())
//! ```

use std::ops::Bound;

use silo_format::Value;

use crate::error::{EngineError, Result};
use crate::index::query::Filter;
use crate::index::schema::{FieldSpec, FieldType, Schema};

/// A token and the column it starts at.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A bare word: a field name, keyword, number or unquoted value.
    Word(String),
    /// A quoted string.
    Quoted(String),
    /// `(`, `)`, `,`, `=`, `!=`, `<`, `<=`, `>`, `>=`.
    Symbol(&'static str),
}

fn syntax(column: usize, reason: impl Into<String>) -> EngineError {
    EngineError::QuerySyntax {
        column,
        reason: reason.into(),
    }
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    // The column of a byte offset, counted on from the last one asked for
    // (offsets only grow): linear in the text, however many tokens.
    let mut counted = (0usize, 1usize);
    let mut column = |byte: usize| {
        counted.1 += text[counted.0..byte].chars().count();
        counted.0 = byte;
        counted.1
    };
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let col = column(at);
        let symbol = match c {
            '(' => Some("("),
            ')' => Some(")"),
            ',' => Some(","),
            '=' => Some("="),
            '!' | '<' | '>' => {
                chars.next();
                let eq = chars.next_if(|(_, c)| *c == '=').is_some();
                let s = match (c, eq) {
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => return Err(syntax(col, "`!` must be followed by `=`")),
                };
                out.push((col, Token::Symbol(s)));
                continue;
            }
            _ => None,
        };
        if let Some(s) = symbol {
            chars.next();
            out.push((col, Token::Symbol(s)));
            continue;
        }
        if c == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(syntax(col, "a string that is never closed")),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, e @ ('"' | '\\'))) => s.push(e),
                        Some((e_at, _)) => {
                            return Err(syntax(column(e_at), "only `\\\"` and `\\\\` escape"));
                        }
                        None => return Err(syntax(col, "a string that is never closed")),
                    },
                    Some((_, ch)) => s.push(ch),
                }
            }
            out.push((col, Token::Quoted(s)));
            continue;
        }
        let mut word = String::new();
        while let Some((_, ch)) =
            chars.next_if(|(_, ch)| !ch.is_whitespace() && !"(),=!<>\"".contains(*ch))
        {
            word.push(ch);
        }
        out.push((col, Token::Word(word)));
    }
    Ok(out)
}

/// How deep `not` and parentheses may nest in a filter written as text.
pub const MAX_FILTER_DEPTH: usize = 64;

struct Parser<'s> {
    tokens: Vec<(usize, Token)>,
    at: usize,
    /// The column just past the text, for "ended early" errors.
    end: usize,
    schema: &'s Schema,
    /// `not`s and parentheses open around the token being parsed.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(c, _)| *c)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn symbol(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Token::Symbol(t)) if *t == s)
    }

    fn expect_symbol(&mut self, s: &str) -> Result<()> {
        if self.symbol(s) {
            self.at += 1;
            Ok(())
        } else {
            Err(syntax(self.column(), format!("expected `{s}`")))
        }
    }

    fn or(&mut self) -> Result<Filter> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Filter> {
        let mut parts = vec![self.unary()?];
        while self.keyword("and") {
            self.at += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Filter> {
        if self.keyword("all") {
            self.at += 1;
            return Ok(Filter::All);
        }
        let not = self.keyword("not");
        if !not && !self.symbol("(") {
            return self.test();
        }
        // The parser recurses here: bound it, so that no text can
        // overflow the stack (here, or in evaluating or dropping the filter).
        if self.depth == MAX_FILTER_DEPTH {
            return Err(syntax(
                self.column(),
                format!("`not` and parentheses nested deeper than {MAX_FILTER_DEPTH}"),
            ));
        }
        self.depth += 1;
        self.at += 1;
        let inner = if not {
            Filter::Not(Box::new(self.unary()?))
        } else {
            let inner = self.or()?;
            self.expect_symbol(")")?;
            inner
        };
        self.depth -= 1;
        Ok(inner)
    }

    fn test(&mut self) -> Result<Filter> {
        let col = self.column();
        let name = match self.peek() {
            Some(Token::Word(w) | Token::Quoted(w)) => w.clone(),
            Some(Token::Symbol(s)) => {
                return Err(syntax(col, format!("expected a field, found `{s}`")));
            }
            None => return Err(syntax(col, "expected a field, found the end")),
        };
        let spec = self
            .schema
            .field(&name)
            .ok_or_else(|| syntax(col, format!("field `{name}` is not in the schema")))?;
        self.at += 1;
        let negated = self.keyword("not");
        if negated {
            self.at += 1;
            if !self.keyword("in") {
                return Err(syntax(self.column(), "expected `in` after `not`"));
            }
        }
        if self.keyword("in") {
            self.at += 1;
            need(spec.filter, col, &name, "filter")?;
            self.expect_symbol("(")?;
            let mut values = vec![self.value(spec)?];
            while self.symbol(",") {
                self.at += 1;
                values.push(self.value(spec)?);
            }
            self.expect_symbol(")")?;
            return Ok(if negated {
                Filter::NotIn(name, values)
            } else {
                Filter::In(name, values)
            });
        }
        let op_col = self.column();
        let op = match self.peek() {
            Some(Token::Symbol(s)) if !matches!(*s, "(" | ")" | ",") => *s,
            _ => {
                return Err(syntax(
                    op_col,
                    "expected `=`, `!=`, `<`, `<=`, `>`, `>=` or `in`",
                ));
            }
        };
        self.at += 1;
        let value = self.value(spec)?;
        match op {
            "=" | "!=" => {
                need(spec.filter, col, &name, "filter")?;
                Ok(if op == "=" {
                    Filter::Eq(name, value)
                } else {
                    Filter::NotEq(name, value)
                })
            }
            _ => {
                need(spec.sort, col, &name, "sort")?;
                let (lo, hi) = match op {
                    "<" => (Bound::Unbounded, Bound::Excluded(value)),
                    "<=" => (Bound::Unbounded, Bound::Included(value)),
                    ">" => (Bound::Excluded(value), Bound::Unbounded),
                    _ => (Bound::Included(value), Bound::Unbounded),
                };
                Ok(Filter::Range {
                    field: name,
                    lo,
                    hi,
                })
            }
        }
    }

    /// A value of `spec`'s type (a tag, for a tags field).
    fn value(&mut self, spec: &FieldSpec) -> Result<Value> {
        let col = self.column();
        let (text, quoted) = match self.peek() {
            Some(Token::Word(w)) => (w.clone(), false),
            Some(Token::Quoted(q)) => (q.clone(), true),
            Some(Token::Symbol(s)) => {
                return Err(syntax(col, format!("expected a value, found `{s}`")));
            }
            None => return Err(syntax(col, "expected a value, found the end")),
        };
        self.at += 1;
        let wrong = || {
            syntax(
                col,
                format!(
                    "field `{}` takes {} values, got `{text}`",
                    spec.name,
                    match spec.ty {
                        FieldType::Tags => "integer tag",
                        ty => ty.name(),
                    }
                ),
            )
        };
        if quoted && spec.ty != FieldType::Str {
            return Err(wrong());
        }
        Ok(match spec.ty {
            FieldType::Str => Value::Str(text.clone()),
            FieldType::I64 | FieldType::Tags => Value::I64(text.parse().map_err(|_| wrong())?),
            FieldType::U64 => Value::U64(text.parse().map_err(|_| wrong())?),
            FieldType::F64 => {
                let v: f64 = text.parse().map_err(|_| wrong())?;
                if !v.is_finite() {
                    return Err(wrong());
                }
                Value::F64(v)
            }
            FieldType::Bool => match text.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(wrong()),
            },
        })
    }
}

fn need(ok: bool, column: usize, field: &str, kind: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(syntax(
            column,
            format!("field `{field}` is not a {kind} field of the schema"),
        ))
    }
}

impl Filter {
    /// Parses a filter written as text against `schema` (the syntax is in
    /// the module documentation of `index::filter_text`, and in
    /// `silo query --help`). An error is [`EngineError::QuerySyntax`] with
    /// the column where it was found.
    pub fn parse(text: &str, schema: &Schema) -> Result<Filter> {
        let tokens = tokens(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            end: text.chars().count() + 1,
            depth: 0,
            schema,
        };
        if p.tokens.is_empty() {
            return Err(syntax(
                1,
                "an empty filter (write `all` for every document)",
            ));
        }
        let f = p.or()?;
        if p.at < p.tokens.len() {
            return Err(syntax(
                p.column(),
                "expected `and`, `or` or the end".to_owned(),
            ));
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            FieldSpec::filter("color", FieldType::Str),
            FieldSpec::filter("tags", FieldType::Tags),
            FieldSpec::filter("ok", FieldType::Bool),
            FieldSpec {
                sort: true,
                ..FieldSpec::filter("n", FieldType::U64)
            },
            FieldSpec::sort("price", FieldType::F64),
            FieldSpec::sort("year", FieldType::I64),
            FieldSpec::stored("title", FieldType::Str),
        ])
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn filters_parse_with_precedence_and_typed_values() {
        let p = |t: &str| Filter::parse(t, &schema()).unwrap();
        let eq = |f: &str, v: Value| Filter::Eq(f.into(), v);
        assert_eq!(p("all"), Filter::All);
        assert_eq!(p("color = red"), eq("color", s("red")));
        assert_eq!(
            p(r#"color="dark \"blue\" \\""#),
            eq("color", s(r#"dark "blue" \"#))
        );
        // `and` binds tighter than `or`.
        assert_eq!(
            p("tags = 1 or ok = TRUE and n != 3"),
            Filter::Or(vec![
                eq("tags", Value::I64(1)),
                Filter::And(vec![
                    eq("ok", Value::Bool(true)),
                    Filter::NotEq("n".into(), Value::U64(3)),
                ]),
            ])
        );
        assert_eq!(
            p("(tags = 1 or tags = -2) and not color in (red, \"blue\")"),
            Filter::And(vec![
                Filter::Or(vec![eq("tags", Value::I64(1)), eq("tags", Value::I64(-2))]),
                Filter::Not(Box::new(Filter::In(
                    "color".into(),
                    vec![s("red"), s("blue")]
                ))),
            ])
        );
        assert_eq!(
            p("color NOT IN (red)"),
            Filter::NotIn("color".into(), vec![s("red")])
        );
        let range = |f: &str, lo, hi| Filter::Range {
            field: f.into(),
            lo,
            hi,
        };
        assert_eq!(
            p("price > 1.5 AND price <= 10 and year < -3 and n >= 7"),
            Filter::And(vec![
                range("price", Bound::Excluded(Value::F64(1.5)), Bound::Unbounded),
                range("price", Bound::Unbounded, Bound::Included(Value::F64(10.0))),
                range("year", Bound::Unbounded, Bound::Excluded(Value::I64(-3))),
                range("n", Bound::Included(Value::U64(7)), Bound::Unbounded),
            ])
        );
        assert_eq!(
            p("NOT not ok = false"),
            Filter::Not(Box::new(Filter::Not(Box::new(eq(
                "ok",
                Value::Bool(false)
            )))))
        );
    }

    #[test]
    fn errors_name_the_column() {
        for (text, column, what) in [
            ("", 1, "empty"),
            ("   ", 1, "empty"),
            ("colour = red", 1, "`colour` is not in the schema"),
            ("color", 6, "expected `=`"),
            ("color = ", 9, "expected a value"),
            ("color = ,", 9, "expected a value, found `,`"),
            ("= red", 1, "expected a field, found `=`"),
            ("color = red and", 16, "expected a field, found the end"),
            ("tags = x", 8, "integer tag"),
            ("n = -1", 5, "u64"),
            ("price = 3", 1, "not a filter field"),
            ("color > a", 1, "not a sort field"),
            ("title = a", 1, "not a filter field"),
            ("title in (a)", 1, "not a filter field"),
            ("ok = maybe", 6, "bool"),
            ("tags = \"5\"", 8, "integer tag"),
            ("(color = red", 13, "expected `)`"),
            ("color = red blue", 13, "expected `and`"),
            ("color ! red", 7, "`!`"),
            ("color = \"red", 9, "never closed"),
            ("color = \"r\\ed\"", 12, "escape"),
            ("color in red", 10, "expected `(`"),
            ("color in (red", 14, "expected `)`"),
            ("color not = red", 11, "expected `in`"),
            ("price > nan", 9, "f64"),
            ("é = 1 and x", 1, "not in the schema"),
            ("color = é and x", 15, "not in the schema"),
        ] {
            match Filter::parse(text, &schema()) {
                Err(EngineError::QuerySyntax { column: c, reason }) => {
                    assert_eq!(c, column, "{text}: {reason}");
                    assert!(reason.contains(what), "{text}: {reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
        let deep = |n: usize| format!("{}color = red{}", "(".repeat(n), ")".repeat(n));
        assert!(Filter::parse(&deep(MAX_FILTER_DEPTH), &schema()).is_ok());
        for text in [
            deep(MAX_FILTER_DEPTH + 1),
            deep(1_000_000),
            format!("{}color = red", "not ".repeat(1_000_000)),
        ] {
            match Filter::parse(&text, &schema()) {
                Err(EngineError::QuerySyntax { reason, .. }) => {
                    assert!(reason.contains("nested deeper"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

//! Queries: filter expressions, sort, limit and cursor, and their results.

use std::ops::Bound;

use silo_format::Value;

use crate::bitmap::{Order, SortCursor};

/// A filter over an index's documents. Field names must be filter fields
/// (`Eq`, `In`, `NotEq`, `NotIn`) or sort fields (`Range`) of the schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every document.
    All,
    /// The field holds the value (for a tags field: among its tags).
    Eq(String, Value),
    /// The field holds one of the values.
    In(String, Vec<Value>),
    /// Documents for which `Eq` does not hold (those without the field
    /// included).
    NotEq(String, Value),
    /// Documents for which `In` does not hold.
    NotIn(String, Vec<Value>),
    /// The field's value is within the bounds (documents without a value
    /// are outside every range).
    Range {
        /// A sort field.
        field: String,
        /// The lower bound.
        lo: Bound<Value>,
        /// The upper bound.
        hi: Bound<Value>,
    },
    /// Every filter holds (`And(vec![])` is every document).
    And(Vec<Filter>),
    /// Some filter holds (`Or(vec![])` is none).
    Or(Vec<Filter>),
    /// The filter does not hold.
    Not(Box<Filter>),
}

/// Where a page of results ended; give it back to get the next page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// After this value and document, in a sorted query.
    Sorted(SortCursor),
    /// After this document, in an unsorted query (document id order).
    Id(u32),
}

/// A query: which documents, in what order, how many, from where, and
/// which stored fields to return with each.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// Which documents.
    pub filter: Filter,
    /// A sort field and order; `None`: document id order. A sorted query
    /// returns only documents that have a value in the sort field.
    pub sort: Option<(String, Order)>,
    /// At most this many hits.
    pub limit: usize,
    /// Continue after the end of an earlier page.
    pub cursor: Option<Cursor>,
    /// Stored fields to return with each hit.
    pub fields: Vec<String>,
}

impl Query {
    /// The first `limit` documents matching `filter`, in id order.
    pub fn new(filter: Filter, limit: usize) -> Query {
        Query {
            filter,
            sort: None,
            limit,
            cursor: None,
            fields: Vec::new(),
        }
    }

    /// The same query sorted by `field` in `order`.
    pub fn sorted_by(mut self, field: &str, order: Order) -> Query {
        self.sort = Some((field.to_owned(), order));
        self
    }

    /// The same query returning the stored `fields` with each hit.
    pub fn with_fields(mut self, fields: &[&str]) -> Query {
        self.fields = fields.iter().map(|f| (*f).to_owned()).collect();
        self
    }

    /// The same query continuing after `cursor`.
    pub fn after(mut self, cursor: Option<Cursor>) -> Query {
        self.cursor = cursor;
        self
    }
}

/// One document of a result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The document.
    pub doc: u32,
    /// The asked-for stored fields, in the order asked (`None`: the
    /// document lacks the field).
    pub fields: Vec<Option<Value>>,
}

/// A page of results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryResult {
    /// The hits, in order.
    pub hits: Vec<Hit>,
    /// Where the next page starts; `None` once a page comes back short.
    pub next: Option<Cursor>,
}

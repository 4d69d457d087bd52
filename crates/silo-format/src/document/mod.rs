//! Documents: a set of fields, field id `u16` to value, sorted by id with
//! unique ids, and the merge rules that combine an older and a newer one.
//!
//! ```text
//! document = version u8 (1) | field_count u16 | fields
//! field    = field_id u16 | type u8 | flags u8 | value
//! ```
//!
//! | type | code | value bytes |
//! |---|---|---|
//! | Deleted | 0 | none (a marker meaning "remove this field") |
//! | I64 | 1 | 8 |
//! | U64 | 2 | 8 |
//! | F64 | 3 | 8, IEEE 754 bits |
//! | Bool | 4 | 1, 0 or 1 only |
//! | Str | 5 | `len u32` + UTF-8 |
//! | Bytes | 6 | `len u32` + bytes |
//! | I64List | 7 | `count u32` + `count * 8` |
//!
//! Flags bit 0 is RESET, valid only on I64List: the list replaces, rather
//! than extends, the field's older value. See [`merge`] for the rules.

mod decode;
mod encode;
mod merge;
mod value;

pub use decode::{DocumentRef, Fields};
pub use encode::{DocumentWriter, encode_document};
pub use merge::{compact, merge};
pub use value::{
    FLAG_RESET, I64ListIter, I64ListRef, TYPE_BOOL, TYPE_BYTES, TYPE_DELETED, TYPE_F64, TYPE_I64,
    TYPE_I64_LIST, TYPE_STR, TYPE_U64, Value, ValueRef,
};

/// The document encoding version this build reads and writes.
pub const DOC_VERSION: u8 = 1;
/// Offset of the version byte within a document.
pub const DOC_VERSION_OFFSET: usize = 0;
/// Offset of the `u16` field count within a document.
pub const DOC_COUNT_OFFSET: usize = DOC_VERSION_OFFSET + 1;
/// Offset of the first field within a document.
pub const DOC_FIELDS_OFFSET: usize = DOC_COUNT_OFFSET + 2;
/// Length of the document header (version and field count).
pub const DOC_HEADER_LEN: usize = DOC_FIELDS_OFFSET;
/// Offset of the `u16` field id within a field.
pub const FIELD_ID_OFFSET: usize = 0;
/// Offset of the type byte within a field.
pub const FIELD_TYPE_OFFSET: usize = FIELD_ID_OFFSET + 2;
/// Offset of the flags byte within a field.
pub const FIELD_FLAGS_OFFSET: usize = FIELD_TYPE_OFFSET + 1;
/// Offset of the value within a field.
pub const FIELD_VALUE_OFFSET: usize = FIELD_FLAGS_OFFSET + 1;
/// Length of a field header (id, type, flags).
pub const FIELD_HEADER_LEN: usize = FIELD_VALUE_OFFSET;

#[cfg(test)]
mod tests;

//! How the bitmap, document and index layers share the engine's `u64`
//! keys. The top 16 bits name a field, the low 48 bits a value within it
//! (silo-format's bitmap keys):
//!
//! | field | holds | value part |
//! |---|---|---|
//! | 0 ([`REGISTRY_FIELD`]) | the field registry: one entry per field | the field's id |
//! | 1 ..= 0xFFFD | user fields: one bitmap per value (or per bit, for sort layers) | the value |
//! | 0xFFFE ([`SYSTEM_FIELD`]) | system entries: 0 the alive bitmap, 1 an index's schema | the entry's number |
//! | 0xFFFF ([`DOC_FIELD`]) | documents | the document id |
//!
//! One engine holds them all, so that a document and its bitmaps change in
//! one (cross-shard) batch.

use silo_format::bitmap::BITMAP_VALUE_MAX;
use silo_format::{bitmap_key, split_bitmap_key};

use crate::error::{EngineError, Result};

/// The field whose keys hold the registry's entries.
pub const REGISTRY_FIELD: u16 = 0;
/// The first id given to a user field.
pub const FIRST_USER_FIELD: u16 = 1;
/// The last id given to a user field.
pub const LAST_USER_FIELD: u16 = 0xFFFD;
/// The field of the system bitmaps.
pub const SYSTEM_FIELD: u16 = 0xFFFE;
/// The field whose keys hold documents.
pub const DOC_FIELD: u16 = 0xFFFF;
/// The system bitmap of the documents that exist.
pub const ALIVE_BITMAP: u64 = 0;
/// The system entry holding an index's schema (text).
pub const SCHEMA_ENTRY: u64 = 1;

/// What a key holds, by its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Registry,
    Bitmap,
    Document,
}

/// What `key` holds.
pub(crate) fn kind_of(key: u64) -> KeyKind {
    match split_bitmap_key(key).0 {
        REGISTRY_FIELD => KeyKind::Registry,
        DOC_FIELD => KeyKind::Document,
        _ => KeyKind::Bitmap,
    }
}

/// The key of `(field, value)`; a value of 2^48 or more is refused.
pub(crate) fn key(field: u16, value: u64) -> Result<u64> {
    bitmap_key(field, value).map_err(|_| EngineError::InvalidArgument {
        name: "value",
        reason: format!("{value} is over the largest bitmap value {BITMAP_VALUE_MAX}"),
    })
}

/// The key of the alive bitmap.
pub(crate) fn alive_key() -> u64 {
    (u64::from(SYSTEM_FIELD) << silo_format::bitmap::BITMAP_VALUE_BITS) | ALIVE_BITMAP
}

/// The key of document `doc`.
pub fn doc_key(doc: u32) -> u64 {
    (u64::from(DOC_FIELD) << silo_format::bitmap::BITMAP_VALUE_BITS) | u64::from(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fall_in_their_field_and_kind() {
        assert_eq!(kind_of(key(REGISTRY_FIELD, 5).unwrap()), KeyKind::Registry);
        assert_eq!(kind_of(key(FIRST_USER_FIELD, 0).unwrap()), KeyKind::Bitmap);
        assert_eq!(kind_of(key(LAST_USER_FIELD, 9).unwrap()), KeyKind::Bitmap);
        assert_eq!(
            kind_of(key(SYSTEM_FIELD, ALIVE_BITMAP).unwrap()),
            KeyKind::Bitmap
        );
        assert_eq!(kind_of(doc_key(u32::MAX)), KeyKind::Document);
        assert_eq!(doc_key(7), 0xFFFF_0000_0000_0007);
        assert_eq!(alive_key(), key(SYSTEM_FIELD, ALIVE_BITMAP).unwrap());
        assert_eq!(key(3, 1 << 20).unwrap(), (3 << 48) | (1 << 20));
        assert!(matches!(
            key(3, 1 << 48),
            Err(EngineError::InvalidArgument { name: "value", .. })
        ));
    }
}

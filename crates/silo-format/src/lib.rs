//! Silo's on-disk encodings: file headers, log frames, data records, index
//! entries, bitmap ops and documents. Pure functions over byte slices; no I/O.
//!
//! Numbers are little-endian. Every byte is described in `docs/FORMAT.md`;
//! a test checks that the constants that document names match this crate.
//!
//! | module | holds |
//! |---|---|
//! | [`header`] | the 64-byte header every file starts with |
//! | [`frame`] | log frames and the [`FrameReader`] |
//! | [`record`] | data records |
//! | [`index_entry`] | hash index slots and the key hash |
//! | [`manifest`] | the manifest |
//! | [`bitmap`] | bitmap keys, bit ops and frozen bitmaps |
//! | [`document`] | documents and their merge rules |
//! | [`le`] | little-endian integer newtypes for fixed layouts |
//! | [`error`] | [`FormatError`] |

#![forbid(unsafe_code)]

pub mod bitmap;
pub mod document;
pub mod error;
pub mod frame;
pub mod header;
pub mod index_entry;
pub mod le;
pub mod manifest;
pub mod record;

pub use bitmap::{
    BIT_OP_LEN, BIT_OP_UNION, BitOp, apply_bit_ops, apply_bitmap_operand, bitmap_key,
    decode_bit_ops, deserialize_bitmap, encode_bit_op, encode_bit_ops, encode_union_operand,
    serialize_bitmap, split_bitmap_key,
};
pub use document::{
    DocumentRef, DocumentWriter, I64ListRef, Value, ValueRef, compact, encode_document, merge,
};
pub use error::FormatError;
pub use frame::{
    DEFAULT_MAX_PAYLOAD, FRAME_HEADER_LEN, FRAME_OVERHEAD, FRAME_TRAILER_LEN, Frame, FrameReader,
    LogEnd, StopReason, Tag, decode_frame, encode_frame, frame_len, frame_parts, last_nonzero,
};
pub use header::{FORMAT_VERSION, FileHeader, FileKind, HEADER_LEN};
pub use index_entry::{
    ENTRY_KEY_OFFSET, ENTRY_LOC_OFFSET, INDEX_ENTRY_LEN, KEY_CHECK_SALT, LOC_DELETED, LOC_EMPTY,
    Loc, SLOTS_PER_BUCKET, decode_entry, encode_entry, hash_key, key_check, slot_offset,
};
pub use le::{Le16, Le32, Le64};
pub use manifest::Manifest;
pub use record::{
    Entry, RECORD_ALIGN, RECORD_HEADER_LEN, Record, TOMBSTONE_LEN, alloc_for, decode_entry_at,
    decode_record, encode_record, encode_tombstone, peek_record, record_size,
};

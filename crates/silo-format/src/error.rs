//! The crate's one error type, [`FormatError`].

use crate::header::FileKind;

/// Everything that can go wrong while encoding or decoding silo's on-disk
/// structures. Each variant says what was found; the message says what to do.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A stored checksum does not match the bytes it covers.
    #[error(
        "{what}: checksum mismatch (stored {expected:#010x}, computed {found:#010x}); \
         the bytes are corrupt: restore the file from a backup or replica, or for a log \
         truncate it at this point"
    )]
    ChecksumMismatch {
        /// The structure whose checksum failed.
        what: &'static str,
        /// The checksum stored in the bytes.
        expected: u32,
        /// The checksum computed over the bytes.
        found: u32,
    },
    /// Fewer bytes than the structure needs (input cut short, or output buffer too small).
    #[error(
        "{what}: needs {needed} bytes but only {available} are available; \
         the input was cut short (or the output buffer is too small)"
    )]
    Truncated {
        /// The structure being read or written.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The first eight bytes are not a silo magic at all.
    #[error(
        "bad magic: expected \"{}\", found \"{}\"; this is not a silo file (or its \
         header was overwritten)",
        expected.escape_ascii(),
        found.escape_ascii()
    )]
    BadMagic {
        /// The magic that was expected.
        expected: [u8; 8],
        /// The bytes found instead.
        found: [u8; 8],
    },
    /// A silo file of a different kind than the one asked for.
    #[error("expected a {expected:?} file but found a {found:?} file; check which file was opened")]
    WrongKind {
        /// The kind the caller asked for.
        expected: FileKind,
        /// The kind named by the file's magic.
        found: FileKind,
    },
    /// The header's kind field disagrees with its magic (with a valid checksum).
    #[error(
        "header magic says {magic:?} but its kind field is {field}; the header was \
         written by a buggy encoder: restore the file from a backup"
    )]
    KindMismatch {
        /// The kind named by the magic.
        magic: FileKind,
        /// The raw kind field.
        field: u16,
    },
    /// A format version this build cannot read.
    #[error(
        "{kind:?} file has format version {found}, this build reads version {supported}; \
         use a silo release that supports version {found}"
    )]
    UnsupportedVersion {
        /// The file kind.
        kind: FileKind,
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A length field exceeds the allowed maximum.
    #[error(
        "{what}: length {len} exceeds the maximum {max}; the length field is corrupt, \
         or the limit must be raised to read this data"
    )]
    LengthTooLarge {
        /// What the length measures.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A numeric value outside its allowed range.
    #[error("{what}: value {value} is out of range (maximum {max}); pass a smaller value")]
    ValueOutOfRange {
        /// What the value is.
        what: &'static str,
        /// The value given or found.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
    /// An unknown frame tag byte.
    #[error("unknown frame tag {tag}; the log is corrupt at this point (valid tags are 1..=5)")]
    UnknownTag {
        /// The tag byte found.
        tag: u8,
    },
    /// A value that must be a multiple of an alignment is not.
    #[error("{what}: {value} is not a multiple of {align}; the field is corrupt")]
    Misaligned {
        /// What the value is.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The required alignment.
        align: u64,
    },
    /// A record's value length exceeds its allocated room.
    #[error(
        "record value length {len} exceeds its allocation {alloc}; pass an alloc of at \
         least the value length (see `alloc_for`), or the record header is corrupt"
    )]
    LenExceedsAlloc {
        /// The value length.
        len: u64,
        /// The allocated room.
        alloc: u64,
    },
    /// Flag bits this version does not define.
    #[error("{what}: unknown flag bits {flags:#x}; written by a newer or buggy encoder")]
    UnknownFlags {
        /// The structure holding the flags.
        what: &'static str,
        /// The flag bits found.
        flags: u32,
    },
    /// An index slot location that is neither empty, deleted nor a record offset.
    #[error(
        "index slot location {raw:#x} is invalid (the low 48 bits must be 1 or a multiple of 4 \
         at least 64, and an empty slot is all zero); the index is corrupt: restore from a checkpoint"
    )]
    BadLoc {
        /// The raw location value.
        raw: u64,
    },
    /// An index slot whose key does not match the key check in its location:
    /// the slot's key or location bytes are damaged.
    #[error(
        "index slot for key {key} carries key check {found:#06x}, but the key's check is \
         {expected:#06x}; the index is corrupt: restore from a checkpoint"
    )]
    KeyCheckMismatch {
        /// The key stored in the slot.
        key: u64,
        /// The check computed from the key.
        expected: u16,
        /// The check stored in the location.
        found: u16,
    },
    /// An unknown bit-operation byte.
    #[error("unknown bitmap op byte {op} (1 = set, 2 = clear); the payload is corrupt")]
    UnknownBitOp {
        /// The op byte found.
        op: u8,
    },
    /// A portable roaring bitmap that failed to deserialize.
    #[error("invalid serialized bitmap: {detail}; the stored bitmap is corrupt")]
    InvalidBitmap {
        /// What the roaring deserializer reported.
        detail: String,
    },
    /// Bytes left over after a complete structure.
    #[error(
        "{what}: {extra} unexpected bytes after the end; the length is wrong or the data is corrupt"
    )]
    TrailingBytes {
        /// The structure that ended early.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A document encoding version this build cannot read.
    #[error("document version {found} is not supported (this build reads {supported})")]
    UnsupportedDocumentVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads and writes.
        supported: u8,
    },
    /// An unknown document value type byte.
    #[error("document field {field}: unknown value type {ty}; the document is corrupt")]
    UnknownValueType {
        /// The field id.
        field: u16,
        /// The type byte found.
        ty: u8,
    },
    /// Document fields that are not strictly increasing by id.
    #[error(
        "document fields out of order: field {found} follows field {previous}; \
         fields must be sorted and unique"
    )]
    FieldOrder {
        /// The previous field id.
        previous: u16,
        /// The field id that should have been larger.
        found: u16,
    },
    /// The same field id given twice.
    #[error("document field {field} appears twice; give each field once")]
    DuplicateField {
        /// The repeated field id.
        field: u16,
    },
    /// A string value that is not UTF-8.
    #[error("document field {field}: string is not valid UTF-8; the document is corrupt")]
    InvalidUtf8 {
        /// The field id.
        field: u16,
    },
    /// A boolean byte other than 0 or 1.
    #[error("document field {field}: bool byte {byte} is not 0 or 1; the document is corrupt")]
    InvalidBool {
        /// The field id.
        field: u16,
        /// The byte found.
        byte: u8,
    },
    /// Field flags that are not valid for the field's type.
    #[error("document field {field}: flags {flags:#x} are not valid for its type")]
    InvalidFieldFlags {
        /// The field id.
        field: u16,
        /// The flags byte found.
        flags: u8,
    },
}

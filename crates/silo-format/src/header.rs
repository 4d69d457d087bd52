//! The 64-byte header every silo file starts with.
//!
//! ```text
//! magic [8] | version u32 | kind u16 | flags u16 | generation u64 | base_seq u64
//!           | param_a u64 | param_b u64 | reserved [12] (zero) | crc32 u32 over bytes 0..60
//! ```
//!
//! The meaning of `generation`, `base_seq`, `param_a` and `param_b` depends on
//! the [`FileKind`]; `docs/FORMAT.md` lists it per kind.

use bytemuck::{Pod, Zeroable};

use crate::error::FormatError;
use crate::le::{Le16, Le32, Le64};

/// Length of every file header in bytes.
pub const HEADER_LEN: usize = 64;
/// The on-disk format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Offset of the 8-byte magic.
pub const MAGIC_OFFSET: usize = 0;
/// Offset of the `u32` format version.
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
/// Offset of the `u16` file kind.
pub const KIND_OFFSET: usize = VERSION_OFFSET + 4;
/// Offset of the `u16` flags.
pub const FLAGS_OFFSET: usize = KIND_OFFSET + 2;
/// Offset of the `u64` generation.
pub const GENERATION_OFFSET: usize = FLAGS_OFFSET + 2;
/// Offset of the `u64` base sequence number.
pub const BASE_SEQ_OFFSET: usize = GENERATION_OFFSET + 8;
/// Offset of the `u64` kind-specific parameter A.
pub const PARAM_A_OFFSET: usize = BASE_SEQ_OFFSET + 8;
/// Offset of the `u64` kind-specific parameter B.
pub const PARAM_B_OFFSET: usize = PARAM_A_OFFSET + 8;
/// Offset of the 12 reserved (zero) bytes.
pub const RESERVED_OFFSET: usize = PARAM_B_OFFSET + 8;
/// Length of the reserved area.
pub const RESERVED_LEN: usize = 12;
/// Offset of the CRC32 over bytes `0..HEADER_CRC_OFFSET`.
pub const HEADER_CRC_OFFSET: usize = RESERVED_OFFSET + RESERVED_LEN;

/// The kind of a silo file, stored in the header as a `u16` and implied by its magic.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// An operations log slot (`log-0`, `log-1`).
    OpsLog = 1,
    /// A data file of records (`data-<id>`).
    Data = 2,
    /// A persistent hash index (`index-<id>`).
    Index = 3,
    /// The manifest naming the live files (`MANIFEST`).
    Manifest = 4,
    /// The compaction journal (`journal`).
    Journal = 5,
    /// The sharded engine's manifest (`ENGINE`).
    EngineManifest = 6,
    /// The sharded engine's log of cross-shard batches (`batches`).
    BatchLog = 7,
}

impl FileKind {
    /// Every kind, in numeric order.
    pub const ALL: [FileKind; 7] = [
        FileKind::OpsLog,
        FileKind::Data,
        FileKind::Index,
        FileKind::Manifest,
        FileKind::Journal,
        FileKind::EngineManifest,
        FileKind::BatchLog,
    ];

    /// The 8-byte magic a file of this kind starts with.
    pub const fn magic(self) -> [u8; 8] {
        match self {
            FileKind::OpsLog => *b"SILO-LOG",
            FileKind::Data => *b"SILO-DAT",
            FileKind::Index => *b"SILO-IDX",
            FileKind::Manifest => *b"SILO-MAN",
            FileKind::Journal => *b"SILO-JNL",
            FileKind::EngineManifest => *b"SILO-ENG",
            FileKind::BatchLog => *b"SILO-BLG",
        }
    }

    /// The kind with numeric value `v`, if any.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u16 == v)
    }

    /// The kind whose magic is `magic`, if any.
    pub fn from_magic(magic: [u8; 8]) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.magic() == magic)
    }
}

/// The header's byte layout.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RawHeader {
    magic: [u8; 8],
    version: Le32,
    kind: Le16,
    flags: Le16,
    generation: Le64,
    base_seq: Le64,
    param_a: Le64,
    param_b: Le64,
    reserved: [u8; RESERVED_LEN],
    crc: Le32,
}

const _: () = assert!(size_of::<RawHeader>() == HEADER_LEN && align_of::<RawHeader>() == 1);
const _: () = assert!(
    core::mem::offset_of!(RawHeader, version) == VERSION_OFFSET
        && core::mem::offset_of!(RawHeader, kind) == KIND_OFFSET
        && core::mem::offset_of!(RawHeader, flags) == FLAGS_OFFSET
        && core::mem::offset_of!(RawHeader, generation) == GENERATION_OFFSET
        && core::mem::offset_of!(RawHeader, base_seq) == BASE_SEQ_OFFSET
        && core::mem::offset_of!(RawHeader, param_a) == PARAM_A_OFFSET
        && core::mem::offset_of!(RawHeader, param_b) == PARAM_B_OFFSET
        && core::mem::offset_of!(RawHeader, reserved) == RESERVED_OFFSET
        && core::mem::offset_of!(RawHeader, crc) == HEADER_CRC_OFFSET
        && HEADER_CRC_OFFSET + 4 == HEADER_LEN
);

/// A decoded file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// What the file holds.
    pub kind: FileKind,
    /// Format version; [`FORMAT_VERSION`] when written by this build.
    pub version: u32,
    /// Kind-specific flags; none are defined in version 1 (write 0).
    pub flags: u16,
    /// Kind-specific generation or file id (see `docs/FORMAT.md`).
    pub generation: u64,
    /// Kind-specific sequence number (see `docs/FORMAT.md`).
    pub base_seq: u64,
    /// Kind-specific parameter A (see `docs/FORMAT.md`).
    pub param_a: u64,
    /// Kind-specific parameter B (see `docs/FORMAT.md`).
    pub param_b: u64,
}

impl FileHeader {
    /// A header of `kind` at the current [`FORMAT_VERSION`] with every other field 0.
    pub fn new(kind: FileKind) -> Self {
        FileHeader {
            kind,
            version: FORMAT_VERSION,
            flags: 0,
            generation: 0,
            base_seq: 0,
            param_a: 0,
            param_b: 0,
        }
    }

    /// The header's 64 bytes, checksum included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let raw = RawHeader {
            magic: self.kind.magic(),
            version: Le32::new(self.version),
            kind: Le16::new(self.kind as u16),
            flags: Le16::new(self.flags),
            generation: Le64::new(self.generation),
            base_seq: Le64::new(self.base_seq),
            param_a: Le64::new(self.param_a),
            param_b: Le64::new(self.param_b),
            reserved: [0; RESERVED_LEN],
            crc: Le32::new(0),
        };
        let mut out: [u8; HEADER_LEN] = bytemuck::cast(raw);
        let crc = crc32fast::hash(&out[..HEADER_CRC_OFFSET]);
        out[HEADER_CRC_OFFSET..].copy_from_slice(&Le32::new(crc).0);
        out
    }

    /// Decodes the header at the start of `bytes` (which may extend past it),
    /// requiring a file of kind `expected`.
    ///
    /// Checks, in order: length ([`FormatError::Truncated`]), magic
    /// ([`FormatError::WrongKind`] for another silo kind's magic,
    /// [`FormatError::BadMagic`] otherwise), checksum
    /// ([`FormatError::ChecksumMismatch`]), version
    /// ([`FormatError::UnsupportedVersion`]), and that the kind field agrees
    /// with the magic ([`FormatError::KindMismatch`]).
    pub fn decode(bytes: &[u8], expected: FileKind) -> Result<FileHeader, FormatError> {
        let Some(array) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(FormatError::Truncated {
                what: "file header",
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        };
        let raw: RawHeader = bytemuck::cast(*array);
        if raw.magic != expected.magic() {
            return Err(match FileKind::from_magic(raw.magic) {
                Some(found) => FormatError::WrongKind { expected, found },
                None => FormatError::BadMagic {
                    expected: expected.magic(),
                    found: raw.magic,
                },
            });
        }
        let found = crc32fast::hash(&array[..HEADER_CRC_OFFSET]);
        if found != raw.crc.get() {
            return Err(FormatError::ChecksumMismatch {
                what: "file header",
                expected: raw.crc.get(),
                found,
            });
        }
        if raw.version.get() != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                kind: expected,
                found: raw.version.get(),
                supported: FORMAT_VERSION,
            });
        }
        if raw.kind.get() != expected as u16 {
            return Err(FormatError::KindMismatch {
                magic: expected,
                field: raw.kind.get(),
            });
        }
        Ok(FileHeader {
            kind: expected,
            version: raw.version.get(),
            flags: raw.flags.get(),
            generation: raw.generation.get(),
            base_seq: raw.base_seq.get(),
            param_a: raw.param_a.get(),
            param_b: raw.param_b.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileHeader {
        FileHeader {
            generation: 7,
            base_seq: 1 << 40,
            param_a: u64::MAX,
            param_b: 3,
            flags: 0,
            ..FileHeader::new(FileKind::Index)
        }
    }

    /// Re-seals a hand-edited header with a correct checksum.
    fn reseal(bytes: &mut [u8; HEADER_LEN]) {
        let crc = crc32fast::hash(&bytes[..HEADER_CRC_OFFSET]);
        bytes[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn round_trip() {
        for kind in FileKind::ALL {
            let h = FileHeader { kind, ..sample() };
            let bytes = h.encode();
            assert_eq!(&bytes[..8], &kind.magic());
            assert_eq!(FileHeader::decode(&bytes, kind), Ok(h));
            assert_eq!(FileKind::from_u16(kind as u16), Some(kind));
        }
        assert_eq!(FileKind::from_u16(0), None);
        assert_eq!(FileKind::from_u16(8), None);
    }

    #[test]
    fn detects_corruption() {
        let bytes = sample().encode();
        // Any single bit flip is rejected.
        for bit in 0..HEADER_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                FileHeader::decode(&b, FileKind::Index).is_err(),
                "bit {bit}"
            );
        }
        let mut b = bytes;
        b[GENERATION_OFFSET] ^= 1;
        assert!(matches!(
            FileHeader::decode(&b, FileKind::Index),
            Err(FormatError::ChecksumMismatch {
                what: "file header",
                ..
            })
        ));
    }

    #[test]
    fn checks_run_in_order() {
        let bytes = sample().encode();
        assert_eq!(
            FileHeader::decode(&bytes[..63], FileKind::Index),
            Err(FormatError::Truncated {
                what: "file header",
                needed: 64,
                available: 63
            })
        );
        assert_eq!(
            FileHeader::decode(&bytes, FileKind::Data),
            Err(FormatError::WrongKind {
                expected: FileKind::Data,
                found: FileKind::Index
            })
        );
        let mut b = bytes;
        b[..8].copy_from_slice(b"NOT-SILO");
        assert_eq!(
            FileHeader::decode(&b, FileKind::Index),
            Err(FormatError::BadMagic {
                expected: *b"SILO-IDX",
                found: *b"NOT-SILO"
            })
        );
        let mut b = bytes;
        b[VERSION_OFFSET..KIND_OFFSET].copy_from_slice(&2u32.to_le_bytes());
        reseal(&mut b);
        assert_eq!(
            FileHeader::decode(&b, FileKind::Index),
            Err(FormatError::UnsupportedVersion {
                kind: FileKind::Index,
                found: 2,
                supported: 1
            })
        );
        let mut b = bytes;
        b[KIND_OFFSET..FLAGS_OFFSET].copy_from_slice(&2u16.to_le_bytes());
        reseal(&mut b);
        assert_eq!(
            FileHeader::decode(&b, FileKind::Index),
            Err(FormatError::KindMismatch {
                magic: FileKind::Index,
                field: 2
            })
        );
    }

    #[test]
    fn messages_say_what_was_found() {
        let err = FileHeader::decode(b"GARBAGE!garbage!", FileKind::Data).unwrap_err();
        assert!(err.to_string().contains("needs 64"), "{err}");
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(b"GARBAGE!");
        let err = FileHeader::decode(&b, FileKind::Data).unwrap_err();
        assert!(err.to_string().contains("GARBAGE!"), "{err}");
    }
}

//! Data records, the values stored in a data file:
//! `key u64 | seq u64 | len u32 | alloc u32 | crc32 u32 | value [len] | zero padding up to alloc`.
//!
//! `alloc` is the room reserved for the value (at least `len`, a multiple of
//! [`RECORD_ALIGN`]), so a value that later shrinks or grows within it can be
//! rewritten in place. A record occupies [`record_size`]`(alloc)` bytes and
//! records start at 4-aligned offsets. The CRC32 covers key, seq, len, alloc
//! and the value bytes, not the padding.

use bytemuck::{Pod, Zeroable};

use crate::error::FormatError;
use crate::le::{Le32, Le64};

/// Offset of the `u64` key within a record.
pub const RECORD_KEY_OFFSET: usize = 0;
/// Offset of the `u64` sequence number within a record.
pub const RECORD_SEQ_OFFSET: usize = RECORD_KEY_OFFSET + 8;
/// Offset of the `u32` value length within a record.
pub const RECORD_LEN_OFFSET: usize = RECORD_SEQ_OFFSET + 8;
/// Offset of the `u32` allocated room within a record.
pub const RECORD_ALLOC_OFFSET: usize = RECORD_LEN_OFFSET + 4;
/// Offset of the `u32` CRC32 within a record.
pub const RECORD_CRC_OFFSET: usize = RECORD_ALLOC_OFFSET + 4;
/// Offset of the value within a record.
pub const RECORD_VALUE_OFFSET: usize = RECORD_CRC_OFFSET + 4;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = RECORD_VALUE_OFFSET;
/// Alignment of record starts and of `alloc`.
pub const RECORD_ALIGN: usize = 4;

/// The `len` of a tombstone: a record that says its key was deleted at
/// `seq`. A tombstone has `alloc` 0 and no value, so it takes
/// [`RECORD_HEADER_LEN`] bytes. Compaction appends one when it deletes a
/// key whose record stays behind as dead space, so that the data file alone
/// says which keys are live (the newest record of each key, by `seq`, unless
/// it is a tombstone) and the index can be checked and rebuilt from it.
pub const TOMBSTONE_LEN: u32 = u32::MAX;

/// The record header's byte layout.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RawRecordHeader {
    key: Le64,
    seq: Le64,
    len: Le32,
    alloc: Le32,
    crc: Le32,
}

const _: () = assert!(
    size_of::<RawRecordHeader>() == RECORD_HEADER_LEN
        && align_of::<RawRecordHeader>() == 1
        && RECORD_HEADER_LEN == 28
);
const _: () = assert!(
    core::mem::offset_of!(RawRecordHeader, seq) == RECORD_SEQ_OFFSET
        && core::mem::offset_of!(RawRecordHeader, len) == RECORD_LEN_OFFSET
        && core::mem::offset_of!(RawRecordHeader, alloc) == RECORD_ALLOC_OFFSET
        && core::mem::offset_of!(RawRecordHeader, crc) == RECORD_CRC_OFFSET
);

/// Bytes a record with `alloc` bytes of room occupies: header plus `alloc`.
pub const fn record_size(alloc: u32) -> usize {
    RECORD_HEADER_LEN + alloc as usize
}

/// Room to allocate for a value of `len` bytes: `len` plus `slack_percent`
/// percent of it, rounded up to a multiple of [`RECORD_ALIGN`].
///
/// Errors with [`FormatError::LengthTooLarge`] if the result does not fit a `u32`.
pub fn alloc_for(len: usize, slack_percent: u32) -> Result<u32, FormatError> {
    let too_large = || FormatError::LengthTooLarge {
        what: "record allocation",
        len: len as u64,
        max: u64::from(u32::MAX) & !(RECORD_ALIGN as u64 - 1),
    };
    let len64 = u64::try_from(len).map_err(|_| too_large())?;
    let slack = len64
        .checked_mul(u64::from(slack_percent))
        .ok_or_else(too_large)?
        / 100;
    let align = RECORD_ALIGN as u64;
    let rounded = len64
        .checked_add(slack)
        .and_then(|n| n.checked_next_multiple_of(align))
        .ok_or_else(too_large)?;
    u32::try_from(rounded).map_err(|_| too_large())
}

/// A decoded record, borrowing its value from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The key this record holds the value of.
    pub key: u64,
    /// Sequence number of the newest log operation folded into this value.
    pub seq: u64,
    /// Room reserved for the value.
    pub alloc: u32,
    /// The value bytes, borrowed from the input.
    pub value: &'a [u8],
}

impl Record<'_> {
    /// Bytes this record occupies, [`record_size`]`(self.alloc)`.
    pub fn size(&self) -> usize {
        record_size(self.alloc)
    }
}

/// The CRC32 of a record: the header bytes before the CRC field, then the value.
fn record_crc(header: &[u8; RECORD_HEADER_LEN], value: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header.get(..RECORD_CRC_OFFSET).unwrap_or_default());
    hasher.update(value);
    hasher.finalize()
}

fn check_alloc(alloc: u32) -> Result<(), FormatError> {
    if (alloc as usize).is_multiple_of(RECORD_ALIGN) {
        Ok(())
    } else {
        Err(FormatError::Misaligned {
            what: "record alloc",
            value: u64::from(alloc),
            align: RECORD_ALIGN as u64,
        })
    }
}

/// Encodes a record into the front of `out`: header, value, zero padding up
/// to `alloc`. Returns [`record_size`]`(alloc)`.
///
/// Errors: [`FormatError::Misaligned`] if `alloc` is not a multiple of 4,
/// [`FormatError::LenExceedsAlloc`] if the value does not fit,
/// [`FormatError::Truncated`] if `out` is too small.
pub fn encode_record(
    out: &mut [u8],
    key: u64,
    seq: u64,
    value: &[u8],
    alloc: u32,
) -> Result<usize, FormatError> {
    check_alloc(alloc)?;
    let len = u32::try_from(value.len())
        .ok()
        .filter(|l| *l <= alloc)
        .ok_or(FormatError::LenExceedsAlloc {
            len: value.len() as u64,
            alloc: u64::from(alloc),
        })?;
    let size = record_size(alloc);
    let available = out.len();
    let Some(rec) = out.get_mut(..size) else {
        return Err(FormatError::Truncated {
            what: "record output buffer",
            needed: size,
            available,
        });
    };
    let mut raw = RawRecordHeader {
        key: Le64::new(key),
        seq: Le64::new(seq),
        len: Le32::new(len),
        alloc: Le32::new(alloc),
        crc: Le32::new(0),
    };
    raw.crc = Le32::new(record_crc(&bytemuck::cast(raw), value));
    let (head, rest) = rec.split_at_mut(RECORD_HEADER_LEN);
    head.copy_from_slice(bytemuck::bytes_of(&raw));
    let (body, padding) = rest.split_at_mut(value.len());
    body.copy_from_slice(value);
    padding.fill(0);
    Ok(size)
}

/// Encodes a tombstone for `key` deleted at `seq` into the front of `out`;
/// returns its size, [`RECORD_HEADER_LEN`].
pub fn encode_tombstone(out: &mut [u8], key: u64, seq: u64) -> Result<usize, FormatError> {
    let available = out.len();
    let Some(head) = out.get_mut(..RECORD_HEADER_LEN) else {
        return Err(FormatError::Truncated {
            what: "tombstone output buffer",
            needed: RECORD_HEADER_LEN,
            available,
        });
    };
    let mut raw = RawRecordHeader {
        key: Le64::new(key),
        seq: Le64::new(seq),
        len: Le32::new(TOMBSTONE_LEN),
        alloc: Le32::new(0),
        crc: Le32::new(0),
    };
    raw.crc = Le32::new(record_crc(&bytemuck::cast(raw), &[]));
    head.copy_from_slice(bytemuck::bytes_of(&raw));
    Ok(RECORD_HEADER_LEN)
}

/// A record or a tombstone, as a scan of a data file finds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A value.
    Value(Record<'a>),
    /// `key` was deleted at `seq`.
    Tombstone {
        /// The deleted key.
        key: u64,
        /// The sequence number of the delete.
        seq: u64,
    },
}

impl Entry<'_> {
    /// The key, the sequence number and the bytes the entry occupies.
    pub fn key_seq_size(&self) -> (u64, u64, usize) {
        match self {
            Entry::Value(r) => (r.key, r.seq, r.size()),
            Entry::Tombstone { key, seq } => (*key, *seq, RECORD_HEADER_LEN),
        }
    }
}

/// Decodes the record or tombstone at the start of `bytes`, with the
/// checks of [`decode_record`] (a tombstone's CRC covers its header).
pub fn decode_entry_at(bytes: &[u8], max_len: u32) -> Result<Entry<'_>, FormatError> {
    if let Some(head) = bytes.first_chunk::<RECORD_HEADER_LEN>() {
        let raw: RawRecordHeader = bytemuck::cast(*head);
        if raw.len.get() == TOMBSTONE_LEN && raw.alloc.get() == 0 {
            let found = record_crc(head, &[]);
            if found != raw.crc.get() {
                return Err(FormatError::ChecksumMismatch {
                    what: "tombstone",
                    expected: raw.crc.get(),
                    found,
                });
            }
            return Ok(Entry::Tombstone {
                key: raw.key.get(),
                seq: raw.seq.get(),
            });
        }
    }
    decode_record(bytes, max_len).map(Entry::Value)
}

/// Decodes the record at the start of `bytes` (which may extend past it),
/// zero-copy, verifying `len <= max_len`, `alloc % 4 == 0`, `len <= alloc`,
/// that all [`record_size`]`(alloc)` bytes are present, and the CRC. A
/// tombstone is not a record: it fails the `len` checks.
pub fn decode_record(bytes: &[u8], max_len: u32) -> Result<Record<'_>, FormatError> {
    let (record, crc) = peek(bytes, max_len)?;
    let head = bytes
        .first_chunk::<RECORD_HEADER_LEN>()
        .ok_or(FormatError::Truncated {
            what: "record header",
            needed: RECORD_HEADER_LEN,
            available: bytes.len(),
        })?;
    let found = record_crc(head, record.value);
    if found != crc {
        return Err(FormatError::ChecksumMismatch {
            what: "record",
            expected: crc,
            found,
        });
    }
    Ok(record)
}

/// [`decode_record`] without the CRC: every check of the header's fields
/// and of the bytes present, nothing of whether they are the bytes that
/// were written. For a first look at a record whose checksum is verified
/// (by [`decode_record`]) before anything of it is used or kept: a cold
/// rewrite sizes its records this way and checks each as it copies it.
pub fn peek_record(bytes: &[u8], max_len: u32) -> Result<Record<'_>, FormatError> {
    peek(bytes, max_len).map(|(record, _)| record)
}

/// The record at the start of `bytes`, checked but for its CRC, and the
/// CRC it holds.
fn peek(bytes: &[u8], max_len: u32) -> Result<(Record<'_>, u32), FormatError> {
    let Some(head) = bytes.first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(FormatError::Truncated {
            what: "record header",
            needed: RECORD_HEADER_LEN,
            available: bytes.len(),
        });
    };
    let raw: RawRecordHeader = bytemuck::cast(*head);
    let (len, alloc) = (raw.len.get(), raw.alloc.get());
    if len > max_len {
        return Err(FormatError::LengthTooLarge {
            what: "record value",
            len: u64::from(len),
            max: u64::from(max_len),
        });
    }
    check_alloc(alloc)?;
    if len > alloc {
        return Err(FormatError::LenExceedsAlloc {
            len: u64::from(len),
            alloc: u64::from(alloc),
        });
    }
    let size = record_size(alloc);
    if bytes.len() < size {
        return Err(FormatError::Truncated {
            what: "record",
            needed: size,
            available: bytes.len(),
        });
    }
    let value_end = RECORD_HEADER_LEN + len as usize;
    let value = bytes
        .get(RECORD_HEADER_LEN..value_end)
        .ok_or(FormatError::Truncated {
            what: "record",
            needed: value_end,
            available: bytes.len(),
        })?;
    let record = Record {
        key: raw.key.get(),
        seq: raw.seq.get(),
        alloc,
        value,
    };
    Ok((record, raw.crc.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peek_checks_everything_but_the_crc() {
        let mut rec = [0u8; 64];
        let n = encode_record(&mut rec, 9, 4, b"value", 8).unwrap();
        let peeked = peek_record(&rec[..n], 1 << 20).unwrap();
        assert_eq!(
            (peeked.key, peeked.seq, peeked.alloc, peeked.value),
            (9, 4, 8, &b"value"[..])
        );
        // A damaged value: only the full decode sees it.
        rec[RECORD_HEADER_LEN] ^= 1;
        assert_eq!(
            peek_record(&rec[..n], 1 << 20).map(|r| r.value),
            Ok(&b"walue"[..])
        );
        assert!(matches!(
            decode_record(&rec[..n], 1 << 20),
            Err(FormatError::ChecksumMismatch { .. })
        ));
        // The header's fields are checked as by the full decode.
        assert!(matches!(
            peek_record(&rec[..n], 4),
            Err(FormatError::LengthTooLarge { .. })
        ));
        assert!(matches!(
            peek_record(&rec[..n - 1], 1 << 20),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            peek_record(&rec[..RECORD_HEADER_LEN - 1], 1 << 20),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn tombstone_round_trip() {
        let mut buf = [0u8; RECORD_HEADER_LEN + 4];
        assert_eq!(encode_tombstone(&mut buf, 7, 99), Ok(RECORD_HEADER_LEN));
        assert_eq!(
            decode_entry_at(&buf, 1 << 20),
            Ok(Entry::Tombstone { key: 7, seq: 99 })
        );
        assert_eq!(
            decode_entry_at(&buf, 1 << 20).map(|e| e.key_seq_size()),
            Ok((7, 99, RECORD_HEADER_LEN))
        );
        // Readers of values never take a tombstone for a record.
        assert!(decode_record(&buf, u32::MAX - 1).is_err());
        let mut rec = [0u8; 64];
        let n = encode_record(&mut rec, 7, 5, b"abc", 4).unwrap();
        assert!(
            matches!(decode_entry_at(&rec[..n], 1 << 20), Ok(Entry::Value(r)) if r.value == b"abc")
        );
    }

    #[test]
    fn tombstone_detects_corruption() {
        let mut buf = [0u8; RECORD_HEADER_LEN];
        encode_tombstone(&mut buf, 7, 99).unwrap();
        for i in 0..RECORD_HEADER_LEN {
            let mut bad = buf;
            bad[i] ^= 0x10;
            assert!(decode_entry_at(&bad, 1 << 20).is_err(), "byte {i}");
        }
        assert!(encode_tombstone(&mut buf[..10], 1, 1).is_err());
        assert!(decode_entry_at(&buf[..10], 1 << 20).is_err());
    }

    #[test]
    fn round_trip() {
        let alloc = alloc_for(5, 50).unwrap();
        assert_eq!(alloc, 8);
        let mut buf = vec![0xAA; 64];
        let n = encode_record(&mut buf, u64::MAX, 17, b"hello", alloc).unwrap();
        assert_eq!(n, RECORD_HEADER_LEN + 8);
        assert_eq!(&buf[RECORD_VALUE_OFFSET + 5..n], &[0, 0, 0]);
        assert_eq!(buf[n], 0xAA, "nothing written past the record");
        let rec = decode_record(&buf, u32::MAX).unwrap();
        assert_eq!(
            rec,
            Record {
                key: u64::MAX,
                seq: 17,
                alloc: 8,
                value: b"hello"
            }
        );
        assert_eq!(rec.size(), n);
        let empty_n = encode_record(&mut buf, 0, 0, b"", 0).unwrap();
        assert_eq!(empty_n, RECORD_HEADER_LEN);
        assert_eq!(decode_record(&buf[..empty_n], 0).unwrap().value, b"");
    }

    #[test]
    fn detects_corruption() {
        let mut buf = [0u8; RECORD_HEADER_LEN + 16];
        let n = encode_record(&mut buf, 3, 4, b"0123456789", 16).unwrap();
        // Every bit of the header and value is covered (padding is not).
        for bit in 0..(RECORD_HEADER_LEN + 10) * 8 {
            let mut b = buf;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&b[..n], u32::MAX).is_err(), "bit {bit}");
        }
        let mut b = buf;
        b[RECORD_VALUE_OFFSET] ^= 1;
        assert!(matches!(
            decode_record(&b, u32::MAX),
            Err(FormatError::ChecksumMismatch { what: "record", .. })
        ));
        assert!(matches!(
            decode_record(&buf[..n - 1], u32::MAX),
            Err(FormatError::Truncated { what: "record", .. })
        ));
        assert!(matches!(
            decode_record(&buf, 9),
            Err(FormatError::LengthTooLarge {
                len: 10,
                max: 9,
                ..
            })
        ));
    }

    #[test]
    fn encode_rejects_bad_alloc() {
        let mut buf = [0u8; 64];
        assert!(matches!(
            encode_record(&mut buf, 1, 1, b"abc", 6),
            Err(FormatError::Misaligned { .. })
        ));
        assert!(matches!(
            encode_record(&mut buf, 1, 1, &[1; 9], 8),
            Err(FormatError::LenExceedsAlloc { len: 9, alloc: 8 })
        ));
        assert!(matches!(
            encode_record(&mut buf, 1, 1, b"", 40),
            Err(FormatError::Truncated { needed: 68, .. })
        ));
    }

    #[test]
    fn alloc_for_rounds_and_checks() {
        assert_eq!(alloc_for(0, 0).unwrap(), 0);
        assert_eq!(alloc_for(1, 0).unwrap(), 4);
        assert_eq!(alloc_for(100, 0).unwrap(), 100);
        assert_eq!(alloc_for(100, 20).unwrap(), 120);
        assert_eq!(alloc_for(101, 25).unwrap(), 128);
        assert!(alloc_for(u32::MAX as usize, 0).is_err());
        assert!(alloc_for(usize::MAX, 100).is_err());
        for len in 0..200 {
            let a = alloc_for(len, 10).unwrap() as usize;
            assert!(a >= len && a.is_multiple_of(RECORD_ALIGN));
        }
    }
}

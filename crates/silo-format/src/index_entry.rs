//! Persistent hash index slots: 16 bytes each, `key u64 | loc u64`.
//!
//! `loc` is [`LOC_EMPTY`] (0) for an empty slot. Otherwise its low 48 bits
//! are [`LOC_DELETED`] (1) for a tombstone or the byte offset of a data record
//! (a multiple of [`RECORD_ALIGN`], at least [`HEADER_LEN`], below 2^48), and its top 16
//! bits are the [`key_check`] of the slot's key, so a damaged key or location
//! byte is detected by every probe that passes the slot. Emptiness lives in
//! `loc`, never in `key`, so every `u64` key, 0 and `u64::MAX` included, is a
//! valid key.
//!
//! Slots are grouped [`SLOTS_PER_BUCKET`] per 64-byte bucket; an index file
//! is a 64-byte [`crate::FileHeader`] followed by `capacity` slots, slot `i`
//! at [`slot_offset`]`(i)`.
//!
//! # Publication protocol
//!
//! The layer above updates slots in a shared memory map while readers run.
//! So that a reader never sees a torn entry:
//!
//! - `loc` is written with one aligned 8-byte atomic store (slots are 16-byte
//!   aligned in the file, and the file is mapped page-aligned);
//! - a new entry is published by storing `key` first, then `loc` with
//!   `Release` ordering;
//! - readers load `loc` with `Acquire` first, then `key`;
//! - a slot's `key` never changes once its `loc` is non-empty: an update only
//!   stores a new `loc`, a delete stores [`LOC_DELETED`], and tombstones are
//!   cleared only by rehashing into a new index file;
//! - the record at `loc` repeats the key, and the reader checks it.

use bytemuck::{Pod, Zeroable};

use crate::error::FormatError;
use crate::header::HEADER_LEN;
use crate::le::Le64;
use crate::record::RECORD_ALIGN;

/// Length of one slot in bytes.
pub const INDEX_ENTRY_LEN: usize = 16;
/// Offset of the `u64` key within a slot.
pub const ENTRY_KEY_OFFSET: usize = 0;
/// Offset of the `u64` location within a slot.
pub const ENTRY_LOC_OFFSET: usize = ENTRY_KEY_OFFSET + 8;
/// Slots per 64-byte bucket (one cache line).
pub const SLOTS_PER_BUCKET: usize = 4;
/// Length of a bucket in bytes.
pub const BUCKET_LEN: usize = SLOTS_PER_BUCKET * INDEX_ENTRY_LEN;
/// The raw `loc` of an empty slot.
pub const LOC_EMPTY: u64 = 0;
/// The low 48 bits of the `loc` of a deleted slot (tombstone).
pub const LOC_DELETED: u64 = 1;
/// Where the key check starts in a raw `loc`.
pub const LOC_CHECK_SHIFT: u32 = 48;
/// The bits of a raw `loc` that hold the offset (or [`LOC_DELETED`]).
pub const LOC_OFFSET_MASK: u64 = (1 << LOC_CHECK_SHIFT) - 1;

/// XORed into every key check, so that no key's check is 0: an empty slot
/// (all zero bytes) is then at least 9 flipped bits from a valid entry for
/// any key, key 0 included (8 set bits of the check, one of the offset).
pub const KEY_CHECK_SALT: u16 = 0xA5C3;

/// The 16-bit key check stored in the top bits of a slot's `loc`: the XOR
/// of the key's four 16-bit lanes and [`KEY_CHECK_SALT`]. Any damage
/// confined to one lane (any single damaged byte, in particular) changes it.
pub const fn key_check(key: u64) -> u16 {
    let [a, b, ..] = (key ^ (key >> 16) ^ (key >> 32) ^ (key >> 48)).to_le_bytes();
    u16::from_le_bytes([a, b]) ^ KEY_CHECK_SALT
}

const _: () = assert!(ENTRY_LOC_OFFSET + 8 == INDEX_ENTRY_LEN && BUCKET_LEN == 64);

/// A slot's byte layout.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RawEntry {
    key: Le64,
    loc: Le64,
}

const _: () = assert!(size_of::<RawEntry>() == INDEX_ENTRY_LEN && align_of::<RawEntry>() == 1);
const _: () = assert!(core::mem::offset_of!(RawEntry, loc) == ENTRY_LOC_OFFSET);

/// What a slot points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loc {
    /// Never used; ends a probe sequence.
    Empty,
    /// Used, then deleted; probing continues past it.
    Deleted,
    /// The byte offset of the key's record in the data file.
    Record(u64),
}

impl Loc {
    /// The raw `u64` stored in the slot of `key`.
    pub fn encode(self, key: u64) -> u64 {
        let check = u64::from(key_check(key)) << LOC_CHECK_SHIFT;
        match self {
            Loc::Empty => LOC_EMPTY,
            Loc::Deleted => LOC_DELETED | check,
            Loc::Record(offset) => offset | check,
        }
    }

    /// Decodes the raw `loc` of the slot holding `key`. Rejects locations
    /// whose low bits are not 1 or a multiple of [`RECORD_ALIGN`] at least [`HEADER_LEN`]
    /// ([`FormatError::BadLoc`]) and key checks that do not match `key`
    /// ([`FormatError::KeyCheckMismatch`]).
    pub fn decode(raw: u64, key: u64) -> Result<Loc, FormatError> {
        if raw == LOC_EMPTY {
            return Ok(Loc::Empty);
        }
        let loc = match raw & LOC_OFFSET_MASK {
            LOC_DELETED => Loc::Deleted,
            off if off.is_multiple_of(RECORD_ALIGN as u64) && off >= HEADER_LEN as u64 => {
                Loc::Record(off)
            }
            _ => return Err(FormatError::BadLoc { raw }),
        };
        let found = (raw >> LOC_CHECK_SHIFT) as u16;
        let expected = key_check(key);
        if found != expected {
            return Err(FormatError::KeyCheckMismatch {
                key,
                expected,
                found,
            });
        }
        Ok(loc)
    }

    /// A record location: `offset` must be a multiple of [`RECORD_ALIGN`], at least
    /// [`HEADER_LEN`] and below 2^48.
    pub fn record(offset: u64) -> Result<Loc, FormatError> {
        let aligned = offset.is_multiple_of(RECORD_ALIGN as u64);
        if aligned && offset >= HEADER_LEN as u64 && offset <= LOC_OFFSET_MASK {
            Ok(Loc::Record(offset))
        } else {
            Err(FormatError::BadLoc { raw: offset })
        }
    }
}

/// Encodes one slot.
pub fn encode_entry(key: u64, loc: Loc) -> [u8; INDEX_ENTRY_LEN] {
    bytemuck::cast(RawEntry {
        key: Le64::new(key),
        loc: Le64::new(loc.encode(key)),
    })
}

/// Decodes the slot at the start of `bytes`.
pub fn decode_entry(bytes: &[u8]) -> Result<(u64, Loc), FormatError> {
    let Some(array) = bytes.first_chunk::<INDEX_ENTRY_LEN>() else {
        return Err(FormatError::Truncated {
            what: "index entry",
            needed: INDEX_ENTRY_LEN,
            available: bytes.len(),
        });
    };
    let raw: RawEntry = bytemuck::cast(*array);
    Ok((raw.key.get(), Loc::decode(raw.loc.get(), raw.key.get())?))
}

/// Byte offset of slot `slot` in an index file: `HEADER_LEN + slot * 16`.
///
/// `slot` must be below the index capacity; capacities are bounded by file
/// sizes, far below the `2^59` slots where this would overflow.
pub fn slot_offset(slot: u64) -> u64 {
    HEADER_LEN as u64 + slot * INDEX_ENTRY_LEN as u64
}

/// Length of an index file with `capacity` slots, or `None` on overflow.
pub fn index_file_len(capacity: u64) -> Option<u64> {
    capacity
        .checked_mul(INDEX_ENTRY_LEN as u64)?
        .checked_add(HEADER_LEN as u64)
}

/// The hash that decides a key's slot position: splitmix64's finalizer
/// applied to `(key ^ seed) + 0x9E3779B97F4A7C15`. It is part of the format:
/// changing it moves every key, so an index written with one function cannot
/// be read with another.
pub fn hash_key(key: u64, seed: u64) -> u64 {
    let mut z = (key ^ seed).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps a hash to a bucket in `0..buckets` by multiply-shift (the high 64
/// bits of `hash * buckets`), so any bucket count works, not only powers of two.
/// Returns 0 when `buckets` is 0.
pub fn home_bucket(hash: u64, buckets: u64) -> u64 {
    let wide = u128::from(hash) * u128::from(buckets);
    (wide >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for loc in [
            Loc::Empty,
            Loc::Deleted,
            Loc::Record(64),
            Loc::Record(LOC_OFFSET_MASK - 7),
        ] {
            for key in [0, 1, u64::MAX] {
                assert_eq!(Loc::decode(loc.encode(key), key), Ok(loc));
                let bytes = encode_entry(key, loc);
                assert_eq!(
                    &bytes[ENTRY_KEY_OFFSET..ENTRY_LOC_OFFSET],
                    &key.to_le_bytes()
                );
                assert_eq!(decode_entry(&bytes), Ok((key, loc)));
            }
        }
        assert_eq!(Loc::record(128), Ok(Loc::Record(128)));
        assert_eq!(Loc::record(0), Err(FormatError::BadLoc { raw: 0 }));
        assert_eq!(
            Loc::record(1 << 48),
            Err(FormatError::BadLoc { raw: 1 << 48 })
        );
    }

    #[test]
    fn detects_corruption() {
        for raw in [2, 7, 8, 56, 65, 71, u64::MAX] {
            assert_eq!(
                Loc::decode(raw, 0),
                Err(FormatError::BadLoc { raw }),
                "{raw}"
            );
        }
        let good = encode_entry(5, Loc::Record(4096));
        let mut bytes = good;
        bytes[ENTRY_LOC_OFFSET] ^= 1;
        assert!(matches!(
            decode_entry(&bytes),
            Err(FormatError::BadLoc { .. })
        ));
        // Any damaged key byte, and any damaged check byte, is caught.
        for i in (0..8).chain(ENTRY_LOC_OFFSET + 6..INDEX_ENTRY_LEN) {
            for flip in [1u8, 0x80, 0xFF] {
                let mut bytes = good;
                bytes[i] ^= flip;
                assert!(
                    matches!(
                        decode_entry(&bytes),
                        Err(FormatError::KeyCheckMismatch { .. })
                    ),
                    "byte {i} ^ {flip:#x}"
                );
            }
        }
        assert!(matches!(
            decode_entry(&bytes[..15]),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn an_empty_slot_is_many_bits_from_any_entry() {
        // Regression: with a check of 0 for key 0, one flipped bit of an
        // empty slot's `loc` made a valid entry for key 0.
        for bit in 0..64 {
            let raw = 1u64 << bit;
            assert!(Loc::decode(raw, 0).is_err(), "loc bit {bit} alone");
        }
        for key in [0u64, 1, u64::MAX] {
            assert_ne!(key_check(key), 0, "key {key:#x}");
        }
        // A key whose check is 0 has lanes that XOR to the salt, so at least
        // the salt's 8 bits set in its key field: with one offset bit, an
        // empty slot is at least 9 bits from any valid entry.
        assert_eq!(KEY_CHECK_SALT.count_ones(), 8);
        assert_eq!(key_check(0xA5C3), 0);
        assert!(Loc::decode(64, 0xA5C3).is_ok() && (0xA5C3u64).count_ones() == 8);
    }

    #[test]
    fn slot_positions() {
        assert_eq!(slot_offset(0), 64);
        assert_eq!(slot_offset(3), 64 + 48);
        assert_eq!(index_file_len(4), Some(128));
        assert_eq!(index_file_len(u64::MAX), None);
        assert_eq!(home_bucket(u64::MAX, 10), 9);
        assert_eq!(home_bucket(0, 10), 0);
    }

    #[test]
    fn hash_is_pinned() {
        // These values are part of the format: if they change, old indexes break.
        assert_eq!(hash_key(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(hash_key(1, 0), 0x910A_2DEC_8902_5CC1);
        assert_ne!(hash_key(1, 1), hash_key(1, 2));
    }
}

//! Bitmap keys, 5-byte bit operations, and frozen bitmaps in roaring's
//! portable format.
//!
//! A bitmap is stored under a `u64` key packing a field id (top 16 bits)
//! and a value (low 48 bits). Changes are logged as bit ops, 5 bytes each,
//! `op u8 (1 = set, 2 = clear) | doc id u32`, many to a frame payload, or
//! as one union operand, `3 | bitmap`, that sets a whole bitmap's bits. The
//! folded bitmap is stored in roaring's portable serialization, validated
//! before it is handed to the roaring deserializer.

use roaring::RoaringBitmap;

use crate::error::FormatError;
use crate::le::Le32;

/// Bits of a bitmap key that hold the value.
pub const BITMAP_VALUE_BITS: u32 = 48;
/// The largest value [`bitmap_key`] accepts.
pub const BITMAP_VALUE_MAX: u64 = (1 << BITMAP_VALUE_BITS) - 1;

/// Offset of the op byte within a bit op.
pub const BIT_OP_CODE_OFFSET: usize = 0;
/// Offset of the `u32` document id within a bit op.
pub const BIT_OP_DOC_OFFSET: usize = BIT_OP_CODE_OFFSET + 1;
/// Length of one bit op.
pub const BIT_OP_LEN: usize = BIT_OP_DOC_OFFSET + 4;
/// Op byte of [`BitOp::Set`].
pub const BIT_OP_SET: u8 = 1;
/// Op byte of [`BitOp::Clear`].
pub const BIT_OP_CLEAR: u8 = 2;
/// First byte of a union operand: the rest of the operand is a bitmap in
/// roaring's portable format whose bits are all set (see
/// [`encode_union_operand`]). Never the code of a bit op.
pub const BIT_OP_UNION: u8 = 3;

/// The key of the bitmap for `(field, value)`: `field << 48 | value`.
///
/// Errors with [`FormatError::ValueOutOfRange`] if `value >= 2^48`.
pub fn bitmap_key(field: u16, value: u64) -> Result<u64, FormatError> {
    if value > BITMAP_VALUE_MAX {
        return Err(FormatError::ValueOutOfRange {
            what: "bitmap key value",
            value,
            max: BITMAP_VALUE_MAX,
        });
    }
    Ok((u64::from(field) << BITMAP_VALUE_BITS) | value)
}

/// Splits a bitmap key into `(field, value)`; the inverse of [`bitmap_key`].
pub fn split_bitmap_key(key: u64) -> (u16, u64) {
    let [hi, lo, ..] = key.to_be_bytes();
    (u16::from_be_bytes([hi, lo]), key & BITMAP_VALUE_MAX)
}

/// One change to a bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BitOp {
    /// Set the bit of this document id.
    Set(u32),
    /// Clear the bit of this document id.
    Clear(u32),
}

impl BitOp {
    /// The op's 5 bytes.
    pub fn to_bytes(self) -> [u8; BIT_OP_LEN] {
        let (code, doc) = match self {
            BitOp::Set(d) => (BIT_OP_SET, d),
            BitOp::Clear(d) => (BIT_OP_CLEAR, d),
        };
        let [a, b, c, d] = Le32::new(doc).0;
        [code, a, b, c, d]
    }

    /// Decodes one op from exactly 5 bytes.
    pub fn from_bytes(bytes: [u8; BIT_OP_LEN]) -> Result<BitOp, FormatError> {
        let [code, a, b, c, d] = bytes;
        let doc = Le32([a, b, c, d]).get();
        match code {
            BIT_OP_SET => Ok(BitOp::Set(doc)),
            BIT_OP_CLEAR => Ok(BitOp::Clear(doc)),
            op => Err(FormatError::UnknownBitOp { op }),
        }
    }
}

/// Writes `op` into the front of `out`; returns [`BIT_OP_LEN`].
pub fn encode_bit_op(out: &mut [u8], op: BitOp) -> Result<usize, FormatError> {
    let available = out.len();
    let dst = out.get_mut(..BIT_OP_LEN).ok_or(FormatError::Truncated {
        what: "bit op output buffer",
        needed: BIT_OP_LEN,
        available,
    })?;
    dst.copy_from_slice(&op.to_bytes());
    Ok(BIT_OP_LEN)
}

/// Appends the encodings of `ops` to `out`.
pub fn encode_bit_ops(ops: &[BitOp], out: &mut Vec<u8>) {
    out.reserve(ops.len().saturating_mul(BIT_OP_LEN));
    for op in ops {
        out.extend_from_slice(&op.to_bytes());
    }
}

/// Iterator over the ops of a payload; see [`decode_bit_ops`].
#[derive(Clone, Debug)]
pub struct BitOps<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
    pending_error: Option<FormatError>,
    failed: bool,
}

impl Iterator for BitOps<'_> {
    type Item = Result<BitOp, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some(err) = self.pending_error.take() {
            self.failed = true;
            return Some(Err(err));
        }
        let chunk = self.chunks.next()?;
        let result = <[u8; BIT_OP_LEN]>::try_from(chunk)
            .map_err(|_| FormatError::Truncated {
                what: "bit op",
                needed: BIT_OP_LEN,
                available: chunk.len(),
            })
            .and_then(BitOp::from_bytes);
        self.failed = result.is_err();
        Some(result)
    }
}

impl std::iter::FusedIterator for BitOps<'_> {}

/// Decodes a payload of bit ops. A length that is not a multiple of
/// [`BIT_OP_LEN`] is reported as the first item (before any op), so callers
/// never act on part of a damaged payload; an unknown op byte is reported in
/// its place. The iterator ends after the first error.
pub fn decode_bit_ops(bytes: &[u8]) -> impl Iterator<Item = Result<BitOp, FormatError>> + '_ {
    let rem = bytes.len() % BIT_OP_LEN;
    let pending_error = (rem != 0).then(|| FormatError::Truncated {
        what: "bit op payload (length not a multiple of 5)",
        needed: bytes.len() + (BIT_OP_LEN - rem),
        available: bytes.len(),
    });
    BitOps {
        chunks: bytes.chunks_exact(BIT_OP_LEN),
        pending_error,
        failed: false,
    }
}

/// Applies a payload of bit ops to `bitmap`, in order. The whole payload is
/// validated first: on error the bitmap is left unchanged.
pub fn apply_bit_ops(bitmap: &mut RoaringBitmap, bytes: &[u8]) -> Result<(), FormatError> {
    for op in decode_bit_ops(bytes) {
        op?;
    }
    for op in decode_bit_ops(bytes).flatten() {
        match op {
            BitOp::Set(d) => bitmap.insert(d),
            BitOp::Clear(d) => bitmap.remove(d),
        };
    }
    Ok(())
}

/// Appends a union operand for `bitmap` to `out`: [`BIT_OP_UNION`], then
/// the bitmap in roaring's portable serialization. Folded, it sets every bit
/// of `bitmap` (one operand for a whole bitmap's worth of sets).
pub fn encode_union_operand(bitmap: &RoaringBitmap, out: &mut Vec<u8>) {
    out.push(BIT_OP_UNION);
    serialize_bitmap(bitmap, out);
}

/// Folds one bitmap merge operand into `bitmap`: a union operand (first
/// byte [`BIT_OP_UNION`]) ORs its bitmap in; any other operand is a payload
/// of bit ops, applied in order. The operand is validated whole first: on
/// error `bitmap` is unchanged.
pub fn apply_bitmap_operand(bitmap: &mut RoaringBitmap, operand: &[u8]) -> Result<(), FormatError> {
    match operand.split_first() {
        Some((&BIT_OP_UNION, body)) => {
            *bitmap |= deserialize_bitmap(body)?;
            Ok(())
        }
        _ => apply_bit_ops(bitmap, operand),
    }
}

/// Appends `bitmap` to `out` in roaring's portable serialization.
pub fn serialize_bitmap(bitmap: &RoaringBitmap, out: &mut Vec<u8>) {
    out.reserve(bitmap.serialized_size());
    // Writing into a Vec cannot fail.
    if let Err(e) = bitmap.serialize_into(&mut *out) {
        debug_assert!(false, "serializing into a Vec failed: {e}");
    }
}

/// Deserializes a bitmap in roaring's portable format that spans all of `bytes`.
///
/// The layout is walked and bounds-checked first (cookie, container count
/// at most 65536, container keys strictly increasing, every container within
/// the input and holding as many bits as its header says, none empty), so
/// nothing is allocated from an unchecked length and roaring never holds an
/// empty container (found by fuzzing: its serializer then panics); then the
/// checked roaring deserializer builds the bitmap. Bytes after the bitmap are
/// [`FormatError::TrailingBytes`].
pub fn deserialize_bitmap(bytes: &[u8]) -> Result<RoaringBitmap, FormatError> {
    let len = portable::validate(bytes)?;
    let (body, extra) = bytes.split_at_checked(len).ok_or(FormatError::Truncated {
        what: "serialized bitmap",
        needed: len,
        available: bytes.len(),
    })?;
    if !extra.is_empty() {
        return Err(FormatError::TrailingBytes {
            what: "serialized bitmap",
            extra: extra.len(),
        });
    }
    RoaringBitmap::deserialize_from(body).map_err(|e| FormatError::InvalidBitmap {
        detail: e.to_string(),
    })
}

/// A bounds-checking walk over roaring's portable serialization.
mod portable {
    use crate::error::FormatError;

    const SERIAL_COOKIE_NO_RUNCONTAINER: u32 = 12346;
    const SERIAL_COOKIE: u16 = 12347;
    const NO_OFFSET_THRESHOLD: usize = 4;
    const MAX_CONTAINERS: usize = 1 << 16;
    const ARRAY_LIMIT: usize = 4096;
    const BITMAP_BYTES: usize = 8192;

    fn invalid(detail: &str) -> FormatError {
        FormatError::InvalidBitmap {
            detail: detail.to_owned(),
        }
    }

    /// Reads bytes sequentially, never past the end.
    struct Cursor<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
            let end = self
                .pos
                .checked_add(n)
                .ok_or_else(|| invalid("length overflow"))?;
            let out = self
                .bytes
                .get(self.pos..end)
                .ok_or(FormatError::Truncated {
                    what: "serialized bitmap",
                    needed: end,
                    available: self.bytes.len(),
                })?;
            self.pos = end;
            Ok(out)
        }

        fn u16(&mut self) -> Result<u16, FormatError> {
            let b = self.take(2)?;
            Ok(u16::from_le_bytes([
                b.first().copied().unwrap_or(0),
                b.get(1).copied().unwrap_or(0),
            ]))
        }

        fn u32(&mut self) -> Result<u32, FormatError> {
            let lo = self.u16()?;
            let hi = self.u16()?;
            Ok(u32::from(lo) | (u32::from(hi) << 16))
        }
    }

    /// Returns the length of the serialized bitmap at the start of `bytes`.
    pub(super) fn validate(bytes: &[u8]) -> Result<usize, FormatError> {
        let mut c = Cursor { bytes, pos: 0 };
        let cookie = c.u32()?;
        let (size, has_offsets, run_bitmap) = if cookie == SERIAL_COOKIE_NO_RUNCONTAINER {
            let size = c.u32()? as usize;
            if size > MAX_CONTAINERS {
                return Err(invalid("more than 65536 containers"));
            }
            (size, true, None)
        } else if cookie & 0xFFFF == u32::from(SERIAL_COOKIE) {
            let size = (cookie >> 16) as usize + 1;
            let run_bitmap = c.take(size.div_ceil(8))?;
            (size, size >= NO_OFFSET_THRESHOLD, Some(run_bitmap))
        } else {
            return Err(invalid("unknown cookie"));
        };
        let descriptions = c.take(size * 4)?;
        if has_offsets {
            c.take(size * 4)?;
        }
        let mut previous_key: Option<u16> = None;
        for (i, desc) in descriptions.chunks_exact(4).enumerate() {
            let key = u16::from_le_bytes([
                desc.first().copied().unwrap_or(0),
                desc.get(1).copied().unwrap_or(0),
            ]);
            let cardinality = usize::from(u16::from_le_bytes([
                desc.get(2).copied().unwrap_or(0),
                desc.get(3).copied().unwrap_or(0),
            ])) + 1;
            if previous_key.is_some_and(|p| p >= key) {
                return Err(invalid("container keys not strictly increasing"));
            }
            previous_key = Some(key);
            let is_run = run_bitmap
                .and_then(|bm| bm.get(i / 8))
                .is_some_and(|b| b & (1 << (i % 8)) != 0);
            if is_run {
                let runs = usize::from(c.u16()?);
                if runs == 0 {
                    // An empty container breaks roaring's invariants (its
                    // serializer then underflows): never let one through.
                    return Err(invalid("run container without runs"));
                }
                let intervals = c.take(runs * 4)?;
                let mut next_start: u32 = 0;
                let mut bits = 0usize;
                for iv in intervals.chunks_exact(4) {
                    let start = u32::from(u16::from_le_bytes([
                        iv.first().copied().unwrap_or(0),
                        iv.get(1).copied().unwrap_or(0),
                    ]));
                    let len = u32::from(u16::from_le_bytes([
                        iv.get(2).copied().unwrap_or(0),
                        iv.get(3).copied().unwrap_or(0),
                    ]));
                    if start < next_start || start + len > u32::from(u16::MAX) {
                        return Err(invalid(
                            "run container intervals overlap, are unsorted or overflow",
                        ));
                    }
                    next_start = start + len + 1;
                    bits += len as usize + 1;
                }
                if bits != cardinality {
                    return Err(invalid("run container holds another count than its header"));
                }
            } else if cardinality <= ARRAY_LIMIT {
                c.take(cardinality * 2)?;
            } else {
                let words = c.take(BITMAP_BYTES)?;
                let bits: u32 = words.iter().map(|b| b.count_ones()).sum();
                if bits as usize != cardinality {
                    return Err(invalid(
                        "bitmap container holds another count than its header",
                    ));
                }
            }
        }
        Ok(c.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        for (f, v) in [(0, 0), (u16::MAX, BITMAP_VALUE_MAX), (7, 12345)] {
            let k = bitmap_key(f, v).unwrap();
            assert_eq!(split_bitmap_key(k), (f, v));
        }
        assert_eq!(bitmap_key(1, 2).unwrap(), (1 << 48) | 2);
        assert_eq!(
            bitmap_key(1, 1 << 48),
            Err(FormatError::ValueOutOfRange {
                what: "bitmap key value",
                value: 1 << 48,
                max: BITMAP_VALUE_MAX
            })
        );
    }

    #[test]
    fn operands_fold_bit_ops_and_unions_in_order_and_damage_changes_nothing() {
        let mut ops = Vec::new();
        encode_bit_ops(&[BitOp::Set(1), BitOp::Set(9), BitOp::Clear(1)], &mut ops);
        let union: RoaringBitmap = [2u32, 9, 70_000].into_iter().collect();
        let mut un = Vec::new();
        encode_union_operand(&union, &mut un);
        assert_eq!(un[0], BIT_OP_UNION);
        let mut clear = Vec::new();
        encode_bit_ops(&[BitOp::Clear(9)], &mut clear);
        let mut b = RoaringBitmap::new();
        for operand in [&ops, &un, &clear] {
            apply_bitmap_operand(&mut b, operand).unwrap();
        }
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![2, 70_000]);
        apply_bitmap_operand(&mut b, &[]).unwrap();
        assert_eq!(b.len(), 2, "an empty operand changes nothing");
        for bad in [
            &un[..un.len() - 1],
            &ops[..7],
            &[BIT_OP_UNION][..],
            &[9, 0, 0, 0, 0][..],
        ] {
            let before = b.clone();
            assert!(apply_bitmap_operand(&mut b, bad).is_err(), "{bad:?}");
            assert_eq!(b, before);
        }
    }

    #[test]
    fn op_round_trip() {
        let ops = [BitOp::Set(0), BitOp::Clear(u32::MAX), BitOp::Set(77)];
        let mut bytes = Vec::new();
        encode_bit_ops(&ops, &mut bytes);
        assert_eq!(bytes.len(), 15);
        assert_eq!(&bytes[5..10], &[2, 0xFF, 0xFF, 0xFF, 0xFF]);
        let back: Result<Vec<_>, _> = decode_bit_ops(&bytes).collect();
        assert_eq!(back.unwrap(), ops);
        let mut one = [0u8; 5];
        assert_eq!(encode_bit_op(&mut one, BitOp::Set(258)), Ok(5));
        assert_eq!(one, [1, 2, 1, 0, 0]);
        assert!(encode_bit_op(&mut one[..4], BitOp::Set(1)).is_err());
    }

    #[test]
    fn op_detects_corruption() {
        let mut bytes = Vec::new();
        encode_bit_ops(&[BitOp::Set(1), BitOp::Set(2)], &mut bytes);
        let mut bad = bytes.clone();
        bad[5] = 3;
        let got: Vec<_> = decode_bit_ops(&bad).collect();
        assert_eq!(
            got,
            vec![Ok(BitOp::Set(1)), Err(FormatError::UnknownBitOp { op: 3 })]
        );
        let got: Vec<_> = decode_bit_ops(&bytes[..9]).collect();
        assert!(matches!(
            got.as_slice(),
            [Err(FormatError::Truncated { .. })]
        ));
        // apply is all-or-nothing.
        let mut bm = RoaringBitmap::new();
        assert!(apply_bit_ops(&mut bm, &bad).is_err());
        assert!(bm.is_empty());
        apply_bit_ops(&mut bm, &bytes).unwrap();
        let mut clear = Vec::new();
        encode_bit_ops(&[BitOp::Clear(1)], &mut clear);
        apply_bit_ops(&mut bm, &clear).unwrap();
        assert_eq!(bm.iter().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn bitmap_round_trip() {
        let mut bm: RoaringBitmap = (0..5000).chain(70_000..70_010).collect();
        bm.insert_range(200_000..300_000);
        for b in [RoaringBitmap::new(), bm] {
            let mut bytes = Vec::new();
            serialize_bitmap(&b, &mut bytes);
            assert_eq!(deserialize_bitmap(&bytes).unwrap(), b);
        }
    }

    #[test]
    fn bitmap_run_containers() {
        // One run container (key 0) holding 10..=14, as written by other roaring implementations.
        let mut bytes = 12347u32.to_le_bytes().to_vec();
        bytes.push(0b1); // run-container bitmap
        bytes.extend_from_slice(&[0, 0, 4, 0]); // key 0, cardinality - 1 = 4
        bytes.extend_from_slice(&[1, 0, 10, 0, 4, 0]); // 1 run: start 10, length - 1 = 4
        let bm = deserialize_bitmap(&bytes).unwrap();
        assert_eq!(bm.iter().collect::<Vec<_>>(), vec![10, 11, 12, 13, 14]);
        // Overflowing run.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&[0xFF, 0xFF, 4, 0]);
        assert!(matches!(
            deserialize_bitmap(&bad),
            Err(FormatError::InvalidBitmap { .. })
        ));
    }

    #[test]
    fn bitmap_detects_corruption() {
        let bm: RoaringBitmap = [1, 5, 100_000].into_iter().collect();
        let mut bytes = Vec::new();
        serialize_bitmap(&bm, &mut bytes);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            deserialize_bitmap(&longer),
            Err(FormatError::TrailingBytes {
                what: "serialized bitmap",
                extra: 1
            })
        );
        assert!(matches!(
            deserialize_bitmap(&bytes[..bytes.len() - 1]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            deserialize_bitmap(&[1, 2, 3, 4]),
            Err(FormatError::InvalidBitmap { .. })
        ));
        // Huge container count in a tiny input.
        let mut huge = 12346u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(deserialize_bitmap(&huge).is_err());
    }

    #[test]
    fn containers_that_would_be_empty_or_miscounted_are_refused() {
        // Found by `cargo xtask fuzz bitmap_decoder`: a run container with
        // no runs deserialized into an empty container, and serializing the
        // bitmap panicked.
        let no_runs = [0x3b, 0x30, 0, 0, 0x01, 0x01, 0, 0, 0x24, 0, 0];
        assert!(matches!(
            deserialize_bitmap(&no_runs),
            Err(FormatError::InvalidBitmap { .. })
        ));
        // A run container of one run of 3 bits (start 5, length 2) whose
        // header says 1 bit (stored as 0), then the same header saying 3.
        let run = |card_minus_one: u8| {
            vec![
                0x3b,
                0x30,
                0,
                0,
                0x01,
                0,
                0,
                card_minus_one,
                0,
                1,
                0,
                5,
                0,
                2,
                0,
            ]
        };
        assert!(deserialize_bitmap(&run(0)).is_err());
        let ok = deserialize_bitmap(&run(2)).expect("a consistent run container");
        assert_eq!(ok.iter().collect::<Vec<_>>(), vec![5, 6, 7]);
        // A bitmap container whose header says 4097 bits over 4097 set bits,
        // then over 4096 and over none.
        let bitset = |set: usize| {
            let mut b = vec![0x3a, 0x30, 0, 0, 1, 0, 0, 0, 0, 0, 0x00, 0x10, 16, 0, 0, 0];
            let mut words = vec![0u8; 8192];
            for i in 0..set {
                words[i / 8] |= 1 << (i % 8);
            }
            b.extend_from_slice(&words);
            b
        };
        let full = deserialize_bitmap(&bitset(4097)).expect("a consistent bitmap container");
        assert_eq!(full.len(), 4097);
        let mut out = Vec::new();
        serialize_bitmap(&full, &mut out);
        assert_eq!(deserialize_bitmap(&out).unwrap(), full);
        assert!(deserialize_bitmap(&bitset(4096)).is_err());
        assert!(deserialize_bitmap(&bitset(0)).is_err());
    }
}

//! Fuzz target: bitmap deserialization, bit-op payloads and merge operands.
//!
//! Besides "never panics" (and no allocation sized by an unchecked length,
//! which the sanitizer's allocation limit catches), it checks that a
//! deserialized bitmap re-serializes to the same bytes, that applying an
//! operand either fails leaving the bitmap untouched or matches a
//! bit-by-bit model, and that a union operand round-trips.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roaring::RoaringBitmap;
use silo_format::{
    BitOp, apply_bitmap_operand, decode_bit_ops, deserialize_bitmap, encode_union_operand,
    serialize_bitmap,
};

fuzz_target!(|data: &[u8]| {
    // Portable serialization: what decodes is canonical.
    if let Ok(bitmap) = deserialize_bitmap(data) {
        let mut again = Vec::new();
        serialize_bitmap(&bitmap, &mut again);
        let back = deserialize_bitmap(&again).expect("a serialized bitmap decodes");
        assert_eq!(back, bitmap);
        // A union operand of it sets exactly its bits.
        let mut op = Vec::new();
        encode_union_operand(&bitmap, &mut op);
        let mut target = RoaringBitmap::new();
        apply_bitmap_operand(&mut target, &op).expect("a union operand applies");
        assert_eq!(target, bitmap);
    }

    // The input as a merge operand over a small starting bitmap.
    let start: RoaringBitmap = [1u32, 7, 1 << 20].into_iter().collect();
    let mut bitmap = start.clone();
    match apply_bitmap_operand(&mut bitmap, data) {
        Err(_) => assert_eq!(
            bitmap, start,
            "a failed operand leaves the bitmap unchanged"
        ),
        Ok(()) => {
            if data.first() != Some(&silo_format::BIT_OP_UNION) {
                // Bit ops: the same as applying each decoded op to a model.
                let mut model = start.clone();
                for op in decode_bit_ops(data) {
                    match op.expect("an applied payload decodes") {
                        BitOp::Set(doc) => {
                            model.insert(doc);
                        }
                        BitOp::Clear(doc) => {
                            model.remove(doc);
                        }
                    }
                }
                assert_eq!(bitmap, model);
            }
        }
    }
});

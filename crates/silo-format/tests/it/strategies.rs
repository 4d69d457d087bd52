//! Proptest strategies shared by the test modules.

use proptest::prelude::*;
use silo_format::{FileKind, Tag, Value};

pub(crate) fn file_kind() -> impl Strategy<Value = FileKind> {
    prop::sample::select(FileKind::ALL.to_vec())
}

pub(crate) fn tag() -> impl Strategy<Value = Tag> {
    prop::sample::select(Tag::ALL.to_vec())
}

/// A frame as `(tag, key, payload)`.
pub(crate) fn frame() -> impl Strategy<Value = (Tag, u64, Vec<u8>)> {
    (
        tag(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
}

/// A field value of any type. Floats come from arbitrary bits (NaNs included),
/// so compare documents by their bytes, not with `PartialEq`.
pub(crate) fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Deleted),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::U64),
        any::<u64>().prop_map(|b| Value::F64(f64::from_bits(b))),
        any::<bool>().prop_map(Value::Bool),
        ".{0,8}".prop_map(Value::Str),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        (prop::collection::vec(any::<i64>(), 0..5), any::<bool>())
            .prop_map(|(items, reset)| Value::I64List { items, reset }),
    ]
}

/// A document's fields with unique ids drawn from `0..max_id` (a small range
/// makes documents share fields, which is what merges are about).
pub(crate) fn fields(max_id: u16) -> impl Strategy<Value = Vec<(u16, Value)>> {
    prop::collection::btree_map(0..max_id, value(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// An encoded document.
pub(crate) fn document(max_id: u16) -> impl Strategy<Value = Vec<u8>> {
    fields(max_id).prop_map(|f| {
        let mut out = Vec::new();
        silo_format::encode_document(&f, &mut out).expect("unique ids encode");
        out
    })
}

/// Encodes frames back to back; returns the bytes and each frame's start.
pub(crate) fn encode_stream(frames: &[(Tag, u64, Vec<u8>)]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    for (tag, key, payload) in frames {
        let at = out.len();
        starts.push(at);
        out.resize(at + silo_format::frame_len(payload.len()), 0);
        silo_format::encode_frame(&mut out[at..], *tag, *key, payload)
            .expect("buffer sized by frame_len");
    }
    (out, starts)
}

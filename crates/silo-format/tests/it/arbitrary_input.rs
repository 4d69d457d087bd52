//! Property tests: arbitrary bytes (random, and valid encodings with random
//! damage) given to every decoder return `Ok` or a typed error, never panic.

use proptest::prelude::*;
use roaring::RoaringBitmap;
use silo_format::*;

use crate::strategies;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

/// A valid encoding with a few random bytes overwritten.
fn damaged(valid: Vec<u8>, edits: Vec<(usize, u8)>) -> Vec<u8> {
    let mut v = valid;
    if !v.is_empty() {
        for (i, b) in edits {
            let n = v.len();
            v[i % n] = b;
        }
    }
    v
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)
}

/// Runs every decoder over `input` and checks the invariants that hold for any input.
fn decode_everything(input: &[u8]) {
    let max = u32::try_from(input.len()).unwrap_or(u32::MAX);
    if let Ok((frame, used)) = decode_frame(input, max) {
        assert_eq!(used, frame_len(frame.payload.len()));
        assert!(used <= input.len());
    }
    let mut reader = FrameReader::new(input).with_max_payload(max);
    let mut next = 0;
    for (off, frame) in reader.by_ref() {
        assert_eq!(off, next);
        next = off + frame_len(frame.payload.len());
    }
    let end = reader.end().expect("a drained reader knows how it ended");
    assert_eq!(end.at(), next);
    assert_eq!(reader.position(), next);
    assert!(end.at() <= input.len());
    for kind in FileKind::ALL {
        let _ = FileHeader::decode(input, kind);
    }
    if let Ok(rec) = decode_record(input, max) {
        assert!(rec.value.len() <= rec.alloc as usize && rec.size() <= input.len());
    }
    // A data-file scan's decoder: a record as above, or a whole tombstone.
    if let Ok(entry) = decode_entry_at(input, max) {
        let (_, _, size) = entry.key_seq_size();
        assert!(size <= input.len());
        if let Entry::Value(rec) = entry {
            assert_eq!(decode_record(input, max), Ok(rec));
        }
    }
    for chunk in input.chunks(8) {
        let mut raw = [0u8; 8];
        raw[..chunk.len()].copy_from_slice(chunk);
        let raw = u64::from_le_bytes(raw);
        if let Ok(loc) = Loc::decode(raw, 7) {
            assert_eq!(loc.encode(7), raw);
        }
    }
    let _ = decode_entry(input);
    let _ = Manifest::decode(input);
    let ops: Vec<_> = decode_bit_ops(input).collect();
    assert!(ops.iter().filter(|r| r.is_err()).count() <= 1);
    let mut bm = RoaringBitmap::new();
    let _ = apply_bit_ops(&mut bm, input);
    if let Ok(bm) = deserialize_bitmap(input) {
        let mut again = Vec::new();
        serialize_bitmap(&bm, &mut again);
        assert!(again.len() <= input.len() || bm.is_empty());
    }
    if let Ok(doc) = DocumentRef::parse(input) {
        let mut n = 0;
        for (id, value) in doc.iter() {
            n += 1;
            assert!(doc.get(id).is_some());
            if let ValueRef::I64List(list) = value {
                assert_eq!(list.iter().count(), list.len());
            }
        }
        assert_eq!(n, doc.len());
    }
    let (a, b) = input.split_at(input.len() / 2);
    let mut out = Vec::new();
    if merge(a, b, &mut out).is_ok() {
        assert!(DocumentRef::parse(&out).is_ok());
        let mut base = Vec::new();
        compact(&out, &mut base).expect("a merged document compacts");
    } else {
        assert!(out.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(input in bytes()) {
        decode_everything(&input);
    }

    #[test]
    fn damaged_frames(frames in prop::collection::vec(strategies::frame(), 1..5), e in edits()) {
        let (stream, _) = strategies::encode_stream(&frames);
        decode_everything(&damaged(stream, e));
    }

    #[test]
    fn damaged_headers(kind in strategies::file_kind(), g: u64, e in edits()) {
        let h = FileHeader { generation: g, ..FileHeader::new(kind) };
        decode_everything(&damaged(h.encode().to_vec(), e));
    }

    #[test]
    fn damaged_records(value in prop::collection::vec(any::<u8>(), 0..40), e in edits()) {
        let alloc = alloc_for(value.len(), 10).unwrap();
        let mut buf = vec![0u8; record_size(alloc)];
        encode_record(&mut buf, 1, 2, &value, alloc).unwrap();
        decode_everything(&damaged(buf, e));
    }

    #[test]
    fn damaged_documents(doc in strategies::document(8), other in strategies::document(8), e in edits()) {
        decode_everything(&damaged(doc.clone(), e));
        let mut both = doc;
        both.extend_from_slice(&other);
        decode_everything(&both);
    }

    #[test]
    fn damaged_bitmaps(values in prop::collection::vec(any::<u32>(), 0..50), e in edits()) {
        let bm: RoaringBitmap = values.into_iter().collect();
        let mut bytes = Vec::new();
        serialize_bitmap(&bm, &mut bytes);
        decode_everything(&damaged(bytes, e));
    }
}

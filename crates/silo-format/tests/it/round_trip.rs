//! Property tests: every encoding decodes to what was encoded.

use proptest::prelude::*;
use roaring::RoaringBitmap;
use silo_format::*;

use crate::strategies;

proptest! {
    #[test]
    fn header(kind in strategies::file_kind(), flags: u16, generation: u64, base_seq: u64, param_a: u64, param_b: u64) {
        let h = FileHeader { kind, version: FORMAT_VERSION, flags, generation, base_seq, param_a, param_b };
        let bytes = h.encode();
        prop_assert_eq!(FileHeader::decode(&bytes, kind), Ok(h));
        for other in FileKind::ALL.into_iter().filter(|k| *k != kind) {
            prop_assert_eq!(FileHeader::decode(&bytes, other), Err(FormatError::WrongKind { expected: other, found: kind }));
        }
    }

    #[test]
    fn frame((tag, key, payload) in strategies::frame(), extra in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut buf = vec![0u8; frame_len(payload.len())];
        prop_assert_eq!(encode_frame(&mut buf, tag, key, &payload), Ok(buf.len()));
        let n = buf.len();
        buf.extend_from_slice(&extra);
        let (frame, used) = decode_frame(&buf, DEFAULT_MAX_PAYLOAD).unwrap();
        prop_assert_eq!(used, n);
        prop_assert_eq!(frame, Frame { tag, key, payload: &payload });
    }

    #[test]
    fn frame_stream(frames in prop::collection::vec(strategies::frame(), 0..10), zeros in 0usize..40) {
        let (mut bytes, starts) = strategies::encode_stream(&frames);
        let end = bytes.len();
        bytes.resize(end + zeros, 0);
        let mut reader = FrameReader::new(&bytes);
        let got: Vec<_> = reader.by_ref().collect();
        prop_assert_eq!(got.len(), frames.len());
        for ((off, f), (start, (tag, key, payload))) in got.iter().zip(starts.iter().zip(&frames)) {
            prop_assert_eq!(off, start);
            prop_assert_eq!(*f, Frame { tag: *tag, key: *key, payload });
        }
        prop_assert_eq!(reader.end(), Some(LogEnd::Clean { at: end }));
    }

    #[test]
    fn record(key: u64, seq: u64, value in prop::collection::vec(any::<u8>(), 0..100), slack in 0u32..200) {
        let alloc = alloc_for(value.len(), slack).unwrap();
        prop_assert!(alloc as usize >= value.len() && (alloc as usize).is_multiple_of(RECORD_ALIGN));
        let mut buf = vec![0xA5; record_size(alloc) + 3];
        prop_assert_eq!(encode_record(&mut buf, key, seq, &value, alloc), Ok(record_size(alloc)));
        prop_assert!(buf[RECORD_HEADER_LEN + value.len()..record_size(alloc)].iter().all(|&b| b == 0));
        let rec = decode_record(&buf, u32::MAX).unwrap();
        prop_assert_eq!(rec, Record { key, seq, alloc, value: &value });
    }

    #[test]
    fn index_loc(raw in prop_oneof![Just(0u64), Just(1u64), (8u64..(1 << 45)).prop_map(|x| x * 8)], key: u64) {
        let loc = match raw { 0 => Loc::Empty, 1 => Loc::Deleted, off => Loc::record(off).unwrap() };
        prop_assert_eq!(Loc::decode(loc.encode(key), key), Ok(loc));
        prop_assert_eq!(decode_entry(&encode_entry(key, loc)), Ok((key, loc)));
    }

    #[test]
    fn manifest(generation: u64, data_id: u64, index_id: u64, folded_seq: u64, counts: [u64; 6], clean: bool) {
        let [data_end, index_live, index_used, live_bytes, dead_bytes, batch_tag] = counts;
        let m = Manifest { generation, data_id, index_id, folded_seq, data_end, index_live, index_used, live_bytes, dead_bytes, clean, batch_tag };
        prop_assert_eq!(Manifest::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn bitmap_key_round_trip(field: u16, value in 0u64..(1 << 48)) {
        prop_assert_eq!(split_bitmap_key(bitmap_key(field, value).unwrap()), (field, value));
    }

    #[test]
    fn bit_ops(ops in prop::collection::vec(prop_oneof![any::<u32>().prop_map(BitOp::Set), any::<u32>().prop_map(BitOp::Clear)], 0..30)) {
        let mut bytes = vec![0u8; ops.len() * BIT_OP_LEN];
        for (op, chunk) in ops.iter().zip(bytes.chunks_mut(BIT_OP_LEN)) {
            prop_assert_eq!(encode_bit_op(chunk, *op), Ok(BIT_OP_LEN));
        }
        let back: Vec<_> = decode_bit_ops(&bytes).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&back, &ops);
        // Applying matches a set model.
        let mut bm = RoaringBitmap::new();
        let mut model = std::collections::BTreeSet::new();
        apply_bit_ops(&mut bm, &bytes).unwrap();
        for op in &ops {
            match op { BitOp::Set(d) => { model.insert(*d); } BitOp::Clear(d) => { model.remove(d); } }
        }
        prop_assert_eq!(bm.iter().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn bitmap(values in prop::collection::vec(any::<u32>(), 0..200), range_start in 0u32..1_000_000, range_len in 0u32..20_000) {
        let mut bm: RoaringBitmap = values.into_iter().collect();
        bm.insert_range(range_start..range_start + range_len);
        let mut bytes = Vec::new();
        serialize_bitmap(&bm, &mut bytes);
        prop_assert_eq!(deserialize_bitmap(&bytes), Ok(bm));
    }

    #[test]
    fn document(fields in strategies::fields(u16::MAX)) {
        let mut bytes = Vec::new();
        encode_document(&fields, &mut bytes).unwrap();
        let doc = DocumentRef::parse(&bytes).unwrap();
        prop_assert_eq!(doc.len(), fields.len());
        let back: Vec<(u16, Value)> = doc.iter().map(|(id, v)| (id, v.to_value())).collect();
        prop_assert_eq!(back.iter().map(|(id, _)| *id).collect::<Vec<_>>(), fields.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        for (id, _) in &fields {
            prop_assert!(doc.get(*id).is_some());
        }
        let mut again = Vec::new();
        encode_document(&back, &mut again).unwrap();
        prop_assert_eq!(again, bytes);
    }
}

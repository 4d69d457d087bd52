//! Golden fixtures: version-1 files checked into `tests/fixtures/v1/`. Each
//! test decodes the stored bytes and checks their contents, and checks the
//! encoder still writes the same bytes, so a format change that breaks old
//! files fails here.
//!
//! To (re)write the fixtures after an intended format change, bump the
//! version, add a new fixture directory, and run
//! `SILO_BLESS_FIXTURES=1 cargo test -p silo-format --test it fixtures`.

use std::path::PathBuf;

use roaring::RoaringBitmap;
use silo_format::*;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1")
        .join(name)
}

/// Returns the stored fixture, after checking the encoder still produces it
/// (or writing it when `SILO_BLESS_FIXTURES` is set).
fn golden(name: &str, encoded: &[u8]) -> Vec<u8> {
    let p = path(name);
    if std::env::var_os("SILO_BLESS_FIXTURES").is_some() {
        std::fs::write(&p, encoded).expect("write fixture");
    }
    let stored = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        stored == encoded,
        "the encoder no longer writes {name} byte for byte: the v1 format changed"
    );
    stored
}

/// A stored fixture that is not produced by an encoder (a corrupt copy).
fn stored_copy(name: &str, bytes: &[u8]) -> Vec<u8> {
    golden(name, bytes)
}

const FRAMES: &[(Tag, u64, &[u8])] = &[
    (Tag::BatchBegin, 2, b""),
    (Tag::Put, 1, b"one"),
    (Tag::Merge, u64::MAX, b"\x01\x00\x00\x00\x00"),
    (Tag::BatchCommit, 2, b""),
    (Tag::Delete, 0, b""),
];

fn log_file() -> Vec<u8> {
    let header = FileHeader {
        generation: 2,
        base_seq: 100,
        ..FileHeader::new(FileKind::OpsLog)
    };
    let mut out = header.encode().to_vec();
    for (tag, key, payload) in FRAMES {
        let at = out.len();
        out.resize(at + frame_len(payload.len()), 0);
        encode_frame(&mut out[at..], *tag, *key, payload).unwrap();
    }
    out.resize(out.len() + 32, 0); // the zero-filled preallocated tail
    out
}

#[test]
fn header_v1() {
    let h = FileHeader {
        generation: 3,
        param_a: 1024,
        param_b: 0x5EED,
        ..FileHeader::new(FileKind::Index)
    };
    let bytes = golden("header-index.bin", &h.encode());
    assert_eq!(&bytes[..8], b"SILO-IDX");
    let got = FileHeader::decode(&bytes, FileKind::Index).unwrap();
    assert_eq!(
        (
            got.version,
            got.generation,
            got.param_a,
            got.param_b,
            got.base_seq,
            got.flags
        ),
        (1, 3, 1024, 0x5EED, 0, 0)
    );
}

#[test]
fn manifest_v1() {
    let m = Manifest {
        generation: 5,
        data_id: 3,
        index_id: 4,
        folded_seq: 1234,
        data_end: 4096,
        index_live: 10,
        index_used: 11,
        live_bytes: 3000,
        dead_bytes: 96,
        clean: true,
        batch_tag: 0,
    };
    let bytes = golden("manifest.bin", &m.encode());
    let got = Manifest::decode(&bytes).unwrap();
    assert_eq!(
        (got.generation, got.data_id, got.index_id, got.folded_seq),
        (5, 3, 4, 1234)
    );
    assert_eq!(
        (
            got.data_end,
            got.index_live,
            got.index_used,
            got.live_bytes,
            got.dead_bytes,
            got.clean
        ),
        (4096, 10, 11, 3000, 96, true)
    );
}

#[test]
fn log_v1_and_corrupt_copy() {
    let bytes = golden("log-0.bin", &log_file());
    let header = FileHeader::decode(&bytes, FileKind::OpsLog).unwrap();
    assert_eq!((header.generation, header.base_seq), (2, 100));
    let mut reader = FrameReader::new(&bytes[HEADER_LEN..]);
    let frames: Vec<_> = reader
        .by_ref()
        .map(|(_, f)| (f.tag, f.key, f.payload.to_vec()))
        .collect();
    let expected: Vec<_> = FRAMES
        .iter()
        .map(|(t, k, p)| (*t, *k, p.to_vec()))
        .collect();
    assert_eq!(frames, expected);
    // 2 batch markers + 2 ops with payloads 3 and 5 bytes + 1 delete.
    let end = 5 * FRAME_OVERHEAD + 3 + 5;
    assert_eq!(reader.end(), Some(LogEnd::Clean { at: end }));

    // The corrupt copy has one byte of the third frame's payload changed.
    let third = HEADER_LEN + 2 * FRAME_OVERHEAD + 3;
    let mut corrupt = bytes.clone();
    corrupt[third + FRAME_HEADER_LEN] ^= 0x80;
    let corrupt = stored_copy("log-0-corrupt.bin", &corrupt);
    let mut reader = FrameReader::new(&corrupt[HEADER_LEN..]);
    assert_eq!(reader.by_ref().count(), 2);
    assert!(matches!(
        reader.end(),
        Some(LogEnd::Corrupt { at, reason: StopReason::BadChecksum { .. } }) if at == third - HEADER_LEN
    ));
}

#[test]
fn record_v1_and_corrupt_copy() {
    let mut buf = vec![0u8; record_size(16)];
    encode_record(&mut buf, 42, 7, b"silo value", 16).unwrap();
    let bytes = golden("record.bin", &buf);
    let rec = decode_record(&bytes, u32::MAX).unwrap();
    assert_eq!(
        rec,
        Record {
            key: 42,
            seq: 7,
            alloc: 16,
            value: b"silo value"
        }
    );
    let mut corrupt = bytes.clone();
    corrupt[RECORD_HEADER_LEN + 4] = b'X';
    let corrupt = stored_copy("record-corrupt.bin", &corrupt);
    assert!(matches!(
        decode_record(&corrupt, u32::MAX),
        Err(FormatError::ChecksumMismatch { what: "record", .. })
    ));
}

#[test]
fn tombstone_v1() {
    let mut buf = vec![0u8; RECORD_HEADER_LEN];
    encode_tombstone(&mut buf, 42, 9).unwrap();
    let bytes = golden("tombstone.bin", &buf);
    assert_eq!(
        decode_entry_at(&bytes, u32::MAX - 1),
        Ok(Entry::Tombstone { key: 42, seq: 9 })
    );
}

#[test]
fn index_bucket_v1() {
    let slots = [
        (0, Loc::Empty),
        (u64::MAX, Loc::Record(64)),
        (5, Loc::Deleted),
        (0, Loc::Record(4096)),
    ];
    let encoded: Vec<u8> = slots
        .iter()
        .flat_map(|(k, l)| encode_entry(*k, *l))
        .collect();
    let bytes = golden("index-bucket.bin", &encoded);
    assert_eq!(bytes.len(), SLOTS_PER_BUCKET * INDEX_ENTRY_LEN);
    let got: Vec<_> = bytes
        .chunks(INDEX_ENTRY_LEN)
        .map(|c| decode_entry(c).unwrap())
        .collect();
    assert_eq!(got, slots);
    // Pinned: the slot position function is part of the format.
    assert_eq!(hash_key(42, 0x5EED), 0xFA6F_ACFD_A44A_212F);
}

#[test]
fn bitmap_and_ops_v1() {
    let bm: RoaringBitmap = [1, 2, 3, 100_000].into_iter().collect();
    let mut encoded = Vec::new();
    serialize_bitmap(&bm, &mut encoded);
    let bytes = golden("bitmap.bin", &encoded);
    assert_eq!(
        deserialize_bitmap(&bytes)
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 100_000]
    );

    let mut ops = vec![0u8; 2 * BIT_OP_LEN];
    encode_bit_op(&mut ops, BitOp::Set(7)).unwrap();
    encode_bit_op(&mut ops[BIT_OP_LEN..], BitOp::Clear(1)).unwrap();
    let bytes = golden("bit-ops.bin", &ops);
    let got: Vec<_> = decode_bit_ops(&bytes).collect::<Result<_, _>>().unwrap();
    assert_eq!(got, vec![BitOp::Set(7), BitOp::Clear(1)]);
}

#[test]
fn document_v1() {
    let fields = vec![
        (1, Value::I64(-1)),
        (2, Value::U64(2)),
        (3, Value::F64(0.5)),
        (4, Value::Bool(true)),
        (5, Value::Str("five".into())),
        (6, Value::Bytes(vec![6, 6])),
        (
            7,
            Value::I64List {
                items: vec![7, -7],
                reset: true,
            },
        ),
        (8, Value::Deleted),
    ];
    let mut encoded = Vec::new();
    encode_document(&fields, &mut encoded).unwrap();
    let bytes = golden("document.bin", &encoded);
    let doc = DocumentRef::parse(&bytes).unwrap();
    let got: Vec<(u16, Value)> = doc.iter().map(|(id, v)| (id, v.to_value())).collect();
    assert_eq!(got, fields);
    let mut corrupt = bytes.clone();
    corrupt[0] = 9;
    let corrupt = stored_copy("document-corrupt.bin", &corrupt);
    assert!(DocumentRef::parse(&corrupt).is_err());
}

//! Unit tests of the document encoding and merge rules.

use super::*;
use crate::error::FormatError;

fn list(items: &[i64], reset: bool) -> Value {
    Value::I64List {
        items: items.to_vec(),
        reset,
    }
}

fn doc(fields: &[(u16, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_document(fields, &mut out).unwrap();
    out
}

fn read(bytes: &[u8]) -> Vec<(u16, Value)> {
    DocumentRef::parse(bytes)
        .unwrap()
        .iter()
        .map(|(id, v)| (id, v.to_value()))
        .collect()
}

fn every_type() -> Vec<(u16, Value)> {
    vec![
        (9, Value::Str("héllo".into())),
        (1, Value::I64(-5)),
        (2, Value::U64(u64::MAX)),
        (3, Value::F64(1.5)),
        (4, Value::Bool(true)),
        (0, Value::Deleted),
        (7, Value::Bytes(vec![0, 255])),
        (8, list(&[1, -2, 3], true)),
        (u16::MAX, list(&[], false)),
    ]
}

#[test]
fn round_trip() {
    let fields = every_type();
    let bytes = doc(&fields);
    let mut sorted = fields.clone();
    sorted.sort_by_key(|(id, _)| *id);
    assert_eq!(read(&bytes), sorted);
    let d = DocumentRef::parse(&bytes).unwrap();
    assert_eq!(d.len(), fields.len());
    assert_eq!(d.get(9), Some(ValueRef::Str("héllo")));
    assert_eq!(d.get(0), Some(ValueRef::Deleted));
    assert_eq!(d.get(5), None);
    let Some(ValueRef::I64List(l)) = d.get(8) else {
        panic!("field 8 is a list")
    };
    assert!(l.reset());
    assert_eq!(l.iter().collect::<Vec<_>>(), vec![1, -2, 3]);
    assert_eq!((l.len(), l.get(1), l.get(3)), (3, Some(-2), None));
    // Layout of the header and of one field.
    let small = doc(&[(0x0102, Value::Bool(true))]);
    assert_eq!(small, vec![DOC_VERSION, 1, 0, 0x02, 0x01, TYPE_BOOL, 0, 1]);
    // The writer gives the same bytes as encode_document.
    let mut out = vec![0xEE];
    let mut w = DocumentWriter::new(&mut out);
    w.field(0x0102, ValueRef::Bool(true)).unwrap();
    assert_eq!(w.finish(), small.len());
    assert_eq!(&out[1..], &small[..]);
}

#[test]
fn detects_corruption() {
    let bytes = doc(&every_type());
    // Cutting the document anywhere is an error.
    for cut in 0..bytes.len() {
        assert!(DocumentRef::parse(&bytes[..cut]).is_err(), "cut {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        DocumentRef::parse(&longer).unwrap_err(),
        FormatError::TrailingBytes {
            what: "document",
            extra: 1
        }
    );
    let mut v = bytes.clone();
    v[0] = 2;
    assert_eq!(
        DocumentRef::parse(&v).unwrap_err(),
        FormatError::UnsupportedDocumentVersion {
            found: 2,
            supported: 1
        }
    );
    let bool_doc = doc(&[(1, Value::Bool(true))]);
    let mut b = bool_doc.clone();
    b[DOC_HEADER_LEN + FIELD_VALUE_OFFSET] = 2;
    assert_eq!(
        DocumentRef::parse(&b).unwrap_err(),
        FormatError::InvalidBool { field: 1, byte: 2 }
    );
    let mut b = bool_doc.clone();
    b[DOC_HEADER_LEN + FIELD_TYPE_OFFSET] = 8;
    assert_eq!(
        DocumentRef::parse(&b).unwrap_err(),
        FormatError::UnknownValueType { field: 1, ty: 8 }
    );
    let mut b = bool_doc.clone();
    b[DOC_HEADER_LEN + FIELD_FLAGS_OFFSET] = FLAG_RESET;
    assert_eq!(
        DocumentRef::parse(&b).unwrap_err(),
        FormatError::InvalidFieldFlags { field: 1, flags: 1 }
    );
    let mut s = doc(&[(1, Value::Str("ab".into()))]);
    let last = s.len() - 1;
    s[last] = 0xFF;
    assert_eq!(
        DocumentRef::parse(&s).unwrap_err(),
        FormatError::InvalidUtf8 { field: 1 }
    );
    // Out of order and duplicate ids, built by hand.
    let two = doc(&[(1, Value::Bool(true)), (2, Value::Bool(false))]);
    let mut swapped = two.clone();
    swapped[DOC_HEADER_LEN] = 3;
    assert_eq!(
        DocumentRef::parse(&swapped).unwrap_err(),
        FormatError::FieldOrder {
            previous: 3,
            found: 2
        }
    );
    let mut dup = two.clone();
    dup[DOC_HEADER_LEN] = 2;
    assert_eq!(
        DocumentRef::parse(&dup).unwrap_err(),
        FormatError::DuplicateField { field: 2 }
    );
    // A huge list count is caught by the length check, not an allocation.
    let mut l = doc(&[(1, list(&[1], false))]);
    l[DOC_HEADER_LEN + FIELD_VALUE_OFFSET..DOC_HEADER_LEN + FIELD_VALUE_OFFSET + 4]
        .copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        DocumentRef::parse(&l),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn encode_rejects_duplicates() {
    let mut out = vec![7];
    assert_eq!(
        encode_document(&[(3, Value::I64(1)), (3, Value::I64(2))], &mut out),
        Err(FormatError::DuplicateField { field: 3 })
    );
    assert_eq!(out, vec![7], "output untouched on error");
    let mut out = Vec::new();
    let mut w = DocumentWriter::new(&mut out);
    w.field(5, ValueRef::U64(1)).unwrap();
    assert_eq!(
        w.field(4, ValueRef::U64(1)).unwrap_err(),
        FormatError::FieldOrder {
            previous: 5,
            found: 4
        }
    );
}

#[test]
fn merge_rules() {
    let older = doc(&[
        (1, Value::I64(1)),
        (2, list(&[1, 2], false)),
        (3, list(&[1], true)),
        (4, Value::Str("old".into())),
        (5, Value::Bool(true)),
        (6, Value::Deleted),
        (7, list(&[9], false)),
    ]);
    let newer = doc(&[
        (2, list(&[3], false)),
        (3, list(&[2], false)),
        (4, list(&[5], false)),
        (5, Value::Deleted),
        (6, list(&[6], false)),
        (7, list(&[8], true)),
        (8, Value::U64(8)),
    ]);
    let mut out = Vec::new();
    merge(&older, &newer, &mut out).unwrap();
    assert_eq!(
        read(&out),
        vec![
            (1, Value::I64(1)),
            (2, list(&[1, 2, 3], false)),
            (3, list(&[1, 2], true)),
            (4, list(&[5], true)),
            (5, Value::Deleted),
            (6, list(&[6], true)),
            (7, list(&[8], true)),
            (8, Value::U64(8)),
        ]
    );
    let mut base = Vec::new();
    compact(&out, &mut base).unwrap();
    assert_eq!(
        read(&base),
        vec![
            (1, Value::I64(1)),
            (2, list(&[1, 2, 3], false)),
            (3, list(&[1, 2], false)),
            (4, list(&[5], false)),
            (6, list(&[6], false)),
            (7, list(&[8], false)),
            (8, Value::U64(8)),
        ]
    );
}

#[test]
fn merge_rejects_bad_input_and_leaves_output() {
    let good = doc(&[(1, Value::I64(1))]);
    let mut out = vec![1, 2, 3];
    assert!(merge(&good, &[9], &mut out).is_err());
    assert!(merge(&[], &good, &mut out).is_err());
    assert!(compact(&[1, 1], &mut out).is_err());
    assert_eq!(out, vec![1, 2, 3]);
}

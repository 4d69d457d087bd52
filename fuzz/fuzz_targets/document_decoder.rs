//! Fuzz target: document parsing, reading every value, merging and compacting.
//!
//! Besides "never panics", it checks that parsing accepts exactly what
//! re-encodes to the same bytes, that merge output is a valid document, and
//! that merging is associative when the input splits into three documents.

#![no_main]

use libfuzzer_sys::fuzz_target;
use silo_format::{DocumentRef, Value, ValueRef, compact, encode_document, merge};

fn merged(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match merge(a, b, &mut out) {
        Ok(()) => Some(out),
        Err(_) => {
            assert!(out.is_empty(), "a failed merge leaves the output untouched");
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = DocumentRef::parse(data) {
        let mut fields: Vec<(u16, Value)> = Vec::new();
        for (id, value) in doc.iter() {
            if let ValueRef::I64List(list) = value {
                assert_eq!(list.iter().count(), list.len());
            }
            assert!(doc.get(id).is_some());
            fields.push((id, value.to_value()));
        }
        assert_eq!(fields.len(), doc.len());
        // A valid document is canonical: re-encoding gives the same bytes.
        let mut again = Vec::new();
        encode_document(&fields, &mut again).expect("parsed fields encode");
        assert_eq!(again, data);
        let mut base = Vec::new();
        compact(data, &mut base).expect("a valid document compacts");
        assert!(DocumentRef::parse(&base).is_ok());
    }

    let (a, b) = data.split_at(data.len() / 2);
    if let Some(ab) = merged(a, b) {
        assert!(DocumentRef::parse(&ab).is_ok());
    }

    // Three parts: associativity whenever all three are documents.
    let third = data.len() / 3;
    let (x, rest) = data.split_at(third);
    let (y, z) = rest.split_at(third);
    if let (Some(xy), Some(yz)) = (merged(x, y), merged(y, z)) {
        let left = merged(&xy, z);
        let right = merged(x, &yz);
        assert_eq!(left, right, "merge is associative");
    }
});

//! The merge operator of an engine that holds the layers' keys
//! ([`crate::keyspace`]): bitmap keys fold bit-op and union operands over
//! their frozen bitmap, document keys fold partial documents over the
//! stored one, and registry keys take no merges.

use roaring::RoaringBitmap;
use silo_core::MergeOperator;
use silo_format::{apply_bitmap_operand, deserialize_bitmap, serialize_bitmap};

use crate::keyspace::{KeyKind, kind_of};

/// The operator [`crate::BitmapStore::open`] installs on its engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerOperator;

impl MergeOperator for LayerOperator {
    fn merge(
        &self,
        key: u64,
        existing: Option<&[u8]>,
        operands: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        match kind_of(key) {
            KeyKind::Bitmap => fold_bitmap(existing, operands, out),
            KeyKind::Document => fold_document(existing, operands, out),
            KeyKind::Registry => Err(format!(
                "key {key:#018x} is a field registry entry, which takes no merges"
            )),
        }
    }
}

/// Folds bitmap operands over the frozen bitmap `existing` (none: empty).
fn fold_bitmap(
    existing: Option<&[u8]>,
    operands: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut bitmap = match existing {
        Some(bytes) => deserialize_bitmap(bytes).map_err(|e| format!("stored bitmap: {e}"))?,
        None => RoaringBitmap::new(),
    };
    for operand in operands {
        apply_bitmap_operand(&mut bitmap, operand).map_err(|e| format!("bitmap operand: {e}"))?;
    }
    serialize_bitmap(&bitmap, out);
    Ok(())
}

/// Folds partial documents over the stored document `existing` (none: the
/// first operand starts it), then drops deletion markers.
fn fold_document(
    existing: Option<&[u8]>,
    operands: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut acc: Vec<u8> = Vec::new();
    let mut operands = operands.iter();
    match existing {
        Some(doc) => acc.extend_from_slice(doc),
        None => match operands.next() {
            Some(first) => acc.extend_from_slice(first),
            None => return Err("a document merge with nothing to merge".to_owned()),
        },
    }
    let mut next = Vec::new();
    for operand in operands {
        next.clear();
        silo_format::merge(&acc, operand, &mut next).map_err(|e| format!("document: {e}"))?;
        std::mem::swap(&mut acc, &mut next);
    }
    silo_format::compact(&acc, out).map_err(|e| format!("document: {e}"))
}

#[cfg(test)]
mod tests {
    use silo_format::{BitOp, Value, encode_bit_ops, encode_document, encode_union_operand};

    use super::*;
    use crate::keyspace::{REGISTRY_FIELD, doc_key, key};

    fn fold(key: u64, existing: Option<&[u8]>, operands: &[&[u8]]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        LayerOperator.merge(key, existing, operands, &mut out)?;
        Ok(out)
    }

    #[test]
    fn bitmaps_fold_bit_ops_and_unions_over_their_base() {
        let k = key(4, 10).unwrap();
        let base: RoaringBitmap = [1u32, 2, 3].into_iter().collect();
        let mut base_bytes = Vec::new();
        serialize_bitmap(&base, &mut base_bytes);
        let mut ops = Vec::new();
        encode_bit_ops(&[BitOp::Clear(2), BitOp::Set(8)], &mut ops);
        let mut union = Vec::new();
        encode_union_operand(&[100u32, 200].into_iter().collect(), &mut union);
        let out = fold(k, Some(&base_bytes), &[&ops, &union]).unwrap();
        let got = deserialize_bitmap(&out).unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), vec![1, 3, 8, 100, 200]);
        let out = fold(k, None, &[&ops]).unwrap();
        assert_eq!(
            deserialize_bitmap(&out).unwrap().iter().collect::<Vec<_>>(),
            vec![8]
        );
        assert!(fold(k, Some(b"not a bitmap"), &[&ops]).is_err());
        assert!(fold(k, Some(&base_bytes), &[&ops[..3]]).is_err());
    }

    #[test]
    fn documents_fold_partials_and_drop_deletion_markers() {
        let doc = |fields: &[(u16, Value)]| {
            let mut out = Vec::new();
            encode_document(fields, &mut out).unwrap();
            out
        };
        let base = doc(&[(1, Value::I64(5)), (2, Value::Str("a".into()))]);
        let patch = doc(&[(2, Value::Deleted), (3, Value::Bool(true))]);
        let out = fold(doc_key(9), Some(&base), &[&patch]).unwrap();
        assert_eq!(out, doc(&[(1, Value::I64(5)), (3, Value::Bool(true))]));
        let out = fold(doc_key(9), None, &[&base, &patch]).unwrap();
        assert_eq!(out, doc(&[(1, Value::I64(5)), (3, Value::Bool(true))]));
        assert!(fold(doc_key(9), None, &[]).is_err());
        assert!(fold(doc_key(9), Some(&base), &[b"junk"]).is_err());
    }

    #[test]
    fn registry_entries_take_no_merges() {
        assert!(fold(key(REGISTRY_FIELD, 1).unwrap(), None, &[b"x"]).is_err());
    }
}

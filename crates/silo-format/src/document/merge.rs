//! Merging an older and a newer document into one ([`merge`]), and
//! compacting a merged document into a stored base ([`compact`]).

use super::decode::{DocumentRef, RawField};
use super::encode::DocumentWriter;
use super::value::{FLAG_RESET, I64ListRef, ValueRef};
use crate::error::FormatError;

/// The bytes of an encoded list (empty for a list built from items, which
/// never occurs for fields read from a document).
fn list_bytes<'a>(list: &I64ListRef<'a>) -> &'a [u8] {
    match *list {
        I64ListRef::Encoded { bytes, .. } => bytes,
        I64ListRef::Items { .. } => &[],
    }
}

/// Writes the merge of one field present in both documents.
fn merge_field(
    w: &mut DocumentWriter<'_>,
    older: &RawField<'_>,
    newer: &RawField<'_>,
) -> Result<(), FormatError> {
    match (older.value, newer.value) {
        // Newer list extends an older list: older items first, older's RESET kept.
        (ValueRef::I64List(old), ValueRef::I64List(new)) if !new.reset() => {
            let flags = if old.reset() { FLAG_RESET } else { 0 };
            w.list_concat(newer.id, flags, [list_bytes(&old), list_bytes(&new)])
        }
        // Newer list without RESET over Deleted or a non-list: it replaces, so mark it RESET.
        (_, ValueRef::I64List(new)) if !new.reset() => {
            w.list_concat(newer.id, FLAG_RESET, [list_bytes(&new), &[]])
        }
        // Deleted, scalars, strings, bytes and RESET lists replace the older value.
        _ => w.raw(newer.id, newer.encoded),
    }
}

/// Merges `newer` over `older` (both encoded documents) and appends the
/// result to `out`. Per field:
///
/// - present in only one document: taken as it is;
/// - newer is Deleted: the Deleted marker is kept (so merging stays associative);
/// - newer is a scalar, string or bytes: newer;
/// - newer is an `I64List` with RESET: newer;
/// - newer is an `I64List` without RESET over an older `I64List`: the
///   concatenation, older items first, with older's RESET flag;
/// - newer is an `I64List` without RESET over Deleted or a non-list: newer
///   with RESET set.
///
/// `merge(merge(a, b), c) == merge(a, merge(b, c))` byte for byte. On error
/// `out` is left as it was.
pub fn merge(older: &[u8], newer: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let older = DocumentRef::parse(older)?;
    let newer = DocumentRef::parse(newer)?;
    let start = out.len();
    let result = merge_into(older, newer, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn merge_into(
    older: DocumentRef<'_>,
    newer: DocumentRef<'_>,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let mut w = DocumentWriter::new(out);
    let mut a = older.raw_fields().peekable();
    let mut b = newer.raw_fields().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(o), None) => {
                w.raw(o.id, o.encoded)?;
                a.next();
            }
            (None, Some(n)) => {
                w.raw(n.id, n.encoded)?;
                b.next();
            }
            (Some(o), Some(n)) if o.id < n.id => {
                w.raw(o.id, o.encoded)?;
                a.next();
            }
            (Some(o), Some(n)) if o.id > n.id => {
                w.raw(n.id, n.encoded)?;
                b.next();
            }
            (Some(o), Some(n)) => {
                merge_field(&mut w, o, n)?;
                a.next();
                b.next();
            }
        }
    }
    w.finish();
    Ok(())
}

/// Appends `doc` with its Deleted markers dropped and RESET flags cleared to
/// `out`: the form stored as a base value with nothing older under it.
/// On error `out` is left as it was.
pub fn compact(doc: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let doc = DocumentRef::parse(doc)?;
    let start = out.len();
    let mut w = DocumentWriter::new(out);
    for f in doc.raw_fields() {
        let result = match f.value {
            ValueRef::Deleted => Ok(()),
            ValueRef::I64List(list) if list.reset() => {
                w.list_concat(f.id, 0, [list_bytes(&list), &[]])
            }
            _ => w.raw(f.id, f.encoded),
        };
        if let Err(e) = result {
            out.truncate(start);
            return Err(e);
        }
    }
    w.finish();
    Ok(())
}

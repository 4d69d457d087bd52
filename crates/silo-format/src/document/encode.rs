//! Writing documents: [`DocumentWriter`] field by field, or
//! [`encode_document`] from a list of fields.

use super::value::{I64ListRef, TYPE_I64_LIST, Value, ValueRef};
use super::{DOC_COUNT_OFFSET, DOC_HEADER_LEN, DOC_VERSION};
use crate::error::FormatError;

/// Writes a document into a caller's `Vec<u8>`, appending after whatever it
/// already holds. Fields must be added in strictly increasing id order;
/// call [`DocumentWriter::finish`] to write the field count (a writer dropped
/// unfinished leaves a document that claims zero fields and fails to parse).
#[derive(Debug)]
pub struct DocumentWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    count: u16,
    last: Option<u16>,
}

impl<'a> DocumentWriter<'a> {
    /// Starts a document at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        out.push(DOC_VERSION);
        out.extend_from_slice(&0u16.to_le_bytes());
        DocumentWriter {
            out,
            start,
            count: 0,
            last: None,
        }
    }

    /// Checks that `field` may follow the previous field and counts it.
    fn admit(&mut self, field: u16) -> Result<(), FormatError> {
        match self.last {
            Some(prev) if prev == field => return Err(FormatError::DuplicateField { field }),
            Some(prev) if prev > field => {
                return Err(FormatError::FieldOrder {
                    previous: prev,
                    found: field,
                });
            }
            _ => {}
        }
        self.count = self
            .count
            .checked_add(1)
            .ok_or(FormatError::LengthTooLarge {
                what: "document field count",
                len: u64::from(u16::MAX) + 1,
                max: u64::from(u16::MAX),
            })?;
        self.last = Some(field);
        Ok(())
    }

    fn len_u32(what: &'static str, len: usize) -> Result<[u8; 4], FormatError> {
        u32::try_from(len)
            .map(u32::to_le_bytes)
            .map_err(|_| FormatError::LengthTooLarge {
                what,
                len: len as u64,
                max: u64::from(u32::MAX),
            })
    }

    /// Appends a field with value `value`.
    pub fn field(&mut self, field: u16, value: ValueRef<'_>) -> Result<&mut Self, FormatError> {
        // Validate lengths before writing anything.
        let prefix = match value {
            ValueRef::Str(s) => Some(Self::len_u32("document string", s.len())?),
            ValueRef::Bytes(b) => Some(Self::len_u32("document bytes", b.len())?),
            ValueRef::I64List(list) => Some(Self::len_u32("document list", list.len())?),
            _ => None,
        };
        self.admit(field)?;
        let out = &mut *self.out;
        out.extend_from_slice(&field.to_le_bytes());
        out.push(value.type_code());
        out.push(value.flags());
        match value {
            ValueRef::Deleted => {}
            ValueRef::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            ValueRef::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            ValueRef::F64(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
            ValueRef::Bool(v) => out.push(u8::from(v)),
            ValueRef::Str(s) => {
                out.extend_from_slice(&prefix.unwrap_or_default());
                out.extend_from_slice(s.as_bytes());
            }
            ValueRef::Bytes(b) => {
                out.extend_from_slice(&prefix.unwrap_or_default());
                out.extend_from_slice(b);
            }
            ValueRef::I64List(list) => {
                out.extend_from_slice(&prefix.unwrap_or_default());
                match list {
                    I64ListRef::Encoded { bytes, .. } => out.extend_from_slice(bytes),
                    I64ListRef::Items { items, .. } => {
                        out.reserve(items.len().saturating_mul(8));
                        for v in items {
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                }
            }
        }
        Ok(self)
    }

    /// Appends an `I64List` field whose items are the concatenation of
    /// `parts` (each the little-endian bytes of whole items).
    pub(crate) fn list_concat(
        &mut self,
        field: u16,
        flags: u8,
        parts: [&[u8]; 2],
    ) -> Result<(), FormatError> {
        let total_bytes = parts
            .iter()
            .map(|p| p.len())
            .fold(0usize, usize::saturating_add);
        let count = Self::len_u32("document list", total_bytes / 8)?;
        self.admit(field)?;
        let out = &mut *self.out;
        out.extend_from_slice(&field.to_le_bytes());
        out.push(TYPE_I64_LIST);
        out.push(flags);
        out.extend_from_slice(&count);
        for p in parts {
            out.extend_from_slice(p);
        }
        Ok(())
    }

    /// Appends an already-encoded field (`field_id | type | flags | value`)
    /// taken from a validated document.
    pub(crate) fn raw(&mut self, field: u16, encoded: &[u8]) -> Result<(), FormatError> {
        self.admit(field)?;
        self.out.extend_from_slice(encoded);
        Ok(())
    }

    /// Writes the field count; returns the document's encoded length.
    pub fn finish(self) -> usize {
        let count = self.count.to_le_bytes();
        if let Some(dst) = self
            .out
            .get_mut(self.start + DOC_COUNT_OFFSET..self.start + DOC_HEADER_LEN)
        {
            dst.copy_from_slice(&count);
        }
        self.out.len() - self.start
    }
}

/// Appends the document holding `fields` to `out`. Fields are sorted by id;
/// an id given twice is [`FormatError::DuplicateField`]. On error `out` is
/// left as it was.
pub fn encode_document(fields: &[(u16, Value)], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let mut sorted: Vec<&(u16, Value)> = fields.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    let start = out.len();
    let mut writer = DocumentWriter::new(out);
    for (id, value) in sorted {
        if let Err(e) = writer.field(*id, value.as_ref()) {
            out.truncate(start);
            return Err(e);
        }
    }
    writer.finish();
    Ok(())
}

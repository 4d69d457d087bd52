//! Reading documents: [`DocumentRef`] validates an encoded document once,
//! then reads fields from it without allocating.

use super::value::{
    FLAG_RESET, I64ListRef, TYPE_BOOL, TYPE_BYTES, TYPE_DELETED, TYPE_F64, TYPE_I64, TYPE_I64_LIST,
    TYPE_STR, TYPE_U64, ValueRef,
};
use super::{DOC_HEADER_LEN, DOC_VERSION, FIELD_HEADER_LEN};
use crate::error::FormatError;

/// One decoded field and the bytes that encode it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawField<'a> {
    /// The field id.
    pub(crate) id: u16,
    /// The value.
    pub(crate) value: ValueRef<'a>,
    /// The whole encoded field (`field_id | type | flags | value`).
    pub(crate) encoded: &'a [u8],
}

fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], FormatError> {
    let end = pos.checked_add(n).ok_or(FormatError::LengthTooLarge {
        what: "document field",
        len: n as u64,
        max: bytes.len() as u64,
    })?;
    let out = bytes.get(*pos..end).ok_or(FormatError::Truncated {
        what: "document field",
        needed: end,
        available: bytes.len(),
    })?;
    *pos = end;
    Ok(out)
}

fn take_array<const N: usize>(bytes: &[u8], pos: &mut usize) -> Result<[u8; N], FormatError> {
    let slice = take(bytes, pos, N)?;
    <[u8; N]>::try_from(slice).map_err(|_| FormatError::Truncated {
        what: "document field",
        needed: N,
        available: slice.len(),
    })
}

/// Parses the field at the start of `bytes`.
pub(crate) fn read_field(bytes: &[u8]) -> Result<RawField<'_>, FormatError> {
    let mut pos = 0;
    let [id_lo, id_hi, ty, flags] = take_array::<FIELD_HEADER_LEN>(bytes, &mut pos)?;
    let id = u16::from_le_bytes([id_lo, id_hi]);
    let value = match ty {
        TYPE_DELETED => ValueRef::Deleted,
        TYPE_I64 => ValueRef::I64(i64::from_le_bytes(take_array(bytes, &mut pos)?)),
        TYPE_U64 => ValueRef::U64(u64::from_le_bytes(take_array(bytes, &mut pos)?)),
        TYPE_F64 => ValueRef::F64(f64::from_bits(u64::from_le_bytes(take_array(
            bytes, &mut pos,
        )?))),
        TYPE_BOOL => match take_array::<1>(bytes, &mut pos)? {
            [0] => ValueRef::Bool(false),
            [1] => ValueRef::Bool(true),
            [byte] => return Err(FormatError::InvalidBool { field: id, byte }),
        },
        TYPE_STR | TYPE_BYTES => {
            let len = u32::from_le_bytes(take_array(bytes, &mut pos)?) as usize;
            let data = take(bytes, &mut pos, len)?;
            if ty == TYPE_STR {
                ValueRef::Str(
                    std::str::from_utf8(data)
                        .map_err(|_| FormatError::InvalidUtf8 { field: id })?,
                )
            } else {
                ValueRef::Bytes(data)
            }
        }
        TYPE_I64_LIST => {
            let count = u32::from_le_bytes(take_array(bytes, &mut pos)?) as usize;
            let len = count.checked_mul(8).ok_or(FormatError::LengthTooLarge {
                what: "document list",
                len: count as u64,
                max: (bytes.len() / 8) as u64,
            })?;
            let data = take(bytes, &mut pos, len)?;
            ValueRef::I64List(I64ListRef::Encoded {
                bytes: data,
                reset: flags & FLAG_RESET != 0,
            })
        }
        ty => return Err(FormatError::UnknownValueType { field: id, ty }),
    };
    if ty != TYPE_I64_LIST && flags != 0 || ty == TYPE_I64_LIST && flags & !FLAG_RESET != 0 {
        return Err(FormatError::InvalidFieldFlags { field: id, flags });
    }
    let encoded = bytes.get(..pos).unwrap_or_default();
    Ok(RawField { id, value, encoded })
}

/// A validated, borrowed document.
///
/// [`DocumentRef::parse`] checks the whole encoding once (version, field
/// order and uniqueness, lengths, UTF-8, types, flags, no trailing bytes);
/// reads after that cannot fail.
#[derive(Clone, Copy, Debug)]
pub struct DocumentRef<'a> {
    fields: &'a [u8],
    count: u16,
}

impl<'a> DocumentRef<'a> {
    /// Validates `bytes` as one whole document.
    pub fn parse(bytes: &'a [u8]) -> Result<DocumentRef<'a>, FormatError> {
        let Some(&[version, c0, c1]) = bytes.first_chunk::<DOC_HEADER_LEN>() else {
            return Err(FormatError::Truncated {
                what: "document header",
                needed: DOC_HEADER_LEN,
                available: bytes.len(),
            });
        };
        if version != DOC_VERSION {
            return Err(FormatError::UnsupportedDocumentVersion {
                found: version,
                supported: DOC_VERSION,
            });
        }
        let count = u16::from_le_bytes([c0, c1]);
        let fields = bytes.get(DOC_HEADER_LEN..).unwrap_or_default();
        let mut pos = 0;
        let mut previous: Option<u16> = None;
        for _ in 0..count {
            let field = read_field(fields.get(pos..).unwrap_or_default())?;
            match previous {
                Some(p) if p == field.id => {
                    return Err(FormatError::DuplicateField { field: field.id });
                }
                Some(p) if p > field.id => {
                    return Err(FormatError::FieldOrder {
                        previous: p,
                        found: field.id,
                    });
                }
                _ => {}
            }
            previous = Some(field.id);
            pos += field.encoded.len();
        }
        if pos != fields.len() {
            return Err(FormatError::TrailingBytes {
                what: "document",
                extra: fields.len() - pos,
            });
        }
        Ok(DocumentRef { fields, count })
    }

    /// Number of fields (Deleted markers included).
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether the document has no fields.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The value of `field`, if present (a Deleted marker is returned as
    /// [`ValueRef::Deleted`]).
    pub fn get(&self, field: u16) -> Option<ValueRef<'a>> {
        self.raw_fields()
            .take_while(|f| f.id <= field)
            .find(|f| f.id == field)
            .map(|f| f.value)
    }

    /// The fields in increasing id order.
    pub fn iter(&self) -> Fields<'a> {
        Fields {
            inner: self.raw_fields(),
        }
    }

    pub(crate) fn raw_fields(&self) -> RawFields<'a> {
        RawFields { rest: self.fields }
    }
}

impl<'a> IntoIterator for DocumentRef<'a> {
    type Item = (u16, ValueRef<'a>);
    type IntoIter = Fields<'a>;

    fn into_iter(self) -> Fields<'a> {
        self.iter()
    }
}

/// Iterator over the encoded fields of a validated document.
#[derive(Clone, Debug)]
pub(crate) struct RawFields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RawFields<'a> {
    type Item = RawField<'a>;

    fn next(&mut self) -> Option<RawField<'a>> {
        // The document was validated by `parse`, so this only stops at the end.
        let field = read_field(self.rest).ok()?;
        self.rest = self.rest.get(field.encoded.len()..).unwrap_or_default();
        Some(field)
    }
}

/// Iterator over `(field id, value)` of a [`DocumentRef`], in id order.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    inner: RawFields<'a>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u16, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|f| (f.id, f.value))
    }
}

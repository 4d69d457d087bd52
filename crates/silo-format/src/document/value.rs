//! Document field values: type codes, the owned [`Value`] and the borrowed
//! [`ValueRef`] / [`I64ListRef`].

/// Type code of a Deleted marker (no value bytes).
pub const TYPE_DELETED: u8 = 0;
/// Type code of an `i64` (8 bytes).
pub const TYPE_I64: u8 = 1;
/// Type code of a `u64` (8 bytes).
pub const TYPE_U64: u8 = 2;
/// Type code of an `f64` (8 bytes, IEEE 754 bits).
pub const TYPE_F64: u8 = 3;
/// Type code of a bool (1 byte, 0 or 1).
pub const TYPE_BOOL: u8 = 4;
/// Type code of a UTF-8 string (`len u32` then the bytes).
pub const TYPE_STR: u8 = 5;
/// Type code of a byte string (`len u32` then the bytes).
pub const TYPE_BYTES: u8 = 6;
/// Type code of a list of `i64` (`count u32` then `count * 8` bytes).
pub const TYPE_I64_LIST: u8 = 7;

/// Field flag bit 0: this `I64List` replaces, rather than extends, any older
/// value of the field. Valid only on `I64List` fields.
pub const FLAG_RESET: u8 = 1;

/// An owned field value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A marker meaning "remove this field" (kept by merges, dropped by compaction).
    Deleted,
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float (stored as its IEEE 754 bits, so NaN payloads survive).
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list of signed integers.
    I64List {
        /// The items.
        items: Vec<i64>,
        /// The RESET flag: replace, rather than extend, an older list.
        reset: bool,
    },
}

impl Value {
    /// A borrowed view of this value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Deleted => ValueRef::Deleted,
            Value::I64(v) => ValueRef::I64(*v),
            Value::U64(v) => ValueRef::U64(*v),
            Value::F64(v) => ValueRef::F64(*v),
            Value::Bool(v) => ValueRef::Bool(*v),
            Value::Str(s) => ValueRef::Str(s),
            Value::Bytes(b) => ValueRef::Bytes(b),
            Value::I64List { items, reset } => ValueRef::I64List(I64ListRef::Items {
                items,
                reset: *reset,
            }),
        }
    }
}

/// A field value borrowed from an encoded document (or from a [`Value`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// A marker meaning "remove this field".
    Deleted,
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    Str(&'a str),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A list of signed integers, read without allocating.
    I64List(I64ListRef<'a>),
}

impl ValueRef<'_> {
    /// The type code this value is stored with.
    pub fn type_code(&self) -> u8 {
        match self {
            ValueRef::Deleted => TYPE_DELETED,
            ValueRef::I64(_) => TYPE_I64,
            ValueRef::U64(_) => TYPE_U64,
            ValueRef::F64(_) => TYPE_F64,
            ValueRef::Bool(_) => TYPE_BOOL,
            ValueRef::Str(_) => TYPE_STR,
            ValueRef::Bytes(_) => TYPE_BYTES,
            ValueRef::I64List(_) => TYPE_I64_LIST,
        }
    }

    /// The flags byte this value is stored with.
    pub fn flags(&self) -> u8 {
        match self {
            ValueRef::I64List(list) if list.reset() => FLAG_RESET,
            _ => 0,
        }
    }

    /// An owned copy.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Deleted => Value::Deleted,
            ValueRef::I64(v) => Value::I64(v),
            ValueRef::U64(v) => Value::U64(v),
            ValueRef::F64(v) => Value::F64(v),
            ValueRef::Bool(v) => Value::Bool(v),
            ValueRef::Str(s) => Value::Str(s.to_owned()),
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
            ValueRef::I64List(list) => Value::I64List {
                items: list.iter().collect(),
                reset: list.reset(),
            },
        }
    }
}

/// A list of `i64` values, either little-endian bytes inside an encoded
/// document or a borrowed slice; iterating never allocates.
#[derive(Clone, Copy, Debug)]
pub enum I64ListRef<'a> {
    /// Encoded items: `8 * n` little-endian bytes.
    Encoded {
        /// The items' bytes (length a multiple of 8).
        bytes: &'a [u8],
        /// The RESET flag.
        reset: bool,
    },
    /// Items from an owned [`Value`].
    Items {
        /// The items.
        items: &'a [i64],
        /// The RESET flag.
        reset: bool,
    },
}

impl<'a> I64ListRef<'a> {
    /// Whether the RESET flag is set.
    pub fn reset(&self) -> bool {
        match *self {
            I64ListRef::Encoded { reset, .. } | I64ListRef::Items { reset, .. } => reset,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match *self {
            I64ListRef::Encoded { bytes, .. } => bytes.len() / 8,
            I64ListRef::Items { items, .. } => items.len(),
        }
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The item at `i`, if any.
    pub fn get(&self, i: usize) -> Option<i64> {
        match *self {
            I64ListRef::Encoded { bytes, .. } => {
                let start = i.checked_mul(8)?;
                let chunk = bytes.get(start..start.checked_add(8)?)?;
                Some(i64::from_le_bytes(chunk.try_into().ok()?))
            }
            I64ListRef::Items { items, .. } => items.get(i).copied(),
        }
    }

    /// Iterates the items in order.
    pub fn iter(&self) -> I64ListIter<'a> {
        match *self {
            I64ListRef::Encoded { bytes, .. } => I64ListIter::Encoded(bytes.chunks_exact(8)),
            I64ListRef::Items { items, .. } => I64ListIter::Items(items.iter()),
        }
    }
}

impl PartialEq for I64ListRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.reset() == other.reset() && self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<'a> IntoIterator for I64ListRef<'a> {
    type Item = i64;
    type IntoIter = I64ListIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the items of an [`I64ListRef`].
#[derive(Clone, Debug)]
pub enum I64ListIter<'a> {
    /// Over encoded bytes.
    Encoded(std::slice::ChunksExact<'a, u8>),
    /// Over a slice.
    Items(std::slice::Iter<'a, i64>),
}

impl Iterator for I64ListIter<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        match self {
            I64ListIter::Encoded(chunks) => {
                let chunk = chunks.next()?;
                Some(i64::from_le_bytes(chunk.try_into().ok()?))
            }
            I64ListIter::Items(items) => items.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            I64ListIter::Encoded(c) => c.size_hint(),
            I64ListIter::Items(i) => i.size_hint(),
        }
    }
}

impl ExactSizeIterator for I64ListIter<'_> {}

//! Sort layers: a bit-sliced index per sortable numeric field (after
//! bitdex's sort layers). Slice `b` (key `(field, b)`, `b` in 0..64) holds
//! the documents whose value has bit `b` set; key `(field, 64)` holds the
//! documents that have a value. Range filters and ordered top-k are
//! computed from the slices alone, without reading documents.
//!
//! Values are `u64`s compared as unsigned; [`sort_key_i64`] and
//! [`sort_key_f64`] map signed integers and floats onto them in order.

use roaring::RoaringBitmap;
use silo_format::BitOp;

use crate::bitmap::slice_key;
use crate::error::Result;
use crate::layers::{Reader, read_bitmap};
use crate::registry::FieldId;

/// Bits of a sort value.
pub const SORT_BITS: u32 = 64;
/// The value part of the key of a sort field's "has a value" bitmap.
pub const EXISTS_SLICE: u64 = SORT_BITS as u64;

/// `v` as a sort value: signed order kept (the sign bit flipped).
pub fn sort_key_i64(v: i64) -> u64 {
    v.cast_unsigned() ^ (1 << 63)
}

/// `v` as a sort value in IEEE 754 total order (-NaN < -inf < ... < -0.0
/// < 0.0 < ... < inf < NaN).
pub fn sort_key_f64(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// A range over a sort field's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortRange {
    /// Values below the bound.
    Lt(u64),
    /// Values at or below the bound.
    Le(u64),
    /// Values above the bound.
    Gt(u64),
    /// Values at or above the bound.
    Ge(u64),
    /// Values from `lo` to `hi`, both included (empty if `lo > hi`).
    Between(u64, u64),
    /// Values equal to the bound.
    Eq(u64),
}

impl SortRange {
    /// Whether `v` is in the range.
    pub fn contains(self, v: u64) -> bool {
        match self {
            SortRange::Lt(b) => v < b,
            SortRange::Le(b) => v <= b,
            SortRange::Gt(b) => v > b,
            SortRange::Ge(b) => v >= b,
            SortRange::Between(lo, hi) => lo <= v && v <= hi,
            SortRange::Eq(b) => v == b,
        }
    }
}

/// Sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Smallest value first.
    Ascending,
    /// Largest value first.
    Descending,
}

/// Where a page of a top-k walk ended: the next page starts after this
/// value and document (ties are ordered by document id, ascending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortCursor {
    /// The last value returned.
    pub value: u64,
    /// The last document returned.
    pub doc: u32,
}

/// One page of a top-k walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SortPage {
    /// Documents and their values, in order.
    pub hits: Vec<(u32, u64)>,
    /// Where the next page starts; `None` once a page comes back short.
    pub next: Option<SortCursor>,
}

/// The slices of one sort field, read from the store.
pub(crate) struct Slices {
    /// `bits[b]`: documents with bit `b` set.
    pub(crate) bits: Vec<RoaringBitmap>,
    /// Documents with a value.
    pub(crate) exists: RoaringBitmap,
}

impl Slices {
    /// Reads the slices of sort field `field`.
    pub(crate) fn read(reader: &impl Reader, field: FieldId) -> Result<Slices> {
        let bits = (0..u64::from(SORT_BITS))
            .map(|b| read_bitmap(reader, slice_key(field, b)))
            .collect::<Result<Vec<_>>>()?;
        let exists = read_bitmap(reader, slice_key(field, EXISTS_SLICE))?;
        Ok(Slices { bits, exists })
    }

    /// The highest slice that is not empty, plus one (0: every value is 0).
    fn width(&self) -> usize {
        self.bits
            .iter()
            .rposition(|b| !b.is_empty())
            .map_or(0, |i| i + 1)
    }

    /// Documents whose value is below `c` and those equal to it.
    fn lt_eq(&self, c: u64) -> (RoaringBitmap, RoaringBitmap) {
        let width = self.width();
        if width < 64 && c >> width != 0 {
            // `c` is above every stored value.
            return (self.exists.clone(), RoaringBitmap::new());
        }
        let mut lt = RoaringBitmap::new();
        let mut eq = self.exists.clone();
        for b in (0..width).rev() {
            if (c >> b) & 1 == 1 {
                lt |= &eq - &self.bits[b];
                eq &= &self.bits[b];
            } else {
                eq -= &self.bits[b];
            }
        }
        (lt, eq)
    }

    /// The documents whose value is in `range`.
    pub(crate) fn range(&self, range: SortRange) -> RoaringBitmap {
        match range {
            SortRange::Lt(c) => self.lt_eq(c).0,
            SortRange::Le(c) => {
                let (lt, eq) = self.lt_eq(c);
                lt | eq
            }
            SortRange::Gt(c) => {
                let (lt, eq) = self.lt_eq(c);
                &self.exists - &(lt | eq)
            }
            SortRange::Ge(c) => &self.exists - &self.lt_eq(c).0,
            SortRange::Eq(c) => self.lt_eq(c).1,
            SortRange::Between(lo, hi) if lo <= hi => {
                let below_lo = self.lt_eq(lo).0;
                let (lt, eq) = self.lt_eq(hi);
                (lt | eq) - below_lo
            }
            SortRange::Between(..) => RoaringBitmap::new(),
        }
    }

    /// The value of `doc`, if it has one.
    pub(crate) fn value(&self, doc: u32) -> Option<u64> {
        self.exists.contains(doc).then(|| {
            self.bits
                .iter()
                .enumerate()
                .filter(|(_, s)| s.contains(doc))
                .fold(0u64, |v, (b, _)| v | (1 << b))
        })
    }

    /// The `limit` documents of `filter` (those with a value) first in
    /// `order`, after `cursor`, with their values; ties by document id.
    pub(crate) fn top(
        &self,
        filter: &RoaringBitmap,
        order: Order,
        limit: usize,
        cursor: Option<SortCursor>,
    ) -> Vec<(u32, u64)> {
        let mut candidates = filter & &self.exists;
        if let Some(c) = cursor {
            let (lt, eq) = self.lt_eq(c.value);
            let beyond = match order {
                Order::Descending => lt,
                Order::Ascending => &self.exists - &(lt | &eq),
            };
            let mut ties = eq;
            ties.remove_range(..=c.doc);
            candidates &= beyond | ties;
        }
        if limit == 0 || candidates.is_empty() {
            return Vec::new();
        }
        // O'Neil's top-k over the slices, highest bit first: `sure` holds
        // documents certainly among the first `limit`, `tied` those still
        // level with the boundary.
        let k = limit as u64;
        let mut sure = RoaringBitmap::new();
        let mut tied = candidates;
        for b in (0..self.width()).rev() {
            let ahead = match order {
                Order::Descending => &tied & &self.bits[b],
                Order::Ascending => &tied - &self.bits[b],
            };
            let n = sure.len() + ahead.len();
            if n > k {
                tied = ahead;
            } else {
                tied -= &ahead;
                sure |= ahead;
                if n == k {
                    tied.clear();
                    break;
                }
            }
        }
        let mut out: Vec<(u32, u64)> = sure
            .iter()
            .chain(
                tied.iter()
                    .take(limit.saturating_sub(usize::try_from(sure.len()).unwrap_or(usize::MAX))),
            )
            .filter_map(|d| self.value(d).map(|v| (d, v)))
            .collect();
        match order {
            Order::Descending => out.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0))),
            Order::Ascending => out.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0))),
        }
        out.truncate(limit);
        out
    }
}

/// The bit operations that change `doc`'s value from `old` to `new`
/// (`None`: no value), as `(slice, op)`: only the slices that differ.
pub(crate) fn value_ops(doc: u32, old: Option<u64>, new: Option<u64>) -> Vec<(u64, BitOp)> {
    let mut ops = Vec::new();
    let (o, n) = (old.unwrap_or(0), new.unwrap_or(0));
    let changed = o ^ n;
    for b in 0..u64::from(SORT_BITS) {
        if (changed >> b) & 1 == 1 {
            let op = if (n >> b) & 1 == 1 {
                BitOp::Set(doc)
            } else {
                BitOp::Clear(doc)
            };
            ops.push((b, op));
        }
    }
    if old.is_some() != new.is_some() {
        let op = if new.is_some() {
            BitOp::Set(doc)
        } else {
            BitOp::Clear(doc)
        };
        ops.push((EXISTS_SLICE, op));
    }
    ops
}

/// The bit operations that give `doc` the value `new` (`None`: no value)
/// whatever it had: every slice is set or cleared.
pub(crate) fn value_ops_unknown(doc: u32, new: Option<u64>) -> Vec<(u64, BitOp)> {
    let n = new.unwrap_or(0);
    let mut ops: Vec<(u64, BitOp)> = (0..u64::from(SORT_BITS))
        .map(|b| {
            let op = if (n >> b) & 1 == 1 {
                BitOp::Set(doc)
            } else {
                BitOp::Clear(doc)
            };
            (b, op)
        })
        .collect();
    ops.push((
        EXISTS_SLICE,
        if new.is_some() {
            BitOp::Set(doc)
        } else {
            BitOp::Clear(doc)
        },
    ));
    ops
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn slices(values: &BTreeMap<u32, u64>) -> Slices {
        let mut bits = vec![RoaringBitmap::new(); SORT_BITS as usize];
        let mut exists = RoaringBitmap::new();
        for (d, v) in values {
            exists.insert(*d);
            for (b, slice) in bits.iter_mut().enumerate() {
                if (v >> b) & 1 == 1 {
                    slice.insert(*d);
                }
            }
        }
        Slices { bits, exists }
    }

    /// Every document of `filter` with a value, in `order`, ties by id.
    fn sorted(
        values: &BTreeMap<u32, u64>,
        filter: &RoaringBitmap,
        order: Order,
    ) -> Vec<(u32, u64)> {
        let mut all: Vec<(u32, u64)> = values
            .iter()
            .filter(|(d, _)| filter.contains(**d))
            .map(|(d, v)| (*d, *v))
            .collect();
        match order {
            Order::Descending => all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0))),
            Order::Ascending => all.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0))),
        }
        all
    }

    fn sort_value() -> impl Strategy<Value = u64> {
        prop_oneof![4 => 0u64..8, 2 => 0u64..1000, 1 => any::<u64>(), 1 => Just(u64::MAX), 1 => Just(0)]
    }

    fn range() -> impl Strategy<Value = SortRange> {
        prop_oneof![
            sort_value().prop_map(SortRange::Lt),
            sort_value().prop_map(SortRange::Le),
            sort_value().prop_map(SortRange::Gt),
            sort_value().prop_map(SortRange::Ge),
            sort_value().prop_map(SortRange::Eq),
            (sort_value(), sort_value()).prop_map(|(a, b)| SortRange::Between(a, b)),
        ]
    }

    proptest! {
        #[test]
        fn ranges_match_a_scan(
            values in prop::collection::btree_map(0u32..300, sort_value(), 0..80),
            ranges in prop::collection::vec(range(), 1..8),
        ) {
            let s = slices(&values);
            for r in ranges {
                let want: Vec<u32> = values.iter().filter(|(_, v)| r.contains(**v)).map(|(d, _)| *d).collect();
                prop_assert_eq!(s.range(r).iter().collect::<Vec<_>>(), want, "{:?}", r);
            }
            for (d, v) in &values {
                prop_assert_eq!(s.value(*d), Some(*v));
            }
            prop_assert_eq!(s.value(1000), None);
        }

        #[test]
        fn pages_of_top_k_walk_the_sorted_filter(
            values in prop::collection::btree_map(0u32..300, sort_value(), 0..80),
            filter in prop::collection::btree_set(0u32..320, 0..200),
            descending in any::<bool>(),
            limit in 1usize..12,
        ) {
            let s = slices(&values);
            let filter: RoaringBitmap = filter.into_iter().collect();
            let order = if descending { Order::Descending } else { Order::Ascending };
            let want = sorted(&values, &filter, order);
            let mut got = Vec::new();
            let mut cursor = None;
            loop {
                let page = s.top(&filter, order, limit, cursor);
                prop_assert!(page.len() <= limit);
                got.extend_from_slice(&page);
                if page.len() < limit {
                    break;
                }
                let (doc, value) = page[page.len() - 1];
                cursor = Some(SortCursor { value, doc });
                prop_assert!(got.len() <= want.len(), "pages run past the end");
            }
            prop_assert_eq!(got, want);
            prop_assert!(s.top(&filter, order, 0, None).is_empty());
        }
    }

    #[test]
    fn signed_and_float_keys_keep_their_order() {
        let ints = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in ints.windows(2) {
            assert!(sort_key_i64(w[0]) < sort_key_i64(w[1]), "{w:?}");
        }
        let floats = [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            f64::INFINITY,
        ];
        for w in floats.windows(2) {
            assert!(sort_key_f64(w[0]) < sort_key_f64(w[1]), "{w:?}");
        }
    }

    #[test]
    fn value_changes_write_only_the_slices_that_differ() {
        assert_eq!(value_ops(7, Some(5), Some(5)), vec![]);
        assert_eq!(
            value_ops(7, Some(0b101), Some(0b110)),
            vec![(0, BitOp::Clear(7)), (1, BitOp::Set(7))]
        );
        assert_eq!(
            value_ops(7, None, Some(0)),
            vec![(EXISTS_SLICE, BitOp::Set(7))]
        );
        assert_eq!(
            value_ops(7, Some(2), None),
            vec![(1, BitOp::Clear(7)), (EXISTS_SLICE, BitOp::Clear(7))]
        );
        let all = value_ops_unknown(3, Some(1));
        assert_eq!(all.len(), 65);
        assert_eq!(all[0], (0, BitOp::Set(3)));
        assert_eq!(all[1], (1, BitOp::Clear(3)));
        assert_eq!(all[64], (EXISTS_SLICE, BitOp::Set(3)));
    }
}

//! Merge operators: how a stored value and its pending operands fold.

/// A user-supplied read-modify-write function.
///
/// Silo applies it on read (over the stored value and the pending operands)
/// and during compaction, always in log order. `operands` holds every operand
/// newer than `existing`, oldest first. An `Err` is returned to the caller
/// of the read or the compaction, and the operands are kept: nothing is
/// dropped or replaced silently.
///
/// Operators must be deterministic; silo may fold the same operands more than
/// once (on every read until a compaction stores the result).
///
/// They must also fold in steps: for a base `b` and operand lists `x`
/// and `y`, `merge(merge(b, x), y)` must equal `merge(b, x ++ y)`.
/// Compaction folds the operands of one log slot into the stored value and
/// later ones over that result, while a read before the compaction folds
/// them all at once; an operator that breaks the rule (one that, say,
/// stores how many operands it saw in one call) makes a value change when a
/// compaction runs, although no write happened. Counters, sums, appends,
/// set unions and "last writer wins" all satisfy it.
///
/// ```
/// use silo_core::MergeOperator;
///
/// /// Values are little-endian u64 counters; operands are increments.
/// struct Add;
/// impl MergeOperator for Add {
///     fn merge(&self, _key: u64, existing: Option<&[u8]>, operands: &[&[u8]], out: &mut Vec<u8>) -> Result<(), String> {
///         let read = |b: &[u8]| <[u8; 8]>::try_from(b).map(u64::from_le_bytes).map_err(|_| "not 8 bytes".to_owned());
///         let mut sum = existing.map(read).transpose()?.unwrap_or(0);
///         for op in operands {
///             sum = sum.wrapping_add(read(op)?);
///         }
///         out.extend_from_slice(&sum.to_le_bytes());
///         Ok(())
///     }
/// }
/// let mut out = Vec::new();
/// Add.merge(7, Some(&2u64.to_le_bytes()), &[&3u64.to_le_bytes()], &mut out).unwrap();
/// assert_eq!(out, 5u64.to_le_bytes());
/// ```
pub trait MergeOperator: Send + Sync + 'static {
    /// Folds `operands` (oldest first) over `existing` (`None` if the key is
    /// absent or deleted) and appends the result to `out`, which is empty.
    fn merge(
        &self,
        key: u64,
        existing: Option<&[u8]>,
        operands: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), String>;
}

/// The append operator: the value becomes the stored value (empty when
/// absent) followed by every operand, oldest first. For logs, lists of
/// fixed-size items and tests (an operand folded twice shows as a doubled
/// suffix). It folds in steps as the trait requires, and never fails.
///
/// ```
/// use silo_core::{Append, MergeOperator};
/// let mut out = Vec::new();
/// Append.merge(1, Some(b"ab"), &[b"c", b"de"], &mut out).unwrap();
/// assert_eq!(out, b"abcde");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Append;

impl MergeOperator for Append {
    fn merge(
        &self,
        _key: u64,
        existing: Option<&[u8]>,
        operands: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(existing.unwrap_or_default());
        for op in operands {
            out.extend_from_slice(op);
        }
        Ok(())
    }
}

//! `WriteBatch`: operations applied atomically (all or nothing after a crash).

use std::ops::Range;

use silo_format::Tag;

/// One operation of a [`WriteBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOp<'a> {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: u64,
        /// The new value.
        value: &'a [u8],
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: u64,
    },
    /// Add a merge operand for `key`.
    Merge {
        /// The key.
        key: u64,
        /// The operand.
        operand: &'a [u8],
    },
}

impl BatchOp<'_> {
    /// The key the operation is for.
    pub fn key(&self) -> u64 {
        match *self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } | BatchOp::Merge { key, .. } => key,
        }
    }
}

/// A group of puts, deletes and merges that [`crate::Silo::write`] logs as
/// one atomic batch: after a crash either all of them are there or none.
///
/// ```
/// let mut batch = silo_core::WriteBatch::new();
/// batch.put(1, b"one");
/// batch.delete(2);
/// assert_eq!(batch.len(), 2);
/// ```
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub(crate) ops: Vec<(Tag, u64, Range<usize>)>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) tag: u64,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    fn push_op(&mut self, tag: Tag, key: u64, payload: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        self.ops.push((tag, key, start..self.bytes.len()));
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: u64, value: &[u8]) -> &mut Self {
        self.push_op(Tag::Put, key, value);
        self
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: u64) -> &mut Self {
        self.push_op(Tag::Delete, key, &[]);
        self
    }

    /// Adds a merge operand for `key`.
    pub fn merge(&mut self, key: u64, operand: &[u8]) -> &mut Self {
        self.push_op(Tag::Merge, key, operand);
        self
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Empties the batch and clears its tag, keeping its memory.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.bytes.clear();
        self.tag = 0;
    }

    /// Tags the batch with `tag` (0 removes the tag). The tag is logged
    /// with the batch, and the store remembers the highest tag of the
    /// batches it holds ([`crate::Silo::batch_tag`]) exactly as durably as
    /// their operations: through compaction, close and crash recovery, a
    /// batch lost in a crash takes its tag with it. The sharded engine tags
    /// the parts of its cross-shard batches with increasing numbers to
    /// learn, after a crash, which parts each shard holds.
    ///
    /// ```
    /// let mut batch = silo_core::WriteBatch::new();
    /// batch.put(1, b"one").set_tag(7);
    /// assert_eq!(batch.tag(), 7);
    /// ```
    pub fn set_tag(&mut self, tag: u64) -> &mut Self {
        self.tag = tag;
        self
    }

    /// The batch's tag (0: untagged).
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The operations, in order.
    ///
    /// ```
    /// use silo_core::{BatchOp, WriteBatch};
    /// let mut batch = WriteBatch::new();
    /// batch.put(1, b"one").delete(2);
    /// let ops: Vec<BatchOp<'_>> = batch.ops().collect();
    /// assert_eq!(ops, [BatchOp::Put { key: 1, value: b"one" }, BatchOp::Delete { key: 2 }]);
    /// ```
    pub fn ops(&self) -> impl Iterator<Item = BatchOp<'_>> {
        self.iter().map(|(tag, key, payload)| match tag {
            Tag::Put => BatchOp::Put {
                key,
                value: payload,
            },
            Tag::Merge => BatchOp::Merge {
                key,
                operand: payload,
            },
            _ => BatchOp::Delete { key },
        })
    }

    /// Adds `op` to the batch.
    pub fn push(&mut self, op: BatchOp<'_>) -> &mut Self {
        match op {
            BatchOp::Put { key, value } => self.put(key, value),
            BatchOp::Delete { key } => self.delete(key),
            BatchOp::Merge { key, operand } => self.merge(key, operand),
        }
    }

    /// The operations with their payloads.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Tag, u64, &[u8])> {
        self.ops.iter().map(|(tag, key, range)| {
            (
                *tag,
                *key,
                self.bytes.get(range.clone()).unwrap_or_default(),
            )
        })
    }
}

//! `Iter`: every live (key, value) of a store, as one consistent view.
//!
//! The iterator takes a copy of the pending view under the log mutex (so it
//! matches a prefix of the log) and holds the compaction gate shared, so the
//! data file and index do not change under it. Writers go on; compaction
//! waits until the iterator is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use silo_io::map::ReadMap;

use crate::READ_LIMIT;
use crate::error::{Error, Result};
use crate::pending::KeyOps;
use crate::reentry::{self, Hold, HoldGuard};
use crate::store::{Core, GateRead, Stored, Tables};

/// Iterator over every live `(key, value)`; see [`crate::Silo::iter`].
pub struct Iter<'a> {
    silo: &'a Core,
    _gate: Option<GateRead<'a>>,
    /// Marks this thread as holding an iterator of the store.
    _held: Option<HoldGuard>,
    /// Why the iterator yields nothing but this error (see [`crate::Silo::iter`]).
    refused: Option<Error>,
    tables: Arc<Tables>,
    view: Arc<ReadMap>,
    pending: HashMap<u64, KeyOps>,
    slot: u64,
    pending_only: Option<std::vec::IntoIter<(u64, KeyOps)>>,
}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// See [`crate::Silo::iter`].
    pub(crate) fn iter(&self) -> Iter<'_> {
        if let Err(e) = reentry::refuse_shared(self.id, "iter") {
            return Iter::new(self, None, None, HashMap::new(), Some(e));
        }
        let gate = self.gate_shared();
        let held = reentry::hold(self.id, Hold::Iterator);
        let pending = {
            let _log = self.log.lock();
            self.pending.snapshot()
        };
        Iter::new(self, Some(gate), Some(held), pending, None)
    }
}

impl<'a> Iter<'a> {
    /// An iterator over the current tables with `pending` (a copy of the
    /// pending view taken under the log mutex) laid over them. `gate` is
    /// `None` when the caller (a [`crate::Snapshot`]) holds it, or when
    /// `refused` is the one item to yield.
    pub(crate) fn new(
        silo: &'a Core,
        gate: Option<GateRead<'a>>,
        held: Option<HoldGuard>,
        pending: HashMap<u64, KeyOps>,
        refused: Option<Error>,
    ) -> Iter<'a> {
        let tables = silo.tables();
        let view = tables.data.view();
        Iter {
            silo,
            _gate: gate,
            _held: held,
            refused,
            tables,
            view,
            pending,
            slot: 0,
            pending_only: None,
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.refused.take() {
            // Refused: the error once, then the end.
            self.slot = self.tables.index.capacity();
            self.pending_only = Some(Vec::new().into_iter());
            return Some(Err(e));
        }
        while self.slot < self.tables.index.capacity() {
            let slot = self.slot;
            self.slot += 1;
            let (key, offset) = match self.tables.index.entry(slot) {
                Err(e) => return Some(Err(e)),
                Ok(None) => continue,
                Ok(Some(entry)) => entry,
            };
            // Yield exactly what `get` answers: a slot a lookup of its key
            // does not reach (a damaged slot that looks valid) is damage.
            match self.tables.index.get(key) {
                Ok(Some(found)) if found == offset => {}
                Ok(_) => {
                    return Some(Err(Error::corrupt(
                        self.tables.index.path(),
                        silo_format::slot_offset(slot),
                        format!(
                            "slot {slot} holds key {key}, which a lookup of the key does not reach; \
                             check with Silo::verify and rebuild with Silo::rebuild_index"
                        ),
                    )));
                }
                Err(e) => return Some(Err(e)),
            }
            // Take the key's pending operations first, so that a damaged
            // record cannot leave them to be yielded alone later.
            // A pending put or delete settles the key whatever its record
            // holds: like `get`, do not read the record then (after a
            // compaction that failed in the middle of rewriting it in place,
            // it may be torn while the pending view holds its value).
            let pending = match self.pending.remove(&key) {
                Some(ops) if ops.base.is_some() => {
                    match self.silo.resolve(key, ops, Stored::Absent) {
                        Ok(Some(value)) => return Some(Ok((key, value))),
                        Ok(None) => continue,
                        Err(e) => return Some(Err(e)),
                    }
                }
                other => other,
            };
            let record = match self.tables.data.record(&self.view, offset, key, READ_LIMIT) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            match pending {
                None => return Some(Ok((key, record.value.to_vec()))),
                Some(ops) => {
                    match self
                        .silo
                        .resolve(key, ops, Stored::Present(record.seq, record.value))
                    {
                        Ok(Some(value)) => return Some(Ok((key, value))),
                        Ok(None) => continue,
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
        let rest = self.pending_only.get_or_insert_with(|| {
            let mut keys: Vec<(u64, KeyOps)> =
                std::mem::take(&mut self.pending).into_iter().collect();
            keys.sort_unstable_by_key(|(k, _)| *k);
            keys.into_iter()
        });
        for (key, ops) in rest.by_ref() {
            // Keys not live in the index. Look them up anyway: a damaged
            // slot the scan skipped with an error must fail here too.
            match self.silo.resolve(key, ops, Stored::Lookup) {
                Ok(Some(value)) => return Some(Ok((key, value))),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }
}

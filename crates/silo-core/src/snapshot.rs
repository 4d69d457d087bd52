//! `Snapshot`: a read view of a store at one point in time, for several
//! `get`s and iterations that must agree with each other.
//!
//! A snapshot holds the compaction gate shared (so the data file and index
//! do not change under it) and a copy of the pending view taken under the
//! log mutex, when every write call recorded so far is wholly visible. Its
//! reads lay that copy over the tables; writes made after it are not seen.

use std::collections::HashMap;

use crate::error::Result;
use crate::iter::Iter;
use crate::pending::{Base, KeyOps};
use crate::reentry::{self, Hold, HoldGuard};
use crate::store::{Core, GateRead, Stored};

/// A consistent read view of a store; see [`crate::Silo::snapshot`].
///
/// ```
/// use silo_core::{Options, Silo, WriteBatch};
/// let dir = tempfile::tempdir().unwrap();
/// let silo = Silo::open(dir.path(), Options::default()).unwrap();
/// silo.put(1, b"before").unwrap();
/// let snap = silo.snapshot().unwrap();
/// silo.put(1, b"after").unwrap();
/// silo.put(2, b"new").unwrap();
/// assert_eq!(snap.get(1).unwrap().as_deref(), Some(&b"before"[..]));
/// assert_eq!(snap.get(2).unwrap(), None);
/// assert_eq!(snap.iter().count(), 1);
/// drop(snap);
/// assert_eq!(silo.get(1).unwrap().as_deref(), Some(&b"after"[..]));
/// ```
pub struct Snapshot<'a> {
    silo: &'a Core,
    _gate: GateRead<'a>,
    _held: HoldGuard,
    pending: HashMap<u64, KeyOps>,
    seq: u64,
}

impl std::fmt::Debug for Snapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// See [`crate::Silo::snapshot`].
    pub(crate) fn snapshot(&self) -> Result<Snapshot<'_>> {
        reentry::refuse_shared(self.id, "snapshot")?;
        let gate = self.gate_shared();
        Ok(self.snapshot_under(gate))
    }

    /// See [`crate::Silo::try_snapshot`].
    pub(crate) fn try_snapshot(&self) -> Result<Option<Snapshot<'_>>> {
        reentry::refuse_shared(self.id, "snapshot")?;
        Ok(self
            .gate
            .try_read_recursive()
            .map(|gate| self.snapshot_under(gate)))
    }

    fn snapshot_under<'a>(&'a self, gate: GateRead<'a>) -> Snapshot<'a> {
        let held = reentry::hold(self.id, Hold::Iterator);
        let (pending, seq) = {
            let _log = self.log.lock();
            (self.pending.snapshot(), self.pending.visible())
        };
        Snapshot {
            silo: self,
            _gate: gate,
            _held: held,
            pending,
            seq,
        }
    }
}

impl Snapshot<'_> {
    /// The sequence number of the last operation the snapshot sees.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The value of `key` as of the snapshot.
    pub fn get(&self, key: u64) -> Result<Option<Vec<u8>>> {
        self.get_with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// Calls `f` with the value of `key` as of the snapshot (`None` if
    /// absent), without copying it when it is stored whole.
    pub fn get_with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        match self.pending.get(&key) {
            // The gate keeps the tables as they were at the snapshot.
            None => {
                self.silo
                    .with_stored(&self.silo.tables(), key, || {}, |r| f(r.map(|(_, v)| v)))
            }
            Some(KeyOps {
                base: Some(Base::Put { value, .. }),
                merges,
            }) if merges.is_empty() => Ok(f(Some(value))),
            Some(ops) => self
                .silo
                .resolve(key, ops.clone(), Stored::Lookup)
                .map(|v| f(v.as_deref())),
        }
    }

    /// Every live `(key, value)` as of the snapshot, in no particular order.
    /// Costs another copy of the snapshot's pending operations.
    pub fn iter(&self) -> Iter<'_> {
        Iter::new(self.silo, None, None, self.pending.clone(), None)
    }
}

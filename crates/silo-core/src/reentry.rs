//! Calls that would wait for the calling thread itself are refused.
//!
//! A `get_with` or `MergeWriter::update` callback runs inside a grace
//! period (compaction waits for it to end) and an iterator holds the
//! compaction gate shared (compaction waits for it to drop). A call made
//! from there that waits for compaction, or takes the gate exclusively,
//! would wait forever for its own thread. Each thread keeps a list of what
//! it holds, per store; those calls check it and return
//! [`Error::WouldDeadlock`] instead.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// What a thread holds of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// It is inside a read callback (a grace period).
    Callback,
    /// It holds an iterator or a snapshot (the compaction gate, shared).
    Iterator,
    /// It holds a bulk or merge writer (the compaction gate, exclusively).
    GateWriter,
}

thread_local! {
    static HELD: RefCell<Vec<(u64, Hold)>> = const { RefCell::new(Vec::new()) };
}

/// A new store identity (stores are told apart by it, not by address).
pub(crate) fn next_store_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Marks `hold` of store `store` on this thread until dropped. Not `Send`
/// (it must drop on the thread that made it), but `Sync`, like the gate
/// guards it sits beside.
pub(crate) struct HoldGuard {
    store: u64,
    hold: Hold,
    _not_send: PhantomData<std::sync::MutexGuard<'static, ()>>,
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Some(i) = held.iter().rposition(|e| *e == (self.store, self.hold)) {
                held.swap_remove(i);
            }
        });
    }
}

/// Records that this thread holds `hold` of `store`.
pub(crate) fn hold(store: u64, hold: Hold) -> HoldGuard {
    HELD.with(|held| held.borrow_mut().push((store, hold)));
    HoldGuard {
        store,
        hold,
        _not_send: PhantomData,
    }
}

/// Whether this thread holds `hold` of `store`.
pub(crate) fn holds(store: u64, hold: Hold) -> bool {
    HELD.with(|held| held.borrow().contains(&(store, hold)))
}

/// Refuses `call` (one that takes the compaction gate exclusively or waits
/// for compaction) if this thread holds anything of `store`.
pub(crate) fn refuse_held(store: u64, call: &'static str) -> Result<()> {
    if holds(store, Hold::Callback)
        || holds(store, Hold::Iterator)
        || holds(store, Hold::GateWriter)
    {
        return Err(Error::WouldDeadlock { call });
    }
    Ok(())
}

/// Refuses `call` (one that takes the compaction gate shared) inside a
/// read callback of `store` or while this thread holds its gate exclusively.
pub(crate) fn refuse_shared(store: u64, call: &'static str) -> Result<()> {
    if holds(store, Hold::Callback) || holds(store, Hold::GateWriter) {
        return Err(Error::WouldDeadlock { call });
    }
    Ok(())
}

/// Refuses `call` if this thread is inside a read callback of `store`.
pub(crate) fn refuse_in_callback(store: u64, call: &'static str) -> Result<()> {
    if holds(store, Hold::Callback) {
        return Err(Error::WouldDeadlock { call });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_per_store_and_end_with_the_guard() {
        let (a, b) = (next_store_id(), next_store_id());
        assert!(refuse_held(a, "compact").is_ok());
        let cb = hold(a, Hold::Callback);
        assert!(matches!(
            refuse_held(a, "compact"),
            Err(Error::WouldDeadlock { call: "compact" })
        ));
        assert!(refuse_held(b, "compact").is_ok());
        let it = hold(a, Hold::Iterator);
        drop(cb);
        assert!(refuse_in_callback(a, "iter").is_ok());
        assert!(refuse_held(a, "compact").is_err());
        drop(it);
        assert!(refuse_held(a, "compact").is_ok());
        // Another thread holds nothing.
        let _cb = hold(a, Hold::Callback);
        std::thread::scope(|s| {
            s.spawn(|| assert!(refuse_held(a, "compact").is_ok()));
        });
    }
}

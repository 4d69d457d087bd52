//! Group commit: concurrent `Sync` writers share one fdatasync.
//!
//! A writer that needs its sequence number durable either finds it already
//! durable, waits for the sync in flight, or becomes the leader: it syncs
//! the active slot for everyone who appended before it started.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use silo_io::file::SiloFile;

use crate::error::{Error, Result};

struct State {
    durable: u64,
    syncing: bool,
    failure: Option<String>,
}

/// The group-commit coordinator.
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
    /// `Sync` writers between entering a write and finishing its append:
    /// a new leader gives them a moment to join its sync.
    appending: AtomicUsize,
    /// fdatasyncs issued by leaders.
    syncs: AtomicU64,
}

/// How long a new leader waits at most for writers that are mid-append.
const GATHER: Duration = Duration::from_micros(50);

/// Marks a writer as appending until dropped.
pub(crate) struct Appending<'a>(&'a AtomicUsize);

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl GroupCommit {
    /// Everything through `durable` is already durable.
    pub(crate) fn new(durable: u64) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(State {
                durable,
                syncing: false,
                failure: None,
            }),
            done: Condvar::new(),
            appending: AtomicUsize::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    /// fdatasyncs group commit has issued.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Marks the calling writer as appending until the guard drops (right
    /// after its append, before it waits).
    pub(crate) fn appending(&self) -> Appending<'_> {
        self.appending.fetch_add(1, Ordering::AcqRel);
        Appending(&self.appending)
    }

    /// Records a sync failure outside group commit (a rotation's): no
    /// waiting writer may then be told its write is durable.
    pub(crate) fn fail(&self, cause: String) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.failure.get_or_insert(cause);
        self.done.notify_all();
    }

    /// Records that everything through `seq` is durable.
    pub(crate) fn mark_durable(&self, seq: u64) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.durable = st.durable.max(seq);
        self.done.notify_all();
    }

    /// Returns once `seq` is durable. `target` gives the leader what to
    /// sync: the active slot's file, the last sequence number in it, and a
    /// token handed to `synced` once that sync succeeded.
    pub(crate) fn wait_durable<T>(
        &self,
        seq: u64,
        target: impl Fn() -> (Arc<SiloFile>, u64, T),
        synced: impl Fn(T),
    ) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(cause) = &st.failure {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if st.durable >= seq {
                return Ok(());
            }
            if st.syncing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.syncing = true;
            drop(st);
            // Give writers that are mid-append a moment (bounded) to join
            // this sync; a lone writer does not wait at all.
            let start = Instant::now();
            std::thread::yield_now();
            while self.appending.load(Ordering::Acquire) > 0 && start.elapsed() < GATHER {
                std::thread::yield_now();
            }
            let (file, last, token) = target();
            let outcome = file.sync_data();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            if outcome.is_ok() {
                synced(token);
            }
            st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.syncing = false;
            match outcome {
                Ok(()) => st.durable = st.durable.max(last),
                Err(e) => st.failure = Some(e.to_string()),
            }
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn file() -> (tempfile::TempDir, Arc<SiloFile>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = SiloFile::create_new(&dir.path().join("slot")).expect("file");
        (dir, Arc::new(f))
    }

    #[test]
    fn a_failure_outside_group_commit_fails_every_later_waiter() {
        // Regression (mutation testing): with `fail` a no-op, a waiter
        // would sync the new slot and be told durable although the sync
        // of the slot holding its write failed.
        let (_dir, f) = file();
        let commit = GroupCommit::new(0);
        commit.fail("the frozen slot's fdatasync failed".to_owned());
        let outcome = commit.wait_durable(5, || (Arc::clone(&f), 9, ()), |()| {});
        assert!(
            matches!(outcome, Err(Error::Poisoned { .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn what_is_marked_durable_needs_no_sync() {
        let (_dir, f) = file();
        let commit = GroupCommit::new(0);
        commit.mark_durable(10);
        let syncs = AtomicUsize::new(0);
        let target = || {
            syncs.fetch_add(1, Ordering::Relaxed);
            (Arc::clone(&f), 20, ())
        };
        commit.wait_durable(7, target, |()| {}).expect("durable");
        assert_eq!(syncs.load(Ordering::Relaxed), 0, "marked durable: no sync");
        // Past the mark, the waiter leads a sync, and what it synced counts.
        commit.wait_durable(15, target, |()| {}).expect("synced");
        assert_eq!((syncs.load(Ordering::Relaxed), commit.syncs()), (1, 1));
        commit
            .wait_durable(20, target, |()| {})
            .expect("already synced");
        assert_eq!(commit.syncs(), 1);
    }
}

//! A cold rewrite's copy of its live records, run on a thread of its own.
//!
//! Copying a rewrite's live records is mostly waiting for the device: the
//! records are copied as they are from the old file's map into the direct
//! writer's buffers at memory speed, and each full buffer then waits for
//! the disk (34 MiB of a shard took 30-60 ms, most of it waiting). Run
//! behind, the copy leaves the compaction's thread free to build the new
//! index and go on to its next store while the device writes; the rewrite
//! is published only once the copy and its sync are done
//! ([`WriteBehind::wait`]).
//!
//! Each copy behind holds the writer's two buffers (8 MiB) and two threads
//! (its own and the direct writer's), so at most [`MAX_BEHIND`] run at once
//! in a process: past that a compaction copies on its own thread, as it
//! did before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// Copies behind at once in the process.
pub(crate) const MAX_BEHIND: usize = 4;

/// The copies behind running now, out of [`MAX_BEHIND`].
static RUNNING: Slots = Slots::new(MAX_BEHIND);

/// A count of slots taken, up to a limit.
pub(crate) struct Slots {
    max: usize,
    taken: AtomicUsize,
}

/// One of a [`Slots`]' slots, given back when dropped.
pub(crate) struct Slot<'s>(&'s Slots);

impl Slots {
    pub(crate) const fn new(max: usize) -> Slots {
        Slots {
            max,
            taken: AtomicUsize::new(0),
        }
    }

    /// A slot, or `None` when all are taken.
    pub(crate) fn try_take(&self) -> Option<Slot<'_>> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A copy running behind, or already done on the caller's thread.
pub(crate) struct WriteBehind {
    outcome: Outcome,
}

enum Outcome {
    Running(JoinHandle<Result<()>>),
    Done(Result<()>),
    /// Given out by a wait; whether it was an error.
    Taken {
        failed: bool,
    },
}

impl WriteBehind {
    /// Runs `copy` on a thread of its own if a slot and a thread are to be
    /// had, else here, now.
    pub(crate) fn start<F>(copy: F) -> WriteBehind
    where
        F: FnOnce() -> Result<()> + Send + 'static,
    {
        let Some(slot) = RUNNING.try_take() else {
            return WriteBehind {
                outcome: Outcome::Done(copy()),
            };
        };
        // The copy goes to the thread once it runs: where none can be
        // started, it is handed back and runs here.
        let (give, take) = std::sync::mpsc::sync_channel::<F>(1);
        let spawned = std::thread::Builder::new()
            .name("silo-copy".to_owned())
            .spawn(move || {
                let _slot = slot;
                take.recv().map_or(Ok(()), |copy| copy())
            });
        let outcome = match spawned {
            Ok(handle) => match give.send(copy) {
                Ok(()) => Outcome::Running(handle),
                Err(std::sync::mpsc::SendError(copy)) => Outcome::Done(copy()),
            },
            Err(_) => Outcome::Done(copy()),
        };
        WriteBehind { outcome }
    }

    /// Waits for the copy and gives its outcome; a later wait gives `Ok`
    /// again, or an error if the copy failed, so that nothing can take a
    /// failed copy for a written one. A panic of the copy is resumed here.
    pub(crate) fn wait(&mut self) -> Result<()> {
        let outcome = match std::mem::replace(&mut self.outcome, Outcome::Taken { failed: true }) {
            Outcome::Running(handle) => match handle.join() {
                Ok(outcome) => outcome,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Outcome::Done(outcome) => outcome,
            Outcome::Taken { failed: false } => Ok(()),
            Outcome::Taken { failed: true } => Err(Error::InvalidOptions {
                name: "rewrite",
                reason: "its copy failed: it cannot be published".to_owned(),
            }),
        };
        self.outcome = Outcome::Taken {
            failed: outcome.is_err(),
        };
        outcome
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        // Nothing may be written to the files once their rewrite is gone
        // (its files may be removed next): the copy is waited for. Its
        // outcome no longer matters to anyone.
        if let Outcome::Running(handle) =
            std::mem::replace(&mut self.outcome, Outcome::Taken { failed: true })
        {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_at_their_limit_and_come_back_when_dropped() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first");
        let b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none());
        drop(a);
        let c = slots.try_take().expect("a slot given back");
        assert!(slots.try_take().is_none());
        drop((b, c));
        assert_eq!(slots.taken.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_copy_behind_gives_its_outcome_and_runs_whether_or_not_it_is_waited_for() {
        let mut ok = WriteBehind::start(|| Ok(()));
        assert!(ok.wait().is_ok());
        let mut failed = WriteBehind::start(|| {
            Err(Error::InvalidOptions {
                name: "copy",
                reason: "failed".to_owned(),
            })
        });
        assert!(matches!(
            failed.wait(),
            Err(Error::InvalidOptions { name: "copy", .. })
        ));
        assert!(
            matches!(
                failed.wait(),
                Err(Error::InvalidOptions {
                    name: "rewrite",
                    ..
                })
            ),
            "a failed copy stays failed"
        );
        assert!(ok.wait().is_ok(), "a written copy stays written");
        // Dropped without a wait: the copy has run by the time the drop
        // returns.
        let ran = std::sync::Arc::new(AtomicUsize::new(0));
        let theirs = std::sync::Arc::clone(&ran);
        drop(WriteBehind::start(move || {
            theirs.fetch_add(1, Ordering::AcqRel);
            Ok(())
        }));
        assert_eq!(ran.load(Ordering::Acquire), 1);
    }

    #[test]
    fn a_panic_of_the_copy_is_resumed_by_the_wait() {
        // Run behind, or here when every slot is taken: either way the
        // panic comes back to this thread.
        let resumed =
            std::panic::catch_unwind(|| WriteBehind::start(|| panic!("copy panicked")).wait())
                .expect_err("the copy's panic comes back");
        assert_eq!(resumed.downcast_ref::<&str>(), Some(&"copy panicked"));
    }
}

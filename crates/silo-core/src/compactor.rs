//! The store's compaction worker: automatic compaction runs on a thread of
//! its own, never on the thread of the write that made it due.
//!
//! Writers call [`Wake::kick`] when the policy says compaction is due; the
//! worker also looks every [`IDLE_CHECK`] (the policy has time-based
//! conditions). It compacts with the gate held, as `compact` does, so it
//! waits for iterators, snapshots and bulk writers, never they for it.
//! `Options::auto_compact = false` starts no worker: the sharded engine's
//! scheduler, or the application, calls `compact` itself.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::compaction::policy;
use crate::error::{Error, Result};
use crate::store::Core;

/// How often an idle worker asks the policy anyway.
const IDLE_CHECK: Duration = Duration::from_millis(100);

#[derive(Default)]
struct WakeState {
    wanted: bool,
    stop: bool,
    /// Passes the worker has started and finished.
    started: u64,
    done: u64,
}

/// The worker's doorbell.
#[derive(Default)]
pub(crate) struct Wake {
    state: Mutex<WakeState>,
    bell: Condvar,
    finished: Condvar,
}

impl Wake {
    /// Asks the worker to look at the policy now.
    pub(crate) fn kick(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.wanted {
            st.wanted = true;
            self.bell.notify_one();
        }
    }

    /// Asks the worker to stop (and releases everyone waiting for it).
    fn stop(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        self.bell.notify_all();
        self.finished.notify_all();
    }

    /// Kicks the worker and returns once the pass that answers the kick
    /// has finished (or the worker stopped).
    pub(crate) fn kick_and_wait(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.wanted = true;
        self.bell.notify_one();
        // The kick is answered by the next pass to start.
        let target = st.started + 1;
        while st.done < target && !st.stop {
            st = self.finished.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits for a kick, a stop or the idle period. Returns `None` to stop,
    /// or the number of the pass to run.
    fn wait(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.wanted && !st.stop {
            st = self
                .bell
                .wait_timeout(st, IDLE_CHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if st.stop {
            return None;
        }
        st.wanted = false;
        st.started += 1;
        Some(st.started)
    }

    /// Records that pass `pass` finished.
    fn finish(&self, pass: u64) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.done = st.done.max(pass);
        self.finished.notify_all();
    }
}

/// A running worker; stopping it joins the thread.
pub(crate) struct Worker {
    core: Arc<Core>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker of `core`.
    pub(crate) fn start(core: Arc<Core>) -> Result<Worker> {
        let for_thread = Arc::clone(&core);
        let thread = std::thread::Builder::new()
            .name("silo-compactor".to_owned())
            .spawn(move || run(&for_thread))
            .map_err(|e| {
                silo_io::error::IoError::io("spawn the compaction worker", &core.dir, e)
            })?;
        Ok(Worker {
            core,
            thread: Some(thread),
        })
    }

    /// Stops the worker after its current compaction, and waits for it.
    pub(crate) fn stop(&mut self) {
        self.core.wake.stop();
        if let Some(thread) = self.thread.take() {
            // A panic in the worker was already reported by the panic hook;
            // the store stays usable and its state on disk consistent.
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(core: &Core) {
    while let Some(pass) = core.wake.wait() {
        // A panic (in a merge operator, say) must not leave waiters of
        // `wait_background` hanging or the store silently uncompacted: it
        // poisons the store, is reported, and ends the worker.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let due = !core.is_poisoned()
                && !core.closed.load(Ordering::Acquire)
                && policy::decide(&core.policy_input(), &core.opts.thresholds).is_some();
            if due {
                let gate = core.gate.write();
                // A failure is kept in Stats::last_compaction_error (and an
                // I/O failure poisons the store); the writes that made it
                // due succeeded.
                let _ = core.compact_locked(&gate, crate::compaction::Early::No);
            }
        }));
        if outcome.is_err() {
            let e = Error::Poisoned {
                cause: "the compaction worker panicked (in a merge operator?)".to_owned(),
            };
            core.note_compaction_error(&e);
            let _ = core.poison(e);
            core.wake.stop();
        }
        core.wake.finish(pass);
    }
}

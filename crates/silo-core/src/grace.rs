//! Grace periods: a writer waits until every reader that started before a
//! change has finished, without readers ever waiting for the writer.
//!
//! Readers register in the current epoch (one of two parities) on a striped
//! counter; [`Grace::wait`] flips the epoch and waits for the old parity's
//! counters to drain. Compaction uses it before it overwrites bytes in place
//! that a reader could still be reading.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counter stripes; readers spread over them to avoid one hot cache line.
const STRIPES: usize = 16;

/// One stripe: a reader count per epoch parity, on its own cache line.
#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicUsize; 2]);

/// Reader registration and writer grace periods.
pub(crate) struct Grace {
    epoch: AtomicUsize,
    stripes: [Stripe; STRIPES],
    writers: Mutex<()>,
}

/// A registered reader; dropping it leaves the grace domain.
pub(crate) struct ReadGuard<'a> {
    counter: &'a AtomicUsize,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Release);
    }
}

thread_local! {
    static STRIPE: usize = next_stripe();
}

fn next_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
}

impl Default for Grace {
    fn default() -> Self {
        Grace {
            epoch: AtomicUsize::new(0),
            stripes: Default::default(),
            writers: Mutex::new(()),
        }
    }
}

impl Grace {
    /// Registers a reader until the guard drops. Never blocks.
    pub(crate) fn enter(&self) -> ReadGuard<'_> {
        let stripe = &self.stripes[STRIPE.with(|s| *s)];
        loop {
            let parity = self.epoch.load(Ordering::SeqCst) & 1;
            let counter = &stripe.0[parity];
            counter.fetch_add(1, Ordering::SeqCst);
            // If a writer flipped the epoch between our load and our increment,
            // it may already have seen our counter at zero: retry in the new epoch.
            if self.epoch.load(Ordering::SeqCst) & 1 == parity {
                return ReadGuard { counter };
            }
            counter.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Returns once every reader registered before this call has left.
    /// Changes published before the call are seen by every reader still inside.
    pub(crate) fn wait(&self) {
        let _one_writer = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.epoch.fetch_add(1, Ordering::SeqCst) & 1;
        for stripe in &self.stripes {
            let mut spins = 0u32;
            while stripe.0[old].load(Ordering::SeqCst) != 0 {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    #[test]
    fn wait_returns_at_once_without_readers() {
        let g = Grace::default();
        g.wait();
        g.wait();
    }

    #[test]
    fn wait_blocks_until_an_earlier_reader_leaves() {
        let g = Arc::new(Grace::default());
        let guard_taken = Arc::new(AtomicBool::new(false));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let reader = {
            let g = Arc::clone(&g);
            std::thread::spawn(move || {
                let _r = g.enter();
                entered_tx.send(()).expect("main waits");
                release_rx.recv().expect("main releases");
            })
        };
        entered_rx.recv().expect("reader entered");
        let waiter = {
            let g = Arc::clone(&g);
            let done = Arc::clone(&guard_taken);
            std::thread::spawn(move || {
                g.wait();
                done.store(true, Ordering::SeqCst);
            })
        };
        // The reader is still inside, so the waiter cannot have finished.
        assert!(!guard_taken.load(Ordering::SeqCst));
        release_tx.send(()).expect("reader waits");
        reader.join().expect("reader");
        waiter.join().expect("waiter");
        assert!(guard_taken.load(Ordering::SeqCst));
    }
}

//! Page-fault accounting ([`process_faults`], [`thread_faults`]) and a
//! prefetch hit-rate counter ([`PrefetchCounter`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::IoError;
use crate::sys;

/// Page faults counted by the kernel since the process (or thread) started.
/// A major fault had to read from disk; a minor one found the page in memory.
///
/// ```
/// let before = silo_io::process_faults()?;
/// let v = vec![1u8; 1 << 20];
/// let after = silo_io::process_faults()?;
/// assert!(after.minor >= before.minor);
/// # drop(v);
/// # Ok::<(), silo_io::IoError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Faults that needed I/O.
    pub major: u64,
    /// Faults served from memory.
    pub minor: u64,
}

impl FaultCounts {
    /// The faults between `earlier` and `self` (saturating).
    ///
    /// ```
    /// use silo_io::FaultCounts;
    /// let a = FaultCounts { major: 1, minor: 10 };
    /// let b = FaultCounts { major: 4, minor: 15 };
    /// assert_eq!(b.since(a), FaultCounts { major: 3, minor: 5 });
    /// ```
    pub fn since(self, earlier: FaultCounts) -> FaultCounts {
        FaultCounts {
            major: self.major.saturating_sub(earlier.major),
            minor: self.minor.saturating_sub(earlier.minor),
        }
    }
}

fn faults(who: libc::c_int, what: &'static str) -> Result<FaultCounts, IoError> {
    let (major, minor) = sys::rusage_faults(who)
        .map_err(|e| IoError::io(what, std::path::Path::new("<process>"), e))?;
    Ok(FaultCounts { major, minor })
}

/// Page faults of the whole process (`getrusage(RUSAGE_SELF)`).
///
/// ```
/// assert!(silo_io::process_faults()?.minor > 0);
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn process_faults() -> Result<FaultCounts, IoError> {
    faults(libc::RUSAGE_SELF, "getrusage")
}

/// Page faults of the calling thread (`RUSAGE_THREAD` on Linux; elsewhere
/// the whole process's).
///
/// ```
/// let f = silo_io::thread_faults()?;
/// assert!(f.major <= silo_io::process_faults()?.major);
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn thread_faults() -> Result<FaultCounts, IoError> {
    #[cfg(target_os = "linux")]
    {
        faults(libc::RUSAGE_THREAD, "getrusage")
    }
    #[cfg(not(target_os = "linux"))]
    {
        process_faults()
    }
}

/// Counts prefetched pages and accesses that did or did not fault, to
/// measure how well prefetch advice works. All methods take `&self`
/// (relaxed atomics), so one counter is shared by every reader thread.
///
/// ```
/// use silo_io::PrefetchCounter;
/// let c = PrefetchCounter::new();
/// c.record_prefetch(16);
/// c.record_access(false);
/// c.record_access(false);
/// c.record_access(true);
/// let s = c.snapshot_and_reset();
/// assert_eq!((s.prefetches, s.accesses, s.faulted), (16, 3, 1));
/// assert!((s.hit_rate - 2.0 / 3.0).abs() < 1e-9);
/// assert_eq!(c.snapshot_and_reset().accesses, 0);
/// ```
#[derive(Debug, Default)]
pub struct PrefetchCounter {
    prefetches: AtomicU64,
    accesses: AtomicU64,
    faulted: AtomicU64,
}

/// One reading of a [`PrefetchCounter`].
///
/// ```
/// let s = silo_io::PrefetchCounter::new().snapshot_and_reset();
/// assert_eq!(s.hit_rate, 1.0); // no accesses, no misses
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PrefetchStats {
    /// Pages advised for prefetch.
    pub prefetches: u64,
    /// Accesses recorded.
    pub accesses: u64,
    /// Accesses that faulted (missed the prefetch).
    pub faulted: u64,
    /// `(accesses - faulted) / accesses`; 1.0 when there were no accesses.
    pub hit_rate: f64,
}

impl PrefetchCounter {
    /// A counter at zero.
    ///
    /// ```
    /// assert_eq!(silo_io::PrefetchCounter::new().snapshot_and_reset().prefetches, 0);
    /// ```
    pub fn new() -> PrefetchCounter {
        PrefetchCounter::default()
    }

    /// Records that `pages` pages were advised for prefetch.
    ///
    /// ```
    /// let c = silo_io::PrefetchCounter::new();
    /// c.record_prefetch(3);
    /// assert_eq!(c.snapshot_and_reset().prefetches, 3);
    /// ```
    pub fn record_prefetch(&self, pages: u64) {
        self.prefetches.fetch_add(pages, Ordering::Relaxed);
    }

    /// Records one access, and whether it faulted.
    ///
    /// ```
    /// let c = silo_io::PrefetchCounter::new();
    /// c.record_access(true);
    /// assert_eq!(c.snapshot_and_reset().hit_rate, 0.0);
    /// ```
    pub fn record_access(&self, faulted: bool) {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        if faulted {
            self.faulted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads the counts and sets them back to zero. Each counter is swapped
    /// on its own, so records racing with the call land in this or the next
    /// snapshot, never nowhere.
    ///
    /// ```
    /// let c = silo_io::PrefetchCounter::new();
    /// c.record_access(false);
    /// assert_eq!(c.snapshot_and_reset().hit_rate, 1.0);
    /// ```
    pub fn snapshot_and_reset(&self) -> PrefetchStats {
        let prefetches = self.prefetches.swap(0, Ordering::Relaxed);
        let accesses = self.accesses.swap(0, Ordering::Relaxed);
        let faulted = self.faulted.swap(0, Ordering::Relaxed).min(accesses);
        let hit_rate = if accesses == 0 {
            1.0
        } else {
            (accesses - faulted) as f64 / accesses as f64
        };
        PrefetchStats {
            prefetches,
            accesses,
            faulted,
            hit_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_new_memory_adds_minor_faults() {
        let before = thread_faults().unwrap();
        let mut v = vec![0u8; 8 << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        std::hint::black_box(&v);
        let after = thread_faults().unwrap();
        assert!(after.since(before).minor > 0);
    }

    #[test]
    fn counter_is_shared_across_threads() {
        let c = PrefetchCounter::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..1000 {
                        c.record_access(i % 4 == 0);
                    }
                });
            }
        });
        let s = c.snapshot_and_reset();
        assert_eq!((s.accesses, s.faulted), (4000, 1000));
        assert!((s.hit_rate - 0.75).abs() < 1e-12);
    }
}

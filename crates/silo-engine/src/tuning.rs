//! Default shard and thread counts from the machine: a pure function of the
//! core count and the memory available, table-tested, overridable through
//! [`crate::EngineOptions`].

/// What the defaults are computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TuningProfile {
    /// Cores the process may use.
    pub cores: usize,
    /// Memory available to the process, in bytes.
    pub memory_bytes: u64,
}

/// Memory a compaction thread may need at once (its plan's values and
/// write buffers): threads are capped so that they fit in a quarter of the
/// available memory.
const MEMORY_PER_COMPACTION_THREAD: u64 = 256 << 20;

/// The defaults [`TuningProfile`] gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Shards of a new engine.
    pub shards: usize,
    /// Threads that compact shards in parallel.
    pub compaction_threads: usize,
}

impl TuningProfile {
    /// This machine: `std::thread::available_parallelism` and the
    /// `MemAvailable` line of `/proc/meminfo` (4 GiB if unreadable).
    pub fn detect() -> TuningProfile {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| mem_available(&s))
            .unwrap_or(4 << 30);
        TuningProfile {
            cores,
            memory_bytes,
        }
    }

    /// The defaults for this profile: twice the cores in shards (a power of
    /// two from 2 to 64), so that a busy shard never idles a core during a
    /// parallel compaction; one compaction thread per core, no more than a
    /// quarter of the memory allows, at least one.
    pub fn tuning(&self) -> Tuning {
        let cores = self.cores.max(1);
        let shards = (cores * 2).next_power_of_two().clamp(2, 64);
        let by_memory = (self.memory_bytes / 4 / MEMORY_PER_COMPACTION_THREAD).max(1);
        let compaction_threads = cores.min(usize::try_from(by_memory).unwrap_or(usize::MAX));
        Tuning {
            shards,
            compaction_threads,
        }
    }
}

/// The `MemAvailable` figure of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn table() {
        let rows = [
            // cores, memory, shards, threads
            (1, 4 * GIB, 2, 1),
            (2, 24 * GIB, 4, 2),
            (3, 24 * GIB, 8, 3),
            (8, 64 * GIB, 16, 8),
            (64, 512 * GIB, 64, 64),
            (8, GIB, 16, 1),
            (16, 2 * GIB, 32, 2),
            (0, 0, 2, 1),
        ];
        for (cores, memory_bytes, shards, threads) in rows {
            let t = TuningProfile {
                cores,
                memory_bytes,
            }
            .tuning();
            assert_eq!(
                (t.shards, t.compaction_threads),
                (shards, threads),
                "{cores} cores, {memory_bytes} bytes"
            );
        }
    }

    #[test]
    fn meminfo_is_parsed() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots kB\n"), None);
    }

    #[test]
    fn this_machine_gives_sane_defaults() {
        let t = TuningProfile::detect().tuning();
        assert!(t.shards.is_power_of_two() && (2..=64).contains(&t.shards));
        assert!(t.compaction_threads >= 1);
    }
}

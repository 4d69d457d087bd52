//! Compacting the shards: classify them (sequentially, from their stats
//! and the policy), prefetch the chosen ones' inputs, then compact them in
//! parallel on a pool of `compaction_threads`; one thread or one shard
//! takes a sequential path with no pool.
//!
//! Readers and writers keep working on every shard throughout: a shard's
//! compaction blocks only its own iterators, snapshots and bulk writers.

use std::time::{Duration, Instant};

use silo_core::CompactionReport;

use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// How [`Engine::compact_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactOptions {
    /// Shards compacted at once. `None`: the engine's `compaction_threads`.
    pub threads: Option<usize>,
    /// Rewrite every shard's data file (a cold compaction), whatever its
    /// dead space.
    pub cold: bool,
    /// Before compacting, ask the kernel to read the chosen shards' data
    /// and index files into the page cache (`WillNeed`), so that a shard's
    /// inputs are read while earlier shards compute. Default on.
    pub prefetch: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            threads: None,
            cold: false,
            prefetch: true,
        }
    }
}

/// What a call to [`Engine::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineCompactionReport {
    /// Each compacted shard's number and report, by shard number.
    pub shards: Vec<(usize, CompactionReport)>,
    /// Threads used.
    pub threads: usize,
    /// Bytes written to data files, over every shard.
    pub bytes_written: u64,
    /// Operations folded, over every shard.
    pub ops_folded: u64,
    /// Bytes of input files the prefetch asked the kernel to read.
    pub prefetched_bytes: u64,
    /// Major page faults of the process while the compaction ran (the
    /// inputs read from disk rather than the page cache).
    pub major_faults: u64,
    /// Wall time.
    pub duration: Duration,
}

impl Engine {
    /// Compacts every shard that has operations to fold or that its policy
    /// says is due, in parallel. See [`Engine::compact_with`].
    pub fn compact(&self) -> Result<EngineCompactionReport> {
        self.compact_with(CompactOptions::default())
    }

    /// Compacts as `opts` says. Every chosen shard is compacted even if
    /// another fails; the first failure is returned after all have run.
    pub fn compact_with(&self, opts: CompactOptions) -> Result<EngineCompactionReport> {
        let start = Instant::now();
        let faults_before = silo_io::faults::process_faults().ok();
        let threads = opts.threads.unwrap_or_else(|| self.options().threads());
        if threads == 0 {
            return Err(EngineError::InvalidOptions {
                name: "threads",
                reason: "at least one thread".to_owned(),
            });
        }
        // 1. Classify, sequentially.
        let chosen: Vec<usize> = self
            .shards()
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                let st = s.store.stats();
                opts.cold
                    || st.pending_ops > 0
                    || st.log_bytes > 0
                    || s.store.needs_compaction().is_some()
            })
            .map(|(i, _)| i)
            .collect();
        // 2. Prefetch the chosen shards' inputs (the kernel reads them in
        //    the background), then compact, in parallel when there is a choice.
        let mut prefetched_bytes = 0;
        if opts.prefetch {
            for &i in &chosen {
                prefetched_bytes += self.shards()[i]
                    .store
                    .advise(silo_io::FileAdvice::WillNeed)
                    .map_err(EngineError::shard(i))?;
            }
        }
        let run = |i: usize| -> (usize, Result<CompactionReport>) {
            let store = &self.shards()[i].store;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if opts.cold {
                    store.compact_cold()
                } else {
                    store.compact()
                }
            }));
            let result = match outcome {
                Ok(r) => r.map_err(EngineError::shard(i)),
                Err(_) => Err(EngineError::Shard {
                    shard: i,
                    source: silo_core::Error::Poisoned {
                        cause: "the compaction panicked (in a merge operator?)".to_owned(),
                    },
                }),
            };
            (i, result)
        };
        let used = threads.min(chosen.len()).max(1);
        let results: Vec<(usize, Result<CompactionReport>)> = if used == 1 {
            chosen.iter().map(|&i| run(i)).collect()
        } else {
            use rayon::prelude::*;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(used)
                .thread_name(|n| format!("silo-compact-{n}"))
                .build()
                .map_err(|e| EngineError::InvalidOptions {
                    name: "threads",
                    reason: format!("cannot start the compaction pool: {e}"),
                })?;
            pool.install(|| chosen.par_iter().map(|&i| run(i)).collect())
        };
        // 3. Gather, in shard order.
        let mut report = EngineCompactionReport {
            threads: used,
            prefetched_bytes,
            ..EngineCompactionReport::default()
        };
        let mut first_error = None;
        for (i, result) in results {
            match result {
                Ok(r) => {
                    report.bytes_written += r.bytes_written;
                    report.ops_folded += r.ops_folded;
                    report.shards.push((i, r));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if let (Some(before), Ok(after)) = (faults_before, silo_io::faults::process_faults()) {
            report.major_faults = after.since(before).major;
        }
        report.duration = start.elapsed();
        Ok(report)
    }
}

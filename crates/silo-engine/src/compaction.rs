//! Compacting the shards in three phases:
//! 1. classify them sequentially from their stats and the policy, and
//!    freeze each chosen shard's log slot ([`silo_core::Silo::stage_compaction`]);
//! 2. prefetch their inputs (`WillNeed`) and compute their plans in
//!    parallel on a pool of `compaction_threads`, each task reading only its
//!    shard's immutable inputs and returning an owned plan;
//! 3. apply and commit the plans sequentially, shard by shard; then the
//!    cold rewrites due the same way: new files written in parallel,
//!    published in shard order.
//!
//! One thread or one shard takes a sequential path with no pool. Readers
//! and writers keep working on every shard throughout: a frozen shard's
//! writers go on into its other log slot; only its iterators, snapshots
//! and bulk writers wait, until phase 3 ends. A shard is frozen only if
//! its gate is free at once (never waiting for one shard while holding
//! others); a busy one is compacted on its own after phase 3.

use std::time::{Duration, Instant};

use silo_core::{ColdRewrite, CompactionPlan, CompactionReport, StagedCompaction};

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
        // 2. Freeze each chosen shard's log slot (sequentially: each takes
        //    its shard's gate until its apply), prefetch its inputs (the
        //    kernel reads them in the background), and compute the plans in
        //    parallel when there is a choice: each task reads only its own
        //    shard's immutable inputs and returns an owned plan.
        let mut staged = Vec::with_capacity(chosen.len());
        let mut later = Vec::new();
        let mut results: Vec<(usize, Result<CompactionReport>)> = Vec::new();
        for &i in &chosen {
            // Never wait for one shard's gate while holding others': a
            // shard that is busy (or has nothing to fold) is compacted on
            // its own at the end.
            match self.shards()[i].store.try_stage_compaction(opts.cold) {
                Ok(Some(st)) => staged.push((i, st)),
                Ok(None) => later.push(i),
                Err(e) => results.push((i, Err(EngineError::shard(i)(e)))),
            }
        }
        let mut prefetched_bytes = 0;
        if opts.prefetch {
            for &(i, _) in &staged {
                // A hint: a failure changes only how fast the inputs come.
                prefetched_bytes += self.shards()[i]
                    .store
                    .advise(silo_io::FileAdvice::WillNeed)
                    .unwrap_or(0);
            }
        }
        let used = threads.min(staged.len()).max(1);
        let pool = (used > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(used)
                    .thread_name(|n| format!("silo-compact-{n}"))
                    .build()
                    .ok()
            })
            .flatten();
        let plans: Vec<Result<CompactionPlan<'_>>> = match &pool {
            Some(pool) => {
                use rayon::prelude::*;
                pool.install(|| staged.par_iter().map(|(i, st)| plan_of(st, *i)).collect())
            }
            // One thread, one shard, or no pool to be had: in turn.
            None => staged.iter().map(|(i, st)| plan_of(st, *i)).collect(),
        };
        let used = if pool.is_some() { used } else { 1 };
        // 3. Apply and commit, sequentially, shard by shard.
        let mut hot: Vec<(usize, Result<CompactionReport>)> = Vec::new();
        for ((i, st), planned) in staged.iter().zip(plans) {
            let applied = planned.and_then(|p| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| st.apply_hot(p)))
                    .map_err(|_| panicked(*i))?
                    .map_err(EngineError::shard(*i))
            });
            hot.push((*i, applied));
        }
        // The cold rewrites due (asked for, or dead space over the
        // threshold) in the same three steps: each shard's new files are
        // written in parallel (nothing reads them yet), then published in
        // shard order.
        let cold_due: Vec<bool> = staged
            .iter()
            .zip(&hot)
            .map(|((_, st), (_, h))| h.is_ok() && st.cold_due())
            .collect();
        let prepare = |(i, st): &(usize, StagedCompaction<'_>), due: bool| {
            due.then(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| st.prepare_cold()))
                    .map_err(|_| panicked(*i))?
                    .map_err(EngineError::shard(*i))
            })
        };
        let rewrites: Vec<Option<Result<ColdRewrite>>> = match &pool {
            Some(pool) => {
                use rayon::prelude::*;
                pool.install(|| {
                    staged
                        .par_iter()
                        .zip(cold_due.par_iter())
                        .map(|(s, due)| prepare(s, *due))
                        .collect()
                })
            }
            None => staged
                .iter()
                .zip(&cold_due)
                .map(|(s, due)| prepare(s, *due))
                .collect(),
        };
        for (((i, st), (_, applied)), rewrite) in staged.iter().zip(hot).zip(rewrites) {
            let result = match (applied, rewrite) {
                (Ok(mut report), Some(rewrite)) => rewrite.and_then(|rw| {
                    report.reclaimed_bytes = st.finish_cold(rw).map_err(EngineError::shard(*i))?;
                    report.cold = true;
                    Ok(report)
                }),
                (applied, _) => applied,
            };
            results.push((*i, result));
        }
        // The shards' gates (their plans borrowed them) go together.
        drop(staged);
        for i in later {
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
                Err(_) => Err(panicked(i)),
            };
            results.push((i, result));
        }
        results.sort_by_key(|(i, _)| *i);
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

/// The error of a shard whose compaction panicked (in a merge operator?).
fn panicked(shard: usize) -> EngineError {
    EngineError::Shard {
        shard,
        source: silo_core::Error::Poisoned {
            cause: "the compaction panicked (in a merge operator?)".to_owned(),
        },
    }
}

/// Shard `shard`'s plan, a panic (in a merge operator?) made an error.
fn plan_of<'s>(st: &'s StagedCompaction<'_>, shard: usize) -> Result<CompactionPlan<'s>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| st.plan())) {
        Ok(r) => r.map_err(EngineError::shard(shard)),
        Err(_) => Err(panicked(shard)),
    }
}

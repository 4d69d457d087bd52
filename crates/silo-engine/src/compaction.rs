//! Compacting the shards in three phases:
//! 1. classify them sequentially from their stats and the policy, and
//!    freeze each chosen shard's log slot ([`silo_core::Silo::stage_compaction`]);
//! 2. prefetch their inputs (`WillNeed`) and compute their plans in
//!    parallel on a pool of `compaction_threads`, each task reading only its
//!    shard's immutable inputs and returning an owned plan;
//! 3. apply and commit the plans sequentially, shard by shard, each as
//!    soon as its plan (and every earlier shard's) is ready, so that the
//!    pool plans later shards while earlier ones apply; then the cold
//!    rewrites due the same way: new files written on the pool, published
//!    in shard order.
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
    /// Bytes written to data files (hot records and cold rewrites), over
    /// every shard.
    pub bytes_written: u64,
    /// Bytes read (frozen log slots, stored records, records a cold
    /// rewrite copied), over every shard.
    pub bytes_read: u64,
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
        let pool = pool_of(used);
        let used = if pool.is_some() { used } else { 1 };
        // 3. Apply and commit sequentially, shard by shard, each as soon as
        //    its plan (and every earlier one) is ready: the pool goes on
        //    planning later shards meanwhile.
        let mut hot: Vec<(usize, Result<CompactionReport>)> = Vec::with_capacity(staged.len());
        in_order(
            pool.as_ref(),
            &staged,
            |(i, st)| plan_of(st, *i),
            |(i, st), planned| {
                let applied = planned.unwrap_or_else(|| Err(panicked(*i))).and_then(|p| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| st.apply_hot(p)))
                        .map_err(|_| panicked(*i))?
                        .map_err(EngineError::shard(*i))
                });
                hot.push((*i, applied));
            },
        );
        // The cold rewrites due (asked for, or dead space over the
        // threshold) in the same way: each shard's new files are written on
        // the pool (nothing reads them yet) and published in shard order.
        let due: Vec<(usize, &StagedCompaction<'_>, bool)> = staged
            .iter()
            .zip(&hot)
            .map(|((i, st), (_, h))| (*i, st, h.is_ok() && st.cold_due()))
            .collect();
        let mut rewrites: Vec<Option<Result<ColdRewrite>>> = Vec::with_capacity(due.len());
        in_order(
            pool.as_ref(),
            &due,
            |(i, st, due)| {
                due.then(|| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| st.prepare_cold()))
                        .map_err(|_| panicked(*i))?
                        .map_err(EngineError::shard(*i))
                })
            },
            |(i, _, due), prepared| {
                rewrites.push(prepared.unwrap_or_else(|| due.then(|| Err(panicked(*i)))));
            },
        );
        drop(due);
        for (((i, st), (_, applied)), rewrite) in staged.iter().zip(hot).zip(rewrites) {
            let result = match (applied, rewrite) {
                (Ok(mut report), Some(rewrite)) => rewrite.and_then(|rw| {
                    report.bytes_read += rw.bytes_read();
                    report.bytes_written += rw.bytes_written();
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
                    report.bytes_read += r.bytes_read;
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

/// A pool of `threads` compaction threads; `None` for one thread (the
/// sequential path) or if no thread can be started.
fn pool_of(threads: usize) -> Option<rayon::ThreadPool> {
    (threads > 1)
        .then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|n| format!("silo-compact-{n}"))
                .build()
                .ok()
        })
        .flatten()
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

/// Runs `work` over `items` on `pool` and hands each result to `consume` on
/// the calling thread, in the items' order, as soon as it and every earlier
/// one are ready: `consume` of item 0 overlaps `work` on the later items.
/// `None` in `consume`: that item's `work` panicked. Without a pool, each
/// item is worked and consumed in turn on the calling thread.
fn in_order<'a, T: Sync, R: Send>(
    pool: Option<&rayon::ThreadPool>,
    items: &'a [T],
    work: impl Fn(&'a T) -> R + Sync,
    mut consume: impl FnMut(&'a T, Option<R>),
) {
    let Some(pool) = pool else {
        for item in items {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)));
            consume(item, r.ok());
        }
        return;
    };
    let (tx, rx) = crossbeam::channel::unbounded::<(usize, Option<R>)>();
    let work = &work;
    pool.in_place_scope(|scope| {
        for (pos, item) in items.iter().enumerate() {
            let tx = tx.clone();
            scope.spawn(move |_| {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)));
                // The receiver lives until every item is consumed.
                let _ = tx.send((pos, r.ok()));
            });
        }
        drop(tx);
        let mut ready: Vec<Option<Option<R>>> = items.iter().map(|_| None).collect();
        for (pos, item) in items.iter().enumerate() {
            while ready[pos].is_none() {
                match rx.recv() {
                    Ok((at, r)) => ready[at] = Some(r),
                    // Every sender is gone: no result will come for `pos`.
                    Err(_) => break,
                }
            }
            consume(item, ready[pos].take().flatten());
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::in_order;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a pool")
    }

    #[test]
    fn results_are_consumed_in_item_order_with_or_without_a_pool() {
        let items: Vec<u32> = (0..40).collect();
        for pool in [None, Some(pool(2)), Some(pool(3))] {
            let mut seen = Vec::new();
            in_order(pool.as_ref(), &items, |x| x * 10, |x, r| seen.push((*x, r)));
            let want: Vec<(u32, Option<u32>)> = items.iter().map(|x| (*x, Some(x * 10))).collect();
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn a_panicking_item_gives_none_and_the_others_still_come() {
        let items: Vec<u32> = (0..8).collect();
        for pool in [None, Some(pool(2))] {
            let mut seen = Vec::new();
            in_order(
                pool.as_ref(),
                &items,
                |x| {
                    assert_ne!(*x, 3, "item 3 panics");
                    *x
                },
                |x, r| seen.push((*x, r)),
            );
            let want: Vec<(u32, Option<u32>)> = items
                .iter()
                .map(|x| (*x, (*x != 3).then_some(*x)))
                .collect();
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn the_first_item_is_consumed_while_the_last_is_still_worked() {
        // The last item's work waits for the first item's consume: if every
        // result were gathered before any was consumed, it would wait in
        // vain (the watchdog's timeout, not a deadlock).
        let (tx, rx) = crossbeam::channel::bounded::<()>(1);
        let rx = Mutex::new(rx);
        let items: Vec<u32> = (0..4).collect();
        let mut consumed = Vec::new();
        in_order(
            Some(&pool(2)),
            &items,
            |x| {
                if *x == 3 {
                    let rx = rx.lock().expect("unpoisoned");
                    return rx.recv_timeout(Duration::from_secs(30)).is_ok();
                }
                true
            },
            |x, r| {
                if *x == 0 {
                    tx.send(()).expect("the last item listens");
                }
                consumed.push((*x, r));
            },
        );
        assert_eq!(
            consumed,
            vec![
                (0, Some(true)),
                (1, Some(true)),
                (2, Some(true)),
                (3, Some(true))
            ]
        );
    }
}

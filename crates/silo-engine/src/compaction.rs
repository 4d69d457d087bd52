//! Compacting the shards in three phases:
//! 1. classify them sequentially from their stats and the policy, and
//!    freeze each chosen shard's log slot ([`silo_core::Silo::stage_compaction`]);
//! 2. prefetch their inputs (`WillNeed`) and compute their plans in
//!    parallel on a pool of `compaction_threads`, each task reading only its
//!    shard's immutable inputs and returning an owned plan; a shard whose
//!    cold rewrite is certain before its plan is applied (asked for, or due
//!    once the plan's dead space is counted) has the plan folded straight
//!    into new files on the pool, written and synced but unpublished;
//! 3. apply and commit the plans sequentially, shard by shard, each as
//!    soon as its plan (and every earlier shard's) is ready, so that the
//!    pool plans later shards while earlier ones apply; a shard whose cold
//!    rewrite is due after its hot apply has its new files written on the
//!    pool as soon as that apply is done, and the rewrites are published
//!    in shard order once every hot apply is.
//!
//! One thread or one shard takes a sequential path with no pool. Readers
//! and writers keep working on every shard throughout: a frozen shard's
//! writers go on into its other log slot; only its iterators, snapshots
//! and bulk writers wait, until phase 3 ends. A shard is frozen only if
//! its gate is free at once (never waiting for one shard while holding
//! others); a busy one is compacted on its own after phase 3.

use std::time::{Duration, Instant};

use silo_core::{CompactionPlan, CompactionReport, FoldedRewrite, StagedCompaction};

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
        // Threads beyond one per shard go to the shards' own compactions
        // (a store may plan a large slot and build a new index beside its
        // data write on two); otherwise each shard's compaction takes one
        // thread of the pool.
        let per_shard = (threads / staged.len().max(1)).max(1);
        let staged: Vec<(usize, StagedCompaction<'_>)> = staged
            .into_iter()
            .map(|(i, st)| (i, st.with_threads(per_shard)))
            .collect();
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
        //    planning later shards meanwhile. A shard whose cold rewrite is
        //    due (asked for, or dead space over the threshold) has its new
        //    files written on the pool as soon as its hot apply is done
        //    (nothing reads them yet); they are published in shard order
        //    once every hot apply is done.
        in_order_then(
            pool.as_ref(),
            &staged,
            |(i, st)| plan_or_fold(st, *i),
            |(i, st), planned| {
                let plan = match planned {
                    Some(Ok(Planned::Folded(folded))) => return (Kept::Folded(folded), false),
                    Some(Ok(Planned::Hot(plan))) => Ok(plan),
                    Some(Err(e)) => Err(e),
                    None => Err(panicked(*i)),
                };
                let applied = plan.and_then(|p| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| st.apply_hot(p)))
                        .map_err(|_| panicked(*i))?
                        .map_err(EngineError::shard(*i))
                });
                let due = applied.is_ok() && st.cold_due();
                (Kept::Applied(applied), due)
            },
            |(i, st)| st.prepare_cold().map_err(EngineError::shard(*i)),
            |(i, st), kept, rewrite| {
                let result = match (kept, rewrite) {
                    (Kept::Folded(folded), _) => {
                        st.finish_folded(folded).map_err(EngineError::shard(*i))
                    }
                    (Kept::Applied(Ok(mut report)), Some(rewrite)) => {
                        rewrite.unwrap_or_else(|| Err(panicked(*i))).and_then(|rw| {
                            report.bytes_read += rw.bytes_read();
                            report.bytes_written += rw.bytes_written();
                            report.reclaimed_bytes =
                                st.finish_cold(rw).map_err(EngineError::shard(*i))?;
                            report.cold = true;
                            Ok(report)
                        })
                    }
                    (Kept::Applied(applied), _) => applied,
                };
                results.push((*i, result));
            },
        );
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

/// A shard's plan, or the cold rewrite it went straight into.
enum Planned<'s> {
    /// To apply hot, on the calling thread in shard order.
    Hot(CompactionPlan<'s>),
    /// Folded into a prepared rewrite, to publish in shard order.
    Folded(FoldedRewrite<'s>),
}

/// What phase 3 keeps of a shard until the rewrites are published.
enum Kept<'s> {
    /// The hot apply's outcome (a rewrite may follow).
    Applied(Result<CompactionReport>),
    /// A rewrite with the shard's plan folded in.
    Folded(FoldedRewrite<'s>),
}

/// Shard `shard`'s plan; when a cold rewrite is certain before it is
/// applied, the plan goes straight into the rewrite, prepared here on the
/// pool as the shard's own compaction would (results the rewrite would
/// copy at once are never written in place or appended). A panic (in a
/// merge operator?) is made an error.
fn plan_or_fold<'s>(st: &'s StagedCompaction<'_>, shard: usize) -> Result<Planned<'s>> {
    let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let plan = st.plan()?;
        if st.folds_into_cold(&plan) {
            st.prepare_folded(plan).map(Planned::Folded)
        } else {
            Ok(Planned::Hot(plan))
        }
    }));
    match planned {
        Ok(r) => r.map_err(EngineError::shard(shard)),
        Err(_) => Err(panicked(shard)),
    }
}

/// Runs `f`, catching a panic (`None`).
fn caught<X>(f: impl FnOnce() -> X) -> Option<X> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Two stages over `items`. `first` runs on `pool`, and `between` takes
/// each result on the calling thread in the items' order, as soon as it
/// and every earlier one are ready: `between` of item 0 overlaps `first` on
/// the later items. `between` returns what to keep for the item and
/// whether `second` runs for it; if so, `second` starts on the pool at once.
/// Once every `between` has run, `after` takes each item's kept value and
/// `second` result on the calling thread, in the items' order (`None`:
/// `second` was not asked for; `Some(None)`: it panicked). `None` in
/// `between`: that item's `first` panicked. Without a pool, each stage
/// runs in turn on the calling thread.
fn in_order_then<'a, T: Sync, R: Send, M, S: Send>(
    pool: Option<&rayon::ThreadPool>,
    items: &'a [T],
    first: impl Fn(&'a T) -> R + Sync,
    mut between: impl FnMut(&'a T, Option<R>) -> (M, bool),
    second: impl Fn(&'a T) -> S + Sync,
    mut after: impl FnMut(&'a T, M, Option<Option<S>>),
) {
    let Some(pool) = pool else {
        let kept: Vec<(M, bool)> = items
            .iter()
            .map(|item| between(item, caught(|| first(item))))
            .collect();
        for (item, (kept, wanted)) in items.iter().zip(kept) {
            after(item, kept, wanted.then(|| caught(|| second(item))));
        }
        return;
    };
    let (first_tx, first_rx) = crossbeam::channel::unbounded::<(usize, Option<R>)>();
    let (second_tx, second_rx) = crossbeam::channel::unbounded::<(usize, Option<S>)>();
    let (first, second) = (&first, &second);
    pool.in_place_scope(|scope| {
        for (pos, item) in items.iter().enumerate() {
            let tx = first_tx.clone();
            // The receiver lives until every item is consumed.
            scope.spawn(move |_| drop(tx.send((pos, caught(|| first(item))))));
        }
        drop(first_tx);
        let mut ready: Vec<Option<Option<R>>> = items.iter().map(|_| None).collect();
        let mut kept = Vec::with_capacity(items.len());
        for (pos, item) in items.iter().enumerate() {
            while ready[pos].is_none() {
                match first_rx.recv() {
                    Ok((at, r)) => ready[at] = Some(r),
                    // Every sender is gone: no result will come for `pos`.
                    Err(_) => break,
                }
            }
            let (keep, wanted) = between(item, ready[pos].take().flatten());
            if wanted {
                let tx = second_tx.clone();
                scope.spawn(move |_| drop(tx.send((pos, caught(|| second(item))))));
            }
            kept.push((keep, wanted));
        }
        drop(second_tx);
        let mut done: Vec<Option<Option<S>>> = items.iter().map(|_| None).collect();
        for (pos, (item, (keep, wanted))) in items.iter().zip(kept).enumerate() {
            if !wanted {
                after(item, keep, None);
                continue;
            }
            while done[pos].is_none() {
                match second_rx.recv() {
                    Ok((at, s)) => done[at] = Some(s),
                    Err(_) => break,
                }
            }
            after(item, keep, Some(done[pos].take().flatten()));
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::in_order_then;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a pool")
    }

    type Seen = Vec<(u32, Option<u32>, Option<Option<u32>>)>;

    #[test]
    fn results_are_consumed_in_item_order_with_or_without_a_pool() {
        let items: Vec<u32> = (0..40).collect();
        for pool in [None, Some(pool(2)), Some(pool(3))] {
            let mut between = Vec::new();
            let mut seen: Seen = Vec::new();
            in_order_then(
                pool.as_ref(),
                &items,
                |x| x * 10,
                |x, r| {
                    between.push(*x);
                    (r, x % 3 == 0)
                },
                |x| x * 100,
                |x, r, s| seen.push((*x, r, s)),
            );
            assert_eq!(between, items);
            let want: Seen = items
                .iter()
                .map(|x| (*x, Some(x * 10), (x % 3 == 0).then_some(Some(x * 100))))
                .collect();
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn a_panicking_item_gives_none_and_the_others_still_come() {
        let items: Vec<u32> = (0..8).collect();
        for pool in [None, Some(pool(2))] {
            let mut seen: Seen = Vec::new();
            in_order_then(
                pool.as_ref(),
                &items,
                |x| {
                    assert_ne!(*x, 3, "item 3 panics in the first stage");
                    *x
                },
                |_, r| (r, true),
                |x| {
                    assert_ne!(*x, 6, "item 6 panics in the second stage");
                    *x
                },
                |x, r, s| seen.push((*x, r, s)),
            );
            let want: Seen = items
                .iter()
                .map(|x| (*x, (*x != 3).then_some(*x), Some((*x != 6).then_some(*x))))
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
        in_order_then(
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
                ((), false)
            },
            |_| (),
            |_, (), s| assert!(s.is_none()),
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

    #[test]
    fn an_items_second_stage_runs_while_later_items_are_consumed() {
        // Item 3's consume waits for item 0's second stage: if second
        // stages started only after every consume, it would wait in vain.
        let (tx, rx) = crossbeam::channel::bounded::<()>(1);
        let items: Vec<u32> = (0..4).collect();
        let mut heard = None;
        in_order_then(
            Some(&pool(2)),
            &items,
            |x| *x,
            |x, _| {
                if *x == 3 {
                    heard = Some(rx.recv_timeout(Duration::from_secs(30)).is_ok());
                }
                ((), *x == 0)
            },
            |x| {
                if *x == 0 {
                    tx.send(()).expect("item 3 listens");
                }
            },
            |_, (), _| {},
        );
        assert_eq!(heard, Some(true));
    }
}

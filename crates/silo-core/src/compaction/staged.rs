//! A compaction in stages, for the sharded engine: [`crate::Silo::stage_compaction`]
//! freezes the log slot (holding the store's gate), [`StagedCompaction::plan`]
//! computes what to write from immutable inputs (the frozen slot, the data
//! file, the index) and may run on any thread while other stores plan
//! theirs, and [`StagedCompaction::apply`] writes it and retires the slot.
//! `Silo::compact` is the same three steps in a row. The writing step comes
//! in parts for a caller that runs many stores' at once: a hot apply, then
//! a cold rewrite prepared (on any thread) and published; or, when the
//! rewrite is certain before the plan is applied, the plan folded straight
//! into a rewrite prepared on any thread and published.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use silo_io::map::ReadMap;

use crate::compaction::plan::Plan;
use crate::compaction::{CompactionReport, Frozen, cold, policy};
use crate::error::{Error, Result};
use crate::reentry;
use crate::store::{BusyGuard, Core, GateWrite};

/// A hot compaction whose log slot is frozen, between its stages. The
/// store's compaction gate is held until it drops: iterators, snapshots,
/// bulk writers and other compactions of the store wait; reads and writes
/// go on.
pub struct StagedCompaction<'a> {
    core: &'a Core,
    gate: GateWrite<'a>,
    _busy: BusyGuard<'a>,
    /// The frozen slot and its map; `None` when there was nothing to fold
    /// and only a cold rewrite was staged.
    frozen: Option<(Frozen, ReadMap)>,
    cold: bool,
    start: Instant,
    applied: AtomicBool,
    /// Threads its plan, apply and rewrite may use.
    threads: usize,
}

impl Drop for StagedCompaction<'_> {
    fn drop(&mut self) {
        // A long slot's file may be freed with its last references: not on
        // the thread that ends the compaction.
        if let Some((frozen, map)) = self.frozen.take() {
            self.core.release_frozen(frozen, map);
        }
        // Only now: in the sharded engine every shard's compaction is
        // published when the staged compactions drop.
        self.core.start_after_syncs();
    }
}

impl std::fmt::Debug for StagedCompaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedCompaction")
            .field("dir", &self.core.dir)
            .field(
                "through_seq",
                &self.frozen.as_ref().map(|(f, _)| f.through_seq),
            )
            .finish_non_exhaustive()
    }
}

/// What a [`StagedCompaction`] will write: computed by
/// [`StagedCompaction::plan`], consumed by [`StagedCompaction::apply`].
pub struct CompactionPlan<'a> {
    plan: Plan<'a>,
}

impl std::fmt::Debug for CompactionPlan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactionPlan")
            .field("ops", &self.plan.ops)
            .field("writes", &self.plan.writes.len())
            .field("deletes", &self.plan.deletes.len())
            .finish_non_exhaustive()
    }
}

impl CompactionPlan<'_> {
    /// Log operations the plan folds.
    pub fn ops(&self) -> u64 {
        self.plan.ops
    }
}

impl Core {
    /// See [`crate::Silo::stage_compaction`].
    pub(crate) fn stage_compaction(&self, cold: bool) -> Result<Option<StagedCompaction<'_>>> {
        self.check_poisoned()?;
        reentry::refuse_held(self.id, "stage_compaction")?;
        let start = Instant::now();
        let gate = self.gate.write();
        self.stage_locked(gate, cold, start)
    }

    /// See [`crate::Silo::try_stage_compaction`].
    pub(crate) fn try_stage_compaction(&self, cold: bool) -> Result<Option<StagedCompaction<'_>>> {
        self.check_poisoned()?;
        reentry::refuse_held(self.id, "try_stage_compaction")?;
        let start = Instant::now();
        match self.gate.try_write() {
            Some(gate) => self.stage_locked(gate, cold, start),
            None => Ok(None),
        }
    }

    fn stage_locked<'a>(
        &'a self,
        gate: GateWrite<'a>,
        cold: bool,
        start: Instant,
    ) -> Result<Option<StagedCompaction<'a>>> {
        let busy = self.compacting.enter();
        let frozen = match self.freeze_locked(&gate)? {
            Some(frozen) => {
                let map = ReadMap::new(&frozen.file)?;
                Some((frozen, map))
            }
            // Nothing to fold: staged only for a cold rewrite that is asked
            // for or due.
            None if cold || policy::wants_cold(&self.policy_input(), &self.opts.thresholds) => None,
            None => return Ok(None),
        };
        Ok(Some(StagedCompaction {
            core: self,
            gate,
            _busy: busy,
            frozen,
            cold,
            start,
            applied: AtomicBool::new(false),
            threads: 1,
        }))
    }
}

impl StagedCompaction<'_> {
    /// Lets this compaction use up to `threads` threads (default 1): with
    /// two or more, a large slot is planned on two threads and a new index
    /// is built on a second thread while the data is written. A caller
    /// that compacts several stores at once on a pool of its own keeps the
    /// default, so that each store's compaction takes one of the pool's
    /// threads. (Writes past the page cache also go through a thread of
    /// their own, which waits on the device rather than computing.)
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Computes the plan: read-only, touching no file and no shared state
    /// of the store but to read it, so plans of many stores may be computed
    /// at once. A merge operand error is returned here or by `apply`, and
    /// leaves the slot frozen for a later compaction.
    pub fn plan(&self) -> Result<CompactionPlan<'_>> {
        if self.applied.load(Ordering::Acquire) {
            return Err(Error::InvalidOptions {
                name: "StagedCompaction::plan",
                reason: "the compaction was already applied".to_owned(),
            });
        }
        let plan = match &self.frozen {
            // The threads it was given (one by default: the engine plans
            // many shards in parallel).
            Some((frozen, map)) => self.core.plan_frozen(frozen, map, self.threads)?,
            None => Plan::default(),
        };
        Ok(CompactionPlan { plan })
    }

    /// Writes `plan` (journal, records, manifest, index, each synced in
    /// turn), retires the frozen slot, then rewrites the data file if the
    /// compaction was staged as cold or its dead space calls for it; when
    /// the rewrite is certain before the plan is applied
    /// ([`StagedCompaction::folds_into_cold`]), the plan goes straight into
    /// it. Once.
    pub fn apply(&self, plan: CompactionPlan<'_>) -> Result<CompactionReport> {
        if self.folds_into_cold(&plan) {
            let folded = self.prepare_folded(plan)?;
            return self.finish_folded(folded);
        }
        let mut report = self.apply_hot(plan)?;
        if self.cold_due() {
            let rewrite = self.prepare_cold()?;
            report.bytes_read += rewrite.bytes_read();
            report.bytes_written += rewrite.bytes_written();
            report.reclaimed_bytes = self.finish_cold(rewrite)?;
            report.cold = true;
        }
        report.duration = self.start.elapsed();
        Ok(report)
    }

    /// [`StagedCompaction::apply`] without the cold rewrite, which the
    /// caller may then run in two steps ([`StagedCompaction::prepare_cold`],
    /// [`StagedCompaction::finish_cold`]). Once.
    pub fn apply_hot(&self, plan: CompactionPlan<'_>) -> Result<CompactionReport> {
        if self.applied.swap(true, Ordering::AcqRel) {
            return Err(Error::InvalidOptions {
                name: "StagedCompaction::apply",
                reason: "the compaction was already applied".to_owned(),
            });
        }
        let outcome = match &self.frozen {
            Some((frozen, _)) => {
                self.core
                    .apply_frozen(frozen, plan.plan, self.start, self.threads)
            }
            None => Ok(CompactionReport::default()),
        };
        self.note(&outcome);
        outcome
    }

    /// Whether a cold rewrite is due after the hot apply: staged cold, or
    /// the dead space over the threshold.
    pub fn cold_due(&self) -> bool {
        let core = self.core;
        self.cold || policy::wants_cold(&core.policy_input(), &core.opts.thresholds)
    }

    /// Writes the store's live records into a new data file and index and
    /// syncs them, unpublished: reads the store and changes nothing of it,
    /// so several stores' rewrites may be prepared at once. The records
    /// are copied into the data file on a thread of its own, which mostly
    /// waits for the device: this returns once the index is built, and
    /// [`StagedCompaction::finish_cold`] waits for the copy (and returns
    /// its error, publishing nothing, if it failed). After
    /// [`StagedCompaction::apply_hot`].
    pub fn prepare_cold(&self) -> Result<ColdRewrite> {
        if !self.applied.load(Ordering::Acquire) {
            return Err(Error::InvalidOptions {
                name: "StagedCompaction::prepare_cold",
                reason: "apply the hot compaction first".to_owned(),
            });
        }
        let outcome =
            cold::prepare(self.core, &self.gate, None, self.threads).map(|rewrite| ColdRewrite {
                rewrite: Some(rewrite),
            });
        if let Err(e) = &outcome {
            self.core.note_compaction_error(e);
        }
        outcome
    }

    /// Publishes a prepared rewrite (manifest, then the old files go);
    /// returns the bytes of data file reclaimed.
    pub fn finish_cold(&self, mut rewrite: ColdRewrite) -> Result<u64> {
        let core = self.core;
        let Some(mut prepared) = rewrite.rewrite.take() else {
            return Ok(0);
        };
        // The new data file is still being written behind: a failure there
        // publishes nothing and leaves the store as it was.
        if let Err(e) = prepared.written() {
            prepared.discard();
            core.note_compaction_error(&e);
            return Err(e);
        }
        let outcome = cold::finish(core, &self.gate, prepared).map_err(|e| core.poison(e));
        self.note(&outcome);
        outcome
    }

    /// Whether `plan` should go straight into a cold rewrite, as a store's
    /// own compaction does: the compaction was staged cold, the dead space
    /// the plan would leave behind if applied calls for a rewrite, or its
    /// in-place results are half the live record bytes or more (written
    /// in place, each would be written twice: journal, then record).
    /// Then [`StagedCompaction::prepare_folded`] and
    /// [`StagedCompaction::finish_folded`] take the place of the hot apply
    /// and the rewrite after it: results the rewrite would copy at once
    /// are never written in place or appended, nor indexed, nor journaled.
    pub fn folds_into_cold(&self, plan: &CompactionPlan<'_>) -> bool {
        let core = self.core;
        self.frozen.is_some() && (self.cold || core.folds_straight_into_cold(&plan.plan))
    }

    /// Writes the store's live records with `plan`'s results folded in
    /// into a new data file and index and syncs them, unpublished. Like
    /// [`StagedCompaction::prepare_cold`] it reads the store and changes
    /// nothing of it, so several stores' rewrites may be prepared at once,
    /// and copies the live records behind; on an error (here or in
    /// [`StagedCompaction::finish_folded`]'s wait for the copy) the slot
    /// stays frozen for a later compaction. Instead of
    /// [`StagedCompaction::apply_hot`], once.
    pub fn prepare_folded<'p>(&self, plan: CompactionPlan<'p>) -> Result<FoldedRewrite<'p>> {
        let Some((frozen, _)) = &self.frozen else {
            return Err(Error::InvalidOptions {
                name: "StagedCompaction::prepare_folded",
                reason: "the compaction has no log slot to fold".to_owned(),
            });
        };
        if self.applied.swap(true, Ordering::AcqRel) {
            return Err(Error::InvalidOptions {
                name: "StagedCompaction::prepare_folded",
                reason: "the compaction was already applied".to_owned(),
            });
        }
        let mut plan = plan.plan;
        let outcome = self
            .core
            .prepare_fold_cold(&self.gate, frozen, &mut plan, self.threads);
        match outcome {
            Ok(rewrite) => Ok(FoldedRewrite {
                plan,
                rewrite: ColdRewrite {
                    rewrite: Some(rewrite),
                },
            }),
            Err(e) => {
                self.core.note_compaction_error(&e);
                Err(e)
            }
        }
    }

    /// Publishes a rewrite from [`StagedCompaction::prepare_folded`] (one
    /// manifest names the new files and the plan's folded sequence),
    /// forgets the folded operations, retires the frozen slot and removes
    /// the old files. A failure poisons the store.
    pub fn finish_folded(&self, mut folded: FoldedRewrite<'_>) -> Result<CompactionReport> {
        let core = self.core;
        let (Some((frozen, _)), Some(mut prepared)) = (&self.frozen, folded.rewrite.rewrite.take())
        else {
            return Err(Error::InvalidOptions {
                name: "StagedCompaction::finish_folded",
                reason: "nothing prepared to publish".to_owned(),
            });
        };
        // As in `finish_cold`: the slot stays frozen for a later compaction.
        if let Err(e) = prepared.written() {
            prepared.discard();
            core.note_compaction_error(&e);
            return Err(e);
        }
        let outcome = core.finish_fold_cold(&self.gate, frozen, folded.plan, prepared, self.start);
        self.note(&outcome);
        outcome
    }

    /// Records how a step ended, as `compact` does.
    fn note<T>(&self, outcome: &Result<T>) {
        let core = self.core;
        core.mark_compacted();
        match outcome {
            Ok(_) => {
                *core
                    .last_compaction_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None
            }
            Err(e) => core.note_compaction_error(e),
        }
    }
}

/// A cold rewrite prepared by [`StagedCompaction::prepare_cold`]: a new
/// index written and synced, and a new data file being written and synced
/// on a thread of its own (publishing waits for it); not yet published.
/// Dropped unpublished, it waits for that thread and removes them (what a
/// crash leaves, the next open removes).
pub struct ColdRewrite {
    rewrite: Option<cold::Rewrite>,
}

impl ColdRewrite {
    /// Bytes of live records the rewrite read from the old data file.
    pub fn bytes_read(&self) -> u64 {
        self.rewrite.as_ref().map_or(0, |r| r.bytes_read)
    }

    /// Bytes the rewrite wrote to the new data file.
    pub fn bytes_written(&self) -> u64 {
        self.rewrite.as_ref().map_or(0, |r| r.bytes_written)
    }
}

impl Drop for ColdRewrite {
    fn drop(&mut self) {
        if let Some(rewrite) = self.rewrite.take() {
            rewrite.discard();
        }
    }
}

/// A cold rewrite with a frozen slot's plan folded in, prepared by
/// [`StagedCompaction::prepare_folded`]: new files written and synced (the
/// data file's live records behind, as in a [`ColdRewrite`]), not yet
/// published. Dropped unpublished, it removes them (what a crash leaves,
/// the next open removes) and the slot stays frozen.
pub struct FoldedRewrite<'p> {
    plan: Plan<'p>,
    rewrite: ColdRewrite,
}

impl FoldedRewrite<'_> {
    /// Bytes of live records the rewrite read from the old data file.
    pub fn bytes_read(&self) -> u64 {
        self.rewrite.bytes_read()
    }

    /// Bytes the rewrite wrote to the new data file.
    pub fn bytes_written(&self) -> u64 {
        self.rewrite.bytes_written()
    }
}

impl std::fmt::Debug for FoldedRewrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoldedRewrite")
            .field("ops", &self.plan.ops)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ColdRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdRewrite").finish_non_exhaustive()
    }
}

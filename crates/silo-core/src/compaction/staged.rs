//! A compaction in stages, for the sharded engine: [`crate::Silo::stage_compaction`]
//! freezes the log slot (holding the store's gate), [`StagedCompaction::plan`]
//! computes what to write from immutable inputs (the frozen slot, the data
//! file, the index) and may run on any thread while other stores plan
//! theirs, and [`StagedCompaction::apply`] writes it and retires the slot.
//! `Silo::compact` is the same three steps in a row.

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
    frozen: Frozen,
    map: ReadMap,
    cold: bool,
    start: Instant,
    applied: AtomicBool,
}

impl std::fmt::Debug for StagedCompaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedCompaction")
            .field("dir", &self.core.dir)
            .field("through_seq", &self.frozen.through_seq)
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
        let Some(frozen) = self.freeze_locked(&gate)? else {
            return Ok(None);
        };
        let map = ReadMap::new(&frozen.file)?;
        Ok(Some(StagedCompaction {
            core: self,
            gate,
            _busy: busy,
            frozen,
            map,
            cold,
            start,
            applied: AtomicBool::new(false),
        }))
    }
}

impl StagedCompaction<'_> {
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
        let plan = self.core.plan_frozen(&self.frozen, &self.map)?;
        Ok(CompactionPlan { plan })
    }

    /// Writes `plan` (journal, records, manifest, index, each synced in
    /// turn), retires the frozen slot, then rewrites the data file if the
    /// compaction was staged as cold or its dead space calls for it. Once.
    pub fn apply(&self, plan: CompactionPlan<'_>) -> Result<CompactionReport> {
        if self.applied.swap(true, Ordering::AcqRel) {
            return Err(Error::InvalidOptions {
                name: "StagedCompaction::apply",
                reason: "the compaction was already applied".to_owned(),
            });
        }
        let core = self.core;
        let outcome = core
            .apply_frozen(&self.frozen, plan.plan, self.start)
            .and_then(|mut report| {
                if self.cold || policy::wants_cold(&core.policy_input(), &core.opts.thresholds) {
                    report.reclaimed_bytes =
                        cold::run(core, &self.gate).map_err(|e| core.poison(e))?;
                    report.cold = true;
                }
                report.duration = self.start.elapsed();
                Ok(report)
            });
        core.mark_compacted();
        match &outcome {
            Ok(_) => {
                *core
                    .last_compaction_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None
            }
            Err(e) => core.note_compaction_error(e),
        }
        outcome
    }
}

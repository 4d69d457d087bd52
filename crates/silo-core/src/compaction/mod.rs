//! Compaction: folding the log into the data file and index (hot), and
//! rewriting the data file without its dead space (cold).
//!
//! Hot compaction freezes the active log slot (writers move to the other
//! slot without waiting), computes a plan read-only (`plan.rs`), applies it
//! in strict phases (`apply.rs`), then retires the frozen slot. Compactions
//! are serialized by the store's gate; readers never wait for them.

pub(crate) mod after_syncs;
pub(crate) mod apply;
pub(crate) mod cold;
pub(crate) mod journal;
pub(crate) mod key_groups;
pub(crate) mod plan;
pub mod policy;
pub(crate) mod runs;
pub(crate) mod sink;
pub(crate) mod staged;
pub(crate) mod write_behind;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use silo_format::HEADER_LEN;
use silo_io::map::ReadMap;

use silo_io::file::SiloFile;

use crate::compaction::after_syncs::{AfterSyncs, Replaced};
use crate::compaction::plan::Plan;
use crate::error::Result;
use crate::log::slot::LogSlot;
use crate::log::sync_both;
use crate::reentry;
use crate::store::{Core, GateWrite};

/// What a call to [`crate::Silo::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Log operations folded into the data file.
    pub ops_folded: u64,
    /// Records rewritten in place.
    pub in_place: u64,
    /// Records appended to the data file.
    pub appended: u64,
    /// Keys removed from the index.
    pub deleted: u64,
    /// Bytes written to data files: the hot part's records and tombstones,
    /// and a cold rewrite's whole new data file.
    pub bytes_written: u64,
    /// Bytes read: the frozen log slot's frames, the stored records the
    /// plan read (to fold merges into or to place a write), and the live
    /// records a cold rewrite copied.
    pub bytes_read: u64,
    /// Write system calls those bytes took.
    pub write_syscalls: u64,
    /// Bytes of the journal written before records are rewritten in place
    /// (those records again, each in a frame).
    pub journal_bytes: u64,
    /// Of `bytes_written` and `journal_bytes`, the bytes written past the
    /// page cache (`O_DIRECT`: runs of 4 MiB or more of new records, and
    /// journals as long, where the file system takes it).
    pub bytes_direct: u64,
    /// Log bytes retired.
    pub log_bytes_retired: u64,
    /// Whether a cold compaction (full rewrite) ran.
    pub cold: bool,
    /// Dead bytes reclaimed by the cold compaction.
    pub reclaimed_bytes: u64,
    /// Whether read-only opens in other processes had the files mapped, so
    /// that the hot part rewrote nothing in place: results were appended,
    /// the index written anew and the log slot replaced by a new file.
    pub beside_readers: bool,
    /// Whether the frozen slot was planned while it was being synced (an
    /// asked-for compaction of a slot with many unsynced bytes, nothing
    /// appended meanwhile; see `Silo::compact`).
    pub planned_while_syncing: bool,
    /// Wall time.
    pub duration: Duration,
}

/// A frozen log slot waiting to be folded.
pub(crate) struct Frozen {
    pub(crate) file: Arc<SiloFile>,
    /// The slot's end (header included).
    pub(crate) end: usize,
    pub(crate) base_seq: u64,
    pub(crate) through_seq: u64,
    pub(crate) generation: u64,
}

impl Core {
    /// See [`crate::Silo::compact`].
    pub(crate) fn compact(&self) -> Result<CompactionReport> {
        self.check_poisoned()?;
        reentry::refuse_held(self.id, "compact")?;
        let gate = self.gate.write();
        self.compact_locked(&gate, Early::Plan)
    }

    /// See [`crate::Silo::compact_cold`].
    pub(crate) fn compact_cold(&self) -> Result<CompactionReport> {
        self.check_poisoned()?;
        reentry::refuse_held(self.id, "compact_cold")?;
        let gate = self.gate.write();
        self.fold_locked(&gate, Cold::Always, Early::Plan)
    }

    /// Hot compaction only (used on open and close).
    pub(crate) fn compact_hot(&self) -> Result<CompactionReport> {
        let gate = self.gate.write();
        self.fold_locked(&gate, Cold::Never, Early::Plan)
    }

    /// Hot, then cold if the dead space calls for it.
    pub(crate) fn compact_locked(
        &self,
        gate: &GateWrite<'_>,
        early: Early,
    ) -> Result<CompactionReport> {
        let outcome = self.fold_locked(gate, Cold::IfDue, early);
        self.mark_compacted();
        *self
            .last_compaction_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = outcome.as_ref().err().map(ToString::to_string);
        outcome
    }

    /// Freezes the active slot (unless a frozen one is waiting), folds it
    /// and retires it, and rewrites the data file as `cold` says. When the
    /// rewrite is certain before the fold is applied (asked for, or due
    /// once the fold's dead space is counted), the fold goes straight into
    /// the rewrite ([`Core::fold_cold`]). The caller holds the gate.
    fn fold_locked(
        &self,
        gate: &GateWrite<'_>,
        cold: Cold,
        early: Early,
    ) -> Result<CompactionReport> {
        let outcome = self.fold_and_rewrite(gate, cold, early);
        self.start_after_syncs();
        outcome
    }

    /// [`Core::fold_locked`] but for what waits until its syncs are done.
    ///
    /// With [`Early::Plan`], when the active slot holds many unsynced bytes
    /// its frames are planned while the presync writes them (see
    /// [`Core::plan_while_presyncing`]); the plan is kept if the slot then
    /// frozen holds exactly those frames, and made anew otherwise.
    fn fold_and_rewrite(
        &self,
        gate: &GateWrite<'_>,
        cold: Cold,
        early: Early,
    ) -> Result<CompactionReport> {
        let start = Instant::now();
        let _busy = self.compacting.enter();
        let threads = self.compaction_threads();
        let prefix = match early {
            Early::Plan => self.unsynced_prefix(),
            Early::No => None,
        };
        let early_map = match &prefix {
            Some(p) => ReadMap::new(&p.file)
                .ok()
                .filter(|m| m.as_slice().len() >= p.end),
            None => None,
        };
        let early_plan = match (&prefix, &early_map) {
            (Some(prefix), Some(map)) => {
                let planned = self.plan_while_presyncing(prefix, map, threads)?;
                // Tests append here to make the frozen slot differ.
                silo_io::fault::hold_point(&self.dir, HOLD_EARLY_PLAN);
                planned.map(|plan| (plan, map))
            }
            _ => None,
        };
        let mut report = match self.freeze_locked(gate)? {
            None => CompactionReport::default(),
            Some(frozen) => {
                let same = prefix.as_ref().is_some_and(|p| p.holds_as(&frozen));
                let early_plan = match early_plan {
                    Some(planned) if same => Some(planned),
                    other => {
                        drop(other);
                        None
                    }
                };
                let used_early = early_plan.is_some();
                let (folded, late_map) = match early_plan {
                    Some((plan, map)) => (
                        self.fold_frozen(gate, &frozen, map, Some(plan), cold, start, threads),
                        None,
                    ),
                    None => {
                        let map = ReadMap::new(&frozen.file)?;
                        let folded =
                            self.fold_frozen(gate, &frozen, &map, None, cold, start, threads);
                        (folded, Some(map))
                    }
                };
                if let Some(map) = late_map.or(early_map) {
                    self.release_frozen(frozen, map);
                }
                match folded? {
                    Folded::Hot(report) => CompactionReport {
                        planned_while_syncing: used_early,
                        ..report
                    },
                    Folded::Cold(report) => {
                        return Ok(CompactionReport {
                            planned_while_syncing: used_early,
                            ..report
                        });
                    }
                }
            }
        };
        let rewrite = match cold {
            Cold::Never => false,
            Cold::Always => true,
            Cold::IfDue => policy::wants_cold(&self.policy_input(), &self.opts.thresholds),
        };
        if rewrite {
            cold::run(self, gate, &mut report, threads).map_err(|e| self.poison(e))?;
        }
        report.duration = start.elapsed();
        Ok(report)
    }

    /// The plan of a frozen slot, applied: hot, or straight into a cold
    /// rewrite when that is certain (then nothing is left to do).
    #[allow(
        clippy::too_many_arguments,
        reason = "the fold's inputs: its slot, map, plan if made early, kind, start and threads"
    )]
    fn fold_frozen<'m>(
        &self,
        gate: &GateWrite<'_>,
        frozen: &Frozen,
        map: &'m ReadMap,
        planned: Option<Plan<'m>>,
        cold: Cold,
        start: Instant,
        threads: usize,
    ) -> Result<Folded> {
        // The store's own compaction may use both halves of a two-core
        // machine (unless its options say fewer); the engine's staged one
        // parallelizes across shards instead.
        let plan = match planned {
            Some(plan) => plan,
            None => self.plan_frozen(frozen, map, threads)?,
        };
        let straight = match cold {
            Cold::Never => false,
            Cold::Always => true,
            Cold::IfDue => self.folds_straight_into_cold(&plan),
        };
        if straight {
            return self
                .fold_cold(gate, frozen, plan, start, threads)
                .map(Folded::Cold);
        }
        self.apply_frozen(frozen, plan, start, threads)
            .map(Folded::Hot)
    }

    /// Whether `plan`, unless asked otherwise, goes straight into a cold
    /// rewrite: the dead space it would leave calls for one anyway, or its
    /// in-place results cost more than a rewrite
    /// ([`policy::rewrite_instead_of_in_place`]).
    pub(crate) fn folds_straight_into_cold(&self, plan: &Plan<'_>) -> bool {
        let t = &self.opts.thresholds;
        policy::wants_cold(&self.policy_input_after(plan), t)
            || policy::rewrite_instead_of_in_place(
                plan.sizes.in_place,
                self.policy_input().live_bytes,
                t,
            )
    }

    /// The policy's input as it will be once `plan` is applied in place:
    /// results that outgrow their records, and deleted records, become dead
    /// space.
    pub(crate) fn policy_input_after(&self, plan: &Plan<'_>) -> policy::PolicyInput {
        let mut input = self.policy_input();
        debug_assert!(plan.sizes_hold());
        let (added, moved) = (plan.sizes.appended, plan.sizes.moved);
        input.live_bytes = (input.live_bytes + added).saturating_sub(moved);
        input.dead_bytes += moved;
        input
    }

    /// A hot and a cold compaction in one: the plan of the frozen slot is
    /// folded into a rewrite of the data file and index (`cold::prepare`
    /// with the plan), published with the plan's folded sequence by one
    /// manifest, and the slot retired. Nothing is written over the old
    /// files, so it needs no journal and suits readers in other processes.
    fn fold_cold(
        &self,
        gate: &GateWrite<'_>,
        frozen: &Frozen,
        mut plan: Plan<'_>,
        start: Instant,
        threads: usize,
    ) -> Result<CompactionReport> {
        let mut rewrite = self
            .prepare_fold_cold(gate, frozen, &mut plan, threads)
            .map_err(|e| self.poison(e))?;
        if let Err(e) = rewrite.written() {
            rewrite.discard();
            return Err(self.poison(e));
        }
        self.finish_fold_cold(gate, frozen, plan, rewrite, start)
    }

    /// The first half of [`Core::fold_cold`]: a new data file and index
    /// holding the live records with `plan`'s results folded in, synced and
    /// not yet published. Reads the store and changes nothing of it: on an
    /// error the slot stays frozen for a later compaction.
    pub(crate) fn prepare_fold_cold(
        &self,
        gate: &GateWrite<'_>,
        frozen: &Frozen,
        plan: &mut Plan<'_>,
        threads: usize,
    ) -> Result<cold::Rewrite> {
        self.refuse_blocking_operand(plan, frozen.through_seq)?;
        cold::prepare(self, gate, Some(plan), threads)
    }

    /// The second half of [`Core::fold_cold`]: publishes `rewrite` with
    /// `plan`'s folded sequence, forgets the folded operations and retires
    /// the frozen slot. A failure poisons the store.
    pub(crate) fn finish_fold_cold(
        &self,
        gate: &GateWrite<'_>,
        frozen: &Frozen,
        plan: Plan<'_>,
        rewrite: cold::Rewrite,
        start: Instant,
    ) -> Result<CompactionReport> {
        let (read, written) = (rewrite.bytes_read, rewrite.bytes_written);
        let direct = rewrite.direct_bytes();
        let reclaimed_bytes =
            cold::finish_folded(self, gate, rewrite, Some(&plan)).map_err(|e| self.poison(e))?;
        apply::forget_folded(self, &plan);
        let mut report = CompactionReport {
            ops_folded: plan.ops,
            appended: plan.writes.len() as u64,
            deleted: plan.deletes.len() as u64,
            bytes_written: written,
            bytes_direct: direct,
            bytes_read: plan.bytes_read + read,
            log_bytes_retired: (frozen.end - HEADER_LEN) as u64,
            cold: true,
            reclaimed_bytes,
            ..CompactionReport::default()
        };
        let superseded = !plan.refused.is_empty();
        plan.release();
        if superseded {
            self.log.sync_active().map_err(|e| self.poison(e))?;
        }
        let in_place = self
            .lock
            .try_rewrite_in_place()
            .map_err(|e| self.poison(e.into()))?;
        report.beside_readers = self.retire_frozen(in_place)?;
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.mark_compacted();
        report.duration = start.elapsed();
        Ok(report)
    }

    /// Step 1 of a hot compaction: freezes the active slot (unless a frozen
    /// one is waiting) and makes it durable. `None`: nothing to fold. The
    /// caller holds the gate.
    pub(crate) fn freeze_locked(&self, _gate: &GateWrite<'_>) -> Result<Option<Frozen>> {
        // Sync the active slot before freezing it, outside the log mutex, so
        // the sync under the mutex below has little left to write.
        let presync = {
            let st = self.log.lock();
            (!st.frozen && !st.active().is_empty()).then(|| Arc::clone(&st.active().file))
        };
        if let Some(file) = presync
            && let Err(e) = file.sync_data()
        {
            self.log.commit.fail(e.to_string());
            return Err(self.poison(e.into()));
        }
        let mut st = self.log.lock();
        if st.frozen {
            // Left frozen by an earlier compaction or found at open (its
            // bytes may be in the page cache only, after a process kill):
            // durable before anything is applied from it, as below.
            let frozen = 1 - st.active;
            if st.slots[frozen].synced_end < st.slots[frozen].end {
                st.slots[frozen]
                    .file
                    .sync_data()
                    .map_err(|e| self.poison(e.into()))?;
                st.slots[frozen].synced_end = st.slots[frozen].end;
            }
        } else {
            if st.active().is_empty() {
                return Ok(None);
            }
            let (frozen_file, last, restamped) = st.rotate().map_err(|e| self.poison(e))?;
            // The frozen slot is durable before anything is applied from
            // it, whatever the durability: apply makes its results durable
            // piece by piece (journal, records, index), and after a power
            // cut in between, replaying the slot must restore whole
            // batches, not leave some of their keys applied and the rest
            // lost. It is synced under the mutex so that group commit
            // never marks the new slot's writes durable before the old
            // slot's, and no frame of the new slot reaches the disk before
            // the old slot's last one (a later write kept, an earlier one
            // lost). The new slot's header is synced under it too (a frame
            // that reached the disk under the old header would replay with
            // the old identity). Both at once (`sync_both`).
            let (restamp_synced, frozen_synced) = sync_both(&restamped, &frozen_file);
            if let Err(e) = frozen_synced.and(restamp_synced) {
                self.log.commit.fail(e.to_string());
                return Err(self.poison(e.into()));
            }
            let frozen = 1 - st.active;
            st.slots[frozen].synced_end = st.slots[frozen].end;
            self.log.commit.mark_durable(last);
        }
        Ok(Some(Frozen::of(st.other())))
    }

    /// Step 2: the plan for the frozen slot, read-only (many stores may
    /// compute theirs in parallel). A merge error leaves the slot frozen
    /// and the store as it was.
    pub(crate) fn plan_frozen<'m>(
        &self,
        frozen: &Frozen,
        map: &'m ReadMap,
        threads: usize,
    ) -> Result<Plan<'m>> {
        let body = map
            .as_slice()
            .get(HEADER_LEN..frozen.end)
            .unwrap_or_default();
        let tables = self.tables();
        plan::compute(
            self,
            &tables,
            body,
            frozen.base_seq,
            frozen.through_seq,
            threads,
        )
    }

    /// Step 3: applies `plan` (on up to `threads` threads) and retires the
    /// frozen slot.
    pub(crate) fn apply_frozen(
        &self,
        frozen: &Frozen,
        mut plan: Plan<'_>,
        start: Instant,
        threads: usize,
    ) -> Result<CompactionReport> {
        self.refuse_blocking_operand(&mut plan, frozen.through_seq)?;
        // Apply, then retire the slot: in place if no read-only open in
        // another process has the files mapped (and none starts until the
        // slot is retired), otherwise into new files. Every in-place guard
        // is taken under the compaction gate, so no other one of this
        // process releases the byte under it.
        let in_place = self
            .lock
            .try_rewrite_in_place()
            .map_err(|e| self.poison(e.into()))?;
        let applied = apply::apply(self, &plan, frozen.generation, in_place.is_some(), threads)
            .map_err(|e| self.poison(e))?;
        let (ops_folded, superseded) = (plan.ops, !plan.refused.is_empty());
        let bytes_read = plan.bytes_read;
        plan.release();
        // The refused keys' operands vanish with the frozen slot; the newer
        // puts and deletes that supersede them must be durable first.
        if superseded {
            self.log.sync_active().map_err(|e| self.poison(e))?;
        }
        let beside_readers = self.retire_frozen(in_place)?;
        if let Some((offset, len)) = applied.readahead {
            // Readers will look for the appended records, and writing them
            // past the page cache left none cached: have the kernel read
            // them back once no sync of this compaction waits behind.
            let data = Arc::clone(&self.tables().data);
            self.after_syncs(|a| a.read_back(data, offset, len));
        }
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.mark_compacted();
        Ok(CompactionReport {
            ops_folded,
            in_place: applied.in_place,
            appended: applied.appended,
            deleted: applied.deleted,
            bytes_written: applied.bytes_written,
            journal_bytes: applied.journal.bytes,
            bytes_direct: applied.readahead.map_or(0, |(_, len)| len)
                + if applied.journal.direct {
                    applied.journal.bytes
                } else {
                    0
                },
            write_syscalls: applied.write_syscalls,
            log_bytes_retired: (frozen.end - HEADER_LEN) as u64,
            bytes_read,
            cold: false,
            reclaimed_bytes: 0,
            beside_readers,
            planned_while_syncing: false,
            duration: start.elapsed(),
        })
    }

    /// A refused operand stops the compaction (the slot stays frozen and
    /// the store as it was) unless a newer put or delete supersedes it.
    fn refuse_blocking_operand(&self, plan: &mut Plan<'_>, through_seq: u64) -> Result<()> {
        let blocking = plan.refused.iter().position(|(key, _)| {
            self.pending
                .get(*key)
                .and_then(|ops| ops.base)
                .is_none_or(|b| b.seq() <= through_seq)
        });
        match blocking {
            Some(i) => Err(plan.refused.swap_remove(i).1),
            None => Ok(()),
        }
    }

    /// Empties the frozen slot once its operations are in the data file and
    /// index: in place under `in_place` (no reader in another process),
    /// otherwise by replacing its file. Returns whether readers were there.
    fn retire_frozen(&self, in_place: Option<silo_io::lock::LockGuard<'_>>) -> Result<bool> {
        // Pending values replayed at open may still point into the frozen
        // slot's file: apply forgot them, and after this grace period no
        // reader holds one any more. Only then is the slot emptied.
        self.grace.wait();
        // The file work (truncating a possibly large slot, syncs) runs
        // outside the log mutex: writers only ever touch the active slot,
        // and the frozen one is fully synced, so no flush touches it either.
        let (file, header, number, frozen_len, allocating) = {
            let mut st = self.log.lock();
            let other = 1 - st.active;
            let frozen = &mut st.slots[other];
            (
                Arc::clone(&frozen.file),
                frozen.header,
                frozen.number,
                frozen.end,
                frozen.take_allocation(),
            )
        };
        // Space the slot asked for while it was active: allocated before
        // the file is cut, never after it.
        if let Some(allocating) = allocating {
            allocating.settle();
        }
        // Readers in other processes may hold pending values in the slot's
        // file: then a new, empty file replaces it (theirs stays whole
        // until they close), while none is opening. A long slot is replaced
        // too: cutting its file would free its blocks and cached pages here
        // (80 ms for 256 MiB), while the replaced file is freed by whoever
        // drops it last (see `release_frozen`).
        let long = frozen_len >= LONG_SLOT;
        let (replacement, new_header) = if in_place.is_some() && !long {
            let header = LogSlot::reset_file(&file, header, header.generation, header.base_seq)
                .map_err(|e| self.poison(e))?;
            (None, header)
        } else {
            // With the in-place guard held, no reader is there or opening.
            let _no_opening_reader = match in_place {
                Some(_) => None,
                None => Some(
                    self.lock
                        .exclude_opening_readers()
                        .map_err(|e| self.poison(e.into()))?,
                ),
            };
            let (file, header) =
                LogSlot::replace_file(&self.dir, number, header).map_err(|e| self.poison(e))?;
            (Some(file), header)
        };
        let beside_readers = in_place.is_none();
        drop(in_place);
        let mut st = self.log.lock();
        let other = 1 - st.active;
        let old = st.slots[other]
            .reset_done(new_header, replacement)
            .map_err(|e| self.poison(e))?;
        st.frozen = false;
        drop(st);
        // Its map (and file, if replaced) are released outside the mutex.
        drop(old);
        Ok(beside_readers)
    }
}

/// A folded slot's report: after a hot apply (a cold rewrite may follow)
/// or after a fold into a cold rewrite (the compaction is done).
enum Folded {
    Hot(CompactionReport),
    Cold(CompactionReport),
}

/// Slots of at least this many bytes are replaced by a new file when
/// retired, not cut, and their last references are dropped on a thread of
/// their own. Cutting costs about 0.3 ms a MiB here; replacing, one more
/// directory sync.
pub(crate) const LONG_SLOT: usize = 4 << 20;

impl Core {
    /// Drops a folded slot's map and file. Those of a long slot (replaced
    /// when retired, so these may be the file's last references, and
    /// closing it frees its blocks and cached pages) are let go once the
    /// compaction's syncs are done, on a thread of their own.
    pub(crate) fn release_frozen(&self, frozen: Frozen, map: ReadMap) {
        if frozen.end >= LONG_SLOT {
            self.after_syncs(|a| a.release(Replaced::Slot(frozen.file, map)));
        }
    }

    /// Leaves the work `f` adds until the compaction's syncs are done (see
    /// `after_syncs.rs`).
    pub(crate) fn after_syncs(&self, f: impl FnOnce(&mut AfterSyncs)) {
        f(&mut self.after_syncs.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Starts what the compaction left until its syncs were done. Ranges of
    /// a data file that a cold rewrite has since replaced are not read
    /// back: nothing will read them.
    pub(crate) fn start_after_syncs(&self) {
        let waiting =
            std::mem::take(&mut *self.after_syncs.lock().unwrap_or_else(|p| p.into_inner()));
        if !waiting.is_empty() {
            let current = Arc::clone(&self.tables().data);
            // Replaced files are freed in steps only when no other process
            // can have them open; if that is unknown, they are only closed.
            let readers_elsewhere = self.lock.readers_present().unwrap_or(true);
            drop(waiting.start(&current, readers_elsewhere));
        }
    }
}

/// Drops `value` on a short-lived thread of its own, so that the caller
/// does not wait for what dropping it costs (freeing many blocks, closing
/// the last descriptor of a long unlinked file). If no thread can be
/// started, it is dropped here.
pub(crate) fn drop_elsewhere<T: Send + 'static>(value: T) {
    // On failure `spawn` drops the closure, and with it the value, here.
    let _ = std::thread::Builder::new()
        .name("silo-free".to_owned())
        .spawn(move || drop(value));
}

/// Whether a compaction rewrites the data file after folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cold {
    /// Never (at open and close).
    Never,
    /// When the policy's dead-space threshold is passed.
    IfDue,
    /// Always ([`crate::Silo::compact_cold`]).
    Always,
}

/// Whether the store's own compaction plans the active slot while its
/// presync runs ([`Core::plan_while_presyncing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Early {
    /// Yes: a compaction asked for (`compact`, `compact_cold`, on open and
    /// close), when writers seldom append meanwhile.
    Plan,
    /// No: the worker's, which runs beside writers, whose appends would
    /// make the early plan wasted work most times.
    No,
}

/// The fault seam's hold point of an asked-for compaction between its
/// early plan and its freeze (tests append there, so that the slot frozen
/// is not the one planned; nothing without silo-io's `fault-injection`
/// feature).
pub const HOLD_EARLY_PLAN: &str = "core: a compaction's early plan, before its freeze";

/// Unsynced bytes in the active slot from which an asked-for compaction
/// plans the slot while it is synced (below, the sync is short).
const PLAN_WHILE_PRESYNCING_FROM: usize = 8 << 20;

impl Frozen {
    /// `slot` as it stands: its file, frames and identity.
    fn of(slot: &LogSlot) -> Frozen {
        Frozen {
            file: Arc::clone(&slot.file),
            end: slot.end,
            base_seq: slot.header.base_seq,
            through_seq: slot.next_seq().saturating_sub(1),
            generation: slot.header.generation,
        }
    }

    /// Whether `frozen` is this prefix of the active slot, frozen with
    /// nothing appended since: the same file, identity and frames.
    fn holds_as(&self, frozen: &Frozen) -> bool {
        Arc::ptr_eq(&self.file, &frozen.file)
            && (self.end, self.base_seq, self.through_seq, self.generation)
                == (
                    frozen.end,
                    frozen.base_seq,
                    frozen.through_seq,
                    frozen.generation,
                )
    }
}

impl Core {
    /// Threads the store's own compaction computes on.
    fn compaction_threads(&self) -> usize {
        self.opts
            .compaction_threads
            .unwrap_or_else(machine_threads)
            .max(1)
    }

    /// The active slot's frames as they stand, if it is not frozen and
    /// holds at least [`PLAN_WHILE_PRESYNCING_FROM`] unsynced bytes: what a
    /// freeze would take if nothing were appended first.
    fn unsynced_prefix(&self) -> Option<Frozen> {
        let st = self.log.lock();
        let active = st.active();
        (!st.frozen
            && !active.is_empty()
            && active.end.saturating_sub(active.synced_end) >= PLAN_WHILE_PRESYNCING_FROM)
            .then(|| Frozen::of(active))
    }

    /// Syncs the active slot (the presync [`Core::freeze_locked`] does
    /// first) on a thread of its own while this one plans `prefix`, its
    /// frames as they were when the sync started: the plan reads only
    /// frames that are never written again, the tables (which only a
    /// compaction changes, and this one holds the gate) and the manifest's
    /// folded sequence. Nothing of the store changes, and the freeze that
    /// follows syncs and rotates exactly as without it; the plan is used
    /// only if that freeze took exactly `prefix`. A plan that fails is
    /// dropped (the fold plans again and reports it). A failed sync fails
    /// every waiting durable writer and poisons the store, as the freeze's
    /// own does.
    fn plan_while_presyncing<'m>(
        &self,
        prefix: &Frozen,
        map: &'m ReadMap,
        threads: usize,
    ) -> Result<Option<Plan<'m>>> {
        let (synced, plan) = std::thread::scope(|s| {
            match std::thread::Builder::new()
                .name("silo-presync".to_owned())
                .spawn_scoped(s, || prefix.file.sync_data())
            {
                Ok(sync) => {
                    let plan = self.plan_frozen(prefix, map, threads).ok();
                    match sync.join() {
                        Ok(synced) => (synced, plan),
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
                Err(_) => (prefix.file.sync_data(), None),
            }
        });
        if let Err(e) = synced {
            self.log.commit.fail(e.to_string());
            return Err(self.poison(e.into()));
        }
        Ok(plan)
    }
}

/// The machine's cores as the process may use them, asked once (on Linux
/// the answer reads the cgroup's files).
fn machine_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

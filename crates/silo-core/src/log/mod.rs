//! The two-slot operations log.
//!
//! Writers append CRC frames to the active slot under one mutex. Compaction
//! freezes the active slot and writers continue in the other one without
//! waiting; the frozen slot is emptied only after what it holds is durable
//! in the data file and index. Replay order is the slots' generation order.

pub(crate) mod group_commit;
pub(crate) mod replay;
pub(crate) mod slot;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use silo_io::file::SiloFile;

use crate::error::Result;
use slot::LogSlot;

/// The log's state, behind the log mutex.
pub(crate) struct LogState {
    /// The two slots.
    pub(crate) slots: [LogSlot; 2],
    /// Which slot writers append to.
    pub(crate) active: usize,
    /// Whether the other slot holds operations not yet folded into the data file.
    pub(crate) frozen: bool,
    /// Reused buffer for encoding frames.
    pub(crate) scratch: Vec<u8>,
}

impl LogState {
    /// The slot writers append to.
    pub(crate) fn active(&self) -> &LogSlot {
        &self.slots[self.active]
    }

    /// The slot writers append to, mutably.
    pub(crate) fn active_mut(&mut self) -> &mut LogSlot {
        &mut self.slots[self.active]
    }

    /// The other slot.
    pub(crate) fn other(&self) -> &LogSlot {
        &self.slots[1 - self.active]
    }

    /// The sequence number the next frame gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.active().next_seq()
    }

    /// Log bytes in both slots.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.slots.iter().map(LogSlot::log_bytes).sum()
    }

    /// Freezes the active slot: the other (empty) slot becomes active with
    /// the next generation. Returns the frozen slot's file and its last sequence number.
    pub(crate) fn rotate(&mut self) -> Result<(Arc<SiloFile>, u64)> {
        debug_assert!(
            !self.frozen,
            "the other slot must be retired before a rotation"
        );
        let next_seq = self.next_seq();
        let generation = self.active().header.generation + 1;
        let other = 1 - self.active;
        self.slots[other].reset(generation, next_seq)?;
        let frozen_file = Arc::clone(&self.active().file);
        self.active = other;
        self.frozen = true;
        Ok((frozen_file, next_seq.saturating_sub(1)))
    }
}

/// The log: its state behind a mutex, and group commit.
pub(crate) struct Log {
    state: Mutex<LogState>,
    /// Coordinates fdatasync among `Sync` writers.
    pub(crate) commit: group_commit::GroupCommit,
}

impl Log {
    /// Wraps replayed or new slots.
    pub(crate) fn new(state: LogState) -> Log {
        let durable = state.next_seq().saturating_sub(1);
        Log {
            state: Mutex::new(state),
            commit: group_commit::GroupCommit::new(durable),
        }
    }

    /// Takes the log mutex.
    pub(crate) fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Syncs every slot's written bytes, then records in each slot header
    /// how far it is synced (and syncs that), so recovery can tell damage
    /// in synced bytes from a torn write. Returns the last sequence number
    /// made durable.
    pub(crate) fn sync_all(&self) -> Result<u64> {
        let (files, ends, last) = {
            let st = self.lock();
            let files: Vec<Arc<SiloFile>> = st.slots.iter().map(|s| Arc::clone(&s.file)).collect();
            let ends: Vec<(u64, usize)> = st
                .slots
                .iter()
                .map(|s| (s.header.generation, s.end))
                .collect();
            (files, ends, st.next_seq().saturating_sub(1))
        };
        for f in &files {
            f.sync_data()?;
        }
        self.commit.mark_durable(last);
        {
            let mut st = self.lock();
            for (slot, (generation, end)) in st.slots.iter_mut().zip(ends) {
                // Only the content that was synced above: a slot emptied or
                // reused since (by compaction) keeps its own mark.
                let same = slot.header.generation == generation && !slot.is_empty();
                if same && slot.header.param_a < end as u64 {
                    slot.record_durable(end)?;
                }
            }
        }
        for f in &files {
            f.sync_data()?;
        }
        Ok(last)
    }
}

impl Log {
    /// Syncs the active slot's written bytes (one fdatasync) and tells
    /// group commit; a failure also fails every waiting `Sync` writer.
    pub(crate) fn sync_active(&self) -> Result<()> {
        let (file, last) = {
            let st = self.lock();
            (
                Arc::clone(&st.active().file),
                st.next_seq().saturating_sub(1),
            )
        };
        if let Err(e) = file.sync_data() {
            self.commit.fail(e.to_string());
            return Err(e.into());
        }
        self.commit.mark_durable(last);
        Ok(())
    }

    /// Trims both slots to their written frames (clean close only).
    pub(crate) fn trim(&self) -> Result<()> {
        let mut st = self.lock();
        for slot in &mut st.slots {
            slot.trim()?;
        }
        Ok(())
    }
}

/// Creates both slots of a new store: slot 0 active (generation 1), slot 1 empty.
pub(crate) fn create(dir: &Path) -> Result<LogState> {
    Ok(LogState {
        slots: [
            LogSlot::create(dir, 0, 1, 1)?,
            LogSlot::create(dir, 1, 0, 1)?,
        ],
        active: 0,
        frozen: false,
        scratch: Vec::new(),
    })
}

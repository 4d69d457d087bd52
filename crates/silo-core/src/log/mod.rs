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

    /// Syncs every slot's written bytes; returns the last sequence number made durable.
    pub(crate) fn sync_all(&self) -> Result<u64> {
        let (files, last) = {
            let st = self.lock();
            let files: Vec<Arc<SiloFile>> = st.slots.iter().map(|s| Arc::clone(&s.file)).collect();
            (files, st.next_seq().saturating_sub(1))
        };
        for f in files {
            f.sync_data()?;
        }
        self.commit.mark_durable(last);
        Ok(last)
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

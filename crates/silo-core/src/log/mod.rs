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
    /// the next generation. Returns the frozen slot's file, its last
    /// sequence number, and the new active slot's file, whose new header
    /// is written but not synced: the caller syncs both files (see
    /// [`sync_both`]) before it lets anything be appended.
    pub(crate) fn rotate(&mut self) -> Result<(Arc<SiloFile>, u64, Arc<SiloFile>)> {
        debug_assert!(
            !self.frozen,
            "the other slot must be retired before a rotation"
        );
        let next_seq = self.next_seq();
        let generation = self.active().header.generation + 1;
        let other = 1 - self.active;
        self.slots[other].restamp(generation, next_seq)?;
        let frozen_file = Arc::clone(&self.active().file);
        let restamped = Arc::clone(&self.slots[other].file);
        self.active = other;
        self.frozen = true;
        Ok((frozen_file, next_seq.saturating_sub(1), restamped))
    }
}

/// fdatasyncs `a` and `b` at once, `a` on a thread of its own (both on
/// the caller's if no thread can be had); returns their outcomes.
///
/// A freeze syncs the frozen slot and the new active slot's header under
/// the log mutex, and a writer waits for both: one after the other, each
/// waiting for its own device flush behind a compaction's writes and the
/// discards of files it let go, they held a writer for 83 ms. At once,
/// their waits overlap.
pub(crate) fn sync_both(
    a: &SiloFile,
    b: &SiloFile,
) -> (
    std::result::Result<(), silo_io::IoError>,
    std::result::Result<(), silo_io::IoError>,
) {
    std::thread::scope(|s| {
        match std::thread::Builder::new()
            .name("silo-sync".to_owned())
            .spawn_scoped(s, || a.sync_data())
        {
            Ok(other) => {
                let b_synced = b.sync_data();
                match other.join() {
                    Ok(a_synced) => (a_synced, b_synced),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Err(_) => (a.sync_data(), b.sync_data()),
        }
    })
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

    /// Makes every write so far durable with one fdatasync per slot that
    /// has unsynced bytes (normally just the active one; none if all is
    /// synced). The header's synced-length mark is carried by the same
    /// sync: when it lags by [`slot::MARK_STEP`] or more it is set to what an
    /// earlier sync made durable, so it lags behind the truth and never
    /// runs ahead of it (a lagging mark only makes recovery read more of
    /// the tail as possibly torn). Returns the last sequence number made
    /// durable.
    pub(crate) fn sync_all(&self) -> Result<u64> {
        let (work, last) = {
            let mut st = self.lock();
            let last = st.next_seq().saturating_sub(1);
            let mut work = Vec::new();
            for slot in &mut st.slots {
                if slot.end > slot.synced_end {
                    // The mark moves in steps: rewriting the header page on
                    // every flush would take a write fault on a page the
                    // last sync just cleaned.
                    slot.carry_mark()?;
                    work.push((Arc::clone(&slot.file), slot.number, slot.epoch, slot.end));
                }
            }
            (work, last)
        };
        for (file, _, _, _) in &work {
            if let Err(e) = file.sync_data() {
                // No waiting `Sync` writer may be told its write is durable.
                self.commit.fail(e.to_string());
                return Err(e.into());
            }
        }
        if !work.is_empty() {
            let mut st = self.lock();
            for (_, number, epoch, end) in work {
                // A slot emptied since (by compaction) is not credited.
                st.slots[number].note_synced(epoch, end);
            }
        }
        self.commit.mark_durable(last);
        Ok(last)
    }

    /// Records in each slot's header that it is synced to its end, then
    /// trims the preallocated zero tail (clean close only, after
    /// [`Log::sync_all`]): the next open reads two headers and maps files.
    pub(crate) fn trim(&self) -> Result<()> {
        let mut st = self.lock();
        for slot in &mut st.slots {
            let end = slot.synced_end;
            slot.record_durable(end)?;
            slot.trim()?;
        }
        Ok(())
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

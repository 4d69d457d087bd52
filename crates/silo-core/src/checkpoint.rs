//! `Silo::checkpoint`: a consistent, openable copy of a store made while
//! writes go on.
//!
//! The gate is held (compaction waits), so the data file, index and
//! manifest do not change while they are copied; the log slots are copied
//! up to the append positions read under the log mutex, which writers only
//! move forward. No file of a store is immutable (records are rewritten in
//! place), so everything is copied; the copy opens like a store after a
//! crash and replays its logs.

use std::path::Path;

use silo_format::{FileHeader, HEADER_LEN};
use silo_io::durable::{copy_file, create_dir_durable, sync_dir};
use silo_io::file::SiloFile;

use crate::error::{Error, Result};
use crate::log::slot::{slot_path, to_usize};
use crate::store::{Core, GateWrite};
use crate::{data, index, manifest};

impl Core {
    /// See [`crate::Silo::checkpoint`].
    pub(crate) fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<()> {
        let dest = dest.as_ref();
        // Refused before the cut waits for compaction.
        check_destination(dest)?;
        self.checkpoint_cut()?.write_to(dest)
    }

    /// See [`crate::Silo::checkpoint_cut`].
    pub(crate) fn checkpoint_cut(&self) -> Result<CheckpointCut<'_>> {
        crate::reentry::refuse_held(self.id, "checkpoint")?;
        let gate = self.gate.write();
        Ok(self.cut_under(gate))
    }

    /// See [`crate::Silo::try_checkpoint_cut`].
    pub(crate) fn try_checkpoint_cut(&self) -> Result<Option<CheckpointCut<'_>>> {
        crate::reentry::refuse_held(self.id, "checkpoint")?;
        Ok(self.gate.try_write().map(|gate| self.cut_under(gate)))
    }

    fn cut_under<'a>(&'a self, gate: GateWrite<'a>) -> CheckpointCut<'a> {
        // Log positions first: everything acknowledged so far lies before
        // them. The headers are taken here too: the copy's own header is
        // written from them, never copied from the live file, where a
        // concurrent `flush` may record a synced length past these positions.
        let slots: Vec<(usize, usize, FileHeader)> = {
            let st = self.log.lock();
            st.slots
                .iter()
                .map(|s| (s.number, s.end, s.header))
                .collect()
        };
        CheckpointCut {
            core: self,
            _gate: gate,
            slots,
        }
    }
}

/// A checkpoint's point in time, fixed: every write acknowledged before
/// [`crate::Silo::checkpoint_cut`] returned, nothing after. Compaction of
/// the store waits until the cut is written or dropped; reads and writes go
/// on. The sharded engine takes the cuts of all its shards while its
/// writers pause, then writes them with writers running.
pub struct CheckpointCut<'a> {
    core: &'a Core,
    _gate: GateWrite<'a>,
    slots: Vec<(usize, usize, FileHeader)>,
}

impl std::fmt::Debug for CheckpointCut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointCut")
            .field("dir", &self.core.dir)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// Refuses a destination that exists and is not an empty directory.
fn check_destination(dest: &Path) -> Result<()> {
    if dest.exists() {
        let empty = std::fs::read_dir(dest)
            .map_err(|e| silo_io::error::IoError::io("read directory", dest, e))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::DestinationExists(dest.to_path_buf()));
        }
    }
    Ok(())
}

impl CheckpointCut<'_> {
    /// Writes the copy into `dest` (which must not exist or be empty): an
    /// openable store holding exactly the cut's writes.
    pub fn write_to(self, dest: impl AsRef<Path>) -> Result<()> {
        let dest = dest.as_ref();
        check_destination(dest)?;
        create_dir_durable(dest)?;
        let core = self.core;
        let tables = core.tables();
        copy_file(tables.data.path(), &data::data_path(dest, tables.data.id))?;
        copy_file(
            tables.index.path(),
            &index::index_path(dest, tables.index.id),
        )?;
        let mut m = *core.manifest.lock().unwrap_or_else(|p| p.into_inner());
        // The copy recounts its figures when opened.
        m.clean = false;
        m.data_end = tables.data.end();
        for &(number, end, header) in &self.slots {
            let from = SiloFile::open_read(&slot_path(&core.dir, number))?;
            let mut bytes = vec![0u8; end];
            from.read_exact_at(&mut bytes, 0)?;
            // Every copied frame is complete and synced below, in the copy.
            let header = FileHeader {
                param_a: end as u64,
                ..header
            };
            bytes[..HEADER_LEN].copy_from_slice(&header.encode());
            let to = SiloFile::create_new(&slot_path(dest, number))?;
            to.write_all_at(&bytes, 0)?;
            to.allocate(
                0,
                to_usize(crate::log::slot::INITIAL_SLOT_BYTES)?.max(end) as u64,
            )?;
            to.sync_all()?;
        }
        manifest::write(dest, &m)?;
        sync_dir(dest)?;
        // The destination's own entry too, had it been made (unsynced) before.
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

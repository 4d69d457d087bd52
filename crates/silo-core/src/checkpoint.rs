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
use crate::store::Core;
use crate::{data, index, manifest};

impl Core {
    /// See [`crate::Silo::checkpoint`].
    pub(crate) fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<()> {
        crate::reentry::refuse_held(self.id, "checkpoint")?;
        let dest = dest.as_ref();
        if dest.exists() {
            let empty = std::fs::read_dir(dest)
                .map_err(|e| silo_io::error::IoError::io("read directory", dest, e))?
                .next()
                .is_none();
            if !empty {
                return Err(Error::DestinationExists(dest.to_path_buf()));
            }
        }
        create_dir_durable(dest)?;
        let _gate = self.gate.write();
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
        let tables = self.tables();
        copy_file(tables.data.path(), &data::data_path(dest, tables.data.id))?;
        copy_file(
            tables.index.path(),
            &index::index_path(dest, tables.index.id),
        )?;
        let mut m = *self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        // The copy recounts its figures when opened.
        m.clean = false;
        m.data_end = tables.data.end();
        for (number, end, header) in slots {
            let from = SiloFile::open_read(&slot_path(&self.dir, number))?;
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

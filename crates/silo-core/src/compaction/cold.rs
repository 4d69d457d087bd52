//! Cold compaction: rewrite every live record into a new data file and a
//! new index, publish them through the manifest, then delete the old files.
//! Readers holding the old files keep reading them until they let go.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use silo_format::{alloc_for, encode_record, record_size};
use silo_io::coalesce::CoalescedWrites;
use silo_io::durable::{remove_file, sync_dir};

use crate::READ_LIMIT;
use crate::compaction::apply::publish;
use crate::data::DataFile;
use crate::error::{Error, Result};
use crate::index::{Index, capacity_for};
use crate::store::{Core, GateWrite, Tables};

/// Bytes buffered before they are written out.
const WRITE_CHUNK: usize = 32 << 20;

/// Runs a cold compaction; returns the bytes of data file it reclaimed.
pub(crate) fn run(silo: &Core, gate: &GateWrite<'_>) -> Result<u64> {
    let rewrite = prepare(silo, gate)?;
    finish(silo, gate, rewrite)
}

/// A rewritten data file and index, synced but not yet published.
pub(crate) struct Rewrite {
    next: Tables,
    live_bytes: u64,
    old_end: u64,
}

impl Rewrite {
    /// Removes the unpublished files (best effort: the next open removes
    /// any the manifest does not name).
    pub(crate) fn discard(self) {
        let (data, index) = (
            self.next.data.path().to_path_buf(),
            self.next.index.path().to_path_buf(),
        );
        drop(self.next);
        let _ = remove_file(&data);
        let _ = remove_file(&index);
    }
}

/// Writes every live record into a new data file and a new index (files no
/// reader knows of yet), and syncs them. Reads the store, changes nothing
/// of it: the sharded engine prepares several stores' rewrites at once.
pub(crate) fn prepare(silo: &Core, _gate: &GateWrite<'_>) -> Result<Rewrite> {
    let tables = silo.tables();
    let old_end = tables.data.end();
    let live: Vec<(u64, u64)> = tables.index.live_entries().collect::<Result<_>>()?;
    let view = tables.data.view();
    let slack = silo.opts.value_slack_percent;
    let mut total = 0u64;
    let mut allocs = Vec::with_capacity(live.len());
    for (key, offset) in &live {
        let record = tables.data.record(&view, *offset, *key, READ_LIMIT)?;
        let alloc = alloc_for(record.value.len(), slack)
            .map_err(|e| Error::format(tables.data.path(), e))?;
        total += record_size(alloc) as u64;
        allocs.push(alloc);
    }
    let data = DataFile::create(&silo.dir, tables.data.id + 1, total)?;
    let mut cursor = data.reserve(total)?;
    let mut writes = CoalescedWrites::new();
    let mut buffered = 0usize;
    let mut entries = Vec::with_capacity(live.len());
    let mut buf = Vec::new();
    for ((key, offset), alloc) in live.iter().zip(allocs) {
        let record = tables.data.record(&view, *offset, *key, READ_LIMIT)?;
        buf.clear();
        buf.resize(record_size(alloc), 0);
        encode_record(&mut buf, *key, record.seq, record.value, alloc)
            .map_err(|e| Error::format(data.path(), e))?;
        writes.push(cursor, &buf);
        entries.push((*key, cursor));
        cursor += buf.len() as u64;
        buffered += buf.len();
        if buffered >= WRITE_CHUNK {
            data.write(&mut writes)?;
            buffered = 0;
        }
    }
    data.write(&mut writes)?;
    data.sync_and_publish()?;
    let index = Index::create(
        &silo.dir,
        tables.index.id + 1,
        capacity_for(entries.len() as u64),
        tables.index.seed(),
        entries,
    )?;
    Ok(Rewrite {
        next: Tables {
            data: Arc::new(data),
            index: Arc::new(index),
        },
        live_bytes: total,
        old_end,
    })
}

/// Publishes a prepared rewrite through the manifest and deletes the old
/// files; returns the bytes of data file reclaimed.
pub(crate) fn finish(silo: &Core, _gate: &GateWrite<'_>, rewrite: Rewrite) -> Result<u64> {
    let old = silo.tables();
    silo.space
        .live_bytes
        .store(rewrite.live_bytes, Ordering::Relaxed);
    silo.space.dead_bytes.store(0, Ordering::Relaxed);
    let next = Arc::new(rewrite.next);
    publish(silo, Arc::clone(&next))?;
    remove_file(old.data.path())?;
    remove_file(old.index.path())?;
    sync_dir(&silo.dir)?;
    silo.counters
        .cold_compactions
        .fetch_add(1, Ordering::Relaxed);
    Ok(rewrite.old_end.saturating_sub(next.data.end()))
}

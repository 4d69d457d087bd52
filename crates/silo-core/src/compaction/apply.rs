//! The short, writing step of hot compaction, in strict phases:
//! overlay in-place results and wait out readers -> journal the in-place
//! records -> write data -> sync -> manifest -> update the index -> sync ->
//! drop the journal -> forget the folded pending operations. The caller
//! retires the frozen log slot after this returns.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use silo_format::{RECORD_HEADER_LEN, encode_record, encode_tombstone, record_size};
use silo_io::coalesce::CoalescedWrites;
use silo_io::durable::remove_file;

use crate::compaction::journal;
use crate::compaction::plan::{Place, Plan};
use crate::error::{Error, Result};
use crate::index::{Index, capacity_for};
use crate::pending::Bytes;
use crate::store::{Silo, Tables};

/// What applying a plan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) in_place: u64,
    pub(crate) appended: u64,
    pub(crate) deleted: u64,
    pub(crate) bytes_written: u64,
    pub(crate) write_syscalls: u64,
}

/// Applies `plan` to the store. `generation` names the frozen slot (for the journal).
pub(crate) fn apply(silo: &Silo, plan: &Plan, generation: u64) -> Result<Applied> {
    let mut applied = Applied::default();
    let tables = silo.tables();

    // 1. Readers must stop reading records we are about to overwrite: give
    //    them the new values from the pending view, then wait for readers
    //    that may have looked before.
    let in_place: Vec<_> = plan
        .writes
        .iter()
        .filter(|w| matches!(w.place, Place::InPlace { .. }))
        .collect();
    for w in &in_place {
        silo.pending.overlay(w.key, w.seq, Bytes::copy_of(&w.value));
    }
    if !in_place.is_empty() {
        silo.grace.wait();
    }

    // 2. Encode every record; appended ones get space at the end, then a
    //    tombstone per deleted key (its old record stays behind as dead
    //    space, and the data file alone must say the key is gone).
    let tombstone_bytes = (plan.deletes.len() * RECORD_HEADER_LEN) as u64;
    let append_bytes: u64 = plan
        .writes
        .iter()
        .filter_map(|w| match w.place {
            Place::Append { alloc } => Some(record_size(alloc) as u64),
            Place::InPlace { .. } => None,
        })
        .sum::<u64>()
        + tombstone_bytes;
    let mut cursor = if append_bytes > 0 {
        tables.data.reserve(append_bytes)?
    } else {
        0
    };
    let mut writes = CoalescedWrites::new();
    let mut journal_entries: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut new_locs: Vec<(u64, u64)> = Vec::with_capacity(plan.writes.len());
    let mut buf = Vec::new();
    let (mut live_delta, mut dead_delta) = (0i64, 0i64);
    for w in &plan.writes {
        let (offset, alloc) = match w.place {
            Place::InPlace { offset, alloc } => (offset, alloc),
            Place::Append { alloc } => {
                let at = cursor;
                cursor += record_size(alloc) as u64;
                (at, alloc)
            }
        };
        buf.clear();
        buf.resize(record_size(alloc), 0);
        encode_record(&mut buf, w.key, w.seq, &w.value, alloc)
            .map_err(|e| Error::format(tables.data.path(), e))?;
        writes.push(offset, &buf);
        match w.place {
            Place::InPlace { .. } => {
                journal_entries.push((offset, buf.clone()));
                applied.in_place += 1;
            }
            Place::Append { .. } => {
                new_locs.push((w.key, offset));
                applied.appended += 1;
                live_delta += buf.len() as i64;
                if let Some(old) = w.old {
                    live_delta -= old.size as i64;
                    dead_delta += old.size as i64;
                }
            }
        }
    }
    for d in &plan.deletes {
        buf.clear();
        buf.resize(RECORD_HEADER_LEN, 0);
        encode_tombstone(&mut buf, d.key, d.seq)
            .map_err(|e| Error::format(tables.data.path(), e))?;
        writes.push(cursor, &buf);
        cursor += RECORD_HEADER_LEN as u64;
        live_delta -= d.old.size as i64;
        dead_delta += (d.old.size + RECORD_HEADER_LEN as u64) as i64;
    }

    // 3. Journal the in-place records before touching them.
    if !journal_entries.is_empty() {
        let entries: Vec<(u64, &[u8])> =
            journal_entries.iter().map(|(o, b)| (*o, &b[..])).collect();
        journal::write(&silo.dir, generation, &entries)?;
    }

    // 4. Data, then sync: nothing points at the new records yet.
    let stats = tables.data.write(&mut writes)?;
    applied.bytes_written = stats.bytes;
    applied.write_syscalls = stats.syscalls;
    tables.data.sync_and_publish()?;

    // 5. Grow the index by rehashing into a new file if the new keys would not fit.
    let new_keys = plan.writes.iter().filter(|w| w.old.is_none()).count() as u64;
    let tables = if tables.index.has_room_for(new_keys) {
        tables
    } else {
        rehash(silo, &tables, new_keys)?
    };

    // 6. The manifest records the new data end (and index file) before the
    //    index points past the old end.
    add(&silo.space.live_bytes, live_delta);
    add(&silo.space.dead_bytes, dead_delta);
    silo.store_manifest(silo.current_manifest(plan.through_seq, false))?;

    // 7. Index, then sync.
    for (key, offset) in &new_locs {
        tables.index.set(*key, *offset)?;
    }
    for d in &plan.deletes {
        tables.index.remove(d.key)?;
        applied.deleted += 1;
    }
    tables.index.flush()?;

    // 8. The in-place writes are durable: the journal has done its job.
    if !journal_entries.is_empty() {
        journal::remove(&silo.dir)?;
    }

    // 9. The data file and index now hold everything through `through_seq`.
    for key in &plan.touched {
        silo.pending.forget_through(*key, plan.through_seq);
    }
    Ok(applied)
}

fn add(counter: &std::sync::atomic::AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
    } else {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(delta.unsigned_abs()))
        });
    }
}

/// Writes a bigger index holding every live entry, records it in the
/// manifest and publishes it; readers holding the old one keep it.
pub(crate) fn rehash(silo: &Silo, tables: &Tables, new_keys: u64) -> Result<Arc<Tables>> {
    let old = &tables.index;
    let live: Vec<(u64, u64)> = old.live_entries().collect::<Result<_>>()?;
    let capacity = capacity_for(live.len() as u64 + new_keys);
    let index = Index::create(&silo.dir, old.id + 1, capacity, old.seed(), live)?;
    let next = Arc::new(Tables {
        data: Arc::clone(&tables.data),
        index: Arc::new(index),
    });
    publish(silo, Arc::clone(&next))?;
    remove_file(old.path())?;
    Ok(next)
}

/// Makes `next` the tables readers see, after recording it in the manifest.
pub(crate) fn publish(silo: &Silo, next: Arc<Tables>) -> Result<()> {
    let folded = silo
        .manifest
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .folded_seq;
    *silo.tables.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&next);
    silo.store_manifest(silo.current_manifest(folded, false))?;
    Ok(())
}

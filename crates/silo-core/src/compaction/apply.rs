//! The short, writing step of hot compaction, in strict phases:
//! overlay in-place results and wait out readers -> journal the in-place
//! records -> write data -> sync -> manifest -> update the index -> sync ->
//! drop the journal -> forget the folded pending operations. The caller
//! retires the frozen log slot after this returns.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use silo_format::{
    INDEX_ENTRY_LEN, RECORD_HEADER_LEN, encode_record, encode_tombstone, record_size,
};
use silo_io::coalesce::CoalescedWrites;
use silo_io::durable::remove_file;

use crate::compaction::after_syncs::Replaced;
use crate::compaction::journal;
use crate::compaction::plan::{self, KeyWrite, Place, Plan};
use crate::compaction::sink::{RecordSink, SinkStats};
use crate::error::{Error, Result};
use crate::index::{Index, capacity_for};
use crate::store::{Core, Tables};
use crate::two_threads::both;

/// Appended records are written as they fill a buffer of this size.
const APPEND_CHUNK: usize = 8 << 20;

/// What applying a plan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) in_place: u64,
    pub(crate) appended: u64,
    pub(crate) deleted: u64,
    pub(crate) bytes_written: u64,
    pub(crate) write_syscalls: u64,
    /// The appended records' range, when they were written past the page
    /// cache: to be read back once the compaction's syncs are done.
    pub(crate) readahead: Option<(u64, u64)>,
    /// The journal of the in-place records.
    pub(crate) journal: journal::Journaled,
}

/// Applies `plan` to the store. `generation` names the frozen slot (for the
/// journal). Without `in_place` (read-only opens in other processes have
/// the files mapped), nothing is rewritten in place: results that would
/// fit their records are appended like the others, and the index is
/// written anew beside the old one. With `threads` above 1, a new index is
/// built on a second thread while the data is written.
pub(crate) fn apply(
    silo: &Core,
    plan: &Plan,
    generation: u64,
    in_place: bool,
    threads: usize,
) -> Result<Applied> {
    let tables = silo.tables();
    let place = |w: &KeyWrite<'_>| match w.place {
        Place::InPlace { alloc, .. } if !in_place => Place::Append { alloc },
        place => place,
    };

    let mut layout = Layout::of(plan, &place);
    // 1. Readers must stop reading records we are about to overwrite: give
    //    them the new values from the pending view, then wait for readers
    //    that may have looked before.
    if layout.in_place > 0 {
        silo.pending.overlay_many(
            plan.writes
                .iter()
                .filter(|w| matches!(place(w), Place::InPlace { .. }))
                .map(|w| (w.key, w.seq, &w.value[..])),
        );
        silo.grace.wait();
    }

    // 2-4. The records, journaled and synced. A new index replaces the old
    //    one when readers in other processes have it mapped, or when it
    //    must grow to take the new keys: it is then built from where every
    //    result will be (known before a byte is written), on a second
    //    thread while this one writes the data if `threads` allows.
    if layout.append_bytes > 0 {
        layout.first_append = tables.data.reserve(layout.append_bytes)?;
    }
    let first_append = layout.first_append;
    let rebuild = !in_place || !tables.index.has_room_for(layout.new_keys);
    // Steps 2 to 4 (the new index built beside them when `rebuild`).
    let records = || -> Result<(Written, Option<Index>)> {
        Ok(if rebuild && threads > 1 {
            let (tables, place) = (&tables, &place);
            let (written, index) = both(
                || {
                    let (encoded, appends) = encode_records(plan, tables, place, layout, false)?;
                    let appended = appends.finish(&tables.data)?;
                    finish_records(silo, tables, encoded, appended, generation)
                },
                || build_index(silo, plan, tables, place, first_append),
            );
            (written?, Some(index?))
        } else if rebuild {
            // On one thread, the new index is built while the appended records
            // reach the device: their last writes are waited for, and the data
            // file synced, on a thread of their own. The sync is the device
            // making the fold's records durable (70 ms for 128 MB here, at the
            // index file's first sync when nothing asked for it earlier); the
            // index's build takes 50 ms of this thread meanwhile.
            let (encoded, appends) = encode_records(plan, &tables, &place, layout, false)?;
            let data = &tables.data;
            let (index, appended) = both(
                || build_index(silo, plan, &tables, &place, first_append),
                || {
                    let appended = appends.finish(data)?;
                    data.file().sync_data()?;
                    Ok::<_, Error>(appended)
                },
            );
            let written =
                appended.and_then(|a| finish_records(silo, &tables, encoded, a, generation));
            (written?, Some(index?))
        } else {
            let (encoded, appends) = encode_records(plan, &tables, &place, layout, true)?;
            let appended = appends.finish(&tables.data)?;
            (
                finish_records(silo, &tables, encoded, appended, generation)?,
                None,
            )
        })
    };
    // Until a manifest records the appended records' end, a failure gives
    // their space back (the store is poisoned; nothing refers to them).
    let (mut written, rebuilt) =
        records().inspect_err(|_| tables.data.unreserve(first_append, layout.append_bytes))?;
    match rebuilt {
        Some(index) => {
            install_index(silo, plan, &tables, index, &mut written)?;
            // The old index file is unlinked: let go of it once the
            // compaction's syncs are done, freed a step at a time there
            // (see `after_syncs.rs`), not closed whole on whichever thread
            // drops its last reference.
            if tables
                .index
                .capacity()
                .saturating_mul(INDEX_ENTRY_LEN as u64)
                >= crate::compaction::LONG_SLOT as u64
            {
                silo.after_syncs(|a| a.release(Replaced::Tables(tables)));
            }
        }
        None => update_index(silo, plan, &tables, &mut written)?,
    }

    // 9. The data file and index now hold everything through `through_seq`.
    forget_folded(silo, plan);
    Ok(written.applied)
}

/// Where a plan's results go, counted in one pass over its writes (each
/// pass over a 2M-operation fold's writes takes 3-4 ms of memory reads).
#[derive(Clone, Copy, Debug, Default)]
struct Layout {
    /// Results written in place, and their record bytes.
    in_place: usize,
    in_place_bytes: usize,
    /// Bytes appended (records, then tombstones) from `first_append`
    /// (set once they are reserved).
    append_bytes: u64,
    first_append: u64,
    /// Writes of keys the index does not hold yet.
    new_keys: u64,
}

impl Layout {
    fn of(plan: &Plan, place: &impl Fn(&KeyWrite<'_>) -> Place) -> Layout {
        let mut layout = Layout {
            append_bytes: (plan.deletes.len() * RECORD_HEADER_LEN) as u64,
            ..Layout::default()
        };
        for w in &plan.writes {
            match place(w) {
                Place::InPlace { alloc, .. } => {
                    layout.in_place += 1;
                    layout.in_place_bytes += record_size(alloc);
                }
                Place::Append { alloc } => layout.append_bytes += record_size(alloc) as u64,
            }
            layout.new_keys += u64::from(w.old.is_none());
        }
        layout
    }
}

/// What [`finish_records`] wrote and how the space it used changes the
/// store's accounts.
struct Written {
    applied: Applied,
    /// Where appended records went: `(key, offset)`.
    new_locs: Vec<(u64, u64)>,
    live_delta: i64,
    dead_delta: i64,
    /// The appended records' space, `(first, len)` (see
    /// [`crate::data::DataFile::unreserve`]).
    reserved: (u64, u64),
}

/// Records encoded by [`encode_records`] (the appended ones handed to
/// their sink, returned beside it), for [`finish_records`].
struct Encoded {
    rewrites: CoalescedWrites,
    new_locs: Vec<(u64, u64)>,
    live_delta: i64,
    dead_delta: i64,
    in_place: u64,
    appended: u64,
    first_append: u64,
    append_bytes: u64,
}

/// Step 2 of [`apply`]: encodes every record; appended ones get space at
/// the end, then a tombstone per deleted key (its old record stays behind
/// as dead space, and the data file alone must say the key is gone).
/// In-place records are kept for their journal. Where appended records
/// went is kept only `for_index`: for an update of the index in place (a
/// new one is built from the plan).
fn encode_records(
    plan: &Plan,
    tables: &Tables,
    place: &impl Fn(&KeyWrite<'_>) -> Place,
    layout: Layout,
    for_index: bool,
) -> Result<(Encoded, RecordSink)> {
    let (first_append, append_bytes) = (layout.first_append, layout.append_bytes);
    let mut cursor = first_append;
    // Records are encoded straight into the write buffers. In-place ones
    // are kept until the journal holds them; appended ones go to fresh
    // space past the end that nothing points at, so they are written as
    // they fill a chunk (one reused buffer, no large allocation).
    let mut rewrites = CoalescedWrites::with_capacity(layout.in_place, layout.in_place_bytes);
    let mut appends = RecordSink::open(&tables.data, cursor, append_bytes, APPEND_CHUNK)?;
    let mut new_locs: Vec<(u64, u64)> = if for_index {
        Vec::with_capacity(plan.writes.len() - layout.in_place)
    } else {
        Vec::new()
    };
    let (mut live_delta, mut dead_delta) = (0i64, 0i64);
    let (mut in_place_count, mut appended) = (0u64, 0u64);
    let data_path = tables.data.path();
    for (i, w) in plan.writes.iter().enumerate() {
        plan::prefetch_value_ahead(&plan.writes, i);
        let (Place::InPlace { alloc, .. } | Place::Append { alloc }) = place(w);
        let encode = |buf: &mut [u8]| encode_record(buf, w.key, w.seq, &w.value, alloc);
        match place(w) {
            Place::InPlace { offset, alloc } => {
                rewrites
                    .push_with(offset, record_size(alloc), encode)
                    .map_err(|e| Error::format(data_path, e))?;
                in_place_count += 1;
            }
            Place::Append { alloc } => {
                let offset = cursor;
                cursor += record_size(alloc) as u64;
                appends.push(&tables.data, record_size(alloc), encode)?;
                if for_index {
                    new_locs.push((w.key, offset));
                }
                appended += 1;
                live_delta += record_size(alloc) as i64;
                if let Some(old) = w.old {
                    live_delta -= old.size as i64;
                    dead_delta += old.size as i64;
                }
            }
        }
    }
    for d in &plan.deletes {
        appends.push(&tables.data, RECORD_HEADER_LEN, |buf| {
            encode_tombstone(buf, d.key, d.seq)
        })?;
        cursor += RECORD_HEADER_LEN as u64;
        live_delta -= d.old.size as i64;
        dead_delta += (d.old.size + RECORD_HEADER_LEN as u64) as i64;
    }
    debug_assert_eq!(cursor - first_append, append_bytes);
    let encoded = Encoded {
        rewrites,
        new_locs,
        live_delta,
        dead_delta,
        in_place: in_place_count,
        appended,
        first_append,
        append_bytes,
    };
    Ok((encoded, appends))
}

/// Steps 3 and 4 of [`apply`], once the appended records' last writes
/// were waited for (`appended`, what their sink wrote): the in-place ones
/// journaled and written, and everything synced. Nothing points at the
/// new records yet.
fn finish_records(
    silo: &Core,
    tables: &Tables,
    encoded: Encoded,
    appended_stats: SinkStats,
    generation: u64,
) -> Result<Written> {
    let Encoded {
        mut rewrites,
        new_locs,
        live_delta,
        dead_delta,
        in_place,
        appended,
        first_append,
        append_bytes,
    } = encoded;
    let mut applied = Applied::default();
    applied.bytes_written += appended_stats.bytes;
    applied.write_syscalls += appended_stats.syscalls;
    applied.in_place = in_place;
    applied.appended = appended;

    // 3. Journal the in-place records before touching them.
    if !rewrites.is_empty() {
        applied.journal = journal::write(&silo.dir, generation, rewrites.writes())?;
    }

    // 4. Data, then sync: nothing points at the new records yet.
    let stats = tables.data.write(&mut rewrites)?;
    applied.bytes_written += stats.bytes;
    applied.write_syscalls += stats.syscalls;
    tables.data.sync_and_publish()?;
    applied.readahead = appended_stats
        .direct
        .then_some((first_append, append_bytes));

    Ok(Written {
        applied,
        new_locs,
        live_delta,
        dead_delta,
        reserved: (first_append, append_bytes),
    })
}

/// The index [`apply`] installs instead of updating the old one: the old
/// entries the plan leaves alone, and every written key where its record
/// will be (appended records from `first_append` on, in plan order, as
/// [`encode_records`] lays them out). Written and synced as a new file.
fn build_index(
    silo: &Core,
    plan: &Plan,
    tables: &Tables,
    place: &impl Fn(&KeyWrite<'_>) -> Place,
    first_append: u64,
) -> Result<Index> {
    let old = &tables.index;
    let mut entries = plan::untouched_entries(old, plan)?;
    entries.reserve(plan.writes.len());
    let mut cursor = first_append;
    for w in &plan.writes {
        match place(w) {
            Place::InPlace { offset, .. } => entries.push((w.key, offset)),
            Place::Append { alloc } => {
                entries.push((w.key, cursor));
                cursor += record_size(alloc) as u64;
            }
        }
    }
    Index::create(
        &silo.dir,
        old.id + 1,
        capacity_for(entries.len() as u64),
        old.seed(),
        entries,
    )
}

/// Forgets the pending operations `plan` folded, now that the data file
/// and index hold everything through its `through_seq`. When nothing newer
/// was written meanwhile, that is everything the view holds: it is emptied
/// at once (under the log mutex, so no write is recorded in between) and
/// its entries freed outside any lock.
pub(crate) fn forget_folded(silo: &Core, plan: &Plan<'_>) {
    let everything = {
        let _log = silo.log.lock();
        (silo.pending.visible() <= plan.through_seq).then(|| silo.pending.take_all())
    };
    match everything {
        Some(taken) => free_elsewhere(taken),
        None => silo.pending.forget_many(&plan.touched, plan.through_seq),
    }
}

/// Steps 5 to 8 of [`apply`] in place: the index file, which has room
/// for the new keys ([`apply`] replaces it otherwise), is updated where it
/// is, between two manifests.
fn update_index(silo: &Core, plan: &Plan, tables: &Tables, written: &mut Written) -> Result<()> {
    // 6. The manifest records the new data end (and index file) before the
    //    index points past the old end, still with the old folded sequence:
    //    until the index is synced, the frozen slot's operations must be
    //    replayed after a crash.
    add(&silo.space.live_bytes, written.live_delta);
    add(&silo.space.dead_bytes, written.dead_delta);
    if let Err(e) = silo.store_manifest(silo.current_manifest(0, false)) {
        // Poisoned, and nothing refers to the new records: the live store
        // goes back to what it read (its manifest on disk decides at the
        // next open).
        add(&silo.space.live_bytes, -written.live_delta);
        add(&silo.space.dead_bytes, -written.dead_delta);
        let (first, len) = written.reserved;
        tables.data.unreserve(first, len);
        return Err(e);
    }

    // 7. Index, then sync.
    tables.index.set_many(&written.new_locs)?;
    for d in &plan.deletes {
        tables.index.remove(d.key)?;
        written.applied.deleted += 1;
    }
    tables.index.flush()?;

    // 7b. Data file and index hold everything through `through_seq`, durably:
    //    the manifest says so, and from now on a replay skips those
    //    operations (were the frozen slot's frames left behind by a crash
    //    while it is emptied, an old put would otherwise come back over a
    //    key the fold deleted).
    let mut manifest = silo.current_manifest(plan.through_seq, false);
    manifest.batch_tag = manifest.batch_tag.max(plan.max_tag);
    silo.store_manifest(manifest)?;

    // 8. The in-place writes are durable: the journal has done its job.
    if written.applied.in_place > 0 {
        journal::remove(&silo.dir)?;
    }

    Ok(())
}

/// Steps 5 to 8 of [`apply`] with a new index file (from [`build_index`],
/// synced): one manifest publishes it with the new data end and folded
/// sequence; the old file is removed (readers in other processes that
/// mapped it keep it until they close), and then the journal.
fn install_index(
    silo: &Core,
    plan: &Plan,
    tables: &Tables,
    index: Index,
    written: &mut Written,
) -> Result<()> {
    let old = &tables.index;
    let next = Arc::new(Tables {
        data: Arc::clone(&tables.data),
        index: Arc::new(index),
    });
    add(&silo.space.live_bytes, written.live_delta);
    add(&silo.space.dead_bytes, written.dead_delta);
    *silo.tables.write().unwrap_or_else(|p| p.into_inner()) = next;
    let mut manifest = silo.current_manifest(plan.through_seq, false);
    manifest.batch_tag = manifest.batch_tag.max(plan.max_tag);
    silo.store_manifest(manifest)?;
    remove_file(old.path())?;
    if written.applied.in_place > 0 {
        journal::remove(&silo.dir)?;
    }
    written.applied.deleted = plan.deletes.len() as u64;
    Ok(())
}

/// Tables of at least this many pending keys are freed on a thread of
/// their own.
const FREE_ELSEWHERE_KEYS: usize = 1 << 16;

/// Frees the emptied pending view's tables. A large one (a million keys
/// takes tens of milliseconds: one free per key's operations) goes to a
/// short-lived thread, so that the compaction returns without waiting for
/// it; nothing else refers to them any more. If no thread can be started,
/// it is freed here.
fn free_elsewhere<T: Send + 'static>(
    tables: Vec<std::collections::HashMap<u64, T, impl Send + 'static>>,
) {
    let keys: usize = tables.iter().map(std::collections::HashMap::len).sum();
    if keys < FREE_ELSEWHERE_KEYS {
        drop(tables);
        return;
    }
    crate::compaction::drop_elsewhere(tables);
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

/// Makes `next` the tables readers see, after recording it in the manifest.
pub(crate) fn publish(silo: &Core, next: Arc<Tables>) -> Result<()> {
    let folded = silo
        .manifest
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .folded_seq;
    *silo.tables.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&next);
    silo.store_manifest(silo.current_manifest(folded, false))?;
    Ok(())
}

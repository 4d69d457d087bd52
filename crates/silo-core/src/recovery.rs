//! Opening a store: create it, or read the manifest, finish an interrupted
//! in-place write from the journal, and replay both log slots (older
//! generation first) into the pending view.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Arc;

use silo_format::{FileKind, HEADER_LEN, Manifest, Tag, record_size};
use silo_io::DirLock;
use silo_io::durable::{read_header, remove_file, sync_dir};
use silo_io::map::ReadMap;

use crate::compaction::journal;
use crate::data::DataFile;
use crate::error::{Error, Result};
use crate::index::{Index, MIN_CAPACITY};
use crate::log::replay::{ReplayCorrupt, count_frames, replay};
use crate::log::slot::{LogSlot, slot_path};
use crate::log::{self, LogState};
use crate::options::Options;
use crate::pending::{Bytes, PendingOp, PendingView};
use crate::store::Tables;
use crate::two_threads::both;
use crate::{READ_LIMIT, manifest};

/// Operations recorded into the pending view at a time during replay.
const RECORD_BATCH: usize = 4096;

/// Logs at least this long are replayed by two threads.
const PARALLEL_REPLAY_BYTES: usize = 8 << 20;

/// What opening found.
pub(crate) struct Recovered {
    pub(crate) log: LogState,
    pub(crate) pending: PendingView,
    pub(crate) tables: Tables,
    pub(crate) manifest: Manifest,
    pub(crate) torn_tail_bytes: u64,
    /// The highest batch tag in the manifest and the logs.
    pub(crate) batch_tag: u64,
}

/// The fault seam's hold point of a read-only open between reading the log
/// slots' headers and replaying their frames (tests hold a reader there
/// while a writer in another process rotates the slots; nothing without
/// silo-io's `fault-injection` feature).
pub const HOLD_READ_ONLY_REPLAY: &str = "core: a read-only open, before its replay";

/// Attempts a read-only open makes beside a writer that keeps changing what
/// it reads (a log slot restamped while it was replayed, an index file
/// replaced before it was opened) before it reports what stopped the last.
const READ_ONLY_ATTEMPTS: u32 = 16;

/// Opens the store files in `dir`, creating them if the directory holds no
/// store. `lock` is the store's lock: a writer's (held while it cuts a log
/// slot's torn tail) or a reader's (whose opening byte is released here,
/// once everything is read).
///
/// A read-only open may run beside a writer in another process. The writer
/// rewrites nothing in place while readers are there, and neither empties
/// nor cuts a log slot while one is opening (see `DirLock`), so the data
/// file and index the manifest names are a fixed pair, and the log slots
/// hold every operation after the manifest's folded sequence. What can
/// still change under the open is a slot's header (a rotation restamps the
/// emptied slot; replaying a slot under a header it no longer has would
/// number its operations wrongly) and which index file is current (the
/// old one removed before it was opened): either makes the open start
/// again.
pub(crate) fn recover(dir: &Path, opts: &Options, lock: &DirLock) -> Result<Recovered> {
    if !opts.read_only {
        return recover_files(dir, opts, lock);
    }
    let mut attempt = 1;
    loop {
        let outcome = recover_files(dir, opts, lock).and_then(|r| {
            let unchanged = slot_headers_unchanged(dir, &r.log)?;
            Ok(unchanged.then_some(r))
        });
        match outcome {
            Ok(Some(recovered)) => {
                lock.opened()?;
                return Ok(recovered);
            }
            Ok(None) if attempt < READ_ONLY_ATTEMPTS => {}
            Ok(None) => {
                return Err(Error::NeedsRecovery {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "a writer rotated its log slots during each of {READ_ONLY_ATTEMPTS} attempts to read them; retry the read-only open"
                    ),
                });
            }
            Err(e) if attempt < READ_ONLY_ATTEMPTS && may_pass_beside_a_writer(&e) => {}
            Err(e) => return Err(e),
        }
        attempt += 1;
    }
}

/// Whether a read-only open that failed with `e` may succeed when tried
/// again beside a working writer: a file it named was replaced and removed
/// in between, or a header was read while it was being rewritten. Real
/// damage fails every attempt the same way and is reported.
fn may_pass_beside_a_writer(e: &Error) -> bool {
    match e {
        Error::Io(io) => {
            io.io_kind() == Some(std::io::ErrorKind::NotFound)
                || matches!(io, silo_io::IoError::BadHeader { .. })
        }
        Error::Corrupt { .. } | Error::Format { .. } => true,
        _ => false,
    }
}

/// Whether both log slots still have the generation and base sequence
/// number they were replayed under.
fn slot_headers_unchanged(dir: &Path, log: &LogState) -> Result<bool> {
    for slot in &log.slots {
        let file = silo_io::file::SiloFile::open_read(&slot_path(dir, slot.number))?;
        let now = read_header(&file, FileKind::OpsLog)?;
        if (now.generation, now.base_seq) != (slot.header.generation, slot.header.base_seq) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn recover_files(dir: &Path, opts: &Options, lock: &DirLock) -> Result<Recovered> {
    let Some(mut m) = manifest::read(dir)? else {
        if opts.read_only {
            return Err(Error::NeedsRecovery {
                dir: dir.to_path_buf(),
                reason: "it holds no store (no manifest) to open read-only".to_owned(),
            });
        }
        return create(dir, opts.index_seed);
    };
    let data = DataFile::open(dir, m.data_id, m.data_end)?;
    if opts.read_only {
        // Strays are left where they are; a journal means records were
        // being rewritten in place: only replaying it makes them whole.
        if journal::path(dir).exists() {
            return Err(Error::NeedsRecovery {
                dir: dir.to_path_buf(),
                reason: "an in-place rewrite of records was cut off (its journal is there)"
                    .to_owned(),
            });
        }
    } else {
        remove_strays(dir, &m)?;
        if journal::path(dir).exists() {
            // Only a writer with no reader beside it journals, and readers
            // refuse a store with a journal: none can be there now.
            let Some(_in_place) = lock.try_rewrite_in_place()? else {
                return Err(Error::NeedsRecovery {
                    dir: dir.to_path_buf(),
                    reason: "an in-place rewrite that was cut off must be finished, and read-only opens in other processes have the files mapped; close them first".to_owned(),
                });
            };
            journal::recover(dir, &data)?;
        }
    }
    let counts = m.clean.then_some((m.index_live, m.index_used));
    let index = Index::open(dir, m.index_id, counts)?;
    if !m.clean {
        let live = live_bytes(&data, &index)?;
        m.live_bytes = live;
        m.dead_bytes = data.end().saturating_sub(HEADER_LEN as u64 + live);
        (m.index_live, m.index_used) = index.counts();
    }
    let (log, pending, torn_tail_bytes, logged_tag) = replay_logs(dir, opts, m.folded_seq, lock)?;
    Ok(Recovered {
        log,
        pending,
        tables: Tables {
            data: Arc::new(data),
            index: Arc::new(index),
        },
        manifest: m,
        torn_tail_bytes,
        batch_tag: m.batch_tag.max(logged_tag),
    })
}

/// Sums the sizes of the live records (after an unclean shutdown).
fn live_bytes(data: &DataFile, index: &Index) -> Result<u64> {
    let view = data.view();
    let mut total = 0;
    for entry in index.live_entries() {
        let (key, offset) = entry?;
        let record = data.record(&view, offset, key, READ_LIMIT)?;
        total += record_size(record.alloc) as u64;
    }
    Ok(total)
}

/// Replays both slots into a new pending view; returns it with the log
/// state, the torn bytes cut off and the highest batch tag replayed.
///
/// Operations at or below `folded_seq` are in the data file and the index
/// already (the manifest says so only once both are synced) and are not
/// recorded: a slot that a crash cut off while it was being emptied can
/// still hold an old put of a key the fold deleted, which would come back.
fn replay_logs(
    dir: &Path,
    opts: &Options,
    folded_seq: u64,
    lock: &DirLock,
) -> Result<(LogState, PendingView, u64, u64)> {
    let mut slots = [LogSlot::open(dir, 0)?, LogSlot::open(dir, 1)?];
    if opts.read_only {
        // Tests hold a read-only open here while a writer rotates the slots.
        silo_io::fault::hold_point(dir, HOLD_READ_ONLY_REPLAY);
    }
    let (g0, g1) = (slots[0].header.generation, slots[1].header.generation);
    if g0 == g1 {
        return Err(Error::corrupt(
            slot_path(dir, 1),
            0,
            format!("both log slots have generation {g0}; replay order is ambiguous"),
        ));
    }
    let newer = usize::from(g1 > g0);
    let older = 1 - newer;
    let pending = PendingView::default();
    let mut torn = 0;
    let mut next_seq = 0;
    let mut max_tag = 0;
    for number in [older, newer] {
        let slot = &mut slots[number];
        let base = slot.header.base_seq;
        let corrupt = |c: ReplayCorrupt| {
            Error::corrupt(slot_path(dir, number), (HEADER_LEN + c.at) as u64, c.reason)
        };
        // Unless a clean close left the file ending exactly at its synced
        // length (and no damage is to be cut out of it), find where the
        // valid frames end and cut the rest (a torn tail, zero
        // preallocation, or what follows recovered damage), so the map
        // below covers only frames that are never written again while
        // appends go on past them, and no old frame can follow new ones.
        if (opts.recover_corrupt_log || !slot.ends_at_synced_length()?) && !opts.read_only {
            let map = ReadMap::new(&slot.file)?;
            let body = map.as_slice().get(HEADER_LEN..).unwrap_or_default();
            let end = replay(
                body,
                base,
                slot.durable_body_len(),
                READ_LIMIT,
                opts.recover_corrupt_log,
                |_| {},
            )
            .map_err(corrupt)?;
            torn += end.dropped_bytes;
            drop(map);
            // A reader opening beside us may be reading the slot to its
            // end; readers already open never read past their valid frames,
            // which end where ours do or before.
            let _no_opening_reader = lock.exclude_opening_readers()?;
            slot.cut_at(end.valid_len)?;
        }
        let durable = slot.durable_body_len();
        let map = Arc::new(ReadMap::new(&slot.file)?);
        let body = map.as_slice().get(HEADER_LEN..).unwrap_or_default();
        if body.len() >= PARALLEL_REPLAY_BYTES {
            pending.reserve(count_frames(body));
        }
        let replay_part = |part: usize, parts: usize| {
            let mut batch = Vec::with_capacity(RECORD_BATCH);
            let end = replay(
                body,
                base,
                durable,
                READ_LIMIT,
                opts.recover_corrupt_log,
                |op| {
                    if op.seq <= folded_seq
                        || (parts > 1 && PendingView::part_of(op.key, parts) != part)
                    {
                        return;
                    }
                    // The payload lies inside the map by construction.
                    let value = || {
                        Bytes::mapped(&map, HEADER_LEN + op.payload_at, op.payload.len())
                            .unwrap_or_else(|| Bytes::copy_of(op.payload))
                    };
                    let pending_op = match op.tag {
                        Tag::Put => PendingOp::Put(value()),
                        Tag::Merge => PendingOp::Merge(value()),
                        _ => PendingOp::Delete,
                    };
                    batch.push((op.key, op.seq, pending_op));
                    if batch.len() == RECORD_BATCH {
                        pending.record_many(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(RECORD_BATCH),
                        ));
                    }
                },
            );
            pending.record_many(batch);
            end
        };
        // A long log is replayed by two threads, each reading every frame and
        // recording the keys of its own half of the pending view's shards.
        // Both reach the same verdict on how the log ends.
        let end = if body.len() >= PARALLEL_REPLAY_BYTES {
            both(|| replay_part(0, 2), || replay_part(1, 2)).0
        } else {
            replay_part(0, 1)
        }
        .map_err(corrupt)?;
        if opts.read_only {
            // Nothing was cut above: what lies past the valid frames is
            // counted here.
            torn += end.dropped_bytes;
        }
        slot.resume_at(end.valid_len, end.frames);
        max_tag = max_tag.max(end.max_tag);
        if !slot.is_empty() && base < next_seq {
            return Err(Error::corrupt(
                slot_path(dir, number),
                0,
                format!(
                    "log slot starts at sequence {base}, before the end of the older slot ({next_seq})"
                ),
            ));
        }
        next_seq = next_seq.max(slot.next_seq());
    }
    // Everything replayed is recorded whole.
    pending.publish(next_seq.saturating_sub(1));
    let frozen = !slots[older].is_empty();
    let state = LogState {
        slots,
        active: newer,
        frozen,
        scratch: Vec::new(),
    };
    Ok((state, pending, torn, max_tag))
}

/// Whether `name` is one of the files a store keeps.
fn is_store_file(name: &str) -> bool {
    name == manifest::MANIFEST_NAME
        || name == journal::JOURNAL_NAME
        || ["data-", "index-", "log-"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// Creates an empty store. Refuses a directory that holds a log with
/// operations but no manifest: that is damage, not a new store.
fn create(dir: &Path, index_seed: Option<u64>) -> Result<Recovered> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| silo_io::error::IoError::io("read directory", dir, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| is_store_file(name))
        .collect();
    // Look at everything before removing anything: a log with operations
    // or a data file with records means the manifest was lost, not that a
    // creation was cut off.
    for name in &names {
        if holds_data(&dir.join(name))? {
            return Err(Error::corrupt(
                dir.join(manifest::MANIFEST_NAME),
                0,
                format!(
                    "MANIFEST is missing but {name} holds data; restore the manifest or a checkpoint"
                ),
            ));
        }
    }
    for name in &names {
        // Left by a creation that did not finish.
        remove_file(&dir.join(name))?;
    }
    // The directory may be one an interrupted creation made without
    // syncing its entry: make it durable before the store is written in it.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    let seed = index_seed.unwrap_or_else(|| RandomState::new().hash_one(dir));
    let data = DataFile::create(dir, 1, 0)?;
    let index = Index::create(dir, 1, MIN_CAPACITY, seed, Vec::new())?;
    let log = log::create(dir)?;
    let m = Manifest {
        generation: 1,
        data_id: 1,
        index_id: 1,
        folded_seq: 0,
        data_end: HEADER_LEN as u64,
        index_live: 0,
        index_used: 0,
        live_bytes: 0,
        dead_bytes: 0,
        clean: true,
        batch_tag: 0,
    };
    // The manifest is written last: it is what makes the directory a store.
    manifest::write(dir, &m)?;
    Ok(Recovered {
        log,
        pending: PendingView::default(),
        tables: Tables {
            data: Arc::new(data),
            index: Arc::new(index),
        },
        manifest: m,
        torn_tail_bytes: 0,
        batch_tag: 0,
    })
}

/// Whether a log slot or data file holds anything after its header (the
/// first 64 KiB after it are looked at; records and frames start there).
fn holds_data(path: &Path) -> Result<bool> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !(name.starts_with("log-") || name.starts_with("data-")) {
        return Ok(false);
    }
    let file = silo_io::file::SiloFile::open_read(path)?;
    let len = file.len()?.saturating_sub(HEADER_LEN as u64).min(64 << 10);
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut bytes, HEADER_LEN as u64)?;
    Ok(silo_format::last_nonzero(&bytes).is_some())
}

/// Removes data and index files the manifest does not name (left by a cold
/// compaction or rehash that was cut off) and temporary files.
fn remove_strays(dir: &Path, m: &Manifest) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| silo_io::error::IoError::io("read directory", dir, e))?;
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A `.tmp` is an atomic replace or a file creation that was cut off
        // (`data-3.tmp` included: only a header, never renamed).
        let stray = name.ends_with(".tmp")
            || match name.split_once('-') {
                Some(("data", id)) => id.parse::<u64>().is_ok_and(|id| id != m.data_id),
                Some(("index", id)) => id.parse::<u64>().is_ok_and(|id| id != m.index_id),
                _ => false,
            };
        if stray {
            remove_file(&entry.path())?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn bad_magic() -> silo_format::FormatError {
        silo_format::FormatError::BadMagic {
            expected: *b"SILODATA",
            found: [0; 8],
        }
    }

    /// What a read-only open tries again beside a writer: a file replaced
    /// and removed under it, or a header or frame read while rewritten;
    /// never an error that trying again cannot change.
    #[test]
    fn only_what_a_working_writer_can_cause_is_tried_again() {
        let path = Path::new("/store/index-3");
        let io =
            |kind: std::io::ErrorKind| Error::Io(silo_io::IoError::io("open", path, kind.into()));
        let bad_header = Error::Io(silo_io::IoError::BadHeader {
            path: path.to_path_buf(),
            source: bad_magic(),
        });
        for (e, again) in [
            (io(std::io::ErrorKind::NotFound), true),
            (bad_header, true),
            (Error::corrupt(path, 0, "moved"), true),
            (Error::format(path, bad_magic()), true),
            (io(std::io::ErrorKind::PermissionDenied), false),
            (io(std::io::ErrorKind::InvalidData), false),
            (
                Error::NeedsRecovery {
                    dir: PathBuf::from("/store"),
                    reason: "a journal".to_owned(),
                },
                false,
            ),
            (
                Error::InvalidOptions {
                    name: "x",
                    reason: String::new(),
                },
                false,
            ),
        ] {
            assert_eq!(may_pass_beside_a_writer(&e), again, "{e:?}");
        }
    }
}

//! The read-only step of hot compaction: from the frozen log slot and the
//! current tables, compute an owned [`Plan`] of what to write. Nothing here
//! reads or changes the pending view or a file, so the sharded engine can
//! run this step for many stores in parallel.

use std::borrow::Cow;

use silo_format::{Tag, alloc_for, record_size};
use silo_io::map::ReadMap;

use crate::READ_LIMIT;
use crate::error::{Error, Result};
use crate::index::PREFETCH_AHEAD;
use crate::log::replay::{LoggedOp, replay};
use crate::store::{Core, Tables};

/// The entries of `index` whose keys `plan` neither deletes nor rewrites:
/// what a new index or data file written from the fold keeps of the old.
/// `plan` must have been computed against `index` (its old records carry
/// their slots in it).
pub(crate) fn untouched_entries(
    index: &crate::index::Index,
    plan: &Plan<'_>,
) -> Result<Vec<(u64, u64)>> {
    // A bitmap of the slots the plan changes (capacity / 8 bytes, a 128th
    // of the index): the scan below is in slot order, so the bitmap is read
    // in order too. A hash set of keys made this step a third of a
    // reclaim's CPU time.
    let words = usize::try_from(index.capacity().div_ceil(64)).unwrap_or(usize::MAX);
    let mut changed = vec![0_u64; words];
    let slots = plan
        .writes
        .iter()
        .filter_map(|w| w.old.map(|o| o.slot))
        .chain(plan.deletes.iter().map(|d| d.old.slot));
    for slot in slots {
        if let Some(word) = usize::try_from(slot / 64)
            .ok()
            .and_then(|w| changed.get_mut(w))
        {
            *word |= 1 << (slot % 64);
        }
    }
    index.live_entries_but(&changed).collect()
}

/// Where a result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Over the key's current record, which has room.
    InPlace { offset: u64, alloc: u32 },
    /// At the end of the data file.
    Append { alloc: u32 },
}

/// The key's current record, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OldRecord {
    pub(crate) offset: u64,
    pub(crate) size: u64,
    /// The slot of the key's entry in the index the plan read.
    pub(crate) slot: u64,
}

/// A value to store: borrowed from the frozen slot when a put there
/// settles it, owned when the merge operator folded it.
#[derive(Debug)]
pub(crate) struct KeyWrite<'a> {
    pub(crate) key: u64,
    pub(crate) seq: u64,
    pub(crate) value: Cow<'a, [u8]>,
    pub(crate) place: Place,
    pub(crate) old: Option<OldRecord>,
}

/// How many writes ahead a loop over a plan's writes asks for values.
const VALUE_PREFETCH_AHEAD: usize = 8;

/// Asks the CPU for the value of the write `VALUE_PREFETCH_AHEAD` places
/// after `i` in `writes` (up to four cache lines of it). The values lie
/// scattered over the frozen slot, the writes being in key order: the
/// loops that encode them would otherwise wait on each one's cache misses.
pub(crate) fn prefetch_value_ahead(writes: &[KeyWrite<'_>], i: usize) {
    if let Some(ahead) = writes.get(i + VALUE_PREFETCH_AHEAD) {
        silo_io::hint::prefetch_slice(&ahead.value, 4);
    }
}

/// A key to delete.
#[derive(Debug)]
pub(crate) struct KeyDelete {
    pub(crate) key: u64,
    /// The delete's sequence number (its tombstone carries it).
    pub(crate) seq: u64,
    pub(crate) old: OldRecord,
}

/// What a hot compaction will do, computed from immutable inputs; it
/// borrows only the frozen slot's bytes.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    /// The last sequence number of the frozen slot.
    pub(crate) through_seq: u64,
    pub(crate) writes: Vec<KeyWrite<'a>>,
    pub(crate) deletes: Vec<KeyDelete>,
    /// Every key the frozen slot touched (their pending operations are forgotten after apply).
    pub(crate) touched: Vec<u64>,
    /// Operations read from the slot.
    pub(crate) ops: u64,
    /// Keys whose operands the merge operator refused (or whose result is
    /// too long), with the error: nothing is planned for them. The
    /// compaction may go on only if a newer put or delete supersedes each.
    pub(crate) refused: Vec<(u64, Error)>,
    /// The highest tag of the slot's tagged batches (0: none).
    pub(crate) max_tag: u64,
    /// Bytes read: the slot's body and the stored records looked at.
    pub(crate) bytes_read: u64,
}

/// Computes the plan for the frozen slot body `body` whose first frame has `base_seq`.
/// With `threads` above 1, a large slot is planned on two threads.
pub(crate) fn compute<'a>(
    silo: &Core,
    tables: &Tables,
    body: &'a [u8],
    base_seq: u64,
    through_seq: u64,
    threads: usize,
) -> Result<Plan<'a>> {
    // One operation per sequence number at most (batch frames take some),
    // and never more than the body has room for frames: the vector is
    // sized once instead of growing by copies.
    let frames = through_seq.saturating_sub(base_seq).saturating_add(1);
    let room = (body.len() / silo_format::frame_len(0)) as u64;
    let mut ops: Vec<LoggedOp<'a>> =
        Vec::with_capacity(usize::try_from(frames.min(room)).unwrap_or(0));
    // The frozen slot was synced whole at freeze: every byte of it is
    // durable, so any stop before its end is damage, and its frames are
    // checked again (its pages may have been read back from disk).
    let end = replay(body, base_seq, body.len(), READ_LIMIT, false, |op| {
        ops.push(op)
    })
    .map_err(|c| Error::corrupt(silo.dir.join("log (frozen slot)"), c.at as u64, c.reason))?;
    ops.sort_unstable_by_key(|op| (op.key, op.seq));
    let mut plan = Plan {
        through_seq,
        ops: ops.len() as u64,
        max_tag: end.max_tag,
        bytes_read: body.len() as u64,
        ..Plan::default()
    };
    let view = tables.data.view();
    // Operations at or below the manifest's folded sequence are in the data
    // file and the index already, deletes included (which leave no record
    // whose sequence number would say so). A frozen slot holds such
    // operations only when a crash cut off the emptying of a slot an
    // earlier compaction had folded.
    let folded = silo
        .manifest
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .folded_seq;
    let mid = split_point(&ops);
    if threads > 1 && ops.len() >= PARALLEL_PLAN_FROM {
        // Two halves of the keys, each planned by a thread of its own,
        // joined in key order.
        let (first, second) = ops.split_at(mid);
        let mut rest = Plan::default();
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| plan_keys(silo, tables, &view, second, folded, &mut rest));
            let mine = plan_keys(silo, tables, &view, first, folded, &mut plan);
            match other.join() {
                Ok(theirs) => (mine, theirs),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        a?;
        b?;
        plan.writes.append(&mut rest.writes);
        plan.deletes.append(&mut rest.deletes);
        plan.touched.append(&mut rest.touched);
        plan.refused.append(&mut rest.refused);
        plan.bytes_read += rest.bytes_read;
    } else {
        plan_keys(silo, tables, &view, &ops, folded, &mut plan)?;
    }
    append_if_sparse(&mut plan);
    Ok(plan)
}

/// In-place results of at least this many bytes, in all, may be appended
/// instead (below it, in place costs little either way).
pub(crate) const SPARSE_FROM: u64 = 4 << 20;

/// Costs of the two ways to write the in-place results, in nanoseconds,
/// as measured here: a write call per run of adjacent records; a dirtied
/// page written back through the page cache (4 KiB at about 400 MB/s);
/// and per byte appended past the page cache, counting the cold rewrite
/// its dead space brings nearer (the old record becomes dead, and at the
/// default 20% dead ratio every dead byte costs about four bytes of
/// rewrite later).
const RUN_NS: u64 = 1_500;
const PAGE_NS: u64 = 10_000;
const APPENDED_BYTE_NS: u64 = 8;

/// Turns every in-place result into an appended one when they are many and
/// spread out, so that writing them in place would cost more than
/// appending them: a record rewritten in place costs its whole page at
/// writeback and its own write call (records apart are never one run),
/// besides its bytes again in the journal. Random overwrites of a third of
/// 5M keys took 4.5 s in place (1.2 million write calls, every page of a
/// 650 MB file dirtied). Appended, the records go out back to back past
/// the page cache, and their old ones become dead space for the policy's
/// cold rewrite. A fold that rewrites most records of a region stays in
/// place: few long runs. The appended records keep the old records'
/// allocs, which fit them.
fn append_if_sparse(plan: &mut Plan<'_>) {
    let page = silo_io::direct::DIRECT_ALIGN as u64;
    let in_place = plan.writes.iter().filter_map(|w| match w.place {
        Place::InPlace { offset, alloc } => Some((offset, record_size(alloc) as u64)),
        Place::Append { .. } => None,
    });
    // Most folds stop here, before anything is gathered.
    let bytes: u64 = in_place.clone().map(|(_, size)| size).sum();
    if bytes < SPARSE_FROM {
        return;
    }
    let mut records: Vec<(u64, u64)> = in_place.collect();
    records.sort_unstable();
    let (mut runs, mut pages) = (0u64, 0u64);
    let (mut run_end, mut last_page) = (None, None);
    for (offset, size) in records {
        if run_end != Some(offset) {
            runs += 1;
        }
        run_end = Some(offset + size);
        let (first, last) = (offset / page, (offset + size - 1) / page);
        pages += last - first + 1 - u64::from(last_page == Some(first));
        last_page = Some(last);
    }
    let in_place_cost = runs
        .saturating_mul(RUN_NS)
        .saturating_add(pages.saturating_mul(PAGE_NS));
    if in_place_cost <= bytes.saturating_mul(APPENDED_BYTE_NS) {
        return;
    }
    for w in &mut plan.writes {
        if let Place::InPlace { alloc, .. } = w.place {
            w.place = Place::Append { alloc };
        }
    }
}

/// Operations in a frozen slot from which [`compute`] plans on two
/// threads (below it, the thread costs more than it saves).
pub(crate) const PARALLEL_PLAN_FROM: usize = 1 << 16;

/// The index in `ops` (sorted by key) nearest its middle where a key's
/// operations begin.
fn split_point(ops: &[LoggedOp<'_>]) -> usize {
    let mut mid = ops.len() / 2;
    while mid > 0 && mid < ops.len() && ops[mid].key == ops[mid - 1].key {
        mid += 1;
    }
    mid
}

/// Plans the keys of `ops` (sorted by key and sequence number, whole keys
/// only) into `plan`'s writes, deletes, touched keys and refusals.
fn plan_keys<'a>(
    silo: &Core,
    tables: &Tables,
    view: &ReadMap,
    ops: &[LoggedOp<'a>],
    folded: u64,
    plan: &mut Plan<'a>,
) -> Result<()> {
    let mut at = 0;
    for group in ops.chunk_by(|a, b| a.key == b.key) {
        let key = group[0].key;
        // Index slots are scattered: ask for the one of a key a few
        // groups ahead (at most a few operations off) while this one runs.
        if let Some(ahead) = ops.get(at + PREFETCH_AHEAD) {
            tables.index.prefetch(ahead.key);
        }
        at += group.len();
        plan.touched.push(key);
        // Every key is folded, even one that a newer put or delete in the
        // active slot supersedes: retiring the frozen slot must not depend
        // on operations that are not durable yet (a power cut may drop the
        // active slot's unsynced tail, and the frozen slot's result must
        // then stand on its own).
        let stored = match tables.index.get_with_slot(key)? {
            Some((offset, slot)) => Some((
                offset,
                slot,
                tables.data.record(view, offset, key, READ_LIMIT)?,
            )),
            None => None,
        };
        plan.bytes_read += stored.map_or(0, |(_, _, r)| r.size() as u64);
        // Operations at or below the record's sequence number are already in it.
        let floor = stored.map_or(0, |(_, _, r)| r.seq).max(folded);
        // The group is in sequence order: the operations past the floor
        // are its tail.
        let live = &group[group.partition_point(|op| op.seq <= floor)..];
        let Some(last) = live.last() else { continue };
        let seq = last.seq;
        let (base, merges) = match live.iter().rposition(|op| op.tag != Tag::Merge) {
            Some(i) => (
                (live[i].tag == Tag::Put).then_some(live[i].payload),
                &live[i + 1..],
            ),
            None => (stored.map(|(_, _, r)| r.value), live),
        };
        let value: Option<Cow<'a, [u8]>> = if merges.is_empty() {
            // The slot's last operation is a put or delete and settles it.
            (last.tag == Tag::Put).then_some(Cow::Borrowed(last.payload))
        } else {
            let operands: Vec<&[u8]> = merges.iter().map(|op| op.payload).collect();
            let folded = match silo.fold(key, base, &operands) {
                // A record longer than readers accept could never be read back.
                Ok(folded) if folded.len() > READ_LIMIT as usize => Err(Error::ValueTooLarge {
                    len: folded.len(),
                    max: READ_LIMIT,
                }),
                other => other,
            };
            match folded {
                Ok(folded) => Some(Cow::Owned(folded)),
                Err(e) if e.is_operand_error() => {
                    plan.refused.push((key, e));
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        let old = stored.map(|(offset, slot, r)| OldRecord {
            offset,
            size: record_size(r.alloc) as u64,
            slot,
        });
        match value {
            None => {
                if let Some(old) = old {
                    plan.deletes.push(KeyDelete { key, seq, old });
                }
            }
            Some(value) => {
                let place = match stored {
                    Some((offset, _, r)) if r.alloc as usize >= value.len() => Place::InPlace {
                        offset,
                        alloc: r.alloc,
                    },
                    _ => Place::Append {
                        alloc: alloc_for(value.len(), silo.opts.value_slack_percent)
                            .map_err(|e| Error::format(silo.dir.join("data"), e))?,
                    },
                };
                plan.writes.push(KeyWrite {
                    key,
                    seq,
                    value,
                    place,
                    old,
                });
            }
        }
    }
    Ok(())
}

//! The read-only step of hot compaction: from the frozen log slot and the
//! current tables, compute an owned [`Plan`] of what to write. Nothing here
//! reads or changes the pending view or a file, so the sharded engine can
//! run this step for many stores in parallel.

use std::borrow::Cow;

use silo_format::{Tag, alloc_for, record_size};
use silo_io::map::ReadMap;

use crate::READ_LIMIT;
use crate::compaction::key_groups::{Grouped, KeyGroups};
use crate::compaction::runs::Runs;
use crate::error::{Error, Result};
use crate::index::PREFETCH_AHEAD;
use crate::log::replay::{replay_whole, split_whole};
use crate::scratch::Pool;
use crate::store::{Core, Tables};
use crate::two_threads::both;
use crate::window_sort::into_windows_in;

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
    // With room for the plan's writes too, which the caller adds.
    let room = usize::try_from(index.counts().0)
        .unwrap_or(0)
        .saturating_add(plan.writes.len());
    let mut entries = crate::index::ENTRIES.take(room).unwrap_or_default();
    for entry in index.live_entries_but(&changed) {
        entries.push(entry?);
    }
    Ok(entries)
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
/// scattered over the frozen slot, the writes being in bucket order: the
/// loops that encode them would otherwise wait on each one's cache misses.
pub(crate) fn prefetch_value_ahead(writes: &Runs<KeyWrite<'_>>, i: usize) {
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
    /// Bucket by bucket (consecutive key ranges), within a bucket in the
    /// order the keys first appear in the slot; one run for each thread
    /// that planned.
    pub(crate) writes: Runs<KeyWrite<'a>>,
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
    /// What the writes and deletes come to, kept as they are planned (a
    /// pass over a 2M-operation fold's writes takes 3-4 ms).
    pub(crate) sizes: PlanSizes,
}

/// Sums over a plan's writes and deletes, by where the results go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PlanSizes {
    /// Record bytes of the writes in place.
    pub(crate) in_place: u64,
    /// Record bytes of the writes appended.
    pub(crate) appended: u64,
    /// Bytes of the stored records that the appended writes and the
    /// deletes leave behind as dead space.
    pub(crate) moved: u64,
}

impl PlanSizes {
    /// The sums of `writes` and `deletes`, counted anew.
    fn of(writes: &Runs<KeyWrite<'_>>, deletes: &[KeyDelete]) -> PlanSizes {
        let mut sizes = PlanSizes::default();
        for w in writes {
            sizes.add(w);
        }
        sizes.moved += deletes.iter().map(|d| d.old.size).sum::<u64>();
        sizes
    }

    /// Counts `write`.
    fn add(&mut self, write: &KeyWrite<'_>) {
        match write.place {
            Place::InPlace { alloc, .. } => self.in_place += record_size(alloc) as u64,
            Place::Append { alloc } => {
                self.appended += record_size(alloc) as u64;
                self.moved += write.old.map_or(0, |old| old.size);
            }
        }
    }

    /// The sums of two plans' writes and deletes.
    fn with(self, other: PlanSizes) -> PlanSizes {
        PlanSizes {
            in_place: self.in_place + other.in_place,
            appended: self.appended + other.appended,
            moved: self.moved + other.moved,
        }
    }
}

impl Plan<'_> {
    /// Whether [`Plan::sizes`] are the sums of the writes and deletes (for
    /// debug assertions).
    pub(crate) fn sizes_hold(&self) -> bool {
        self.sizes == PlanSizes::of(&self.writes, &self.deletes)
    }

    /// Lets go of the plan: its writes are dropped here (they may borrow
    /// the frozen slot's map), and the large buffers that held them and
    /// the touched keys are freed on a thread of their own (a 2M-operation
    /// fold's writes took 80 MB, and unmapping them 9-13 ms of the
    /// compaction's own time).
    pub(crate) fn release(self) {
        let Plan {
            writes,
            deletes,
            touched,
            ..
        } = self;
        // The writes' buffers are kept for the next fold (emptied here).
        for run in writes.into_runs() {
            WRITES.give(emptied(run));
        }
        let items = deletes.capacity() + touched.capacity();
        drop_large_elsewhere((deletes, touched), items);
    }
}

/// The frozen slots' operations' buffers, kept from fold to fold: a part
/// read and the same grouped by key, for each of up to two parts.
static OPS: Pool<FoldOp> = Pool::new(4);

/// An operation of a frozen slot, as a fold handles it: 32 bytes (where
/// the replay's `LoggedOp` takes 48), its payload given by where it lies
/// in the slot's body instead of as a slice, so that grouping a slot's
/// operations copies a third less (and a kept buffer of them borrows
/// nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FoldOp {
    seq: u64,
    key: u64,
    /// Where the payload starts in the slot's body.
    at: usize,
    len: u32,
    tag: Tag,
}

impl FoldOp {
    /// The payload, in `body`, the frozen slot's body the operation was
    /// read from (an error if it is not there: a fold's own mistake, never
    /// read past).
    fn payload<'a>(&self, silo: &Core, body: &'a [u8]) -> Result<&'a [u8]> {
        self.at
            .checked_add(self.len as usize)
            .and_then(|end| body.get(self.at..end))
            .ok_or_else(|| {
                Error::corrupt(
                    silo.dir.join("log (frozen slot)"),
                    self.at as u64,
                    "an operation's payload outside the slot it was read from",
                )
            })
    }
}
/// The plans' writes' buffers, kept from fold to fold: one run a thread.
static WRITES: Pool<KeyWrite<'static>> = Pool::new(2);

/// An empty run of writes for about `items` keys, in a kept buffer if
/// there is one.
fn writes_for<'a>(items: usize) -> Runs<KeyWrite<'a>> {
    WRITES
        .take(items)
        .map_or_else(Runs::default, |kept| Runs::in_buffer(emptied(kept)))
}

/// Vectors of at least this many items, in all, are freed on a thread of
/// their own once a compaction is done with them.
const FREE_ELSEWHERE_ITEMS: usize = 1 << 16;

/// `items` emptied (each dropped here), its buffer kept as a vector of
/// `U`: the same item type without its borrow (the same size and
/// alignment), so that the buffer can go to another thread to be freed.
/// Were the buffer not kept (items of another layout), it is freed here
/// and the vector returned is new and empty.
fn emptied<T, U>(mut items: Vec<T>) -> Vec<U> {
    items.clear();
    items.into_iter().filter_map(|_| None).collect()
}

/// Drops `value`, which holds `items` items' room, on a short-lived thread
/// of its own when that is large, here otherwise.
fn drop_large_elsewhere<T: Send + 'static>(value: T, items: usize) {
    if items >= FREE_ELSEWHERE_ITEMS {
        crate::compaction::drop_elsewhere(value);
    }
}

/// Computes the plan for the frozen slot body `body` whose first frame has `base_seq`.
/// With `threads` above 1, a large slot is read and planned on two threads.
///
/// The plan takes the slot's keys bucket by bucket, each bucket a range
/// of keys ([`Part::group`]), and within one in the order the keys first
/// appear in the slot: keys of a range lie together in the data file
/// (as they did when the plan was in key order), in the order they were
/// first written within each bucket. The order never depends on
/// `threads`.
pub(crate) fn compute<'a>(
    silo: &Core,
    tables: &Tables,
    body: &'a [u8],
    base_seq: u64,
    through_seq: u64,
    threads: usize,
) -> Result<Plan<'a>> {
    // One frame per sequence number: the buckets are sized for that many
    // operations at most, whoever reads which part.
    let frames = through_seq.saturating_sub(base_seq).saturating_add(1);
    let bits = bucket_bits(frames);
    let mut parts = read_slot(silo, body, base_seq, frames, bits, threads)?;
    let ops: u64 = parts.iter().map(|p| p.ops.len() as u64).sum();
    // Most folds write a key once for one or two of its operations.
    let keys = usize::try_from(ops / 2).unwrap_or(0);
    let mut plan = Plan {
        through_seq,
        ops,
        writes: writes_for(keys / parts.len().max(1)),
        max_tag: parts.iter().map(|p| p.max_tag).max().unwrap_or(0),
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
    let buckets = 1_usize << bits;
    if threads > 1 && plan.ops >= PARALLEL_PLAN_FROM as u64 && buckets > 1 {
        // Two runs of whole buckets, about half the operations each, each
        // grouped by key and planned by a thread of its own, joined in
        // order.
        let mid = split_bucket(&parts, buckets);
        let (mut firsts, mut seconds): (Vec<_>, Vec<_>) =
            parts.iter_mut().map(|p| p.split_at_bucket(mid)).unzip();
        let mut rest = Plan {
            writes: writes_for(keys / 2),
            ..Plan::default()
        };
        let (a, b) = both(
            || plan_buckets(silo, tables, &view, body, &mut firsts, folded, &mut plan),
            || plan_buckets(silo, tables, &view, body, &mut seconds, folded, &mut rest),
        );
        a?;
        b?;
        plan.writes.append(std::mem::take(&mut rest.writes));
        plan.deletes.append(&mut rest.deletes);
        plan.touched.append(&mut rest.touched);
        plan.refused.append(&mut rest.refused);
        plan.bytes_read += rest.bytes_read;
        plan.sizes = plan.sizes.with(rest.sizes);
    } else {
        let mut whole: Vec<_> = parts.iter_mut().map(|p| p.split_at_bucket(0).1).collect();
        plan_buckets(silo, tables, &view, body, &mut whole, folded, &mut plan)?;
    }
    append_if_sparse(&mut plan);
    // The operations read (96 MB for 2M) are kept for the next fold: the
    // plan holds what it needs of them.
    for part in parts {
        OPS.give(part.ops);
    }
    Ok(plan)
}

/// Reads the frozen slot body `body` (`frames` frames from `base_seq`)
/// into [`Part`]s grouped into `1 << bits` buckets: one part, or two read
/// and grouped by a thread each when `threads` allows, the slot is long
/// enough and it can be cut between batches ([`split_whole`]).
fn read_slot(
    silo: &Core,
    body: &[u8],
    base_seq: u64,
    frames: u64,
    bits: u32,
    threads: usize,
) -> Result<Vec<Part>> {
    let two = threads > 1 && body.len() >= PARALLEL_PLAN_FROM_BYTES;
    let Some((cut, before)) = two.then(|| split_whole(body)).flatten() else {
        let mut part = read_part(silo, body, 0, base_seq, frames)?;
        part.group(bits, part.keys);
        return Ok(vec![part]);
    };
    let (first, second) = body.split_at(cut);
    let rest = frames.saturating_sub(before);
    let (a, b) = both(
        || read_part(silo, first, 0, base_seq, before),
        || read_part(silo, second, cut, base_seq + before, rest),
    );
    let (mut a, mut b) = (a?, b?);
    // Both parts in the same buckets: over the keys of both.
    let range = a.keys.with(b.keys);
    both(|| a.group(bits, range), || b.group(bits, range));
    Ok(vec![a, b])
}

/// Bytes of a frozen slot from which [`compute`] reads it on two threads.
const PARALLEL_PLAN_FROM_BYTES: usize = 4 << 20;

/// Operations a bucket of [`Part::group`] holds on average: grouping it
/// by key runs in the CPU's cache.
const BUCKET_OPS: u64 = 256;

/// The most buckets [`Part::group`] makes (their counts take 8 bytes
/// each).
const MAX_BUCKET_BITS: u32 = 16;

/// The bucket bits for a slot of up to `ops` operations: about
/// [`BUCKET_OPS`] a bucket, one bucket below twice that.
fn bucket_bits(ops: u64) -> u32 {
    (ops / BUCKET_OPS)
        .checked_ilog2()
        .unwrap_or(0)
        .min(MAX_BUCKET_BITS)
}

/// A part of a frozen slot read ([`read_part`]), then grouped by key
/// ([`Part::group`]).
struct Part {
    ops: Vec<FoldOp>,
    /// Bucket `b` is `ops[starts[b]..starts[b + 1]]` (empty until grouped).
    starts: Vec<usize>,
    /// The range of the keys of `ops`.
    keys: KeyRange,
    max_tag: u64,
}

/// The keys of a slot's parts, lowest and highest, for bucketing.
#[derive(Clone, Copy, Debug)]
struct KeyRange {
    low: u64,
    high: u64,
}

impl KeyRange {
    /// No key: the start of a fold (its `low` above its `high`).
    const EMPTY: KeyRange = KeyRange {
        low: u64::MAX,
        high: 0,
    };

    /// The range holding both.
    fn with(self, other: KeyRange) -> KeyRange {
        KeyRange {
            low: self.low.min(other.low),
            high: self.high.max(other.high),
        }
    }
}

impl Part {
    /// The buckets before `mid` and those from it, as [`Buckets`].
    fn split_at_bucket(&mut self, mid: usize) -> (Buckets<'_>, Buckets<'_>) {
        let (first, second) = self.ops.split_at_mut(self.starts[mid]);
        (
            Buckets {
                ops: first,
                starts: &self.starts[..=mid],
            },
            Buckets {
                ops: second,
                starts: &self.starts[mid..],
            },
        )
    }
}

/// A run of whole buckets of a [`Part`]: bucket `i` of the run is
/// `ops[starts[i] - starts[0]..starts[i + 1] - starts[0]]`.
struct Buckets<'p> {
    ops: &'p mut [FoldOp],
    starts: &'p [usize],
}

impl Buckets<'_> {
    /// Bucket `i` of the run (empty past its end).
    fn bucket(&mut self, i: usize) -> &mut [FoldOp] {
        let base = self.starts[0];
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(from), Some(to)) => &mut self.ops[from - base..to - base],
            _ => &mut [],
        }
    }

    fn len(&self) -> usize {
        self.starts.len() - 1
    }
}

/// Reads `body` (a whole frozen slot, or a part of one starting at a
/// frame outside any batch, `offset` bytes into the slot, its first frame
/// numbered `base_seq`, holding `frames` frames by the slot's sequence
/// numbers), in sequence order.
fn read_part(silo: &Core, body: &[u8], offset: usize, base_seq: u64, frames: u64) -> Result<Part> {
    // One operation a frame at most (batch frames take some), and never
    // more than the body has room for frames: the vector is sized once
    // instead of growing by copies, and never by the body alone (a slot of
    // a few large values would ask for millions of operations).
    let room = (body.len() / silo_format::frame_len(0)) as u64;
    let want = usize::try_from(frames.min(room)).unwrap_or(0);
    let mut ops = OPS.take(want).unwrap_or_else(|| Vec::with_capacity(want));
    // The frozen slot was synced whole at freeze: every byte of it is
    // durable, so any stop before its end is damage, and its frames are
    // checked again (its pages may have been read back from disk). On
    // damage the operations read so far are dropped with the part.
    let mut keys = KeyRange::EMPTY;
    let end = replay_whole(body, base_seq, READ_LIMIT, |op| {
        keys.low = keys.low.min(op.key);
        keys.high = keys.high.max(op.key);
        ops.push(FoldOp {
            seq: op.seq,
            key: op.key,
            at: offset + op.payload_at,
            // Never above `READ_LIMIT`; if it were, the payload would not
            // be found in the slot.
            len: u32::try_from(op.payload.len()).unwrap_or(u32::MAX),
            tag: op.tag,
        });
    })
    .map_err(|c| {
        Error::corrupt(
            silo.dir.join("log (frozen slot)"),
            (offset + c.at) as u64,
            c.reason,
        )
    })?;
    Ok(Part {
        ops,
        starts: Vec::new(),
        keys,
        max_tag: end.max_tag,
    })
}

impl Part {
    /// Spreads the operations into `1 << bits` buckets of consecutive key
    /// ranges of equal width over `range`, copying them in order into a
    /// second buffer (kept from fold to fold, as the first one is): a
    /// bucket's operations stay in slot order. A key's operations all fall
    /// in one bucket, and grouping each bucket by key ([`plan_buckets`])
    /// then brings each key's operations together, in a bucket small
    /// enough for the CPU's cache when the keys spread evenly over their
    /// range (random keys, or consecutive ones). Keys bunched in a few
    /// places make a few large buckets, grouped as fast a key, from
    /// memory instead of the cache.
    fn group(&mut self, bits: u32, range: KeyRange) {
        let buckets = 1_usize << bits;
        let width = u64::BITS - range.high.saturating_sub(range.low).leading_zeros();
        let shift = width.saturating_sub(bits);
        let mut grouped = OPS.take(self.ops.len()).unwrap_or_default();
        self.starts = into_windows_in(
            &self.ops,
            buckets,
            |op| {
                let offset = op.key.saturating_sub(range.low);
                usize::try_from(offset.checked_shr(shift).unwrap_or(0)).unwrap_or(usize::MAX)
            },
            &mut grouped,
        );
        let read = std::mem::replace(&mut self.ops, grouped);
        OPS.give(read);
    }
}

/// The bucket nearest the middle of the operations of `parts`, at least 1
/// and below `buckets`.
fn split_bucket(parts: &[Part], buckets: usize) -> usize {
    let before = |b: usize| parts.iter().map(|p| p.starts[b]).sum::<usize>();
    let half = before(buckets) / 2;
    let (mut lo, mut hi) = (1, buckets - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) < half {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Plans the buckets of `runs` (the same buckets of every part read) in
/// order: each bucket's operations, from every part in slot order, grouped
/// by key ([`KeyGroups`]: the keys in the order they first appear, each
/// key's operations in sequence order) and planned ([`plan_keys`]) while
/// they are in the CPU's cache.
fn plan_buckets<'a>(
    silo: &Core,
    tables: &Tables,
    view: &ReadMap,
    body: &'a [u8],
    runs: &mut [Buckets<'_>],
    folded: u64,
    plan: &mut Plan<'a>,
) -> Result<()> {
    let buckets = runs.iter().map(Buckets::len).max().unwrap_or(0);
    let mut gathered: Vec<FoldOp> = Vec::new();
    let (mut keys, mut by_key) = (KeyGroups::default(), Vec::new());
    for b in 0..buckets {
        let mut filled = runs
            .iter_mut()
            .map(|r| r.bucket(b))
            .filter(|o| !o.is_empty());
        let (Some(first), second) = (filled.next(), filled.next()) else {
            continue;
        };
        let bucket = match second {
            // From one part: grouped from where it is.
            None => first,
            // From several: gathered (the parts in slot order).
            Some(second) => {
                gathered.clear();
                gathered.extend_from_slice(first);
                gathered.extend_from_slice(second);
                for more in filled {
                    gathered.extend_from_slice(more);
                }
                &mut gathered[..]
            }
        };
        let ops = match keys.group(bucket, |op| op.key, &mut by_key) {
            Grouped::AsTheyAre => &*bucket,
            Grouped::Copied => &by_key[..],
        };
        plan_keys(silo, tables, view, body, ops, folded, plan)?;
    }
    Ok(())
}

/// In-place results of at least this many bytes, in all, may be appended
/// instead (below it, in place costs little either way).
pub(crate) const SPARSE_FROM: u64 = 4 << 20;

/// Costs of the two ways to write the in-place results, in nanoseconds,
/// as measured here: a write call per run of adjacent records; a dirtied
/// page written back through the page cache (4 KiB at about 400 MB/s);
/// and per byte appended past the page cache, counting the cold rewrite
/// its dead space brings nearer (the old record becomes dead, and a
/// rewrite due at a dead ratio `d` copies `(1 - d) / d` live bytes for each
/// dead one: four at 0.2, two at the default third). The byte's cost was
/// measured with rewrites at 0.2 and is kept at the default: it errs
/// towards in place, which leaves no dead space.
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
    debug_assert!(plan.sizes_hold());
    let page = silo_io::direct::DIRECT_ALIGN as u64;
    // Most folds stop here, before anything is gathered.
    let bytes = plan.sizes.in_place;
    if bytes < SPARSE_FROM {
        return;
    }
    let in_place = plan.writes.iter().filter_map(|w| match w.place {
        Place::InPlace { offset, alloc } => Some((offset, record_size(alloc) as u64)),
        Place::Append { .. } => None,
    });
    let (runs, pages) = runs_and_pages(in_place.collect(), page);
    let in_place_cost = runs
        .saturating_mul(RUN_NS)
        .saturating_add(pages.saturating_mul(PAGE_NS));
    if in_place_cost <= bytes.saturating_mul(APPENDED_BYTE_NS) {
        return;
    }
    for w in plan.writes.iter_mut() {
        if let Place::InPlace { alloc, .. } = w.place {
            w.place = Place::Append { alloc };
        }
    }
    plan.sizes = PlanSizes::of(&plan.writes, &plan.deletes);
}

/// How many runs of adjacent records `records` (offset, size; sizes above
/// 0) make, and how many distinct pages of `page` bytes they touch.
fn runs_and_pages(mut records: Vec<(u64, u64)>, page: u64) -> (u64, u64) {
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
    (runs, pages)
}

/// Operations in a frozen slot from which [`compute`] plans on two
/// threads (below it, the thread costs more than it saves).
pub(crate) const PARALLEL_PLAN_FROM: usize = 1 << 16;

/// Plans the keys of `ops` (grouped by key, each key's operations whole
/// and in sequence order) into `plan`'s writes, deletes, touched keys and
/// refusals.
fn plan_keys<'a>(
    silo: &Core,
    tables: &Tables,
    view: &ReadMap,
    body: &'a [u8],
    ops: &[FoldOp],
    folded: u64,
    plan: &mut Plan<'a>,
) -> Result<()> {
    let mut at = 0;
    for group in ops.chunk_by(|a, b| a.key == b.key) {
        debug_assert!(group.is_sorted_by_key(|op| op.seq));
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
                if live[i].tag == Tag::Put {
                    Some(live[i].payload(silo, body)?)
                } else {
                    None
                },
                &live[i + 1..],
            ),
            None => (stored.map(|(_, _, r)| r.value), live),
        };
        let value: Option<Cow<'a, [u8]>> = if merges.is_empty() {
            // The slot's last operation is a put or delete and settles it.
            if last.tag == Tag::Put {
                Some(Cow::Borrowed(last.payload(silo, body)?))
            } else {
                None
            }
        } else {
            let operands = merges
                .iter()
                .map(|op| op.payload(silo, body))
                .collect::<Result<Vec<&[u8]>>>()?;
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
                    plan.sizes.moved += old.size;
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
                let write = KeyWrite {
                    key,
                    seq,
                    value,
                    place,
                    old,
                };
                plan.sizes.add(&write);
                plan.writes.push(write);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::replay::LoggedOp;

    #[test]
    fn runs_and_pages_count_adjacent_records_and_the_pages_they_touch() {
        // Nothing; one record filling a page exactly; one ending on the
        // next page's first byte.
        assert_eq!(runs_and_pages(Vec::new(), 4096), (0, 0));
        assert_eq!(runs_and_pages(vec![(4096, 4096)], 4096), (1, 1));
        assert_eq!(runs_and_pages(vec![(4096, 4097)], 4096), (1, 2));
        // Two adjacent records (one run) meeting on a page boundary, then a
        // record apart on the second one's last page, then one on a page
        // of its own; given out of order.
        let records = vec![(20_000, 100), (0, 4096), (4096, 8192), (12_000, 96)];
        assert_eq!(runs_and_pages(records, 4096), (3, 4));
        // Records sharing a page are counted once a page.
        assert_eq!(runs_and_pages(vec![(0, 100), (200, 100)], 4096), (2, 1));
    }

    /// Tells which thread dropped it.
    struct DroppedOn(std::sync::mpsc::Sender<std::thread::ThreadId>);

    impl Drop for DroppedOn {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }

    #[test]
    fn large_buffers_are_freed_on_another_thread_and_small_ones_here() {
        let here = std::thread::current().id();
        for (items, elsewhere) in [
            (FREE_ELSEWHERE_ITEMS, true),
            (FREE_ELSEWHERE_ITEMS - 1, false),
        ] {
            let (tx, rx) = std::sync::mpsc::channel();
            drop_large_elsewhere(DroppedOn(tx), items);
            let on = rx
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("dropped");
            assert_eq!(on != here, elsewhere, "{items} items");
        }
    }

    #[test]
    fn an_emptied_vector_keeps_its_buffer_without_the_borrow() {
        let body = vec![7u8; 64];
        let op = LoggedOp {
            seq: 1,
            tag: Tag::Put,
            key: 2,
            payload: &body[..],
            payload_at: 0,
        };
        let ops = vec![op; 1000];
        let (at, room) = (ops.as_ptr() as usize, ops.capacity());
        let kept: Vec<LoggedOp<'static>> = emptied(ops);
        // The same buffer, nothing in it: freeing it elsewhere frees the
        // operations' memory, not a copy's.
        assert_eq!((kept.as_ptr() as usize, kept.capacity()), (at, room));
        assert!(kept.is_empty());
        // An emptied vector, emptied again (as the fold's pools do): still
        // the same buffer.
        let again: Vec<LoggedOp<'_>> = emptied(kept);
        assert_eq!((again.as_ptr() as usize, again.capacity()), (at, room));
        // Items of another size: a new, empty vector (the old buffer was
        // freed where it was).
        let other: Vec<u8> = emptied(vec![op; 10]);
        assert!(other.is_empty());
        drop(body);
    }
}

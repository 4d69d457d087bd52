//! Reading a log slot back: committed operations in order, with their
//! sequence numbers, and where the valid part of the slot ends.
//!
//! Frames inside a batch (between `BatchBegin` and a matching
//! `BatchCommit`) are delivered only once the commit frame is read, so a
//! batch cut off by a crash is dropped whole.

use silo_format::{Frame, FrameReader, LogEnd, Tag};

/// One committed operation read from a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoggedOp<'a> {
    /// Its sequence number: the slot's base plus the frame's ordinal.
    pub(crate) seq: u64,
    /// Put, Delete or Merge.
    pub(crate) tag: Tag,
    /// The key.
    pub(crate) key: u64,
    /// The value or operand (empty for Delete).
    pub(crate) payload: &'a [u8],
    /// Where the payload starts in the body.
    pub(crate) payload_at: usize,
}

/// How reading a slot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplayEnd {
    /// Offset in the body just past the last committed frame: writing resumes here.
    pub(crate) valid_len: usize,
    /// Frames (batch markers included) before `valid_len`.
    pub(crate) frames: u64,
    /// Non-zero bytes after `valid_len` that were dropped (a torn tail, a cut-off batch,
    /// or, with `recover_corrupt`, everything after the damage).
    pub(crate) dropped_bytes: u64,
    /// Where the reader stopped and why.
    pub(crate) end: LogEnd,
    /// The highest tag of a committed tagged batch (0: none).
    pub(crate) max_tag: u64,
}

/// Corruption in the middle of a log: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplayCorrupt {
    /// Offset in the body of the first bad byte.
    pub(crate) at: usize,
    /// What is wrong.
    pub(crate) reason: String,
}

/// Counts the frames at the start of `body` from their headers alone (no
/// checksums): a cheap estimate of a slot's operations for sizing tables.
pub(crate) fn count_frames(body: &[u8]) -> usize {
    let mut at = 0;
    let mut count = 0;
    while let Some(head) = body.get(at..at + silo_format::FRAME_HEADER_LEN) {
        if head[0] == 0 {
            break;
        }
        let len = u32::from_le_bytes([head[9], head[10], head[11], head[12]]);
        at += silo_format::frame_len(len as usize);
        count += 1;
    }
    count
}

/// Where a body of committed frames only (see [`replay_whole`]) may be cut
/// near its middle so that each part replays on its own: the first frame
/// boundary at or past the middle that lies outside every batch. Returns
/// the offset and the frames before it, or `None` when there is no such
/// boundary inside the body. Reads the frame headers of the first
/// half only, without checksums: a damaged header can only misplace the
/// cut, and then replaying the parts fails (each must hold whole, valid
/// frames to its end), as replaying the whole would.
pub(crate) fn split_whole(body: &[u8]) -> Option<(usize, u64)> {
    let half = body.len() / 2;
    let (mut at, mut frames, mut in_batch) = (0_usize, 0_u64, false);
    while let Some(head) = body.get(at..at + silo_format::FRAME_HEADER_LEN) {
        let len = u32::from_le_bytes([head[9], head[10], head[11], head[12]]);
        match Tag::from_u8(head[0]) {
            Some(Tag::BatchBegin) => in_batch = true,
            Some(Tag::BatchCommit) => in_batch = false,
            Some(_) => {}
            None => return None,
        }
        at = at.checked_add(silo_format::frame_len(usize::try_from(len).ok()?))?;
        frames += 1;
        if !in_batch && at >= half {
            return (at < body.len()).then_some((at, frames));
        }
    }
    None
}

/// An open batch: where it started and how many operations it has so far.
struct OpenBatch {
    start: usize,
    start_frames: u64,
    expected: u64,
    tag: u64,
    seen: u64,
}

/// Reads `body` (a slot's bytes after its header) and calls `each` for
/// every committed operation in order. `base_seq` is the sequence number of
/// the slot's first frame; the first `durable` bytes of the body are known
/// to have been synced, so a stop before them is damage, not a torn write,
/// and whatever stops it after them is a torn tail. With `recover_corrupt`,
/// damage ends the slot at the damage instead of failing.
pub(crate) fn replay<'a>(
    body: &'a [u8],
    base_seq: u64,
    durable: usize,
    max_payload: u32,
    recover_corrupt: bool,
    each: impl FnMut(LoggedOp<'a>),
) -> Result<ReplayEnd, ReplayCorrupt> {
    let reader = FrameReader::new(body).with_max_payload(max_payload);
    replay_from(
        reader,
        base_seq,
        durable,
        recover_corrupt,
        Batches::Held,
        each,
    )
}

/// [`replay`] of a body that must hold nothing but committed operations
/// (a frozen slot, synced whole): any stop before its end is an error.
/// The operations of a batch are given to `each` as they are read, not
/// held until its commit frame, so the caller must discard everything
/// `each` was given when this fails.
pub(crate) fn replay_whole<'a>(
    body: &'a [u8],
    base_seq: u64,
    max_payload: u32,
    each: impl FnMut(LoggedOp<'a>),
) -> Result<ReplayEnd, ReplayCorrupt> {
    let reader = FrameReader::new(body).with_max_payload(max_payload);
    replay_from(reader, base_seq, body.len(), false, Batches::Streamed, each)
}

/// Whether a batch's operations wait for its commit frame before `each`
/// sees them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Batches {
    /// Held until the commit (a batch cut off by the end is never seen).
    Held,
    /// Given as read (the caller discards everything on an error).
    Streamed,
}

fn replay_from<'a>(
    mut reader: FrameReader<'a>,
    base_seq: u64,
    durable: usize,
    recover_corrupt: bool,
    batches: Batches,
    mut each: impl FnMut(LoggedOp<'a>),
) -> Result<ReplayEnd, ReplayCorrupt> {
    let body = reader.bytes();
    let mut frames: u64 = 0;
    let mut batch: Option<OpenBatch> = None;
    // The held operations of the open batch; one buffer for every batch.
    let mut held: Vec<LoggedOp<'a>> = Vec::new();
    let mut committed_len = 0usize;
    let mut committed_frames = 0u64;
    let mut mid_log_error: Option<ReplayCorrupt> = None;
    let mut max_tag = 0u64;
    for (offset, Frame { tag, key, payload }) in reader.by_ref() {
        let seq = base_seq + frames;
        frames += 1;
        let end_of_frame = offset + silo_format::frame_len(payload.len());
        let op = LoggedOp {
            seq,
            tag,
            key,
            payload,
            payload_at: offset + silo_format::FRAME_HEADER_LEN,
        };
        match (tag, batch.as_mut()) {
            (Tag::BatchBegin, None) if batch_tag(payload).is_some() => {
                batch = Some(OpenBatch {
                    start: offset,
                    start_frames: frames - 1,
                    expected: key,
                    tag: batch_tag(payload).unwrap_or(0),
                    seen: 0,
                });
            }
            (Tag::BatchCommit, Some(open)) if open.seen == key && key == open.expected => {
                for op in held.drain(..) {
                    each(op);
                }
                max_tag = max_tag.max(open.tag);
                batch = None;
                committed_len = end_of_frame;
                committed_frames = frames;
            }
            (Tag::Put | Tag::Delete | Tag::Merge, Some(open)) if open.seen < open.expected => {
                open.seen += 1;
                match batches {
                    Batches::Held => held.push(op),
                    Batches::Streamed => each(op),
                }
            }
            (Tag::Put | Tag::Delete | Tag::Merge, None) => {
                each(op);
                committed_len = end_of_frame;
                committed_frames = frames;
            }
            _ => {
                mid_log_error = Some(ReplayCorrupt {
                    at: offset,
                    reason: format!("unexpected {tag:?} frame (key {key}) for the open batch"),
                });
                break;
            }
        }
    }
    let end = reader.end().unwrap_or(LogEnd::Clean {
        at: reader.position(),
    });
    let valid_len = batch.as_ref().map_or(committed_len, |b| b.start);
    // Whatever ends the log past its durable mark is a torn tail, even a
    // bad frame with valid frames after it: nothing there was promised, and
    // a power cut may write the unsynced pages back in any order (a zero
    // page, then a page of valid frames). Only a stop before the mark is
    // damage.
    let damage = match (&mid_log_error, &end) {
        _ if valid_len >= durable => None,
        (Some(e), _) => Some(e.clone()),
        (None, LogEnd::Corrupt { at, reason }) => Some(ReplayCorrupt {
            at: *at,
            reason: format!("{reason:?} with valid-looking data after it"),
        }),
        (None, end) => Some(ReplayCorrupt {
            at: end.at(),
            reason: format!(
                "the log ends at byte {valid_len} ({end:?}) but its first {durable} bytes were synced"
            ),
        }),
    };
    if let Some(damage) = damage
        && !recover_corrupt
    {
        return Err(damage);
    }
    let frames = batch.as_ref().map_or(committed_frames, |b| b.start_frames);
    let tail = body.get(valid_len..).unwrap_or_default();
    let dropped_bytes = silo_format::last_nonzero(tail).map_or(0, |p| p as u64 + 1);
    Ok(ReplayEnd {
        valid_len,
        frames,
        dropped_bytes,
        end,
        max_tag,
    })
}

/// A BatchBegin payload's tag: empty (0, untagged) or 8 bytes; `None` for
/// any other length.
fn batch_tag(payload: &[u8]) -> Option<u64> {
    match payload.len() {
        0 => Some(0),
        _ => payload.try_into().ok().map(u64::from_le_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_format::encode_frame;

    fn push(buf: &mut Vec<u8>, tag: Tag, key: u64, payload: &[u8]) {
        let start = buf.len();
        buf.resize(start + silo_format::frame_len(payload.len()), 0);
        encode_frame(&mut buf[start..], tag, key, payload).expect("fits");
    }

    /// Replays `body` at base 100 with its first `durable` bytes synced.
    fn collect_with(
        body: &[u8],
        durable: usize,
        recover: bool,
    ) -> Result<(Vec<(u64, u64)>, ReplayEnd), ReplayCorrupt> {
        let mut ops = Vec::new();
        let end = replay(body, 100, durable, 1 << 20, recover, |op| {
            ops.push((op.seq, op.key))
        })?;
        Ok((ops, end))
    }

    /// Replays `body` with every byte of it synced.
    fn collect(body: &[u8], recover: bool) -> Result<(Vec<(u64, u64)>, ReplayEnd), ReplayCorrupt> {
        collect_with(body, body.len(), recover)
    }

    #[test]
    fn sequence_numbers_count_every_frame_including_batch_markers() {
        let mut b = Vec::new();
        push(&mut b, Tag::Put, 1, b"a");
        push(&mut b, Tag::BatchBegin, 2, b"");
        push(&mut b, Tag::Put, 2, b"b");
        push(&mut b, Tag::Delete, 3, b"");
        push(&mut b, Tag::BatchCommit, 2, b"");
        push(&mut b, Tag::Merge, 4, b"c");
        let len = b.len();
        b.resize(len + 64, 0);
        let (ops, end) = collect_with(&b, len, false).expect("clean");
        assert_eq!(ops, vec![(100, 1), (102, 2), (103, 3), (105, 4)]);
        assert_eq!((end.valid_len, end.frames, end.dropped_bytes), (len, 6, 0));
    }

    #[test]
    fn the_highest_tag_of_the_committed_batches_is_reported() {
        let mut b = Vec::new();
        push(&mut b, Tag::BatchBegin, 1, &9u64.to_le_bytes());
        push(&mut b, Tag::Put, 1, b"a");
        push(&mut b, Tag::BatchCommit, 1, b"");
        push(&mut b, Tag::BatchBegin, 1, &4u64.to_le_bytes());
        push(&mut b, Tag::Put, 2, b"b");
        push(&mut b, Tag::BatchCommit, 1, b"");
        push(&mut b, Tag::BatchBegin, 1, b"");
        push(&mut b, Tag::Put, 3, b"c");
        push(&mut b, Tag::BatchCommit, 1, b"");
        let committed = b.len();
        // A tagged batch cut off by a crash takes its tag with it.
        push(&mut b, Tag::BatchBegin, 1, &12u64.to_le_bytes());
        push(&mut b, Tag::Put, 4, b"d");
        let (ops, end) = collect_with(&b, committed, false).expect("torn tail");
        assert_eq!(ops, vec![(101, 1), (104, 2), (107, 3)]);
        assert_eq!((end.max_tag, end.valid_len), (9, committed));
    }

    #[test]
    fn a_batch_begin_with_a_payload_that_is_no_tag_is_damage() {
        let mut b = Vec::new();
        push(&mut b, Tag::Put, 1, b"a");
        let bad = b.len();
        push(&mut b, Tag::BatchBegin, 1, b"abc");
        push(&mut b, Tag::Put, 2, b"b");
        push(&mut b, Tag::BatchCommit, 1, b"");
        let err = collect(&b, false).expect_err("damage before the durable mark");
        assert_eq!(err.at, bad);
        let (ops, end) = collect(&b, true).expect("recovered");
        assert_eq!((ops, end.valid_len, end.max_tag), (vec![(100, 1)], bad, 0));
    }

    #[test]
    fn a_batch_cut_off_is_dropped_whole() {
        let mut b = Vec::new();
        push(&mut b, Tag::Put, 1, b"a");
        let batch_start = b.len();
        push(&mut b, Tag::BatchBegin, 2, b"");
        push(&mut b, Tag::Put, 2, b"b");
        push(&mut b, Tag::Put, 3, b"c");
        let (ops, end) = collect_with(&b, batch_start, false).expect("torn, not corrupt");
        assert_eq!(ops, vec![(100, 1)]);
        assert_eq!((end.valid_len, end.frames), (batch_start, 1));
        // Every byte from the cut batch's start to its last non-zero byte.
        let tail = silo_format::last_nonzero(&b[batch_start..]).map_or(0, |p| p + 1);
        assert_eq!(end.dropped_bytes, tail as u64);
    }

    #[test]
    fn a_commit_that_counts_fewer_operations_than_its_begin_is_corruption() {
        // Regression (mutation testing): a commit whose count matches the
        // operations read but not its BatchBegin must not deliver the batch.
        let mut b = Vec::new();
        push(&mut b, Tag::BatchBegin, 2, b"");
        push(&mut b, Tag::Put, 2, b"b");
        let commit = b.len();
        push(&mut b, Tag::BatchCommit, 1, b"");
        let err = collect(&b, false).expect_err("a batch missing an operation");
        assert_eq!(err.at, commit);
    }

    #[test]
    fn an_operation_past_its_batch_count_is_corruption_where_it_stands() {
        let mut b = Vec::new();
        push(&mut b, Tag::BatchBegin, 1, b"");
        push(&mut b, Tag::Put, 2, b"b");
        let extra = b.len();
        push(&mut b, Tag::Put, 3, b"c");
        push(&mut b, Tag::BatchCommit, 2, b"");
        let err = collect(&b, false).expect_err("one operation too many");
        assert_eq!(err.at, extra);
        assert!(err.reason.contains("for the open batch"), "{}", err.reason);
    }

    /// A body of batches, loose operations and a tagged batch: 3 batches
    /// of 4 puts around the middle, a loose put between each.
    fn whole_body() -> Vec<u8> {
        let mut b = Vec::new();
        for batch in 0..3u64 {
            push(&mut b, Tag::Put, 1000 + batch, b"loose");
            let tag = 7u64 + batch;
            push(&mut b, Tag::BatchBegin, 4, &tag.to_le_bytes());
            for k in 0..4 {
                push(&mut b, Tag::Put, batch * 10 + k, &[b'v'; 40]);
            }
            push(&mut b, Tag::BatchCommit, 4, b"");
        }
        b
    }

    #[test]
    fn a_whole_body_replays_the_same_with_batches_streamed() {
        let b = whole_body();
        let mut held = Vec::new();
        let end = replay(&b, 100, b.len(), 1 << 20, false, |op| held.push(op)).expect("held");
        let mut streamed = Vec::new();
        let whole = replay_whole(&b, 100, 1 << 20, |op| streamed.push(op)).expect("whole");
        assert_eq!(streamed, held);
        assert_eq!(held.len(), 15);
        assert_eq!(whole, end);
        assert_eq!(whole.max_tag, 9);
        // A batch cut off by the end, or a stop before it, is an error: the
        // body must hold committed frames only.
        let cut = b.len() - silo_format::frame_len(0);
        assert!(replay_whole(&b[..cut], 100, 1 << 20, |_| {}).is_err());
        let mut damaged = b.clone();
        damaged[20] ^= 1;
        assert!(replay_whole(&damaged, 100, 1 << 20, |_| {}).is_err());
    }

    #[test]
    fn a_whole_body_is_cut_outside_batches_and_its_parts_replay_to_the_whole() {
        let b = whole_body();
        let (cut, before) = split_whole(&b).expect("a cut");
        assert!(cut >= b.len() / 2 && cut < b.len(), "{cut} of {}", b.len());
        let mut whole = Vec::new();
        replay_whole(&b, 100, 1 << 20, |op| whole.push((op.seq, op.key, op.tag))).expect("whole");
        let mut parts = Vec::new();
        let first = replay_whole(&b[..cut], 100, 1 << 20, |op| {
            parts.push((op.seq, op.key, op.tag));
        })
        .expect("first part");
        assert_eq!(first.frames, before);
        replay_whole(&b[cut..], 100 + before, 1 << 20, |op| {
            parts.push((op.seq, op.key, op.tag));
        })
        .expect("second part");
        assert_eq!(parts, whole);
        // The cut starts a frame outside a batch: a loose put or a batch.
        assert!(
            b[cut] == Tag::Put as u8 || b[cut] == Tag::BatchBegin as u8,
            "{}",
            b[cut]
        );
        // One batch across the middle: no cut. Too short to cut, or a
        // header that names no frame: none either.
        let mut one = Vec::new();
        push(&mut one, Tag::BatchBegin, 8, b"");
        for k in 0..8 {
            push(&mut one, Tag::Put, k, b"value");
        }
        push(&mut one, Tag::BatchCommit, 8, b"");
        assert_eq!(split_whole(&one), None);
        assert_eq!(split_whole(&[]), None);
        let mut single = Vec::new();
        push(&mut single, Tag::Put, 1, b"a");
        assert_eq!(split_whole(&single), None);
        let mut zeroed = b.clone();
        zeroed[..13].fill(0);
        assert_eq!(split_whole(&zeroed), None);
    }

    #[test]
    fn damage_in_the_middle_is_an_error_unless_recovering() {
        let mut b = Vec::new();
        push(&mut b, Tag::Put, 1, b"a");
        let second = b.len();
        push(&mut b, Tag::Put, 2, b"b");
        push(&mut b, Tag::Put, 3, b"c");
        b[second + 14] ^= 0x40;
        let err = collect(&b, false).expect_err("corrupt");
        assert_eq!(err.at, second);
        assert!(
            err.reason.contains("valid-looking data after it"),
            "{}",
            err.reason
        );
        let (ops, end) = collect(&b, true).expect("recovered");
        assert_eq!(ops, vec![(100, 1)]);
        assert_eq!(end.valid_len, second);
    }

    #[test]
    fn damage_past_the_durable_mark_is_a_torn_tail() {
        let mut b = Vec::new();
        push(&mut b, Tag::Put, 1, b"a");
        let synced = b.len();
        // A zeroed page of the unsynced tail, then a valid frame a power cut
        // wrote back out of order.
        b.resize(synced + 64, 0);
        push(&mut b, Tag::Put, 2, b"b");
        let (ops, end) = collect_with(&b, synced, false).expect("torn, not damage");
        assert_eq!(ops, vec![(100, 1)]);
        assert_eq!(end.valid_len, synced);
        assert!(end.dropped_bytes > 0);
        // The same bytes with the mark past the gap are damage.
        let err = collect_with(&b, b.len(), false).expect_err("damage before the mark");
        assert_eq!(err.at, synced);
        // A flipped byte in an unsynced frame with a valid frame after it: torn.
        let mut c = Vec::new();
        push(&mut c, Tag::Put, 1, b"a");
        let second = c.len();
        push(&mut c, Tag::Put, 2, b"b");
        push(&mut c, Tag::Put, 3, b"c");
        c[second + 14] ^= 0x40;
        let (ops, end) = collect_with(&c, second, false).expect("past the mark");
        assert_eq!((ops.len(), end.valid_len), (1, second));
        assert!(collect_with(&c, second + 1, false).is_err());
    }

    #[test]
    fn a_commit_with_the_wrong_count_is_corruption() {
        let mut b = Vec::new();
        push(&mut b, Tag::BatchBegin, 1, b"");
        push(&mut b, Tag::Put, 2, b"b");
        push(&mut b, Tag::BatchCommit, 2, b"");
        push(&mut b, Tag::Put, 3, b"c");
        assert!(collect(&b, false).is_err());
    }

    #[test]
    fn a_stop_inside_the_synced_length_is_damage() {
        let mut b = Vec::new();
        push(&mut b, Tag::Put, 1, b"a");
        push(&mut b, Tag::Delete, 2, b"");
        let synced = b.len();
        b[synced - 1] ^= 1;
        let mut ops = 0;
        assert!(replay(&b, 1, synced, 1 << 20, false, |_| ops += 1).is_err());
        // Without the synced length it reads as a torn last write.
        let end = replay(&b, 1, 0, 1 << 20, false, |_| {}).expect("torn");
        assert_eq!(end.valid_len, synced - silo_format::frame_len(0));
    }

    #[test]
    fn frames_are_counted_from_their_headers() {
        let mut b = Vec::new();
        push(&mut b, Tag::Put, 1, b"abc");
        push(&mut b, Tag::BatchBegin, 1, b"");
        push(&mut b, Tag::Merge, 2, &[7; 300]);
        assert_eq!(count_frames(&b), 3);
        b.resize(b.len() + 100, 0);
        assert_eq!(count_frames(&b), 3);
        assert_eq!(count_frames(&b[..5]), 0);
    }
}

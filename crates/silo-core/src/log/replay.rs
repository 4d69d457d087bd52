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

/// An open batch: where it started and what it holds so far.
struct OpenBatch<'a> {
    start: usize,
    start_frames: u64,
    expected: u64,
    tag: u64,
    ops: Vec<LoggedOp<'a>>,
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
    replay_from(reader, base_seq, durable, recover_corrupt, each)
}

fn replay_from<'a>(
    mut reader: FrameReader<'a>,
    base_seq: u64,
    durable: usize,
    recover_corrupt: bool,
    mut each: impl FnMut(LoggedOp<'a>),
) -> Result<ReplayEnd, ReplayCorrupt> {
    let body = reader.bytes();
    let mut frames: u64 = 0;
    let mut batch: Option<OpenBatch<'a>> = None;
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
                    ops: Vec::new(),
                });
            }
            (Tag::BatchCommit, Some(open))
                if open.ops.len() as u64 == key && key == open.expected =>
            {
                for op in open.ops.drain(..) {
                    each(op);
                }
                max_tag = max_tag.max(open.tag);
                batch = None;
                committed_len = end_of_frame;
                committed_frames = frames;
            }
            (Tag::Put | Tag::Delete | Tag::Merge, Some(open))
                if (open.ops.len() as u64) < open.expected =>
            {
                open.ops.push(op);
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

//! The batch log `batches`: the engine's record of its cross-shard batches.
//!
//! A batch that spans shards is appended here whole, as one frame, and
//! synced before any shard sees a part of it; the parts then go to their
//! shards tagged with the batch's number ([`silo_core::WriteBatch::set_tag`]).
//! After a crash, every batch here whose number is above a shard's batch
//! tag is missing from that shard and is applied again, so a batch is in
//! every shard or (if its frame never became whole) in none. Once every
//! shard has synced its parts, the log is emptied.
//!
//! Layout (docs/FORMAT.md, "Batch log `batches`"): a file header of kind
//! BatchLog whose `base_seq` is the first batch number the log may hold,
//! then one frame per batch: tag BatchBegin, key = the batch number
//! (consecutive from `base_seq`), payload = its operations, each
//! `tag u8 | key u64 | len u32 | bytes [len]`.

use std::path::{Path, PathBuf};

use silo_core::{BatchOp, WriteBatch};
use silo_format::{FileHeader, FileKind, FrameReader, HEADER_LEN, LogEnd, Tag};
use silo_io::durable::{create_with_header, read_header};
use silo_io::file::SiloFile;

use crate::error::{EngineError, Result};

/// The batch log's file name.
pub(crate) const BATCH_LOG_NAME: &str = "batches";

/// Bytes of an operation's header in a batch frame: tag, key, len.
const OP_HEADER_LEN: usize = 13;

/// A batch read back from the log.
#[derive(Clone, Debug)]
pub(crate) struct LoggedBatch {
    pub(crate) number: u64,
    pub(crate) batch: WriteBatch,
}

/// The open batch log.
#[derive(Debug)]
pub(crate) struct BatchLog {
    file: SiloFile,
    path: PathBuf,
    /// Where the next frame goes.
    end: u64,
    /// The first batch number the log may hold (its header's `base_seq`).
    base: u64,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
}

impl BatchLog {
    /// Opens (or creates) the batch log of `dir` and reads its whole
    /// batches. A torn last frame (a batch whose sync never finished) is
    /// cut off; damage followed by a later batch is an error.
    pub(crate) fn open(
        dir: &Path,
        max_payload: u32,
        read_only: bool,
    ) -> Result<(BatchLog, Vec<LoggedBatch>)> {
        let path = dir.join(BATCH_LOG_NAME);
        if !path.exists() && read_only {
            return Err(EngineError::Store(silo_core::Error::NeedsRecovery {
                dir: dir.to_path_buf(),
                reason: "the batch log is missing".to_owned(),
            }));
        }
        if !path.exists() {
            let header = FileHeader::new(FileKind::BatchLog);
            let file = create_with_header(&path, &header)?;
            file.sync_all()?;
            let log = BatchLog {
                file,
                path,
                end: HEADER_LEN as u64,
                base: 0,
                scratch: Vec::new(),
            };
            return Ok((log, Vec::new()));
        }
        let file = SiloFile::open(&path)?;
        let header = read_header(&file, FileKind::BatchLog)?;
        let len = usize::try_from(file.len()?).map_err(|_| EngineError::Corrupt {
            file: path.clone(),
            offset: 0,
            reason: "longer than this platform's address space".to_owned(),
        })?;
        // The allocation is the file's real length, not a length field.
        let mut body = vec![0u8; len.saturating_sub(HEADER_LEN)];
        file.read_exact_at(&mut body, HEADER_LEN as u64)?;
        let (batches, valid) =
            scan(&body, header.base_seq, max_payload).map_err(|(at, reason)| {
                EngineError::Corrupt {
                    file: path.clone(),
                    offset: (HEADER_LEN + at) as u64,
                    reason,
                }
            })?;
        let end = (HEADER_LEN + valid) as u64;
        // A torn tail is cut (read-only: left, and never read).
        if end != len as u64 && !read_only {
            file.set_len(end)?;
            file.sync_all()?;
        }
        let log = BatchLog {
            file,
            path,
            end,
            base: header.base_seq,
            scratch: Vec::new(),
        };
        Ok((log, batches))
    }

    /// The first batch number the log may hold.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Bytes of batches in the log.
    pub(crate) fn body_len(&self) -> u64 {
        self.end - HEADER_LEN as u64
    }

    /// Appends batch `number` and syncs it. On failure the log is cut back
    /// to where it was (a failure to do even that is returned too; the next
    /// open cuts a torn frame anyway).
    pub(crate) fn append(&mut self, number: u64, ops: &[BatchOp<'_>]) -> Result<()> {
        let payload_len: usize = ops.iter().map(|op| OP_HEADER_LEN + parts(op).1.len()).sum();
        let mut payload_bytes = std::mem::take(&mut self.scratch);
        payload_bytes.clear();
        payload_bytes.reserve(payload_len);
        for op in ops {
            let (tag, body) = parts(op);
            payload_bytes.push(tag as u8);
            payload_bytes.extend_from_slice(&op.key().to_le_bytes());
            let len = u32::try_from(body.len()).map_err(|_| oversized(body.len()))?;
            payload_bytes.extend_from_slice(&len.to_le_bytes());
            payload_bytes.extend_from_slice(body);
        }
        let mut frame = vec![0u8; silo_format::frame_len(payload_bytes.len())];
        let written =
            silo_format::encode_frame(&mut frame, Tag::BatchBegin, number, &payload_bytes)
                .map_err(|e| EngineError::format(&self.path, e));
        self.scratch = payload_bytes;
        written?;
        let outcome = self
            .file
            .write_all_at(&frame, self.end)
            .and_then(|()| self.file.sync_data());
        match outcome {
            Ok(()) => {
                self.end += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.end);
                Err(e.into())
            }
        }
    }

    /// Empties the log: every batch in it is durable in its shards. The
    /// next batch will be `next`. Crash-safe: the frames go first, then the
    /// header takes the new base, then both are synced.
    pub(crate) fn reset(&mut self, next: u64) -> Result<()> {
        self.file.set_len(HEADER_LEN as u64)?;
        let header = FileHeader {
            base_seq: next,
            ..FileHeader::new(FileKind::BatchLog)
        };
        self.file.write_all_at(&header.encode(), 0)?;
        self.file.sync_all()?;
        self.end = HEADER_LEN as u64;
        self.base = next;
        Ok(())
    }
}

/// An operation's tag and body (the value, the operand, or nothing).
fn parts<'a>(op: &BatchOp<'a>) -> (Tag, &'a [u8]) {
    match *op {
        BatchOp::Put { value, .. } => (Tag::Put, value),
        BatchOp::Delete { .. } => (Tag::Delete, &[]),
        BatchOp::Merge { operand, .. } => (Tag::Merge, operand),
    }
}

fn oversized(len: usize) -> EngineError {
    EngineError::Store(silo_core::Error::ValueTooLarge { len, max: u32::MAX })
}

/// Reads the batches of `body`, numbered from `base`. Returns them and the
/// length of the valid part, or `(offset, reason)` for damage that is not a
/// torn last frame.
pub(crate) fn scan(
    body: &[u8],
    base: u64,
    max_payload: u32,
) -> Result<(Vec<LoggedBatch>, usize), (usize, String)> {
    let mut reader = FrameReader::new(body).with_max_payload(max_payload);
    let mut batches = Vec::new();
    let mut valid = 0;
    let mut bad: Option<(usize, String)> = None;
    for (at, frame) in reader.by_ref() {
        let expected = base + batches.len() as u64;
        if frame.tag != Tag::BatchBegin || frame.key != expected {
            bad = Some((
                at,
                format!(
                    "frame {:?} {} where batch {expected} was expected",
                    frame.tag, frame.key
                ),
            ));
            break;
        }
        match decode_ops(frame.payload) {
            Some(batch) => batches.push(LoggedBatch {
                number: frame.key,
                batch,
            }),
            None => {
                bad = Some((at, format!("batch {expected} does not decode")));
                break;
            }
        }
        valid = at + silo_format::frame_len(frame.payload.len());
    }
    if let Some(bad) = bad {
        // A whole frame that is not the next batch is damage, not a tear.
        return Err(bad);
    }
    match reader.end() {
        None | Some(LogEnd::Clean { .. }) => Ok((batches, valid)),
        Some(end) => {
            // Batches are synced one at a time, so only the last can be torn
            // (in any way: a power cut writes its pages back in any order).
            // A later batch after the damage means the damage hit a synced one.
            let next = base + batches.len() as u64;
            if let Some(at) = later_batch(body, end.at(), next, max_payload) {
                return Err((
                    end.at(),
                    format!("damaged batch {next} is followed by a whole batch at byte {at}"),
                ));
            }
            Ok((batches, valid))
        }
    }
}

/// The offset of a whole, valid batch frame numbered `next` or above
/// starting after `from`, if any.
fn later_batch(body: &[u8], from: usize, next: u64, max_payload: u32) -> Option<usize> {
    (from + 1..body.len().saturating_sub(silo_format::FRAME_HEADER_LEN)).find(|&at| {
        body[at] == Tag::BatchBegin as u8
            && body
                .get(at + 1..at + 9)
                .and_then(|k| k.try_into().ok())
                .map(u64::from_le_bytes)
                .is_some_and(|k| k >= next && k - next < (1 << 32))
            && silo_format::decode_frame(&body[at..], max_payload)
                .is_ok_and(|(f, _)| f.tag == Tag::BatchBegin)
    })
}

/// Decodes a batch frame's payload; `None` if it is malformed.
fn decode_ops(mut bytes: &[u8]) -> Option<WriteBatch> {
    let mut batch = WriteBatch::new();
    while !bytes.is_empty() {
        let head = bytes.get(..OP_HEADER_LEN)?;
        let key = u64::from_le_bytes(head[1..9].try_into().ok()?);
        let len = u32::from_le_bytes(head[9..13].try_into().ok()?) as usize;
        let body = bytes.get(OP_HEADER_LEN..OP_HEADER_LEN.checked_add(len)?)?;
        match Tag::from_u8(head[0])? {
            Tag::Put => batch.put(key, body),
            Tag::Delete if body.is_empty() => batch.delete(key),
            Tag::Merge => batch.merge(key, body),
            _ => return None,
        };
        bytes = &bytes[OP_HEADER_LEN + len..];
    }
    (!batch.is_empty()).then_some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(seed: u8) -> Vec<(u64, Vec<u8>)> {
        (0..3)
            .map(|i| (u64::from(seed) * 10 + i, vec![seed; 20]))
            .collect()
    }

    fn append(log: &mut BatchLog, number: u64, seed: u8) {
        let o = ops(seed);
        let mut b: Vec<BatchOp<'_>> = o
            .iter()
            .map(|(k, v)| BatchOp::Put { key: *k, value: v })
            .collect();
        b.push(BatchOp::Delete { key: 99 });
        b.push(BatchOp::Merge {
            key: 98,
            operand: b"m",
        });
        log.append(number, &b).unwrap();
    }

    fn numbers(batches: &[LoggedBatch]) -> Vec<u64> {
        batches.iter().map(|b| b.number).collect()
    }

    #[test]
    fn batches_round_trip_and_reset_empties() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, found) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        assert!(found.is_empty());
        for (n, seed) in [(0, 1), (1, 2), (2, 3)] {
            append(&mut log, n, seed);
        }
        drop(log);
        let (mut log, found) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(numbers(&found), [0, 1, 2]);
        let ops: Vec<BatchOp<'_>> = found[1].batch.ops().collect();
        assert_eq!(ops.len(), 5);
        assert_eq!(
            ops[0],
            BatchOp::Put {
                key: 20,
                value: &[2; 20]
            }
        );
        assert_eq!(ops[3], BatchOp::Delete { key: 99 });
        assert_eq!(
            ops[4],
            BatchOp::Merge {
                key: 98,
                operand: b"m"
            }
        );
        log.reset(3).unwrap();
        append(&mut log, 3, 9);
        drop(log);
        let (log, found) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!((numbers(&found), log.base()), (vec![3], 3));
    }

    #[test]
    fn a_torn_last_batch_is_cut_and_damage_before_a_later_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BATCH_LOG_NAME);
        let (mut log, _) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        for (n, seed) in [(0, 1), (1, 2), (2, 3)] {
            append(&mut log, n, seed);
        }
        let whole = std::fs::read(&path).unwrap();
        let frame = (whole.len() - HEADER_LEN) / 3;
        drop(log);
        // The last frame's first half zeroed, its second half present: torn.
        let mut torn = whole.clone();
        for b in &mut torn[HEADER_LEN + 2 * frame..HEADER_LEN + 2 * frame + frame / 2] {
            *b = 0;
        }
        std::fs::write(&path, &torn).unwrap();
        let (_, found) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(numbers(&found), [0, 1]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            (HEADER_LEN + 2 * frame) as u64,
            "the torn frame is cut off"
        );
        // The middle frame damaged with the last one whole: an error.
        let mut damaged = whole;
        damaged[HEADER_LEN + frame + 20] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        match BatchLog::open(dir.path(), 1 << 20, false) {
            Err(EngineError::Corrupt { offset, .. }) => {
                assert_eq!(offset, (HEADER_LEN + frame) as u64);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// Damage to a synced batch is told from a torn last one by a whole
    /// batch after it, numbered from the log's base (not from 0).
    #[test]
    fn damage_followed_by_a_whole_batch_is_an_error_at_any_base_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BATCH_LOG_NAME);
        let (mut log, _) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        log.reset(5).unwrap();
        for (n, seed) in [(5, 1), (6, 2), (7, 3), (8, 4)] {
            append(&mut log, n, seed);
        }
        drop(log);
        let whole = std::fs::read(&path).unwrap();
        let frame = (whole.len() - HEADER_LEN) / 4;
        for damaged_batch in 0..3 {
            let mut damaged = whole.clone();
            damaged[HEADER_LEN + damaged_batch * frame + 20] ^= 0x40;
            std::fs::write(&path, &damaged).unwrap();
            match BatchLog::open(dir.path(), 1 << 20, false) {
                Err(EngineError::Corrupt { offset, .. }) => {
                    assert_eq!(offset, (HEADER_LEN + damaged_batch * frame) as u64);
                }
                other => panic!("batch {damaged_batch} damaged: expected Corrupt, got {other:?}"),
            }
        }
        // The last batch damaged is a torn tail: cut, the others kept.
        let mut torn = whole;
        torn[HEADER_LEN + 3 * frame + 20] ^= 0x40;
        std::fs::write(&path, &torn).unwrap();
        let (log, found) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!((numbers(&found), log.base()), (vec![5, 6, 7], 5));
    }

    /// A torn last batch whose own bytes look like the start of a later
    /// batch (the tag, then a number below, just above, or far above the
    /// next one) is still a tear: only a frame that decodes whole counts.
    #[test]
    fn a_torn_last_batch_holding_frame_lookalikes_is_still_a_tear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BATCH_LOG_NAME);
        let (mut log, _) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        log.reset(5).unwrap();
        append(&mut log, 5, 1);
        append(&mut log, 6, 2);
        let before = std::fs::read(&path).unwrap().len();
        let mut value = Vec::new();
        for number in [3u64, 7, 8, 9, u64::MAX] {
            value.push(Tag::BatchBegin as u8);
            value.extend_from_slice(&number.to_le_bytes());
            value.extend_from_slice(&[0; 16]);
        }
        log.append(
            7,
            &[BatchOp::Put {
                key: 1,
                value: &value,
            }],
        )
        .unwrap();
        drop(log);
        let mut torn = std::fs::read(&path).unwrap();
        torn[before + 20] ^= 0x40;
        std::fs::write(&path, &torn).unwrap();
        let (log, found) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!((numbers(&found), log.base()), (vec![5, 6], 5));
        assert_eq!(std::fs::read(&path).unwrap().len(), before);
    }

    /// A whole frame after the damage counts as a later batch only if its
    /// number is within 2^32 of the next one: frames numbered 2^32 and 2^33
    /// past it do not make a torn last batch into damage.
    #[test]
    fn only_plausibly_numbered_frames_count_as_later_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BATCH_LOG_NAME);
        let (mut log, _) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        log.reset(5).unwrap();
        append(&mut log, 5, 1);
        append(&mut log, 6, 2);
        let torn_at = std::fs::read(&path).unwrap().len();
        append(&mut log, 7, 3);
        append(&mut log, 7 + (1 << 32), 4);
        append(&mut log, 7 + (1 << 33), 5);
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[torn_at + 20] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (log, found) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!((numbers(&found), log.base()), (vec![5, 6], 5));
        assert_eq!(std::fs::read(&path).unwrap().len(), torn_at);
    }

    #[test]
    fn a_batch_log_of_a_later_version_or_cut_inside_its_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BATCH_LOG_NAME);
        let future = FileHeader {
            version: silo_format::FORMAT_VERSION + 1,
            ..FileHeader::new(FileKind::BatchLog)
        };
        std::fs::write(&path, future.encode()).unwrap();
        assert!(BatchLog::open(dir.path(), 1 << 20, false).is_err());
        std::fs::write(&path, &future.encode()[..20]).unwrap();
        assert!(BatchLog::open(dir.path(), 1 << 20, false).is_err());
    }

    #[test]
    fn a_frame_out_of_sequence_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = BatchLog::open(dir.path(), 1 << 20, false).unwrap();
        append(&mut log, 0, 1);
        append(&mut log, 5, 2);
        drop(log);
        assert!(matches!(
            BatchLog::open(dir.path(), 1 << 20, false),
            Err(EngineError::Corrupt { .. })
        ));
    }

    #[test]
    fn malformed_payloads_do_not_decode() {
        assert!(decode_ops(&[]).is_none(), "an empty batch");
        assert!(decode_ops(&[1, 0, 0]).is_none(), "a short header");
        let mut op = vec![1u8];
        op.extend_from_slice(&7u64.to_le_bytes());
        op.extend_from_slice(&100u32.to_le_bytes());
        op.extend_from_slice(b"short");
        assert!(decode_ops(&op).is_none(), "a length past the end");
        let mut del = vec![2u8];
        del.extend_from_slice(&7u64.to_le_bytes());
        del.extend_from_slice(&1u32.to_le_bytes());
        del.push(0);
        assert!(decode_ops(&del).is_none(), "a delete with a payload");
        del[0] = 4;
        assert!(decode_ops(&del).is_none(), "a marker tag inside a batch");
    }
}

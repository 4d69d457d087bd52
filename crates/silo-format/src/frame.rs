//! Log frames: `tag u8 | key u64 | len u32 | payload [len] | crc32 u32`, and
//! the [`FrameReader`] that walks a log body and says how it ended.
//!
//! The CRC32 (crc32fast, IEEE) covers the tag, key, len and payload bytes,
//! that is every byte of the frame before the checksum.

use bytemuck::{Pod, Zeroable};

use crate::error::FormatError;
use crate::le::{Le32, Le64};

/// Offset of the tag byte within a frame.
pub const FRAME_TAG_OFFSET: usize = 0;
/// Offset of the `u64` key within a frame.
pub const FRAME_KEY_OFFSET: usize = FRAME_TAG_OFFSET + 1;
/// Offset of the `u32` payload length within a frame.
pub const FRAME_LEN_OFFSET: usize = FRAME_KEY_OFFSET + 8;
/// Offset of the payload within a frame.
pub const FRAME_PAYLOAD_OFFSET: usize = FRAME_LEN_OFFSET + 4;
/// Bytes before the payload: tag, key, len.
pub const FRAME_HEADER_LEN: usize = FRAME_PAYLOAD_OFFSET;
/// Bytes after the payload: the CRC32.
pub const FRAME_TRAILER_LEN: usize = 4;
/// Total bytes a frame adds around its payload.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + FRAME_TRAILER_LEN;
/// The largest payload readers accept unless told otherwise, and the largest
/// [`encode_frame`] writes.
pub const DEFAULT_MAX_PAYLOAD: u32 = 1 << 30;

const _: () = assert!(FRAME_HEADER_LEN == 13 && FRAME_OVERHEAD == 17);

/// The frame header's byte layout.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RawFrameHeader {
    tag: u8,
    key: Le64,
    len: Le32,
}

const _: () =
    assert!(size_of::<RawFrameHeader>() == FRAME_HEADER_LEN && align_of::<RawFrameHeader>() == 1);
const _: () = assert!(
    core::mem::offset_of!(RawFrameHeader, key) == FRAME_KEY_OFFSET
        && core::mem::offset_of!(RawFrameHeader, len) == FRAME_LEN_OFFSET
);

/// What a frame records. Tag byte 0 is never a frame: it marks the end of
/// written data, since log files are preallocated with zeros.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    /// Set `key` to the payload.
    Put = 1,
    /// Remove `key`; the payload is empty.
    Delete = 2,
    /// Merge the payload into `key`'s value with the store's merge operator.
    Merge = 3,
    /// Start of an atomic batch; `key` is the number of frames inside it, payload empty.
    BatchBegin = 4,
    /// End of an atomic batch; `key` is the number of frames inside it, payload empty.
    BatchCommit = 5,
}

impl Tag {
    /// Every tag, in numeric order.
    pub const ALL: [Tag; 5] = [
        Tag::Put,
        Tag::Delete,
        Tag::Merge,
        Tag::BatchBegin,
        Tag::BatchCommit,
    ];

    /// The tag with byte value `v`, if any.
    pub const fn from_u8(v: u8) -> Option<Tag> {
        match v {
            1 => Some(Tag::Put),
            2 => Some(Tag::Delete),
            3 => Some(Tag::Merge),
            4 => Some(Tag::BatchBegin),
            5 => Some(Tag::BatchCommit),
            _ => None,
        }
    }
}

/// A decoded frame, borrowing its payload from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the frame records.
    pub tag: Tag,
    /// The key (or, for batch markers, the batch's frame count).
    pub key: u64,
    /// The payload bytes, borrowed from the input.
    pub payload: &'a [u8],
}

/// Encoded length of a frame with a payload of `payload_len` bytes.
pub const fn frame_len(payload_len: usize) -> usize {
    FRAME_OVERHEAD + payload_len
}

/// Payload bytes checksummed then copied per step when encoding (measured best on x86-64).
const ENCODE_CHUNK: usize = 16 * 1024;
/// Payloads up to this many bytes are copied, then checksummed in one pass.
const SMALL_PAYLOAD: usize = 256;

/// Encodes a frame into the front of `out` without allocating; returns the
/// bytes written, [`frame_len`]`(payload.len())`.
///
/// Errors: [`FormatError::LengthTooLarge`] if the payload is longer than
/// [`DEFAULT_MAX_PAYLOAD`] (which is below `u32::MAX`), and
/// [`FormatError::Truncated`] if `out` is too small.
pub fn encode_frame(
    out: &mut [u8],
    tag: Tag,
    key: u64,
    payload: &[u8],
) -> Result<usize, FormatError> {
    let head_bytes = frame_header(tag, key, payload)?;
    let total = frame_len(payload.len());
    let available = out.len();
    let Some(frame) = out.get_mut(..total) else {
        return Err(FormatError::Truncated {
            what: "frame output buffer",
            needed: total,
            available,
        });
    };
    let (covered, trailer) = frame.split_at_mut(FRAME_HEADER_LEN + payload.len());
    let (head, body) = covered.split_at_mut(FRAME_HEADER_LEN);
    head.copy_from_slice(&head_bytes);
    let crc = if payload.len() <= SMALL_PAYLOAD {
        // Small frames: one contiguous pass costs least.
        body.copy_from_slice(payload);
        crc32fast::hash(covered)
    } else {
        // Large frames: checksum the caller's bytes (not the freshly written
        // copy, which is slower to read back) chunk by chunk, copying each
        // chunk right after it is hashed, while it is still in L1 cache.
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head_bytes);
        for (dst, src) in body
            .chunks_mut(ENCODE_CHUNK)
            .zip(payload.chunks(ENCODE_CHUNK))
        {
            hasher.update(src);
            dst.copy_from_slice(src);
        }
        hasher.finalize()
    };
    trailer.copy_from_slice(&Le32::new(crc).0);
    Ok(total)
}

/// The 13-byte header of a frame of `payload`, checking its length.
fn frame_header(tag: Tag, key: u64, payload: &[u8]) -> Result<[u8; FRAME_HEADER_LEN], FormatError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= DEFAULT_MAX_PAYLOAD)
        .ok_or(FormatError::LengthTooLarge {
            what: "frame payload",
            len: payload.len() as u64,
            max: u64::from(DEFAULT_MAX_PAYLOAD),
        })?;
    Ok(bytemuck::cast(RawFrameHeader {
        tag: tag as u8,
        key: Le64::new(key),
        len: Le32::new(len),
    }))
}

/// The header and trailer of the frame [`encode_frame`] would write for
/// `payload`, without copying the payload: writing header, payload and
/// trailer back to back (a vectored write) gives the same bytes.
pub fn frame_parts(
    tag: Tag,
    key: u64,
    payload: &[u8],
) -> Result<([u8; FRAME_HEADER_LEN], [u8; FRAME_TRAILER_LEN]), FormatError> {
    let head = frame_header(tag, key, payload)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head);
    hasher.update(payload);
    Ok((head, Le32::new(hasher.finalize()).0))
}

/// Why a [`FrameReader`] stopped before the end of its input.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The frame's header or claimed extent runs past the end of the input.
    Incomplete {
        /// Bytes the frame needs from its start.
        needed: usize,
        /// Bytes left in the input from the frame's start.
        available: usize,
    },
    /// The stored CRC does not match the frame's bytes.
    BadChecksum {
        /// The CRC stored in the frame.
        expected: u32,
        /// The CRC computed over the frame.
        found: u32,
    },
    /// The tag byte is not a known [`Tag`] (0 included).
    BadTag {
        /// The tag byte.
        tag: u8,
    },
    /// The payload length is over the reader's maximum.
    LengthTooLarge {
        /// The length found.
        len: u64,
        /// The reader's maximum.
        max: u64,
    },
}

impl From<StopReason> for FormatError {
    fn from(reason: StopReason) -> Self {
        match reason {
            StopReason::Incomplete { needed, available } => FormatError::Truncated {
                what: "frame",
                needed,
                available,
            },
            StopReason::BadChecksum { expected, found } => FormatError::ChecksumMismatch {
                what: "frame",
                expected,
                found,
            },
            StopReason::BadTag { tag } => FormatError::UnknownTag { tag },
            StopReason::LengthTooLarge { len, max } => FormatError::LengthTooLarge {
                what: "frame payload",
                len,
                max,
            },
        }
    }
}

/// How a [`FrameReader`] stopped. `at` is always the offset of the first
/// byte that is not part of a valid frame (a frame boundary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// The input ended at a frame boundary, or the rest of it is all zeros.
    Clean {
        /// Offset where the written data ends.
        at: usize,
    },
    /// The last frame is incomplete or damaged and nothing but zeros follows
    /// it: a torn last write. Safe to truncate at `at`.
    TornTail {
        /// Offset of the torn frame.
        at: usize,
        /// What was wrong with it.
        reason: StopReason,
    },
    /// A damaged frame followed by non-zero bytes: corruption in the middle
    /// of the log, not a torn write. Data after `at` may be lost.
    Corrupt {
        /// Offset of the damaged frame.
        at: usize,
        /// What was wrong with it.
        reason: StopReason,
    },
}

impl LogEnd {
    /// The offset of the first byte that is not part of a valid frame.
    pub fn at(&self) -> usize {
        match self {
            LogEnd::Clean { at } | LogEnd::TornTail { at, .. } | LogEnd::Corrupt { at, .. } => *at,
        }
    }
}

/// A frame that failed to decode: why, and from which offset (relative to
/// the frame start) the rest of the input must be zero for the failure to
/// count as a torn tail (`None`: always torn, the input simply ran out).
struct Bad {
    reason: StopReason,
    zeros_from: Option<usize>,
}

/// Decodes the frame at the start of `bytes` (tag byte already known non-zero
/// or not; the caller handles the zero-tag rule).
#[inline]
fn parse(bytes: &[u8], max_payload: u32) -> Result<(Frame<'_>, usize), Bad> {
    let Some(head) = bytes.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(Bad {
            reason: StopReason::Incomplete {
                needed: FRAME_HEADER_LEN,
                available: bytes.len(),
            },
            zeros_from: None,
        });
    };
    let raw: RawFrameHeader = bytemuck::cast(*head);
    let Some(tag) = Tag::from_u8(raw.tag) else {
        return Err(Bad {
            reason: StopReason::BadTag { tag: raw.tag },
            zeros_from: Some(FRAME_HEADER_LEN),
        });
    };
    let len = raw.len.get();
    if len > max_payload {
        return Err(Bad {
            reason: StopReason::LengthTooLarge {
                len: u64::from(len),
                max: u64::from(max_payload),
            },
            zeros_from: Some(FRAME_HEADER_LEN),
        });
    }
    // `len <= max_payload <= u32::MAX`, so this cannot overflow on 64-bit
    // hosts; saturate anyway so a 32-bit host reports Incomplete.
    let body_end = FRAME_HEADER_LEN.saturating_add(len as usize);
    let total = body_end.saturating_add(FRAME_TRAILER_LEN);
    let (Some(covered), Some(stored)) = (bytes.get(..body_end), bytes.get(body_end..total)) else {
        return Err(Bad {
            reason: StopReason::Incomplete {
                needed: total,
                available: bytes.len(),
            },
            zeros_from: None,
        });
    };
    let Ok(stored) = <[u8; 4]>::try_from(stored) else {
        return Err(Bad {
            reason: StopReason::Incomplete {
                needed: total,
                available: bytes.len(),
            },
            zeros_from: None,
        });
    };
    let expected = Le32(stored).get();
    let found = crc32fast::hash(covered);
    if expected != found {
        return Err(Bad {
            reason: StopReason::BadChecksum { expected, found },
            zeros_from: Some(total),
        });
    }
    let payload = covered.get(FRAME_HEADER_LEN..).unwrap_or_default();
    Ok((
        Frame {
            tag,
            key: raw.key.get(),
            payload,
        },
        total,
    ))
}

/// Decodes one frame at the start of `bytes`, zero-copy, verifying the CRC.
/// Returns the frame and its encoded length; bytes after it are ignored.
///
/// Errors: [`FormatError::Truncated`], [`FormatError::UnknownTag`] (tag 0
/// included), [`FormatError::LengthTooLarge`] (len over `max_payload`),
/// [`FormatError::ChecksumMismatch`].
#[inline]
pub fn decode_frame(bytes: &[u8], max_payload: u32) -> Result<(Frame<'_>, usize), FormatError> {
    parse(bytes, max_payload).map_err(|bad| bad.reason.into())
}

/// The offset of the last non-zero byte of `bytes`, if any. Checks 4 KiB
/// blocks a word at a time from the end (logs end in long zero tails).
pub fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 4096;
    let mut end = bytes.len();
    for block in bytes.rchunks(BLOCK) {
        let start = end - block.len();
        let (words, rest) = block.as_chunks::<8>();
        let any = words
            .iter()
            .fold(0u64, |acc, w| acc | u64::from_le_bytes(*w))
            != 0
            || rest.iter().any(|&b| b != 0);
        if any {
            return block.iter().rposition(|&b| b != 0).map(|p| start + p);
        }
        end = start;
    }
    None
}

/// Iterates the frames of a log body (a byte slice starting at a frame
/// boundary), yielding `(offset, frame)` for each valid frame and stopping
/// at the first frame that is not whole and valid.
///
/// How it stopped is then available from [`FrameReader::end`]:
///
/// - the input is exhausted exactly at a frame boundary, or the byte at the
///   frame start is 0 and every remaining byte is 0: [`LogEnd::Clean`];
/// - the frame's 13-byte header or its claimed extent (17 + len bytes) runs
///   past the end of the input: [`LogEnd::TornTail`] with
///   [`StopReason::Incomplete`];
/// - otherwise (bad CRC, unknown tag, len over the maximum):
///   [`LogEnd::TornTail`] if every byte after the frame's claimed extent
///   (after its 13-byte header when the tag or len is unusable) up to the end
///   of the input is zero, the mark of a torn last write in a
///   zero-preallocated log; else [`LogEnd::Corrupt`] (valid-looking bytes
///   follow garbage);
/// - a torn tail (either case above) turns into [`LogEnd::Corrupt`] when a
///   whole, valid frame starts anywhere after the bad frame's first byte: a
///   damaged length can claim an extent that swallows the frames after it,
///   and those must not be dropped as if never written;
/// - a zero tag byte followed by non-zero bytes is [`LogEnd::Corrupt`] with
///   `BadTag { tag: 0 }`, unless all those non-zero bytes lie within the 17
///   bytes starting at the zero tag (then [`LogEnd::TornTail`]).
///
/// In every case `at` is the offset of the first byte that is not part of a
/// valid frame.
#[derive(Clone, Debug)]
pub struct FrameReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    max_payload: u32,
    end: Option<LogEnd>,
}

impl<'a> FrameReader<'a> {
    /// A reader over `bytes` with the [`DEFAULT_MAX_PAYLOAD`] limit.
    pub fn new(bytes: &'a [u8]) -> Self {
        FrameReader {
            bytes,
            pos: 0,
            max_payload: DEFAULT_MAX_PAYLOAD,
            end: None,
        }
    }

    /// Sets the largest payload length accepted; longer frames stop the reader.
    pub fn with_max_payload(mut self, max: u32) -> Self {
        self.max_payload = max;
        self
    }

    /// The bytes the reader reads.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Offset of the next frame (after the last one yielded).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How reading stopped, once it has (`None` while frames remain).
    pub fn end(&self) -> Option<LogEnd> {
        self.end.clone()
    }

    /// Whether a whole, valid frame starts anywhere after the first byte of
    /// `rest`: then the bad frame at its start cannot be a torn last write
    /// (a damaged length may claim an extent that swallows later frames).
    fn valid_frame_after(&self, rest: &[u8]) -> bool {
        let Some(last) = last_nonzero(rest) else {
            return false;
        };
        // A real frame ends at most 3 bytes past the last non-zero byte (its
        // CRC's high bytes may be zero). Candidates are parsed within that
        // window, so no CRC runs over the zero-filled tail: the work stays
        // bounded by the written bytes, not by the preallocated file.
        let window = rest
            .get(..last.saturating_add(FRAME_TRAILER_LEN).min(rest.len()))
            .unwrap_or_default();
        (1..=last).any(|p| {
            window.get(p..).is_some_and(|r| {
                r.first().and_then(|&t| Tag::from_u8(t)).is_some()
                    && parse(r, self.max_payload).is_ok()
            })
        })
    }

    /// Classifies the invalid frame at `self.pos`.
    fn stop(&self, rest: &[u8], bad: Bad) -> LogEnd {
        match self.classify(rest, bad) {
            LogEnd::TornTail { at, reason } if self.valid_frame_after(rest) => {
                LogEnd::Corrupt { at, reason }
            }
            other => other,
        }
    }

    /// Classifies the invalid frame at `self.pos` from the bytes after it.
    fn classify(&self, rest: &[u8], bad: Bad) -> LogEnd {
        let at = self.pos;
        match bad.zeros_from {
            None => LogEnd::TornTail {
                at,
                reason: bad.reason,
            },
            Some(from) => {
                let after = rest.get(from..).unwrap_or_default();
                if last_nonzero(after).is_none() {
                    LogEnd::TornTail {
                        at,
                        reason: bad.reason,
                    }
                } else {
                    LogEnd::Corrupt {
                        at,
                        reason: bad.reason,
                    }
                }
            }
        }
    }
}

impl<'a> Iterator for FrameReader<'a> {
    type Item = (usize, Frame<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.end.is_some() {
            return None;
        }
        let bytes: &'a [u8] = self.bytes;
        let rest = bytes.get(self.pos..).unwrap_or_default();
        let at = self.pos;
        match rest.first() {
            None => {
                self.end = Some(LogEnd::Clean { at });
                return None;
            }
            Some(0) => {
                let reason = StopReason::BadTag { tag: 0 };
                self.end = Some(match last_nonzero(rest) {
                    None => LogEnd::Clean { at },
                    Some(last) if last < FRAME_OVERHEAD => LogEnd::TornTail { at, reason },
                    Some(_) => LogEnd::Corrupt { at, reason },
                });
                return None;
            }
            Some(_) => {}
        }
        match parse(rest, self.max_payload) {
            Ok((frame, len)) => {
                self.pos += len;
                Some((at, frame))
            }
            Err(bad) => {
                self.end = Some(self.stop(rest, bad));
                None
            }
        }
    }
}

impl std::iter::FusedIterator for FrameReader<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(frames: &[(Tag, u64, &[u8])]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for (tag, key, payload) in frames {
            starts.push(out.len());
            let at = out.len();
            out.resize(at + frame_len(payload.len()), 0);
            encode_frame(&mut out[at..], *tag, *key, payload).unwrap();
        }
        (out, starts)
    }

    const SAMPLE: &[(Tag, u64, &[u8])] = &[
        (Tag::BatchBegin, 2, b""),
        (Tag::Put, 0, b"hello"),
        (Tag::Merge, u64::MAX, b"\x00\x01\x02"),
        (Tag::BatchCommit, 2, b""),
        (Tag::Delete, 42, b""),
    ];

    #[test]
    fn frame_parts_match_encode_frame() {
        for payload in [&b""[..], b"abc", &[9u8; 5000]] {
            let mut whole = vec![0u8; frame_len(payload.len())];
            encode_frame(&mut whole, Tag::Put, 77, payload).unwrap();
            let (head, trailer) = frame_parts(Tag::Put, 77, payload).unwrap();
            let joined = [&head[..], payload, &trailer[..]].concat();
            assert_eq!(joined, whole);
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 64];
        let n = encode_frame(&mut buf, Tag::Put, 0xDEAD_BEEF, b"payload").unwrap();
        assert_eq!(n, frame_len(7));
        let (frame, used) = decode_frame(&buf, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(used, n);
        assert_eq!(
            frame,
            Frame {
                tag: Tag::Put,
                key: 0xDEAD_BEEF,
                payload: b"payload"
            }
        );
        assert_eq!(buf[FRAME_TAG_OFFSET], 1);
        assert_eq!(
            &buf[FRAME_KEY_OFFSET..FRAME_LEN_OFFSET],
            &0xDEAD_BEEFu64.to_le_bytes()
        );
        assert_eq!(
            &buf[FRAME_LEN_OFFSET..FRAME_PAYLOAD_OFFSET],
            &7u32.to_le_bytes()
        );
        for tag in Tag::ALL {
            assert_eq!(Tag::from_u8(tag as u8), Some(tag));
        }
    }

    #[test]
    fn detects_corruption() {
        let mut buf = [0u8; 32];
        let n = encode_frame(&mut buf, Tag::Merge, 9, b"abc").unwrap();
        for bit in 0..n * 8 {
            let mut b = buf;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_frame(&b[..n], DEFAULT_MAX_PAYLOAD).is_err(),
                "bit {bit}"
            );
        }
        buf[FRAME_PAYLOAD_OFFSET] ^= 0x40;
        assert!(matches!(
            decode_frame(&buf, DEFAULT_MAX_PAYLOAD),
            Err(FormatError::ChecksumMismatch { what: "frame", .. })
        ));
    }

    #[test]
    fn encode_errors() {
        let mut small = [0u8; 19];
        assert_eq!(
            encode_frame(&mut small, Tag::Put, 1, b"abc"),
            Err(FormatError::Truncated {
                what: "frame output buffer",
                needed: 20,
                available: 19
            })
        );
        assert_eq!(
            decode_frame(&[1, 2, 3], 10).unwrap_err(),
            FormatError::Truncated {
                what: "frame",
                needed: 13,
                available: 3
            }
        );
        let mut buf = [0u8; 40];
        encode_frame(&mut buf, Tag::Put, 1, &[7; 20]).unwrap();
        assert_eq!(
            decode_frame(&buf, 19).unwrap_err(),
            FormatError::LengthTooLarge {
                what: "frame payload",
                len: 20,
                max: 19
            }
        );
        assert_eq!(
            decode_frame(&[0; 20], 19).unwrap_err(),
            FormatError::UnknownTag { tag: 0 }
        );
    }

    #[test]
    fn reader_reads_all_then_clean() {
        let (bytes, starts) = stream(SAMPLE);
        let mut r = FrameReader::new(&bytes);
        let got: Vec<_> = r.by_ref().collect();
        assert_eq!(got.len(), SAMPLE.len());
        for ((off, f), (start, (tag, key, payload))) in got.iter().zip(starts.iter().zip(SAMPLE)) {
            assert_eq!(off, start);
            assert_eq!(
                *f,
                Frame {
                    tag: *tag,
                    key: *key,
                    payload
                }
            );
        }
        assert_eq!(r.end(), Some(LogEnd::Clean { at: bytes.len() }));
        assert_eq!(r.position(), bytes.len());

        // Zero-preallocated tail is also clean.
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + 100, 0);
        let mut r = FrameReader::new(&padded);
        assert_eq!(r.by_ref().count(), SAMPLE.len());
        assert_eq!(r.end(), Some(LogEnd::Clean { at: bytes.len() }));
    }

    #[test]
    fn reader_torn_and_corrupt() {
        let (bytes, starts) = stream(SAMPLE);
        let last = *starts.last().unwrap();
        // Torn: the last frame's bytes garbled, zeros after it.
        let mut torn = bytes.clone();
        torn[last + FRAME_KEY_OFFSET] ^= 1;
        torn.resize(torn.len() + 50, 0);
        let mut r = FrameReader::new(&torn);
        assert_eq!(r.by_ref().count(), SAMPLE.len() - 1);
        assert!(
            matches!(r.end(), Some(LogEnd::TornTail { at, reason: StopReason::BadChecksum { .. } }) if at == last)
        );

        // Corrupt: a garbled frame in the middle.
        let mut bad = bytes.clone();
        bad[starts[1] + FRAME_PAYLOAD_OFFSET] ^= 1;
        let mut r = FrameReader::new(&bad);
        assert_eq!(r.by_ref().count(), 1);
        assert!(
            matches!(r.end(), Some(LogEnd::Corrupt { at, reason: StopReason::BadChecksum { .. } }) if at == starts[1])
        );

        // Zero tag then non-zero bytes far away: corrupt; near: torn.
        let mut z = bytes.clone();
        z.extend_from_slice(&[0; 40]);
        z.push(9);
        let mut r = FrameReader::new(&z);
        assert_eq!(r.by_ref().count(), SAMPLE.len());
        assert_eq!(
            r.end(),
            Some(LogEnd::Corrupt {
                at: bytes.len(),
                reason: StopReason::BadTag { tag: 0 }
            })
        );
        let mut z = bytes.clone();
        z.extend_from_slice(&[0, 0, 0, 0, 7, 0, 0]);
        let mut r = FrameReader::new(&z);
        assert_eq!(r.by_ref().count(), SAMPLE.len());
        assert_eq!(
            r.end(),
            Some(LogEnd::TornTail {
                at: bytes.len(),
                reason: StopReason::BadTag { tag: 0 }
            })
        );

        // Length over the maximum: classified by the bytes after the header.
        let mut big = vec![0; frame_len(100)];
        encode_frame(&mut big, Tag::Put, 1, &[1; 100]).unwrap();
        let mut r = FrameReader::new(&big).with_max_payload(10);
        assert_eq!(r.next(), None);
        assert_eq!(
            r.end(),
            Some(LogEnd::Corrupt {
                at: 0,
                reason: StopReason::LengthTooLarge { len: 100, max: 10 }
            })
        );
        assert_eq!(r.next(), None);
    }

    #[test]
    fn reader_truncated_at_every_offset() {
        let (bytes, starts) = stream(SAMPLE);
        for cut in 0..=bytes.len() {
            let mut r = FrameReader::new(&bytes[..cut]);
            let whole = starts
                .iter()
                .zip(SAMPLE)
                .filter(|(s, f)| **s + frame_len(f.2.len()) <= cut)
                .count();
            assert_eq!(r.by_ref().count(), whole, "cut {cut}");
            let at = starts.get(whole).copied().unwrap_or(bytes.len());
            if at == cut {
                assert_eq!(r.end(), Some(LogEnd::Clean { at }));
            } else {
                assert!(
                    matches!(r.end(), Some(LogEnd::TornTail { at: a, reason: StopReason::Incomplete { .. } }) if a == at),
                    "cut {cut}: {:?}",
                    r.end()
                );
            }
        }
    }

    #[test]
    fn a_damaged_length_that_swallows_later_frames_is_corruption_not_a_tear() {
        let mut stream = vec![0u8; 4096];
        let mut at = 0;
        for (key, payload) in [(1u64, &b"first value"[..]), (2, b"xy"), (3, b"")] {
            at += encode_frame(&mut stream[at..], Tag::Put, key, payload).unwrap();
        }
        // The first frame now claims 244 bytes: its extent covers the other
        // two frames and ends in zeros, which alone would look torn.
        stream[FRAME_LEN_OFFSET] ^= 0xFF;
        let mut r = FrameReader::new(&stream);
        assert_eq!(r.next(), None);
        assert!(
            matches!(r.end(), Some(LogEnd::Corrupt { at: 0, .. })),
            "{:?}",
            r.end()
        );
        // A claimed extent past the end of the input is caught the same way.
        stream[FRAME_LEN_OFFSET + 3] = 0x7F;
        let mut r = FrameReader::new(&stream).with_max_payload(u32::MAX);
        assert_eq!(r.next(), None);
        assert!(
            matches!(r.end(), Some(LogEnd::Corrupt { at: 0, .. })),
            "{:?}",
            r.end()
        );
    }

    #[test]
    fn last_nonzero_finds_the_last_set_byte() {
        assert_eq!(last_nonzero(&[]), None);
        let mut bytes = vec![0u8; 10_000];
        assert_eq!(last_nonzero(&bytes), None);
        for at in [0, 7, 8, 4095, 4096, 5000, 9_999] {
            bytes[at] = 1;
            assert_eq!(last_nonzero(&bytes), Some(at), "{at}");
        }
        assert_eq!(last_nonzero(&bytes[..9_999]), Some(5000));
    }
}

//! The manifest: a [`FileHeader`] of kind [`FileKind::Manifest`] naming the
//! live data and index files and how far the log has been folded into them,
//! followed by a checksummed body with the data file's end and the store's
//! space accounting.

use bytemuck::{Pod, Zeroable};

use crate::error::FormatError;
use crate::header::{FileHeader, FileKind, HEADER_LEN};
use crate::le::{Le32, Le64};

/// Offset of the body (right after the header).
pub const MANIFEST_BODY_OFFSET: usize = HEADER_LEN;
/// Offset of `data_end` within the body.
pub const BODY_DATA_END_OFFSET: usize = 0;
/// Offset of `index_live` within the body.
pub const BODY_INDEX_LIVE_OFFSET: usize = BODY_DATA_END_OFFSET + 8;
/// Offset of `index_used` within the body.
pub const BODY_INDEX_USED_OFFSET: usize = BODY_INDEX_LIVE_OFFSET + 8;
/// Offset of `live_bytes` within the body.
pub const BODY_LIVE_BYTES_OFFSET: usize = BODY_INDEX_USED_OFFSET + 8;
/// Offset of `dead_bytes` within the body.
pub const BODY_DEAD_BYTES_OFFSET: usize = BODY_LIVE_BYTES_OFFSET + 8;
/// Offset of the flags word within the body.
pub const BODY_FLAGS_OFFSET: usize = BODY_DEAD_BYTES_OFFSET + 8;
/// Offset of `batch_tag` within the body.
pub const BODY_BATCH_TAG_OFFSET: usize = BODY_FLAGS_OFFSET + 8;
/// Offset of the reserved bytes within the body.
pub const BODY_RESERVED_OFFSET: usize = BODY_BATCH_TAG_OFFSET + 8;
/// Reserved bytes (zero) within the body.
pub const BODY_RESERVED_LEN: usize = 4;
/// Offset of the body's CRC32 (over the body bytes before it).
pub const BODY_CRC_OFFSET: usize = BODY_RESERVED_OFFSET + BODY_RESERVED_LEN;
/// Bytes in the body.
pub const MANIFEST_BODY_LEN: usize = BODY_CRC_OFFSET + 4;
/// Bytes in a manifest file: header then body.
pub const MANIFEST_LEN: usize = MANIFEST_BODY_OFFSET + MANIFEST_BODY_LEN;
/// Flag bit: the store was closed cleanly, so the counts are exact.
pub const MANIFEST_FLAG_CLEAN: u64 = 1;

/// The body's byte layout.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RawBody {
    data_end: Le64,
    index_live: Le64,
    index_used: Le64,
    live_bytes: Le64,
    dead_bytes: Le64,
    flags: Le64,
    batch_tag: Le64,
    reserved: [u8; BODY_RESERVED_LEN],
    crc: Le32,
}

const _: () = assert!(
    size_of::<RawBody>() == MANIFEST_BODY_LEN && align_of::<RawBody>() == 1 && MANIFEST_LEN == 128
);
const _: () = assert!(
    core::mem::offset_of!(RawBody, dead_bytes) == BODY_DEAD_BYTES_OFFSET
        && core::mem::offset_of!(RawBody, batch_tag) == BODY_BATCH_TAG_OFFSET
        && core::mem::offset_of!(RawBody, crc) == BODY_CRC_OFFSET
);

/// The decoded manifest.
///
/// The header holds: `generation` = manifest generation, `param_a` = data
/// file id, `param_b` = index file id, `base_seq` = the sequence number
/// through which the logs have been folded into the data file. The body
/// holds the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Manifest {
    /// Manifest generation; each new manifest has a larger one.
    pub generation: u64,
    /// Id of the live data file (`data-<id>`).
    pub data_id: u64,
    /// Id of the live index file (`index-<id>`).
    pub index_id: u64,
    /// Sequence number through which log operations are folded into the data file.
    pub folded_seq: u64,
    /// Offset just past the last record written to the data file.
    pub data_end: u64,
    /// Index slots holding a live key.
    pub index_live: u64,
    /// Index slots holding a key, live or deleted.
    pub index_used: u64,
    /// Bytes of live records in the data file.
    pub live_bytes: u64,
    /// Bytes of records no index entry points to any more.
    pub dead_bytes: u64,
    /// Whether the store was closed cleanly (the counts are exact).
    pub clean: bool,
    /// The highest tag of the tagged write batches folded into the data
    /// file (0: none). Batches still in the logs carry their own.
    pub batch_tag: u64,
}

impl Manifest {
    /// The header this manifest starts with.
    pub fn to_header(&self) -> FileHeader {
        FileHeader {
            generation: self.generation,
            base_seq: self.folded_seq,
            param_a: self.data_id,
            param_b: self.index_id,
            ..FileHeader::new(FileKind::Manifest)
        }
    }

    /// The manifest's bytes: header then body.
    pub fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut body = RawBody {
            data_end: Le64::new(self.data_end),
            index_live: Le64::new(self.index_live),
            index_used: Le64::new(self.index_used),
            live_bytes: Le64::new(self.live_bytes),
            dead_bytes: Le64::new(self.dead_bytes),
            flags: Le64::new(if self.clean { MANIFEST_FLAG_CLEAN } else { 0 }),
            batch_tag: Le64::new(self.batch_tag),
            reserved: [0; BODY_RESERVED_LEN],
            crc: Le32::new(0),
        };
        body.crc = Le32::new(crc32fast::hash(
            &bytemuck::bytes_of(&body)[..BODY_CRC_OFFSET],
        ));
        let mut out = [0u8; MANIFEST_LEN];
        out[..HEADER_LEN].copy_from_slice(&self.to_header().encode());
        out[MANIFEST_BODY_OFFSET..].copy_from_slice(bytemuck::bytes_of(&body));
        out
    }

    /// Decodes a manifest, with every check of [`FileHeader::decode`], then
    /// the body's length and checksum. Unknown flag bits are an error.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, FormatError> {
        let h = FileHeader::decode(bytes, FileKind::Manifest)?;
        let body_bytes =
            bytes
                .get(MANIFEST_BODY_OFFSET..MANIFEST_LEN)
                .ok_or(FormatError::Truncated {
                    what: "manifest body",
                    needed: MANIFEST_LEN,
                    available: bytes.len(),
                })?;
        let body: RawBody = bytemuck::pod_read_unaligned(body_bytes);
        let found = crc32fast::hash(&body_bytes[..BODY_CRC_OFFSET]);
        if found != body.crc.get() {
            return Err(FormatError::ChecksumMismatch {
                what: "manifest body",
                expected: body.crc.get(),
                found,
            });
        }
        let flags = body.flags.get();
        if flags & !MANIFEST_FLAG_CLEAN != 0 {
            return Err(FormatError::UnknownFlags {
                what: "manifest",
                flags: u32::try_from(flags).unwrap_or(u32::MAX),
            });
        }
        Ok(Manifest {
            generation: h.generation,
            data_id: h.param_a,
            index_id: h.param_b,
            folded_seq: h.base_seq,
            data_end: body.data_end.get(),
            index_live: body.index_live.get(),
            index_used: body.index_used.get(),
            live_bytes: body.live_bytes.get(),
            dead_bytes: body.dead_bytes.get(),
            clean: flags & MANIFEST_FLAG_CLEAN != 0,
            batch_tag: body.batch_tag.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            generation: 9,
            data_id: 3,
            index_id: 4,
            folded_seq: 1000,
            data_end: 4096,
            index_live: 10,
            index_used: 12,
            live_bytes: 2000,
            dead_bytes: 64,
            clean: true,
            batch_tag: 77,
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes), Ok(m));
        let tag_at = MANIFEST_BODY_OFFSET + BODY_BATCH_TAG_OFFSET;
        assert_eq!(bytes[tag_at..tag_at + 8], 77u64.to_le_bytes());
        let h = FileHeader::decode(&bytes, FileKind::Manifest).unwrap();
        assert_eq!(
            (h.generation, h.param_a, h.param_b, h.base_seq),
            (9, 3, 4, 1000)
        );
    }

    #[test]
    fn detects_corruption() {
        let bytes = sample().encode();
        for bit in 0..MANIFEST_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::decode(&b).is_err(), "bit {bit}");
        }
        for cut in 0..MANIFEST_LEN {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let other = FileHeader::new(FileKind::Data).encode();
        assert_eq!(
            Manifest::decode(&other),
            Err(FormatError::WrongKind {
                expected: FileKind::Manifest,
                found: FileKind::Data
            })
        );
    }
}

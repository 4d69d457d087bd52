//! The manifest: a [`FileHeader`] of kind [`FileKind::Manifest`] naming the
//! live data and index files and how far the log has been folded into them.

use crate::error::FormatError;
use crate::header::{FileHeader, FileKind, HEADER_LEN};

/// The decoded manifest.
///
/// Stored as a header: `generation` = manifest generation, `param_a` = data
/// file id, `param_b` = index file id, `base_seq` = the sequence number
/// through which the logs have been folded into the data file.
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
}

impl Manifest {
    /// The header this manifest is stored as.
    pub fn to_header(&self) -> FileHeader {
        FileHeader {
            generation: self.generation,
            base_seq: self.folded_seq,
            param_a: self.data_id,
            param_b: self.index_id,
            ..FileHeader::new(FileKind::Manifest)
        }
    }

    /// The manifest's 64 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        self.to_header().encode()
    }

    /// Decodes a manifest, with every check of [`FileHeader::decode`].
    pub fn decode(bytes: &[u8]) -> Result<Manifest, FormatError> {
        let h = FileHeader::decode(bytes, FileKind::Manifest)?;
        Ok(Manifest {
            generation: h.generation,
            data_id: h.param_a,
            index_id: h.param_b,
            folded_seq: h.base_seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Manifest {
            generation: 9,
            data_id: 3,
            index_id: 4,
            folded_seq: 1000,
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes), Ok(m));
        let h = FileHeader::decode(&bytes, FileKind::Manifest).unwrap();
        assert_eq!(
            (h.generation, h.param_a, h.param_b, h.base_seq),
            (9, 3, 4, 1000)
        );
    }

    #[test]
    fn detects_corruption() {
        let bytes = Manifest {
            generation: 1,
            data_id: 1,
            index_id: 1,
            folded_seq: 0,
        }
        .encode();
        for bit in 0..HEADER_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::decode(&b).is_err(), "bit {bit}");
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

//! The two small meta files of a node directory, one layout for both: the
//! node id file `NODE` and the state machine pointer `sm/CURRENT`.
//!
//! ```text
//! offset size field
//!  0     8    magic      b"SRAFNODE" (NODE) or b"SRAFSMPT" (CURRENT)
//!  8     4    version    u32 LE, 1
//! 12     8    value      u64 LE: the node id, or the state machine generation
//! 20     4    crc32      u32 LE over bytes 0..20
//! ```
//!
//! Both are written whole by `silo_io::durable::atomic_replace`.

use std::path::Path;

use crate::error::{RaftStoreError, Result};

/// Magic of the `NODE` file.
pub const NODE_MAGIC: [u8; 8] = *b"SRAFNODE";
/// Magic of the `sm/CURRENT` pointer file.
pub const POINTER_MAGIC: [u8; 8] = *b"SRAFSMPT";
/// The meta file format version.
pub const META_FILE_VERSION: u32 = 1;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const VALUE_OFFSET: usize = VERSION_OFFSET + size_of::<u32>();
const CRC_OFFSET: usize = VALUE_OFFSET + size_of::<u64>();
/// The length of a meta file.
pub const META_FILE_LEN: usize = CRC_OFFSET + size_of::<u32>();

/// The bytes of a meta file with `magic` holding `value`.
pub fn encode(magic: [u8; 8], value: u64) -> [u8; META_FILE_LEN] {
    let mut out = [0_u8; META_FILE_LEN];
    out[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&magic);
    out[VERSION_OFFSET..VALUE_OFFSET].copy_from_slice(&META_FILE_VERSION.to_le_bytes());
    out[VALUE_OFFSET..CRC_OFFSET].copy_from_slice(&value.to_le_bytes());
    let crc = crc32fast::hash(&out[..CRC_OFFSET]);
    out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The value of the meta file bytes `bytes` read from `path`.
pub fn decode(path: &Path, what: &'static str, magic: [u8; 8], bytes: &[u8]) -> Result<u64> {
    if bytes.len() < META_FILE_LEN {
        return Err(RaftStoreError::Truncated {
            path: path.to_owned(),
            what,
            offset: bytes.len() as u64,
        });
    }
    if bytes.len() > META_FILE_LEN {
        return Err(RaftStoreError::Invalid {
            path: path.to_owned(),
            what,
            offset: META_FILE_LEN as u64,
            reason: format!("{} bytes, expected {META_FILE_LEN}", bytes.len()),
        });
    }
    if bytes[MAGIC_OFFSET..VERSION_OFFSET] != magic {
        return Err(RaftStoreError::BadMagic {
            path: path.to_owned(),
            what,
        });
    }
    let stored = u32::from_le_bytes(le4(&bytes[CRC_OFFSET..]));
    let got = crc32fast::hash(&bytes[..CRC_OFFSET]);
    if stored != got {
        return Err(RaftStoreError::ChecksumMismatch {
            path: path.to_owned(),
            what: what.to_owned(),
            expected: stored,
            got,
        });
    }
    let version = u32::from_le_bytes(le4(&bytes[VERSION_OFFSET..VALUE_OFFSET]));
    if version != META_FILE_VERSION {
        return Err(RaftStoreError::UnsupportedVersion {
            path: path.to_owned(),
            what,
            version,
            supported: META_FILE_VERSION,
        });
    }
    let mut value = [0_u8; 8];
    value.copy_from_slice(&bytes[VALUE_OFFSET..CRC_OFFSET]);
    Ok(u64::from_le_bytes(value))
}

/// The first four bytes of `b` (which the callers size).
fn le4(b: &[u8]) -> [u8; 4] {
    let mut out = [0_u8; 4];
    out.copy_from_slice(&b[..4]);
    out
}

/// Reads the meta file at `path`; `Ok(None)` when it does not exist.
pub fn read(path: &Path, what: &'static str, magic: [u8; 8]) -> Result<Option<u64>> {
    match std::fs::read(path) {
        Ok(bytes) => decode(path, what, magic, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(silo_io::IoError::io("read", path, e).into()),
    }
}

/// Writes the meta file at `path` durably (atomic replace, directory synced).
pub fn write(path: &Path, magic: [u8; 8], value: u64) -> Result<()> {
    silo_io::durable::atomic_replace(path, &encode(magic, value))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode(NODE_MAGIC, 42);
        assert_eq!(bytes.len(), 24);
        let p = Path::new("NODE");
        assert_eq!(decode(p, "node", NODE_MAGIC, &bytes).expect("decodes"), 42);
    }

    #[test]
    fn detects_corruption() {
        let p = Path::new("NODE");
        let bytes = encode(NODE_MAGIC, 42);
        for i in 0..bytes.len() {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert!(decode(p, "node", NODE_MAGIC, &bad).is_err(), "flip at {i}");
        }
        assert!(matches!(
            decode(p, "node", POINTER_MAGIC, &bytes),
            Err(RaftStoreError::BadMagic { .. })
        ));
        assert!(matches!(
            decode(p, "node", NODE_MAGIC, &bytes[..10]),
            Err(RaftStoreError::Truncated { .. })
        ));
        // Another version with a valid checksum is a typed error.
        let mut v2 = bytes;
        v2[VERSION_OFFSET] = 2;
        let crc = crc32fast::hash(&v2[..CRC_OFFSET]);
        v2[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(p, "node", NODE_MAGIC, &v2),
            Err(RaftStoreError::UnsupportedVersion { version: 2, .. })
        ));
    }
}

//! The engine manifest `ENGINE`: one file header (kind EngineManifest)
//! holding the shard count and the routing scheme, replaced atomically.
//! Its presence is what makes a directory an engine: it is written last
//! when an engine is created.

use std::path::{Path, PathBuf};

use silo_format::{FileHeader, FileKind, HEADER_LEN};
use silo_io::durable::atomic_replace;
use silo_io::file::SiloFile;

use crate::error::{EngineError, Result};
use crate::route::ROUTING_SCHEME;

/// The manifest's file name.
pub(crate) const MANIFEST_NAME: &str = "ENGINE";

/// The decoded engine manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EngineManifest {
    pub(crate) generation: u64,
    pub(crate) shards: usize,
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_NAME)
}

/// Reads the manifest of `dir`; `None` if there is none.
pub(crate) fn read(dir: &Path) -> Result<Option<EngineManifest>> {
    let path = path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let file = SiloFile::open_read(&path)?;
    // At most a header's worth is read, whatever the file's length.
    let len = file.len()?.min(HEADER_LEN as u64);
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(HEADER_LEN)];
    file.read_exact_at(&mut bytes, 0)?;
    let h = FileHeader::decode(&bytes, FileKind::EngineManifest)
        .map_err(|e| EngineError::format(&path, e))?;
    if h.param_b != ROUTING_SCHEME {
        return Err(EngineError::Corrupt {
            file: path,
            offset: 40,
            reason: format!(
                "unknown key routing scheme {} (this build routes by scheme {ROUTING_SCHEME})",
                h.param_b
            ),
        });
    }
    let shards = usize::try_from(h.param_a)
        .ok()
        .filter(|s| crate::route::valid_shard_count(*s))
        .ok_or_else(|| EngineError::Corrupt {
            file: path.clone(),
            offset: 32,
            reason: format!("shard count {} is not a power of two up to 1024", h.param_a),
        })?;
    Ok(Some(EngineManifest {
        generation: h.generation,
        shards,
    }))
}

/// Writes `m` as the manifest of `dir` (atomic replace, directory synced).
pub(crate) fn write(dir: &Path, m: &EngineManifest) -> Result<()> {
    let header = FileHeader {
        generation: m.generation,
        param_a: m.shards as u64,
        param_b: ROUTING_SCHEME,
        ..FileHeader::new(FileKind::EngineManifest)
    };
    let bytes: [u8; HEADER_LEN] = header.encode();
    atomic_replace(&path(dir), &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let m = EngineManifest {
            generation: 3,
            shards: 8,
        };
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(m));
        // A flipped bit is a checksum error naming the file.
        let mut bytes = std::fs::read(path(dir.path())).unwrap();
        bytes[33] ^= 1;
        std::fs::write(path(dir.path()), &bytes).unwrap();
        match read(dir.path()) {
            Err(EngineError::Format { file, .. }) => assert_eq!(file, path(dir.path())),
            other => panic!("expected a format error, got {other:?}"),
        }
        // A header that is valid but names 3 shards or another routing.
        for (shards, routing) in [(3u64, ROUTING_SCHEME), (8, 2)] {
            let h = FileHeader {
                param_a: shards,
                param_b: routing,
                ..FileHeader::new(FileKind::EngineManifest)
            };
            std::fs::write(path(dir.path()), h.encode()).unwrap();
            assert!(matches!(read(dir.path()), Err(EngineError::Corrupt { .. })));
        }
        // A later format version is a clear error, not a guess.
        let future = FileHeader {
            version: silo_format::FORMAT_VERSION + 1,
            param_a: 8,
            param_b: ROUTING_SCHEME,
            ..FileHeader::new(FileKind::EngineManifest)
        };
        std::fs::write(path(dir.path()), future.encode()).unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(EngineError::Format {
                source: silo_format::error::FormatError::UnsupportedVersion { .. },
                ..
            })
        ));
        std::fs::write(path(dir.path()), b"short").unwrap();
        assert!(matches!(read(dir.path()), Err(EngineError::Format { .. })));
    }
}

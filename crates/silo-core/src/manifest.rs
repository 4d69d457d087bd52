//! Reading and writing the `MANIFEST` file, which names the live data and
//! index files; it is replaced atomically (write, sync, rename, sync dir).

use std::path::{Path, PathBuf};

use silo_format::Manifest;
use silo_format::manifest::MANIFEST_LEN;
use silo_io::durable::atomic_replace;
use silo_io::file::SiloFile;

use crate::error::{Error, Result};

/// The manifest's file name.
pub(crate) const MANIFEST_NAME: &str = "MANIFEST";
/// What the manifest takes on disk, counted in `Stats::disk_bytes`.
pub(crate) const MANIFEST_DISK_BYTES: u64 = 4096;

/// The manifest's path in `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_NAME)
}

/// Reads the manifest, or `None` if there is none.
pub(crate) fn read(dir: &Path) -> Result<Option<Manifest>> {
    let path = path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let file = SiloFile::open_read(&path)?;
    let len = file.len()?;
    if len != MANIFEST_LEN as u64 {
        return Err(Error::corrupt(
            &path,
            0,
            format!("manifest is {len} bytes, expected {MANIFEST_LEN}"),
        ));
    }
    let mut bytes = [0u8; MANIFEST_LEN];
    file.read_exact_at(&mut bytes, 0)?;
    Manifest::decode(&bytes)
        .map(Some)
        .map_err(|e| Error::format(&path, e))
}

/// Replaces the manifest atomically with `m`.
pub(crate) fn write(dir: &Path, m: &Manifest) -> Result<()> {
    Ok(atomic_replace(&path(dir), &m.encode())?)
}

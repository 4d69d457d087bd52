//! Durable file operations: create with a header, directory fsync, rename,
//! remove, link, copy and atomic replace, all through the fault seam.
//!
//! A new name is durable only after its directory is synced; these helpers
//! do that where the operation promises durability.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use silo_format::header::{FileHeader, FileKind, HEADER_LEN};

use crate::error::IoError;
use crate::fault::{self, FaultOp};
use crate::file::SiloFile;

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `path` (it must not exist) holding `header` as its first 64
/// bytes, atomically and durably, and returns it open for writing.
///
/// The header is written to `<path>.tmp` (a leftover of an interrupted
/// creation is removed first), synced, and renamed to `path`, and the
/// directory is synced. After a failure or a crash at any step, `path`
/// either does not exist or holds the whole header: a file shorter than a
/// header is damage, never an interrupted creation.
///
/// ```
/// use silo_format::header::{FileHeader, FileKind};
/// use silo_io::durable::{create_with_header, read_header};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data-1");
/// let file = create_with_header(&path, &FileHeader::new(FileKind::Data))?;
/// assert_eq!(read_header(&file, FileKind::Data)?.kind, FileKind::Data);
/// assert!(create_with_header(&path, &FileHeader::new(FileKind::Data)).is_err());
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn create_with_header(path: &Path, header: &FileHeader) -> Result<SiloFile, IoError> {
    if path.exists() {
        return Err(IoError::io(
            "create",
            path,
            io::Error::from(io::ErrorKind::AlreadyExists),
        ));
    }
    let tmp = tmp_path(path);
    if tmp.exists() {
        remove_file(&tmp)?;
    }
    let file = SiloFile::create_new(&tmp)?;
    file.write_all_at(&header.encode(), 0)?;
    file.sync_all()?;
    drop(file);
    rename(&tmp, path)?;
    sync_dir(parent_dir(path))?;
    SiloFile::open(path)
}

/// Creates `path` (it must not exist) holding `header` as its first 64
/// bytes, and returns it open for writing: a file that nothing names yet,
/// written whole before it is named, so none of [`create_with_header`]'s
/// syncs and rename are needed. Nothing is synced: the caller syncs the
/// file (the header is its data) and then its directory before anything
/// that names it (a manifest) is written. A crash before that may leave
/// `path` missing, empty or partly written, and nothing naming it.
///
/// ```
/// use silo_format::header::{FileHeader, FileKind};
/// use silo_io::durable::{create_fresh, read_header};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data-2");
/// let file = create_fresh(&path, &FileHeader::new(FileKind::Data))?;
/// assert_eq!(read_header(&file, FileKind::Data)?.kind, FileKind::Data);
/// assert!(create_fresh(&path, &FileHeader::new(FileKind::Data)).is_err());
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn create_fresh(path: &Path, header: &FileHeader) -> Result<SiloFile, IoError> {
    let file = SiloFile::create_new(path)?;
    file.write_all_at(&header.encode(), 0)?;
    Ok(file)
}

/// Reads and checks the 64-byte header of `file`, expecting kind `expected`.
/// A file shorter than a header is `IoError::BadHeader` with
/// `FormatError::Truncated`; every decoding error names the file.
///
/// ```
/// use silo_format::error::FormatError;
/// use silo_format::header::FileKind;
/// use silo_io::{IoError, SiloFile, durable::read_header};
/// let dir = tempfile::tempdir().unwrap();
/// let file = SiloFile::create_new(&dir.path().join("short"))?;
/// file.write_all_at(b"abc", 0)?;
/// let err = read_header(&file, FileKind::Index).unwrap_err();
/// assert!(matches!(err, IoError::BadHeader { source: FormatError::Truncated { .. }, .. }));
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn read_header(file: &SiloFile, expected: FileKind) -> Result<FileHeader, IoError> {
    let len = usize::try_from(file.len()?)
        .unwrap_or(usize::MAX)
        .min(HEADER_LEN);
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf[..len], 0)?;
    FileHeader::decode(&buf[..len], expected).map_err(|source| IoError::BadHeader {
        path: file.path().to_path_buf(),
        source,
    })
}

/// Makes the entries of directory `dir` durable (fsync of the directory), so
/// files created, renamed or removed in it survive a crash.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// silo_io::durable::sync_dir(dir.path())?;
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    fault::check(FaultOp::Sync, dir)?;
    let handle = File::open(dir).map_err(|e| IoError::io("open directory", dir, e))?;
    loop {
        match handle.sync_all() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IoError::io("fsync directory", dir, e)),
            Ok(()) => {
                fault::dir_synced(dir);
                return Ok(());
            }
        }
    }
}

/// Renames `from` to `to`, replacing `to` atomically if it exists. The
/// directory is not synced: call [`sync_dir`] to make the rename durable.
///
/// ```
/// use silo_io::durable::rename;
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a"), dir.path().join("b"));
/// std::fs::write(&a, b"x").unwrap();
/// rename(&a, &b)?;
/// assert!(b.exists() && !a.exists());
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn rename(from: &Path, to: &Path) -> Result<(), IoError> {
    fault::check(FaultOp::Rename, to)?;
    std::fs::rename(from, to).map_err(|e| IoError::io("rename", from, e))
}

/// Removes the file at `path`; a missing file is not an error. The directory
/// is not synced: call [`sync_dir`] to make the removal durable.
///
/// ```
/// use silo_io::durable::remove_file;
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("f");
/// std::fs::write(&p, b"x").unwrap();
/// remove_file(&p)?;
/// remove_file(&p)?; // already gone: fine
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn remove_file(path: &Path) -> Result<(), IoError> {
    fault::check(FaultOp::Remove, path)?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(IoError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Removes the directory tree at `path`; a missing one is not an error.
/// The parent directory is not synced: call [`sync_dir`] to make the
/// removal durable.
///
/// ```
/// use silo_io::durable::remove_dir_all;
/// let dir = tempfile::tempdir().unwrap();
/// let tree = dir.path().join("t");
/// std::fs::create_dir_all(tree.join("sub")).unwrap();
/// std::fs::write(tree.join("sub/f"), b"x").unwrap();
/// remove_dir_all(&tree)?;
/// assert!(!tree.exists());
/// remove_dir_all(&tree)?; // already gone: fine
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn remove_dir_all(path: &Path) -> Result<(), IoError> {
    fault::check(FaultOp::Remove, path)?;
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(IoError::io("remove directory", path, e))
        }
        _ => Ok(()),
    }
}

/// Creates a hard link `to` naming the same file as `from`. The directory is
/// not synced: call [`sync_dir`] to make the link durable.
///
/// ```
/// use silo_io::durable::hard_link;
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a"), dir.path().join("b"));
/// std::fs::write(&a, b"x").unwrap();
/// hard_link(&a, &b)?;
/// assert_eq!(std::fs::read(&b).unwrap(), b"x");
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn hard_link(from: &Path, to: &Path) -> Result<(), IoError> {
    fault::check(FaultOp::Link, to)?;
    std::fs::hard_link(from, to).map_err(|e| IoError::io("hard link", to, e))
}

/// Copies `from` to `to` (created or truncated) through [`SiloFile`] writes,
/// syncs the copy and its directory, and returns the bytes copied.
///
/// ```
/// use silo_io::durable::copy_file;
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a"), dir.path().join("b"));
/// std::fs::write(&a, b"some bytes").unwrap();
/// assert_eq!(copy_file(&a, &b)?, 10);
/// assert_eq!(std::fs::read(&b).unwrap(), b"some bytes");
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn copy_file(from: &Path, to: &Path) -> Result<u64, IoError> {
    const CHUNK: u64 = 1 << 20;
    let src = SiloFile::open_read(from)?;
    let len = src.len()?;
    let dst = SiloFile::create(to)?;
    let mut buf = vec![0u8; usize::try_from(len.min(CHUNK)).unwrap_or(1 << 20)];
    let mut at = 0u64;
    while at < len {
        let n = usize::try_from((len - at).min(CHUNK)).unwrap_or(buf.len());
        src.read_exact_at(&mut buf[..n], at)?;
        dst.write_all_at(&buf[..n], at)?;
        at += n as u64;
    }
    dst.sync_all()?;
    sync_dir(parent_dir(to))?;
    Ok(len)
}

/// Creates directory `dir` and any missing parents, and makes each new
/// name durable by syncing the directory that holds it, so that a store or
/// a copy created here survives a power cut. An existing directory is left
/// as it is, unsynced (a directory fsync can wait for the file system's
/// journal; a caller that may find a directory an earlier call created but
/// did not sync, such as a store creation, syncs its parent itself).
///
/// ```
/// let root = tempfile::tempdir().unwrap();
/// let dir = root.path().join("a/b");
/// silo_io::durable::create_dir_durable(&dir)?;
/// silo_io::durable::create_dir_durable(&dir)?;
/// assert!(dir.is_dir());
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn create_dir_durable(dir: &Path) -> Result<(), IoError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(parent)?;
    }
    fault::check(FaultOp::Create, dir)?;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        // Another thread or process made it meanwhile: as good.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(IoError::io("create directory", dir, e)),
    }
    sync_dir(parent_dir(dir))
}

/// The temporary file [`atomic_replace`] writes before renaming: `<path>.tmp`.
///
/// ```
/// use std::path::Path;
/// assert_eq!(silo_io::durable::tmp_path(Path::new("/d/MANIFEST")), Path::new("/d/MANIFEST.tmp"));
/// ```
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces the contents of `path` with `bytes` atomically and durably:
/// writes `<path>.tmp`, syncs it, renames it over `path` and syncs the
/// directory. After a failure (or crash) at any step `path` holds either
/// the old or the new bytes; a leftover `.tmp` is harmless and is
/// overwritten next time.
///
/// ```
/// use silo_io::durable::atomic_replace;
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("MANIFEST");
/// atomic_replace(&p, b"v1")?;
/// atomic_replace(&p, b"v2")?;
/// assert_eq!(std::fs::read(&p).unwrap(), b"v2");
/// # Ok::<(), silo_io::IoError>(())
/// ```
pub fn atomic_replace(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let tmp = tmp_path(path);
    let file = SiloFile::create(&tmp)?;
    file.write_all_at(bytes, 0)?;
    file.sync_all()?;
    drop(file);
    rename(&tmp, path)?;
    sync_dir(parent_dir(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_format::error::FormatError;

    #[test]
    fn header_round_trip_and_wrong_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = FileHeader::new(FileKind::Index);
        h.generation = 7;
        let f = create_with_header(&dir.path().join("index-1"), &h).unwrap();
        assert_eq!(f.len().unwrap(), HEADER_LEN as u64);
        assert_eq!(read_header(&f, FileKind::Index).unwrap(), h);
        let e = read_header(&f, FileKind::Data).unwrap_err();
        assert!(
            matches!(
                e,
                IoError::BadHeader {
                    source: FormatError::WrongKind { .. },
                    ..
                }
            ),
            "{e}"
        );
        let e = create_with_header(&dir.path().join("index-1"), &h).unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::AlreadyExists));
    }

    #[test]
    fn empty_file_header_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let f = SiloFile::create_new(&dir.path().join("f")).unwrap();
        let e = read_header(&f, FileKind::Data).unwrap_err();
        assert!(
            matches!(
                e,
                IoError::BadHeader {
                    source: FormatError::Truncated { available: 0, .. },
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn atomic_replace_overwrites_a_longer_leftover_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("M");
        std::fs::write(tmp_path(&p), vec![9u8; 100]).unwrap();
        atomic_replace(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn relative_paths_use_the_current_directory() {
        assert_eq!(parent_dir(Path::new("f")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/f")), Path::new("/a"));
    }

    #[test]
    fn copy_of_empty_and_multi_chunk_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"").unwrap();
        assert_eq!(copy_file(&a, &b).unwrap(), 0);
        let big: Vec<u8> = (0..(3 << 20) + 5)
            .map(|i: u32| i.to_le_bytes()[0])
            .collect();
        std::fs::write(&a, &big).unwrap();
        assert_eq!(copy_file(&a, &b).unwrap(), big.len() as u64);
        assert_eq!(std::fs::read(&b).unwrap(), big);
    }
}

//! The snapshot archive: a state machine checkpoint directory packed into
//! one file, streamed in fixed-size chunks (never held whole in memory),
//! each file checked by CRC32 when unpacked (`docs/FORMAT.md`, "Snapshot archive").
//!
//! ```text
//! header:  magic b"SRAFSNAP" (8) | version u32 | meta_len u32 | meta JSON | crc32 u32 (over all before it)
//! file:    tag u8 = 1 | path_len u16 | data_len u64 | path (UTF-8, '/'-separated) | data | crc32 u32 (over tag..data)
//! end:     tag u8 = 0 | file_count u32 | crc32 u32 (over tag and file_count)
//! ```

use std::path::{Component, Path, PathBuf};

use silo_io::SiloFile;
use silo_io::durable::{create_dir_durable, sync_dir};

use crate::error::{RaftStoreError, Result};

/// The archive's magic.
pub const ARCHIVE_MAGIC: [u8; 8] = *b"SRAFSNAP";
/// The archive format version.
pub const ARCHIVE_VERSION: u32 = 1;
/// Tag of a file entry.
pub const TAG_FILE: u8 = 1;
/// Tag of the end record.
pub const TAG_END: u8 = 0;
/// Longest snapshot meta accepted, in bytes.
pub const MAX_META_LEN: u32 = 1 << 20;
/// Longest archived path accepted, in bytes.
pub const MAX_PATH_LEN: u16 = 4096;
/// The chunk in which file bytes are copied.
const CHUNK: usize = 1 << 20;

const MAGIC_LEN: u64 = 8;
const HEADER_FIXED: u64 = MAGIC_LEN + 4 + 4;
const ENTRY_FIXED: u64 = 1 + 2 + 8;
const CRC_LEN: u64 = 4;

/// A sequential writer over a `SiloFile` with a small buffer.
struct Out {
    file: SiloFile,
    offset: u64,
    buf: Vec<u8>,
}

impl Out {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if self.buf.len() + bytes.len() > CHUNK {
            self.drain()?;
        }
        if bytes.len() >= CHUNK {
            self.file.write_all_at(bytes, self.offset)?;
            self.offset += bytes.len() as u64;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.offset)?;
            self.offset += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Every regular file under `dir`, as paths relative to it, sorted; the
/// engine's `LOCK` files are left out (an open creates them).
fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries =
            std::fs::read_dir(&abs).map_err(|e| silo_io::IoError::io("read directory", &abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| silo_io::IoError::io("read directory", &abs, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| silo_io::IoError::io("stat", &entry.path(), e))?;
            let name = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(name);
            } else if kind.is_file() && entry.file_name() != "LOCK" {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Packs every file under `src` into a new archive at `dest` with `meta`
/// (the snapshot meta, JSON) in its header, and syncs it.
pub fn pack(src: &Path, meta: &[u8], dest: &Path) -> Result<()> {
    let meta_len = u32::try_from(meta.len())
        .ok()
        .filter(|n| *n <= MAX_META_LEN)
        .ok_or_else(|| RaftStoreError::Invalid {
            path: dest.to_owned(),
            what: "snapshot meta",
            offset: 0,
            reason: format!("{} bytes, at most {MAX_META_LEN}", meta.len()),
        })?;
    let files = list_files(src)?;
    let mut out = Out {
        file: SiloFile::create_new(dest)?,
        offset: 0,
        buf: Vec::with_capacity(CHUNK),
    };
    let mut header = Vec::with_capacity(meta.len() + 20);
    header.extend_from_slice(&ARCHIVE_MAGIC);
    header.extend_from_slice(&ARCHIVE_VERSION.to_le_bytes());
    header.extend_from_slice(&meta_len.to_le_bytes());
    header.extend_from_slice(meta);
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    out.put(&header)?;
    let mut chunk = vec![0_u8; CHUNK];
    for rel in &files {
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join("/"))
            .ok_or_else(|| RaftStoreError::Invalid {
                path: src.join(rel),
                what: "file name",
                offset: 0,
                reason: "not UTF-8".to_owned(),
            })?;
        let path_len = u16::try_from(name.len())
            .ok()
            .filter(|n| *n <= MAX_PATH_LEN)
            .ok_or_else(|| RaftStoreError::Invalid {
                path: src.join(rel),
                what: "file name",
                offset: 0,
                reason: format!("longer than {MAX_PATH_LEN} bytes"),
            })?;
        let input = SiloFile::open_read(&src.join(rel))?;
        let len = input.len()?;
        let mut crc = crc32fast::Hasher::new();
        let mut head = Vec::with_capacity(name.len() + 11);
        head.push(TAG_FILE);
        head.extend_from_slice(&path_len.to_le_bytes());
        head.extend_from_slice(&len.to_le_bytes());
        head.extend_from_slice(name.as_bytes());
        crc.update(&head);
        out.put(&head)?;
        let mut at = 0_u64;
        while at < len {
            let n = usize::try_from((len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            input.read_exact_at(&mut chunk[..n], at)?;
            crc.update(&chunk[..n]);
            out.put(&chunk[..n])?;
            at += n as u64;
        }
        out.put(&crc.finalize().to_le_bytes())?;
    }
    let count = u32::try_from(files.len()).map_err(|_| RaftStoreError::Invalid {
        path: src.to_owned(),
        what: "file count",
        offset: 0,
        reason: "more than u32::MAX files".to_owned(),
    })?;
    let mut end = vec![TAG_END];
    end.extend_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&end);
    end.extend_from_slice(&crc.to_le_bytes());
    out.put(&end)?;
    out.drain()?;
    out.file.sync_all()?;
    Ok(())
}

/// A sequential reader over an archive, checking every read against its length.
struct In<'a> {
    file: &'a SiloFile,
    len: u64,
    offset: u64,
}

impl In<'_> {
    fn read(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        let end = self.offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(RaftStoreError::Truncated {
                path: self.file.path().to_owned(),
                what,
                offset: self.offset,
            });
        }
        self.file.read_exact_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        let mut b = [0_u8; 1];
        self.read(&mut b, what)?;
        Ok(b[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16> {
        let mut b = [0_u8; 2];
        self.read(&mut b, what)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        let mut b = [0_u8; 4];
        self.read(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        let mut b = [0_u8; 8];
        self.read(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn invalid(&self, what: &'static str, at: u64, reason: String) -> RaftStoreError {
        RaftStoreError::Invalid {
            path: self.file.path().to_owned(),
            what,
            offset: at,
            reason,
        }
    }

    fn checksum(&self, what: String, expected: u32, got: u32) -> Result<()> {
        if expected == got {
            Ok(())
        } else {
            Err(RaftStoreError::ChecksumMismatch {
                path: self.file.path().to_owned(),
                what,
                expected,
                got,
            })
        }
    }
}

/// Reads and checks the header of the archive `file`; returns the meta
/// bytes and leaves `input` after the header.
fn read_header(input: &mut In<'_>) -> Result<Vec<u8>> {
    let mut magic = [0_u8; 8];
    input.read(&mut magic, "archive header")?;
    if magic != ARCHIVE_MAGIC {
        return Err(RaftStoreError::BadMagic {
            path: input.file.path().to_owned(),
            what: "snapshot archive",
        });
    }
    let version = input.u32("archive header")?;
    let meta_len = input.u32("archive header")?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&magic);
    crc.update(&version.to_le_bytes());
    crc.update(&meta_len.to_le_bytes());
    if meta_len > MAX_META_LEN {
        return Err(input.invalid(
            "meta length",
            MAGIC_LEN + 4,
            format!("{meta_len} bytes, at most {MAX_META_LEN}"),
        ));
    }
    if u64::from(meta_len) + CRC_LEN > input.len - input.offset {
        return Err(RaftStoreError::Truncated {
            path: input.file.path().to_owned(),
            what: "archive header",
            offset: input.offset,
        });
    }
    let mut meta = vec![0_u8; usize::try_from(meta_len).unwrap_or(0)];
    input.read(&mut meta, "archive header")?;
    crc.update(&meta);
    let stored = input.u32("archive header")?;
    input.checksum("archive header".to_owned(), stored, crc.finalize())?;
    if version != ARCHIVE_VERSION {
        return Err(RaftStoreError::UnsupportedVersion {
            path: input.file.path().to_owned(),
            what: "snapshot archive",
            version,
            supported: ARCHIVE_VERSION,
        });
    }
    debug_assert_eq!(input.offset, HEADER_FIXED + u64::from(meta_len) + CRC_LEN);
    Ok(meta)
}

/// The snapshot meta (JSON) in the header of the archive `file`.
pub fn read_meta(file: &SiloFile) -> Result<Vec<u8>> {
    let mut input = In {
        file,
        len: file.len()?,
        offset: 0,
    };
    read_header(&mut input)
}

/// An archived path as a relative path: non-empty `/`-separated normal
/// components only (no `..`, no root, no `.`).
fn safe_path(name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    let path = PathBuf::from(name);
    path.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(path)
}

/// Unpacks the archive `file` into the new directory `dest`, checking every
/// checksum, and syncs what it wrote; returns the meta bytes. On an error
/// `dest` may hold part of the files: the caller removes it.
pub fn unpack(file: &SiloFile, dest: &Path) -> Result<Vec<u8>> {
    let mut input = In {
        file,
        len: file.len()?,
        offset: 0,
    };
    let meta = read_header(&mut input)?;
    create_dir_durable(dest)?;
    let mut dirs = vec![dest.to_owned()];
    let mut chunk = vec![0_u8; CHUNK];
    let mut count = 0_u32;
    loop {
        let entry_at = input.offset;
        let tag = input.u8("archive entry")?;
        match tag {
            TAG_END => {
                let files = input.u32("archive end")?;
                let stored = input.u32("archive end")?;
                let mut crc = crc32fast::Hasher::new();
                crc.update(&[TAG_END]);
                crc.update(&files.to_le_bytes());
                input.checksum("archive end".to_owned(), stored, crc.finalize())?;
                if files != count {
                    return Err(input.invalid(
                        "file count",
                        entry_at + 1,
                        format!("end record says {files} files, archive holds {count}"),
                    ));
                }
                if input.offset != input.len {
                    return Err(input.invalid(
                        "archive end",
                        input.offset,
                        "bytes after the end record".to_owned(),
                    ));
                }
                break;
            }
            TAG_FILE => {}
            other => {
                return Err(input.invalid("entry tag", entry_at, format!("unknown tag {other}")));
            }
        }
        let path_len = input.u16("archive entry")?;
        let data_len = input.u64("archive entry")?;
        if path_len > MAX_PATH_LEN {
            return Err(input.invalid(
                "path length",
                entry_at + 1,
                format!("{path_len} bytes, at most {MAX_PATH_LEN}"),
            ));
        }
        let mut name = vec![0_u8; usize::from(path_len)];
        input.read(&mut name, "archive entry")?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[TAG_FILE]);
        crc.update(&path_len.to_le_bytes());
        crc.update(&data_len.to_le_bytes());
        crc.update(&name);
        let rel = std::str::from_utf8(&name)
            .ok()
            .and_then(safe_path)
            .ok_or_else(|| {
                input.invalid(
                    "archived path",
                    entry_at + ENTRY_FIXED,
                    format!(
                        "{:?} is not a safe relative path",
                        String::from_utf8_lossy(&name)
                    ),
                )
            })?;
        let remaining = input.len - input.offset;
        if data_len.checked_add(CRC_LEN).is_none_or(|n| n > remaining) {
            return Err(RaftStoreError::Truncated {
                path: file.path().to_owned(),
                what: "archived file",
                offset: input.offset,
            });
        }
        let target = dest.join(&rel);
        if let Some(parent) = target.parent()
            && !dirs.iter().any(|d| d == parent)
        {
            create_dir_durable(parent)?;
            dirs.push(parent.to_owned());
        }
        let out = SiloFile::create_new(&target)?;
        let mut at = 0_u64;
        while at < data_len {
            let n = usize::try_from((data_len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            input.read(&mut chunk[..n], "archived file")?;
            crc.update(&chunk[..n]);
            out.write_all_at(&chunk[..n], at)?;
            at += n as u64;
        }
        let stored = input.u32("archived file")?;
        input.checksum(rel.display().to_string(), stored, crc.finalize())?;
        out.sync_all()?;
        count += 1;
    }
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(root: &Path) -> PathBuf {
        let src = root.join("src");
        std::fs::create_dir_all(src.join("shard-0000")).expect("mkdir");
        std::fs::write(src.join("MANIFEST"), b"manifest bytes").expect("write");
        std::fs::write(src.join("shard-0000/data"), vec![7_u8; 3 * CHUNK + 5]).expect("write");
        std::fs::write(src.join("LOCK"), b"").expect("write");
        src
    }

    #[test]
    fn round_trip() {
        let root = tempfile::tempdir().expect("tempdir");
        let src = sample(root.path());
        let archive = root.path().join("a.snap");
        pack(&src, b"{\"m\":1}", &archive).expect("packs");
        let file = SiloFile::open_read(&archive).expect("opens");
        assert_eq!(read_meta(&file).expect("meta"), b"{\"m\":1}");
        let dest = root.path().join("dest");
        assert_eq!(unpack(&file, &dest).expect("unpacks"), b"{\"m\":1}");
        assert_eq!(
            std::fs::read(dest.join("shard-0000/data")).expect("read"),
            vec![7_u8; 3 * CHUNK + 5]
        );
        assert_eq!(
            std::fs::read(dest.join("MANIFEST")).expect("read"),
            b"manifest bytes"
        );
        assert!(!dest.join("LOCK").exists());
    }

    #[test]
    fn detects_corruption() {
        let root = tempfile::tempdir().expect("tempdir");
        let src = root.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("f"), b"0123456789").expect("write");
        let archive = root.path().join("a.snap");
        pack(&src, b"{}", &archive).expect("packs");
        let good = std::fs::read(&archive).expect("read");
        // Every flipped byte and every cut is refused with a typed error.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let path = root.path().join(format!("bad-{i}.snap"));
            std::fs::write(&path, &bad).expect("write");
            let file = SiloFile::open_read(&path).expect("opens");
            let dest = root.path().join(format!("dest-{i}"));
            assert!(unpack(&file, &dest).is_err(), "flip at {i} accepted");
        }
        for cut in 0..good.len() {
            let path = root.path().join(format!("cut-{cut}.snap"));
            std::fs::write(&path, &good[..cut]).expect("write");
            let file = SiloFile::open_read(&path).expect("opens");
            let dest = root.path().join(format!("cut-dest-{cut}"));
            assert!(unpack(&file, &dest).is_err(), "cut at {cut} accepted");
        }
        // A flipped data byte names the checksum.
        let mut bad = good.clone();
        let data_at = good.len() - 4 - 9 - 4 - 1;
        bad[data_at] ^= 0xff;
        let path = root.path().join("data.snap");
        std::fs::write(&path, &bad).expect("write");
        let file = SiloFile::open_read(&path).expect("opens");
        assert!(matches!(
            unpack(&file, &root.path().join("d")),
            Err(RaftStoreError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn refuses_unsafe_paths() {
        assert!(safe_path("../x").is_none());
        assert!(safe_path("/etc/passwd").is_none());
        assert!(safe_path("").is_none());
        assert_eq!(
            safe_path("shard-0000/data"),
            Some(PathBuf::from("shard-0000/data"))
        );
    }
}

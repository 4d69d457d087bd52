//! The compaction journal (`journal`): the new bytes of every record about
//! to be rewritten in place, made durable before the first in-place write,
//! so a crash in the middle of one never loses the value it replaces.
//!
//! Body: one `Put` frame per record (key = data file offset, payload = the
//! whole encoded record), then a `BatchCommit` frame whose key is the count.
//! A journal without its commit frame was never acted on and is discarded.
//! A long journal is written past the page cache, so zeros may follow the
//! commit frame up to the next 4 KiB boundary; nothing after it is read.

use std::path::{Path, PathBuf};

use silo_format::{
    FileHeader, FileKind, FrameReader, HEADER_LEN, Tag, decode_record, encode_frame, frame_len,
    frame_parts,
};
use silo_io::direct::DirectWriter;
use silo_io::durable::{create_with_header, read_header, remove_file, sync_dir};
use silo_io::file::SiloFile;

use crate::READ_LIMIT;
use crate::compaction::sink::DIRECT_FROM;
use crate::data::DataFile;
use crate::error::{Error, Result};
use crate::log::slot::to_usize;

/// The journal's file name.
pub(crate) const JOURNAL_NAME: &str = "journal";

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_NAME)
}

/// The buffer of a journal written past the page cache.
const JOURNAL_BUFFER: usize = 8 << 20;

/// What writing a journal took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Journaled {
    /// The journal's body (frames), in bytes.
    pub(crate) bytes: u64,
    /// Whether it was written past the page cache.
    pub(crate) direct: bool,
}

/// Writes and syncs a journal of `(offset, record bytes)` writes.
pub(crate) fn write<'w>(
    dir: &Path,
    generation: u64,
    writes: impl Iterator<Item = (u64, &'w [u8])>,
) -> Result<Journaled> {
    let path = path(dir);
    remove_file(&path)?;
    let header = FileHeader {
        generation,
        ..FileHeader::new(FileKind::Journal)
    };
    let file = create_with_header(&path, &header)?;
    let writes: Vec<(u64, &[u8])> = writes.collect();
    let mut commit = vec![0u8; frame_len(0)];
    encode_frame(&mut commit, Tag::BatchCommit, writes.len() as u64, &[])
        .map_err(|e| Error::format(&path, e))?;
    let total: u64 = writes
        .iter()
        .map(|(_, record)| frame_len(record.len()) as u64)
        .sum::<u64>()
        + commit.len() as u64;
    // A long journal (a fold that rewrites many records in place) is
    // written past the page cache, as a compaction's long runs of records
    // are: nothing reads it unless a crash cuts the rewrite off. Where
    // that path cannot be opened, the vectored write below does the work.
    if total >= DIRECT_FROM
        && let Ok(Some(mut direct)) = DirectWriter::open(&path, HEADER_LEN as u64, JOURNAL_BUFFER)
    {
        for (offset, record) in &writes {
            let (head, trailer) =
                frame_parts(Tag::Put, *offset, record).map_err(|e| Error::format(&path, e))?;
            direct.push_with(frame_len(record.len()), |buf| {
                let (h, rest) = buf.split_at_mut(head.len());
                let (r, t) = rest.split_at_mut(record.len());
                h.copy_from_slice(&head);
                r.copy_from_slice(record);
                t.copy_from_slice(&trailer);
            })?;
        }
        direct.push(&commit)?;
        direct.finish()?;
        file.sync_data()?;
        return Ok(Journaled {
            bytes: total,
            direct: true,
        });
    }
    // One vectored write: each frame's header and trailer are built here,
    // its payload (the record) is the caller's bytes, never copied.
    let mut parts = Vec::with_capacity(writes.len());
    for (offset, record) in &writes {
        parts.push(frame_parts(Tag::Put, *offset, record).map_err(|e| Error::format(&path, e))?);
    }
    let mut bufs: Vec<&[u8]> = Vec::with_capacity(writes.len() * 3 + 1);
    for ((_, record), (head, trailer)) in writes.iter().zip(&parts) {
        bufs.extend([&head[..], record, &trailer[..]]);
    }
    bufs.push(&commit);
    file.write_vectored_all_at(&bufs, HEADER_LEN as u64)?;
    file.sync_data()?;
    Ok(Journaled {
        bytes: total,
        direct: false,
    })
}

pub(crate) fn remove(dir: &Path) -> Result<()> {
    remove_file(&path(dir))?;
    sync_dir(dir)?;
    Ok(())
}

/// On open: redoes the writes of a complete journal, discards an incomplete one.
pub(crate) fn recover(dir: &Path, data: &DataFile) -> Result<()> {
    let path = path(dir);
    if !path.exists() {
        return Ok(());
    }
    let file = SiloFile::open_read(&path)?;
    // A journal is written whole and synced before any in-place write
    // starts; one whose header is missing or damaged was never completed.
    if read_header(&file, FileKind::Journal).is_err() {
        return remove(dir);
    }
    let len = to_usize(file.len()?)?;
    // The allocation is the journal's real length on disk, not a length field.
    let mut body = vec![0u8; len.saturating_sub(HEADER_LEN)];
    file.read_exact_at(&mut body, HEADER_LEN as u64)?;
    let mut writes = Vec::new();
    let mut committed = false;
    for (at, frame) in FrameReader::new(&body) {
        match frame.tag {
            Tag::Put => {
                let record = decode_record(frame.payload, READ_LIMIT)
                    .map_err(|e| Error::format(&path, e))?;
                let end = frame.key.checked_add(frame.payload.len() as u64);
                if end.is_none_or(|end| end > data.end()) || record.size() != frame.payload.len() {
                    return Err(Error::corrupt(
                        &path,
                        (HEADER_LEN + at) as u64,
                        "journal entry lies outside the data file",
                    ));
                }
                writes.push((frame.key, frame.payload));
            }
            Tag::BatchCommit if frame.key == writes.len() as u64 => {
                committed = true;
                break;
            }
            _ => break,
        }
    }
    if committed {
        for (offset, record) in &writes {
            data.file().write_all_at(record, *offset)?;
        }
        data.file().sync_data()?;
    }
    remove(dir)
}

#[cfg(test)]
mod tests {
    use silo_format::encode_record;

    use super::*;

    /// A data file of three 40-byte records (keys 1, 2, 3), the offsets
    /// they lie at, and a new record for key 2.
    fn store_with_journal(dir: &Path) -> (DataFile, Vec<u64>, Vec<u8>) {
        let data = DataFile::create(dir, 1, 0).expect("data");
        let size = silo_format::record_size(40);
        let first = data.reserve(3 * size as u64).expect("reserve");
        let mut bytes = vec![0u8; 3 * size];
        for (i, chunk) in bytes.chunks_mut(size).enumerate() {
            encode_record(chunk, i as u64 + 1, 1, &[b'a'; 40], 40).expect("encode");
        }
        data.file().write_all_at(&bytes, first).expect("write");
        let offsets: Vec<u64> = (0..3).map(|i| first + (i * size) as u64).collect();
        let mut new = vec![0u8; size];
        encode_record(&mut new, 2, 9, &[b'b'; 40], 40).expect("encode");
        (data, offsets, new)
    }

    fn record_at(data: &DataFile, offset: u64, key: u64) -> (u64, Vec<u8>) {
        let mut bytes = vec![0u8; silo_format::record_size(40)];
        data.file().read_exact_at(&mut bytes, offset).expect("read");
        let record = decode_record(&bytes, READ_LIMIT).expect("record");
        assert_eq!(record.key, key);
        (record.seq, record.value.to_vec())
    }

    #[test]
    fn a_complete_journal_is_redone_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, offsets, new) = store_with_journal(dir.path());
        // Key 2's record, and key 3's (the last: it ends at the data end).
        let mut last = vec![0u8; new.len()];
        encode_record(&mut last, 3, 9, &[b'c'; 40], 40).expect("encode");
        let writes = [(offsets[1], &new[..]), (offsets[2], &last[..])];
        let journaled = write(dir.path(), 7, writes.into_iter()).expect("journal");
        let frames = 2 * frame_len(new.len()) + frame_len(0);
        assert_eq!(
            journaled,
            Journaled {
                bytes: frames as u64,
                direct: false
            }
        );
        let file = SiloFile::open_read(&path(dir.path())).expect("open");
        let header = read_header(&file, FileKind::Journal).expect("header");
        assert_eq!(header.generation, 7, "the journal names the folded slot");
        // Cut off before the in-place write: open redoes it.
        recover(dir.path(), &data).expect("recover");
        assert_eq!(record_at(&data, offsets[1], 2), (9, vec![b'b'; 40]));
        assert_eq!(record_at(&data, offsets[0], 1), (1, vec![b'a'; 40]));
        assert_eq!(record_at(&data, offsets[2], 3), (9, vec![b'c'; 40]));
        assert!(!path(dir.path()).exists());
        // No journal: nothing to do.
        recover(dir.path(), &data).expect("nothing");
    }

    #[test]
    fn an_incomplete_journal_is_discarded_and_a_stray_entry_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, offsets, new) = store_with_journal(dir.path());
        write(dir.path(), 7, [(offsets[1], &new[..])].into_iter()).expect("journal");
        let whole = std::fs::read(path(dir.path())).expect("read");
        let commit_at = whole.len() - frame_len(0);
        // Without its commit frame; with a commit frame counting another
        // number of writes; with a damaged header.
        let mut miscounted = whole.clone();
        encode_frame(&mut miscounted[commit_at..], Tag::BatchCommit, 2, &[]).expect("frame");
        let mut headless = whole.clone();
        headless[0] ^= 0xFF;
        for bytes in [&whole[..commit_at], &miscounted[..], &headless[..]] {
            std::fs::write(path(dir.path()), bytes).expect("write");
            recover(dir.path(), &data).expect("recover");
            assert_eq!(record_at(&data, offsets[1], 2), (1, vec![b'a'; 40]));
            assert!(!path(dir.path()).exists(), "discarded");
        }
        // An entry that reaches past the data file's end is damage (here
        // the second, after a good one: the error names where it lies).
        let past = data.end() - 10;
        let writes = [(offsets[1], &new[..]), (past, &new[..])];
        write(dir.path(), 7, writes.into_iter()).expect("journal");
        match recover(dir.path(), &data) {
            Err(Error::Corrupt { file, offset, .. }) => {
                let second = HEADER_LEN + frame_len(new.len());
                assert_eq!((file, offset), (path(dir.path()), second as u64));
            }
            other => panic!("{other:?}"),
        }
        // One whose bytes are not a whole record is too.
        write(
            dir.path(),
            7,
            [(offsets[0], &new[..new.len() - 4])].into_iter(),
        )
        .expect("journal");
        assert!(recover(dir.path(), &data).is_err());
        assert_eq!(record_at(&data, offsets[0], 1), (1, vec![b'a'; 40]));
    }
}

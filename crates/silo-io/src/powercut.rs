//! A power-cut model for tests: what the disk would hold if the power
//! failed now, given only the syncs the fault seam saw.
//!
//! A process kill keeps the page cache; a power cut does not. This model
//! keeps, per file (by inode, so renames and hard links carry it), the bytes
//! as they were at that file's last `fsync`/`fdatasync` (or the ranges an
//! `msync` covered), and per directory the entries it had at its last
//! directory fsync. [`Model::image`] writes a directory tree holding exactly
//! that: files whose name was never made durable are missing, bytes written
//! after the last sync are gone ([`Unsynced::Drop`]) or, page by page, kept
//! or dropped at random ([`Unsynced::Scramble`], the out-of-order writeback
//! a real disk may do).
//!
//! Everything under the root when tracking starts is taken as durable.
//! Compiled only with the `fault-injection` feature.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::IoError;

/// Granularity of [`Unsynced::Scramble`] (the page size the kernel writes
/// back) and of the model's sync bookkeeping (ranged syncs are
/// page-aligned).
const PAGE: usize = 4096;

/// What an image does with bytes written after a file's last sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsynced {
    /// Every unsynced byte is lost: each file holds what its last sync made durable.
    Drop,
    /// Each unsynced page is kept or lost at random (seeded), as writeback
    /// in any order may leave it; a file's unsynced growth is kept or lost whole.
    Scramble {
        /// Seed of the choice, so a failure replays exactly.
        seed: u64,
    },
}

/// One directory entry as it was made durable.
#[derive(Clone, Debug)]
struct Entry {
    name: OsString,
    ino: u64,
    is_dir: bool,
}

/// A sync in flight: the bytes it may make durable.
#[derive(Debug)]
pub(crate) struct PendingSync {
    ino: u64,
    bytes: Vec<u8>,
    range: Option<(u64, u64)>,
    /// When it started, in the order of all syncs' starts.
    started: u64,
}

/// The durable state under one root, as far as the seam's syncs say.
#[derive(Debug)]
pub(crate) struct Model {
    root: PathBuf,
    root_ino: u64,
    /// Durable bytes of each file, by inode.
    files: HashMap<u64, Vec<u8>>,
    /// For each file, per page of [`PAGE`] bytes, when the sync that made
    /// the page's durable bytes started; and when the one that set its
    /// durable length did. Syncs overlap: one that started earlier and
    /// ends later saw older bytes, which the later one covered, and must
    /// not take them back.
    page_at: HashMap<u64, Vec<u64>>,
    len_at: HashMap<u64, u64>,
    /// Syncs started so far.
    starts: std::sync::atomic::AtomicU64,
    /// Durable entries of each directory, by inode.
    dirs: HashMap<u64, Vec<Entry>>,
    /// Every file's bytes at the moment of the cut (page cache included).
    at_cut: Option<HashMap<u64, Vec<u8>>>,
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> IoError {
    IoError::io(op, path, e)
}

fn ino_of(path: &Path) -> Result<u64, IoError> {
    Ok(std::fs::metadata(path)
        .map_err(|e| io("stat", path, e))?
        .ino())
}

fn list(dir: &Path) -> Result<Vec<(PathBuf, Entry)>, IoError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("read directory", dir, e))? {
        let entry = entry.map_err(|e| io("read directory", dir, e))?;
        let meta = entry.metadata().map_err(|e| io("stat", &entry.path(), e))?;
        if !(meta.is_dir() || meta.is_file()) {
            continue;
        }
        out.push((
            entry.path(),
            Entry {
                name: entry.file_name(),
                ino: meta.ino(),
                is_dir: meta.is_dir(),
            },
        ));
    }
    Ok(out)
}

/// Calls `each(ino, path)` for every file under `dir`, and `dirs(ino, entries)` per directory.
fn walk(
    dir: &Path,
    each: &mut dyn FnMut(u64, &Path) -> Result<(), IoError>,
    dirs: &mut dyn FnMut(u64, Vec<Entry>),
) -> Result<(), IoError> {
    let entries = list(dir)?;
    dirs(
        ino_of(dir)?,
        entries.iter().map(|(_, e)| e.clone()).collect(),
    );
    for (path, entry) in entries {
        if entry.is_dir {
            walk(&path, each, dirs)?;
        } else {
            each(entry.ino, &path)?;
        }
    }
    Ok(())
}

/// A small deterministic generator (splitmix64) for [`Unsynced::Scramble`].
struct Coin(u64);

impl Coin {
    fn flip(&mut self) -> bool {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & 1 == 1
    }
}

impl Model {
    /// Starts tracking `root`: everything under it now counts as durable.
    pub(crate) fn new(root: &Path) -> Result<Model, IoError> {
        let mut files = HashMap::new();
        let mut dirs = HashMap::new();
        walk(
            root,
            &mut |ino, path| {
                files.insert(ino, std::fs::read(path).map_err(|e| io("read", path, e))?);
                Ok(())
            },
            &mut |ino, entries| {
                dirs.insert(ino, entries);
            },
        )?;
        Ok(Model {
            root: root.to_path_buf(),
            root_ino: ino_of(root)?,
            files,
            page_at: HashMap::new(),
            len_at: HashMap::new(),
            starts: std::sync::atomic::AtomicU64::new(0),
            dirs,
            at_cut: None,
        })
    }

    /// Whether the power was cut: later syncs no longer count.
    pub(crate) fn is_cut(&self) -> bool {
        self.at_cut.is_some()
    }

    /// What a sync of `path` starting now may make durable: the file's
    /// bytes (or the range of them) as they are before the sync runs, so
    /// that bytes written while it runs never count as synced by it.
    pub(crate) fn sync_start(&self, path: &Path, range: Option<(u64, u64)>) -> Option<PendingSync> {
        if self.is_cut() {
            return None;
        }
        // A file that vanished meanwhile has nothing left to make durable.
        let ino = ino_of(path).ok()?;
        let started = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let bytes = std::fs::read(path).ok()?;
        Some(PendingSync {
            ino,
            bytes,
            range,
            started,
        })
    }

    /// Records that the sync `pending` describes succeeded.
    pub(crate) fn sync_done(&mut self, pending: PendingSync) {
        if self.is_cut() {
            return;
        }
        let PendingSync {
            ino,
            bytes: now,
            range,
            started,
        } = pending;
        let durable = self.files.entry(ino).or_default();
        let pages = self.page_at.entry(ino).or_default();
        let len_at = self.len_at.entry(ino).or_insert(0);
        // A whole-file sync newer than the one that set the length sets it
        // (a file may have shrunk); an older one writes within it only.
        let limit = if range.is_none() && started > *len_at {
            *len_at = started;
            durable.resize(now.len(), 0);
            pages.truncate(now.len().div_ceil(PAGE));
            now.len()
        } else if range.is_none() {
            durable.len().min(now.len())
        } else {
            now.len()
        };
        let (start, end) = match range {
            None => (0, limit),
            Some((offset, len)) => (
                usize::try_from(offset).unwrap_or(usize::MAX).min(limit),
                usize::try_from(offset.saturating_add(len))
                    .unwrap_or(usize::MAX)
                    .min(limit),
            ),
        };
        if start >= end {
            return;
        }
        if durable.len() < end {
            durable.resize(end, 0);
        }
        if pages.len() < end.div_ceil(PAGE) {
            pages.resize(end.div_ceil(PAGE), 0);
        }
        let first = start / PAGE;
        for (page, at) in pages[first..end.div_ceil(PAGE)].iter_mut().zip(first..) {
            if *page >= started {
                continue;
            }
            *page = started;
            let (from, to) = ((at * PAGE).max(start), ((at + 1) * PAGE).min(end));
            durable[from..to].copy_from_slice(&now[from..to]);
        }
    }

    /// Records a successful fsync of directory `dir`: its entries are durable.
    pub(crate) fn dir_synced(&mut self, dir: &Path) {
        if self.is_cut() {
            return;
        }
        let (Ok(ino), Ok(entries)) = (ino_of(dir), list(dir)) else {
            return;
        };
        self.dirs
            .insert(ino, entries.into_iter().map(|(_, e)| e).collect());
    }

    /// Cuts the power now: what the page cache holds is kept for
    /// [`Unsynced::Scramble`], and later syncs are ignored.
    pub(crate) fn cut(&mut self) -> Result<(), IoError> {
        if self.is_cut() {
            return Ok(());
        }
        let mut at_cut = HashMap::new();
        walk(
            &self.root.clone(),
            &mut |ino, path| {
                if let Ok(bytes) = std::fs::read(path) {
                    at_cut.insert(ino, bytes);
                }
                Ok(())
            },
            &mut |_, _| {},
        )?;
        self.at_cut = Some(at_cut);
        Ok(())
    }

    /// Writes into `dest` (created, must not exist) the tree a reboot after
    /// the cut would find under the root. Cuts first if not yet cut.
    pub(crate) fn image(&mut self, dest: &Path, unsynced: Unsynced) -> Result<(), IoError> {
        self.cut()?;
        let mut coin = Coin(match unsynced {
            Unsynced::Drop => 0,
            Unsynced::Scramble { seed } => seed,
        });
        self.image_dir(self.root_ino, dest, unsynced, &mut coin)
    }

    fn image_dir(
        &self,
        ino: u64,
        dest: &Path,
        unsynced: Unsynced,
        coin: &mut Coin,
    ) -> Result<(), IoError> {
        std::fs::create_dir(dest).map_err(|e| io("create directory", dest, e))?;
        for entry in self.dirs.get(&ino).map(Vec::as_slice).unwrap_or_default() {
            let path = dest.join(&entry.name);
            if entry.is_dir {
                self.image_dir(entry.ino, &path, unsynced, coin)?;
                continue;
            }
            let durable = self.files.get(&entry.ino).map(Vec::as_slice);
            let bytes = match unsynced {
                Unsynced::Drop => durable.unwrap_or_default().to_vec(),
                Unsynced::Scramble { .. } => {
                    let cached = self.at_cut.as_ref().and_then(|c| c.get(&entry.ino));
                    scramble(durable.unwrap_or_default(), cached.map(Vec::as_slice), coin)
                }
            };
            std::fs::write(&path, bytes).map_err(|e| io("write", &path, e))?;
        }
        Ok(())
    }
}

/// Mixes a file's durable bytes with what the page cache held at the cut:
/// each page that differs is taken from one or the other at random, and
/// the file ends at its durable length or its cached one.
fn scramble(durable: &[u8], cached: Option<&[u8]>, coin: &mut Coin) -> Vec<u8> {
    let Some(cached) = cached else {
        return durable.to_vec();
    };
    let len = if cached.len() != durable.len() && coin.flip() {
        cached.len()
    } else {
        durable.len()
    };
    let mut out = vec![0u8; len];
    let mut at = 0;
    while at < len {
        let end = (at + PAGE).min(len);
        let page = |b: &[u8]| -> Vec<u8> {
            let mut p = b.get(at..end.min(b.len())).unwrap_or_default().to_vec();
            p.resize(end - at, 0);
            p
        };
        let (d, c) = (page(durable), page(cached));
        out[at..end].copy_from_slice(if d != c && coin.flip() { &c } else { &d });
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scramble_keeps_or_drops_whole_pages() {
        let durable = vec![1u8; PAGE * 3];
        let cached = vec![2u8; PAGE * 4];
        let mut seen_mixed = false;
        for seed in 0..32 {
            let out = scramble(&durable, Some(&cached), &mut Coin(seed));
            assert!(out.len() == durable.len() || out.len() == cached.len());
            for page in out.chunks(PAGE) {
                let first = page[0];
                assert!(
                    page.iter().all(|b| *b == first),
                    "a page is one or the other"
                );
            }
            let ones = out.chunks(PAGE).filter(|p| p[0] == 1).count();
            seen_mixed |= ones > 0 && ones < out.len() / PAGE;
        }
        assert!(seen_mixed, "some seed mixes durable and cached pages");
    }

    #[test]
    fn a_file_never_synced_is_empty_and_an_unsynced_name_is_missing() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("old"), b"kept").unwrap();
        let mut m = Model::new(root.path()).unwrap();
        std::fs::write(root.path().join("old"), b"changed").unwrap();
        std::fs::write(root.path().join("new"), b"never synced").unwrap();
        std::fs::write(root.path().join("named"), b"data").unwrap();
        m.dir_synced(root.path());
        std::fs::write(root.path().join("late"), b"after the dir sync").unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("img");
        m.image(&dest, Unsynced::Drop).unwrap();
        assert_eq!(std::fs::read(dest.join("old")).unwrap(), b"kept");
        assert_eq!(std::fs::read(dest.join("named")).unwrap(), b"");
        assert!(!dest.join("late").exists());
    }

    /// Regression (the sanitizer run): a sync that started before another
    /// one and ended after it took the other's bytes back, so a write its
    /// writer had seen synced was missing from the image. Overlapping syncs
    /// keep the newer bytes, page by page.
    #[test]
    fn an_earlier_sync_ending_later_never_takes_back_what_a_later_one_made_durable() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("f");
        std::fs::write(&path, [1u8; 100]).unwrap();
        let mut m = Model::new(root.path()).unwrap();
        let early = m.sync_start(&path, None).expect("file");
        std::fs::write(&path, [2u8; 150]).unwrap();
        let late = m.sync_start(&path, None).expect("file");
        m.sync_done(late);
        m.sync_done(early);
        // A ranged sync newer than a whole one that ends after it.
        std::fs::write(&path, [3u8; 150]).unwrap();
        let whole = m.sync_start(&path, None).expect("file");
        let mut bytes = vec![3u8; 8192];
        bytes[..4096].fill(4);
        std::fs::write(&path, &bytes).unwrap();
        let range = m.sync_start(&path, Some((0, 4096))).expect("file");
        m.sync_done(range);
        m.sync_done(whole);
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("img");
        m.image(&dest, Unsynced::Drop).unwrap();
        let mut want = vec![3u8; 150];
        want.fill(4);
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), want);
    }

    #[test]
    fn a_synced_range_is_kept_and_syncs_after_the_cut_are_not() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("f");
        std::fs::write(&path, [0u8; 16]).unwrap();
        let mut m = Model::new(root.path()).unwrap();
        std::fs::write(&path, [7u8; 16]).unwrap();
        let pending = m.sync_start(&path, Some((4, 4))).expect("file");
        m.sync_done(pending);
        let late = m.sync_start(&path, None).expect("file");
        m.cut().unwrap();
        std::fs::write(&path, [9u8; 16]).unwrap();
        m.sync_done(late);
        if let Some(after) = m.sync_start(&path, None) {
            m.sync_done(after);
        }
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("img");
        m.image(&dest, Unsynced::Drop).unwrap();
        let mut want = [0u8; 16];
        want[4..8].copy_from_slice(&[7; 4]);
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), want);
    }
}

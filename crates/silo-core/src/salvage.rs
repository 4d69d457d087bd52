//! Reading back what a damaged store still holds, without opening it and
//! without changing a byte: every record of the data file and every
//! committed operation of the log slots whose checksums hold, skipping the
//! damaged stretches between them. The index is not read at all (the data
//! file says on its own which keys are live). [`salvage`] gives each key's
//! final state; the caller writes it into a new store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use silo_format::{Entry, FileHeader, FileKind, HEADER_LEN, Tag, decode_frame};
use silo_io::SiloFile;
use silo_io::map::ReadMap;

use crate::READ_LIMIT;
use crate::data::{Step, walk_entries};
use crate::error::Result;
use crate::log::replay::replay;
use crate::log::slot::slot_path;

/// A key's state as salvaged: its base value (`None`: absent or deleted)
/// and merge operands logged over it, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SalvagedKey {
    /// The value, if the key exists (before `merges`).
    pub value: Option<Vec<u8>>,
    /// Merge operands to fold over `value`, oldest first.
    pub merges: Vec<Vec<u8>>,
}

/// A stretch of a file that could not be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub file: PathBuf,
    /// Where the stretch starts.
    pub offset: u64,
    /// How long it is (bytes skipped).
    pub bytes: u64,
    /// What was wrong.
    pub what: String,
}

/// What [`salvage`] read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Salvage {
    /// Every key found, with its final state.
    pub keys: BTreeMap<u64, SalvagedKey>,
    /// Records and tombstones read whole from the data file.
    pub records: u64,
    /// Operations read whole from the log slots (in committed batches).
    pub operations: u64,
    /// Tags of the tagged batches found whole in the logs (an engine's
    /// cross-shard batches), and the manifest's batch tag if it was read.
    pub batch_tags: BTreeSet<u64>,
    /// The highest batch tag the manifest says the store holds.
    pub manifest_batch_tag: Option<u64>,
    /// What could not be read.
    pub damage: Vec<Damage>,
}

impl Salvage {
    /// Whether the store holds the tagged batch `tag` (found in a log, or at
    /// or below the manifest's batch tag).
    pub fn holds_batch(&self, tag: u64) -> bool {
        self.batch_tags.contains(&tag) || self.manifest_batch_tag.is_some_and(|t| tag <= t)
    }
}

/// The file at `path`, mapped read-only (no copy, whatever its size).
fn map(path: &Path) -> Result<ReadMap> {
    let file = SiloFile::open_read(path)?;
    Ok(ReadMap::new(&file)?)
}

/// Reads what the store in `dir` still holds; see the module
/// documentation. Fails only if the directory cannot be listed or a file
/// cannot be read at all.
pub fn salvage(dir: &Path) -> Result<Salvage> {
    let mut out = Salvage::default();
    let manifest = match crate::manifest::read(dir) {
        Ok(m) => m,
        Err(e) => {
            out.damage.push(Damage {
                file: crate::manifest::path(dir),
                offset: 0,
                bytes: 0,
                what: format!("the manifest does not decode ({e}); every data file is read"),
            });
            None
        }
    };
    out.manifest_batch_tag = manifest.map(|m| m.batch_tag);
    // The data file the manifest names, or every one if it cannot say.
    let mut data_files: Vec<PathBuf> = Vec::new();
    match manifest {
        Some(m) => data_files.push(crate::data::data_path(dir, m.data_id)),
        None => {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| silo_io::IoError::io("read directory", dir, e))?;
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("data-") {
                    data_files.push(entry.path());
                }
            }
            data_files.sort();
        }
    }
    // Each key's newest entry in the data files: (seq, value).
    let mut newest: BTreeMap<u64, (u64, Option<Vec<u8>>)> = BTreeMap::new();
    for path in &data_files {
        scan_data(path, &mut newest, &mut out)?;
    }
    for (key, (_, value)) in &newest {
        out.keys.insert(
            *key,
            SalvagedKey {
                value: value.clone(),
                merges: Vec::new(),
            },
        );
    }
    // The slots, older generation first.
    let mut slots = Vec::new();
    for number in 0..2 {
        let path = slot_path(dir, number);
        let bytes = match map(&path) {
            Ok(b) => b,
            Err(e) => {
                out.damage.push(Damage {
                    file: path,
                    offset: 0,
                    bytes: 0,
                    what: format!("unreadable: {e}"),
                });
                continue;
            }
        };
        match FileHeader::decode(bytes.as_slice(), FileKind::OpsLog) {
            Ok(h) => slots.push((h.generation, path, h, bytes)),
            Err(e) => out.damage.push(Damage {
                file: path,
                offset: 0,
                bytes: bytes.as_slice().len() as u64,
                what: format!("the header does not decode ({e}): the slot is skipped"),
            }),
        }
    }
    slots.sort_by_key(|(generation, ..)| *generation);
    for (_, path, header, bytes) in &slots {
        let body = bytes.as_slice().get(HEADER_LEN..).unwrap_or_default();
        let durable = usize::try_from(header.param_a)
            .unwrap_or(usize::MAX)
            .saturating_sub(HEADER_LEN);
        salvage_slot(path, body, header.base_seq, durable, &newest, &mut out);
    }
    Ok(out)
}

/// Scans one data file, keeping each key's newest entry, skipping damage
/// (a stretch that does not decode, up to the next entry that does).
fn scan_data(
    path: &Path,
    newest: &mut BTreeMap<u64, (u64, Option<Vec<u8>>)>,
    out: &mut Salvage,
) -> Result<()> {
    let map = map(path)?;
    let bytes = map.as_slice();
    if let Err(e) = FileHeader::decode(bytes, FileKind::Data) {
        out.damage.push(Damage {
            file: path.to_path_buf(),
            offset: 0,
            bytes: HEADER_LEN as u64,
            what: format!("the header does not decode ({e}); the records after it are read"),
        });
    }
    let mut damage_from: Option<(usize, String)> = None;
    let close = |from: usize, to: usize, what: String, out: &mut Salvage| {
        out.damage.push(Damage {
            file: path.to_path_buf(),
            offset: from as u64,
            bytes: (to - from) as u64,
            what,
        });
    };
    walk_entries(bytes, HEADER_LEN, |at, step| match step {
        Step::Damage(e) => {
            damage_from = Some((at, format!("records that do not decode: {e}")));
        }
        Step::Zeros => {
            if let Some((from, what)) = damage_from.take() {
                close(from, at, what, out);
            }
        }
        Step::Entry(entry) => {
            if let Some((from, what)) = damage_from.take() {
                close(from, at, what, out);
            }
            out.records += 1;
            let (key, seq, _) = entry.key_seq_size();
            let value = match entry {
                Entry::Value(r) => Some(r.value.to_vec()),
                Entry::Tombstone { .. } => None,
            };
            if newest.get(&key).is_none_or(|(s, _)| *s <= seq) {
                newest.insert(key, (seq, value));
            }
        }
    });
    if let Some((from, what)) = damage_from {
        close(from, bytes.len(), what, out);
    }
    Ok(())
}

/// Salvages a slot's committed operations, resuming after each damaged
/// stretch at the next frame that decodes. Before any damage, sequence
/// numbers are known and an operation the data file already holds (a
/// record at or above its number) is skipped; after damage they are not,
/// and every operation found is applied (said in the damage note).
fn salvage_slot(
    path: &Path,
    body: &[u8],
    base_seq: u64,
    durable: usize,
    newest: &BTreeMap<u64, (u64, Option<Vec<u8>>)>,
    out: &mut Salvage,
) {
    let mut at = 0usize;
    let mut seq_known = true;
    loop {
        let part = &body[at..];
        let mut ops = Vec::new();
        let durable_here = if seq_known { durable } else { 0 };
        let end = match replay(part, base_seq, durable_here, READ_LIMIT, true, |op| {
            ops.push((op.seq, op.tag, op.key, op.payload.to_vec()));
        }) {
            Ok(end) => end,
            Err(c) => {
                // Cannot happen with `recover_corrupt`; skip the rest.
                out.damage.push(Damage {
                    file: path.to_path_buf(),
                    offset: (HEADER_LEN + at + c.at) as u64,
                    bytes: (part.len() - c.at) as u64,
                    what: c.reason,
                });
                return;
            }
        };
        for (seq, tag, key, payload) in ops {
            out.operations += 1;
            if seq_known && newest.get(&key).is_some_and(|(s, _)| *s >= seq) {
                continue;
            }
            let k = out.keys.entry(key).or_default();
            match tag {
                Tag::Put => {
                    k.value = Some(payload);
                    k.merges.clear();
                }
                Tag::Delete => {
                    k.value = None;
                    k.merges.clear();
                }
                _ => k.merges.push(payload),
            }
        }
        if end.max_tag > 0 {
            out.batch_tags.insert(end.max_tag);
        }
        let stop = at + end.valid_len;
        let rest = &body[stop..];
        if rest.iter().all(|b| *b == 0) {
            return;
        }
        // Damage (or a torn tail): resume at the next offset where a frame
        // decodes, if any.
        let next = (1..rest.len()).find(|j| {
            rest[*j] != 0
                && decode_frame(&rest[*j..], READ_LIMIT).is_ok_and(|(f, _)| {
                    matches!(f.tag, Tag::Put | Tag::Delete | Tag::Merge | Tag::BatchBegin)
                })
        });
        let torn = stop >= durable;
        out.damage.push(Damage {
            file: path.to_path_buf(),
            offset: (HEADER_LEN + stop) as u64,
            bytes: next.unwrap_or(rest.len()) as u64,
            what: if torn {
                "a torn tail: operations never synced".to_owned()
            } else {
                "frames that do not decode; the operations after them are applied without a sequence check"
                    .to_owned()
            },
        });
        match next {
            Some(j) => {
                at = stop + j;
                seq_known = false;
            }
            None => return,
        }
    }
}

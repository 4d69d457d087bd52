//! Checking the index against its source, and rebuilding it from there.
//!
//! The data file says which keys are live on its own: records and
//! tombstones lie back to back, and each key's entry with the highest
//! sequence number wins unless it is a tombstone (compaction appends one
//! for every key it deletes). [`crate::Silo::verify`] scans it and compares the
//! index slot by slot and key by key; [`crate::Silo::rebuild_index`] writes a new
//! index from the scan. Neither looks at the log: its operations are in
//! the pending view, above the tables, and were checked frame by frame at
//! open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use silo_format::{Entry, HEADER_LEN};
use silo_io::durable::remove_file;

use crate::compaction::apply::publish;
use crate::error::Result;
use crate::index::{Index, capacity_for};
use crate::reentry::{self, Hold};
use crate::store::{Core, Tables};

/// One disagreement [`crate::Silo::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Bytes of the data file that are neither a record, a tombstone nor
    /// unused zeros.
    DamagedData {
        /// Offset of the first bad byte in the data file.
        offset: u64,
        /// What the decoder said.
        reason: String,
    },
    /// An index slot that does not decode.
    DamagedSlot {
        /// The slot number.
        slot: u64,
        /// What the decoder said.
        reason: String,
    },
    /// The data file holds a live record of `key` that the index does not
    /// find (a lost or zeroed index page, for one).
    MissingFromIndex {
        /// The key.
        key: u64,
        /// Where its newest record is.
        offset: u64,
    },
    /// The index points `key` at a record that is not its newest live one
    /// (or the key was deleted).
    WrongEntry {
        /// The key.
        key: u64,
        /// Where the index points.
        offset: u64,
    },
    /// A slot holds `key`, but a lookup of `key` does not reach it (it lies
    /// past an empty slot on the key's probe path).
    UnreachableSlot {
        /// The key.
        key: u64,
        /// The slot number.
        slot: u64,
    },
}

/// What [`crate::Silo::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The data file checked.
    pub data_file: PathBuf,
    /// The index file checked.
    pub index_file: PathBuf,
    /// Records scanned in the data file.
    pub records: u64,
    /// Tombstones scanned.
    pub tombstones: u64,
    /// Keys the data file says are live.
    pub live_keys: u64,
    /// Live entries in the index.
    pub index_entries: u64,
    /// Bytes of the records the index points to, as `Stats::live_bytes`
    /// should count them.
    pub live_bytes: u64,
    /// Every disagreement, in the order found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The file and byte offset where `problem` lies: the data file's
    /// record, or the index file's slot.
    pub fn location(&self, problem: &Problem) -> (&Path, u64) {
        match problem {
            Problem::DamagedData { offset, .. }
            | Problem::MissingFromIndex { offset, .. }
            | Problem::WrongEntry { offset, .. } => (&self.data_file, *offset),
            Problem::DamagedSlot { slot, .. } | Problem::UnreachableSlot { slot, .. } => {
                (&self.index_file, silo_format::slot_offset(*slot))
            }
        }
    }
}

/// A key's newest entry in the data file.
struct Newest {
    seq: u64,
    /// Offsets of the live records with that seq (bulk-loaded keys may have
    /// several at seq 0); empty for a tombstone.
    offsets: Vec<u64>,
    size: u64,
}

/// Scans the data file: each key's newest entry, and the damage met.
fn scan(tables: &Tables, report: &mut VerifyReport) -> HashMap<u64, Newest> {
    let mut newest: HashMap<u64, Newest> = HashMap::new();
    let view = tables.data.view();
    tables.data.scan(&view, |offset, entry| {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                report.problems.push(Problem::DamagedData {
                    offset,
                    reason: e.to_string(),
                });
                return;
            }
        };
        let (key, seq, size) = entry.key_seq_size();
        let live = match entry {
            Entry::Value(_) => {
                report.records += 1;
                true
            }
            Entry::Tombstone { .. } => {
                report.tombstones += 1;
                false
            }
        };
        let slot = newest.entry(key).or_insert(Newest {
            seq,
            offsets: Vec::new(),
            size: 0,
        });
        if seq > slot.seq || (seq == slot.seq && slot.offsets.is_empty()) {
            *slot = Newest {
                seq,
                offsets: Vec::new(),
                size: size as u64,
            };
        }
        if seq == slot.seq && live {
            slot.offsets.push(offset);
            slot.size = size as u64;
        }
    });
    newest.retain(|_, n| !n.offsets.is_empty());
    report.live_keys = newest.len() as u64;
    newest
}

impl Core {
    /// See [`crate::Silo::verify`].
    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        reentry::refuse_shared(self.id, "verify")?;
        let _gate = self.gate_shared();
        let _held = reentry::hold(self.id, Hold::Iterator);
        let tables = self.tables();
        let mut report = VerifyReport {
            data_file: tables.data.path().to_path_buf(),
            index_file: tables.index.path().to_path_buf(),
            ..VerifyReport::default()
        };
        let newest = scan(&tables, &mut report);
        let index = &tables.index;
        for slot in 0..index.capacity() {
            let (key, offset) = match index.entry(slot) {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(e) => {
                    report.problems.push(Problem::DamagedSlot {
                        slot,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            report.index_entries += 1;
            if !newest
                .get(&key)
                .is_some_and(|n| n.offsets.contains(&offset))
            {
                report.problems.push(Problem::WrongEntry { key, offset });
            }
            if !matches!(index.get(key), Ok(Some(found)) if found == offset) {
                report.problems.push(Problem::UnreachableSlot { key, slot });
            }
        }
        let mut keys: Vec<(&u64, &Newest)> = newest.iter().collect();
        keys.sort_unstable_by_key(|(k, _)| **k);
        for (key, n) in keys {
            match index.get(*key) {
                Ok(Some(offset)) if n.offsets.contains(&offset) => report.live_bytes += n.size,
                // A wrong or unreachable entry was reported above.
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => report.problems.push(Problem::MissingFromIndex {
                    key: *key,
                    offset: n.offsets.last().copied().unwrap_or(0),
                }),
            }
        }
        Ok(report)
    }

    /// See [`crate::Silo::rebuild_index`].
    pub(crate) fn rebuild_index(&self) -> Result<u64> {
        self.check_poisoned()?;
        reentry::refuse_held(self.id, "rebuild_index")?;
        let _gate = self.gate.write();
        let tables = self.tables();
        let mut report = VerifyReport {
            data_file: tables.data.path().to_path_buf(),
            index_file: tables.index.path().to_path_buf(),
            ..VerifyReport::default()
        };
        let newest = scan(&tables, &mut report);
        let entries: Vec<(u64, u64)> = newest
            .iter()
            .map(|(k, n)| (*k, n.offsets.last().copied().unwrap_or(0)))
            .collect();
        let live_bytes: u64 = newest.values().map(|n| n.size).sum();
        let old = &tables.index;
        let index = Index::create(
            &self.dir,
            old.id + 1,
            capacity_for(entries.len() as u64),
            old.seed(),
            entries,
        )
        .map_err(|e| self.poison(e))?;
        let next = Arc::new(Tables {
            data: Arc::clone(&tables.data),
            index: Arc::new(index),
        });
        self.space.live_bytes.store(live_bytes, Ordering::Relaxed);
        self.space.dead_bytes.store(
            tables
                .data
                .end()
                .saturating_sub(HEADER_LEN as u64 + live_bytes),
            Ordering::Relaxed,
        );
        publish(self, next).map_err(|e| self.poison(e))?;
        remove_file(old.path()).map_err(|e| self.poison(e.into()))?;
        Ok(report.live_keys)
    }
}

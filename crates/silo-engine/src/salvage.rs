//! Reading back what a damaged engine still holds, without opening it and
//! without changing a byte: each shard salvaged by silo-core, and the
//! batch log's whole batches applied to the shards that lack their part.

use std::path::{Path, PathBuf};

use silo_core::{BatchOp, Damage, Salvage};
use silo_format::{FileHeader, FileKind, HEADER_LEN};

use crate::batch_log::{BATCH_LOG_NAME, scan};
use crate::engine::shard_dir;
use crate::error::{EngineError, Result};
use crate::manifest;
use crate::route::{shard_of, valid_shard_count};

/// What [`salvage`] read back.
#[derive(Debug)]
#[non_exhaustive]
pub struct EngineSalvage {
    /// The shard count (from the manifest, or the shard directories).
    pub shards: usize,
    /// Each shard's salvage, by shard number.
    pub parts: Vec<Salvage>,
    /// Cross-shard batches read whole from the batch log.
    pub batches: u64,
    /// Their parts applied here because the shard lacked them.
    pub parts_applied: u64,
    /// What could not be read outside the shards.
    pub damage: Vec<Damage>,
}

fn damage(file: PathBuf, offset: u64, bytes: u64, what: String) -> Damage {
    Damage {
        file,
        offset,
        bytes,
        what,
    }
}

/// Reads what the engine in `dir` still holds; see the module
/// documentation.
pub fn salvage(dir: &Path) -> Result<EngineSalvage> {
    let mut notes = Vec::new();
    let shards = match manifest::read(dir) {
        Ok(Some(m)) => m.shards,
        other => {
            // Count the shard directories.
            let n = (0..1024)
                .take_while(|i| shard_dir(dir, *i).is_dir())
                .count();
            let what = match other {
                Err(e) => format!("the engine manifest does not decode ({e})"),
                _ => "there is no engine manifest".to_owned(),
            };
            notes.push(damage(
                manifest::path(dir),
                0,
                0,
                format!("{what}; {n} shard directories found"),
            ));
            if !valid_shard_count(n) {
                return Err(EngineError::InvalidArgument {
                    name: "dir",
                    reason: format!(
                        "{}: {what}, and {n} shard directories is not a shard count",
                        dir.display()
                    ),
                });
            }
            n
        }
    };
    let mut parts = Vec::with_capacity(shards);
    for i in 0..shards {
        parts.push(silo_core::salvage(&shard_dir(dir, i)).map_err(EngineError::shard(i))?);
    }
    let mut out = EngineSalvage {
        shards,
        parts,
        batches: 0,
        parts_applied: 0,
        damage: notes,
    };
    let path = dir.join(BATCH_LOG_NAME);
    let Ok(bytes) = std::fs::read(&path) else {
        out.damage
            .push(damage(path, 0, 0, "unreadable or missing".to_owned()));
        return Ok(out);
    };
    let header = match FileHeader::decode(&bytes, FileKind::BatchLog) {
        Ok(h) => h,
        Err(e) => {
            out.damage.push(damage(
                path,
                0,
                bytes.len() as u64,
                format!("the header does not decode ({e}): its batches are lost"),
            ));
            return Ok(out);
        }
    };
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    let max = silo_format::DEFAULT_MAX_PAYLOAD;
    let batches = match scan(body, header.base_seq, max) {
        Ok((batches, _)) => batches,
        Err((at, reason)) => {
            out.damage.push(damage(
                path.clone(),
                (HEADER_LEN + at) as u64,
                (body.len() - at) as u64,
                format!("{reason}: the batches from here on are lost"),
            ));
            scan(&body[..at], header.base_seq, max)
                .map(|(b, _)| b)
                .unwrap_or_default()
        }
    };
    for logged in batches {
        out.batches += 1;
        let mut applied = vec![false; shards];
        for op in logged.batch.ops() {
            let i = shard_of(op.key(), shards);
            if out.parts[i].holds_batch(logged.number) {
                continue;
            }
            applied[i] = true;
            let k = out.parts[i].keys.entry(op.key()).or_default();
            match op {
                BatchOp::Put { value, .. } => {
                    k.value = Some(value.to_vec());
                    k.merges.clear();
                }
                BatchOp::Delete { .. } => {
                    k.value = None;
                    k.merges.clear();
                }
                BatchOp::Merge { operand, .. } => k.merges.push(operand.to_vec()),
            }
        }
        out.parts_applied += applied.iter().filter(|a| **a).count() as u64;
    }
    Ok(out)
}

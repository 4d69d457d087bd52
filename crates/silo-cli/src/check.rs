//! `verify`: every checksum of a store, its indexes against its data, and
//! an index's bitmaps against its documents, from a read-only open (which
//! changes no byte, and which other read-only opens may share).

use std::path::Path;

use silo_engine::{EngineError, Filter, Index};

use crate::fail::{Fail, Outcome};
use crate::store::{self, Store};

/// Where an error met while opening says the damage is, if it is damage:
/// the file and a description of the place.
pub(crate) fn damage_of(e: &EngineError) -> Option<String> {
    let header = |path: &Path, source: &dyn std::fmt::Display| {
        Some(format!("{}: byte 0 (its header): {source}", path.display()))
    };
    let core = match e {
        EngineError::Io(silo_io::IoError::BadHeader { path, source }) => {
            return header(path, source);
        }
        EngineError::Corrupt {
            file,
            offset,
            reason,
        } => return Some(format!("{}: byte {offset}: {reason}", file.display())),
        EngineError::Format { file, source } => {
            return Some(format!("{}: byte 0 (its header): {source}", file.display()));
        }
        EngineError::Store(c) | EngineError::Shard { source: c, .. } => c,
        EngineError::Value { key, what, reason } => {
            return Some(format!("key {key:#018x} ({what}): {reason}"));
        }
        _ => return None,
    };
    match core {
        silo_core::Error::Io(silo_io::IoError::BadHeader { path, source }) => header(path, source),
        silo_core::Error::Corrupt {
            file,
            offset,
            reason,
        } => Some(format!("{}: byte {offset}: {reason}", file.display())),
        silo_core::Error::Format { file, source } => {
            Some(format!("{}: byte 0 (its header): {source}", file.display()))
        }
        _ => None,
    }
}

pub(crate) fn verify(dir: &Path) -> Outcome {
    let d = dir.display();
    let store = match store::open_read_only(dir) {
        Ok(s) => s,
        Err((damage, fail)) => {
            return match damage {
                Some(place) => {
                    println!("{place}");
                    Err(Fail::problem(format!(
                        "{d} is damaged and does not open (above: the file and the byte)"
                    )))
                }
                None => Err(fail),
            };
        }
    };
    let mut problems = 0u64;
    let reports = store.engine().verify().map_err(|e| Fail::engine(dir, e))?;
    let (mut records, mut live) = (0, 0);
    for (i, r) in reports.iter().enumerate() {
        records += r.records;
        live += r.live_keys;
        for p in &r.problems {
            let (file, offset) = r.location(p);
            println!("{}: byte {offset}: {}", file.display(), describe(p));
            problems += 1;
        }
        if !r.is_ok() {
            println!("shard {i}: {} problems", r.problems.len());
        }
    }
    println!(
        "{} shards: {records} records, {live} live keys; every log frame and header checked at open",
        reports.len()
    );
    if let Store::Index(index) = &store {
        problems += verify_index(index, dir)?;
    }
    store.close(dir)?;
    if problems > 0 {
        return Err(Fail::problem(format!(
            "{problems} problems found in {d} (listed above)"
        )));
    }
    println!("{d}: all well");
    Ok(())
}

/// A problem in words.
fn describe(p: &silo_core::Problem) -> String {
    use silo_core::Problem;
    match p {
        Problem::DamagedData { reason, .. } => format!("damaged data: {reason}"),
        Problem::DamagedSlot { slot, reason } => format!("index slot {slot} is damaged: {reason}"),
        Problem::MissingFromIndex { key, .. } => {
            format!("the live record of key {key} is missing from the index")
        }
        Problem::WrongEntry { key, .. } => {
            format!("the index points key {key} at a record that is not its newest")
        }
        Problem::UnreachableSlot { key, slot } => {
            format!("index slot {slot} holds key {key}, which a lookup cannot reach")
        }
        other => format!("{other:?}"),
    }
}

fn verify_index(index: &Index, dir: &Path) -> Outcome<u64> {
    let problems = index
        .verify_consistency()
        .map_err(|e| Fail::engine(dir, e))?;
    for p in &problems {
        println!("index key {:#018x}: {}", p.key, p.what);
    }
    let docs = index
        .count(&Filter::All)
        .map_err(|e| Fail::engine(dir, e))?;
    println!(
        "index: {docs} documents; every filter bitmap, sort slice and the alive bitmap rebuilt from them and compared: {}",
        if problems.is_empty() {
            "they agree".to_owned()
        } else {
            format!("{} disagreements", problems.len())
        }
    );
    Ok(problems.len() as u64)
}

/// Bytes of salvaged values per atomic write into the new store.
const REPAIR_BATCH_BYTES: usize = 8 << 20;

pub(crate) fn repair(dir: &Path, out: &Path) -> Outcome {
    let d = dir.display();
    if !dir.is_dir() {
        return Err(Fail::store(format!("{d} is not a directory")));
    }
    let busy = out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Fail::input(format!("{}: {e}", out.display())))?
            .next()
            .is_some();
    if busy {
        return Err(Fail::input(format!(
            "{} is not empty; repair writes a new store there",
            out.display()
        )));
    }
    // Nobody may be changing the files while they are read raw.
    let _no_writer = if dir.join(silo_io::DirLock::FILE_NAME).exists() {
        Some(silo_io::DirLock::acquire_without_writer(dir).map_err(|e| match e {
            silo_io::IoError::Locked { .. } => Fail::store(format!(
                "{d} is open read-write in another process; repair reads it only once that process has closed it"
            )),
            e => Fail::system(format!("{d}: {e}")),
        })?)
    } else {
        None
    };
    let s = silo_engine::salvage(dir).map_err(|e| Fail::engine(dir, e))?;
    let mut opts = store::options();
    opts.shards = Some(s.shards);
    let engine = silo_engine::Engine::open(out, opts).map_err(|e| Fail::engine(out, e))?;
    let (mut keys, mut records, mut operations) = (0u64, 0u64, 0u64);
    let mut damage: Vec<&silo_core::Damage> = s.damage.iter().collect();
    for part in &s.parts {
        records += part.records;
        operations += part.operations;
        damage.extend(&part.damage);
        let mut batch = silo_core::WriteBatch::new();
        let mut bytes = 0;
        for (k, salvaged) in &part.keys {
            if let Some(v) = &salvaged.value {
                batch.put(*k, v);
                bytes += v.len();
            }
            for m in &salvaged.merges {
                batch.merge(*k, m);
                bytes += m.len();
            }
            if salvaged.value.is_some() || !salvaged.merges.is_empty() {
                keys += 1;
            }
            if bytes >= REPAIR_BATCH_BYTES {
                engine.write(&batch).map_err(|e| Fail::engine(out, e))?;
                batch.clear();
                bytes = 0;
            }
        }
        engine.write(&batch).map_err(|e| Fail::engine(out, e))?;
    }
    engine.close().map_err(|e| Fail::engine(out, e))?;
    for dmg in &damage {
        println!(
            "{}: byte {}: {} bytes not saved: {}",
            dmg.file.display(),
            dmg.offset,
            dmg.bytes,
            dmg.what
        );
    }
    println!(
        "{} written from {d}: {keys} keys ({records} records of the data files, {operations} logged operations, {} cross-shard batch parts from the batch log); {d} is unchanged",
        out.display(),
        s.parts_applied
    );
    // The new store opens and checks clean (an index: its bitmaps too).
    let store = store::open_existing(out)?;
    if let Store::Index(index) = &store {
        let problems = verify_index(index, out)?;
        if problems > 0 {
            println!(
                "the salvaged index's bitmaps disagree with its documents in {problems} places (listed above): documents or bitmap changes were lost"
            );
        }
    }
    store.close(out)?;
    if damage.is_empty() {
        println!("nothing was lost");
        Ok(())
    } else {
        Err(Fail::problem(format!(
            "{} damaged stretches could not be saved (listed above); {} holds everything else",
            damage.len(),
            out.display()
        )))
    }
}

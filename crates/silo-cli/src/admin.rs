//! `stats`, `compact`, `checkpoint`.

use std::path::Path;

use serde_json::json;
use silo_engine::{CompactOptions, EngineStats, Filter};

use crate::fail::{Fail, Outcome};
use crate::store::{self, Store};

/// Bytes the store's files take on disk: every shard's files (the
/// engine's own manifest and batch log are a few KiB more).
pub(crate) fn disk_bytes(stats: &EngineStats) -> u64 {
    stats.shards.iter().map(|s| s.disk_bytes).sum()
}

/// What `silo stats` reports, gathered.
pub(crate) struct Figures {
    pub(crate) kind: &'static str,
    pub(crate) shards: usize,
    pub(crate) index_keys: u64,
    pub(crate) pending_keys: u64,
    pub(crate) pending_ops: u64,
    pub(crate) live_bytes: u64,
    pub(crate) dead_bytes: u64,
    pub(crate) log_bytes: u64,
    pub(crate) disk_bytes: u64,
    pub(crate) open_files: u64,
    pub(crate) maps: u64,
    /// When a data file was last written (by a compaction, or a bulk
    /// load or merge writer), in seconds since 1970; `None` if unknown.
    pub(crate) data_written: Option<u64>,
    /// Index only: documents, and the schema.
    pub(crate) documents: Option<u64>,
    pub(crate) schema: Option<String>,
}

pub(crate) fn figures(store: &Store, dir: &Path) -> Outcome<Figures> {
    let stats = store.engine().stats();
    let (documents, schema) = match store {
        Store::Index(index) => (
            Some(
                index
                    .count(&Filter::All)
                    .map_err(|e| Fail::engine(dir, e))?,
            ),
            Some(index.schema().to_toml()),
        ),
        Store::Plain(_) => (None, None),
    };
    Ok(Figures {
        kind: match store {
            Store::Index(_) => "index",
            Store::Plain(_) => "plain",
        },
        shards: stats.shards.len(),
        index_keys: stats.index_keys(),
        pending_keys: stats.shards.iter().map(|s| s.pending_keys).sum(),
        pending_ops: stats.pending_ops(),
        live_bytes: stats.live_bytes(),
        dead_bytes: stats.dead_bytes(),
        log_bytes: stats.shards.iter().map(|s| s.log_bytes).sum(),
        disk_bytes: disk_bytes(&stats),
        open_files: stats.open_files,
        maps: stats.maps,
        data_written: data_written(dir),
        documents,
        schema,
    })
}

/// The newest modification time of the shards' data files, in seconds
/// since 1970: when a compaction (or a bulk load) last wrote one. Puts go
/// to the logs and leave the data files alone.
fn data_written(dir: &Path) -> Option<u64> {
    let mut newest = None;
    for shard in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            if !f.file_name().to_string_lossy().starts_with("data-") {
                continue;
            }
            let t = f
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            newest = newest.max(t);
        }
    }
    newest
}

/// `secs` since 1970 as a UTC date and time (the civil-from-days
/// algorithm: days to year, month, day in the proleptic Gregorian
/// calendar).
pub(crate) fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(crate) fn stats(dir: &Path, as_json: bool) -> Outcome {
    let store = store::open_existing(dir)?;
    let f = figures(&store, dir)?;
    store.close(dir)?;
    if as_json {
        let mut object = json!({
            "dir": dir.display().to_string(),
            "kind": f.kind,
            "format_version": silo_format::FORMAT_VERSION,
            "shards": f.shards,
            "index_keys": f.index_keys,
            "pending_keys": f.pending_keys,
            "pending_ops": f.pending_ops,
            "live_bytes": f.live_bytes,
            "dead_bytes": f.dead_bytes,
            "log_bytes": f.log_bytes,
            "disk_bytes": f.disk_bytes,
            "open_files": f.open_files,
            "maps": f.maps,
            "data_last_written_unix": f.data_written,
        });
        if let (Some(docs), Some(schema)) = (f.documents, &f.schema) {
            object["documents"] = docs.into();
            object["schema"] = schema.clone().into();
        }
        println!("{object}");
        return Ok(());
    }
    println!(
        "{} ({} store, format version {})",
        dir.display(),
        f.kind,
        silo_format::FORMAT_VERSION
    );
    println!("  shards:             {}", f.shards);
    if let Some(docs) = f.documents {
        println!("  documents:          {docs}");
    }
    println!(
        "  keys:               {} in the index, {} pending",
        f.index_keys, f.pending_keys
    );
    println!("  pending operations: {}", f.pending_ops);
    println!("  live bytes:         {}", f.live_bytes);
    println!("  dead bytes:         {}", f.dead_bytes);
    println!("  log bytes:          {}", f.log_bytes);
    println!("  disk bytes:         {}", f.disk_bytes);
    println!("  open files:         {}", f.open_files);
    println!("  maps:               {}", f.maps);
    println!(
        "  last compaction:    {} (when a data file was last written)",
        f.data_written.map_or_else(|| "never".to_owned(), utc)
    );
    if let Some(schema) = &f.schema {
        println!("  schema:");
        for line in schema.lines() {
            println!("    {line}");
        }
    }
    Ok(())
}

pub(crate) fn compact(dir: &Path, cold: bool, threads: Option<usize>) -> Outcome {
    if threads == Some(0) {
        return Err(Fail::input("--threads must be at least 1"));
    }
    let store = store::open_existing(dir)?;
    let report = store
        .engine()
        .compact_with(CompactOptions {
            threads,
            cold,
            ..CompactOptions::default()
        })
        .map_err(|e| Fail::engine(dir, e))?;
    println!(
        "compacted {} shard(s) with {} thread(s) in {:.2?}: {} operations folded, {} bytes read, {} bytes written",
        report.shards.len(),
        report.threads,
        report.duration,
        report.ops_folded,
        report.bytes_read,
        report.bytes_written
    );
    store.close(dir)
}

pub(crate) fn checkpoint(dir: &Path, dest: &Path) -> Outcome {
    let store = store::open_existing(dir)?;
    store
        .engine()
        .checkpoint(dest)
        .map_err(|e| Fail::engine(dir, e))?;
    println!(
        "checkpoint of {} written to {}",
        dir.display(),
        dest.display()
    );
    store.close(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_the_calendars() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_059_029), "2026-11-30 17:17:09 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }
}

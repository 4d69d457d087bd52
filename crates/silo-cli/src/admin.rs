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
        documents,
        schema,
    })
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

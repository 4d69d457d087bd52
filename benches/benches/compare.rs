//! Silo against redb, fjall, sled and heed (LMDB) on the same workload, in one process.
//!
//! A plain harness (no criterion): every scenario runs for silo and each peer
//! in turn, on fresh temporary directories under /tmp, and the results are
//! printed as a markdown table (also written to `target/bench-compare.md`).
//!
//! Environment:
//! - `SILO_BENCH_KEYS` (default 1 000 000): how many keys are loaded.
//! - `SILO_BENCH_ONLY`: comma-separated scenario names to run (`load`,
//!   `reads`, `missing`, `overwrite`, `durable`, `reopen`, `recovery`,
//!   `disk`, `delete`); all when unset.
//! - `SILO_BENCH_ENGINES`: comma-separated engines to run (`silo`, `redb`,
//!   `fjall`, `sled`, `heed`, `engine`); all when unset. At 10M keys sled
//!   needs more memory than this machine's 24 GiB: leave it out there.
//!
//! See `docs/BENCHMARKS.md` for what each scenario does and the exact peer settings.

use silo_benches::Selection;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes of every value.
const VALUE_LEN: usize = 100;
/// Operations per batch in the bulk load and the delete phase.
const BATCH: usize = 10_000;
/// Raw bytes of one entry (8-byte key and value).
const RAW_ENTRY: u64 = 8 + VALUE_LEN as u64;
/// How long each durable-put run lasts.
const DURABLE_RUN: Duration = Duration::from_secs(2);
/// Longest an overwrite run may last before it stops early (one-txn-per-put peers).
const OVERWRITE_BUDGET: Duration = Duration::from_secs(10);
/// Open+close rounds in the reopen scenario.
const REOPENS: usize = 20;
/// LMDB map size.
const LMDB_MAP: usize = 4 << 30;
/// Block cache given to fjall (redb and sled default to 1 GiB; silo and LMDB use the page cache).
const FJALL_CACHE: u64 = 1 << 30;

type Item = (u64, [u8; VALUE_LEN]);

// ----- workload --------------------------------------------------------

/// splitmix64: a seeded, fast generator of well-mixed u64s.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n`.
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        usize::try_from(((u128::from(self.next()) * u128::from(n)) >> 64) as u64).unwrap_or(0)
    }
}

/// A 100-byte value derived from `key` and a round number.
fn value_for(key: u64, round: u8) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let mut x = key ^ u64::from(round).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in v.chunks_mut(8) {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    v
}

struct Workload {
    /// Loaded keys and values, in load order.
    items: Vec<Item>,
    /// The loaded keys, shuffled (read and overwrite order).
    shuffled: Vec<u64>,
    /// Keys that were not loaded.
    missing: Vec<u64>,
}

impl Workload {
    fn new(n: usize) -> Workload {
        let mut rng = Rng(0x5110_5EED);
        let mut seen = std::collections::HashSet::with_capacity(n * 2);
        let mut items = Vec::with_capacity(n);
        while items.len() < n {
            let k = rng.next();
            if seen.insert(k) {
                items.push((k, value_for(k, 0)));
            }
        }
        let mut shuffled: Vec<u64> = items.iter().map(|(k, _)| *k).collect();
        silo_benches::shuffle(&mut shuffled, |n| rng.below(n));
        let mut missing = Vec::with_capacity(n);
        while missing.len() < n {
            let k = rng.next();
            if !seen.contains(&k) {
                missing.push(k);
            }
        }
        Workload {
            items,
            shuffled,
            missing,
        }
    }
}

// ----- engines ---------------------------------------------------------

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One opened store of one engine; scenarios are written once against this.
trait Engine: Send + Sync {
    /// Loads `items` in batches of `batch`, without syncing each batch, then makes it durable.
    fn load_batches(&self, items: &[Item], batch: usize) -> Res<()>;
    /// Reads every key; returns how many were found.
    fn read_keys(&self, keys: &[u64]) -> Res<u64>;
    /// One buffered (not synced) put.
    fn put(&self, key: u64, value: &[u8]) -> Res<()>;
    /// One put, durable before it returns.
    fn put_durable(&self, key: u64, value: &[u8]) -> Res<()>;
    /// Deletes `keys` in batches of `batch`, then makes it durable.
    fn delete_batches(&self, keys: &[u64], batch: usize) -> Res<()>;
    /// Runs the engine's compaction, if it has one; says what it ran.
    fn compact(&mut self) -> Res<&'static str>;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> Res<()>;
    /// The engine's own figures, for the log (silo's `Stats`).
    fn describe(&self) -> String {
        String::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Silo,
    Redb,
    Fjall,
    Sled,
    Heed,
    /// silo-engine (8 shards): shown beside silo-core, never a peer.
    SiloEngine,
}

const KINDS: [Kind; 6] = [
    Kind::Silo,
    Kind::Redb,
    Kind::Fjall,
    Kind::Sled,
    Kind::Heed,
    Kind::SiloEngine,
];

/// Index of the silo-engine column in `KINDS`: not counted as a peer.
const ENGINE_IDX: usize = 5;

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Silo => "silo",
            Kind::Redb => "redb",
            Kind::Fjall => "fjall",
            Kind::Sled => "sled",
            Kind::Heed => "heed",
            Kind::SiloEngine => "engine",
        }
    }

    /// Opens (or creates) a store in `dir`. `durable` selects the sync-per-commit settings.
    fn open(self, dir: &Path, durable: bool) -> Res<Box<dyn Engine>> {
        Ok(match self {
            Kind::Silo => Box::new(SiloEngine::open(dir, durable)?),
            Kind::Redb => Box::new(RedbEngine::open(dir)?),
            Kind::Fjall => Box::new(FjallEngine::open(dir)?),
            Kind::Sled => Box::new(SledEngine::open(dir)?),
            Kind::Heed => Box::new(HeedEngine::open(dir, durable)?),
            Kind::SiloEngine => Box::new(ShardedEngine::open(dir, durable)?),
        })
    }
}

/// Writes each chunk as one silo `WriteBatch` (`add` puts an item in it)
/// through `write`: the loading and deleting of both silo engines.
fn silo_batches<'a, T: 'a>(
    chunks: impl Iterator<Item = &'a [T]>,
    add: impl Fn(&mut silo_core::WriteBatch, &T),
    mut write: impl FnMut(&silo_core::WriteBatch) -> Res<()>,
) -> Res<()> {
    let mut b = silo_core::WriteBatch::new();
    for chunk in chunks {
        b.clear();
        for item in chunk {
            add(&mut b, item);
        }
        write(&b)?;
    }
    Ok(())
}

// silo ------------------------------------------------------------------

struct SiloEngine(silo_core::Silo);

impl SiloEngine {
    fn open(dir: &Path, durable: bool) -> Res<SiloEngine> {
        let opts = silo_core::Options::default().with_durability(if durable {
            silo_core::Durability::Sync
        } else {
            silo_core::Durability::Buffered
        });
        Ok(SiloEngine(silo_core::Silo::open(dir, opts)?))
    }
}

impl Engine for SiloEngine {
    fn load_batches(&self, items: &[Item], batch: usize) -> Res<()> {
        silo_batches(
            items.chunks(batch),
            |b, (k, v)| {
                b.put(*k, v);
            },
            |b| Ok(self.0.write(b)?),
        )?;
        Ok(self.0.flush()?)
    }

    fn read_keys(&self, keys: &[u64]) -> Res<u64> {
        let mut found = 0;
        for &k in keys {
            found += self.0.get_with(k, |v| u64::from(v.is_some()))?;
        }
        Ok(found)
    }

    fn put(&self, key: u64, value: &[u8]) -> Res<()> {
        Ok(self.0.put(key, value)?)
    }

    fn put_durable(&self, key: u64, value: &[u8]) -> Res<()> {
        // Opened with Durability::Sync.
        Ok(self.0.put(key, value)?)
    }

    fn delete_batches(&self, keys: &[u64], batch: usize) -> Res<()> {
        silo_batches(
            keys.chunks(batch),
            |b, k| {
                b.delete(*k);
            },
            |b| Ok(self.0.write(b)?),
        )?;
        Ok(self.0.flush()?)
    }

    fn compact(&mut self) -> Res<&'static str> {
        self.0.compact()?;
        let s = self.0.stats();
        if s.dead_bytes > 0 {
            self.0.compact_cold()?;
            return Ok("compact() + compact_cold()");
        }
        Ok("compact()")
    }

    fn close(self: Box<Self>) -> Res<()> {
        Ok(self.0.close()?)
    }

    fn describe(&self) -> String {
        format!("{:?}", self.0.stats())
    }
}

// silo-engine -----------------------------------------------------------

struct ShardedEngine(silo_engine::Engine);

impl ShardedEngine {
    fn open(dir: &Path, durable: bool) -> Res<ShardedEngine> {
        let store = silo_core::Options::default().with_durability(if durable {
            silo_core::Durability::Sync
        } else {
            silo_core::Durability::Buffered
        });
        let opts = silo_engine::EngineOptions {
            shards: Some(8),
            compaction_threads: None,
            store,
        };
        Ok(ShardedEngine(silo_engine::Engine::open(dir, opts)?))
    }
}

impl Engine for ShardedEngine {
    fn load_batches(&self, items: &[Item], batch: usize) -> Res<()> {
        silo_batches(
            items.chunks(batch),
            |b, (k, v)| {
                b.put(*k, v);
            },
            |b| Ok(self.0.write(b)?),
        )?;
        Ok(self.0.flush()?)
    }

    fn read_keys(&self, keys: &[u64]) -> Res<u64> {
        let mut found = 0;
        for &k in keys {
            found += self.0.get_with(k, |v| u64::from(v.is_some()))?;
        }
        Ok(found)
    }

    fn put(&self, key: u64, value: &[u8]) -> Res<()> {
        Ok(self.0.put(key, value)?)
    }

    fn put_durable(&self, key: u64, value: &[u8]) -> Res<()> {
        // Opened with Durability::Sync.
        Ok(self.0.put(key, value)?)
    }

    fn delete_batches(&self, keys: &[u64], batch: usize) -> Res<()> {
        silo_batches(
            keys.chunks(batch),
            |b, k| {
                b.delete(*k);
            },
            |b| Ok(self.0.write(b)?),
        )?;
        Ok(self.0.flush()?)
    }

    fn compact(&mut self) -> Res<&'static str> {
        self.0.compact()?;
        if self.0.stats().dead_bytes() > 0 {
            self.0.compact_with(silo_engine::CompactOptions {
                cold: true,
                ..silo_engine::CompactOptions::default()
            })?;
            return Ok("compact() + compact_with(cold)");
        }
        Ok("compact()")
    }

    fn close(self: Box<Self>) -> Res<()> {
        Ok(self.0.close()?)
    }
}

// redb ------------------------------------------------------------------

const REDB_TABLE: redb::TableDefinition<'static, u64, &[u8]> = redb::TableDefinition::new("t");

struct RedbEngine(redb::Database);

impl RedbEngine {
    fn open(dir: &Path) -> Res<RedbEngine> {
        let db = redb::Database::create(dir.join("db.redb"))?;
        Ok(RedbEngine(db))
    }

    fn txn(
        &self,
        durability: redb::Durability,
        f: impl FnOnce(&mut redb::Table<'_, u64, &[u8]>) -> Res<()>,
    ) -> Res<()> {
        let mut tx = self.0.begin_write()?;
        tx.set_durability(durability)?;
        {
            let mut t = tx.open_table(REDB_TABLE)?;
            f(&mut t)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Engine for RedbEngine {
    fn load_batches(&self, items: &[Item], batch: usize) -> Res<()> {
        for chunk in items.chunks(batch) {
            self.txn(redb::Durability::None, |t| {
                for (k, v) in chunk {
                    t.insert(*k, &v[..])?;
                }
                Ok(())
            })?;
        }
        // One durable commit makes everything before it durable.
        self.txn(redb::Durability::Immediate, |_| Ok(()))
    }

    fn read_keys(&self, keys: &[u64]) -> Res<u64> {
        use redb::ReadableDatabase as _;
        let tx = self.0.begin_read()?;
        let t = tx.open_table(REDB_TABLE)?;
        let mut found = 0;
        for &k in keys {
            if let Some(v) = t.get(k)? {
                found += u64::from(!v.value().is_empty());
            }
        }
        Ok(found)
    }

    fn put(&self, key: u64, value: &[u8]) -> Res<()> {
        self.txn(redb::Durability::None, |t| {
            t.insert(key, value)?;
            Ok(())
        })
    }

    fn put_durable(&self, key: u64, value: &[u8]) -> Res<()> {
        self.txn(redb::Durability::Immediate, |t| {
            t.insert(key, value)?;
            Ok(())
        })
    }

    fn delete_batches(&self, keys: &[u64], batch: usize) -> Res<()> {
        for chunk in keys.chunks(batch) {
            self.txn(redb::Durability::None, |t| {
                for k in chunk {
                    t.remove(*k)?;
                }
                Ok(())
            })?;
        }
        self.txn(redb::Durability::Immediate, |_| Ok(()))
    }

    fn compact(&mut self) -> Res<&'static str> {
        while self.0.compact()? {}
        Ok("Database::compact() until done")
    }

    fn close(self: Box<Self>) -> Res<()> {
        drop(self);
        Ok(())
    }
}

// fjall -----------------------------------------------------------------

struct FjallEngine {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl FjallEngine {
    fn open(dir: &Path) -> Res<FjallEngine> {
        let db = fjall::Database::builder(dir)
            .cache_size(FJALL_CACHE)
            .open()?;
        let ks = db.keyspace("t", fjall::KeyspaceCreateOptions::default)?;
        Ok(FjallEngine { db, ks })
    }
}

impl Engine for FjallEngine {
    fn load_batches(&self, items: &[Item], batch: usize) -> Res<()> {
        for chunk in items.chunks(batch) {
            let mut b = self.db.batch();
            for (k, v) in chunk {
                b.insert(&self.ks, k.to_be_bytes(), &v[..]);
            }
            b.commit()?;
        }
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn read_keys(&self, keys: &[u64]) -> Res<u64> {
        let mut found = 0;
        for &k in keys {
            if let Some(v) = self.ks.get(k.to_be_bytes())? {
                found += u64::from(!v.is_empty());
            }
        }
        Ok(found)
    }

    fn put(&self, key: u64, value: &[u8]) -> Res<()> {
        self.ks.insert(key.to_be_bytes(), value)?;
        Ok(())
    }

    fn put_durable(&self, key: u64, value: &[u8]) -> Res<()> {
        self.ks.insert(key.to_be_bytes(), value)?;
        self.db.persist(fjall::PersistMode::SyncData)?;
        Ok(())
    }

    fn delete_batches(&self, keys: &[u64], batch: usize) -> Res<()> {
        for chunk in keys.chunks(batch) {
            let mut b = self.db.batch();
            for k in chunk {
                b.remove(&self.ks, k.to_be_bytes());
            }
            b.commit()?;
        }
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn compact(&mut self) -> Res<&'static str> {
        self.ks.major_compact()?;
        Ok("Keyspace::major_compact()")
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}

// sled ------------------------------------------------------------------

struct SledEngine(sled::Db);

impl SledEngine {
    fn open(dir: &Path) -> Res<SledEngine> {
        Ok(SledEngine(sled::open(dir)?))
    }
}

impl Engine for SledEngine {
    fn load_batches(&self, items: &[Item], batch: usize) -> Res<()> {
        for chunk in items.chunks(batch) {
            let mut b = sled::Batch::default();
            for (k, v) in chunk {
                b.insert(&k.to_be_bytes(), &v[..]);
            }
            self.0.apply_batch(b)?;
        }
        self.0.flush()?;
        Ok(())
    }

    fn read_keys(&self, keys: &[u64]) -> Res<u64> {
        let mut found = 0;
        for &k in keys {
            if let Some(v) = self.0.get(k.to_be_bytes())? {
                found += u64::from(!v.is_empty());
            }
        }
        Ok(found)
    }

    fn put(&self, key: u64, value: &[u8]) -> Res<()> {
        self.0.insert(key.to_be_bytes(), value)?;
        Ok(())
    }

    fn put_durable(&self, key: u64, value: &[u8]) -> Res<()> {
        self.0.insert(key.to_be_bytes(), value)?;
        self.0.flush()?;
        Ok(())
    }

    fn delete_batches(&self, keys: &[u64], batch: usize) -> Res<()> {
        for chunk in keys.chunks(batch) {
            let mut b = sled::Batch::default();
            for k in chunk {
                b.remove(&k.to_be_bytes());
            }
            self.0.apply_batch(b)?;
        }
        self.0.flush()?;
        Ok(())
    }

    fn compact(&mut self) -> Res<&'static str> {
        self.0.flush()?;
        Ok("none (no API; flush only)")
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.0.flush()?;
        drop(self);
        Ok(())
    }
}

// heed (LMDB) -----------------------------------------------------------

type HeedDb =
    heed::Database<'static, heed::types::U64<heed::byteorder::BigEndian>, heed::types::Bytes>;

struct HeedEngine {
    env: Option<heed::Env>,
    db: HeedDb,
}

impl HeedEngine {
    fn open(dir: &Path, durable: bool) -> Res<HeedEngine> {
        std::fs::create_dir_all(dir)?;
        let mut opts = heed::EnvOpenOptions::new();
        opts.map_size(LMDB_MAP).max_dbs(1);
        if !durable {
            // SAFETY: NO_SYNC only weakens durability (commits are not fsync'ed);
            // the benchmark calls `force_sync` where it needs durability.
            unsafe {
                opts.flags(heed::EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: the directory is private to this process and this
        // benchmark; nothing else maps or modifies the files while the
        // environment is open.
        let env = unsafe { opts.open(dir)? };
        let wtxn = env.write_txn()?;
        let db: HeedDb = env
            .create_databases_and_commit(wtxn, |wdo, wtxn| -> Result<_, heed::Error> {
                wdo.create_database(wtxn, Some("t"))
                    .map(heed::CommitOrAbort::<_, ()>::Commit)
            })?
            .unwrap_commit();
        Ok(HeedEngine { env: Some(env), db })
    }

    fn env(&self) -> &heed::Env {
        self.env.as_ref().expect("open until closed")
    }
}

impl Engine for HeedEngine {
    fn load_batches(&self, items: &[Item], batch: usize) -> Res<()> {
        let env = self.env();
        for chunk in items.chunks(batch) {
            let mut wtxn = env.write_txn()?;
            for (k, v) in chunk {
                self.db.put(&mut wtxn, k, &v[..])?;
            }
            wtxn.commit()?;
        }
        env.force_sync()?;
        Ok(())
    }

    fn read_keys(&self, keys: &[u64]) -> Res<u64> {
        let rtxn = self.env().read_txn()?;
        let mut found = 0;
        for k in keys {
            if let Some(v) = self.db.get(&rtxn, k)? {
                found += u64::from(!v.is_empty());
            }
        }
        Ok(found)
    }

    fn put(&self, key: u64, value: &[u8]) -> Res<()> {
        let mut wtxn = self.env().write_txn()?;
        self.db.put(&mut wtxn, &key, value)?;
        wtxn.commit()?;
        Ok(())
    }

    fn put_durable(&self, key: u64, value: &[u8]) -> Res<()> {
        // Opened without NO_SYNC: commit syncs.
        self.put(key, value)
    }

    fn delete_batches(&self, keys: &[u64], batch: usize) -> Res<()> {
        let env = self.env();
        for chunk in keys.chunks(batch) {
            let mut wtxn = env.write_txn()?;
            for k in chunk {
                self.db.delete(&mut wtxn, k)?;
            }
            wtxn.commit()?;
        }
        env.force_sync()?;
        Ok(())
    }

    fn compact(&mut self) -> Res<&'static str> {
        self.env().force_sync()?;
        Ok("none (free pages are reused, the file does not shrink)")
    }

    fn close(mut self: Box<Self>) -> Res<()> {
        if let Some(env) = self.env.take() {
            env.force_sync()?;
            env.prepare_for_closing().wait();
        }
        Ok(())
    }
}

// ----- helpers ---------------------------------------------------------

/// Allocated bytes (`st_blocks * 512`) of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if md.is_dir() {
            total += disk_bytes(&e.path());
        } else {
            total += md.blocks() * 512;
        }
    }
    total
}

/// Logs the allocated and apparent size of every file under `dir`.
fn files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if let Ok(md) = std::fs::symlink_metadata(e.path()) {
            if md.is_dir() {
                files(&e.path());
            } else {
                eprintln!(
                    "    {}: {:.2} MiB allocated, {:.2} MiB long",
                    e.path().display(),
                    mib(md.blocks() * 512),
                    mib(md.len())
                );
            }
        }
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "operation counts far below 2^52"
)]
fn per_sec(ops: usize, d: Duration) -> f64 {
    ops as f64 / d.as_secs_f64()
}

fn fresh_dir(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a bench directory");
    d
}

/// Reads `keys` from `threads` threads (each a contiguous share); ops/s and keys found.
fn read_run(e: &dyn Engine, keys: &[u64], threads: usize) -> Res<(f64, u64)> {
    let share = keys.len().div_ceil(threads);
    let t = Instant::now();
    let found: Res<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(share)
            .map(|part| s.spawn(move || e.read_keys(part).map_err(|e| e.to_string())))
            .collect();
        let mut found = 0;
        for h in handles {
            found += h.join().map_err(|_| "reader panicked")??;
        }
        Ok(found)
    });
    let d = t.elapsed();
    Ok((per_sec(keys.len(), d), found?))
}

/// Durable puts for `DURABLE_RUN` from `threads` threads; ops/s.
fn durable_run(e: &dyn Engine, threads: usize) -> Res<f64> {
    let t = Instant::now();
    let total: Res<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || -> Result<usize, String> {
                    let mut rng = Rng(0xD0_0000 + i as u64);
                    let mut n = 0;
                    while t.elapsed() < DURABLE_RUN {
                        let k = rng.next();
                        e.put_durable(k, &value_for(k, 1))
                            .map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| "writer panicked")??;
        }
        Ok(total)
    });
    Ok(per_sec(total?, t.elapsed()))
}

/// A Buffered silo store: `write` of a one-put batch, then `flush`, for
/// `DURABLE_RUN`; ops/s.
fn write_flush_run(dir: &Path) -> Res<f64> {
    let silo = silo_core::Silo::open(dir, silo_core::Options::default())?;
    let mut rng = Rng(0xF1_0000);
    let mut b = silo_core::WriteBatch::new();
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < DURABLE_RUN {
        let k = rng.next();
        b.clear();
        b.put(k, &value_for(k, 1));
        silo.write(&b)?;
        silo.flush()?;
        n += 1;
    }
    let rate = per_sec(n, t.elapsed());
    silo.close()?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(rate)
}

/// 128-byte append + fdatasync on a plain file for `DURABLE_RUN`; ops/s.
fn raw_append_run(dir: &Path) -> Res<f64> {
    std::fs::create_dir_all(dir)?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw.log"))?;
    let rec = [7u8; 128];
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < DURABLE_RUN {
        f.write_all(&rec)?;
        f.sync_data()?;
        n += 1;
    }
    Ok(per_sec(n, t.elapsed()))
}

// ----- results ---------------------------------------------------------

/// How a row's figure compares with its goal.
#[derive(Clone, Copy)]
enum Goal {
    /// Throughput: silo / best peer at least this.
    AtLeast(f64),
    /// Time or size: silo / reference at most this.
    AtMost(f64),
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    OpsPerSec,
    Millis,
    MiB,
    GbPerSec,
}

impl Unit {
    fn fmt(self, x: f64) -> String {
        match self {
            Unit::OpsPerSec if x >= 1e6 => format!("{:.2}M/s", x / 1e6),
            Unit::OpsPerSec if x >= 1e3 => format!("{:.1}k/s", x / 1e3),
            Unit::OpsPerSec => format!("{x:.0}/s"),
            Unit::Millis => format!("{x:.2} ms"),
            Unit::MiB => format!("{x:.1} MiB"),
            Unit::GbPerSec => format!("{x:.2} GB/s"),
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Unit::OpsPerSec | Unit::GbPerSec)
    }
}

struct Row {
    scenario: String,
    unit: Unit,
    /// Figure per engine, in `KINDS` order (silo first); `None` when not run.
    figures: [Option<f64>; 6],
    /// Reference the ratio is taken against, when not the best peer (name, value).
    reference: Option<(String, f64)>,
    /// Peers considered for "best peer" (by index in `KINDS`); all when empty.
    peers: Vec<usize>,
    goal: Goal,
    goal_text: String,
}

impl Row {
    fn new(scenario: &str, unit: Unit, goal: Goal, goal_text: &str) -> Row {
        Row {
            scenario: scenario.to_owned(),
            unit,
            figures: [None; 6],
            reference: None,
            peers: Vec::new(),
            goal,
            goal_text: goal_text.to_owned(),
        }
    }

    fn best_peer(&self) -> Option<(String, f64)> {
        if let Some(r) = &self.reference {
            return Some(r.clone());
        }
        let mut best: Option<(String, f64)> = None;
        for (i, kind) in KINDS.iter().enumerate().skip(1) {
            if i == ENGINE_IDX || !self.peers.is_empty() && !self.peers.contains(&i) {
                continue;
            }
            let Some(x) = self.figures[i] else { continue };
            let better = match &best {
                None => true,
                Some((_, b)) => {
                    if self.unit.higher_is_better() {
                        x > *b
                    } else {
                        x < *b
                    }
                }
            };
            if better {
                best = Some((kind.name().to_owned(), x));
            }
        }
        best
    }
}

fn table(rows: &[Row], keys: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Keys: {keys}, values: {VALUE_LEN} bytes, raw key+value bytes: {:.1} MiB.\n",
        mib(keys as u64 * RAW_ENTRY)
    );
    s.push_str(
        "| scenario | silo | redb | fjall | sled | heed | engine | reference | silo / ref | goal | met |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let cell = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| r.unit.fmt(x));
        let best = r.best_peer();
        let (ref_cell, ratio) = match (&best, r.figures[0]) {
            (Some((name, b)), Some(s)) if *b > 0.0 => {
                (format!("{name} {}", r.unit.fmt(*b)), Some(s / b))
            }
            (Some((name, b)), _) => (format!("{name} {}", r.unit.fmt(*b)), None),
            _ => ("-".to_owned(), None),
        };
        let met = match (r.goal, ratio) {
            (Goal::AtLeast(g), Some(x)) => {
                if x >= g {
                    "yes"
                } else {
                    "NO"
                }
            }
            (Goal::AtMost(g), Some(x)) => {
                if x <= g {
                    "yes"
                } else {
                    "NO"
                }
            }
            _ => "",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            cell(r.figures[0]),
            cell(r.figures[1]),
            cell(r.figures[2]),
            cell(r.figures[3]),
            cell(r.figures[4]),
            cell(r.figures[5]),
            ref_cell,
            ratio.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}x")),
            r.goal_text,
            met
        );
    }
    s
}

#[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

// ----- scenarios -------------------------------------------------------

/// Indices of rows, so figures land in the right place.
struct Rows {
    rows: Vec<Row>,
}

impl Rows {
    fn set(&mut self, scenario: &str, kind: usize, x: f64) {
        if let Some(r) = self.rows.iter_mut().find(|r| r.scenario == scenario) {
            r.figures[kind] = Some(x);
        }
    }
}

const R_LOAD: &str = "1. bulk load (10k batches, then durable)";
const R_READ1_P: &str = "2. point reads, 1 thread (silo pending view)";
const R_READ1_C: &str = "2. point reads, 1 thread (silo compacted)";
const R_READ2_P: &str = "3. point reads, 2 threads (silo pending view)";
const R_READ2_C: &str = "3. point reads, 2 threads (silo compacted)";
const R_MISS_P: &str = "4. missing-key reads (silo pending view)";
const R_MISS_C: &str = "4. missing-key reads (silo compacted)";
const R_OVER: &str = "5. random overwrites, buffered";
const R_DUR1: &str = "6. durable puts, 1 thread";
const R_DUR_RAW: &str = "6. durable puts vs raw 128 B append+fdatasync";
const R_DUR4: &str = "6. silo durable puts, 4 threads vs 1";
const R_FLUSH: &str = "6. silo write+flush vs Sync put, 1 thread";
const R_REOPEN: &str = "7. reopen after clean close (median open→first get)";
const R_RECOVERY: &str = "8. recovery: log replay speed";
const R_DISK_LOAD: &str = "9. disk after load (vs raw)";
const R_DISK_COMPACT: &str = "9. disk after load + compact (vs raw)";
const R_DISK_DELETE: &str = "10. disk after delete half + compact (vs live raw)";

fn rows() -> Vec<Row> {
    use Goal::{AtLeast, AtMost};
    vec![
        Row::new(R_LOAD, Unit::OpsPerSec, AtLeast(3.0), ">= 3x"),
        Row::new(R_READ1_P, Unit::OpsPerSec, AtLeast(1.5), ">= 1.5x"),
        Row::new(R_READ1_C, Unit::OpsPerSec, AtLeast(1.5), ">= 1.5x"),
        Row::new(R_READ2_P, Unit::OpsPerSec, AtLeast(1.5), ">= 1.5x"),
        Row::new(R_READ2_C, Unit::OpsPerSec, AtLeast(1.5), ">= 1.5x"),
        Row::new(R_MISS_P, Unit::OpsPerSec, AtLeast(3.0), ">= 3x"),
        Row::new(R_MISS_C, Unit::OpsPerSec, AtLeast(3.0), ">= 3x"),
        Row::new(R_OVER, Unit::OpsPerSec, AtLeast(3.0), ">= 3x"),
        Row::new(R_DUR1, Unit::OpsPerSec, AtLeast(1.0), ">= 1x best peer"),
        Row::new(R_DUR_RAW, Unit::OpsPerSec, AtLeast(0.9), ">= 0.9x raw"),
        Row::new(R_DUR4, Unit::OpsPerSec, AtLeast(3.0), ">= 3x 1 thread"),
        Row::new(R_FLUSH, Unit::OpsPerSec, AtLeast(0.9), ">= 0.9x Sync put"),
        {
            let mut r = Row::new(R_REOPEN, Unit::Millis, AtMost(2.0), "<= 2x LMDB/redb");
            r.peers = vec![1, 4];
            r
        },
        Row::new(R_RECOVERY, Unit::GbPerSec, AtLeast(1.0), ">= 1 GB/s"),
        Row::new(R_DISK_LOAD, Unit::MiB, AtMost(1.5), "<= 1.5x raw"),
        Row::new(R_DISK_COMPACT, Unit::MiB, AtMost(1.5), "<= 1.5x raw"),
        Row::new(R_DISK_DELETE, Unit::MiB, AtMost(1.5), "<= 1.5x live raw"),
    ]
}

/// Load, reads, overwrites, disk, reopen and delete for one engine.
fn main_pipeline(
    kind: Kind,
    idx: usize,
    w: &Workload,
    root: &Path,
    sel: &Selection,
    out: &mut Rows,
    notes: &mut Vec<String>,
) -> Res<()> {
    let name = kind.name();
    let dir = fresh_dir(root, &format!("{name}-main"));
    let n = w.items.len();
    let mut e = kind.open(&dir, false)?;

    let t = Instant::now();
    e.load_batches(&w.items, BATCH)?;
    let d = t.elapsed();
    eprintln!("[{name}] load: {d:.2?} {}", e.describe());
    if sel.wants("load") {
        out.set(R_LOAD, idx, per_sec(n, d));
    }
    if sel.wants("disk") {
        out.set(R_DISK_LOAD, idx, mib(disk_bytes(&dir)));
    }

    let reads = |e: &dyn Engine, out: &mut Rows, r1: &str, r2: &str, rm: &str| -> Res<()> {
        if sel.wants("reads") {
            let (x, found) = read_run(e, &w.shuffled, 1)?;
            assert_eq!(found, n as u64, "{name}: every loaded key is found");
            out.set(r1, idx, x);
            let (x, found) = read_run(e, &w.shuffled, 2)?;
            assert_eq!(found, n as u64, "{name}: every loaded key is found");
            out.set(r2, idx, x);
        }
        if sel.wants("missing") {
            let (x, found) = read_run(e, &w.missing, 1)?;
            assert_eq!(found, 0, "{name}: no missing key is found");
            out.set(rm, idx, x);
        }
        Ok(())
    };

    if kind == Kind::Silo {
        reads(&*e, out, R_READ1_P, R_READ2_P, R_MISS_P)?;
        let t = Instant::now();
        let how = e.compact()?;
        eprintln!(
            "[{name}] {how} after load: {:.2?} {}",
            t.elapsed(),
            e.describe()
        );
        notes.push(format!(
            "silo compaction after the load ({how}): {:.2?}",
            t.elapsed()
        ));
        if sel.wants("disk") {
            out.set(R_DISK_COMPACT, idx, mib(disk_bytes(&dir)));
        }
        reads(&*e, out, R_READ1_C, R_READ2_C, R_MISS_C)?;
    } else {
        // Peers have one view: the same figure goes in both rows.
        reads(&*e, out, R_READ1_P, R_READ2_P, R_MISS_P)?;
        for (from, to) in [
            (R_READ1_P, R_READ1_C),
            (R_READ2_P, R_READ2_C),
            (R_MISS_P, R_MISS_C),
        ] {
            if let Some(x) = out
                .rows
                .iter()
                .find(|r| r.scenario == from)
                .and_then(|r| r.figures[idx])
            {
                out.set(to, idx, x);
            }
        }
    }
    eprintln!("[{name}] reads done");

    if sel.wants("overwrite") {
        let t = Instant::now();
        let mut done = 0;
        for (i, &k) in w.shuffled.iter().enumerate() {
            e.put(k, &value_for(k, 2))?;
            done = i + 1;
            if i % 1024 == 0 && t.elapsed() > OVERWRITE_BUDGET {
                break;
            }
        }
        let d = t.elapsed();
        out.set(R_OVER, idx, per_sec(done, d));
        if done < n {
            notes.push(format!(
                "{name}: overwrites stopped after {done} of {n} puts ({:.1} s budget{})",
                OVERWRITE_BUDGET.as_secs_f64(),
                if matches!(kind, Kind::Redb | Kind::Heed) {
                    "; one write txn per put"
                } else {
                    ""
                }
            ));
        }
        eprintln!("[{name}] overwrites: {done} in {d:.2?}");
    }

    e.close()?;

    if sel.wants("reopen") {
        let probe = w.shuffled[0];
        let mut times = Vec::with_capacity(REOPENS);
        for _ in 0..REOPENS {
            let t = Instant::now();
            let e = kind.open(&dir, false)?;
            let found = e.read_keys(&[probe])?;
            times.push(t.elapsed());
            assert_eq!(found, 1, "{name}: found after reopen");
            e.close()?;
        }
        let m = silo_benches::median(times).unwrap_or_default();
        out.set(R_REOPEN, idx, m.as_secs_f64() * 1e3);
        eprintln!("[{name}] reopen median {m:.2?}");
    }

    if sel.wants("delete") {
        let mut e = kind.open(&dir, false)?;
        let half = &w.shuffled[..n / 2];
        e.delete_batches(half, BATCH)?;
        let t = Instant::now();
        let how = e.compact()?;
        let d = t.elapsed();
        eprintln!("[{name}] after delete half + compact: {}", e.describe());
        e.close()?;
        files(&dir);
        out.set(R_DISK_DELETE, idx, mib(disk_bytes(&dir)));
        notes.push(format!("{name}: after delete-half ran {how} ({d:.2?})"));
        eprintln!("[{name}] delete half + {how}: {d:.2?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn durable_pipeline(kind: Kind, idx: usize, root: &Path, out: &mut Rows) -> Res<()> {
    let name = kind.name();
    let dir = fresh_dir(root, &format!("{name}-durable"));
    let e = kind.open(&dir, true)?;
    let x = durable_run(&*e, 1)?;
    out.set(R_DUR1, idx, x);
    eprintln!("[{name}] durable puts 1 thread: {x:.0}/s");
    if kind == Kind::Silo {
        out.set(R_DUR_RAW, idx, x);
        let x4 = durable_run(&*e, 4)?;
        eprintln!("[{name}] durable puts 4 threads: {x4:.0}/s");
        out.set(R_DUR4, idx, x4);
        if let Some(r) = out.rows.iter_mut().find(|r| r.scenario == R_DUR4) {
            r.reference = Some(("silo 1 thread".to_owned(), x));
        }
        let xf = write_flush_run(&root.join("silo-write-flush"))?;
        eprintln!("[{name}] write(batch of 1) + flush: {xf:.0}/s");
        out.set(R_FLUSH, idx, xf);
        if let Some(r) = out.rows.iter_mut().find(|r| r.scenario == R_FLUSH) {
            r.reference = Some(("silo Sync put".to_owned(), x));
        }
    }
    e.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Silo with `compact_on_close = false`: write a large log, close, time the reopen.
fn recovery(n: usize, root: &Path, out: &mut Rows, notes: &mut Vec<String>) -> Res<()> {
    let dir = fresh_dir(root, "silo-recovery");
    let puts = n * 4;
    let mut opts = silo_core::Options {
        compact_on_close: false,
        auto_compact: false,
        pending_limit_bytes: 16 << 30,
        ..silo_core::Options::default()
    };
    opts.thresholds.log_bytes = 16 << 30;
    opts.thresholds.pending_ops = u64::MAX;
    let silo = silo_core::Silo::open(&dir, opts.clone())?;
    let mut rng = Rng(0xEC0_7E27);
    let mut b = silo_core::WriteBatch::new();
    let mut value = [0u8; 256];
    let t = Instant::now();
    for chunk in 0..puts.div_ceil(BATCH) {
        b.clear();
        for _ in 0..BATCH.min(puts - chunk * BATCH) {
            let k = rng.next();
            value[..8].copy_from_slice(&k.to_le_bytes());
            b.put(k, &value);
        }
        silo.write(&b)?;
    }
    silo.flush()?;
    let write_time = t.elapsed();
    let log_bytes = silo.stats().log_bytes;
    silo.close()?;
    let t = Instant::now();
    let silo = silo_core::Silo::open(&dir, opts)?;
    let found = silo.get_with(rng.next(), |v| v.is_some())?;
    let open = t.elapsed();
    let _ = found;
    let pending = silo.stats().pending_ops;
    drop(silo);
    #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
    let gbps = log_bytes as f64 / 1e9 / open.as_secs_f64();
    out.set(R_RECOVERY, 0, gbps);
    notes.push(format!(
        "recovery: {puts} puts of 256 B (written in {write_time:.2?}), log {:.1} MiB, reopen {open:.2?} ({pending} pending ops after replay)",
        mib(log_bytes)
    ));
    eprintln!(
        "[silo] recovery: log {:.1} MiB, open {open:.2?}",
        mib(log_bytes)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> Res<()> {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let n: usize = std::env::var("SILO_BENCH_KEYS")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let sel = Selection::from_env("SILO_BENCH_ONLY");
    let engines = Selection::from_env("SILO_BENCH_ENGINES");
    let root = tempfile::Builder::new()
        .prefix("silo-compare-")
        .tempdir_in("/tmp")?;
    eprintln!("silo compare: {n} keys under {}", root.path().display());
    let w = Workload::new(n);
    let mut out = Rows { rows: rows() };
    let mut notes = Vec::new();

    let main_wanted = [
        "load",
        "reads",
        "missing",
        "overwrite",
        "reopen",
        "disk",
        "delete",
    ]
    .iter()
    .any(|s| sel.wants(s));
    for (idx, kind) in KINDS.iter().enumerate() {
        if !engines.wants(kind.name()) {
            continue;
        }
        if main_wanted {
            main_pipeline(*kind, idx, &w, root.path(), &sel, &mut out, &mut notes)?;
        }
        if sel.wants("durable") {
            durable_pipeline(*kind, idx, root.path(), &mut out)?;
        }
    }
    if sel.wants("durable") {
        let x = raw_append_run(&root.path().join("raw"))?;
        eprintln!("[raw] append+fdatasync: {x:.0}/s");
        if let Some(r) = out.rows.iter_mut().find(|r| r.scenario == R_DUR_RAW) {
            r.reference = Some(("raw".to_owned(), x));
        }
    }
    if sel.wants("recovery") {
        recovery(n, root.path(), &mut out, &mut notes)?;
        if let Some(r) = out.rows.iter_mut().find(|r| r.scenario == R_RECOVERY) {
            r.reference = Some(("goal".to_owned(), 1.0));
        }
    }
    // Disk rows compare with raw bytes, not with peers.
    let raw = mib(n as u64 * RAW_ENTRY);
    for (scenario, bytes) in [
        (R_DISK_LOAD, raw),
        (R_DISK_COMPACT, raw),
        (R_DISK_DELETE, raw / 2.0),
    ] {
        if let Some(r) = out.rows.iter_mut().find(|r| r.scenario == scenario) {
            r.reference = Some(("raw".to_owned(), bytes));
        }
    }
    out.rows.retain(|r| r.figures.iter().any(Option::is_some));

    let mut md = table(&out.rows, n);
    if !notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        for note in &notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    println!("{md}");
    // The results page's rows: each scenario measured against its best peer.
    let advantages: Vec<(String, String, f64)> = out
        .rows
        .iter()
        .filter(|r| r.reference.is_none())
        .filter_map(|r| {
            let (peer, best) = r.best_peer()?;
            let silo = r.figures[0]?;
            if best <= 0.0 || silo <= 0.0 {
                return None;
            }
            let factor = if r.unit.higher_is_better() {
                silo / best
            } else {
                best / silo
            };
            Some((r.scenario.clone(), peer, factor))
        })
        .collect();
    silo_benches::write_advantages("compare", &advantages)?;
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-compare.md");
    let mut f = File::create(&target)?;
    f.write_all(md.as_bytes())?;
    eprintln!("written to {}", target.display());
    Ok(())
}

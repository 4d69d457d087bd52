//! [`StateMachine`]: the replicated key-value state in a silo engine under
//! `<node>/sm/gen-<g>`, with the last applied log id and membership written
//! in the same batch as each applied run of entries; snapshots built from
//! a checkpoint and installed by switching the `sm/CURRENT` pointer.
//!
//! With an index schema the engine is held by a [`silo_engine::Index`]
//! ([`SmStore`]): document commands go through it, in the same engine,
//! so snapshots carry the documents and an install swaps them with the
//! rest. Each entry with document commands first writes its resolved ops
//! as an intent record, with the applied id of the entries before it, in
//! one batch; the index's own batches follow; the next applied id removes
//! the intent. A crash in between replays the entry from its intent: the
//! ops are whole-document puts and removes, idempotent, so a patch that
//! extends a tags list is not applied twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use silo_core::{Durability, WriteBatch, WriteOptions};
use silo_engine::{Engine, EngineOptions, Index, LayerOperator, Schema};
use silo_io::DirLock;
use silo_io::durable::{create_dir_durable, remove_file, rename, sync_dir};

use crate::archive;
use crate::documents::{self, DocIntent};
use crate::error::{RaftStoreError, Result};
use crate::keys::{
    MAX_INDEXED_FIELDS, SM_APPLIED_KEY, SM_DOC_INTENT_KEY, SM_MEMBERSHIP_KEY, decode_record,
    encode_record,
};
use crate::meta_file::{self, POINTER_MAGIC};
use crate::snapshot_file::SnapshotFile;
use crate::types::{Request, Response, TypeConfig};

/// The applied state: last applied log id and last membership.
pub type AppliedState = (
    Option<LogId<u64>>,
    StoredMembership<u64, openraft::BasicNode>,
);

/// The name of the current snapshot archive in `<node>/snap`.
pub const CURRENT_SNAPSHOT: &str = "current.snap";

/// The state machine engine's options: one shard, and always the index
/// layers' merge operator (key-value commands never merge, so it costs
/// them nothing, and an engine holding an index can always be opened).
fn engine_options() -> EngineOptions {
    EngineOptions {
        shards: Some(1),
        compaction_threads: Some(1),
        ..EngineOptions::default()
    }
    .with_merge_operator(LayerOperator)
}

/// The live state machine store: its engine, held by an index when the
/// node has a schema. Derefs to the engine.
#[derive(Debug)]
pub struct SmStore {
    inner: StoreInner,
}

#[derive(Debug)]
enum StoreInner {
    Plain(Box<Engine>),
    Indexed(Index),
}

impl SmStore {
    /// Wraps `engine`: with `schema` (or a schema the engine already holds)
    /// an index over it. A schema other than the stored one, or a schema
    /// given to a state machine that already applied entries without one,
    /// is refused.
    fn open(engine: Engine, schema: Option<&Schema>) -> Result<SmStore> {
        let stored = Index::stored_schema(&engine)?;
        let schema = match (schema, stored) {
            (None, None) => {
                return Ok(SmStore {
                    inner: StoreInner::Plain(Box::new(engine)),
                });
            }
            (None, Some(stored)) => stored,
            (Some(given), None) => {
                if applied_state_of(&engine)?.0.is_some() {
                    return Err(RaftStoreError::SchemaRefused {
                        reason: "this state machine has applied entries without an index: an \
                                 index schema can only be given to a new cluster"
                            .to_owned(),
                    });
                }
                given.clone()
            }
            (Some(given), Some(_)) => given.clone(),
        };
        if schema.fields.len() > MAX_INDEXED_FIELDS {
            return Err(RaftStoreError::SchemaRefused {
                reason: format!(
                    "{} fields, at most {MAX_INDEXED_FIELDS}",
                    schema.fields.len()
                ),
            });
        }
        Ok(SmStore {
            inner: StoreInner::Indexed(Index::open_on(engine, schema)?),
        })
    }

    /// The index, if the state machine has one.
    pub fn index(&self) -> Option<&Index> {
        match &self.inner {
            StoreInner::Plain(_) => None,
            StoreInner::Indexed(index) => Some(index),
        }
    }

    fn close(self) -> Result<()> {
        match self.inner {
            StoreInner::Plain(engine) => engine.close()?,
            StoreInner::Indexed(index) => index.close()?,
        }
        Ok(())
    }
}

impl std::ops::Deref for SmStore {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        match &self.inner {
            StoreInner::Plain(engine) => engine,
            StoreInner::Indexed(index) => index.engine(),
        }
    }
}

/// The applied state stored in `engine`.
pub fn applied_state_of(engine: &Engine) -> Result<AppliedState> {
    let applied = match engine.get(SM_APPLIED_KEY)? {
        Some(b) => Some(decode_record("last applied log id", SM_APPLIED_KEY, &b)?),
        None => None,
    };
    let membership = match engine.get(SM_MEMBERSHIP_KEY)? {
        Some(b) => decode_record("last membership", SM_MEMBERSHIP_KEY, &b)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// What the state machine and its snapshot builders share.
#[derive(Debug)]
struct SmShared {
    /// `<node>/sm`.
    sm_dir: PathBuf,
    /// `<node>/snap`.
    snap_dir: PathBuf,
    /// The live store and its generation (swapped by an install).
    engine: RwLock<(u64, Arc<SmStore>)>,
    /// The node's index schema, if it was given one.
    schema: Option<Schema>,
    /// Serializes builds and installs (both replace `current.snap`).
    snapshot_lock: Mutex<()>,
    /// Names temporary files uniquely within this process.
    seq: AtomicU64,
    /// The node directory's lock, held for the state machine's life: taken
    /// before anything under the directory is read or removed, so a second
    /// process opening the same node fails with `Locked` and sweeps nothing.
    _node_lock: DirLock,
}

/// The directory of state machine generation `g`.
fn gen_dir(sm_dir: &Path, g: u64) -> PathBuf {
    sm_dir.join(format!("gen-{g}"))
}

impl SmShared {
    fn engine(&self) -> Arc<SmStore> {
        Arc::clone(&self.engine.read().1)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn current_path(&self) -> PathBuf {
        self.snap_dir.join(CURRENT_SNAPSHOT)
    }

    /// Checkpoints the engine, packs the checkpoint into `current.snap`.
    fn build(&self) -> Result<Snapshot<TypeConfig>> {
        let _guard = self.snapshot_lock.lock();
        let seq = self.next_seq();
        let ckpt = self.snap_dir.join(format!("build-{seq}"));
        remove_tree(&ckpt)?;
        let result = self.build_from(&ckpt, seq);
        let cleanup = remove_tree(&ckpt);
        let snapshot = result?;
        cleanup?;
        Ok(snapshot)
    }

    fn build_from(&self, ckpt: &Path, seq: u64) -> Result<Snapshot<TypeConfig>> {
        self.engine().checkpoint(ckpt)?;
        // The meta comes from the checkpoint itself: applies go on while it
        // is taken, and only the copy says which of them it holds.
        let (last_log_id, last_membership) = {
            // Opened read-write: a read-only open needs the LOCK files the
            // copy does not have (they stay out of the archive anyway).
            let copy = Engine::open(ckpt, engine_options())?;
            let state = applied_state_of(&copy)?;
            copy.close()?;
            state
        };
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}-{seq}", id.leader_id, id.index, unique()),
            None => format!("none-{}-{seq}", unique()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let meta_bytes = serde_json::to_vec(&meta).map_err(|source| RaftStoreError::Encode {
            what: "snapshot meta",
            source,
        })?;
        let tmp = self.snap_dir.join(format!("build-{seq}.tmp"));
        remove_file(&tmp)?;
        archive::pack(ckpt, &meta_bytes, &tmp)?;
        let current = self.current_path();
        rename(&tmp, &current)?;
        sync_dir(&self.snap_dir)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::open_read(&current)?),
        })
    }

    /// The current snapshot, if one was built or installed.
    fn current(&self) -> Result<Option<Snapshot<TypeConfig>>> {
        let _guard = self.snapshot_lock.lock();
        let path = self.current_path();
        if !path.exists() {
            return Ok(None);
        }
        let file = SnapshotFile::open_read(&path)?;
        let meta = decode_meta(&path, &archive::read_meta(file.file())?)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }

    /// Installs the archive `data` as the state machine: unpack and check
    /// it into a fresh generation, check its applied state against `meta`,
    /// keep the archive as `current.snap`, publish the generation in
    /// `sm/CURRENT`, and swap the engine. Until the pointer is published
    /// nothing the state machine reads changes; on an error before it the
    /// new generation and the archive are removed.
    fn install(
        &self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        data: &SnapshotFile,
    ) -> Result<()> {
        let _guard = self.snapshot_lock.lock();
        let seq = self.next_seq();
        // The archive to keep: the receiving file itself, or a copy of
        // another (openraft may hand over any snapshot file).
        let staged = if data.path().parent() == Some(self.snap_dir.as_path())
            && data
                .path()
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("recv-"))
        {
            data.file().sync_all()?;
            data.path().to_owned()
        } else {
            let copy = self.snap_dir.join(format!("recv-{seq}.tmp"));
            remove_file(&copy)?;
            copy_file_streaming(data.file(), &copy)?;
            copy
        };
        let generation = self.engine.read().0 + 1;
        let dest = gen_dir(&self.sm_dir, generation);
        remove_tree(&dest)?;
        let opened = match self.open_archive(&staged, &dest, meta) {
            Ok(engine) => engine,
            Err(e) => {
                // The failed generation and the bad archive are dropped;
                // the live state machine was never touched.
                let _ = remove_tree(&dest);
                let _ = remove_file(&staged);
                return Err(e);
            }
        };
        // The archive first, then the pointer: a node stopped between the
        // two finds the snapshot ahead of its state machine at open and
        // installs it again (`finish_install`).
        if staged != self.current_path() {
            rename(&staged, &self.current_path())?;
            sync_dir(&self.snap_dir)?;
        }
        meta_file::write(&self.sm_dir.join("CURRENT"), POINTER_MAGIC, generation)?;
        let old = {
            let mut live = self.engine.write();
            std::mem::replace(&mut *live, (generation, Arc::new(opened)))
        };
        let old_dir = gen_dir(&self.sm_dir, old.0);
        // The new state is live from here: removing the old generation is
        // best effort (a builder may still hold its engine, or the removal
        // may fail), and the next open removes what is left, so no error
        // reaches openraft (which would stop the node).
        if let Ok(engine) = Arc::try_unwrap(old.1) {
            let _ = engine.close();
            let _ = remove_tree(&old_dir);
        }
        Ok(())
    }

    fn open_archive(
        &self,
        staged: &Path,
        dest: &Path,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
    ) -> Result<SmStore> {
        let file = silo_io::SiloFile::open_read(staged)?;
        let archived = decode_meta(staged, &archive::unpack(&file, dest)?)?;
        if archived.last_log_id != meta.last_log_id
            || archived.last_membership != meta.last_membership
        {
            return Err(RaftStoreError::SnapshotMismatch {
                snapshot_id: meta.snapshot_id.clone(),
                reason: format!(
                    "the archive's meta ({:?}) differs from the one sent with it ({:?})",
                    archived.last_log_id, meta.last_log_id
                ),
            });
        }
        sync_dir(&self.sm_dir)?;
        let engine = Engine::open(dest, engine_options())?;
        let (applied, membership) = applied_state_of(&engine)?;
        if applied != meta.last_log_id || membership != meta.last_membership {
            drop(engine);
            return Err(RaftStoreError::SnapshotMismatch {
                snapshot_id: meta.snapshot_id.clone(),
                reason: format!(
                    "its state machine was applied up to {applied:?}, the meta says {:?}",
                    meta.last_log_id
                ),
            });
        }
        SmStore::open(engine, self.schema.as_ref())
    }
}

/// Runs `f` on tokio's blocking pool and waits for it.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RaftStoreError::Raft(format!("snapshot task failed: {e}")))?
}

/// A number unique enough to tell snapshots apart across restarts.
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn decode_meta(path: &Path, bytes: &[u8]) -> Result<SnapshotMeta<u64, openraft::BasicNode>> {
    serde_json::from_slice(bytes).map_err(|e| RaftStoreError::Invalid {
        path: path.to_owned(),
        what: "snapshot meta",
        offset: 0,
        reason: e.to_string(),
    })
}

/// Removes the directory tree at `path` if it exists.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    Ok(silo_io::durable::remove_dir_all(path)?)
}

/// Copies `src` into the new file `dest` in 1 MiB chunks and syncs it.
fn copy_file_streaming(src: &silo_io::SiloFile, dest: &Path) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    let out = silo_io::SiloFile::create_new(dest)?;
    let len = src.len()?;
    let mut buf = vec![0_u8; usize::try_from(CHUNK).unwrap_or(1 << 20)];
    let mut at = 0_u64;
    while at < len {
        let n = usize::try_from((len - at).min(CHUNK)).unwrap_or(buf.len());
        src.read_exact_at(&mut buf[..n], at)?;
        out.write_all_at(&buf[..n], at)?;
        at += n as u64;
    }
    out.sync_all()?;
    Ok(())
}

/// The state machine of one node.
#[derive(Debug)]
pub struct StateMachine {
    shared: Arc<SmShared>,
}

/// Builds a snapshot of the state machine (openraft runs it beside applies).
#[derive(Debug)]
pub struct SnapshotBuilder {
    shared: Arc<SmShared>,
}

impl StateMachine {
    /// Opens the state machine under `node_dir` (`sm/` and `snap/`),
    /// creating generation 1 if there is none, and removes leftovers of
    /// interrupted builds, receives and installs.
    pub fn open(node_dir: &Path) -> Result<StateMachine> {
        StateMachine::open_with(node_dir, None)
    }

    /// [`StateMachine::open`] with an index schema: document commands go
    /// through an index in the state machine's engine (see [`SmStore`]).
    /// Without one, a state machine that holds an index keeps using the
    /// schema it holds.
    pub fn open_with(node_dir: &Path, schema: Option<Schema>) -> Result<StateMachine> {
        create_dir_durable(node_dir)?;
        let lock = DirLock::acquire(node_dir)?;
        StateMachine::open_locked(node_dir, schema, lock)
    }

    /// [`StateMachine::open_with`] under the node directory's lock, taken
    /// by the caller.
    pub(crate) fn open_locked(
        node_dir: &Path,
        schema: Option<Schema>,
        node_lock: DirLock,
    ) -> Result<StateMachine> {
        let sm_dir = node_dir.join("sm");
        let snap_dir = node_dir.join("snap");
        create_dir_durable(&sm_dir)?;
        create_dir_durable(&snap_dir)?;
        let pointer = sm_dir.join("CURRENT");
        let generation = match meta_file::read(&pointer, "state machine pointer", POINTER_MAGIC)? {
            Some(g) => g,
            None => {
                meta_file::write(&pointer, POINTER_MAGIC, 1)?;
                1
            }
        };
        let live = gen_dir(&sm_dir, generation);
        for entry in read_dir_names(&sm_dir)? {
            if entry.starts_with("gen-") && sm_dir.join(&entry) != live {
                remove_tree(&sm_dir.join(&entry))?;
            }
        }
        for entry in read_dir_names(&snap_dir)? {
            if entry != CURRENT_SNAPSHOT {
                let p = snap_dir.join(&entry);
                if p.is_dir() {
                    remove_tree(&p)?;
                } else {
                    remove_file(&p)?;
                }
            }
        }
        let engine = SmStore::open(Engine::open(&live, engine_options())?, schema.as_ref())?;
        let sm = StateMachine {
            shared: Arc::new(SmShared {
                sm_dir,
                snap_dir,
                engine: RwLock::new((generation, Arc::new(engine))),
                schema,
                snapshot_lock: Mutex::new(()),
                seq: AtomicU64::new(0),
                _node_lock: node_lock,
            }),
        };
        sm.finish_install()?;
        Ok(sm)
    }

    /// An install publishes the archive as `current.snap` before it
    /// switches `sm/CURRENT`; if the node stopped in between, the snapshot
    /// is ahead of the state machine: install it now.
    fn finish_install(&self) -> Result<()> {
        let path = self.shared.current_path();
        if !path.exists() {
            return Ok(());
        }
        let file = SnapshotFile::open_read(&path)?;
        let meta = decode_meta(&path, &archive::read_meta(file.file())?)?;
        let (applied, _) = applied_state_of(&self.shared.engine())?;
        if meta.last_log_id > applied {
            self.shared.install(&meta, &file)?;
        }
        Ok(())
    }

    /// The live store (reads of the replicated state; derefs to the
    /// engine).
    pub fn engine(&self) -> Arc<SmStore> {
        self.shared.engine()
    }

    /// A cheap handle for reading the live state from other tasks.
    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The generation of the live state machine directory.
    pub fn generation(&self) -> u64 {
        self.shared.engine.read().0
    }

    /// Installs the archive `data` as a snapshot described by `meta` (what
    /// `install_snapshot` does, with the crate's typed error).
    pub fn install_archive(
        &self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        data: &SnapshotFile,
    ) -> Result<()> {
        self.shared.install(meta, data)
    }

    fn apply_entries(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<Vec<Response>> {
        let store = self.shared.engine();
        let indexed = store.index().is_some();
        // An intent left by a crash: the entry it names is the first one
        // openraft applies again.
        let mut intent: Option<DocIntent> = match store.get(SM_DOC_INTENT_KEY)? {
            Some(b) => Some(decode_record("document intent", SM_DOC_INTENT_KEY, &b)?),
            None => None,
        };
        let mut clear_intent = intent.is_some();
        let mut batch = WriteBatch::new();
        let mut responses = Vec::new();
        let mut last = None;
        let mut membership = None;
        for entry in entries {
            let log_id = entry.log_id;
            match entry.payload {
                EntryPayload::Blank => responses.push(Response::Applied),
                EntryPayload::Normal(req) => {
                    if let Some(key) = req.reserved_key() {
                        responses.push(Response::ReservedKey { key });
                    } else if let Some(key) = req.index_owned_key().filter(|_| indexed) {
                        return Err(RaftStoreError::KeyOfTheIndex {
                            index: log_id.index,
                            key,
                        });
                    } else if req.has_documents() {
                        let Some(index) = store.index() else {
                            return Err(RaftStoreError::NoIndex {
                                index: log_id.index,
                            });
                        };
                        let resolved = match intent.take() {
                            Some(i) if i.log_id == log_id => Ok(i.ops),
                            _ => documents::resolve(index, &req, log_id.index)?,
                        };
                        match resolved {
                            Err((doc, refusal)) => {
                                responses.push(Response::DocumentRefused { doc, refusal });
                            }
                            Ok(ops) => {
                                // The intent, with everything applied before
                                // it, in one batch; then the index's batches.
                                if let Some(prev) = last {
                                    batch.put(
                                        SM_APPLIED_KEY,
                                        &encode_record("last applied log id", &prev)?,
                                    );
                                }
                                if let Some(m) = membership.take() {
                                    batch.put(
                                        SM_MEMBERSHIP_KEY,
                                        &encode_record("last membership", &m)?,
                                    );
                                }
                                let intent = DocIntent { log_id, ops };
                                batch.put(
                                    SM_DOC_INTENT_KEY,
                                    &encode_record("document intent", &intent)?,
                                );
                                let written = std::mem::replace(&mut batch, WriteBatch::new());
                                store.write_with(
                                    &written,
                                    WriteOptions::durability(Durability::Sync),
                                )?;
                                documents::apply_ops(index, &intent.ops)?;
                                clear_intent = true;
                                add_key_values(&mut batch, &req);
                                responses.push(Response::Applied);
                            }
                        }
                    } else {
                        add_key_values(&mut batch, &req);
                        responses.push(Response::Applied);
                    }
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m));
                    responses.push(Response::Applied);
                }
            }
            last = Some(log_id);
        }
        let Some(last) = last else {
            return Ok(responses);
        };
        batch.put(
            SM_APPLIED_KEY,
            &encode_record("last applied log id", &last)?,
        );
        if let Some(m) = membership {
            batch.put(SM_MEMBERSHIP_KEY, &encode_record("last membership", &m)?);
        }
        if clear_intent {
            batch.delete(SM_DOC_INTENT_KEY);
        }
        store.write_with(&batch, WriteOptions::durability(Durability::Sync))?;
        Ok(responses)
    }
}

/// Adds the key-value commands of `req` (checked: no reserved key) to
/// `batch`; its document commands go through the index.
fn add_key_values(batch: &mut WriteBatch, req: &Request) {
    match req {
        Request::Put { key, value } => {
            batch.put(*key, value);
        }
        Request::Delete { key } => {
            batch.delete(*key);
        }
        Request::Batch(reqs) => reqs.iter().for_each(|r| add_key_values(batch, r)),
        Request::UpsertDoc { .. } | Request::PatchDoc { .. } | Request::DeleteDoc { .. } => {}
    }
}

/// Reads the live state machine from any task (the engine may be swapped
/// by a snapshot install between two calls).
#[derive(Clone, Debug)]
pub struct StateReader {
    shared: Arc<SmShared>,
}

impl StateReader {
    /// The value of `key` in the live state machine.
    pub fn get(&self, key: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.shared.engine().get(key)?)
    }

    /// The live store (derefs to the engine; holds the index if any).
    pub fn engine(&self) -> Arc<SmStore> {
        self.shared.engine()
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| silo_io::IoError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| silo_io::IoError::io("read directory", dir, e))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        // Checkpoint and pack copy the whole state: off the async workers,
        // so heartbeats and elections go on meanwhile.
        let shared = Arc::clone(&self.shared);
        blocking(move || shared.build())
            .await
            .map_err(|e| e.snapshot(ErrorVerb::Write))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError<u64>> {
        applied_state_of(&self.shared.engine()).map_err(RaftStoreError::read_sm)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_entries(entries)
            .map_err(RaftStoreError::write_sm)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<u64>> {
        let seq = self.shared.next_seq();
        let path = self.shared.snap_dir.join(format!("recv-{seq}.tmp"));
        let _ = remove_file(&path);
        SnapshotFile::create_new(&path)
            .map(Box::new)
            .map_err(|e| RaftStoreError::from(e).snapshot(ErrorVerb::Write))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<u64>> {
        let shared = Arc::clone(&self.shared);
        let meta = meta.clone();
        blocking(move || shared.install(&meta, &snapshot))
            .await
            .map_err(|e| e.snapshot(ErrorVerb::Write))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        self.shared
            .current()
            .map_err(|e| e.snapshot(ErrorVerb::Read))
    }
}

//! Opening a store from the command line: an index (its engine holds a
//! schema) or a plain key-value engine. Both are opened with the layers'
//! merge operator, which an index needs and a plain store never calls
//! unless it holds merge operands.

use std::path::Path;
use std::sync::Arc;

use silo_engine::{Engine, EngineError, EngineOptions, Index, LayerOperator, Schema};

use crate::fail::{Fail, Outcome};

/// An open store.
pub(crate) enum Store {
    /// An index: documents, bitmaps and sort layers.
    Index(Index),
    /// Keys and values (boxed: an engine is larger than an index handle).
    Plain(Box<Engine>),
}

/// The options every verb opens with.
pub(crate) fn options() -> EngineOptions {
    let mut o = EngineOptions::default();
    o.store.merge_operator = Some(Arc::new(LayerOperator));
    o
}

/// Opens the store in `dir`, which must exist.
pub(crate) fn open_existing(dir: &Path) -> Outcome<Store> {
    if !dir.exists() {
        return Err(Fail::store(format!("{} does not exist", dir.display())));
    }
    if !Engine::exists_in(dir) {
        return Err(Fail::store(format!(
            "{} holds no silo store (it has no ENGINE manifest)",
            dir.display()
        )));
    }
    open(dir)
}

/// Opens the store in `dir` read-only (it must exist): on failure, where
/// the damage is (if the failure is damage) and what to tell the user.
pub(crate) fn open_read_only(dir: &Path) -> Result<Store, (Option<String>, Fail)> {
    if !dir.exists() || !Engine::exists_in(dir) {
        return open_existing(dir).map_err(|f| (None, f));
    }
    let mut opts = options();
    opts.store.read_only = true;
    // Beside a writer in another process too: the open sees one consistent
    // state of the store, which the writer leaves as it is while it reads.
    let engine = Engine::open(dir, opts).map_err(|e| failed(dir, e))?;
    let schema = Index::stored_schema(&engine).map_err(|e| failed(dir, e))?;
    Ok(match schema {
        Some(schema) => Store::Index(Index::open_on(engine, schema).map_err(|e| failed(dir, e))?),
        None => Store::Plain(Box::new(engine)),
    })
}

fn failed(dir: &Path, e: EngineError) -> (Option<String>, Fail) {
    (crate::check::damage_of(&e), Fail::engine(dir, e))
}

/// Opens the store in `dir`, creating a plain one if there is none.
pub(crate) fn open(dir: &Path) -> Outcome<Store> {
    let engine = Engine::open(dir, options()).map_err(|e| Fail::engine(dir, e))?;
    match Index::stored_schema(&engine).map_err(|e| Fail::engine(dir, e))? {
        Some(schema) => Ok(Store::Index(
            Index::open_on(engine, schema).map_err(|e| Fail::engine(dir, e))?,
        )),
        None => Ok(Store::Plain(Box::new(engine))),
    }
}

/// Opens (or creates) the index in `dir` with `schema`.
pub(crate) fn open_index(dir: &Path, schema: Schema) -> Outcome<Index> {
    open_index_with(dir, schema, EngineOptions::default())
}

/// [`open_index`] with `opts` (which must not set a merge operator: the
/// index installs its own).
pub(crate) fn open_index_with(dir: &Path, schema: Schema, opts: EngineOptions) -> Outcome<Index> {
    Index::open(dir, schema, opts).map_err(|e| Fail::engine(dir, e))
}

impl Store {
    /// The engine underneath.
    pub(crate) fn engine(&self) -> &Engine {
        match self {
            Store::Index(i) => i.engine(),
            Store::Plain(e) => e,
        }
    }

    /// Flushes and closes it.
    pub(crate) fn close(self, dir: &Path) -> Outcome {
        match self {
            Store::Index(i) => i.close(),
            Store::Plain(e) => e.close(),
        }
        .map_err(|e| Fail::engine(dir, e))
    }
}

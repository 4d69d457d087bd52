//! What the bitmap and document layers share: one engine with the layers'
//! merge operator, and the field registry kept in it. [`crate::BitmapStore`]
//! and [`crate::DocStore`] are handles on one of these; opened on their own
//! each has its own, and the index layer gives both the same one, so that a
//! document and its bitmaps change in one batch.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use roaring::RoaringBitmap;
use silo_format::deserialize_bitmap;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::operator::LayerOperator;
use crate::options::EngineOptions;
use crate::registry::{FieldId, FieldKind, Registry};
use crate::snapshot::EngineSnapshot;

/// An engine holding the layers' keys, and its field registry.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) registry: RwLock<Registry>,
}

impl Shared {
    /// Opens (or creates) the engine in `dir` with the layers' merge
    /// operator; `opts` must not set one of its own.
    pub(crate) fn open(dir: &Path, mut opts: EngineOptions, what: &str) -> Result<Arc<Shared>> {
        if opts.store.merge_operator.is_some() {
            return Err(EngineError::InvalidOptions {
                name: "store.merge_operator",
                reason: format!("the {what} installs its own"),
            });
        }
        opts.store.merge_operator = Some(Arc::new(LayerOperator));
        Shared::on_engine(Engine::open(dir, opts)?)
    }

    /// Takes `engine`, opened with the layers' merge operator (see
    /// [`crate::LayerOperator`]), and loads its registry.
    pub(crate) fn on_engine(engine: Engine) -> Result<Arc<Shared>> {
        let registry = Registry::load(&engine)?;
        Ok(Arc::new(Shared {
            engine,
            registry: RwLock::new(registry),
        }))
    }

    /// The id of `name` as a field of `kind`, registering it (durably) if new.
    pub(crate) fn field(&self, name: &str, kind: FieldKind) -> Result<FieldId> {
        if let Some(id) = self.field_id(name, kind) {
            return Ok(id);
        }
        self.registry.write().register(&self.engine, name, kind)
    }

    /// The id of `name` as a field of `kind`, if registered.
    pub(crate) fn field_id(&self, name: &str, kind: FieldKind) -> Option<FieldId> {
        self.registry.read().id(name, kind)
    }

    /// The registered fields of `kind`, in id order.
    pub(crate) fn fields(&self, kind: FieldKind) -> Vec<(FieldId, String)> {
        self.registry
            .read()
            .fields()
            .filter(|(_, _, k)| *k == kind)
            .map(|(id, n, _)| (id, n.to_owned()))
            .collect()
    }

    /// `id` if it was given out for a field of `kind`.
    pub(crate) fn check(&self, id: FieldId, kind: FieldKind) -> Result<FieldId> {
        self.registry.read().check(id, kind)
    }

    /// Closes the engine if no other handle shares it; otherwise flushes
    /// it (the last handle closes it when dropped).
    pub(crate) fn close(shared: Arc<Shared>) -> Result<()> {
        match Arc::try_unwrap(shared) {
            Ok(shared) => shared.engine.close(),
            Err(shared) => shared.engine.flush(),
        }
    }
}

/// Point reads, from the engine as it is or from a snapshot.
pub(crate) trait Reader {
    /// Calls `f` with the value of `key`.
    fn read_with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R>;
}

impl Reader for Engine {
    fn read_with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        self.get_with(key, f)
    }
}

impl Reader for EngineSnapshot<'_> {
    fn read_with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        self.get_with(key, f)
    }
}

/// The bitmap stored under `key` (its pending operations applied): empty
/// if none, [`EngineError::Value`] if the bytes do not decode.
pub(crate) fn read_bitmap(reader: &impl Reader, key: u64) -> Result<RoaringBitmap> {
    reader.read_with(key, |bytes| match bytes {
        None => Ok(RoaringBitmap::new()),
        Some(bytes) => deserialize_bitmap(bytes).map_err(|e| EngineError::Value {
            what: "bitmap",
            key,
            reason: e.to_string(),
        }),
    })?
}

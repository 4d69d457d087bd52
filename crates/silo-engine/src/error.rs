//! The one error type of silo-engine.

use std::path::PathBuf;

use silo_format::error::FormatError;
use silo_io::error::IoError;

/// What went wrong in an engine operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A shard's store failed; the source names its file where it has one.
    #[error("shard {shard}: {source}")]
    Shard {
        /// The shard's number.
        shard: usize,
        /// What the store reported.
        source: silo_core::Error,
    },
    /// A request the stores refuse before any shard is touched (a value over
    /// the limit, a merge without an operator).
    #[error(transparent)]
    Store(silo_core::Error),
    /// A file operation on the engine's own files failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Bytes of an engine file did not decode.
    #[error("{file}: {source}")]
    Format {
        /// The file whose bytes did not decode.
        file: PathBuf,
        /// What the decoder found.
        source: FormatError,
    },
    /// An engine file is damaged.
    #[error("{file}: corrupt at byte {offset}: {reason}; restore from a checkpoint")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The engine was created with another shard count than the one asked for.
    #[error(
        "{dir}: the engine has {found} shards, opened asking for {requested}; the shard count is fixed at creation"
    )]
    ShardCount {
        /// The engine's directory.
        dir: PathBuf,
        /// The count in its manifest.
        found: usize,
        /// The count asked for.
        requested: usize,
    },
    /// An option is out of range.
    #[error("invalid option {name}: {reason}")]
    InvalidOptions {
        /// The option.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// `WriteBatch::set_tag` was used on a batch given to the engine, which
    /// tags its own cross-shard batches.
    #[error("write batch tags are reserved by the engine; clear the tag (set_tag(0))")]
    TaggedBatch,
    /// An earlier cross-shard write failed after its batch was logged; the
    /// engine refuses writes until it is reopened (which completes the batch).
    #[error(
        "the engine refuses writes after a failure ({cause}); reopen it to complete logged batches"
    )]
    Poisoned {
        /// The first failure.
        cause: String,
    },
    /// A cross-shard batch failed after some of its shards took their
    /// parts: reads would see part of it, so they are refused until the
    /// engine is reopened, which completes the batch from the batch log.
    #[error(
        "a cross-shard batch reached only some of its shards ({cause}); reads are refused until the engine is reopened, which completes it"
    )]
    PartialBatch {
        /// The failure of the part that did not go in.
        cause: String,
    },
    /// An argument is out of range (a bitmap value of 2^48 or more, an
    /// empty field name); nothing was written.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A field name that is not registered (as the kind asked for).
    #[error("unknown field `{name}` ({kind})")]
    UnknownField {
        /// The name.
        name: String,
        /// The kind of field looked for.
        kind: &'static str,
    },
    /// A field id that this store did not give out, or gave out for
    /// another kind of field.
    #[error("field id {id} is not a registered {kind} field of this store")]
    InvalidField {
        /// The id.
        id: u16,
        /// The kind of field expected.
        kind: &'static str,
    },
    /// A field's value is not of the type the schema gives it.
    #[error("field `{field}` takes {expected} values, got {found}")]
    FieldType {
        /// The field.
        field: String,
        /// The schema's type.
        expected: &'static str,
        /// The value's type.
        found: &'static str,
    },
    /// An index was opened with another schema than the one it was
    /// created with.
    #[error("the index was created with schema\n{stored}but opened with\n{given}")]
    SchemaMismatch {
        /// The schema the index keeps, as text.
        stored: String,
        /// The schema given, as text.
        given: String,
    },
    /// A line of an import is not a document of the schema (or the input
    /// cannot be read); nothing of the import was written.
    #[error("import, line {line}: {reason}")]
    Import {
        /// The line (from 1; 0: the input as a whole).
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A filter written as text does not parse (see `Filter::parse`).
    #[error("query, column {column}: {reason}")]
    QuerySyntax {
        /// Where the problem was found (characters from 1).
        column: usize,
        /// What is wrong there.
        reason: String,
    },
    /// Every user field id is taken.
    #[error("the field registry is full ({max} fields)")]
    TooManyFields {
        /// How many fields a store can have.
        max: usize,
    },
    /// A stored value (a bitmap, a document, a registry entry) did not
    /// decode: damage the stores' checksums did not see, or bytes written
    /// by something other than this layer.
    #[error("the value of key {key:#018x} ({what}) does not decode: {reason}")]
    Value {
        /// What the key should hold.
        what: &'static str,
        /// The key.
        key: u64,
        /// What the decoder found.
        reason: String,
    },
    /// A checkpoint destination exists and is not empty.
    #[error("{0} exists and is not empty; checkpoints are written to a new directory")]
    DestinationExists(PathBuf),
}

/// Result of an engine operation.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// The operating system's error number of a failed file operation, in
    /// a shard or in the engine's own files (for example 28, `ENOSPC`, for
    /// a full disk), if this is one.
    ///
    /// ```
    /// let io = std::io::Error::from_raw_os_error(28);
    /// let e = silo_engine::EngineError::Io(silo_io::IoError::io("write", "/x".as_ref(), io));
    /// assert_eq!(e.raw_os_error(), Some(28));
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            EngineError::Io(e) => e.raw_os_error(),
            EngineError::Shard { source, .. } | EngineError::Store(source) => source.raw_os_error(),
            _ => None,
        }
    }

    /// Wraps a store error of shard `shard`.
    pub(crate) fn shard(shard: usize) -> impl FnOnce(silo_core::Error) -> EngineError {
        move |source| EngineError::Shard { shard, source }
    }

    /// A decoding error in `file`.
    pub(crate) fn format(file: impl Into<PathBuf>, source: FormatError) -> EngineError {
        EngineError::Format {
            file: file.into(),
            source,
        }
    }
}

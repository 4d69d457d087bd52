//! The one error type of silo-core.

use std::path::PathBuf;

use silo_format::error::FormatError;
use silo_io::error::IoError;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed (from `silo-io`); the message names the file and the call.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Bytes on disk did not decode (from `silo-format`).
    #[error("{file}: {source}")]
    Format {
        /// The file whose bytes did not decode.
        file: PathBuf,
        /// What the decoder found.
        source: FormatError,
    },
    /// The store's files disagree with each other or with their own structure.
    #[error(
        "{file}: corrupt at byte {offset}: {reason}; restore from a checkpoint, or open with `recover_corrupt_log` if the damage is in a log"
    )]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// `merge` was called but `Options::merge_operator` is not set.
    #[error(
        "merge called on key {key} but the store has no merge operator; set Options::merge_operator"
    )]
    NoMergeOperator {
        /// The key the operand was for.
        key: u64,
    },
    /// The merge operator failed; the operands are kept and nothing was replaced.
    #[error(
        "merge operator failed on key {key}: {message}; the operands are kept, a put or delete of the key supersedes them"
    )]
    Merge {
        /// The key whose operands did not fold.
        key: u64,
        /// The operator's own explanation.
        message: String,
    },
    /// A value or operand is longer than `Options::max_value_len`.
    #[error("value of {len} bytes is over the limit of {max} bytes (Options::max_value_len)")]
    ValueTooLarge {
        /// The length given.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// An option is out of range.
    #[error("invalid option {name}: {reason}")]
    InvalidOptions {
        /// The option's name.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// An earlier write or sync failed, so the store refuses further writes
    /// rather than guess what reached the disk. Reopen the store to recover.
    #[error(
        "the store stopped accepting writes after an earlier I/O failure ({cause}); reopen it to recover"
    )]
    Poisoned {
        /// The first failure.
        cause: String,
    },
    /// A bulk writer was asked for on a store that already has data.
    #[error(
        "BulkWriter needs an empty store, but this one holds {keys} keys or pending operations"
    )]
    NotEmpty {
        /// Keys or pending operations found.
        keys: u64,
    },
    /// The checkpoint destination exists and is not an empty directory.
    #[error("checkpoint destination {0} exists and is not empty")]
    DestinationExists(PathBuf),
    /// A call that waits for compaction or takes the compaction gate was
    /// made from inside a `get_with` or `MergeWriter::update` callback, or
    /// while the thread holds an iterator of the same store: it would wait
    /// for its own thread forever.
    #[error(
        "{call} was called from inside a get_with or MergeWriter::update callback, or while this thread holds an iterator of the same store, and would wait for itself; call it after the callback returns or the iterator is dropped"
    )]
    WouldDeadlock {
        /// The call that was refused.
        call: &'static str,
    },
    /// The store was opened read-only (`Options::read_only`).
    #[error("{call} changes the store, which is open read-only; open it read-write to do that")]
    ReadOnly {
        /// The call that was refused.
        call: &'static str,
    },
    /// A read-only open found work that only a read-write open may do.
    #[error("{}: {reason}; open it read-write once (that finishes the work), then read-only", dir.display())]
    NeedsRecovery {
        /// The store's directory.
        dir: PathBuf,
        /// What is left to do.
        reason: String,
    },
}

/// The result type of silo-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a format error with the file it came from.
    pub(crate) fn format(file: impl Into<PathBuf>, source: FormatError) -> Self {
        Error::Format {
            file: file.into(),
            source,
        }
    }

    /// Whether this is a merge operand that could not be folded (the
    /// operator refused it, there is no operator, or the result is too
    /// long): the operands are kept and the store stays usable.
    pub(crate) fn is_operand_error(&self) -> bool {
        matches!(
            self,
            Error::Merge { .. } | Error::NoMergeOperator { .. } | Error::ValueTooLarge { .. }
        )
    }

    /// The operating system's error number of a failed file operation
    /// (for example 28, `ENOSPC`, for a full disk), if this is one.
    ///
    /// ```
    /// let io = std::io::Error::from_raw_os_error(28);
    /// let e = silo_core::Error::Io(silo_io::IoError::io("write", "/x".as_ref(), io));
    /// assert_eq!(e.raw_os_error(), Some(28));
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// A corruption error at `offset` of `file`.
    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}

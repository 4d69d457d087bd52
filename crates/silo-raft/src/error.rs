//! `RaftStoreError`, the crate's one error enum, and its conversion into
//! openraft's `StorageError`.

use std::path::PathBuf;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

/// What went wrong in silo-raft: opening a node directory, the log, the
/// state machine, a snapshot archive, or the node's network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftStoreError {
    /// A silo engine (the log's or the state machine's) failed.
    #[error(transparent)]
    Engine(#[from] silo_engine::EngineError),
    /// A file operation failed; the source names the file.
    #[error(transparent)]
    Io(#[from] silo_io::IoError),
    /// The node directory was created for another node id: start the node
    /// with its own directory (or the id the directory was made for).
    #[error("{dir}: this directory belongs to node {found}, not node {expected}")]
    NodeIdMismatch {
        /// The node directory.
        dir: PathBuf,
        /// The id the caller asked for.
        expected: u64,
        /// The id recorded in the directory.
        found: u64,
    },
    /// A file does not start with the magic of its kind: it is not a
    /// silo-raft file, or its first bytes are damaged.
    #[error("{path}: not a {what} (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The kind of file expected.
        what: &'static str,
    },
    /// A file or record carries a format version this build cannot read:
    /// open it with the release that wrote it.
    #[error(
        "{what} at {path}: format version {version} is not supported (this build reads {supported})"
    )]
    UnsupportedVersion {
        /// The file (or the store holding the record).
        path: PathBuf,
        /// The kind of file or record.
        what: &'static str,
        /// The version found.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Bytes do not match their checksum: the file is damaged and is not used.
    #[error("{path}: checksum mismatch in {what} (stored {expected:#010x}, computed {got:#010x})")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The part of the file (a header, or an archived file's path).
        what: String,
        /// The stored checksum.
        expected: u32,
        /// The checksum of the bytes found.
        got: u32,
    },
    /// A file ends before the structure it holds does.
    #[error("{path}: truncated {what} at offset {offset}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The structure cut short.
        what: &'static str,
        /// Where the missing bytes begin.
        offset: u64,
    },
    /// A length or tag read from a file is out of range.
    #[error("{path}: invalid {what} at offset {offset}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        what: &'static str,
        /// Where it lies.
        offset: u64,
        /// Why it is refused.
        reason: String,
    },
    /// A record stored in a silo engine does not decode (a damaged log entry
    /// or meta record): the node refuses to use it rather than guess.
    #[error("{what} at key {key:#x}: {reason}")]
    BadRecord {
        /// The record kind (`log entry`, `vote`, ...).
        what: &'static str,
        /// Its key in the engine.
        key: u64,
        /// Why it does not decode.
        reason: String,
    },
    /// A value could not be encoded as JSON.
    #[error("encoding {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// A log index falls in the keys reserved for meta records.
    #[error("log index {index} is in the reserved key range")]
    ReservedIndex {
        /// The index.
        index: u64,
    },
    /// An installed snapshot does not hold the state its meta describes.
    #[error("snapshot {snapshot_id}: {reason}")]
    SnapshotMismatch {
        /// The snapshot's id.
        snapshot_id: String,
        /// What differs.
        reason: String,
    },
    /// A committed entry holds a document command but this node has no
    /// index: start every node of the cluster with the same `--schema`.
    #[error(
        "log entry {index}: a document command, but this node has no index schema (start it with the cluster's --schema)"
    )]
    NoIndex {
        /// The entry's log index.
        index: u64,
    },
    /// A committed key-value command touches a key this node's index owns:
    /// a leader without an index logged it. The node stops rather than
    /// answer unlike the nodes without an index.
    #[error(
        "log entry {index}: key {key:#x} belongs to this node's index (start every node of the cluster with the same --schema)"
    )]
    KeyOfTheIndex {
        /// The entry's log index.
        index: u64,
        /// The key.
        key: u64,
    },
    /// A committed document command was written for another index schema
    /// than this node's: every node of a cluster needs the same
    /// `--schema`; the node stops rather than answer differently.
    #[error(
        "log entry {index}: a document command for index schema {command:#010x}, but this node's is {node:#010x} (start every node with the same --schema)"
    )]
    SchemaFingerprint {
        /// The entry's log index.
        index: u64,
        /// The fingerprint the command carries.
        command: u32,
        /// This node's.
        node: u32,
    },
    /// The index schema given cannot be used on this state machine.
    #[error("index schema: {reason}")]
    SchemaRefused {
        /// Why (and what to do).
        reason: String,
    },
    /// A network or protocol failure of the node (phase 2 server and client).
    #[error("{context}: {source}")]
    Net {
        /// What was being done (`connect 127.0.0.1:7001`, `read frame`, ...).
        context: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// A peer sent a frame this node cannot accept.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A frame longer than the protocol allows, sent or received.
    #[error("frame of {bytes} bytes (at most {max})")]
    FrameTooLarge {
        /// The frame's body length.
        bytes: u64,
        /// The longest allowed.
        max: u64,
    },
    /// A command-line argument is missing or malformed.
    #[error("bad argument: {0}")]
    Usage(String),
    /// openraft refused or failed a request.
    #[error("raft: {0}")]
    Raft(String),
}

/// The crate's result type.
pub type Result<T, E = RaftStoreError> = std::result::Result<T, E>;

impl RaftStoreError {
    /// This error as openraft's `StorageError`, naming what failed.
    pub(crate) fn storage(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> StorageError<u64> {
        StorageError::IO {
            source: StorageIOError::new(subject, verb, AnyError::new(&self)),
        }
    }

    /// As `storage`, for a log read.
    pub(crate) fn read_logs(self) -> StorageError<u64> {
        self.storage(ErrorSubject::Logs, ErrorVerb::Read)
    }

    /// As `storage`, for a log write.
    pub(crate) fn write_logs(self) -> StorageError<u64> {
        self.storage(ErrorSubject::Logs, ErrorVerb::Write)
    }

    /// As `storage`, for a state machine read.
    pub(crate) fn read_sm(self) -> StorageError<u64> {
        self.storage(ErrorSubject::StateMachine, ErrorVerb::Read)
    }

    /// As `storage`, for a state machine write.
    pub(crate) fn write_sm(self) -> StorageError<u64> {
        self.storage(ErrorSubject::StateMachine, ErrorVerb::Write)
    }

    /// As `storage`, for a snapshot read or write.
    pub(crate) fn snapshot(self, verb: ErrorVerb) -> StorageError<u64> {
        self.storage(ErrorSubject::Snapshot(None), verb)
    }
}

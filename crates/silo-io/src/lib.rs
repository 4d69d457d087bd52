//! Silo's kernel layer: the one place that opens, writes, syncs and maps files.
//!
//! Every crate above `silo-io` reaches the file system through this crate, so
//! the fault-injection seam ([`fault`]) sees every write, sync and rename, and
//! all `unsafe` code of the workspace lives here, in small modules where each
//! block states the invariant it relies on.
//!
//! | module | holds |
//! |---|---|
//! | [`error`] | [`IoError`], the one error type |
//! | [`file`](mod@file) | [`SiloFile`]: positional reads and writes, `pwritev`, sync, preallocation, fadvise |
//! | [`durable`] | create-with-header, directory fsync, rename, atomic replace, copy |
//! | [`lock`] | [`DirLock`]: one open store per directory |
//! | [`map`] | [`ReadMap`], [`GrowableMap`], [`AtomicMap`]: memory maps |
//! | [`mlog`] | [`AppendMap`]: a preallocated read-write map for the ops log |
//! | [`coalesce`] | [`CoalescedWrites`]: sort, merge and `pwritev` buffered writes |
//! | [`direct`] | [`direct::DirectWriter`]: long sequential writes past the page cache (`O_DIRECT`) |
//! | [`advice`] | [`MapAdvice`], [`FileAdvice`]: madvise / fadvise hints |
//! | [`faults`] | page-fault counting and prefetch hit rates |
//! | [`hint`] | CPU cache prefetch hints, and spreading the allocator's merges of small frees |
//! | [`fault`] | the fault-injection seam (public API under the `fault-injection` feature) |
//!
//! ```
//! use silo_io::{CoalescedWrites, SiloFile};
//! # fn main() -> Result<(), silo_io::IoError> {
//! let dir = tempfile::tempdir().unwrap();
//! let file = SiloFile::create_new(&dir.path().join("data"))?;
//! let mut writes = CoalescedWrites::new();
//! writes.push(4, b"world");
//! writes.push(0, b"hey ");
//! let stats = writes.flush(&file)?;
//! assert_eq!(stats.syscalls, 1);
//! let mut buf = [0u8; 9];
//! file.read_exact_at(&mut buf, 0)?;
//! assert_eq!(&buf, b"hey world");
//! # Ok(()) }
//! ```

pub mod advice;
pub mod buffer;
pub mod coalesce;
pub mod direct;
pub mod durable;
pub mod error;
pub mod fault;
pub mod faults;
pub mod file;
pub mod hint;
pub mod lock;
pub mod map;
pub mod mlog;
#[cfg(feature = "fault-injection")]
mod powercut;
mod sys;

pub use advice::{FileAdvice, MapAdvice};
pub use coalesce::CoalescedWrites;
pub use error::IoError;
pub use faults::{FaultCounts, PrefetchCounter, PrefetchStats, process_faults, thread_faults};
pub use file::{SiloFile, WriteStats, iov_max};
pub use lock::DirLock;
pub use map::{AtomicMap, GrowableMap, ReadMap, page_align, page_size};
pub use mlog::AppendMap;

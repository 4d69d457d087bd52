//! The fault-injection seam: every mutating file operation of silo asks it first.
//!
//! Every [`SiloFile`](crate::SiloFile) write, sync, preallocation and
//! truncation, every durable operation of [`durable`](crate::durable) and
//! every `msync` of a mapping calls into this module before doing its work.
//! Without the `fault-injection` feature those calls are `#[inline(always)]`
//! functions that return "go ahead", so they cost nothing.
//!
//! With the feature, a test calls `install` with a `FaultPlan` for a
//! directory; the plan applies only to paths under that directory (so tests
//! running in parallel in other temporary directories are unaffected) and is
//! removed when the returned `FaultGuard` drops. Calls are counted per install and per
//! [`FaultOp`]; each positional write system call counts as one `Write`
//! (a retry after a short write or `EINTR` is another call).
//!
//! ```
//! # #[cfg(feature = "fault-injection")] {
//! use silo_io::fault::{self, FaultAction, FaultOp, FaultPlan};
//! use silo_io::SiloFile;
//! let dir = tempfile::tempdir().unwrap();
//! let file = SiloFile::create_new(&dir.path().join("f")).unwrap();
//! let guard = fault::install(dir.path(), FaultPlan::new().on(FaultOp::Sync, 1, FaultAction::Fail));
//! assert!(file.sync_all().unwrap_err().is_injected());
//! file.sync_all().unwrap(); // only the first sync fails
//! assert_eq!(guard.count(FaultOp::Sync), 2);
//! assert_eq!(guard.fired(), 1);
//! # }
//! ```

#[cfg(not(feature = "fault-injection"))]
use std::path::Path;

#[cfg(not(feature = "fault-injection"))]
use crate::error::IoError;

/// The kinds of operation the seam counts and can fail.
///
/// ```
/// use silo_io::fault::FaultOp;
/// assert_eq!(FaultOp::Sync.name(), "sync");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultOp {
    /// A positional write system call (`pwrite`, `pwritev`), one per call.
    Write,
    /// `fsync`, `fdatasync`, a directory fsync, or an `msync` of a mapping.
    Sync,
    /// A rename.
    Rename,
    /// Preallocation (`fallocate` or its fallback).
    Allocate,
    /// Changing a file's length.
    SetLen,
    /// Creating a file.
    Create,
    /// Removing a file.
    Remove,
    /// Creating a hard link.
    Link,
}

impl FaultOp {
    /// Every operation, in declaration order.
    ///
    /// ```
    /// assert_eq!(silo_io::fault::FaultOp::ALL.len(), 8);
    /// ```
    pub const ALL: [FaultOp; 8] = [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Rename,
        FaultOp::Allocate,
        FaultOp::SetLen,
        FaultOp::Create,
        FaultOp::Remove,
        FaultOp::Link,
    ];

    /// A short lowercase name, used in [`crate::IoError::InjectedFault`].
    ///
    /// ```
    /// assert_eq!(silo_io::fault::FaultOp::Rename.name(), "rename");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            FaultOp::Write => "write",
            FaultOp::Sync => "sync",
            FaultOp::Rename => "rename",
            FaultOp::Allocate => "allocate",
            FaultOp::SetLen => "set_len",
            FaultOp::Create => "create",
            FaultOp::Remove => "remove",
            FaultOp::Link => "link",
        }
    }

    #[cfg_attr(
        not(feature = "fault-injection"),
        expect(dead_code, reason = "only the seam counts ops")
    )]
    const fn index(self) -> usize {
        match self {
            FaultOp::Write => 0,
            FaultOp::Sync => 1,
            FaultOp::Rename => 2,
            FaultOp::Allocate => 3,
            FaultOp::SetLen => 4,
            FaultOp::Create => 5,
            FaultOp::Remove => 6,
            FaultOp::Link => 7,
        }
    }
}

/// What a positional write system call may do, as decided by the seam.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    not(feature = "fault-injection"),
    expect(dead_code, reason = "only the seam decides anything but Full")
)]
pub(crate) enum WriteGate {
    /// Write normally.
    Full,
    /// Write at most this many bytes (at least 1) and report success.
    Short(usize),
    /// Write at most this many bytes, then fail with an injected fault.
    Torn(usize),
    /// Do nothing and fail with an injected fault.
    Fail,
    /// Do nothing and report `EINTR`: the caller retries.
    Interrupt,
}

/// The seam's decision for a non-write operation: `Ok` to go ahead.
///
/// `Interrupt` actions are handled here as the system call would be: the
/// interrupted call is retried (and counted again).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn check(_op: FaultOp, _path: &Path) -> Result<(), IoError> {
    Ok(())
}

/// The seam's decision for one positional write system call on `path`.
/// `retry` is true when the previous call of this write was interrupted by
/// the seam (an `every` Interrupt rule lets a retry through).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn write_limit(_path: &Path, _retry: bool) -> WriteGate {
    WriteGate::Full
}

/// A sync in flight, for the power-cut model (nothing without the feature).
#[cfg(not(feature = "fault-injection"))]
pub(crate) struct SyncToken;

/// Tells the power-cut model that a sync of `path` (the whole file, or
/// `(offset, len)` of it) starts: what it may make durable is what the
/// file holds now.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn sync_start(_path: &Path, _range: Option<(u64, u64)>) -> SyncToken {
    SyncToken
}

/// Tells the power-cut model that the sync `token` stands for succeeded.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn synced(_token: SyncToken) {}

/// Tells the power-cut model that an fsync of directory `dir` succeeded.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn dir_synced(_dir: &Path) {}

/// A named point in the code above silo-io (`name`, for the store or
/// engine at `dir`) where a test may hold the calling thread until it
/// releases it, to open a race window on purpose (see
/// `FaultPlan::hold` with the `fault-injection` feature). Without the
/// feature, nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn hold_point(_dir: &Path, _name: &'static str) {}

/// Whether the plan installed for `dir` pretends that read-only opens in
/// other processes have the store mapped (see
/// `FaultPlan::pretend_readers` with the `fault-injection` feature), so
/// that tests run a writer's reader-safe paths in one process. Without the
/// feature, never.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn readers_pretended(_dir: &Path) -> bool {
    false
}

#[cfg(feature = "fault-injection")]
pub use crate::powercut::Unsynced;
#[cfg(feature = "fault-injection")]
pub use enabled::*;

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
    use std::time::{Duration, Instant};

    use super::{FaultOp, WriteGate};
    use crate::error::IoError;
    use crate::powercut::{Model, PendingSync, Unsynced};

    /// How long [`FaultGuard::wait_held`] waits for threads to reach a
    /// hold point before it fails the test: far longer than any point a
    /// test's code does reach takes, on a loaded machine too.
    pub const HOLD_WAIT_LIMIT: Duration = Duration::from_secs(120);

    /// What happens to the call a rule fires on.
    ///
    /// ```
    /// use silo_io::fault::FaultAction;
    /// let a = FaultAction::Short { max: 7 };
    /// assert_ne!(a, FaultAction::Fail);
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum FaultAction {
        /// Fail with [`IoError::InjectedFault`]; nothing is done.
        Fail,
        /// For writes: write only the first `keep` bytes of this system call,
        /// then fail (a crash mid-write). For other operations: like `Fail`.
        Torn {
            /// Bytes of the call that reach the file.
            keep: usize,
        },
        /// For writes: the system call writes at most `max` bytes (at least
        /// one) and reports success, exercising retry loops. For other
        /// operations: no effect.
        Short {
            /// Most bytes one call writes.
            max: usize,
        },
        /// The call reports `EINTR` once and does nothing; the caller retries.
        /// An `every` rule with `Interrupt` lets each retry through, so it
        /// interrupts every call exactly once.
        Interrupt,
        /// The power fails just before this call (which then goes ahead, as
        /// do all later ones, but no later sync counts as durable): see
        /// [`FaultPlan::track_durability`] and [`FaultGuard::power_cut_image`].
        PowerCut,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum When {
        Nth(u64),
        Every,
    }

    /// A list of rules: which call of which operation does what.
    ///
    /// ```
    /// use silo_io::fault::{FaultAction, FaultOp, FaultPlan};
    /// let plan = FaultPlan::new()
    ///     .on(FaultOp::Sync, 3, FaultAction::Fail)
    ///     .every(FaultOp::Write, FaultAction::Short { max: 7 });
    /// assert_eq!(plan.len(), 2);
    /// ```
    #[derive(Clone, Debug, Default)]
    pub struct FaultPlan {
        rules: Vec<(FaultOp, When, FaultAction)>,
        track: bool,
        /// Hold points that hold their callers until released.
        holds: Vec<&'static str>,
        /// Writers under the directory act as if readers were there.
        readers: bool,
    }

    impl FaultPlan {
        /// An empty plan: it only counts calls.
        ///
        /// ```
        /// assert!(silo_io::fault::FaultPlan::new().is_empty());
        /// ```
        pub fn new() -> FaultPlan {
            FaultPlan::default()
        }

        /// Holds every thread that reaches hold point `name` (see
        /// [`hold_point`]) under the directory until
        /// [`FaultGuard::release`]; after that, the point lets threads
        /// through.
        ///
        /// ```
        /// use silo_io::fault::{self, FaultPlan};
        /// let dir = tempfile::tempdir().unwrap();
        /// let guard = fault::install(dir.path(), FaultPlan::new().hold("between"));
        /// std::thread::scope(|s| {
        ///     let t = s.spawn(|| fault::hold_point(dir.path(), "between"));
        ///     guard.wait_held("between", 1);
        ///     guard.release("between");
        ///     t.join().unwrap();
        /// });
        /// fault::hold_point(dir.path(), "between"); // released: passes
        /// ```
        pub fn hold(mut self, name: &'static str) -> FaultPlan {
            self.holds.push(name);
            self
        }

        /// Does `action` on the `nth` call (1-based) of `op` under the directory.
        ///
        /// ```
        /// use silo_io::fault::{FaultAction, FaultOp, FaultPlan};
        /// let plan = FaultPlan::new().on(FaultOp::Rename, 1, FaultAction::Fail);
        /// assert_eq!(plan.len(), 1);
        /// ```
        #[must_use]
        pub fn on(mut self, op: FaultOp, nth: u64, action: FaultAction) -> FaultPlan {
            self.rules.push((op, When::Nth(nth), action));
            self
        }

        /// Does `action` on every call of `op` under the directory. A
        /// rule added with [`on`](Self::on) that matches the same call wins.
        ///
        /// ```
        /// use silo_io::fault::{FaultAction, FaultOp, FaultPlan};
        /// let plan = FaultPlan::new().every(FaultOp::Write, FaultAction::Short { max: 3 });
        /// assert_eq!(plan.len(), 1);
        /// ```
        #[must_use]
        pub fn every(mut self, op: FaultOp, action: FaultAction) -> FaultPlan {
            self.rules.push((op, When::Every, action));
            self
        }

        /// Also tracks what each sync made durable, so that
        /// [`FaultGuard::power_cut_image`] can build the directory a power
        /// cut would leave. Everything under the directory at `install`
        /// counts as durable. Reads each synced file whole: for tests with
        /// small stores.
        ///
        /// ```
        /// use silo_io::fault::{self, FaultPlan, Unsynced};
        /// let dir = tempfile::tempdir().unwrap();
        /// let guard = fault::install(dir.path(), FaultPlan::new().track_durability());
        /// let f = silo_io::SiloFile::create_new(&dir.path().join("f")).unwrap();
        /// f.write_all_at(b"synced", 0).unwrap();
        /// f.sync_data().unwrap();
        /// silo_io::durable::sync_dir(dir.path()).unwrap();
        /// f.write_all_at(b"lost", 6).unwrap();
        /// let out = tempfile::tempdir().unwrap();
        /// guard.power_cut_image(&out.path().join("img"), Unsynced::Drop).unwrap();
        /// assert_eq!(std::fs::read(out.path().join("img/f")).unwrap(), b"synced");
        /// ```
        #[must_use]
        pub fn track_durability(mut self) -> FaultPlan {
            self.track = true;
            self
        }

        /// Makes every writer under the directory act as if read-only opens
        /// in other processes had its files mapped: `DirLock`'s
        /// `try_rewrite_in_place` finds the readers' byte taken, so that
        /// the work that would rewrite in place takes its reader-safe way.
        ///
        /// ```
        /// use silo_io::DirLock;
        /// use silo_io::fault::{self, FaultPlan};
        /// let dir = tempfile::tempdir().unwrap();
        /// let _guard = fault::install(dir.path(), FaultPlan::new().pretend_readers());
        /// let writer = DirLock::acquire(dir.path())?;
        /// assert!(writer.try_rewrite_in_place()?.is_none());
        /// # Ok::<(), silo_io::IoError>(())
        /// ```
        #[must_use]
        pub fn pretend_readers(mut self) -> FaultPlan {
            self.readers = true;
            self
        }

        /// Number of rules.
        ///
        /// ```
        /// assert_eq!(silo_io::fault::FaultPlan::new().len(), 0);
        /// ```
        pub fn len(&self) -> usize {
            self.rules.len() + self.holds.len()
        }

        /// True when the plan has no rules.
        ///
        /// ```
        /// assert!(silo_io::fault::FaultPlan::new().is_empty());
        /// ```
        pub fn is_empty(&self) -> bool {
            self.rules.is_empty() && self.holds.is_empty()
        }

        /// The action for call number `n` of `op`, `Nth` rules first.
        fn action(&self, op: FaultOp, n: u64, retry: bool) -> Option<FaultAction> {
            let nth = self
                .rules
                .iter()
                .find(|(o, w, _)| *o == op && *w == When::Nth(n))
                .map(|(_, _, a)| *a);
            nth.or_else(|| {
                self.rules
                    .iter()
                    .find(|(o, w, a)| {
                        *o == op && *w == When::Every && !(retry && *a == FaultAction::Interrupt)
                    })
                    .map(|(_, _, a)| *a)
            })
        }
    }

    #[derive(Debug)]
    struct State {
        plan: FaultPlan,
        counts: [u64; FaultOp::ALL.len()],
        fired: u64,
        model: Option<Model>,
        /// Threads that reached each hold point so far.
        held: Vec<(&'static str, u64)>,
    }

    #[derive(Debug)]
    struct Installed {
        dirs: Vec<PathBuf>,
        state: Arc<Mutex<State>>,
        /// Signalled when a thread reaches a hold point or one is released.
        changed: Arc<Condvar>,
    }

    /// Number of installed plans: lets calls skip the lock when there are none.
    static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    static INSTALLED: Mutex<Vec<Installed>> = Mutex::new(Vec::new());

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs `plan` for every path under `dir` until the guard drops.
    ///
    /// When plans for nested directories are installed, the most recently
    /// installed one that matches a path decides for it.
    ///
    /// # Panics
    ///
    /// With [`FaultPlan::track_durability`], if `dir` cannot be read.
    ///
    /// ```
    /// use silo_io::fault::{self, FaultOp, FaultPlan};
    /// let dir = tempfile::tempdir().unwrap();
    /// let guard = fault::install(dir.path(), FaultPlan::new());
    /// silo_io::SiloFile::create_new(&dir.path().join("f")).unwrap();
    /// assert_eq!(guard.count(FaultOp::Create), 1);
    /// ```
    pub fn install(dir: &Path, plan: FaultPlan) -> FaultGuard {
        let mut dirs = vec![dir.to_path_buf()];
        if let Ok(canonical) = dir.canonicalize()
            && canonical != dir
        {
            dirs.push(canonical);
        }
        let model = plan.track.then(|| match Model::new(dir) {
            Ok(model) => model,
            Err(e) => panic!("cannot track durability under {}: {e}", dir.display()),
        });
        let state = Arc::new(Mutex::new(State {
            plan,
            counts: [0; FaultOp::ALL.len()],
            fired: 0,
            model,
            held: Vec::new(),
        }));
        let changed = Arc::new(Condvar::new());
        lock(&INSTALLED).push(Installed {
            dirs,
            state: Arc::clone(&state),
            changed: Arc::clone(&changed),
        });
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        FaultGuard { state, changed }
    }

    /// See the no-feature version's documentation.
    pub(crate) fn readers_pretended(dir: &Path) -> bool {
        if ACTIVE.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let all = lock(&INSTALLED);
        all.iter()
            .rev()
            .find(|p| p.dirs.iter().any(|d| dir.starts_with(d)))
            .is_some_and(|p| lock(&p.state).plan.readers)
    }

    /// See the no-feature version's documentation: holds the calling thread
    /// while the plan installed for `dir` holds point `name`.
    pub fn hold_point(dir: &Path, name: &'static str) {
        if ACTIVE.load(Ordering::SeqCst) == 0 {
            return;
        }
        let found = {
            let all = lock(&INSTALLED);
            all.iter()
                .rev()
                .find(|p| p.dirs.iter().any(|d| dir.starts_with(d)))
                .map(|p| (Arc::clone(&p.state), Arc::clone(&p.changed)))
        };
        let Some((state, changed)) = found else {
            return;
        };
        let mut st = lock(&state);
        if !st.plan.holds.contains(&name) {
            return;
        }
        match st.held.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => st.held.push((name, 1)),
        }
        changed.notify_all();
        while st.plan.holds.contains(&name) {
            st = changed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Keeps a plan installed; dropping it removes the plan.
    ///
    /// ```
    /// use silo_io::fault::{self, FaultOp, FaultPlan};
    /// let dir = tempfile::tempdir().unwrap();
    /// let guard = fault::install(dir.path(), FaultPlan::new());
    /// assert_eq!(guard.count(FaultOp::Write), 0);
    /// drop(guard);
    /// ```
    #[derive(Debug)]
    #[must_use = "the plan is removed when the guard drops"]
    pub struct FaultGuard {
        state: Arc<Mutex<State>>,
        changed: Arc<Condvar>,
    }

    impl FaultGuard {
        /// Threads that reached hold point `name` so far (held or since
        /// released).
        pub fn held(&self, name: &str) -> u64 {
            lock(&self.state)
                .held
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, c)| *c)
        }

        /// Waits until `count` threads have reached hold point `name`.
        ///
        /// # Panics
        ///
        /// If they have not within [`HOLD_WAIT_LIMIT`]: a test whose code
        /// never reaches the point fails with the point's name instead of
        /// hanging.
        pub fn wait_held(&self, name: &str, count: u64) {
            assert!(
                self.wait_held_within(name, count, HOLD_WAIT_LIMIT),
                "hold point {name}: {} of {count} threads reached it within {HOLD_WAIT_LIMIT:?}",
                self.held(name)
            );
        }

        /// Waits until `count` threads have reached hold point `name`, for
        /// at most `limit`; whether they did.
        pub fn wait_held_within(&self, name: &str, count: u64, limit: Duration) -> bool {
            let deadline = Instant::now() + limit;
            let mut st = lock(&self.state);
            loop {
                let reached = st
                    .held
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, c)| *c);
                if reached >= count {
                    return true;
                }
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    return false;
                };
                st = self
                    .changed
                    .wait_timeout(st, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }

        /// Lets the threads held at point `name` go on, and every later one
        /// pass.
        pub fn release(&self, name: &str) {
            lock(&self.state).plan.holds.retain(|n| *n != name);
            self.changed.notify_all();
        }

        /// How many calls of `op` were made under the directory so far.
        ///
        /// ```
        /// use silo_io::fault::{self, FaultOp, FaultPlan};
        /// let dir = tempfile::tempdir().unwrap();
        /// let guard = fault::install(dir.path(), FaultPlan::new());
        /// let f = silo_io::SiloFile::create_new(&dir.path().join("f")).unwrap();
        /// f.write_all_at(b"abc", 0).unwrap();
        /// assert_eq!(guard.count(FaultOp::Write), 1);
        /// ```
        pub fn count(&self, op: FaultOp) -> u64 {
            lock(&self.state).counts[op.index()]
        }

        /// How many rules fired (a call that was failed, torn, shortened or
        /// interrupted) so far.
        ///
        /// ```
        /// use silo_io::fault::{self, FaultPlan};
        /// let dir = tempfile::tempdir().unwrap();
        /// assert_eq!(fault::install(dir.path(), FaultPlan::new()).fired(), 0);
        /// ```
        pub fn fired(&self) -> u64 {
            lock(&self.state).fired
        }

        /// Adds a rule while the plan is installed: `action` on the
        /// `from_now`-th call of `op` after this one (1: the next call).
        ///
        /// ```
        /// use silo_io::fault::{self, FaultAction, FaultOp, FaultPlan};
        /// let dir = tempfile::tempdir().unwrap();
        /// let guard = fault::install(dir.path(), FaultPlan::new());
        /// let f = silo_io::SiloFile::create_new(&dir.path().join("f")).unwrap();
        /// f.sync_data().unwrap();
        /// guard.schedule(FaultOp::Sync, 2, FaultAction::Fail);
        /// f.sync_data().unwrap();
        /// assert!(f.sync_data().is_err());
        /// ```
        pub fn schedule(&self, op: FaultOp, from_now: u64, action: FaultAction) {
            let mut state = lock(&self.state);
            let nth = state.counts[op.index()] + from_now.max(1);
            state.plan = std::mem::take(&mut state.plan).on(op, nth, action);
        }

        /// Cuts the power now (see [`FaultAction::PowerCut`]); a no-op
        /// without [`FaultPlan::track_durability`] or once cut.
        ///
        /// # Errors
        ///
        /// When the files under the directory cannot be read.
        pub fn power_cut(&self) -> Result<(), IoError> {
            match &mut lock(&self.state).model {
                Some(model) => model.cut(),
                None => Ok(()),
            }
        }

        /// Whether the power was cut (by a rule or [`Self::power_cut`]).
        pub fn is_cut(&self) -> bool {
            lock(&self.state).model.as_ref().is_some_and(Model::is_cut)
        }

        /// Writes into `dest` (which must not exist) the directory a reboot
        /// after the power cut would find, cutting the power now if no
        /// rule did: only what a sync made durable, with `unsynced` saying
        /// what becomes of the rest. Needs [`FaultPlan::track_durability`].
        ///
        /// # Errors
        ///
        /// When the plan does not track durability, or `dest` cannot be written.
        pub fn power_cut_image(&self, dest: &Path, unsynced: Unsynced) -> Result<(), IoError> {
            match &mut lock(&self.state).model {
                Some(model) => model.image(dest, unsynced),
                None => Err(IoError::io(
                    "power-cut image",
                    dest,
                    std::io::Error::other("the fault plan does not track durability"),
                )),
            }
        }
    }

    impl Drop for FaultGuard {
        fn drop(&mut self) {
            // Never leave a thread held behind a plan that is gone.
            lock(&self.state).plan.holds.clear();
            self.changed.notify_all();
            let mut all = lock(&INSTALLED);
            if let Some(i) = all.iter().position(|p| Arc::ptr_eq(&p.state, &self.state)) {
                all.remove(i);
                ACTIVE.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// The installed state whose directory holds `path`, if any.
    fn state_for(path: &Path) -> Option<Arc<Mutex<State>>> {
        if ACTIVE.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let all = lock(&INSTALLED);
        let found = all
            .iter()
            .rev()
            .find(|p| p.dirs.iter().any(|d| path.starts_with(d)))?;
        Some(Arc::clone(&found.state))
    }

    /// Counts one call of `op` on `path` and returns the action to take.
    fn decide(op: FaultOp, path: &Path, retry: bool) -> Option<FaultAction> {
        let state = state_for(path)?;
        let mut state = lock(&state);
        state.counts[op.index()] += 1;
        let n = state.counts[op.index()];
        let action = state.plan.action(op, n, retry);
        if action.is_some() {
            state.fired += 1;
        }
        if action == Some(FaultAction::PowerCut) {
            // The call itself goes ahead; nothing synced from now on counts.
            if let Some(model) = &mut state.model {
                let _ = model.cut();
            }
            return None;
        }
        action
    }

    /// A sync in flight: the installed state and what the sync may make durable.
    pub(crate) struct SyncToken(Option<(Arc<Mutex<State>>, PendingSync)>);

    /// Tells the power-cut model that a sync of `path` (the whole file, or
    /// `(offset, len)` of it) starts: what it may make durable is what the
    /// file holds now.
    pub(crate) fn sync_start(path: &Path, range: Option<(u64, u64)>) -> SyncToken {
        SyncToken(state_for(path).and_then(|state| {
            let pending = lock(&state).model.as_ref()?.sync_start(path, range)?;
            Some((state, pending))
        }))
    }

    /// Tells the power-cut model that the sync `token` stands for succeeded.
    pub(crate) fn synced(token: SyncToken) {
        if let Some((state, pending)) = token.0
            && let Some(model) = &mut lock(&state).model
        {
            model.sync_done(pending);
        }
    }

    /// Tells the power-cut model that an fsync of directory `dir` succeeded.
    pub(crate) fn dir_synced(dir: &Path) {
        if let Some(state) = state_for(dir)
            && let Some(model) = &mut lock(&state).model
        {
            model.dir_synced(dir);
        }
    }

    fn injected(op: FaultOp, path: &Path) -> IoError {
        IoError::InjectedFault {
            op: op.name(),
            path: path.to_path_buf(),
        }
    }

    /// The seam's decision for a non-write operation: `Ok` to go ahead.
    ///
    /// `Interrupt` actions are handled here as the system call would be: the
    /// interrupted call is retried (and counted again).
    pub(crate) fn check(op: FaultOp, path: &Path) -> Result<(), IoError> {
        let mut retry = false;
        loop {
            match decide(op, path, retry) {
                None | Some(FaultAction::Short { .. } | FaultAction::PowerCut) => return Ok(()),
                Some(FaultAction::Interrupt) => retry = true,
                Some(FaultAction::Fail | FaultAction::Torn { .. }) => {
                    return Err(injected(op, path));
                }
            }
        }
    }

    /// The seam's decision for one positional write system call on `path`.
    /// `retry` is true when the previous call of this write was interrupted by
    /// the seam (an `every` Interrupt rule lets a retry through).
    pub(crate) fn write_limit(path: &Path, retry: bool) -> WriteGate {
        match decide(FaultOp::Write, path, retry) {
            None => WriteGate::Full,
            Some(FaultAction::Fail) => WriteGate::Fail,
            Some(FaultAction::Torn { keep }) => WriteGate::Torn(keep),
            Some(FaultAction::Short { max }) => WriteGate::Short(max.max(1)),
            Some(FaultAction::Interrupt) => WriteGate::Interrupt,
            // `decide` handles it and lets the call through.
            Some(FaultAction::PowerCut) => WriteGate::Full,
        }
    }

    /// The error for a write failed by the seam.
    pub(crate) fn write_fault(path: &Path) -> IoError {
        injected(FaultOp::Write, path)
    }
}

/// The error for a write failed by the seam (never reached without the feature).
#[cfg(not(feature = "fault-injection"))]
pub(crate) fn write_fault(path: &Path) -> IoError {
    IoError::InjectedFault {
        op: FaultOp::Write.name(),
        path: path.to_path_buf(),
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn waiting_for_a_hold_point_no_thread_reaches_gives_up_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let guard = install(dir.path(), FaultPlan::new().hold("point"));
        let start = std::time::Instant::now();
        assert!(!guard.wait_held_within("point", 1, Duration::from_millis(30)));
        assert!(start.elapsed() >= Duration::from_millis(30));
        std::thread::scope(|s| {
            let t = s.spawn(|| hold_point(dir.path(), "point"));
            // Returns only once the thread is there.
            guard.wait_held("point", 1);
            assert_eq!(guard.held("point"), 1);
            // Reached: true at once, whatever the limit.
            assert!(guard.wait_held_within("point", 1, HOLD_WAIT_LIMIT));
            // A second thread never comes.
            assert!(!guard.wait_held_within("point", 2, Duration::from_millis(10)));
            guard.release("point");
            t.join().unwrap();
        });
        // No time at all: the count as it is.
        assert!(!guard.wait_held_within("other", 1, Duration::ZERO));
        assert!(guard.wait_held_within("point", 1, Duration::ZERO));
    }

    #[test]
    fn nth_rule_fires_once_and_counts_per_install() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let guard = install(
            dir.path(),
            FaultPlan::new().on(FaultOp::Rename, 2, FaultAction::Fail),
        );
        let p = dir.path().join("x");
        assert!(check(FaultOp::Rename, &p).is_ok());
        assert!(check(FaultOp::Rename, &p).unwrap_err().is_injected());
        assert!(check(FaultOp::Rename, &p).is_ok());
        assert!(check(FaultOp::Rename, &other.path().join("x")).is_ok());
        assert_eq!(guard.count(FaultOp::Rename), 3);
        assert_eq!(guard.fired(), 1);
    }

    #[test]
    fn every_interrupt_lets_the_retry_through() {
        let dir = tempfile::tempdir().unwrap();
        let guard = install(
            dir.path(),
            FaultPlan::new().every(FaultOp::Sync, FaultAction::Interrupt),
        );
        assert!(check(FaultOp::Sync, &dir.path().join("f")).is_ok());
        assert_eq!(guard.count(FaultOp::Sync), 2);
        assert_eq!(guard.fired(), 1);
    }

    #[test]
    fn dropping_the_guard_removes_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let guard = install(
            dir.path(),
            FaultPlan::new().every(FaultOp::Remove, FaultAction::Fail),
        );
        assert!(check(FaultOp::Remove, &dir.path().join("f")).is_err());
        drop(guard);
        assert!(check(FaultOp::Remove, &dir.path().join("f")).is_ok());
    }

    #[test]
    fn write_limit_maps_actions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let _g = install(
            dir.path(),
            FaultPlan::new()
                .on(FaultOp::Write, 1, FaultAction::Torn { keep: 3 })
                .on(FaultOp::Write, 2, FaultAction::Short { max: 0 })
                .on(FaultOp::Write, 3, FaultAction::Interrupt),
        );
        assert_eq!(write_limit(&p, false), WriteGate::Torn(3));
        assert_eq!(write_limit(&p, false), WriteGate::Short(1));
        assert_eq!(write_limit(&p, false), WriteGate::Interrupt);
        assert_eq!(write_limit(&p, true), WriteGate::Full);
    }
}

//! The background scheduler: one thread that compacts the shards that need
//! it, most urgent first, within an I/O budget.
//!
//! Every `interval` (or when kicked) it asks each shard's policy, orders
//! the shards that are due (emergencies first, then by dead bytes), and
//! compacts them one at a time. After each compaction it waits for as long
//! as the bytes it wrote take at the budget: `normal_budget_percent` of the
//! device bandwidth, `emergency_budget_percent` for an emergency. A shard in
//! an emergency (pending memory at its limit, or dead space past the
//! emergency ratio) also slows its writers (`emergency_write_delay` per
//! write) until a compaction of it succeeds, so neither grows without
//! bound. The thread runs at a lower CPU priority than its caller
//! (`nice`, default 5 levels), so that on busy cores the application's
//! threads come first and compaction takes what they leave. Errors and
//! panics of a compaction are counted and kept in [`SchedulerStats`]; the
//! scheduler goes on. Dropping the handle stops the thread (at once when
//! it is waiting; after the shard compaction it is running otherwise) and
//! joins it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use silo_core::CompactionKind;

use crate::engine::{Engine, Shard};
use crate::error::{EngineError, Result};

/// How the background scheduler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// How often the policy is asked without a kick. Default 100 ms.
    pub interval: Duration,
    /// The device's sequential write bandwidth, bytes per second, the
    /// budget is a share of. Default 400 MiB/s (this machine measures
    /// 380-460 MiB/s with fdatasync; see docs/BENCHMARKS.md).
    pub device_bytes_per_sec: u64,
    /// Share of the bandwidth compaction may use normally. Default 30.
    pub normal_budget_percent: u32,
    /// Share while a shard is in an emergency. Default 60.
    pub emergency_budget_percent: u32,
    /// What each write to a shard in an emergency waits first. Default 200 us.
    pub emergency_write_delay: Duration,
    /// How many nice levels below the thread that starts it the scheduler
    /// runs (to at most 19), and with it every thread its compactions
    /// start (the pool, the copies behind, the file frees). Where the
    /// application keeps every core busy, the kernel then gives
    /// compaction a smaller share than its threads (at 5, each compaction
    /// thread about a third of one of theirs) and the work waits for a
    /// quieter moment; where a core is idle it runs as fast as ever.
    /// Deferred work is bounded as all compaction is: a shard that reaches
    /// its emergency level slows its writers, which frees the cores. 0
    /// keeps the caller's priority. Default 5. Linux only (elsewhere a
    /// nice value may be the whole process's, and this is ignored).
    pub nice: u8,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            interval: Duration::from_millis(100),
            device_bytes_per_sec: 400 << 20,
            normal_budget_percent: 30,
            emergency_budget_percent: 60,
            emergency_write_delay: Duration::from_micros(200),
            nice: 5,
        }
    }
}

/// What the scheduler has done (see [`Background::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchedulerStats {
    /// Passes over the shards.
    pub passes: u64,
    /// Shard compactions that succeeded.
    pub compactions: u64,
    /// Bytes those compactions wrote to data files.
    pub bytes_written: u64,
    /// Bytes those compactions read (log slots, records).
    pub bytes_read: u64,
    /// Shards found in an emergency (counted once per pass).
    pub emergencies: u64,
    /// Time the budget asked the scheduler to wait after its compactions.
    pub budget_wait: Duration,
    /// Compactions that failed or panicked.
    pub errors: u64,
    /// The last of those failures.
    pub last_error: Option<String>,
    /// The shards the last pass chose, in the order it compacts them
    /// (emergencies first, then the most dead bytes).
    pub last_pass: Vec<usize>,
}

enum Control {
    Kick,
    /// Run a pass now and acknowledge when it is done.
    Pass(Sender<()>),
    Stop,
}

/// The running scheduler; dropping it stops and joins the thread.
pub struct Background<'a> {
    _engine: &'a Engine,
    control: Sender<Control>,
    stats: Arc<Mutex<SchedulerStats>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Background<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the background scheduler (see the module documentation).
    /// Shards opened with `Options::auto_compact` also compact on their own
    /// workers; turn it off to leave compaction to the scheduler alone.
    pub fn start_background(&self, opts: SchedulerOptions) -> Result<Background<'_>> {
        if self.options().store.read_only {
            return Err(EngineError::Store(silo_core::Error::ReadOnly {
                call: "start_background",
            }));
        }
        let budget_ok = |p: u32| (1..=100).contains(&p);
        if opts.device_bytes_per_sec == 0
            || opts.interval.is_zero()
            || !budget_ok(opts.normal_budget_percent)
            || !budget_ok(opts.emergency_budget_percent)
        {
            return Err(EngineError::InvalidOptions {
                name: "SchedulerOptions",
                reason: "the bandwidth and the interval must be positive and the budgets 1 to 100 percent"
                    .to_owned(),
            });
        }
        let (control, rx) = channel::unbounded();
        let stats = Arc::new(Mutex::new(SchedulerStats::default()));
        let shards = Arc::clone(self.shards());
        let shared = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("silo-scheduler".to_owned())
            .spawn(move || {
                // A hint: where it fails, compaction runs at the caller's
                // priority, as fast, only with a larger share of busy cores.
                let _ = silo_io::advice::lower_cpu_priority_of_this_thread(opts.nice);
                run(&shards, &rx, opts, &shared)
            })
            .map_err(|e| silo_io::error::IoError::io("spawn the scheduler", self.dir(), e))?;
        Ok(Background {
            _engine: self,
            control,
            stats,
            thread: Some(thread),
        })
    }
}

impl Background<'_> {
    /// Asks for a pass now (returns at once).
    pub fn kick(&self) {
        let _ = self.control.send(Control::Kick);
    }

    /// Runs a pass now and returns when it is done (including its budget
    /// waits).
    pub fn run_pass(&self) {
        let (ack, done) = channel::bounded(1);
        if self.control.send(Control::Pass(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// What the scheduler has done so far.
    pub fn stats(&self) -> SchedulerStats {
        lock(&self.stats).clone()
    }

    /// Stops the scheduler and waits for its thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let _ = self.control.send(Control::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Background<'_> {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn lock(stats: &Mutex<SchedulerStats>) -> std::sync::MutexGuard<'_, SchedulerStats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a wait on the control channel ended with.
enum Woken {
    Stop,
    Go(Option<Sender<()>>),
}

fn wait(rx: &Receiver<Control>, timeout: Duration) -> Woken {
    match rx.recv_timeout(timeout) {
        Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => Woken::Stop,
        Ok(Control::Pass(ack)) => Woken::Go(Some(ack)),
        Ok(Control::Kick) | Err(RecvTimeoutError::Timeout) => Woken::Go(None),
    }
}

fn run(
    shards: &[Shard],
    rx: &Receiver<Control>,
    opts: SchedulerOptions,
    stats: &Mutex<SchedulerStats>,
) {
    let delay_us = u32::try_from(opts.emergency_write_delay.as_micros()).unwrap_or(u32::MAX);
    // Requests for a pass that arrived while one ran: answered after the
    // next whole pass.
    let mut waiting: Vec<Sender<()>> = Vec::new();
    loop {
        if waiting.is_empty() {
            match wait(rx, opts.interval) {
                Woken::Stop => break,
                Woken::Go(ack) => waiting.extend(ack),
            }
        }
        let answered = std::mem::take(&mut waiting);
        let stopped = pass(shards, rx, opts, delay_us, stats, &mut waiting);
        for ack in answered {
            let _ = ack.send(());
        }
        if stopped {
            break;
        }
    }
    // No shard stays slowed once the scheduler is gone.
    for shard in shards {
        shard.throttle_us.store(0, Ordering::Relaxed);
    }
}

/// One pass over the shards; `true` if a stop arrived meanwhile.
fn pass(
    shards: &[Shard],
    rx: &Receiver<Control>,
    opts: SchedulerOptions,
    delay_us: u32,
    stats: &Mutex<SchedulerStats>,
    waiting: &mut Vec<Sender<()>>,
) -> bool {
    let mut due: Vec<(usize, CompactionKind, u64)> = shards
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let kind = s.store.needs_compaction()?;
            Some((i, kind, s.store.stats().dead_bytes))
        })
        .collect();
    due.sort_by_key(|&(i, kind, dead)| (kind != CompactionKind::Emergency, u64::MAX - dead, i));
    {
        let mut st = lock(stats);
        st.passes += 1;
        st.last_pass = due.iter().map(|&(i, _, _)| i).collect();
        for &(i, kind, _) in &due {
            if kind == CompactionKind::Emergency {
                st.emergencies += 1;
                shards[i].throttle_us.store(delay_us, Ordering::Relaxed);
            }
        }
    }
    for (i, kind, _) in due {
        // A stop is taken between compactions; kicks are already answered.
        match rx.try_recv() {
            Ok(Control::Stop) | Err(channel::TryRecvError::Disconnected) => return true,
            Ok(Control::Pass(ack)) => waiting.push(ack),
            _ => {}
        }
        let store = &shards[i].store;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.compact()));
        let written = {
            let mut st = lock(stats);
            match outcome {
                Ok(Ok(report)) => {
                    st.compactions += 1;
                    st.bytes_written += report.bytes_written;
                    st.bytes_read += report.bytes_read;
                    // Its emergency is over; one that failed keeps slowing
                    // its writers until a later pass succeeds.
                    shards[i].throttle_us.store(0, Ordering::Relaxed);
                    report.bytes_written
                }
                Ok(Err(e)) => {
                    st.errors += 1;
                    st.last_error = Some(format!("shard {i}: {e}"));
                    0
                }
                Err(_) => {
                    st.errors += 1;
                    st.last_error = Some(format!("shard {i}: the compaction panicked"));
                    0
                }
            }
        };
        let percent = if kind == CompactionKind::Emergency {
            opts.emergency_budget_percent
        } else {
            opts.normal_budget_percent
        };
        let budget = (opts.device_bytes_per_sec / 100).max(1) * u64::from(percent);
        let pause = Duration::from_secs_f64(written as f64 / budget as f64);
        if !pause.is_zero() {
            lock(stats).budget_wait += pause;
            match wait(rx, pause) {
                Woken::Stop => return true,
                Woken::Go(ack) => waiting.extend(ack),
            }
        }
    }
    false
}

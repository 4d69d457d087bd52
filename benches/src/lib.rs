//! Workspace benchmarks: `benches/compare.rs` measures silo against redb,
//! fjall, sled and heed; `benches/core.rs` is silo-core's criterion bench;
//! `benches/compaction.rs` and `benches/engine.rs` measure compaction and
//! the sharded engine against the machine. What they share lives here.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Instant;

/// A seeded xorshift generator: the benches' keys, the same every run.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next_u64() % n).unwrap_or(0)
    }
}

/// Puts `items` in a uniformly random order (Fisher-Yates), `below(n)`
/// giving a random index below `n` (each bench's own generator).
pub fn shuffle<T>(items: &mut [T], mut below: impl FnMut(usize) -> usize) {
    for i in (1..items.len()).rev() {
        items.swap(i, below(i + 1));
    }
}

/// The median of `items`: the middle one, or the upper of the middle two
/// when their count is even; `None` when there are none. Items that do not
/// compare (NaN) count as equal.
pub fn median<T: Copy + PartialOrd>(mut items: Vec<T>) -> Option<T> {
    items.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    items.get(items.len() / 2).copied()
}

/// The machine's sequential write + fdatasync bandwidth, bytes per second,
/// both ways a file can be written.
#[derive(Clone, Copy, Debug)]
pub struct SequentialWrite {
    /// 8 MiB `pwrite`s through the page cache, then `fdatasync`.
    pub buffered: f64,
    /// The same past the page cache (`O_DIRECT`); `None` where the file
    /// system refuses it.
    pub direct: Option<f64>,
}

impl SequentialWrite {
    /// The faster of the two: the reference a compaction's output is
    /// measured against.
    pub fn best(&self) -> f64 {
        self.direct.map_or(self.buffered, |d| d.max(self.buffered))
    }
}

impl std::fmt::Display for SequentialWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "buffered {:.0} MiB/s", self.buffered / 1048576.0)?;
        match self.direct {
            Some(d) => write!(f, ", direct {:.0} MiB/s", d / 1048576.0),
            None => write!(f, ", direct refused"),
        }
    }
}

/// Writes `bytes` bytes to a new file in `dir` in 8 MiB writes, then
/// fdatasyncs, once through the page cache and once past it; the
/// reference compaction is measured against in the same run.
pub fn sequential_write(
    dir: &Path,
    bytes: usize,
) -> Result<SequentialWrite, Box<dyn std::error::Error>> {
    let path = dir.join("sequential");
    let file = silo_io::SiloFile::create_new(&path)?;
    let chunk = vec![0x5Au8; 8 << 20];
    let t = Instant::now();
    let mut at = 0;
    while at < bytes {
        let n = chunk.len().min(bytes - at);
        file.write_all_at(&chunk[..n], at as u64)?;
        at += n;
    }
    file.sync_data()?;
    let buffered = bytes as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    let file = silo_io::SiloFile::create_new(&path)?;
    let t = Instant::now();
    let direct = match silo_io::direct::DirectWriter::open(&path, 0, chunk.len())? {
        Some(mut w) => {
            let mut at = 0;
            while at < bytes {
                let n = chunk.len().min(bytes - at);
                w.push(&chunk[..n])?;
                at += n;
            }
            w.finish()?;
            file.sync_data()?;
            Some(bytes as f64 / t.elapsed().as_secs_f64())
        }
        None => None,
    };
    std::fs::remove_file(&path)?;
    Ok(SequentialWrite { buffered, direct })
}

/// Writes the results page's rows to `target/bench/<name>.tsv`, which
/// `cargo xtask bench` turns into the page: per scenario, the best peer and
/// silo's advantage over it (above 1: silo is better by that factor,
/// whether the figure is a rate or a time; best peer's figure over silo's
/// for times and sizes, silo's over the best peer's for rates).
pub fn write_advantages<S: AsRef<str>, P: AsRef<str>>(
    name: &str,
    rows: &[(S, P, f64)],
) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut text = String::new();
    for (scenario, peer, factor) in rows {
        text.push_str(&format!(
            "{}\t{}\t{factor:.4}\n",
            scenario.as_ref().replace(['\t', '\n'], " "),
            peer.as_ref()
        ));
    }
    let file = silo_io::SiloFile::create(&dir.join(format!("{name}.tsv")))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    file.as_std().write_all(text.as_bytes())
}

/// The parts of a bench to run, named in an environment variable
/// (`SILO_BENCH_ONLY=load,overwrite`); all of them when it is unset.
pub struct Selection(Option<Vec<String>>);

impl Selection {
    /// The comma-separated names in the environment variable `var`; every
    /// name when it is unset.
    pub fn from_env(var: &str) -> Selection {
        Selection(std::env::var(var).ok().map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        }))
    }

    /// Whether the part `name` runs.
    pub fn wants(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|v| v.iter().any(|s| s == name))
    }
}

/// CPU time this process has used, every thread's user and system time
/// (`/proc/self/stat`, in the kernel's 10 ms ticks); `None` where it
/// cannot be read. Over a timed span, against its wall time, it says how
/// many cores the span kept busy.
pub fn process_cpu() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which may hold spaces, and ends
    // at the last ')'): state is the first, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // USER_HZ: 100 on every Linux target (`sysconf(_SC_CLK_TCK)`).
    Some(std::time::Duration::from_millis((user + system) * 10))
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_cpu_grows_with_work() {
        let before = super::process_cpu().expect("readable on Linux");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = super::process_cpu().expect("readable on Linux");
        assert!(
            after >= before + std::time::Duration::from_millis(20),
            "{before:?} -> {after:?}"
        );
    }
}

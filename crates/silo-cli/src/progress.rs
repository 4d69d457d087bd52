//! Progress for steps longer than a second: a bar (or a spinner, when the
//! total is unknown) on a terminal, and a plain line when each step ends,
//! whatever the output is.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One step of a longer job.
pub(crate) struct Step {
    bar: ProgressBar,
    name: &'static str,
    start: Instant,
}

impl Step {
    /// Starts step `name`, of `total` units if known.
    pub(crate) fn start(name: &'static str, total: Option<u64>) -> Step {
        let bar = if std::io::stderr().is_terminal() {
            let bar = match total {
                Some(n) => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{msg:>10} {spinner} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(name);
        Step {
            bar,
            name,
            start: Instant::now(),
        }
    }

    /// `n` more units done.
    pub(crate) fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Ends the step, printing `summary` on a line of its own; returns how
    /// long it took.
    pub(crate) fn finish(self, summary: &str) -> Duration {
        let took = self.start.elapsed();
        self.bar.finish_and_clear();
        println!("{:>10}: {summary} ({took:.2?})", self.name);
        took
    }
}

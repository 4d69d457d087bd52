//! The compaction policy: a pure function from store figures to
//! `None | Normal | Emergency`.

use std::time::Duration;

use crate::options::CompactionThresholds;

/// How urgent compaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionKind {
    /// Due: run when the I/O budget allows.
    Normal,
    /// Dead space or pending memory is past the emergency line: run now,
    /// whatever the minimum interval says.
    Emergency,
}

/// The figures the policy looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PolicyInput {
    /// Bytes of live records.
    pub live_bytes: u64,
    /// Bytes of dead records.
    pub dead_bytes: u64,
    /// Bytes in the active log slot.
    pub log_bytes: u64,
    /// Operations in the pending view.
    pub pending_ops: u64,
    /// Bytes held by the pending view.
    pub pending_bytes: u64,
    /// The pending view's memory limit.
    pub pending_limit: u64,
    /// Time since the last compaction, `None` if none ran since open.
    pub since_last: Option<Duration>,
}

impl PolicyInput {
    /// Dead bytes as a fraction of all record bytes.
    pub fn dead_ratio(&self) -> f64 {
        let total = self.live_bytes + self.dead_bytes;
        if total == 0 {
            0.0
        } else {
            self.dead_bytes as f64 / total as f64
        }
    }
}

/// Dead space below this many bytes never triggers compaction by itself.
pub const MIN_DEAD_BYTES: u64 = 1 << 20;

/// What the policy says for `input` under `t`.
pub fn decide(input: &PolicyInput, t: &CompactionThresholds) -> Option<CompactionKind> {
    let dead_ratio = input.dead_ratio();
    let enough_dead = input.dead_bytes >= MIN_DEAD_BYTES;
    if (enough_dead && dead_ratio > t.emergency_dead_ratio)
        || input.pending_bytes >= input.pending_limit
    {
        return Some(CompactionKind::Emergency);
    }
    // Half the pending limit is due at once, whenever the last compaction
    // ran, so that a compaction (off the writers' threads) usually ends
    // before writers reach the limit, where they slow down: waiting out the
    // interval there held writers at the limit for seconds.
    let pressed = input.pending_bytes >= input.pending_limit / 2;
    let due = (enough_dead && dead_ratio > t.dead_ratio)
        || input.log_bytes > t.log_bytes
        || input.pending_ops > t.pending_ops;
    let rested = input.since_last.is_none_or(|d| d >= t.min_interval);
    (pressed || (due && rested)).then_some(CompactionKind::Normal)
}

/// Whether the dead space alone calls for a cold compaction (a full rewrite).
pub fn wants_cold(input: &PolicyInput, t: &CompactionThresholds) -> bool {
    input.dead_bytes >= MIN_DEAD_BYTES && input.dead_ratio() > t.dead_ratio
}

/// In-place results below this many bytes always stay in place.
pub const MIN_IN_PLACE_FOR_REWRITE: u64 = 4 << 20;

/// Whether a fold that would write `in_place` record bytes in place, in a
/// data file of `live` live record bytes, goes into a cold rewrite with
/// its results folded in instead (see
/// [`CompactionThresholds::rewrite_share`]). Measured here (1M keys of 100
/// bytes; all, half, a quarter and a tenth of them overwritten, then
/// compacted): the rewrite took 0.55, 0.78, 1.22 and 1.72 times as long
/// as the fold in place.
pub fn rewrite_instead_of_in_place(in_place: u64, live: u64, t: &CompactionThresholds) -> bool {
    in_place >= MIN_IN_PLACE_FOR_REWRITE && in_place as f64 >= live as f64 * t.rewrite_share
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn table() {
        let t = CompactionThresholds::default();
        let base = PolicyInput {
            live_bytes: 100 * MIB,
            pending_limit: 256 * MIB,
            since_last: Some(Duration::from_secs(120)),
            ..PolicyInput::default()
        };
        let rows: Vec<(&str, PolicyInput, Option<CompactionKind>)> = vec![
            ("idle store", base, None),
            (
                "pending memory at 49% of its limit",
                PolicyInput {
                    pending_bytes: 125 * MIB,
                    ..base
                },
                None,
            ),
            (
                "pending memory at half its limit",
                PolicyInput {
                    pending_bytes: 128 * MIB,
                    ..base
                },
                Some(CompactionKind::Normal),
            ),
            (
                "pending memory at half its limit, ran 10 s ago: due anyway",
                PolicyInput {
                    pending_bytes: 128 * MIB,
                    since_last: Some(Duration::from_secs(10)),
                    ..base
                },
                Some(CompactionKind::Normal),
            ),
            (
                "pending memory at 49% of its limit, ran 10 s ago",
                PolicyInput {
                    pending_bytes: 125 * MIB,
                    since_last: Some(Duration::from_secs(10)),
                    ..base
                },
                None,
            ),
            (
                "log over limit, ran 10 s ago",
                PolicyInput {
                    log_bytes: 300 * MIB,
                    since_last: Some(Duration::from_secs(10)),
                    ..base
                },
                None,
            ),
            (
                "pending memory at its limit, ran 1 s ago",
                PolicyInput {
                    pending_bytes: 256 * MIB,
                    since_last: Some(Duration::from_secs(1)),
                    ..base
                },
                Some(CompactionKind::Emergency),
            ),
            (
                "33% dead (a third is not above a third)",
                PolicyInput {
                    dead_bytes: 50 * MIB,
                    ..base
                },
                None,
            ),
            (
                "34% dead",
                PolicyInput {
                    dead_bytes: 52 * MIB,
                    ..base
                },
                Some(CompactionKind::Normal),
            ),
            (
                "34% dead, ran 10 s ago",
                PolicyInput {
                    dead_bytes: 52 * MIB,
                    since_last: Some(Duration::from_secs(10)),
                    ..base
                },
                None,
            ),
            (
                "34% dead, never ran",
                PolicyInput {
                    dead_bytes: 52 * MIB,
                    since_last: None,
                    ..base
                },
                Some(CompactionKind::Normal),
            ),
            (
                "71% dead, ran 1 s ago",
                PolicyInput {
                    dead_bytes: 250 * MIB,
                    since_last: Some(Duration::from_secs(1)),
                    ..base
                },
                Some(CompactionKind::Emergency),
            ),
            (
                "tiny store, all dead",
                PolicyInput {
                    live_bytes: 0,
                    dead_bytes: 1000,
                    ..base
                },
                None,
            ),
            (
                "log over limit",
                PolicyInput {
                    log_bytes: 300 * MIB,
                    ..base
                },
                Some(CompactionKind::Normal),
            ),
            (
                "too many pending ops",
                PolicyInput {
                    pending_ops: 5_000_000,
                    ..base
                },
                Some(CompactionKind::Normal),
            ),
            (
                "pending memory full",
                PolicyInput {
                    pending_bytes: 256 * MIB,
                    since_last: Some(Duration::ZERO),
                    ..base
                },
                Some(CompactionKind::Emergency),
            ),
        ];
        for (name, input, want) in rows {
            assert_eq!(decide(&input, &t), want, "{name}");
        }
    }

    #[test]
    fn cold_compaction_follows_the_dead_ratio() {
        let t = CompactionThresholds::default();
        let input = PolicyInput {
            live_bytes: 60 * MIB,
            dead_bytes: 40 * MIB,
            ..PolicyInput::default()
        };
        assert!(wants_cold(&input, &t));
        // 30% dead: the default waits for more (a third).
        let less = PolicyInput {
            live_bytes: 70 * MIB,
            dead_bytes: 30 * MIB,
            ..input
        };
        assert!(!wants_cold(&less, &t));
        let strict = CompactionThresholds {
            dead_ratio: 0.2,
            ..t
        };
        assert!(wants_cold(&less, &strict));
    }

    #[test]
    fn a_fold_rewrites_instead_from_its_share_of_the_live_bytes() {
        let t = CompactionThresholds::default();
        // (in-place bytes, live bytes, share, rewrite?)
        let rows = [
            (50 * MIB, 100 * MIB, 0.5, true),
            (50 * MIB - 1, 100 * MIB, 0.5, false),
            (100 * MIB, 100 * MIB, 0.5, true),
            (20 * MIB, 100 * MIB, 0.2, true),
            (100 * MIB, 100 * MIB, f64::INFINITY, false),
            (100 * MIB, 100 * MIB, 1.5, false),
            // Below 4 MiB, in place whatever the share.
            (4 * MIB - 1, 4 * MIB, 0.5, false),
            (4 * MIB, 4 * MIB, 0.5, true),
            (0, 0, 0.5, false),
        ];
        for (in_place, live, share, want) in rows {
            let t = CompactionThresholds {
                rewrite_share: share,
                ..t.clone()
            };
            assert_eq!(
                rewrite_instead_of_in_place(in_place, live, &t),
                want,
                "{in_place} of {live}, share {share}"
            );
        }
    }
}

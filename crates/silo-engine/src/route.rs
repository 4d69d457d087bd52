//! Which shard holds a key: a stable, documented function of the key and
//! the shard count (docs/FORMAT.md, "Sharded engine"), never of the
//! process, the machine or the options.

/// The routing scheme this build uses, recorded in the engine manifest.
pub const ROUTING_SCHEME: u64 = 1;

/// The largest shard count an engine may have.
pub const MAX_SHARDS: usize = 1024;

/// The shard of `key` among `shards` (a power of two, at least 1): the top
/// `log2(shards)` bits of `key * 0x9E37_79B9_7F4A_7C15` (Fibonacci
/// hashing), so that neighbouring keys spread over every shard.
///
/// ```
/// assert_eq!(silo_engine::shard_of(7, 1), 0);
/// assert!(silo_engine::shard_of(u64::MAX, 8) < 8);
/// ```
pub fn shard_of(key: u64, shards: usize) -> usize {
    debug_assert!(shards.is_power_of_two());
    let bits = shards.trailing_zeros();
    if bits == 0 {
        return 0;
    }
    let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // At most `bits` <= 10 bits remain (MAX_SHARDS): it fits any usize.
    usize::try_from(mixed >> (64 - bits)).unwrap_or(0)
}

/// Checks a shard count: a power of two from 1 to [`MAX_SHARDS`].
pub(crate) fn valid_shard_count(shards: usize) -> bool {
    shards.is_power_of_two() && shards <= MAX_SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routing is part of the format: these keys must stay where they are.
    #[test]
    fn pinned_keys_stay_on_their_shards() {
        let pinned: [(u64, usize, usize); 8] = [
            (0, 8, 0),
            (1, 8, 4),
            (2, 8, 1),
            (3, 8, 6),
            (1000, 8, 0),
            (u64::MAX, 8, 3),
            (1, 2, 1),
            (12345, 1024, 644),
        ];
        for (key, shards, want) in pinned {
            assert_eq!(shard_of(key, shards), want, "key {key} of {shards}");
        }
    }

    #[test]
    fn sequential_keys_spread_evenly() {
        let mut counts = [0u32; 16];
        for key in 0..16_000u64 {
            counts[shard_of(key, 16)] += 1;
        }
        for c in counts {
            assert!((900..=1100).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn shard_counts() {
        assert!(valid_shard_count(1) && valid_shard_count(64) && valid_shard_count(1024));
        assert!(!valid_shard_count(0) && !valid_shard_count(3) && !valid_shard_count(2048));
    }
}

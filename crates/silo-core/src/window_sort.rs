//! A counting sort of items into windows: for walking a large file or
//! table forward instead of at random, where the order within a window
//! does not matter (it fits the CPU's cache), or is settled afterwards
//! window by window.

/// `items` reordered by `window_of` (each below `windows`), keeping their
/// order within a window: two passes and one copy, for any number of items.
pub(crate) fn by_window<T: Copy>(
    items: Vec<T>,
    windows: usize,
    window_of: impl Fn(&T) -> usize,
) -> Vec<T> {
    into_windows(items, windows, window_of).0
}

/// [`by_window`], with where each window starts: window `w` is
/// `ordered[starts[w]..starts[w + 1]]` (`starts` has `windows + 1`
/// entries, or 2 when there is one window or fewer than two items).
/// `window_of` is called once an item.
pub(crate) fn into_windows<T: Copy>(
    items: Vec<T>,
    windows: usize,
    window_of: impl Fn(&T) -> usize,
) -> (Vec<T>, Vec<usize>) {
    let Some(first) = items.first().copied() else {
        return (items, vec![0, 0]);
    };
    if items.len() < 2 || windows < 2 {
        let len = items.len();
        return (items, vec![0, len]);
    }
    let (of, starts) = counted(&items, windows, window_of);
    let mut next = starts.clone();
    let mut ordered = vec![first; items.len()];
    for (item, w) in items.into_iter().zip(of) {
        if let Some(at) = next.get_mut(w as usize)
            && let Some(place) = ordered.get_mut(*at)
        {
            *place = item;
            *at += 1;
        }
    }
    (ordered, starts)
}

/// `items` grouped by `window_of` in place, without a copy of them (an
/// American flag sort's distribution): window `w` is
/// `items[starts[w]..starts[w + 1]]` of the returned `starts` (`windows +
/// 1` entries, at least 2; a window past the last is counted in the
/// last). The order within a window is not kept. `window_of` is called
/// once an item.
///
/// Many windows over many items are grouped in two rounds: first into
/// at most [`COARSE_WINDOWS`] runs of consecutive windows, then each run
/// into its windows. One round into thousands of windows swapped each
/// item to a random place in the whole slice, and read the window of the
/// item it found there: one cache miss after another, each waiting for
/// the last (140 ms for 2M operations of 48 bytes). With a few hundred
/// windows each one's next place is a cache line already at hand, and a
/// run of the second round fits in the CPU's cache.
pub(crate) fn group_in_place<T>(
    items: &mut [T],
    windows: usize,
    window_of: impl Fn(&T) -> usize,
) -> Vec<usize> {
    let windows = windows.max(1);
    // Each item's window is swapped along with the item.
    let (mut of, starts) = counted(items, windows, window_of);
    if windows <= COARSE_WINDOWS || items.len() < TWO_ROUNDS_FROM {
        distribute(items, &mut of, &starts, |w| w as usize);
        return starts;
    }
    // Run r holds windows r * span .. (r + 1) * span.
    let span = windows.div_ceil(COARSE_WINDOWS);
    let runs = windows.div_ceil(span);
    let run_starts: Vec<usize> = (0..=runs)
        .map(|r| starts[(r * span).min(windows)])
        .collect();
    distribute(items, &mut of, &run_starts, |w| w as usize / span);
    for r in 0..runs {
        let (first, last) = (r * span, ((r + 1) * span).min(windows));
        let (from, to) = (run_starts[r], run_starts[r + 1]);
        let local: Vec<usize> = starts[first..=last].iter().map(|s| s - from).collect();
        distribute(&mut items[from..to], &mut of[from..to], &local, |w| {
            w as usize - first
        });
    }
    starts
}

/// At most this many windows in one round of [`group_in_place`].
const COARSE_WINDOWS: usize = 256;
/// Fewer items than this are grouped in one round (they fit in the CPU's
/// cache).
const TWO_ROUNDS_FROM: usize = 1 << 16;

/// Moves each of `items` (its window in `of`, swapped along with it) into
/// its bucket, `bucket(window)`: bucket `b` is
/// `items[starts[b]..starts[b + 1]]`, exactly as large as its items (each
/// item is moved at most once, by a swap).
fn distribute<T>(items: &mut [T], of: &mut [u32], starts: &[usize], bucket: impl Fn(u32) -> usize) {
    let buckets = starts.len() - 1;
    // next[b]: the first place of bucket b that does not hold one of its
    // items yet. Every bucket before b is done when b's turn comes, so the
    // item at next[b] belongs to b or a later bucket, whose next place is
    // free for it.
    let mut next = starts[..buckets].to_vec();
    for b in 0..buckets {
        let end = starts[b + 1];
        while next[b] < end {
            let i = next[b];
            let t = bucket(of[i]);
            if t == b {
                next[b] += 1;
                continue;
            }
            // t > b, and bucket t has room left: the counts made it
            // exactly as large as its items.
            let j = next[t];
            items.swap(i, j);
            of.swap(i, j);
            next[t] += 1;
        }
    }
}

/// Each item's window (`window_of`, called once an item, clamped below
/// `windows`, which is at least 1; a window fits in 32 bits: callers ask
/// for at most a few million), and where each window starts once the
/// items are grouped (`windows + 1` entries, the last the item count).
fn counted<T>(
    items: &[T],
    windows: usize,
    window_of: impl Fn(&T) -> usize,
) -> (Vec<u32>, Vec<usize>) {
    let of: Vec<u32> = items
        .iter()
        .map(|item| u32::try_from(window_of(item).min(windows - 1)).unwrap_or(u32::MAX))
        .collect();
    let mut starts = vec![0_usize; windows + 1];
    for w in &of {
        if let Some(count) = starts.get_mut(*w as usize + 1) {
            *count += 1;
        }
    }
    for w in 1..=windows {
        starts[w] += starts[w - 1];
    }
    (of, starts)
}

/// The shift that divides `0..=end` into at most `max_windows` windows
/// of at least `1 << min_shift` each.
pub(crate) fn window_shift(end: u64, min_shift: u32, max_windows: u64) -> u32 {
    let mut shift = min_shift;
    while shift < 63 && end >> shift >= max_windows {
        shift += 1;
    }
    shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_grouped_by_window_in_their_own_order_within_it() {
        let items: Vec<(u64, u64)> =
            vec![(1, 30), (2, 5), (3, 21), (4, 9), (5, 39), (6, 0), (7, 25)];
        let ordered = by_window(items.clone(), 4, |(_, o)| (*o / 10) as usize);
        assert_eq!(
            ordered,
            vec![(2, 5), (4, 9), (6, 0), (3, 21), (7, 25), (1, 30), (5, 39)]
        );
        // A window past the last is counted in the last.
        let clamped = by_window(items.clone(), 2, |(_, o)| (*o / 10) as usize);
        assert_eq!(
            clamped,
            vec![(2, 5), (4, 9), (6, 0), (1, 30), (3, 21), (5, 39), (7, 25)]
        );
        assert_eq!(by_window(items.clone(), 1, |_| 0), items);
        assert_eq!(by_window(vec![(9, 9)], 8, |_| 7), vec![(9, 9)]);
    }

    #[test]
    fn window_starts_bound_each_window() {
        let items: Vec<u32> = vec![31, 5, 22, 9, 38, 0, 25, 7];
        let (ordered, starts) = into_windows(items.clone(), 5, |v| (*v / 10) as usize);
        assert_eq!(ordered, vec![5, 9, 0, 7, 22, 25, 31, 38]);
        assert_eq!(starts, vec![0, 4, 4, 6, 8, 8]);
        for (w, bounds) in starts.windows(2).enumerate() {
            assert!(
                ordered[bounds[0]..bounds[1]]
                    .iter()
                    .all(|v| *v as usize / 10 == w)
            );
        }
        // One window, or too few items to order: everything in the first.
        assert_eq!(into_windows(items.clone(), 1, |_| 0).1, vec![0, 8]);
        assert_eq!(into_windows(vec![3u32], 4, |_| 2), (vec![3], vec![0, 1]));
        // Windows past the last are counted in the last.
        let (clamped, starts) = into_windows(items.clone(), 2, |v| (*v / 10) as usize);
        assert_eq!(clamped, vec![5, 9, 0, 7, 31, 22, 38, 25]);
        assert_eq!(starts, vec![0, 4, 8]);
        // Two items are already enough to order.
        assert_eq!(
            into_windows(vec![9u32, 1], 2, |v| (*v / 5) as usize),
            (vec![1, 9], vec![0, 1, 2])
        );
        assert_eq!(into_windows(Vec::<u32>::new(), 4, |_| 2).1, vec![0, 0]);
    }

    /// `items` grouped in place: the same windows, with the same items
    /// each, as the stable copy gives.
    fn same_as_copied(items: Vec<u32>, windows: usize, window_of: impl Fn(&u32) -> usize + Copy) {
        let (ordered, want) = into_windows(items.clone(), windows, window_of);
        let mut grouped = items.clone();
        let starts = group_in_place(&mut grouped, windows, window_of);
        assert_eq!(starts.len(), windows.max(1) + 1, "{items:?}");
        if want.len() == starts.len() {
            assert_eq!(starts, want, "{items:?}");
        } else {
            // The copy gives two starts for one window or too few items.
            assert_eq!((starts[0], starts[windows.max(1)]), (want[0], want[1]));
        }
        for w in 0..windows.max(1) {
            let mut have = grouped[starts[w]..starts[w + 1]].to_vec();
            have.sort_unstable();
            let mut had: Vec<u32> = ordered
                .iter()
                .copied()
                .filter(|v| window_of(v).min(windows.max(1) - 1) == w)
                .collect();
            had.sort_unstable();
            assert_eq!(have, had, "window {w} of {items:?}");
        }
    }

    /// `n` values of a xorshift generator started at `seed` (not 0).
    fn pseudo_random(seed: u32, n: usize) -> Vec<u32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            })
            .collect()
    }

    #[test]
    fn items_grouped_in_place_fall_in_their_windows() {
        let items: Vec<u32> = vec![31, 5, 22, 9, 38, 0, 25, 7];
        let mut grouped = items.clone();
        let starts = group_in_place(&mut grouped, 5, |v| (*v / 10) as usize);
        assert_eq!(starts, vec![0, 4, 4, 6, 8, 8]);
        for (w, bounds) in starts.windows(2).enumerate() {
            assert!(
                grouped[bounds[0]..bounds[1]]
                    .iter()
                    .all(|v| *v as usize / 10 == w),
                "{grouped:?}"
            );
        }
        same_as_copied(items.clone(), 2, |v| (*v / 10) as usize);
        same_as_copied(items.clone(), 1, |_| 0);
        same_as_copied(items.clone(), 0, |_| 3);
        same_as_copied(vec![9, 1], 2, |v| (*v / 5) as usize);
        same_as_copied(Vec::new(), 4, |_| 2);
        // Every item in the last window, or each in a window of its own,
        // in reverse.
        same_as_copied((0..100).collect(), 64, |_| 63);
        same_as_copied((0..64).rev().collect(), 64, |v| *v as usize);
        // A pseudo-random spread over many windows, with empty ones.
        let spread = pseudo_random(0x9E37_79B9, 5_000);
        same_as_copied(spread.clone(), 1 << 10, |v| (*v >> 22) as usize);
        same_as_copied(spread, 3_000, |v| (*v % 2_000) as usize);
    }

    /// Enough items for two rounds: the same windows as one round (the
    /// stable copy) gives, with windows that do not divide into runs
    /// evenly, bunched items, and empty windows.
    #[test]
    fn many_items_grouped_in_two_rounds_fall_in_their_windows() {
        let spread = pseudo_random(0x2545_F491, TWO_ROUNDS_FROM * 2 + 7);
        same_as_copied(spread.clone(), 1 << 13, |v| (*v >> 19) as usize);
        same_as_copied(spread.clone(), 5_003, |v| (*v % 4_999) as usize);
        same_as_copied(spread.clone(), COARSE_WINDOWS + 1, |v| {
            *v as usize % (COARSE_WINDOWS + 1)
        });
        // Bunched: nine tenths in one window, the rest spread.
        same_as_copied(spread.clone(), 3_000, |v| {
            if *v % 10 == 0 {
                (*v % 3_000) as usize
            } else {
                1_234
            }
        });
        // Past the last window: counted in the last.
        same_as_copied(spread, 1_000, |v| (*v % 4_000) as usize);
    }

    #[test]
    fn shifts_bound_the_window_count_and_size() {
        assert_eq!(window_shift(0, 16, 1 << 20), 16);
        assert_eq!(window_shift((1 << 36) - 1, 16, 1 << 20), 16);
        assert_eq!(window_shift(1 << 36, 16, 1 << 20), 17);
        assert_eq!(window_shift(u64::MAX, 16, 1 << 20), 44);
        assert_eq!(window_shift(u64::MAX, 16, 1), 63);
    }
}

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
pub(crate) fn into_windows<T: Copy>(
    items: Vec<T>,
    windows: usize,
    window_of: impl Fn(&T) -> usize,
) -> (Vec<T>, Vec<usize>) {
    if items.len() < 2 || windows < 2 {
        let len = items.len();
        return (items, vec![0, len]);
    }
    let mut ordered = Vec::new();
    let starts = into_windows_in(&items, windows, window_of, &mut ordered);
    (ordered, starts)
}

/// [`into_windows`] from `items`, left as they are, into `ordered`
/// (emptied first; a caller that keeps buffers from one call to the next
/// hands one in, and no memory is allocated for the items). `window_of`
/// is called twice an item, and must give an item the same window each
/// time. Unlike [`into_windows`], the starts are those of every window
/// however few the items (`windows + 1` of them; 2 for one window or
/// none), so that the windows of several calls line up.
///
/// It reads the items in order and writes each once, to the next place
/// of its window: for 2M items of 48 bytes into 4,096 windows, 30-40 ms
/// here, where swapping each into its window in place (an American flag
/// sort's distribution) took 70-100 ms.
pub(crate) fn into_windows_in<T: Copy>(
    items: &[T],
    windows: usize,
    window_of: impl Fn(&T) -> usize,
    ordered: &mut Vec<T>,
) -> Vec<usize> {
    ordered.clear();
    if windows < 2 {
        ordered.extend_from_slice(items);
        return vec![0, items.len()];
    }
    let Some(first) = items.first().copied() else {
        return vec![0; windows + 1];
    };
    let window = |item: &T| window_of(item).min(windows - 1);
    let mut starts = vec![0_usize; windows + 1];
    for item in items {
        starts[window(item) + 1] += 1;
    }
    for w in 1..=windows {
        starts[w] += starts[w - 1];
    }
    // Every place is written once (the counts made each window exactly as
    // large as its items); the first item only fills the vector to length.
    ordered.resize(items.len(), first);
    let mut next = starts.clone();
    for item in items {
        let at = &mut next[window(item)];
        if let Some(place) = ordered.get_mut(*at) {
            *place = *item;
        }
        *at += 1;
    }
    starts
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

    /// `items` copied into windows into `ordered` (which may hold
    /// anything): what a stable sort by window gives, and where each
    /// window starts.
    fn same_as_sorted(
        items: &[u32],
        windows: usize,
        window_of: impl Fn(&u32) -> usize + Copy,
        ordered: &mut Vec<u32>,
    ) {
        let starts = into_windows_in(items, windows, window_of, ordered);
        let last = windows.max(1) - 1;
        let mut want = items.to_vec();
        want.sort_by_key(|v| window_of(v).min(last));
        assert_eq!(*ordered, want, "{items:?}");
        if windows < 2 {
            assert_eq!(starts, vec![0, items.len()]);
            return;
        }
        assert_eq!(starts.len(), windows + 1);
        for w in 0..windows {
            let (from, to) = (starts[w], starts[w + 1]);
            assert!(
                ordered[from..to]
                    .iter()
                    .all(|v| window_of(v).min(last) == w),
                "window {w}"
            );
        }
        assert_eq!(starts[windows], items.len());
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
    fn items_copied_into_windows_keep_their_order_within_each() {
        let items: Vec<u32> = vec![31, 5, 22, 9, 38, 0, 25, 7];
        let mut ordered = Vec::new();
        let starts = into_windows_in(&items, 5, |v| (*v / 10) as usize, &mut ordered);
        assert_eq!(ordered, vec![5, 9, 0, 7, 22, 25, 31, 38]);
        assert_eq!(starts, vec![0, 4, 4, 6, 8, 8]);
        // Whatever the buffer held before, and however long it was.
        let mut junk = vec![77; 3];
        same_as_sorted(&items, 2, |v| (*v / 10) as usize, &mut junk);
        let mut junk = vec![77; 100];
        same_as_sorted(&items, 1, |_| 0, &mut junk);
        same_as_sorted(&items, 0, |_| 3, &mut junk);
        same_as_sorted(&[9, 1], 2, |v| (*v / 5) as usize, &mut junk);
        same_as_sorted(&[], 4, |_| 2, &mut junk);
        same_as_sorted(&[4], 4, |_| 2, &mut junk);
        // However few the items, every window has its start.
        assert_eq!(
            into_windows_in(&[4], 4, |_| 2, &mut junk),
            vec![0, 0, 0, 1, 1]
        );
        assert_eq!(into_windows_in(&[], 3, |_: &u32| 2, &mut junk), vec![0; 4]);
        // Every item in the last window, or each in a window of its own,
        // in reverse.
        let many: Vec<u32> = (0..100).collect();
        same_as_sorted(&many, 64, |_| 63, &mut junk);
        let reversed: Vec<u32> = (0..64).rev().collect();
        same_as_sorted(&reversed, 64, |v| *v as usize, &mut junk);
        // A pseudo-random spread over many windows, with empty ones, bunched
        // items, and windows past the last (counted in the last).
        let spread = pseudo_random(0x9E37_79B9, 50_000);
        same_as_sorted(&spread, 1 << 13, |v| (*v >> 19) as usize, &mut junk);
        same_as_sorted(&spread, 3_000, |v| (*v % 2_000) as usize, &mut junk);
        same_as_sorted(
            &spread,
            3_000,
            |v| {
                if *v % 10 == 0 {
                    (*v % 3_000) as usize
                } else {
                    1_234
                }
            },
            &mut junk,
        );
        same_as_sorted(&spread, 1_000, |v| (*v % 4_000) as usize, &mut junk);
    }

    #[test]
    fn a_buffer_with_room_is_reused() {
        let items = pseudo_random(0x2545_F491, 1_000);
        let mut ordered: Vec<u32> = Vec::with_capacity(4_000);
        ordered.extend(0..10);
        let (at, room) = (ordered.as_ptr() as usize, ordered.capacity());
        into_windows_in(&items, 16, |v| (*v >> 28) as usize, &mut ordered);
        assert_eq!(ordered.len(), items.len());
        assert_eq!((ordered.as_ptr() as usize, ordered.capacity()), (at, room));
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

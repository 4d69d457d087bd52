//! A counting sort of `(key, offset)` pairs into windows: for walking a
//! large file or table forward instead of at random, where the order
//! within a window does not matter (it fits the CPU's cache).

/// `items` reordered by `window_of` (each below `windows`), keeping their
/// order within a window: two passes and one copy, for any number of items.
pub(crate) fn by_window(
    items: Vec<(u64, u64)>,
    windows: usize,
    window_of: impl Fn(&(u64, u64)) -> usize,
) -> Vec<(u64, u64)> {
    if items.len() < 2 || windows < 2 {
        return items;
    }
    let window = |item: &(u64, u64)| window_of(item).min(windows - 1);
    // starts[w]: where window w's next item goes.
    let mut starts = vec![0_usize; windows + 1];
    for item in &items {
        starts[window(item) + 1] += 1;
    }
    for w in 1..=windows {
        starts[w] += starts[w - 1];
    }
    let mut ordered = vec![(0_u64, 0_u64); items.len()];
    for item in items {
        let at = &mut starts[window(&item)];
        ordered[*at] = item;
        *at += 1;
    }
    ordered
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
        let items = vec![(1, 30), (2, 5), (3, 21), (4, 9), (5, 39), (6, 0), (7, 25)];
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
    fn shifts_bound_the_window_count_and_size() {
        assert_eq!(window_shift(0, 16, 1 << 20), 16);
        assert_eq!(window_shift((1 << 36) - 1, 16, 1 << 20), 16);
        assert_eq!(window_shift(1 << 36, 16, 1 << 20), 17);
        assert_eq!(window_shift(u64::MAX, 16, 1 << 20), 44);
        assert_eq!(window_shift(u64::MAX, 16, 1), 63);
    }
}

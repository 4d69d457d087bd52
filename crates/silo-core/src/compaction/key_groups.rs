//! Grouping a bucket of a frozen slot's operations by key, each key's
//! operations kept in the order they came (sequence order), the keys in
//! the order they first appear: a small hash table gives each key a group,
//! then a counting pass lays the groups out one after another. Linear in
//! the bucket's length, where sorting a 2M-operation slot's buckets by key
//! and sequence number took 45-55 ms of a fold.

use crate::pending::mix;

/// The tables [`KeyGroups::group`] uses, kept from bucket to bucket.
#[derive(Debug, Default)]
pub(crate) struct KeyGroups {
    /// Open addressing: (key, group + 1), 0 for an empty slot.
    slots: Vec<(u64, usize)>,
    /// Each item's group.
    group_of: Vec<usize>,
    /// Items in each group, then where each group starts.
    counts: Vec<usize>,
    /// The most slots past its first that a key's probe went, over every
    /// grouping: a measure of the hash's spread, for tests.
    longest_probe: usize,
}

/// How [`KeyGroups::group`] left the items.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Grouped {
    /// Every key appears once: the items are grouped as they are.
    AsTheyAre,
    /// In the buffer handed in.
    Copied,
}

impl KeyGroups {
    /// Groups `items` by `key_of` into `out` (emptied first): the groups in
    /// the order their keys first appear in `items`, each group's items in
    /// their order in `items`. When every key appears once, `items` are
    /// grouped already and `out` is left empty.
    pub(crate) fn group<T: Copy>(
        &mut self,
        items: &[T],
        key_of: impl Fn(&T) -> u64,
        out: &mut Vec<T>,
    ) -> Grouped {
        out.clear();
        let Some(first) = items.first().copied() else {
            return Grouped::AsTheyAre;
        };
        // At most half full: short probes.
        let bits = (items.len() * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(4);
        let mask = (1_usize << bits) - 1;
        self.slots.clear();
        self.slots.resize(1 << bits, (0, 0));
        self.group_of.clear();
        self.counts.clear();
        for item in items {
            let key = key_of(item);
            // Not a multiply alone (see `mix`): an engine's shard holds
            // only keys that share the top bits of a golden-ratio multiply,
            // and placed by those its keys filled one run of slots, each
            // probe walking thousands of them.
            let hashed = mix(key) >> (64 - bits);
            let mut at = usize::try_from(hashed).unwrap_or(0) & mask;
            let mut probe = 0;
            let group = loop {
                let (held, tag) = self.slots[at];
                if tag == 0 {
                    let group = self.counts.len();
                    self.slots[at] = (key, group + 1);
                    self.counts.push(0);
                    break group;
                }
                if held == key {
                    break tag - 1;
                }
                at = (at + 1) & mask;
                probe += 1;
            };
            self.longest_probe = self.longest_probe.max(probe);
            self.counts[group] += 1;
            self.group_of.push(group);
        }
        if self.counts.len() == items.len() {
            return Grouped::AsTheyAre;
        }
        // Counts to where each group starts.
        let mut start = 0;
        for count in &mut self.counts {
            let n = *count;
            *count = start;
            start += n;
        }
        out.resize(items.len(), first);
        for (item, group) in items.iter().zip(&self.group_of) {
            let at = &mut self.counts[*group];
            if let Some(place) = out.get_mut(*at) {
                *place = *item;
            }
            *at += 1;
        }
        Grouped::Copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What grouping must give: the items stably sorted by the place their
    /// key first appears.
    fn reference(items: &[(u64, u32)]) -> Vec<(u64, u32)> {
        let first = |key: u64| items.iter().position(|(k, _)| *k == key);
        let mut want = items.to_vec();
        want.sort_by_key(|(key, _)| first(*key));
        want
    }

    fn grouped(groups: &mut KeyGroups, items: &[(u64, u32)]) -> Vec<(u64, u32)> {
        let mut out = vec![(9, 9); 3];
        match groups.group(items, |(key, _)| *key, &mut out) {
            Grouped::AsTheyAre => {
                assert!(out.is_empty());
                items.to_vec()
            }
            Grouped::Copied => out,
        }
    }

    #[test]
    fn keys_come_in_the_order_they_first_appear_each_with_its_items_in_order() {
        let mut groups = KeyGroups::default();
        let items = [
            (7, 0),
            (3, 1),
            (7, 2),
            (0, 3),
            (3, 4),
            (7, 5),
            (u64::MAX, 6),
        ];
        assert_eq!(
            grouped(&mut groups, &items),
            vec![
                (7, 0),
                (7, 2),
                (7, 5),
                (3, 1),
                (3, 4),
                (0, 3),
                (u64::MAX, 6)
            ]
        );
        // Distinct keys: as they are, nothing copied.
        let mut out = Vec::new();
        let distinct = [(5, 0), (0, 1), (9, 2)];
        assert_eq!(
            groups.group(&distinct, |(k, _)| *k, &mut out),
            Grouped::AsTheyAre
        );
        assert_eq!(
            groups.group(&[], |(k, _): &(u64, u32)| *k, &mut out),
            Grouped::AsTheyAre
        );
        // One key throughout; keys that share their low bits (one probe
        // sequence).
        let same: Vec<(u64, u32)> = (0..100).map(|i| (42, i)).collect();
        assert_eq!(grouped(&mut groups, &same), same);
        let strided: Vec<(u64, u32)> = (0..300u32).map(|i| (u64::from(i % 30) << 40, i)).collect();
        assert_eq!(grouped(&mut groups, &strided), reference(&strided));
    }

    #[test]
    fn keys_of_one_engine_shard_probe_a_few_slots() {
        // Every key of one of the engine's 8 shards: small consecutive
        // keys and large random ones, both sharing the top three bits of
        // `key * 0x9E37_79B9_7F4A_7C15`.
        let engine_shard = |key: u64| key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61;
        let mut random = 0x5EED_u64;
        let large = std::iter::from_fn(|| {
            random = random
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            Some(random)
        });
        for keys in [
            (0..400_000u64)
                .filter(|k| engine_shard(*k) == 5)
                .collect::<Vec<_>>(),
            large
                .filter(|k| engine_shard(*k) == 5)
                .take(50_000)
                .collect(),
        ] {
            let items: Vec<(u64, u32)> =
                keys.iter().map(|k| (*k, 0)).chain([(keys[0], 1)]).collect();
            let mut groups = KeyGroups::default();
            let mut out = Vec::new();
            assert_eq!(groups.group(&items, |(k, _)| *k, &mut out), Grouped::Copied);
            assert_eq!(out.len(), items.len());
            // Some keys met a taken slot (the probes are counted), none
            // walked far.
            assert!(
                (1..64).contains(&groups.longest_probe),
                "{}",
                groups.longest_probe
            );
        }
    }

    proptest! {
        #[test]
        fn grouping_is_a_stable_sort_by_first_appearance(
            keys in proptest::collection::vec(0u64..40, 0..300),
            spread in any::<bool>(),
        ) {
            let items: Vec<(u64, u32)> = keys
                .iter()
                .zip(0u32..)
                .map(|(k, i)| (if spread { k.wrapping_mul(0x0123_4567_89AB_CDEF) } else { *k }, i))
                .collect();
            let mut groups = KeyGroups::default();
            prop_assert_eq!(grouped(&mut groups, &items), reference(&items));
            // The tables are reused: a second, shorter run is right too.
            let half = &items[..items.len() / 2];
            prop_assert_eq!(grouped(&mut groups, half), reference(half));
        }
    }
}

//! Items made in runs, one after another, kept as the runs they were made
//! in: a plan computed by two threads keeps each thread's writes where the
//! thread put them instead of copying the second run onto the end of the
//! first (a 2M-operation fold's second run is 40 MB of writes; copying it
//! into fresh memory took 25-30 ms while nothing else ran).

/// A sequence of items held as one or more runs, in order.
#[derive(Debug)]
pub(crate) struct Runs<T> {
    /// Never empty: items are pushed onto the last run.
    runs: Vec<Vec<T>>,
}

impl<T> Default for Runs<T> {
    fn default() -> Self {
        Runs {
            runs: vec![Vec::new()],
        }
    }
}

impl<T> Runs<T> {
    /// No items yet: they go into `first` (emptied), using its room
    /// before it grows.
    pub(crate) fn in_buffer(mut first: Vec<T>) -> Runs<T> {
        first.clear();
        Runs { runs: vec![first] }
    }

    /// Adds `item` at the end.
    pub(crate) fn push(&mut self, item: T) {
        match self.runs.last_mut() {
            Some(run) => run.push(item),
            None => self.runs.push(vec![item]),
        }
    }

    /// Moves `other`'s items to the end, run by run, without copying them.
    pub(crate) fn append(&mut self, other: Runs<T>) {
        self.runs
            .extend(other.runs.into_iter().filter(|run| !run.is_empty()));
    }

    /// Items in all.
    pub(crate) fn len(&self) -> usize {
        self.runs.iter().map(Vec::len).sum()
    }

    /// Item `i` of the whole sequence.
    pub(crate) fn get(&self, mut i: usize) -> Option<&T> {
        for run in &self.runs {
            match run.get(i) {
                Some(item) => return Some(item),
                None => i -= run.len(),
            }
        }
        None
    }

    /// The items in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + Clone {
        self.runs.iter().flatten()
    }

    /// The items in order, to change.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.runs.iter_mut().flatten()
    }

    /// The runs, to take apart.
    pub(crate) fn into_runs(self) -> Vec<Vec<T>> {
        self.runs
    }
}

impl<'r, T> IntoIterator for &'r Runs<T> {
    type Item = &'r T;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'r, Vec<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.runs.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::Runs;

    #[test]
    fn runs_read_as_one_sequence_in_order() {
        let mut a = Runs::default();
        assert_eq!((a.len(), a.get(0)), (0, None));
        for i in 0..3 {
            a.push(i);
        }
        let mut b = Runs::default();
        for i in 3..5 {
            b.push(i);
        }
        // An empty run is dropped, a full one moved whole.
        a.append(Runs::default());
        a.append(b);
        a.push(5);
        assert_eq!(a.len(), 6);
        assert_eq!(
            a.iter().copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5]
        );
        assert_eq!((&a).into_iter().count(), 6);
        let got: Vec<Option<i32>> = (0..7).map(|i| a.get(i).copied()).collect();
        assert_eq!(
            got,
            vec![Some(0), Some(1), Some(2), Some(3), Some(4), Some(5), None]
        );
        for x in a.iter_mut() {
            *x *= 10;
        }
        let runs = a.into_runs();
        assert_eq!(runs, vec![vec![0, 10, 20], vec![30, 40, 50]]);
    }

    #[test]
    fn runs_in_a_buffer_fill_it_emptied_before_it_grows() {
        let mut buffer: Vec<u64> = Vec::with_capacity(1000);
        buffer.extend([7, 8, 9]);
        let (at, room) = (buffer.as_ptr() as usize, buffer.capacity());
        let mut runs = Runs::in_buffer(buffer);
        assert_eq!(runs.len(), 0, "emptied");
        for i in 0..1000 {
            runs.push(i);
        }
        let runs = runs.into_runs();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].as_ptr() as usize, runs[0].capacity()), (at, room));
        assert!(runs[0].iter().copied().eq(0..1000));
    }
}

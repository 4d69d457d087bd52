//! Two pieces of work at once: one on a scoped thread of its own, the
//! other on the calling thread.

/// Runs `theirs` on a scoped thread and `mine` on this one, and returns
/// both results once both are done. A panic on the other thread is
/// resumed here, as if it had happened on this one.
pub(crate) fn both<A, B: Send>(
    mine: impl FnOnce() -> A,
    theirs: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|s| {
        let other = s.spawn(theirs);
        let mine = mine();
        match other.join() {
            Ok(theirs) => (mine, theirs),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::both;

    #[test]
    fn both_results_come_back_and_a_panic_on_the_other_thread_is_resumed_here() {
        let data = [1u64, 2, 3, 4];
        let (a, b) = both(
            || data[..2].iter().sum::<u64>(),
            || data[2..].iter().sum::<u64>(),
        );
        assert_eq!((a, b), (3, 7));
        let caught = std::panic::catch_unwind(|| both(|| 1, || -> u32 { panic!("theirs") }));
        let message = caught.expect_err("resumed here");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"theirs"));
    }
}

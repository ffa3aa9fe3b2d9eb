//! The arithmetic of a paced drain (lame duck): how many connections to
//! close at each step so that they go evenly over the drain's time.
//!
//! No new connection arrives while draining (upgrades are refused), so the
//! open count only falls; each step closes what is above its share.

/// How many of `open` connections to close at `step` (1-based) of `steps`,
/// given `start` open when the drain began: enough to leave at most
/// `start × (steps − step) / steps` (rounded up, so that none goes before
/// its time), and none after the last step.
pub fn to_close(start: usize, open: usize, step: u32, steps: u32) -> usize {
    let steps = u64::from(steps.max(1));
    let step = u64::from(step).min(steps);
    let keep = (start as u64).saturating_mul(steps - step).div_ceil(steps);
    open.saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closes step by step; returns the steps at which each went.
    fn run(start: usize, steps: u32) -> Vec<u32> {
        let mut open = start;
        let mut closed_at = Vec::new();
        for step in 1..=steps {
            let n = to_close(start, open, step, steps);
            open -= n;
            closed_at.extend(std::iter::repeat_n(step, n));
        }
        assert_eq!(open, 0, "the last step closes the rest");
        closed_at
    }

    #[test]
    fn few_connections_are_spread_over_the_whole_drain() {
        assert_eq!(run(5, 100), [20, 40, 60, 80, 100]);
        assert_eq!(run(1, 100), [100]);
        assert_eq!(run(0, 100), Vec::<u32>::new());
    }

    #[test]
    fn many_connections_go_in_equal_batches() {
        let closed = run(1000, 10);
        for step in 1..=10 {
            assert_eq!(closed.iter().filter(|&&s| s == step).count(), 100);
        }
    }

    #[test]
    fn connections_that_left_on_their_own_count_toward_the_share() {
        // 10 at the start, 6 left by themselves before step 1 of 2: keep 5.
        assert_eq!(to_close(10, 4, 1, 2), 0);
        assert_eq!(to_close(10, 4, 2, 2), 4);
        // Steps beyond the last, or no steps, close everything.
        assert_eq!(to_close(10, 7, 5, 2), 7);
        assert_eq!(to_close(10, 7, 1, 0), 7);
    }
}

//! The root scheduler's choice: round robin over init's main context
//! (position 0) and the process slots (position k = slot k - 1).

/// The slot to run after position `from` (0 = init's main context, k =
/// slot k - 1), among `n` slots: the next runnable one in round-robin
/// order, or `None` when the turn comes back to init's main context
/// first (every slot after `from` is not runnable).
pub fn next_slot(from: usize, n: usize, runnable: impl Fn(usize) -> bool) -> Option<usize> {
    (1..=n + 1)
        .map(|step| (from + step) % (n + 1))
        .take_while(|pos| *pos != 0)
        .find(|pos| runnable(pos - 1))
        .map(|pos| pos - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_runnable_slot_then_init() {
        let run = [true, false, true, true];
        let ok = |i: usize| run[i];
        // From init's main context: slot 0, 2, 3, then back to init.
        assert_eq!(next_slot(0, 4, ok), Some(0));
        assert_eq!(next_slot(1, 4, ok), Some(2));
        assert_eq!(next_slot(3, 4, ok), Some(3));
        assert_eq!(next_slot(4, 4, ok), None);
    }

    #[test]
    fn nothing_runnable_returns_to_init() {
        assert_eq!(next_slot(0, 32, |_| false), None);
        assert_eq!(next_slot(17, 32, |_| false), None);
        assert_eq!(next_slot(0, 0, |_| true), None);
    }

    #[test]
    fn init_gets_a_turn_in_every_round() {
        // Every slot runnable: a full round is slots 0..n, then init.
        let n = 5;
        let mut pos = 0;
        let mut order = vec![];
        while let Some(s) = next_slot(pos, n, |_| true) {
            order.push(s);
            pos = s + 1;
        }
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }
}

//! [`Ready`]: the items that may start, lowest index first.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The items that may start. Those ready from the start are a sorted list taken in
/// order: most batches have no dependencies, and then starting an item costs a step of a
/// cursor, not a heap's `O(log n)`. Items made ready later, as what they wait for
/// finishes, go into a heap.
#[derive(Debug)]
pub(super) struct Ready {
    /// Ready from the start, ascending; those before `taken` have started.
    initial: Vec<usize>,
    taken: usize,
    later: BinaryHeap<Reverse<usize>>,
}

impl Ready {
    /// `initial`: the items ready from the start, ascending.
    pub(super) fn new(initial: Vec<usize>) -> Self {
        debug_assert!(
            initial.windows(2).all(|w| w[0] < w[1]),
            "ascending, each once"
        );
        Self {
            initial,
            taken: 0,
            later: BinaryHeap::new(),
        }
    }

    /// Whether no item may start.
    pub(super) fn is_empty(&self) -> bool {
        self.taken == self.initial.len() && self.later.is_empty()
    }

    /// The lowest ready item.
    pub(super) fn peek(&self) -> Option<usize> {
        let first = self.initial.get(self.taken).copied();
        let later = self.later.peek().map(|&Reverse(i)| i);
        match (first, later) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the lowest ready item.
    pub(super) fn pop(&mut self) -> Option<usize> {
        let i = self.peek()?;
        if self.initial.get(self.taken) == Some(&i) {
            self.taken += 1;
        } else {
            self.later.pop();
        }
        Some(i)
    }

    /// Item `i` may start now.
    pub(super) fn push(&mut self, i: usize) {
        self.later.push(Reverse(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_goes_first_from_either_list() {
        let mut ready = Ready::new(vec![0, 2, 5]);
        assert_eq!(ready.peek(), Some(0));
        assert_eq!(ready.pop(), Some(0));
        ready.push(4);
        ready.push(1);
        let mut order = Vec::new();
        while let Some(i) = ready.peek() {
            assert_eq!(ready.pop(), Some(i));
            order.push(i);
            if i == 2 {
                ready.push(3);
            }
        }
        assert_eq!(order, [1, 2, 3, 4, 5]);
        assert!(ready.is_empty());
        assert_eq!(ready.pop(), None);
    }
}

//! Request ids: they compare ignoring ASCII letter case, as Microsoft Graph compares them;
//! an item without one has its index.

use std::borrow::Cow;
use std::cmp::Ordering;

/// The ids of a batch's items, to look up by id (ignoring ASCII letter case, as Microsoft
/// Graph compares them: `"A"` and `"a"` are the same id).
///
/// A sorted list, not a hash map: it takes `O(n log n)` comparisons whatever ids a client
/// chooses, where a map keyed by a client's strings needs a keyed hash to stay linear,
/// which costs more per id than the sort does.
#[derive(Debug)]
pub(crate) struct IdIndex<'a> {
    /// Each id once, with the first item that has it, in [`compare`] order.
    sorted: Vec<(&'a str, usize)>,
}

impl<'a> IdIndex<'a> {
    /// The index of `ids` (each item's index and id), and every item whose id an earlier
    /// item has already (its index and the earlier one's), in item order.
    pub(crate) fn new(ids: impl Iterator<Item = (usize, &'a str)>) -> (Self, Vec<(usize, usize)>) {
        let mut sorted: Vec<(&str, usize)> = ids.map(|(index, id)| (id, index)).collect();
        // Clients number their items in order (`1` to `100`), and items without an id have
        // their index as id: such ids are in order and distinct already, which one pass sees.
        if sorted.windows(2).all(|w| compare(w[0].0, w[1].0).is_lt()) {
            return (Self { sorted }, Vec::new());
        }
        sorted.sort_unstable_by(|a, b| compare(a.0, b.0).then(a.1.cmp(&b.1)));
        let mut repeated = Vec::new();
        sorted.dedup_by(|later, first| {
            let same = same_id(later.0, first.0);
            if same {
                repeated.push((later.1, first.1));
            }
            same
        });
        repeated.sort_unstable();
        (Self { sorted }, repeated)
    }

    /// The first item whose id is `id`.
    pub(crate) fn get(&self, id: &str) -> Option<usize> {
        let at = self.sorted.binary_search_by(|(k, _)| compare(k, id)).ok()?;
        Some(self.sorted[at].1)
    }
}

/// Ids in order of length, then of their bytes, ASCII letters as lower case: equal when
/// [`same_id`]. (Shorter first: the ids clients number their items with, `1` to `100`,
/// and the indices items without one get, are then in order already, which the sort
/// sees in one pass.)
fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len().cmp(&b.len()).then_with(|| {
        a.iter()
            .map(u8::to_ascii_lowercase)
            .cmp(b.iter().map(u8::to_ascii_lowercase))
    })
}

/// An item's id: the one a client gave, or its index (see [`index_id`]).
pub(crate) type ItemId = Cow<'static, str>;

/// The id of an item that has none of its own: its index, in decimal.
pub(crate) fn index_id(index: usize) -> ItemId {
    Cow::Owned(index.to_string())
}

/// Whether two ids are the same id: ASCII letter case aside (see [`IdIndex`]).
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// 32 hex digits no client can guess: SipHash under the process's random keys (a fresh
/// pair for each call). Multipart boundaries and the client's idempotency keys.
pub(crate) fn random_hex() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let (a, b) = (state.hash_one(1u8), state.hash_one(2u8));
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_ignoring_case_and_repeats_name_the_first() {
        let ids = ["b", "A", "c", "a", "B", "b", "10", "1"];
        let (index, repeated) = IdIndex::new(ids.into_iter().enumerate());
        assert_eq!(repeated, [(3, 1), (4, 0), (5, 0)]);
        for (id, want) in [("a", 1), ("B", 0), ("C", 2), ("10", 6), ("1", 7)] {
            assert_eq!(index.get(id), Some(want), "{id}");
        }
        assert_eq!(index.get("d"), None);
        assert_eq!(index.get(""), None);
        let (empty, none) = IdIndex::new(std::iter::empty());
        assert!(none.is_empty() && empty.get("a").is_none());
    }

    #[test]
    fn ids_in_order_are_indexed_as_they_are_and_repeats_still_found() {
        // In order already (shorter first, then by bytes): taken without a sort.
        let (index, repeated) = IdIndex::new(["1", "2", "10", "a", "ab"].into_iter().enumerate());
        assert!(repeated.is_empty());
        for (id, want) in [("1", 0), ("2", 1), ("10", 2), ("A", 3), ("AB", 4)] {
            assert_eq!(index.get(id), Some(want), "{id}");
        }
        assert_eq!(index.get("3"), None);
        // In order but for a repeat (`a`, `A`), or out of order: sorted, repeats named.
        let (_, repeated) = IdIndex::new(["1", "a", "A", "b"].into_iter().enumerate());
        assert_eq!(repeated, [(2, 1)]);
        let (index, repeated) = IdIndex::new(["10", "2", "1", "2"].into_iter().enumerate());
        assert_eq!(repeated, [(3, 1)]);
        assert_eq!(
            (index.get("1"), index.get("2"), index.get("10")),
            (Some(2), Some(1), Some(0))
        );
    }
}

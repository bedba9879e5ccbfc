//! Splitting requests into batch requests of at most the server's limit, every
//! `dependsOn` chain whole: the chains (items linked by `dependsOn`, either way) are packed
//! first-fit, longest first (within 22% of the fewest batch requests possible, and the
//! fewest for the usual mix of short chains), and each batch request keeps request order
//! inside.

/// The batch requests for items `pending` (indices, in order) whose dependencies are
/// `deps`; `Err` holds the ids' indices of a chain longer than `limit`.
pub(super) fn split(
    pending: &[usize],
    deps: &[Vec<usize>],
    limit: usize,
) -> Result<Vec<Vec<usize>>, Vec<usize>> {
    let limit = limit.max(1);
    let mut chains = chains(pending, deps);
    // Stable: chains of one length keep request order.
    chains.sort_by_key(|c| std::cmp::Reverse(c.len()));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for chain in chains {
        if chain.len() > limit {
            return Err(chain);
        }
        match batches.iter_mut().find(|b| b.len() + chain.len() <= limit) {
            Some(batch) => batch.extend(chain),
            None => batches.push(chain),
        }
    }
    for batch in &mut batches {
        batch.sort_unstable();
    }
    Ok(batches)
}

/// The chains among `pending`, each in order, ordered by their first item. Dependencies
/// outside `pending` (items already answered) do not link.
fn chains(pending: &[usize], deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let max = pending.iter().copied().max().map_or(0, |m| m + 1);
    let mut root: Vec<usize> = (0..max).collect();
    let mut member = vec![false; max];
    for &i in pending {
        member[i] = true;
    }
    fn find(root: &mut [usize], mut i: usize) -> usize {
        while root[i] != i {
            root[i] = root[root[i]];
            i = root[i];
        }
        i
    }
    for &i in pending {
        for &d in &deps[i] {
            if d < max && member[d] {
                let (a, b) = (find(&mut root, i), find(&mut root, d));
                root[a.max(b)] = a.min(b);
            }
        }
    }
    let mut by_root: Vec<Vec<usize>> = vec![Vec::new(); max];
    for &i in pending {
        let r = find(&mut root, i);
        by_root[r].push(i);
    }
    let mut chains: Vec<Vec<usize>> = by_root.into_iter().filter(|c| !c.is_empty()).collect();
    chains.sort_by_key(|c| c[0]);
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_stay_whole_and_the_longest_go_first() {
        // 0 <- 1 <- 2, 3 alone, 4 <- 5.
        let deps = vec![vec![], vec![0], vec![1], vec![], vec![], vec![4]];
        let all: Vec<usize> = (0..6).collect();
        assert_eq!(
            split(&all, &deps, 3).unwrap(),
            [vec![0, 1, 2], vec![3, 4, 5]]
        );
        assert_eq!(split(&all, &deps, 10).unwrap(), [vec![0, 1, 2, 3, 4, 5]]);
        // Longest first: 3 batch requests of 10 where request order would take 4.
        let mut long = Vec::new();
        for len in [2, 5, 4, 7, 1, 3, 8] {
            let start = long.len();
            long.extend((0..len).map(|k| if k == 0 { vec![] } else { vec![start + k - 1] }));
        }
        let every: Vec<usize> = (0..long.len()).collect();
        assert_eq!(split(&every, &long, 10).unwrap().len(), 3);
        assert_eq!(split(&all, &deps, 2), Err(vec![0, 1, 2]));
        // A dependency already answered does not link.
        assert_eq!(split(&[1, 2, 5], &deps, 1), Err(vec![1, 2]));
        assert_eq!(split(&[2, 5], &deps, 1).unwrap(), [vec![2], vec![5]]);
    }

    #[test]
    fn two_hundred_and_fifty_items_with_chains_make_three_batches_of_a_hundred() {
        let deps: Vec<Vec<usize>> = (0..250)
            .map(|i| {
                if i % 5 == 0 || i % 5 == 4 {
                    vec![]
                } else {
                    vec![i - 1]
                }
            })
            .collect();
        let all: Vec<usize> = (0..250).collect();
        let batches = split(&all, &deps, 100).unwrap();
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.len() <= 100));
        for (i, d) in deps.iter().enumerate() {
            let home = batches.iter().position(|b| b.contains(&i));
            for &d in d {
                assert_eq!(home, batches.iter().position(|b| b.contains(&d)));
            }
        }
    }
}

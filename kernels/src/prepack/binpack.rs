//! Best-fit-decreasing bin packing of prompt lengths, for paths that need fixed shapes (a
//! CUDA-graph bucket, a padded batch): Prepacking's `binpacking.to_constant_volume`.
//!
//! Items are taken longest first (ties: lower index first); each goes into the fullest open
//! bin it fits (ties: the lower bin index), or opens a new bin. The capacity defaults to the
//! longest item, so packing never makes the padded length longer than padding each prompt
//! would. Varlen kernels need none of this: [`super::pack_prompts`] packs everything into
//! one ragged stream with no padding at all.

use super::PrepackError;

/// Bins of item indices and the padding they cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Packing {
    /// Item indices per bin, in the order they were placed.
    pub bins: Vec<Vec<usize>>,
    /// Σ lengths per bin.
    pub loads: Vec<usize>,
    pub capacity: usize,
    pub waste: Waste,
}

/// The padding a packing costs when every bin is padded to the capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Waste {
    /// Σ lengths.
    pub tokens: usize,
    /// bins · capacity.
    pub slots: usize,
    /// slots − tokens.
    pub padding: usize,
    /// padding / slots (0 when there are no slots).
    pub fraction: f64,
}

/// Packs `lens` into bins of `capacity` (default: the longest) by best-fit decreasing. An
/// item longer than the capacity is an error.
pub fn best_fit_decreasing(
    lens: &[usize],
    capacity: Option<usize>,
) -> Result<Packing, PrepackError> {
    let capacity = capacity.unwrap_or_else(|| lens.iter().copied().max().unwrap_or(0));
    if let Some(index) = lens.iter().position(|&n| n > capacity) {
        return Err(PrepackError::ItemTooLong {
            index,
            len: lens[index],
            capacity,
        });
    }
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i])); // stable: ties keep index order
    let (mut bins, mut loads): (Vec<Vec<usize>>, Vec<usize>) = (Vec::new(), Vec::new());
    for i in order {
        let fullest = (0..bins.len())
            .filter(|&b| loads[b] + lens[i] <= capacity)
            .max_by_key(|&b| (loads[b], std::cmp::Reverse(b)));
        match fullest {
            Some(b) => {
                bins[b].push(i);
                loads[b] += lens[i];
            }
            None => {
                bins.push(vec![i]);
                loads.push(lens[i]);
            }
        }
    }
    let tokens = lens.iter().sum();
    let slots = bins.len() * capacity;
    let padding = slots - tokens;
    let fraction = if slots == 0 {
        0.0
    } else {
        padding as f64 / slots as f64
    };
    Ok(Packing {
        bins,
        loads,
        capacity,
        waste: Waste {
            tokens,
            slots,
            padding,
            fraction,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fewest bins any packing needs, by trying every assignment (small cases only).
    fn optimal_bins(lens: &[usize], capacity: usize) -> usize {
        fn place(lens: &[usize], loads: &mut Vec<usize>, capacity: usize, best: &mut usize) {
            if loads.len() >= *best {
                return;
            }
            let Some((&first, rest)) = lens.split_first() else {
                *best = loads.len();
                return;
            };
            for b in 0..loads.len() {
                if loads[b] + first <= capacity {
                    loads[b] += first;
                    place(rest, loads, capacity, best);
                    loads[b] -= first;
                }
            }
            loads.push(first);
            place(rest, loads, capacity, best);
            loads.pop();
        }
        let mut best = lens.len() + 1;
        place(lens, &mut Vec::new(), capacity, &mut best);
        best
    }

    #[test]
    fn best_fit_takes_the_fullest_bin_and_is_optimal_on_known_cases() {
        // 8,4,4,2,1,1 into 10: 2 goes to the first of two equally full bins (8 and 8).
        let p = best_fit_decreasing(&[4, 8, 1, 4, 2, 1], Some(10)).unwrap();
        assert_eq!(p.bins, vec![vec![1, 4], vec![0, 3, 2, 5]]);
        assert_eq!(p.loads, vec![10, 10]);
        // 4 fits both open bins (loads 6 and 5) and goes to the fuller; 3 then fits only the other.
        let p = best_fit_decreasing(&[5, 6, 4, 3], Some(10)).unwrap();
        assert_eq!(p.bins, vec![vec![1, 2], vec![0, 3]]);
        let cases: [(&[usize], usize); 5] = [
            (&[4, 8, 1, 4, 2, 1], 10),
            (&[7, 5, 3, 2], 7),
            (&[6, 6, 5, 5, 4, 4], 12),
            (&[9, 1, 8, 2, 7, 3], 10),
            (&[3, 3, 3, 3, 2, 2, 2], 6),
        ];
        for (lens, cap) in cases {
            let p = best_fit_decreasing(lens, Some(cap)).unwrap();
            assert_eq!(p.bins.len(), optimal_bins(lens, cap), "{lens:?} into {cap}");
        }
    }

    #[test]
    fn every_item_once_and_no_bin_over_capacity() {
        let mut x = 12345u64;
        for _ in 0..200 {
            let n = (x % 12) as usize;
            let lens: Vec<usize> = (0..n)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 40) as usize % 20
                })
                .collect();
            let p = best_fit_decreasing(&lens, None).unwrap();
            let mut seen: Vec<usize> = p.bins.concat();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
            for (bin, &load) in p.bins.iter().zip(&p.loads) {
                assert_eq!(bin.iter().map(|&i| lens[i]).sum::<usize>(), load);
                assert!(load <= p.capacity);
            }
            assert_eq!(
                p.waste.padding,
                p.bins.len() * p.capacity - lens.iter().sum::<usize>()
            );
            x = x.wrapping_add(7);
        }
    }

    #[test]
    fn waste_is_exact_and_too_long_items_are_errors() {
        // Default capacity 7: [7], [5, 2], [3] → 21 slots for 17 tokens.
        let p = best_fit_decreasing(&[7, 5, 3, 2], None).unwrap();
        assert_eq!(p.bins, vec![vec![0], vec![1, 3], vec![2]]);
        assert_eq!(
            p.waste,
            Waste {
                tokens: 17,
                slots: 21,
                padding: 4,
                fraction: 4.0 / 21.0
            }
        );
        let empty = best_fit_decreasing(&[], None).unwrap();
        assert_eq!((empty.bins.len(), empty.waste.fraction), (0, 0.0));
        let err = best_fit_decreasing(&[3, 9, 4], Some(8)).unwrap_err();
        assert_eq!(
            err,
            PrepackError::ItemTooLong {
                index: 1,
                len: 9,
                capacity: 8
            }
        );
        assert_eq!(
            err.to_string(),
            "item 1 of length 9 does not fit a bin of capacity 8"
        );
    }
}

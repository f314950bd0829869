//! Random search: the admissible configs in a uniformly random order, each at most once.

use rand::rngs::SmallRng;

use super::{seeded, History, RandomOrder, SearchSpace, Strategy};

pub struct RandomSearch {
    rng: SmallRng,
    order: Option<RandomOrder>,
}

impl RandomSearch {
    pub fn new(seed: u64) -> RandomSearch {
        RandomSearch {
            rng: seeded(seed),
            order: None,
        }
    }
}

impl Strategy for RandomSearch {
    fn next(&mut self, space: &SearchSpace, history: &History) -> Option<usize> {
        let rng = &mut self.rng;
        self.order
            .get_or_insert_with(|| RandomOrder::new(space.len(), rng))
            .next_untried(history)
    }
}

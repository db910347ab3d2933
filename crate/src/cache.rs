//! In-memory cache of decoded input blobs, keyed by content hash and bounded in bytes.
//! Oldest entries are evicted first; inputs shared by many units (a matrix panel) are fetched once.

use crate::hash::ContentHash;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

pub struct BlobCache {
    budget_bytes: usize,
    used_bytes: usize,
    entries: HashMap<ContentHash, Rc<Vec<f32>>>,
    order: VecDeque<ContentHash>,
}

impl BlobCache {
    pub fn new(budget_bytes: usize) -> Self {
        BlobCache {
            budget_bytes,
            used_bytes: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&mut self, hash: &ContentHash) -> Option<Rc<Vec<f32>>> {
        self.entries.get(hash).cloned()
    }

    pub fn insert(&mut self, hash: ContentHash, values: Rc<Vec<f32>>) {
        let size = values.len() * 4;
        if self.entries.contains_key(&hash) || size > self.budget_bytes {
            return;
        }
        while self.used_bytes + size > self.budget_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.entries.remove(&oldest) {
                self.used_bytes -= v.len() * 4;
            }
        }
        self.used_bytes += size;
        self.order.push_back(hash);
        self.entries.insert(hash, values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_first_within_the_budget() {
        let mut cache = BlobCache::new(32); // room for 8 f32s
        let (h1, h2, h3) = (
            ContentHash([1; 32]),
            ContentHash([2; 32]),
            ContentHash([3; 32]),
        );
        cache.insert(h1, Rc::new(vec![0.0; 4]));
        cache.insert(h2, Rc::new(vec![0.0; 4]));
        assert!(cache.get(&h1).is_some() && cache.get(&h2).is_some());
        cache.insert(h3, Rc::new(vec![0.0; 4]));
        assert!(cache.get(&h1).is_none(), "the oldest entry is evicted");
        assert!(cache.get(&h2).is_some() && cache.get(&h3).is_some());
        cache.insert(ContentHash([4; 32]), Rc::new(vec![0.0; 9]));
        assert!(
            cache.get(&ContentHash([4; 32])).is_none(),
            "larger than the budget: not kept"
        );
    }
}

//! In-memory cache of input blobs, keyed by content hash and bounded in bytes.
//! Oldest entries are evicted first; inputs shared by many units (a matrix panel, a custom
//! kernel's shared input) are fetched once. Generic over the handle kept (`Rc<Vec<u8>>` in the
//! browser, `Arc<Vec<u8>>` natively: blobs are kept as the bytes the GPU is given).

use crate::hash::ContentHash;
use std::collections::{HashMap, VecDeque};

pub struct BlobCache<V> {
    budget_bytes: usize,
    used_bytes: usize,
    entries: HashMap<ContentHash, (V, usize)>,
    order: VecDeque<ContentHash>,
}

impl<V: Clone> BlobCache<V> {
    pub fn new(budget_bytes: usize) -> Self {
        BlobCache {
            budget_bytes,
            used_bytes: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, hash: &ContentHash) -> Option<V> {
        self.entries.get(hash).map(|(v, _)| v.clone())
    }

    /// Keeps `value`, which takes `bytes` of memory, evicting the oldest entries to make room.
    /// A value larger than the whole budget is not kept.
    pub fn insert(&mut self, hash: ContentHash, value: V, bytes: usize) {
        if self.entries.contains_key(&hash) || bytes > self.budget_bytes {
            return;
        }
        while self.used_bytes + bytes > self.budget_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, size)) = self.entries.remove(&oldest) {
                self.used_bytes -= size;
            }
        }
        self.used_bytes += bytes;
        self.order.push_back(hash);
        self.entries.insert(hash, (value, bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn evicts_oldest_first_within_the_budget() {
        let mut cache = BlobCache::new(32);
        let (h1, h2, h3) = (
            ContentHash([1; 32]),
            ContentHash([2; 32]),
            ContentHash([3; 32]),
        );
        cache.insert(h1, Rc::new(vec![0.0f32; 4]), 16);
        cache.insert(h2, Rc::new(vec![0.0f32; 4]), 16);
        assert!(cache.get(&h1).is_some() && cache.get(&h2).is_some());
        cache.insert(h3, Rc::new(vec![0.0f32; 4]), 16);
        assert!(cache.get(&h1).is_none(), "the oldest entry is evicted");
        assert!(cache.get(&h2).is_some() && cache.get(&h3).is_some());
        cache.insert(ContentHash([4; 32]), Rc::new(vec![0.0f32; 9]), 36);
        assert!(
            cache.get(&ContentHash([4; 32])).is_none(),
            "larger than the budget: not kept"
        );
    }
}

//! A bounded map whose entries expire: the forwarder's answer cache, kept
//! free of DNS so its bookkeeping can be tested on its own.
//!
//! Eviction when full is least-recently-used. The alternative, evicting the
//! entry closest to expiry, would throw out the hottest names first: names
//! behind CDNs and cloud load balancers have TTLs of seconds to a minute and
//! are asked for constantly. Expired entries need no sweep: a lookup that
//! finds one removes it, and one nobody asks for again drifts to the
//! least-recently-used end, where the next insertion into a full cache
//! evicts it.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

pub(super) struct Cache<K, V> {
    capacity: usize,
    entries: HashMap<K, Slot<V>>,
    /// Use order: the first key is the least recently used. Ticks are unique,
    /// so each entry has exactly one place here.
    recency: BTreeMap<u64, K>,
    next_tick: u64,
}

struct Slot<V> {
    value: V,
    stored: Instant,
    lifetime: Duration,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A cache holding at most `capacity` entries (0 disables caching).
    pub(super) fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            next_tick: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value for `key` if still fresh at `now`, with its age.
    pub(super) fn get(&mut self, key: &K, now: Instant) -> Option<(V, Duration)> {
        let slot = self.entries.get(key)?;
        let age = now.saturating_duration_since(slot.stored);
        if age >= slot.lifetime {
            self.remove(key);
            return None;
        }
        let value = slot.value.clone();
        self.touch(key);
        Some((value, age))
    }

    /// Stores `value` under `key` for `lifetime` from `now`, replacing any
    /// older value and evicting the least recently used entry if full.
    pub(super) fn insert(&mut self, key: K, value: V, lifetime: Duration, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let tick = self.tick();
        self.recency.insert(tick, key.clone());
        let slot = Slot {
            value,
            stored: now,
            lifetime,
            tick,
        };
        self.entries.insert(key, slot);
    }

    fn remove(&mut self, key: &K) {
        if let Some(slot) = self.entries.remove(key) {
            self.recency.remove(&slot.tick);
        }
    }

    /// Marks `key` (present) as the most recently used.
    fn touch(&mut self, key: &K) {
        let tick = self.tick();
        if let Some(slot) = self.entries.get_mut(key) {
            if let Some(key) = self.recency.remove(&slot.tick) {
                self.recency.insert(tick, key);
            }
            slot.tick = tick;
        }
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn fresh_entries_are_returned_with_their_age() {
        let start = Instant::now();
        let mut cache = Cache::new(4);
        cache.insert("a", 1, MINUTE, start);
        assert_eq!(
            cache.get(&"a", start + Duration::from_secs(10)),
            Some((1, Duration::from_secs(10)))
        );
    }

    #[test]
    fn expired_entries_are_gone() {
        let start = Instant::now();
        let mut cache = Cache::new(4);
        cache.insert("a", 1, MINUTE, start);
        assert_eq!(cache.get(&"a", start + MINUTE), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn full_cache_evicts_the_least_recently_used() {
        let start = Instant::now();
        let mut cache = Cache::new(2);
        cache.insert("a", 1, MINUTE, start);
        cache.insert("b", 2, MINUTE, start);
        // "a" is used after "b", so "b" is the one to go.
        assert!(cache.get(&"a", start).is_some());
        cache.insert("c", 3, MINUTE, start);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&"b", start).is_none());
        assert!(cache.get(&"a", start).is_some());
        assert!(cache.get(&"c", start).is_some());
    }

    #[test]
    fn replacing_a_key_does_not_grow_the_cache() {
        let start = Instant::now();
        let mut cache = Cache::new(2);
        cache.insert("a", 1, MINUTE, start);
        cache.insert("a", 2, MINUTE, start);
        cache.insert("b", 3, MINUTE, start);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"a", start).map(|(value, _)| value), Some(2));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let start = Instant::now();
        let mut cache = Cache::new(0);
        cache.insert("a", 1, MINUTE, start);
        assert_eq!(cache.len(), 0);
        assert!(cache.get(&"a", start).is_none());
    }
}

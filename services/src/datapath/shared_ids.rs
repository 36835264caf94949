//! Ids for things many frontends share (backends, Maglev tables): each
//! distinct value gets one id, counted by reference, so its map entry is
//! written once and removed when the last frontend lets go of it.

use std::collections::HashMap;
use std::hash::Hash;

pub(super) struct SharedIds<K> {
    ids: HashMap<K, (u32, usize)>,
    values: HashMap<u32, K>,
    next: u32,
    free: Vec<u32>,
}

impl<K> Default for SharedIds<K> {
    fn default() -> Self {
        SharedIds {
            ids: HashMap::new(),
            values: HashMap::new(),
            next: 0,
            free: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> SharedIds<K> {
    /// The id of `value` with one more reference, if it has one already.
    pub(super) fn share(&mut self, value: &K) -> Option<u32> {
        let (id, refs) = self.ids.get_mut(value)?;
        *refs += 1;
        Some(*id)
    }

    /// A fresh id (never 0, which the maps read as "none"), for a value
    /// whose entry is then written and, if that worked, [`bind`]ed.
    ///
    /// [`bind`]: SharedIds::bind
    pub(super) fn reserve(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next
        })
    }

    /// Gives back a reserved id whose entry could not be written.
    pub(super) fn unreserve(&mut self, id: u32) {
        self.free.push(id);
    }

    /// Records `value` under the reserved `id`, with one reference.
    pub(super) fn bind(&mut self, id: u32, value: K) {
        self.ids.insert(value.clone(), (id, 1));
        self.values.insert(id, value);
    }

    /// Adds a reference to `value` under `id`, as read back from the maps
    /// an earlier agent left.
    pub(super) fn adopt(&mut self, id: u32, value: K) {
        self.ids.entry(value.clone()).or_insert((id, 0)).1 += 1;
        self.values.insert(id, value);
        self.next = self.next.max(id);
    }

    /// Drops one reference to `id`; the value, when that was the last one
    /// (its entry is then to be removed, and the id is free again).
    pub(super) fn release(&mut self, id: u32) -> Option<K> {
        let value = self.values.get(&id)?;
        let (_, refs) = self.ids.get_mut(value)?;
        *refs -= 1;
        if *refs > 0 {
            return None;
        }
        let value = self.values.remove(&id)?;
        self.ids.remove(&value);
        self.free.push(id);
        Some(value)
    }

    pub(super) fn contains(&self, value: &K) -> bool {
        self.ids.contains_key(value)
    }

    /// Whether `id` is in use.
    pub(super) fn has_id(&self, id: u32) -> bool {
        self.values.contains_key(&id)
    }

    /// The id `value` has, if any.
    pub(super) fn id_of(&self, value: &K) -> Option<u32> {
        self.ids.get(value).map(|(id, _)| *id)
    }

    /// Distinct values with an id.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_keeps_its_id_while_referenced_and_frees_it_with_the_last_reference() {
        let mut ids = SharedIds::default();
        assert_eq!(ids.share(&"a"), None);
        let a = ids.reserve();
        assert_ne!(a, 0);
        ids.bind(a, "a");
        assert_eq!(ids.share(&"a"), Some(a));
        assert_eq!(ids.release(a), None, "one reference left");
        assert_eq!(ids.release(a), Some("a"));
        assert!(!ids.contains(&"a"));
        assert_eq!(ids.reserve(), a, "a freed id is used again");
    }

    #[test]
    fn adopted_values_count_every_reference_and_new_ids_come_after_them() {
        let mut ids = SharedIds::default();
        ids.adopt(7, "x");
        ids.adopt(7, "x");
        assert_eq!(ids.release(7), None);
        assert_eq!(ids.id_of(&"x"), Some(7));
        assert_eq!(ids.reserve(), 8);
        assert_eq!(ids.len(), 1);
    }
}

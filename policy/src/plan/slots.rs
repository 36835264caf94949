//! Numbers the maps use that must stay stable from one plan to the next:
//! a slot per NetworkPolicy (for its counters) and a class per ipBlock
//! boundary prefix. Like identities, a number keeps its meaning as long
//! as its policy or prefix is in use, and is not given a new meaning while
//! map entries written for the old one may still be there: the maps are
//! updated entry by entry, and a rule for class n must never meet an
//! ipcache entry that means something else by n.

use std::collections::{BTreeMap, BTreeSet};

use dualstack::Cidr;

use crate::compiled::NamespacedName;
use crate::maps::CLASS_BIT;

/// A CIDR class as the maps carry it (`CLASS_BIT` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CidrClass(pub u32);

impl CidrClass {
    pub fn new(n: u32) -> CidrClass {
        CidrClass(CLASS_BIT | n)
    }

    /// The number without the class bit.
    pub fn index(self) -> u32 {
        self.0 & !CLASS_BIT
    }
}

/// The slots and classes of one plan; give them to the next plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySlots {
    policies: BTreeMap<NamespacedName, u32>,
    classes: BTreeMap<Cidr, CidrClass>,
    /// The highest class index handed out so far (kept once unused):
    /// class numbers are plenty, so they are never reused.
    class_high_water: u32,
}

impl PolicySlots {
    /// Slots for exactly `policies` and classes for exactly `boundaries`,
    /// keeping `previous` numbers. A new policy gets the lowest slot that
    /// neither `previous` nor this table uses (slots index a fixed-size
    /// counter array, so they are reused, but never straight away); a new
    /// boundary gets a class above every one handed out before.
    pub(crate) fn allocate(
        previous: &PolicySlots,
        policies: &BTreeSet<NamespacedName>,
        boundaries: &BTreeSet<Cidr>,
    ) -> PolicySlots {
        let mut taken: BTreeSet<u32> = previous.policies.values().copied().collect();
        let mut free = 0u32..;
        let policies = policies
            .iter()
            .map(|name| {
                let slot = previous.slot_of(name).unwrap_or_else(|| {
                    let slot = free.by_ref().find(|n| !taken.contains(n)).expect("u32 slots suffice");
                    taken.insert(slot);
                    slot
                });
                (name.clone(), slot)
            })
            .collect();
        let mut class_high_water = previous.class_high_water;
        let classes = boundaries
            .iter()
            .map(|cidr| {
                let class = previous.class_of(cidr).unwrap_or_else(|| {
                    class_high_water += 1;
                    CidrClass::new(class_high_water)
                });
                (*cidr, class)
            })
            .collect();
        PolicySlots {
            policies,
            classes,
            class_high_water,
        }
    }

    /// The classes the maps hold (read back after an agent restart),
    /// with `high_water` the highest class index they mention anywhere.
    /// Policy slots cannot be read back: they start afresh.
    pub(crate) fn with_classes(classes: BTreeMap<Cidr, CidrClass>, high_water: u32) -> PolicySlots {
        PolicySlots {
            policies: BTreeMap::new(),
            class_high_water: classes.values().map(|c| c.index()).max().unwrap_or(0).max(high_water),
            classes,
        }
    }

    pub fn slot_of(&self, policy: &NamespacedName) -> Option<u32> {
        self.policies.get(policy).copied()
    }

    /// The policy a slot counts for.
    pub fn policy_at(&self, slot: u32) -> Option<&NamespacedName> {
        self.policies.iter().find(|(_, s)| **s == slot).map(|(name, _)| name)
    }

    pub fn policies(&self) -> impl Iterator<Item = (&NamespacedName, u32)> {
        self.policies.iter().map(|(name, slot)| (name, *slot))
    }

    pub fn class_of(&self, boundary: &Cidr) -> Option<CidrClass> {
        self.classes.get(boundary).copied()
    }

    /// Every boundary prefix with its class, sorted by prefix.
    pub fn classes(&self) -> impl Iterator<Item = (&Cidr, CidrClass)> {
        self.classes.iter().map(|(cidr, class)| (cidr, *class))
    }

    /// The boundaries whose first address lies within `cidr`: those inside
    /// it, and maybe wider ones starting where it starts (callers still
    /// check containment). Prefixes sort by address, then length, so this
    /// is one range of the table rather than a scan of it: with a thousand
    /// ipBlocks, each one's classes are found in microseconds.
    pub fn classes_starting_in(&self, cidr: &Cidr) -> impl Iterator<Item = (&Cidr, CidrClass)> {
        let first = Cidr::new(cidr.network(), 0).expect("a zero prefix length is valid");
        let last = Cidr::new(cidr.broadcast(), cidr.max_prefix_len()).expect("the family's own maximum is valid");
        self.classes.range(first..=last).map(|(cidr, class)| (cidr, *class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<NamespacedName> {
        list.iter().map(|n| NamespacedName::new("x", n)).collect()
    }

    fn cidrs(list: &[&str]) -> BTreeSet<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn slots_are_stable_and_reused_only_a_plan_later() {
        let first = PolicySlots::allocate(&PolicySlots::default(), &names(&["a", "b", "c"]), &cidrs(&[]));
        let slot = |s: &PolicySlots, n: &str| s.slot_of(&NamespacedName::new("x", n));
        assert_eq!(
            (slot(&first, "a"), slot(&first, "b"), slot(&first, "c")),
            (Some(0), Some(1), Some(2))
        );
        // b goes away and d arrives: d may not take b's slot yet.
        let second = PolicySlots::allocate(&first, &names(&["a", "c", "d"]), &cidrs(&[]));
        assert_eq!(
            (slot(&second, "a"), slot(&second, "c"), slot(&second, "d")),
            (Some(0), Some(2), Some(3))
        );
        assert_eq!(second.policy_at(3), Some(&NamespacedName::new("x", "d")));
        assert_eq!(second.policy_at(1), None);
        // A plan later, slot 1 is free for e.
        let third = PolicySlots::allocate(&second, &names(&["a", "c", "d", "e"]), &cidrs(&[]));
        assert_eq!(slot(&third, "e"), Some(1));
        assert_eq!(slot(&third, "d"), Some(3));
    }

    #[test]
    fn classes_are_stable_and_never_reused() {
        let first = PolicySlots::allocate(&PolicySlots::default(), &names(&[]), &cidrs(&["10.0.0.0/8", "::/0"]));
        let class = |s: &PolicySlots, c: &str| s.class_of(&c.parse().unwrap()).map(CidrClass::index);
        assert_eq!((class(&first, "10.0.0.0/8"), class(&first, "::/0")), (Some(1), Some(2)));
        let second = PolicySlots::allocate(&first, &names(&[]), &cidrs(&["0.0.0.0/0", "::/0"]));
        assert_eq!(
            (class(&second, "0.0.0.0/0"), class(&second, "::/0")),
            (Some(3), Some(2))
        );
        let third = PolicySlots::allocate(&second, &names(&[]), &cidrs(&["10.0.0.0/8"]));
        assert_eq!(class(&third, "10.0.0.0/8"), Some(4), "a class number never comes back");
        let restarted = PolicySlots::with_classes(third.classes.clone(), 2);
        assert_eq!(restarted.class_high_water, 4);
    }
}

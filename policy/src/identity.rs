//! Pod identities. The datapath cannot evaluate label selectors per packet,
//! so every pod is classified into an identity: a number standing for
//! everything a NetworkPolicy can observe about a pod apart from its IP —
//! its namespace (and so its namespace's labels), its labels and its named
//! container ports. Pods sharing all three (replicas, typically) are
//! indistinguishable to any policy and share one identity, which keeps
//! allow maps small; including the named ports makes egress named-port
//! resolution exact per identity.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::ports::NamedPort;
use crate::selector::Labels;

/// A numeric identity. `WORLD` (0) is any address that is not a known pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity(pub u32);

impl Identity {
    pub const WORLD: Identity = Identity(0);
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Identity::WORLD => f.write_str("world"),
            Identity(n) => write!(f, "#{n}"),
        }
    }
}

/// What an identity stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityKey {
    pub namespace: String,
    pub labels: Labels,
    pub named_ports: BTreeSet<NamedPort>,
}

/// The identities in use. Numbers are stable across compilations: a key
/// keeps its number as long as some pod has it, and new keys get numbers
/// above every number ever handed out by the previous table, so a number
/// is not reused while old map entries may still carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityTable {
    by_key: BTreeMap<IdentityKey, Identity>,
    /// The highest number handed out so far (kept even once it is unused).
    high_water: u32,
}

impl IdentityTable {
    /// The table for exactly `keys`, keeping `previous` numbers. New keys are
    /// numbered in key order, so the result depends only on the inputs.
    pub(crate) fn allocate(previous: &IdentityTable, keys: BTreeSet<IdentityKey>) -> IdentityTable {
        let mut high_water = previous.high_water;
        let by_key = keys
            .into_iter()
            .map(|key| {
                let identity = previous.get(&key).unwrap_or_else(|| {
                    high_water += 1;
                    Identity(high_water)
                });
                (key, identity)
            })
            .collect();
        IdentityTable { by_key, high_water }
    }

    pub fn get(&self, key: &IdentityKey) -> Option<Identity> {
        self.by_key.get(key).copied()
    }

    pub fn key_of(&self, identity: Identity) -> Option<&IdentityKey> {
        self.by_key.iter().find(|(_, id)| **id == identity).map(|(key, _)| key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IdentityKey, Identity)> {
        self.by_key.iter().map(|(key, id)| (key, *id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: &str, pod: &str) -> IdentityKey {
        IdentityKey {
            namespace: namespace.into(),
            labels: Labels::from([("pod".to_string(), pod.to_string())]),
            named_ports: BTreeSet::new(),
        }
    }

    #[test]
    fn numbers_are_stable_and_never_reused() {
        let first = IdentityTable::allocate(
            &IdentityTable::default(),
            BTreeSet::from([key("x", "a"), key("x", "b")]),
        );
        assert_eq!(first.get(&key("x", "a")), Some(Identity(1)));
        assert_eq!(first.get(&key("x", "b")), Some(Identity(2)));
        // x/a goes away, x/0 (sorting first) arrives: x/b keeps 2, x/0 gets 3.
        let second = IdentityTable::allocate(&first, BTreeSet::from([key("x", "0"), key("x", "b")]));
        assert_eq!(second.get(&key("x", "b")), Some(Identity(2)));
        assert_eq!(second.get(&key("x", "0")), Some(Identity(3)));
        assert_eq!(second.get(&key("x", "a")), None);
        assert_eq!(second.key_of(Identity(3)), Some(&key("x", "0")));
    }
}

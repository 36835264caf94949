//! Per-pod leases out of this node's blocks, one address per family.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use dualstack::{Cidr, IpFamily};
use serde::{Deserialize, Serialize};

use crate::Block;

/// What a lease belongs to: a container's interface, as CNI names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseKey {
    pub container_id: String,
    pub ifname: String,
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// One address handed to one pod interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub key: LeaseKey,
    pub address: IpAddr,
    /// The block it came from, for the prefix length and gateway.
    pub block: Cidr,
    /// `namespace/name` of the pod, when the runtime told us.
    pub pod: Option<String>,
}

impl Lease {
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.address)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("no free {family} address in this node's pod CIDR {block} ({leased} addresses leased); delete pods or give the node a larger block")]
    Exhausted { family: IpFamily, block: Cidr, leased: u64 },
    #[error("this node has no pod CIDR yet")]
    NoBlocks,
    #[error("two {0} blocks given; a node has at most one pod CIDR per family")]
    DuplicateFamily(IpFamily),
}

#[derive(Debug)]
struct FamilyPool {
    block: Block,
    leased: BTreeMap<u64, LeaseKey>,
    /// Where the last search ended: new addresses go round the block
    /// instead of reusing the most recently freed one, so a late packet
    /// for a deleted pod does not reach its successor.
    cursor: u64,
}

impl FamilyPool {
    fn next_free(&self) -> Option<u64> {
        let (first, last) = self.block.usable_range();
        let span = last + 1 - first;
        let after = self.cursor.saturating_add(1);
        let start = if (first..=last).contains(&after) { after } else { first };
        (0..span)
            .map(|i| first + (start - first + i) % span)
            .find(|o| !self.leased.contains_key(o))
    }
}

/// This node's pools: at most one block per family, and every lease.
#[derive(Debug)]
pub struct NodePools {
    pools: Vec<FamilyPool>,
    leases: BTreeMap<LeaseKey, Vec<Lease>>,
}

impl NodePools {
    pub fn new(blocks: Vec<Block>) -> Result<NodePools, AllocError> {
        let mut seen = BTreeSet::new();
        for b in &blocks {
            if !seen.insert(b.family()) {
                return Err(AllocError::DuplicateFamily(b.family()));
            }
        }
        Ok(NodePools {
            pools: blocks
                .into_iter()
                .map(|block| FamilyPool {
                    cursor: block.usable_range().0.saturating_sub(1),
                    block,
                    leased: BTreeMap::new(),
                })
                .collect(),
            leases: BTreeMap::new(),
        })
    }

    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.pools.iter().map(|p| &p.block)
    }

    /// Takes back leases read from the store after a restart. Returns the
    /// ones that cannot be honoured (outside every block, on a reserved
    /// address, or an address already restored for another key), which the
    /// caller deletes.
    pub fn restore(&mut self, leases: impl IntoIterator<Item = Lease>) -> Vec<Lease> {
        let mut rejected = Vec::new();
        for lease in leases {
            let pool = self.pools.iter_mut().find(|p| p.block.is_usable(&lease.address));
            let Some(pool) = pool else {
                rejected.push(lease);
                continue;
            };
            let offset = pool.block.offset_of(&lease.address).expect("usable implies inside");
            if pool.leased.contains_key(&offset) {
                rejected.push(lease);
                continue;
            }
            pool.leased.insert(offset, lease.key.clone());
            pool.cursor = pool.cursor.max(offset);
            self.leases.entry(lease.key.clone()).or_default().push(lease);
        }
        rejected
    }

    /// One address per family for `key`. Asking again for a key that holds
    /// leases returns those leases: a retried ADD must not leak addresses.
    /// If any family is exhausted, nothing is allocated.
    pub fn allocate(&mut self, key: &LeaseKey, pod: Option<&str>) -> Result<Vec<Lease>, AllocError> {
        if let Some(existing) = self.leases.get(key) {
            return Ok(existing.clone());
        }
        if self.pools.is_empty() {
            return Err(AllocError::NoBlocks);
        }
        let mut picked = Vec::with_capacity(self.pools.len());
        for pool in &self.pools {
            match pool.next_free() {
                Some(offset) => picked.push(offset),
                None => {
                    return Err(AllocError::Exhausted {
                        family: pool.block.family(),
                        block: pool.block.cidr(),
                        leased: pool.leased.len() as u64,
                    })
                }
            }
        }
        let leases: Vec<Lease> = self
            .pools
            .iter_mut()
            .zip(picked)
            .map(|(pool, offset)| {
                pool.leased.insert(offset, key.clone());
                pool.cursor = offset;
                Lease {
                    key: key.clone(),
                    address: pool.block.at(offset),
                    block: pool.block.cidr(),
                    pod: pod.map(str::to_string),
                }
            })
            .collect();
        self.leases.insert(key.clone(), leases.clone());
        Ok(leases)
    }

    /// Releases `key`'s addresses, returning them (empty if none: releasing
    /// twice is fine, as CNI DEL must be).
    pub fn release(&mut self, key: &LeaseKey) -> Vec<Lease> {
        let leases = self.leases.remove(key).unwrap_or_default();
        for lease in &leases {
            for pool in &mut self.pools {
                if let Some(offset) = pool.block.offset_of(&lease.address) {
                    pool.leased.remove(&offset);
                }
            }
        }
        leases
    }

    /// Releases every lease for which `keep` is false; returns them.
    pub fn retain(&mut self, mut keep: impl FnMut(&Lease) -> bool) -> Vec<Lease> {
        let gone: Vec<LeaseKey> = self
            .leases
            .iter()
            .filter(|(_, ls)| ls.iter().any(|l| !keep(l)))
            .map(|(k, _)| k.clone())
            .collect();
        gone.iter().flat_map(|k| self.release(k)).collect()
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values().flatten()
    }

    pub fn get(&self, key: &LeaseKey) -> Option<&[Lease]> {
        self.leases.get(key).map(Vec::as_slice)
    }

    /// Free addresses of `family`, or None when the node has no such block.
    pub fn free(&self, family: IpFamily) -> Option<u64> {
        let pool = self.pools.iter().find(|p| p.block.family() == family)?;
        Some(pool.block.usable() - pool.leased.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> LeaseKey {
        LeaseKey {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn pools(cidrs: &[&str]) -> NodePools {
        NodePools::new(cidrs.iter().map(|c| Block::new(c.parse().unwrap()).unwrap()).collect()).unwrap()
    }

    #[test]
    fn dual_stack_allocation_skips_reserved_and_is_idempotent() {
        let mut p = pools(&["10.42.0.0/24", "fd00:42::/64"]);
        let a = p.allocate(&key("a"), Some("default/web")).unwrap();
        let addrs: Vec<String> = a.iter().map(|l| l.address.to_string()).collect();
        assert_eq!(addrs, ["10.42.0.2", "fd00:42::2"]);
        assert_eq!(a[0].pod.as_deref(), Some("default/web"));
        assert_eq!(
            p.allocate(&key("a"), None).unwrap(),
            a,
            "a retried ADD gets the same leases"
        );
        let b = p.allocate(&key("b"), None).unwrap();
        assert_eq!(b[0].address.to_string(), "10.42.0.3");
        assert_eq!(p.free(IpFamily::V4), Some(251));
    }

    #[test]
    fn freed_addresses_are_not_reused_at_once() {
        let mut p = pools(&["10.0.0.0/29"]); // usable .2 ..= .6
        let first = p.allocate(&key("a"), None).unwrap()[0].address;
        p.release(&key("a"));
        let second = p.allocate(&key("b"), None).unwrap()[0].address;
        assert_ne!(first, second);
    }

    #[test]
    fn exhaustion_is_clear_and_allocates_nothing() {
        let mut p = pools(&["10.0.0.0/29", "fd00::/125"]); // 5 v4, 6 v6
        for i in 0..5 {
            p.allocate(&key(&i.to_string()), None).unwrap();
        }
        let err = p.allocate(&key("x"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free IPv4 address in this node's pod CIDR 10.0.0.0/29 (5 addresses leased); delete pods or give the node a larger block"
        );
        assert_eq!(p.free(IpFamily::V6), Some(1), "the IPv6 address was not taken");
        assert!(p.release(&key("x")).is_empty());
        p.release(&key("3"));
        assert!(p.allocate(&key("x"), None).is_ok());
    }

    #[test]
    fn every_address_distinct_until_full() {
        let mut p = pools(&["10.0.0.0/24"]);
        let mut seen = BTreeSet::new();
        for i in 0..253 {
            assert!(seen.insert(p.allocate(&key(&i.to_string()), None).unwrap()[0].address));
        }
        assert!(p.allocate(&key("full"), None).is_err());
    }

    #[test]
    fn restore_rejects_conflicts_and_strays() {
        let mut p = pools(&["10.0.0.0/24"]);
        let lease = |id: &str, a: &str| Lease {
            key: key(id),
            address: a.parse().unwrap(),
            block: "10.0.0.0/24".parse().unwrap(),
            pod: None,
        };
        let rejected = p.restore([
            lease("a", "10.0.0.7"),
            lease("b", "10.0.0.7"),
            lease("c", "10.9.0.7"),
            lease("d", "10.0.0.1"),
        ]);
        let ids: Vec<&str> = rejected.iter().map(|l| l.key.container_id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "d"]);
        let next = p.allocate(&key("e"), None).unwrap()[0].address.to_string();
        assert_eq!(next, "10.0.0.8", "allocation continues after restored leases");
    }

    #[test]
    fn retain_releases_what_gc_drops() {
        let mut p = pools(&["10.0.0.0/24", "fd00::/64"]);
        p.allocate(&key("live"), None).unwrap();
        p.allocate(&key("dead"), None).unwrap();
        let gone = p.retain(|l| l.key.container_id == "live");
        assert_eq!(gone.len(), 2);
        assert_eq!(p.leases().count(), 2);
    }
}

//! Which Service holds which LoadBalancer IP. An address, once a
//! Service's, stays its while it still fits what the Service asks for: a
//! Service asking for an address another holds gets a conflict, never the
//! address, so one Service's request never disturbs another's traffic.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::IpAddr;

use dualstack::IpFamily;

use super::{Conflict, Pool, Request};

/// What a Service got: its addresses in its family order, and why it
/// lacks any it should have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub addresses: Vec<IpAddr>,
    pub conflicts: Vec<Conflict>,
}

/// The allocation of a pool to Services, keyed by `K` (namespace/name).
#[derive(Debug, Clone)]
pub struct Allocator<K> {
    pool: Pool,
    holders: BTreeMap<IpAddr, K>,
    held: BTreeMap<K, Vec<IpAddr>>,
}

impl<K: Ord + Clone + Display> Allocator<K> {
    pub fn new(pool: Pool) -> Allocator<K> {
        Allocator {
            pool,
            holders: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Records addresses `owner` already has (its status, read at start).
    /// Those outside the pool, or recorded for another Service already,
    /// are not recorded; they are returned.
    pub fn restore(&mut self, owner: &K, addresses: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
        let mut refused = Vec::new();
        for address in addresses {
            let family = IpFamily::of(&address);
            let held = self.held.entry(owner.clone()).or_default();
            let has_family = held.iter().any(|a| IpFamily::of(a) == family);
            if !self.pool.contains(&address) || self.holders.contains_key(&address) || has_family {
                refused.push(address);
                continue;
            }
            held.push(address);
            self.holders.insert(address, owner.clone());
        }
        self.held.retain(|_, held| !held.is_empty());
        refused
    }

    /// Gives `owner` one address per family of `request`: the one it holds
    /// if that still fits; else the one it asks for, if in the pool and
    /// free; else, asking for none, the lowest free one. A family it cannot
    /// have an address of is a conflict, and it goes without one.
    pub fn assign(&mut self, owner: &K, request: &Request) -> Assignment {
        let before = self.release(owner);
        let mut out = Assignment::default();
        for address in &request.wanted {
            let family = IpFamily::of(address);
            if !request.families.contains(&family) {
                let families: Vec<&str> = request.families.iter().map(|f| f.as_k8s()).collect();
                out.conflicts.push(Conflict::FamilyNotServed {
                    address: *address,
                    family,
                    families: format!("[{}]", families.join(", ")),
                });
            }
        }
        for &family in &request.families {
            let wanted = request.wanted(family);
            let kept = before
                .iter()
                .copied()
                .find(|a| IpFamily::of(a) == family && wanted.is_none_or(|w| w == *a));
            match kept.map(Ok).unwrap_or_else(|| self.pick(family, wanted)) {
                Ok(address) => {
                    self.holders.insert(address, owner.clone());
                    out.addresses.push(address);
                }
                Err(conflict) => out.conflicts.push(conflict),
            }
        }
        if !out.addresses.is_empty() {
            self.held.insert(owner.clone(), out.addresses.clone());
        }
        out
    }

    /// A free address of `family`: `wanted` if it names one.
    fn pick(&self, family: IpFamily, wanted: Option<IpAddr>) -> Result<IpAddr, Conflict> {
        match wanted {
            Some(address) if !self.pool.contains(&address) => Err(Conflict::OutsidePool { address }),
            Some(address) => match self.holders.get(&address) {
                Some(owner) => Err(Conflict::InUse {
                    address,
                    owner: owner.to_string(),
                }),
                None => Ok(address),
            },
            None if !self.pool.has_family(family) => Err(Conflict::NoRange { family }),
            None => self
                .pool
                .first_free(family, |a| self.holders.contains_key(a))
                .ok_or(Conflict::Exhausted { family }),
        }
    }

    /// Frees every address of `owner`; returns them.
    pub fn release(&mut self, owner: &K) -> Vec<IpAddr> {
        let addresses = self.held.remove(owner).unwrap_or_default();
        for a in &addresses {
            self.holders.remove(a);
        }
        addresses
    }

    /// The addresses `owner` holds, in its family order.
    pub fn addresses(&self, owner: &K) -> &[IpAddr] {
        self.held.get(owner).map(Vec::as_slice).unwrap_or_default()
    }

    /// Every Service holding an address.
    pub fn owners(&self) -> impl Iterator<Item = &K> {
        self.held.keys()
    }

    /// How many addresses of `family` are held.
    pub fn allocated(&self, family: IpFamily) -> usize {
        self.holders.keys().filter(|a| IpFamily::of(a) == family).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool() -> Pool {
        Pool::parse(&["192.0.2.10-192.0.2.11", "fd00::10-fd00::11"]).unwrap()
    }

    fn dual(wanted: &[&str]) -> Request {
        Request {
            families: vec![IpFamily::V4, IpFamily::V6],
            wanted: wanted.iter().map(|a| ip(a)).collect(),
        }
    }

    fn v4(wanted: &[&str]) -> Request {
        Request {
            families: vec![IpFamily::V4],
            ..dual(wanted)
        }
    }

    fn got(a: &Assignment) -> Vec<String> {
        a.addresses.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_address_per_family_lowest_free_first_and_kept() {
        let mut alloc: Allocator<String> = Allocator::new(pool());
        let web = alloc.assign(&"demo/web".into(), &dual(&[]));
        assert_eq!(got(&web), ["192.0.2.10", "fd00::10"]);
        assert!(web.conflicts.is_empty());
        let api = alloc.assign(&"demo/api".into(), &v4(&[]));
        assert_eq!(got(&api), ["192.0.2.11"]);
        // Asked again (each pass does), a Service keeps what it has.
        assert_eq!(alloc.assign(&"demo/web".into(), &dual(&[])), web);
        assert_eq!((alloc.allocated(IpFamily::V4), alloc.allocated(IpFamily::V6)), (2, 1));
        // Released, an address is the next one handed out.
        assert_eq!(alloc.release(&"demo/web".into()), [ip("192.0.2.10"), ip("fd00::10")]);
        assert_eq!(got(&alloc.assign(&"demo/new".into(), &v4(&[]))), ["192.0.2.10"]);
    }

    #[test]
    fn requested_addresses_are_honoured_when_in_the_pool_and_free() {
        let mut alloc: Allocator<String> = Allocator::new(pool());
        let web = alloc.assign(&"demo/web".into(), &dual(&["192.0.2.11", "fd00::11"]));
        assert_eq!(got(&web), ["192.0.2.11", "fd00::11"]);
        // A changed request moves the Service to the new address.
        let moved = alloc.assign(&"demo/web".into(), &dual(&["192.0.2.10"]));
        assert_eq!(got(&moved), ["192.0.2.10", "fd00::11"]);
        assert_eq!(
            got(&alloc.assign(&"demo/other".into(), &v4(&[]))),
            ["192.0.2.11"],
            "the address it left is free"
        );
    }

    #[test]
    fn conflicts_leave_the_service_without_that_address_and_others_undisturbed() {
        let mut alloc: Allocator<String> = Allocator::new(pool());
        let web = alloc.assign(&"demo/web".into(), &dual(&[]));
        let cases = [
            (
                v4(&["192.0.2.10"]),
                "requested 192.0.2.10 is already allocated to Service demo/web",
            ),
            (
                v4(&["198.51.100.1"]),
                "requested 198.51.100.1 is not in services.loadBalancerPools",
            ),
            (
                v4(&["fd00::11"]),
                "requested fd00::11 is IPv6, but the Service's ipFamilies are [IPv4]",
            ),
        ];
        for (request, want) in cases {
            let dup = alloc.assign(&"demo/dup".into(), &request);
            assert_eq!(dup.conflicts.len(), 1, "{dup:?}");
            assert!(dup.conflicts[0].to_string().contains(want), "{}", dup.conflicts[0]);
            assert_eq!(
                alloc.addresses(&"demo/web".into()),
                web.addresses,
                "web keeps its addresses"
            );
        }
        // The family it asked about wrongly aside, it gets an IPv4 address.
        assert_eq!(
            got(&alloc.assign(&"demo/dup".into(), &v4(&["fd00::11"]))),
            ["192.0.2.11"]
        );
        // The pool is out of IPv4 addresses; IPv6 still has one.
        let third = alloc.assign(&"demo/third".into(), &dual(&[]));
        assert_eq!(got(&third), ["fd00::11"]);
        assert_eq!(third.conflicts, [Conflict::Exhausted { family: IpFamily::V4 }]);
        assert!(third.conflicts[0].to_string().contains("no IPv4 address left"));
        // A pool without IPv6 says so.
        let mut v4_only: Allocator<String> = Allocator::new(Pool::parse(&["192.0.2.10"]).unwrap());
        let dual_stack = v4_only.assign(&"demo/web".into(), &dual(&[]));
        assert_eq!(got(&dual_stack), ["192.0.2.10"]);
        assert_eq!(dual_stack.conflicts, [Conflict::NoRange { family: IpFamily::V6 }]);
        assert_eq!(dual_stack.conflicts[0].reason(), "no-range");
    }

    #[test]
    fn restored_statuses_come_first_and_doubles_are_refused() {
        let mut alloc: Allocator<String> = Allocator::new(pool());
        assert!(alloc
            .restore(&"demo/web".into(), [ip("192.0.2.11"), ip("fd00::10")])
            .is_empty());
        // Another Service's status claims the same address, and one outside
        // the pool: neither is recorded.
        assert_eq!(
            alloc.restore(&"demo/copy".into(), [ip("192.0.2.11"), ip("203.0.113.1")]),
            [ip("192.0.2.11"), ip("203.0.113.1")]
        );
        assert_eq!(alloc.owners().collect::<Vec<_>>(), ["demo/web"]);
        assert_eq!(
            got(&alloc.assign(&"demo/web".into(), &dual(&[]))),
            ["192.0.2.11", "fd00::10"],
            "the restored addresses are kept"
        );
        assert_eq!(got(&alloc.assign(&"demo/copy".into(), &v4(&[]))), ["192.0.2.10"]);
    }
}

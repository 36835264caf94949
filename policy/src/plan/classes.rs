//! ipBlocks as CIDR classes. The datapath cannot test an address against
//! every ipBlock, but CIDRs are always nested or disjoint, so which
//! ipBlocks contain an address depends only on the longest *boundary*
//! prefix (any ipBlock's cidr or except) containing it. Each boundary is a
//! class, put in the ipcache trie, where a lookup finds the longest one;
//! rules name the classes their ipBlock matches.
//!
//! Everything is family-aware: an IPv4 address is never in an IPv6 cidr.
//! Two roots, 0.0.0.0/0 and ::/0, are always boundaries, so every address
//! has a class of its own family.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use dualstack::Cidr;

use super::slots::{CidrClass, PolicySlots};
use crate::compiled::{AllowRule, PeerSet};
use crate::peers::IpBlockPeer;

/// The class of the addresses outside every IPv4, and every IPv6, boundary.
pub fn roots() -> [Cidr; 2] {
    [
        "0.0.0.0/0".parse().expect("a valid CIDR"),
        "::/0".parse().expect("a valid CIDR"),
    ]
}

/// The maps hold IPv4 as v4-mapped IPv6, so an IPv6 prefix of at least 96
/// bits inside ::ffff:0:0/96 would land among IPv4 prefixes. Such
/// addresses never appear in IPv6 packets on the wire; those boundaries
/// are left out, and their ipBlocks match no IPv6 address here.
fn in_v4_mapped_space(cidr: &Cidr) -> bool {
    match cidr {
        Cidr::V4(_) => false,
        Cidr::V6(net) => net.prefix_len() >= 96 && net.addr().to_ipv4_mapped().is_some(),
    }
}

/// Every boundary of the ipBlocks in `rules`, roots included.
pub fn boundaries<'a>(rules: impl Iterator<Item = &'a AllowRule>) -> BTreeSet<Cidr> {
    let mut found: BTreeSet<Cidr> = roots().into_iter().collect();
    for rule in rules {
        if let PeerSet::IpBlock(block) = &rule.peers {
            found.insert(block.cidr);
            found.extend(block.except.iter().copied());
        }
    }
    found.retain(|cidr| !in_v4_mapped_space(cidr));
    found
}

/// The classes of one plan.
pub struct Classes<'a> {
    slots: &'a PolicySlots,
}

impl<'a> Classes<'a> {
    pub fn new(slots: &'a PolicySlots) -> Classes<'a> {
        Classes { slots }
    }

    /// The classes whose addresses `block` contains: those inside its
    /// cidr but inside none of its excepts.
    pub fn matching(&self, block: &IpBlockPeer) -> Vec<CidrClass> {
        self.slots
            .classes_starting_in(&block.cidr)
            .filter(|(class, _)| block.cidr.contains(*class) && !block.except.iter().any(|e| e.contains(*class)))
            .map(|(_, number)| number)
            .collect()
    }

    /// The class of `ip`: that of the longest boundary containing it.
    pub fn of(&self, ip: &IpAddr) -> Option<CidrClass> {
        self.slots
            .classes()
            .filter(|(cidr, _)| cidr.contains(ip))
            .max_by_key(|(cidr, _)| cidr.prefix_len())
            .map(|(_, class)| class)
    }

    /// The ipcache entries of the boundaries themselves: prefix -> class.
    pub fn entries(&self) -> BTreeMap<Cidr, CidrClass> {
        self.slots.classes().map(|(cidr, class)| (*cidr, class)).collect()
    }
}

/// `ip` as a one-address prefix.
pub fn host(ip: IpAddr) -> Cidr {
    Cidr::from(ip)
}

/// Whether an IPv6 pod address could be told apart from IPv4 in the maps.
pub fn representable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => Ipv6Addr::to_ipv4_mapped(v6).is_none(),
    }
}

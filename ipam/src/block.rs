//! One node block: the CIDR this node hands pod addresses out of, and which
//! of its addresses are never handed out.

use std::net::IpAddr;

use dualstack::{Cidr, IpFamily};

/// A node's pod CIDR for one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    cidr: Cidr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("pod CIDR {0} is too small: it holds no pod address besides the reserved ones")]
    TooSmall(Cidr),
}

impl Block {
    pub fn new(cidr: Cidr) -> Result<Block, BlockError> {
        let block = Block { cidr: cidr.trunc() };
        if block.usable() == 0 {
            return Err(BlockError::TooSmall(cidr));
        }
        Ok(block)
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.cidr.addr())
    }

    /// Addresses are handed out from the first 2^32 of a block: an IPv6
    /// /64 holds far more than a node will ever run, and a bounded window
    /// keeps offsets in a u64 and the free-address count meaningful.
    const MAX_WINDOW_BITS: u8 = 32;

    fn window_bits(&self) -> u8 {
        (self.family().bits() - self.cidr.prefix_len()).min(Self::MAX_WINDOW_BITS)
    }

    /// Number of addresses in the allocation window (the whole block,
    /// except for IPv6 blocks larger than 2^32).
    pub fn size(&self) -> u64 {
        1u64 << self.window_bits()
    }

    /// The block's gateway: its first address after the network address.
    /// It belongs to the node, never to a pod.
    pub fn gateway(&self) -> IpAddr {
        self.at(1)
    }

    /// Offsets `[first, last]` that may be handed to pods: not the network
    /// address, not the gateway, and for IPv4 not the broadcast address.
    pub(crate) fn usable_range(&self) -> (u64, u64) {
        let last = match self.family() {
            IpFamily::V4 => self.size().saturating_sub(2),
            IpFamily::V6 => self.size() - 1,
        };
        (2, last)
    }

    pub fn usable(&self) -> u64 {
        let (first, last) = self.usable_range();
        (last + 1).saturating_sub(first)
    }

    /// The address at `offset` from the network address.
    pub(crate) fn at(&self, offset: u64) -> IpAddr {
        match self.cidr.network() {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) + offset as u32).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) + u128::from(offset)).into()),
        }
    }

    /// The offset of `addr` in the block, if it is inside.
    pub(crate) fn offset_of(&self, addr: &IpAddr) -> Option<u64> {
        if !self.cidr.contains(addr) {
            return None;
        }
        Some(match (self.cidr.network(), addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u64::from(u32::from(*a) - u32::from(n)),
            (IpAddr::V6(n), IpAddr::V6(a)) => u64::try_from(u128::from(*a) - u128::from(n)).ok()?,
            _ => unreachable!("contains() checked the family"),
        })
    }

    pub fn is_usable(&self, addr: &IpAddr) -> bool {
        let (first, last) = self.usable_range();
        self.offset_of(addr).is_some_and(|o| (first..=last).contains(&o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(s: &str) -> Block {
        Block::new(s.parse().unwrap()).unwrap()
    }

    #[test]
    fn ipv4_reserves_network_gateway_and_broadcast() {
        let b = block("10.42.3.0/24");
        assert_eq!(b.gateway().to_string(), "10.42.3.1");
        assert_eq!(b.usable(), 253);
        assert!(!b.is_usable(&"10.42.3.0".parse().unwrap()));
        assert!(!b.is_usable(&"10.42.3.1".parse().unwrap()));
        assert!(b.is_usable(&"10.42.3.2".parse().unwrap()));
        assert!(b.is_usable(&"10.42.3.254".parse().unwrap()));
        assert!(!b.is_usable(&"10.42.3.255".parse().unwrap()));
        assert!(!b.is_usable(&"10.42.4.2".parse().unwrap()));
    }

    #[test]
    fn ipv6_has_no_broadcast() {
        let b = block("fd00:42::/120");
        assert_eq!(b.usable(), 254);
        assert!(b.is_usable(&"fd00:42::ff".parse().unwrap()));
        assert_eq!(b.gateway().to_string(), "fd00:42::1");
    }

    #[test]
    fn tiny_and_huge_blocks_are_refused() {
        assert!(matches!(
            Block::new("10.0.0.0/31".parse().unwrap()),
            Err(BlockError::TooSmall(_))
        ));
        assert!(matches!(Block::new("10.0.0.0/30".parse().unwrap()), Ok(b) if b.usable() == 1));
        let wide = block("fd00::/64");
        assert_eq!(wide.usable(), (1 << 32) - 2);
        assert!(wide.is_usable(&"fd00::ffff:fffe".parse().unwrap()));
        assert!(!wide.is_usable(&"fd00::1:0:0".parse().unwrap()), "outside the window");
    }
}

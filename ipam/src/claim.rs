//! Choosing a block for a node that the cluster did not give pod CIDRs:
//! the first block of the cluster CIDR that no other node holds, starting
//! at a place derived from the node name so that nodes starting together
//! rarely race for the same block. The Kubernetes API arbitrates the race
//! that remains (the agent writes its claim with optimistic concurrency).

use std::collections::BTreeSet;

use dualstack::Cidr;
use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("cluster CIDR {cidr} has no free /{mask} block: all {blocks} are held by other nodes")]
    Full { cidr: Cidr, mask: u8, blocks: u128 },
    #[error("a /{mask} block does not fit in cluster CIDR {cidr}")]
    BadMask { cidr: Cidr, mask: u8 },
}

/// Blocks scanned at most; a cluster CIDR with more blocks than this is
/// searched only from the node's starting point onwards.
const MAX_SCAN: u128 = 1 << 20;

/// The block this node should claim, given the blocks `taken` by others.
pub fn claim_block(cluster: Cidr, mask: u8, taken: &BTreeSet<Cidr>, node: &str) -> Result<Cidr, ClaimError> {
    let bits = match cluster {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    };
    if mask < cluster.prefix_len() || mask > bits {
        return Err(ClaimError::BadMask { cidr: cluster, mask });
    }
    let count: u128 = 1u128
        .checked_shl(u32::from(mask - cluster.prefix_len()))
        .unwrap_or(u128::MAX);
    let start = u128::from(fnv1a(node)) % count;
    let scan = count.min(MAX_SCAN);
    (0..scan)
        .map(|i| nth_block(cluster, mask, (start + i) % count))
        .find(|b| {
            !taken
                .iter()
                .any(|t| t.contains(&b.network()) || b.contains(&t.network()))
        })
        .ok_or(ClaimError::Full {
            cidr: cluster,
            mask,
            blocks: count,
        })
}

fn nth_block(cluster: Cidr, mask: u8, n: u128) -> Cidr {
    match cluster {
        IpNet::V4(c) => {
            let base = u32::from(c.network());
            let step = 1u32.checked_shl(32 - u32::from(mask)).unwrap_or(0);
            let addr = base.wrapping_add((n as u32).wrapping_mul(step));
            IpNet::new(std::net::Ipv4Addr::from(addr).into(), mask).expect("mask checked")
        }
        IpNet::V6(c) => {
            let base = u128::from(c.network());
            let step = 1u128.checked_shl(128 - u32::from(mask)).unwrap_or(0);
            let addr = base.wrapping_add(n.wrapping_mul(step));
            IpNet::new(std::net::Ipv6Addr::from(addr).into(), mask).expect("mask checked")
        }
    }
}

/// FNV-1a: stable across releases and platforms, unlike std's hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn claims_a_free_block_of_the_right_size() {
        let b = claim_block(c("10.42.0.0/16"), 24, &BTreeSet::new(), "node-a").unwrap();
        assert_eq!(b.prefix_len(), 24);
        assert!(c("10.42.0.0/16").contains(&b.network()));
        let again = claim_block(c("10.42.0.0/16"), 24, &BTreeSet::new(), "node-a").unwrap();
        assert_eq!(b, again, "the choice is stable for a node");
    }

    #[test]
    fn never_takes_a_held_block() {
        let cluster = c("10.42.0.0/22"); // four /24s
        let mut taken = BTreeSet::new();
        for node in ["a", "b", "c", "d"] {
            let b = claim_block(cluster, 24, &taken, node).unwrap();
            assert!(taken.insert(b), "{b} handed out twice");
        }
        let err = claim_block(cluster, 24, &taken, "e").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cluster CIDR 10.42.0.0/22 has no free /24 block: all 4 are held by other nodes"
        );
    }

    #[test]
    fn ipv6_blocks_and_bad_masks() {
        let b = claim_block(c("fd00:42::/56"), 64, &BTreeSet::new(), "n").unwrap();
        assert_eq!(b.prefix_len(), 64);
        assert!(c("fd00:42::/56").contains(&b.network()));
        assert!(matches!(
            claim_block(c("10.0.0.0/16"), 8, &BTreeSet::new(), "n"),
            Err(ClaimError::BadMask { .. })
        ));
    }

    #[test]
    fn overlapping_claims_of_other_sizes_count_as_taken() {
        let cluster = c("10.0.0.0/23");
        let taken: BTreeSet<Cidr> = [c("10.0.0.0/23")].into();
        assert!(claim_block(cluster, 24, &taken, "n").is_err());
    }
}

//! Maglev tables (Eisenbud et al., NSDI 2016) for traffic from outside
//! (bpf/lb.h, bpf/maglev.h): each backend walks the table in an order of
//! its own, derived from its address and port alone, and the backends
//! take turns claiming the next free entry of their order. Every node with
//! the same endpoints builds the same table, whatever order it learnt
//! them in; the backends' shares differ by at most one entry; and when a
//! backend comes or goes, most entries of the others stay where they were,
//! so few established flows move.

use std::net::IpAddr;

use crate::plan::Backend;

/// Entries per table (`LB_MAGLEV_SIZE` in lb.h; prime).
pub const TABLE_SIZE: usize = crate::maps::MAGLEV_SIZE;

/// For each entry of the table, the index into `backends` of the backend
/// it sends to; empty when there are no backends.
pub fn populate(backends: &[Backend]) -> Vec<usize> {
    if backends.is_empty() {
        return Vec::new();
    }
    let m = TABLE_SIZE as u64;
    // Turns go in address order, not the caller's, so the table depends on
    // the set of backends only.
    let mut order: Vec<usize> = (0..backends.len()).collect();
    order.sort_by_key(|&i| (backends[i].address, backends[i].port));
    order.dedup_by_key(|i| (backends[*i].address, backends[*i].port));
    let walks: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| {
            let bytes = identity(&backends[i]);
            let offset = hash(OFFSET_SEED, &bytes) % m;
            let skip = hash(SKIP_SEED, &bytes) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut steps = vec![0u64; order.len()];
    let mut table = vec![usize::MAX; TABLE_SIZE];
    let mut filled = 0;
    loop {
        for (turn, &backend) in order.iter().enumerate() {
            let (offset, skip) = walks[turn];
            // `skip` is below the prime `m`, so each walk visits every
            // entry and a free one is always found.
            let mut entry = ((offset + steps[turn] * skip) % m) as usize;
            while table[entry] != usize::MAX {
                steps[turn] += 1;
                entry = ((offset + steps[turn] * skip) % m) as usize;
            }
            table[entry] = backend;
            steps[turn] += 1;
            filled += 1;
            if filled == TABLE_SIZE {
                return table;
            }
        }
    }
}

const OFFSET_SEED: u64 = 0x6f66_6673_6574;
const SKIP_SEED: u64 = 0x736b_6970;

/// What names a backend the same on every node: its address and port.
fn identity(backend: &Backend) -> Vec<u8> {
    let mut bytes = match backend.address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    bytes.extend(backend.port.to_be_bytes());
    bytes
}

/// FNV-1a, then a 64-bit finalizer so that addresses differing in one
/// low byte still land far apart. Fixed: nodes of different builds must
/// agree.
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                address: format!("10.42.{}.{}", i / 200, i % 200 + 2).parse().unwrap(),
                port: 8080,
                remote: i % 2 == 1,
            })
            .collect()
    }

    /// The backend (not its index) behind every entry.
    fn resolved(backends: &[Backend]) -> Vec<(IpAddr, u16)> {
        populate(backends)
            .into_iter()
            .map(|i| (backends[i].address, backends[i].port))
            .collect()
    }

    #[test]
    fn every_entry_is_filled_and_shares_differ_by_at_most_one() {
        for n in [1, 2, 3, 7, 10, 100] {
            let table = populate(&backends(n));
            assert_eq!(table.len(), TABLE_SIZE);
            let mut shares = vec![0usize; n];
            for i in table {
                shares[i] += 1;
            }
            let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(max - min <= 1, "{n} backends: shares {min}..{max}");
        }
    }

    #[test]
    fn the_table_depends_on_the_set_of_backends_not_their_order_or_locality() {
        let ours = backends(5);
        let mut theirs = ours.clone();
        theirs.reverse();
        // Another node sees the same endpoints with locality flipped.
        for b in &mut theirs {
            b.remote = !b.remote;
        }
        assert_eq!(resolved(&ours), resolved(&theirs));
    }

    #[test]
    fn a_backend_leaving_moves_little_more_than_its_own_entries() {
        for n in [3, 10, 50] {
            let all = backends(n);
            let before = resolved(&all);
            let gone = all[n / 2];
            let rest: Vec<Backend> = all.iter().copied().filter(|b| *b != gone).collect();
            let after = resolved(&rest);
            let its_own = before.iter().filter(|b| b.0 == gone.address).count();
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            // Exactly its entries must move; Maglev moves a few more, far
            // fewer than a modulo table would (about all of them).
            assert!(moved >= its_own);
            assert!(
                moved - its_own <= TABLE_SIZE / 10,
                "{n} backends: {moved} entries moved, {its_own} of them the leaver's"
            );
        }
    }

    #[test]
    fn a_backend_joining_takes_its_share_mostly_from_others_evenly() {
        let all = backends(8);
        let before = resolved(&all[..7]);
        let after = resolved(&all);
        let taken = after.iter().filter(|b| b.0 == all[7].address).count();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(taken >= TABLE_SIZE / 8);
        assert!(
            moved - taken <= TABLE_SIZE / 10,
            "{moved} moved, {taken} to the newcomer"
        );
    }
}

//! The pool LoadBalancer IPs are allocated from: ranges of addresses in
//! either family, written as CIDRs (`192.0.2.0/28`), ranges
//! (`192.0.2.10-192.0.2.20`) or single addresses.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use dualstack::IpFamily;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("{value:?} is not a CIDR (192.0.2.0/28), a range (192.0.2.10-192.0.2.20) or an address")]
    Syntax { value: String },
    #[error("{value:?} has host bits set; did you mean {network}?")]
    HostBits { value: String, network: dualstack::Cidr },
    #[error("{value:?} mixes IPv4 and IPv6; give each family its own range")]
    MixedFamilies { value: String },
    #[error("{value:?} ends before it starts")]
    Backwards { value: String },
    #[error("{first} and {second} overlap; list each address once")]
    Overlap { first: String, second: String },
}

/// One contiguous range of the pool, both ends included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRange {
    first: IpAddr,
    last: IpAddr,
    /// As the user wrote it, for messages.
    written: String,
}

impl AddressRange {
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.first)
    }

    pub fn contains(&self, address: &IpAddr) -> bool {
        IpFamily::of(address) == self.family() && (self.first..=self.last).contains(address)
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u128 {
        number(self.last) - number(self.first) + 1
    }

    /// The lowest address in the range that is not `taken`. Costs one
    /// step per taken address, so even a /64 stays cheap.
    fn first_free(&self, taken: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
        let (mut n, last) = (number(self.first), number(self.last));
        while n <= last {
            let candidate = address(self.family(), n);
            if !taken(&candidate) {
                return Some(candidate);
            }
            n = n.checked_add(1)?;
        }
        None
    }

    /// Whether any address of `cidr` is in the range.
    pub fn overlaps_cidr(&self, cidr: &dualstack::Cidr) -> bool {
        let (first, last) = (cidr.network(), cidr.broadcast());
        IpFamily::of(&first) == self.family() && self.first <= last && first <= self.last
    }

    fn overlaps(&self, other: &AddressRange) -> bool {
        self.family() == other.family() && self.first <= other.last && other.first <= self.last
    }
}

impl FromStr for AddressRange {
    type Err = PoolError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let written = value.trim().to_string();
        let syntax = || PoolError::Syntax { value: written.clone() };
        let (first, last) = if let Some((a, b)) = written.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| syntax())?;
            let b: IpAddr = b.trim().parse().map_err(|_| syntax())?;
            if a.is_ipv4() != b.is_ipv4() {
                return Err(PoolError::MixedFamilies { value: written });
            }
            if b < a {
                return Err(PoolError::Backwards { value: written });
            }
            (a, b)
        } else if written.contains('/') {
            let cidr = dualstack::parse_cidr(&written).map_err(|e| match e {
                dualstack::CidrError::HostBits { network, .. } => PoolError::HostBits {
                    value: written.clone(),
                    network,
                },
                _ => syntax(),
            })?;
            hosts(&cidr)
        } else {
            let a: IpAddr = written.parse().map_err(|_| syntax())?;
            (a, a)
        };
        Ok(AddressRange { first, last, written })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// The usable addresses of a CIDR on a link: without its first address
/// (the IPv4 network address, the IPv6 Subnet-Router anycast address) and,
/// for IPv4, its broadcast address, when it is large enough to have them.
fn hosts(cidr: &dualstack::Cidr) -> (IpAddr, IpAddr) {
    let family = IpFamily::of(&cidr.addr());
    let (first, last) = (number(cidr.network()), number(cidr.broadcast()));
    let spare = family.bits() - cidr.prefix_len();
    let (skip_first, skip_last) = match family {
        IpFamily::V4 => (spare >= 2, spare >= 2),
        IpFamily::V6 => (spare >= 2, false),
    };
    (
        address(family, first + u128::from(skip_first)),
        address(family, last - u128::from(skip_last)),
    )
}

fn number(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn address(family: IpFamily, n: u128) -> IpAddr {
    match family {
        // Only ever called with numbers taken from IPv4 addresses.
        IpFamily::V4 => IpAddr::V4((n as u32).into()),
        IpFamily::V6 => IpAddr::V6(n.into()),
    }
}

/// The ranges LoadBalancer IPs come from, in the order given: the lowest
/// free address of the first range of a family goes first. Empty: netlet
/// allocates no LoadBalancer IPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    ranges: Vec<AddressRange>,
}

impl Pool {
    /// A pool of `ranges`, which must not overlap.
    pub fn new(ranges: Vec<AddressRange>) -> Result<Pool, PoolError> {
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(PoolError::Overlap {
                    first: a.to_string(),
                    second: b.to_string(),
                });
            }
        }
        Ok(Pool { ranges })
    }

    /// Parses each of `values` and makes a pool of them.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Pool, PoolError> {
        Pool::new(values.iter().map(|v| v.as_ref().parse()).collect::<Result<_, _>>()?)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn ranges(&self) -> &[AddressRange] {
        &self.ranges
    }

    pub fn contains(&self, address: &IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(address))
    }

    pub fn has_family(&self, family: IpFamily) -> bool {
        self.ranges.iter().any(|r| r.family() == family)
    }

    /// Addresses of `family` in the pool (saturating: a /0 is "plenty").
    pub fn size(&self, family: IpFamily) -> u128 {
        self.ranges
            .iter()
            .filter(|r| r.family() == family)
            .fold(0u128, |n, r| n.saturating_add(r.size()))
    }

    /// The lowest address of `family` that is not `taken`, ranges in order.
    pub fn first_free(&self, family: IpFamily, taken: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
        self.ranges
            .iter()
            .filter(|r| r.family() == family)
            .find_map(|r| r.first_free(&taken))
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<String> = self.ranges.iter().map(ToString::to_string).collect();
        f.write_str(&ranges.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_ranges_and_single_addresses() {
        let pool = Pool::parse(&["192.0.2.0/30", "198.51.100.7-198.51.100.9", "203.0.113.5", "fd00::/126"]).unwrap();
        let sizes: Vec<u128> = pool.ranges().iter().map(AddressRange::size).collect();
        assert_eq!(
            sizes,
            [2, 3, 1, 3],
            "a CIDR's network (and IPv4 broadcast) address is left out"
        );
        assert!(!pool.contains(&ip("192.0.2.0")) && !pool.contains(&ip("192.0.2.3")));
        assert!(pool.contains(&ip("192.0.2.1")) && pool.contains(&ip("198.51.100.9")));
        assert!(!pool.contains(&ip("fd00::")) && pool.contains(&ip("fd00::3")));
        assert_eq!((pool.size(IpFamily::V4), pool.size(IpFamily::V6)), (6, 3));
        assert_eq!(
            pool.to_string(),
            "192.0.2.0/30,198.51.100.7-198.51.100.9,203.0.113.5,fd00::/126"
        );
        // Point-to-point sized CIDRs keep every address.
        let small = Pool::parse(&["192.0.2.8/31", "fd00::8/127"]).unwrap();
        assert_eq!((small.size(IpFamily::V4), small.size(IpFamily::V6)), (2, 2));
    }

    #[test]
    fn first_free_goes_in_order_and_skips_taken() {
        let pool = Pool::parse(&["192.0.2.10-192.0.2.11", "192.0.2.20-192.0.2.21", "fd00::/64"]).unwrap();
        let taken = [ip("192.0.2.10"), ip("192.0.2.11"), ip("192.0.2.20")];
        assert_eq!(
            pool.first_free(IpFamily::V4, |a| taken.contains(a)),
            Some(ip("192.0.2.21"))
        );
        assert_eq!(pool.first_free(IpFamily::V4, |_| true), None, "exhausted");
        assert_eq!(pool.first_free(IpFamily::V6, |_| false), Some(ip("fd00::1")));
        assert_eq!(pool.size(IpFamily::V6), (1u128 << 64) - 1);
        assert!(Pool::parse(&["192.0.2.1"])
            .unwrap()
            .first_free(IpFamily::V6, |_| false)
            .is_none());
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("192.0.2.0/33", "is not a CIDR"),
            ("banana", "is not a CIDR"),
            ("192.0.2.1/24", "did you mean 192.0.2.0/24"),
            ("192.0.2.1-fd00::1", "mixes IPv4 and IPv6"),
            ("192.0.2.9-192.0.2.1", "ends before it starts"),
        ];
        for (value, want) in cases {
            let e = value.parse::<AddressRange>().unwrap_err().to_string();
            assert!(e.contains(want), "{value}: {e}");
        }
        let e = Pool::parse(&["192.0.2.0/28", "192.0.2.14-192.0.2.20"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "192.0.2.0/28 and 192.0.2.14-192.0.2.20 overlap; list each address once"
        );
        assert!(
            Pool::parse(&["192.0.2.0/28", "fd00::/124"]).is_ok(),
            "families never overlap"
        );
    }
}

//! Service CIDRs and the addresses in them, as plain numbers so that one
//! piece of arithmetic serves both families.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP family, spelled as Services spell it in `spec.ipFamilies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn address(family: Family, n: u128) -> IpAddr {
    match family {
        // Callers only pass numbers inside an IPv4 CIDR.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// A CIDR block such as `10.43.0.0/16`; host bits must be zero, because a
/// typo is likelier than a deliberate host address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let cidr = Cidr { network, prefix };
        if prefix > cidr.family().bits() {
            return Err(format!("{network}/{prefix}: the prefix is longer than the address"));
        }
        if number(network) & cidr.host_mask() != 0 {
            let truncated = address(cidr.family(), number(network) & !cidr.host_mask());
            return Err(format!(
                "{network}/{prefix} has host bits set; did you mean {truncated}/{prefix}?"
            ));
        }
        Ok(cidr)
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn family(&self) -> Family {
        Family::of(&self.network)
    }

    fn host_mask(&self) -> u128 {
        let host_bits = u32::from(self.family().bits() - self.prefix);
        // A shift by 128 overflows; a /0 IPv6 block has every bit as host bit.
        1u128.checked_shl(host_bits).map_or(u128::MAX, |n| n - 1)
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == self.family() && number(*ip) & !self.host_mask() == number(self.network)
    }

    /// The address the real API server gives the `kubernetes` Service: the
    /// first after the network address. It is never handed out.
    pub fn reserved(&self) -> IpAddr {
        address(self.family(), number(self.network) + 1)
    }

    /// The first and last address a Service may get, as numbers: not the
    /// network address, not the reserved one, not an IPv4 broadcast
    /// address. None when the block is too small to hold any.
    pub fn assignable(&self) -> Option<(u128, u128)> {
        let first = number(self.network) + 2;
        let mut last = number(self.network) | self.host_mask();
        if self.family() == Family::V4 {
            last = last.checked_sub(1)?;
        }
        (first <= last).then_some((first, last))
    }

    pub fn is_assignable(&self, ip: &IpAddr) -> bool {
        self.contains(ip)
            && self
                .assignable()
                .is_some_and(|(first, last)| (first..=last).contains(&number(*ip)))
    }

    /// The address with number `n` (from [`Cidr::assignable`]).
    pub fn address(&self, n: u128) -> IpAddr {
        address(self.family(), n)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let syntax = || format!("{s:?} is not a CIDR (expected e.g. 10.43.0.0/16 or fd00:43::/112)");
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(syntax)?;
        let ip: IpAddr = ip.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        Cidr::new(ip, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses_host_bits() {
        assert_eq!(cidr("10.43.0.0/16").to_string(), "10.43.0.0/16");
        assert_eq!(cidr("fd00:43::/112").family(), Family::V6);
        let err = "10.43.0.1/16".parse::<Cidr>().unwrap_err();
        assert!(err.contains("did you mean 10.43.0.0/16"), "{err}");
        assert!("10.43.0.0/33".parse::<Cidr>().is_err());
        assert!("10.43.0.0".parse::<Cidr>().is_err());
        assert!("::/0".parse::<Cidr>().is_ok());
    }

    #[test]
    fn network_broadcast_and_the_reserved_address_are_not_assignable() {
        let c = cidr("10.43.0.0/29");
        assert_eq!(c.reserved(), ip("10.43.0.1"));
        for (addr, ok) in [
            ("10.43.0.0", false),
            ("10.43.0.1", false),
            ("10.43.0.2", true),
            ("10.43.0.6", true),
            ("10.43.0.7", false),
            ("10.43.0.8", false),
            ("fd00::2", false),
        ] {
            assert_eq!(c.is_assignable(&ip(addr)), ok, "{addr}");
        }
        // IPv6 has no broadcast address: the last one is fine.
        assert!(cidr("fd00:43::/112").is_assignable(&ip("fd00:43::ffff")));
        assert_eq!(cidr("10.0.0.0/31").assignable(), None);
        assert_eq!(cidr("10.0.0.0/30").assignable().map(|(a, b)| b - a), Some(0));
    }
}

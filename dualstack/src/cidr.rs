use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::IpFamily;

/// A CIDR block (`10.42.0.0/16`, `fd00:42::/56`). Host bits must be zero:
/// `10.42.0.1/16` is refused rather than silently truncated, because a typo
/// in a cluster CIDR is far more likely than a deliberate host address.
pub type Cidr = IpNet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{value:?} is not a CIDR (expected e.g. 10.42.0.0/16 or fd00:42::/56)")]
    Syntax { value: String },
    #[error("{value:?} has host bits set; did you mean {network}?")]
    HostBits { value: String, network: IpNet },
    #[error("{value:?} lists two {family} CIDRs; give at most one per family")]
    SameFamilyTwice { value: String, family: IpFamily },
    #[error("{value:?} lists more than two CIDRs; give at most one IPv4 and one IPv6")]
    TooMany { value: String },
    #[error("the CIDR list is empty")]
    Empty,
}

/// Parses one CIDR and insists that it is a network address.
pub fn parse_cidr(value: &str) -> Result<Cidr, CidrError> {
    let value = value.trim();
    let net = IpNet::from_str(value).map_err(|_| CidrError::Syntax {
        value: value.to_string(),
    })?;
    if net.trunc() != net {
        return Err(CidrError::HostBits {
            value: value.to_string(),
            network: net.trunc(),
        });
    }
    Ok(net)
}

/// One or two CIDRs with at most one per family: a single-stack or
/// dual-stack cluster range. The first one listed is the primary family, as
/// in Kubernetes' `--cluster-cidr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualStackCidrs {
    cidrs: Vec<Cidr>,
}

impl DualStackCidrs {
    pub fn new(cidrs: Vec<Cidr>) -> Result<Self, CidrError> {
        let text = || cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        match cidrs.len() {
            0 => Err(CidrError::Empty),
            1 => Ok(DualStackCidrs { cidrs }),
            2 if family(&cidrs[0]) == family(&cidrs[1]) => Err(CidrError::SameFamilyTwice {
                value: text(),
                family: family(&cidrs[0]),
            }),
            2 => Ok(DualStackCidrs { cidrs }),
            _ => Err(CidrError::TooMany { value: text() }),
        }
    }

    /// All CIDRs, primary family first.
    pub fn iter(&self) -> impl Iterator<Item = &Cidr> {
        self.cidrs.iter()
    }

    pub fn get(&self, fam: IpFamily) -> Option<&Cidr> {
        self.cidrs.iter().find(|c| family(c) == fam)
    }

    pub fn families(&self) -> Vec<IpFamily> {
        self.cidrs.iter().map(family).collect()
    }

    pub fn is_dual_stack(&self) -> bool {
        self.cidrs.len() == 2
    }

    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(addr))
    }

    /// The first pair of CIDRs (one from each list) that share addresses.
    pub fn overlap_with<'a>(&'a self, other: &'a DualStackCidrs) -> Option<(&'a Cidr, &'a Cidr)> {
        self.cidrs
            .iter()
            .find_map(|a| other.cidrs.iter().find(|b| overlaps(a, b)).map(|b| (a, b)))
    }
}

impl FromStr for DualStackCidrs {
    type Err = CidrError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = value.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        if parts.len() > 2 {
            return Err(CidrError::TooMany {
                value: value.to_string(),
            });
        }
        let cidrs = parts.into_iter().map(parse_cidr).collect::<Result<Vec<_>, _>>()?;
        DualStackCidrs::new(cidrs).map_err(|e| match e {
            // Report the user's own spelling rather than the normalised one.
            CidrError::SameFamilyTwice { family, .. } => CidrError::SameFamilyTwice {
                value: value.to_string(),
                family,
            },
            other => other,
        })
    }
}

impl fmt::Display for DualStackCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.cidrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

fn family(net: &Cidr) -> IpFamily {
    IpFamily::of(&net.addr())
}

/// Two CIDRs overlap exactly when one contains the other's network address.
pub(crate) fn overlaps(a: &Cidr, b: &Cidr) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_dual_stack() {
        let one: DualStackCidrs = "10.42.0.0/16".parse().unwrap();
        assert_eq!(one.families(), vec![IpFamily::V4]);
        assert!(!one.is_dual_stack());

        let two: DualStackCidrs = "fd00:42::/56, 10.42.0.0/16".parse().unwrap();
        assert_eq!(two.families(), vec![IpFamily::V6, IpFamily::V4]);
        assert_eq!(two.get(IpFamily::V4).unwrap().to_string(), "10.42.0.0/16");
        assert_eq!(two.to_string(), "fd00:42::/56,10.42.0.0/16");
        assert!(two.contains(&"fd00:42::5".parse().unwrap()));
        assert!(!two.contains(&"10.43.0.1".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_lists_with_the_value() {
        let e = "10.42.0.0/16,10.44.0.0/16".parse::<DualStackCidrs>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"10.42.0.0/16,10.44.0.0/16\" lists two IPv4 CIDRs; give at most one per family"
        );
        let e = "10.42.0.1/16".parse::<DualStackCidrs>().unwrap_err();
        assert!(e.to_string().contains("did you mean 10.42.0.0/16"), "{e}");
        assert!(matches!(
            "banana".parse::<DualStackCidrs>(),
            Err(CidrError::Syntax { .. })
        ));
        assert!(matches!("".parse::<DualStackCidrs>(), Err(CidrError::Empty)));
        assert!(matches!(
            "10.0.0.0/8,fd00::/8,10.1.0.0/16".parse::<DualStackCidrs>(),
            Err(CidrError::TooMany { .. })
        ));
    }

    #[test]
    fn finds_overlaps_per_family() {
        let pods: DualStackCidrs = "10.42.0.0/16,fd00:42::/56".parse().unwrap();
        let inside: DualStackCidrs = "10.42.128.0/17".parse().unwrap();
        let apart: DualStackCidrs = "10.43.0.0/16,fd00:43::/112".parse().unwrap();
        let v6_clash: DualStackCidrs = "fd00::/8".parse().unwrap();
        assert!(pods.overlap_with(&inside).is_some());
        assert!(pods.overlap_with(&apart).is_none());
        let (a, b) = pods.overlap_with(&v6_clash).unwrap();
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("fd00:42::/56".into(), "fd00::/8".into())
        );
    }
}

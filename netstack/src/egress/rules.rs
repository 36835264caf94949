//! What the egress NAT table should hold, from the configuration and this
//! Node's addresses alone: plain Rust, so unit tests drive it.
//!
//! One table `inet netlet` with one chain, `type nat hook postrouting
//! priority srcnat`. Per family with a clusterCIDR, in order:
//! - `ip saddr <clusterCIDR> ip daddr <except> accept` for each
//!   destination pods reach with their own address: clusterCIDR (pods on
//!   any node), serviceCIDR, `egress.exceptCIDRs` and this node's own
//!   addresses (delivered locally, so this only documents the intent);
//! - `ip saddr <clusterCIDR> masquerade`.
//!
//! NAT chains see only a connection's first packet; the kernel's conntrack
//! keeps the translation for the rest, and for replies.

use std::net::IpAddr;

use dualstack::{Cidr, IpFamily};

use crate::config::Config;
use crate::wire::nft::{Batch, Expr, NFPROTO_INET, PRIORITY_SRCNAT};

/// The table's family and name: `inet netlet`.
pub const TABLE: &str = "netlet";
pub const FAMILY: u8 = NFPROTO_INET;
/// The NAT chain.
pub const CHAIN: &str = "egress-masquerade";

/// The pod ranges whose traffic is masqueraded, and per range the
/// destinations it is not masqueraded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub sources: Vec<(Cidr, Vec<Cidr>)>,
}

pub fn plan(config: &Config, node_addresses: &[IpAddr]) -> Plan {
    let sources = config
        .cluster_cidr
        .iter()
        .map(|&source| {
            let family = IpFamily::of(&source.network());
            let mut except: Vec<Cidr> = Vec::new();
            let candidates = config
                .cluster_cidr
                .iter()
                .chain(config.service_cidr.iter())
                .chain(&config.egress.except_cidrs)
                .copied()
                .chain(node_addresses.iter().map(|&ip| Cidr::from(ip)));
            for c in candidates {
                if IpFamily::of(&c.network()) == family && !except.iter().any(|e| e.contains(&c)) {
                    except.retain(|e| !c.contains(e));
                    except.push(c);
                }
            }
            (source, except)
        })
        .collect();
    Plan { sources }
}

/// The plan's rules, in chain order.
pub fn rules(plan: &Plan) -> Vec<Vec<Expr>> {
    let mut out = Vec::new();
    for (source, except) in &plan.sources {
        let mut from = Expr::nfproto(&source.network()).to_vec();
        from.extend(Expr::address_in(true, source.network(), source.prefix_len()));
        for e in except {
            let mut rule = from.clone();
            rule.extend(Expr::address_in(false, e.network(), e.prefix_len()));
            rule.push(Expr::Accept);
            out.push(rule);
        }
        let mut rule = from;
        rule.push(Expr::Masquerade);
        out.push(rule);
    }
    out
}

/// One transaction that replaces whatever table `inet netlet` holds with
/// the plan's (adding it first, so the delete cannot fail on a missing
/// table).
pub fn replace(batch: &mut Batch, plan: &Plan) {
    batch
        .add_table(FAMILY, TABLE)
        .delete_table(FAMILY, TABLE)
        .add_table(FAMILY, TABLE)
        .add_nat_postrouting_chain(FAMILY, TABLE, CHAIN, PRIORITY_SRCNAT);
    for rule in rules(plan) {
        batch.add_rule(FAMILY, TABLE, CHAIN, &rule);
    }
}

/// One transaction that removes the table if it is there.
pub fn remove(batch: &mut Batch) {
    batch.add_table(FAMILY, TABLE).delete_table(FAMILY, TABLE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        serde_json::from_str::<crate::RawConfig>(json)
            .unwrap()
            .validate("n")
            .unwrap()
    }

    #[test]
    fn each_family_accepts_cluster_destinations_then_masquerades() {
        let c = config(r#"{"egress":{"exceptCIDRs":["192.168.0.0/16","10.42.7.0/24"]}}"#);
        let node: Vec<IpAddr> = vec!["192.168.1.5".parse().unwrap(), "fd00:ffff::1".parse().unwrap()];
        let p = plan(&c, &node);
        let show: Vec<(String, Vec<String>)> = p
            .sources
            .iter()
            .map(|(s, e)| (s.to_string(), e.iter().map(ToString::to_string).collect()))
            .collect();
        assert_eq!(
            show,
            [
                (
                    "10.42.0.0/16".to_string(),
                    // 10.42.7.0/24 and the node's 192.168.1.5 fall inside others.
                    vec![
                        "10.42.0.0/16".to_string(),
                        "10.43.0.0/16".into(),
                        "192.168.0.0/16".into()
                    ]
                ),
                (
                    "fd00:42::/56".to_string(),
                    vec![
                        "fd00:42::/56".to_string(),
                        "fd00:43::/112".into(),
                        "fd00:ffff::1/128".into()
                    ]
                ),
            ]
        );
        let r = rules(&p);
        assert_eq!(r.len(), 3 + 1 + 3 + 1);
        assert_eq!(r[3].last(), Some(&Expr::Masquerade));
        assert_eq!(r[0].last(), Some(&Expr::Accept));
        // nfproto, cmp, payload saddr, bitwise, cmp, payload daddr, bitwise, cmp, verdict
        assert_eq!(r[0].len(), 9);
    }

    #[test]
    fn single_stack_has_one_family() {
        let c = config(r#"{"clusterCIDR":"fd00:1::/48","serviceCIDR":"fd00:2::/112"}"#);
        let p = plan(&c, &[]);
        assert_eq!(p.sources.len(), 1);
        assert_eq!(rules(&p).len(), 3);
    }
}

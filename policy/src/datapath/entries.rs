//! Plan entries to map keys and values and back (for reading back what an
//! earlier agent left). Pure, so the round trips are unit-tested.

use std::net::IpAddr;

use aya::maps::lpm_trie::Key;
use dualstack::Cidr;

use crate::compiled::Direction;
use crate::identity::Identity;
use crate::maps::{
    address_of, map_address, PolEndpoint, PolIpcacheAddr, PolIpcacheValue, PolRuleData, PolRuleValue, CLASS_BIT,
    DIR_EGRESS, DIR_INGRESS, ISOLATED_EGRESS, ISOLATED_INGRESS, REMOTE_ANY, RULE_ANY_PORT_BITS, RULE_FULL_BITS,
    RULE_PROTO_BITS,
};
use crate::plan::{CidrClass, EndpointEntry, IpcacheEntry, PortPrefix, Remote, RuleKey, RulePorts};

/// Bits before an IPv4 address in a v4-mapped one.
const V4_MAPPED_BITS: u32 = 96;

pub(super) fn endpoint_value(e: &EndpointEntry) -> PolEndpoint {
    let flag = |on: bool, flag: u8| if on { flag } else { 0 };
    PolEndpoint {
        identity: e.identity.0,
        flags: flag(e.isolated_ingress, ISOLATED_INGRESS) | flag(e.isolated_egress, ISOLATED_EGRESS),
        pad: [0; 3],
    }
}

pub(super) fn endpoint_entry(v: &PolEndpoint) -> EndpointEntry {
    EndpointEntry {
        identity: Identity(v.identity),
        isolated_ingress: v.flags & ISOLATED_INGRESS != 0,
        isolated_egress: v.flags & ISOLATED_EGRESS != 0,
    }
}

pub(super) fn ipcache_key(cidr: &Cidr) -> Key<PolIpcacheAddr> {
    let extra = if cidr.addr().is_ipv4() { V4_MAPPED_BITS } else { 0 };
    let addr = map_address(cidr.network());
    Key::new(extra + u32::from(cidr.prefix_len()), PolIpcacheAddr { addr })
}

/// The prefix of an ipcache key; IPv4 is what lies inside ::ffff:0:0/96
/// (the plan puts no IPv6 prefix there).
pub(super) fn ipcache_cidr(key: &Key<PolIpcacheAddr>) -> Option<Cidr> {
    let bytes = key.data().addr;
    let len = key.prefix_len();
    let v4 = len >= V4_MAPPED_BITS && matches!(address_of(bytes, 4), IpAddr::V4(_));
    let (ip, len) = if v4 {
        (address_of(bytes, 4), len - V4_MAPPED_BITS)
    } else {
        (address_of(bytes, 6), len)
    };
    Cidr::new(ip, u8::try_from(len).ok()?).ok().map(|c| c.trunc())
}

pub(super) fn ipcache_value(e: &IpcacheEntry) -> PolIpcacheValue {
    PolIpcacheValue {
        identity: e.identity.0,
        cidr_class: e.class.0,
    }
}

pub(super) fn ipcache_entry(v: &PolIpcacheValue) -> IpcacheEntry {
    IpcacheEntry {
        identity: Identity(v.identity),
        class: CidrClass(v.cidr_class),
    }
}

fn direction_number(direction: Direction) -> u8 {
    match direction {
        Direction::Ingress => DIR_INGRESS,
        Direction::Egress => DIR_EGRESS,
    }
}

fn remote_number(remote: Remote) -> u32 {
    match remote {
        Remote::Pod(identity) => identity.0,
        Remote::Class(class) => class.0,
        Remote::Any => REMOTE_ANY,
    }
}

pub(super) fn rule_key(k: &RuleKey) -> Key<PolRuleData> {
    let (bits, proto, port) = match k.ports {
        RulePorts::Any => (RULE_ANY_PORT_BITS, 0, 0),
        RulePorts::Prefix { protocol, prefix } => (RULE_PROTO_BITS + u32::from(prefix.len), protocol, prefix.port),
    };
    let data = PolRuleData {
        local: k.local.0.to_be_bytes(),
        remote: remote_number(k.remote).to_be_bytes(),
        direction: direction_number(k.direction),
        proto,
        port: port.to_be_bytes(),
    };
    Key::new(bits, data)
}

/// `None` for a key no plan writes.
pub(super) fn rule_key_of(key: &Key<PolRuleData>) -> Option<RuleKey> {
    let data = key.data();
    let remote = match u32::from_be_bytes(data.remote) {
        REMOTE_ANY => Remote::Any,
        n if n & CLASS_BIT != 0 => Remote::Class(CidrClass(n)),
        n => Remote::Pod(Identity(n)),
    };
    let direction = match data.direction {
        DIR_INGRESS => Direction::Ingress,
        DIR_EGRESS => Direction::Egress,
        _ => return None,
    };
    let ports = match key.prefix_len() {
        RULE_ANY_PORT_BITS => RulePorts::Any,
        bits @ RULE_PROTO_BITS..=RULE_FULL_BITS => RulePorts::Prefix {
            protocol: data.proto,
            prefix: PortPrefix {
                port: u16::from_be_bytes(data.port),
                len: (bits - RULE_PROTO_BITS) as u8,
            },
        },
        _ => return None,
    };
    Some(RuleKey {
        local: Identity(u32::from_be_bytes(data.local)),
        direction,
        remote,
        ports,
    })
}

pub(super) fn rule_value(slot: u32) -> PolRuleValue {
    PolRuleValue { policy_slot: slot }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipcache_keys_round_trip_by_family() {
        for text in [
            "10.0.0.0/8",
            "10.1.2.3/32",
            "0.0.0.0/0",
            "::/0",
            "fd00::/16",
            "fd00::1/128",
            "::/80",
        ] {
            let cidr: Cidr = text.parse().unwrap();
            let key = ipcache_key(&cidr);
            assert_eq!(ipcache_cidr(&key), Some(cidr), "{text}");
        }
        let v4 = ipcache_key(&"10.0.0.0/8".parse().unwrap());
        assert_eq!(v4.prefix_len(), 104);
        assert_eq!(v4.data().addr[10..13], [0xff, 0xff, 10]);
        assert_eq!(ipcache_key(&"::/0".parse().unwrap()).prefix_len(), 0);
    }

    #[test]
    fn rule_keys_round_trip_and_put_the_port_last() {
        let keys = [
            RuleKey {
                local: Identity(7),
                direction: Direction::Egress,
                remote: Remote::Class(CidrClass::new(3)),
                ports: RulePorts::Any,
            },
            RuleKey {
                local: Identity(7),
                direction: Direction::Ingress,
                remote: Remote::Pod(Identity(9)),
                ports: RulePorts::Prefix {
                    protocol: 17,
                    prefix: PortPrefix { port: 80, len: 15 },
                },
            },
            RuleKey {
                local: Identity(1),
                direction: Direction::Ingress,
                remote: Remote::Any,
                ports: RulePorts::Prefix {
                    protocol: 6,
                    prefix: PortPrefix { port: 0, len: 0 },
                },
            },
        ];
        for key in keys {
            assert_eq!(rule_key_of(&rule_key(&key)), Some(key));
        }
        let map_key = rule_key(&keys[1]);
        assert_eq!(map_key.prefix_len(), 95);
        let data = map_key.data();
        assert_eq!(
            (data.local, data.remote, data.direction, data.proto, data.port),
            ([0, 0, 0, 7], [0, 0, 0, 9], DIR_INGRESS, 17, [0, 80])
        );
        assert_eq!(rule_key(&keys[0]).data().remote, [0x80, 0, 0, 3]);
        assert_eq!(rule_key(&keys[2]).prefix_len(), RULE_PROTO_BITS);
    }

    #[test]
    fn endpoint_flags() {
        let entry = EndpointEntry {
            identity: Identity(4),
            isolated_ingress: false,
            isolated_egress: true,
        };
        let value = endpoint_value(&entry);
        assert_eq!((value.identity, value.flags), (4, ISOLATED_EGRESS));
        assert_eq!(endpoint_entry(&value), entry);
        assert_eq!(endpoint_value(&EndpointEntry::DENY_ALL).flags, 3);
    }
}

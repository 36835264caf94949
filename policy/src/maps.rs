//! The Rust side of bpf/maps.h: every map key and value, field for field,
//! with the same explicit padding (a test compares sizes, offsets and
//! constants with what the C compiler made of the header).

use std::net::{IpAddr, Ipv6Addr};

/// Entries of nl_pol_endpts and nl_pol_ep_cnt: host-side veths per node.
pub const ENDPOINT_ENTRIES: u32 = 4096;

/// `pol_endpoint.flags`.
pub const ISOLATED_INGRESS: u8 = 1;
pub const ISOLATED_EGRESS: u8 = 2;

/// Set in every CIDR class number; pod identities never have it.
pub const CLASS_BIT: u32 = 0x8000_0000;
/// The remote of a rule that allows every peer.
pub const REMOTE_ANY: u32 = 0xffff_ffff;

/// Directions as rules and drop events name them.
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

/// Prefix lengths of rule keys: local, remote and direction; plus the
/// protocol; the whole key (the port's 16 bits on top).
pub const RULE_ANY_PORT_BITS: u32 = 72;
pub const RULE_PROTO_BITS: u32 = 80;
pub const RULE_FULL_BITS: u32 = 96;

/// The policy slot of traffic no policy decided.
pub const SLOT_NONE: u32 = 0xffff_ffff;
/// Entries of nl_pol_slot_cnt: slots at or above have no counter.
pub const POLICY_SLOTS: u32 = 16384;

/// `pol_ct_key.origin`: which hook saw a flow's first packet.
pub const FROM_POD: u8 = 1;
pub const TO_POD: u8 = 2;
/// `pol_ct_value.flags`.
pub const CT_FROM_NODE: u8 = 1;

/// `pol_drop_event.reason`.
pub const DROP_NO_ENDPOINT: u8 = 1;
pub const DROP_DENIED: u8 = 2;
pub const DROP_REVOKED: u8 = 3;
pub const DROP_V4_MAPPED: u8 = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolEndpoint {
    pub identity: u32,
    /// `ISOLATED_INGRESS` | `ISOLATED_EGRESS`.
    pub flags: u8,
    pub pad: [u8; 3],
}

/// An ipcache key's data, after the prefix length that
/// `aya::maps::lpm_trie::Key` adds: an address, IPv4 v4-mapped.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolIpcacheAddr {
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolIpcacheValue {
    pub identity: u32,
    pub cidr_class: u32,
}

/// A rule key's data, after the prefix length. Network byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolRuleData {
    pub local: [u8; 4],
    pub remote: [u8; 4],
    pub direction: u8,
    pub proto: u8,
    pub port: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolRuleValue {
    pub policy_slot: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolCtKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub origin: u8,
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolCtValue {
    pub created_ns: u64,
    pub revision: u32,
    pub policy_slot: u32,
    pub flags: u8,
    pub pad: [u8; 7],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolConfig {
    pub revision: u32,
    pub pad: u32,
}

/// Indexed by `DIR_INGRESS` / `DIR_EGRESS`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolEndpointCounters {
    pub allowed: [u64; 2],
    pub denied: [u64; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolDropEvent {
    pub timestamp_ns: u64,
    pub ifindex: u32,
    pub local_identity: u32,
    pub remote_identity: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    /// 4, 6, or 0 for a packet that is not IP.
    pub family: u8,
    pub direction: u8,
    pub reason: u8,
    pub pad: [u8; 4],
}

// SAFETY: plain old data: repr(C), every bit pattern valid, padding explicit.
unsafe impl aya::Pod for PolEndpoint {}
unsafe impl aya::Pod for PolIpcacheAddr {}
unsafe impl aya::Pod for PolIpcacheValue {}
unsafe impl aya::Pod for PolRuleData {}
unsafe impl aya::Pod for PolRuleValue {}
unsafe impl aya::Pod for PolCtKey {}
unsafe impl aya::Pod for PolCtValue {}
unsafe impl aya::Pod for PolConfig {}
unsafe impl aya::Pod for PolEndpointCounters {}

/// An address as the maps hold it: IPv6 as is, IPv4 v4-mapped.
pub fn map_address(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The inverse of [`map_address`] for packets of `family` (4 or 6).
pub fn address_of(bytes: [u8; 16], family: u8) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

impl PolDropEvent {
    /// Reads an event as the ring buffer delivers it; `None` when short.
    pub fn from_bytes(bytes: &[u8]) -> Option<PolDropEvent> {
        if bytes.len() < std::mem::size_of::<PolDropEvent>() {
            return None;
        }
        // SAFETY: the length is checked, every bit pattern is a valid
        // PolDropEvent, and read_unaligned needs no alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<PolDropEvent>()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfkit::layout::{assert_same, constant_rows};
    use bpfkit::struct_rows;
    use std::mem::{offset_of, size_of};

    /// What bpf/layout.c printed for maps.h, built by build.rs.
    const C_LAYOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/layout.txt"));

    #[test]
    fn rust_and_c_agree_on_every_size_offset_and_constant() {
        let rust = [
            struct_rows!("pol_endpoint", PolEndpoint, [identity, flags]),
            struct_rows!("pol_ipcache_key", lpm PolIpcacheAddr, [addr]),
            struct_rows!("pol_ipcache_value", PolIpcacheValue, [identity, cidr_class]),
            struct_rows!("pol_rule_key", lpm PolRuleData, [local, remote, direction, proto, port]),
            struct_rows!("pol_rule_value", PolRuleValue, [policy_slot]),
            struct_rows!("pol_ct_key", PolCtKey, [saddr, daddr, sport, dport, proto, origin]),
            struct_rows!("pol_ct_value", PolCtValue, [created_ns, revision, policy_slot, flags]),
            struct_rows!("pol_config", PolConfig, [revision]),
            struct_rows!("pol_endpoint_counters", PolEndpointCounters, [allowed, denied]),
            struct_rows!(
                "pol_drop_event",
                PolDropEvent,
                [
                    timestamp_ns,
                    ifindex,
                    local_identity,
                    remote_identity,
                    saddr,
                    daddr,
                    sport,
                    dport,
                    proto,
                    family,
                    direction,
                    reason
                ]
            ),
            constant_rows(&[
                ("POL_ENDPOINT_ENTRIES", ENDPOINT_ENTRIES),
                ("POL_POLICY_SLOTS", POLICY_SLOTS),
                ("POL_ISOLATED_INGRESS", u32::from(ISOLATED_INGRESS)),
                ("POL_ISOLATED_EGRESS", u32::from(ISOLATED_EGRESS)),
                ("POL_CLASS_BIT", CLASS_BIT),
                ("POL_REMOTE_ANY", REMOTE_ANY),
                ("POL_DIR_INGRESS", u32::from(DIR_INGRESS)),
                ("POL_DIR_EGRESS", u32::from(DIR_EGRESS)),
                ("POL_RULE_ANY_PORT_BITS", RULE_ANY_PORT_BITS),
                ("POL_RULE_PROTO_BITS", RULE_PROTO_BITS),
                ("POL_RULE_FULL_BITS", RULE_FULL_BITS),
                ("POL_SLOT_NONE", SLOT_NONE),
                ("POL_FROM_POD", u32::from(FROM_POD)),
                ("POL_TO_POD", u32::from(TO_POD)),
                ("POL_CT_FROM_NODE", u32::from(CT_FROM_NODE)),
                ("POL_DROP_NO_ENDPOINT", u32::from(DROP_NO_ENDPOINT)),
                ("POL_DROP_DENIED", u32::from(DROP_DENIED)),
                ("POL_DROP_REVOKED", u32::from(DROP_REVOKED)),
                ("POL_DROP_V4_MAPPED", u32::from(DROP_V4_MAPPED)),
            ]),
        ]
        .concat();
        // The rule key's prefix bits count whole fields.
        assert_eq!(RULE_ANY_PORT_BITS as usize, offset_of!(PolRuleData, proto) * 8);
        assert_eq!(RULE_PROTO_BITS as usize, offset_of!(PolRuleData, port) * 8);
        assert_eq!(RULE_FULL_BITS as usize, size_of::<PolRuleData>() * 8);
        assert_same(C_LAYOUT, &rust);
    }

    #[test]
    fn addresses_are_v4_mapped_and_come_back_by_family() {
        let v4: IpAddr = "10.0.1.2".parse().unwrap();
        let bytes = map_address(v4);
        assert_eq!(bytes[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(bytes[12..], [10, 0, 1, 2]);
        assert_eq!(address_of(bytes, 4), v4);
        let v6: IpAddr = "fd00::1:2".parse().unwrap();
        assert_eq!(address_of(map_address(v6), 6), v6);
        // A v4-mapped address in an IPv6 packet stays IPv6.
        assert_eq!(address_of(bytes, 6), "::ffff:10.0.1.2".parse::<IpAddr>().unwrap());
    }
}

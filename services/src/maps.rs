//! The Rust side of bpf/lb.h: every map key and value, field for field,
//! with the same explicit padding (a test compares sizes and offsets with
//! what the C compiler made of the header).

use std::net::{Ipv4Addr, Ipv6Addr};

/// `IPPROTO_*` numbers as the kernel gives them to the programs.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

/// Frontend scopes (`LB_SCOPE_*` in lb.h): entries for sockets on the node,
/// and entries for packets from outside.
pub const SCOPE_INTERNAL: u8 = 0;
pub const SCOPE_EXTERNAL: u8 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb4Key {
    /// Network byte order, as are all addresses and ports here.
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub proto: u8,
    /// `SCOPE_INTERNAL` or `SCOPE_EXTERNAL`.
    pub scope: u8,
    pub slot: u16,
    pub pad1: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb6Key {
    pub address: [u8; 16],
    pub port: [u8; 2],
    pub proto: u8,
    /// `SCOPE_INTERNAL` or `SCOPE_EXTERNAL`.
    pub scope: u8,
    pub slot: u16,
    pub pad1: [u8; 2],
}

/// Slot 0: how many backends (0 refuses connections) and the ClientIP
/// affinity timeout in seconds (0: none); slot n: backend n.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LbSlot {
    pub backend_id: u32,
    pub count: u16,
    /// `FLAG_SOURCE_RANGES` or 0.
    pub flags: u8,
    pub pad: u8,
    pub affinity_timeout: u32,
}

/// Slot 0 flag: the frontend admits only its source ranges.
pub const FLAG_SOURCE_RANGES: u8 = 1;
/// Slot 0 flag: with no backends, drop rather than refuse.
pub const FLAG_EMPTY_DROPS: u8 = 2;

/// A frontend's source range: the data of an `lb4_source_key` (lb.h),
/// after the prefix length that `aya::maps::lpm_trie::Key` adds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb4Source {
    pub frontend: [u8; 4],
    pub port: [u8; 2],
    pub proto: u8,
    pub pad: u8,
    pub source: [u8; 4],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb6Source {
    pub frontend: [u8; 16],
    pub port: [u8; 2],
    pub proto: u8,
    pub pad: u8,
    pub source: [u8; 16],
}

/// Bits of an `Lb4Source` / `Lb6Source` before the source address.
pub const SOURCE4_FRONTEND_BITS: u32 = 64;
pub const SOURCE6_FRONTEND_BITS: u32 = 160;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb4AffinityKey {
    pub netns_cookie: u64,
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub proto: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb6AffinityKey {
    pub netns_cookie: u64,
    pub address: [u8; 16],
    pub port: [u8; 2],
    pub proto: u8,
    pub pad: [u8; 5],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LbAffinity {
    pub last_used_ns: u64,
    pub backend_id: u32,
    pub pad: [u8; 4],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb4Backend {
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb6Backend {
    pub address: [u8; 16],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sock4Key {
    pub cookie: u64,
    pub backend: [u8; 4],
    pub backend_port: [u8; 2],
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sock4Frontend {
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sock6Key {
    pub cookie: u64,
    pub backend: [u8; 16],
    pub backend_port: [u8; 2],
    pub pad: [u8; 6],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sock6Frontend {
    pub address: [u8; 16],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

/// A flow as connection tracking keys it (TC path).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ct4Key {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ct6Key {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ct4Value {
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ct6Value {
    pub address: [u8; 16],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

// SAFETY: plain old data: repr(C), every bit pattern valid, padding explicit.
unsafe impl aya::Pod for Lb4Key {}
unsafe impl aya::Pod for Lb6Key {}
unsafe impl aya::Pod for LbSlot {}
unsafe impl aya::Pod for Lb4AffinityKey {}
unsafe impl aya::Pod for Lb6AffinityKey {}
unsafe impl aya::Pod for LbAffinity {}
unsafe impl aya::Pod for Lb4Source {}
unsafe impl aya::Pod for Lb6Source {}
unsafe impl aya::Pod for Ct4Key {}
unsafe impl aya::Pod for Ct6Key {}
unsafe impl aya::Pod for Ct4Value {}
unsafe impl aya::Pod for Ct6Value {}
unsafe impl aya::Pod for Lb4Backend {}
unsafe impl aya::Pod for Lb6Backend {}
unsafe impl aya::Pod for Sock4Key {}
unsafe impl aya::Pod for Sock4Frontend {}
unsafe impl aya::Pod for Sock6Key {}
unsafe impl aya::Pod for Sock6Frontend {}

impl Lb4Key {
    pub fn new(address: Ipv4Addr, port: u16, proto: u8, scope: u8, slot: u16) -> Lb4Key {
        Lb4Key {
            address: address.octets(),
            port: port.to_be_bytes(),
            proto,
            scope,
            slot,
            ..Default::default()
        }
    }
}

impl Lb6Key {
    pub fn new(address: Ipv6Addr, port: u16, proto: u8, scope: u8, slot: u16) -> Lb6Key {
        Lb6Key {
            address: address.octets(),
            port: port.to_be_bytes(),
            proto,
            scope,
            slot,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::maps::lpm_trie::Key;
    use std::mem::{offset_of, size_of};

    /// What bpf/layout.c printed for lb.h, built by build.rs.
    const C_LAYOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/layout.txt"));

    #[test]
    fn rust_and_c_agree_on_every_size_and_offset() {
        let rust = [
            ("lb4_key size", size_of::<Lb4Key>()),
            ("lb4_key.address", offset_of!(Lb4Key, address)),
            ("lb4_key.port", offset_of!(Lb4Key, port)),
            ("lb4_key.proto", offset_of!(Lb4Key, proto)),
            ("lb4_key.scope", offset_of!(Lb4Key, scope)),
            ("lb4_key.slot", offset_of!(Lb4Key, slot)),
            ("lb6_key size", size_of::<Lb6Key>()),
            ("lb6_key.address", offset_of!(Lb6Key, address)),
            ("lb6_key.port", offset_of!(Lb6Key, port)),
            ("lb6_key.proto", offset_of!(Lb6Key, proto)),
            ("lb6_key.scope", offset_of!(Lb6Key, scope)),
            ("lb6_key.slot", offset_of!(Lb6Key, slot)),
            ("lb_slot size", size_of::<LbSlot>()),
            ("lb_slot.backend_id", offset_of!(LbSlot, backend_id)),
            ("lb_slot.count", offset_of!(LbSlot, count)),
            ("lb_slot.flags", offset_of!(LbSlot, flags)),
            ("lb_slot.affinity_timeout", offset_of!(LbSlot, affinity_timeout)),
            // aya's LPM key is the u32 prefix length, then the data.
            ("lb4_source_key size", size_of::<Key<Lb4Source>>()),
            ("lb4_source_key.prefixlen", 0),
            ("lb4_source_key.frontend", 4 + offset_of!(Lb4Source, frontend)),
            ("lb4_source_key.port", 4 + offset_of!(Lb4Source, port)),
            ("lb4_source_key.proto", 4 + offset_of!(Lb4Source, proto)),
            ("lb4_source_key.source", 4 + offset_of!(Lb4Source, source)),
            ("lb6_source_key size", size_of::<Key<Lb6Source>>()),
            ("lb6_source_key.prefixlen", 0),
            ("lb6_source_key.frontend", 4 + offset_of!(Lb6Source, frontend)),
            ("lb6_source_key.port", 4 + offset_of!(Lb6Source, port)),
            ("lb6_source_key.proto", 4 + offset_of!(Lb6Source, proto)),
            ("lb6_source_key.source", 4 + offset_of!(Lb6Source, source)),
            ("lb4_affinity_key size", size_of::<Lb4AffinityKey>()),
            (
                "lb4_affinity_key.netns_cookie",
                offset_of!(Lb4AffinityKey, netns_cookie),
            ),
            ("lb4_affinity_key.address", offset_of!(Lb4AffinityKey, address)),
            ("lb4_affinity_key.port", offset_of!(Lb4AffinityKey, port)),
            ("lb4_affinity_key.proto", offset_of!(Lb4AffinityKey, proto)),
            ("lb6_affinity_key size", size_of::<Lb6AffinityKey>()),
            (
                "lb6_affinity_key.netns_cookie",
                offset_of!(Lb6AffinityKey, netns_cookie),
            ),
            ("lb6_affinity_key.address", offset_of!(Lb6AffinityKey, address)),
            ("lb6_affinity_key.port", offset_of!(Lb6AffinityKey, port)),
            ("lb6_affinity_key.proto", offset_of!(Lb6AffinityKey, proto)),
            ("lb_affinity size", size_of::<LbAffinity>()),
            ("lb_affinity.last_used_ns", offset_of!(LbAffinity, last_used_ns)),
            ("lb_affinity.backend_id", offset_of!(LbAffinity, backend_id)),
            ("lb4_backend size", size_of::<Lb4Backend>()),
            ("lb4_backend.address", offset_of!(Lb4Backend, address)),
            ("lb4_backend.port", offset_of!(Lb4Backend, port)),
            ("lb6_backend size", size_of::<Lb6Backend>()),
            ("lb6_backend.address", offset_of!(Lb6Backend, address)),
            ("lb6_backend.port", offset_of!(Lb6Backend, port)),
            ("sock4_key size", size_of::<Sock4Key>()),
            ("sock4_key.cookie", offset_of!(Sock4Key, cookie)),
            ("sock4_key.backend", offset_of!(Sock4Key, backend)),
            ("sock4_key.backend_port", offset_of!(Sock4Key, backend_port)),
            ("sock4_frontend size", size_of::<Sock4Frontend>()),
            ("sock4_frontend.address", offset_of!(Sock4Frontend, address)),
            ("sock4_frontend.port", offset_of!(Sock4Frontend, port)),
            ("sock6_key size", size_of::<Sock6Key>()),
            ("sock6_key.cookie", offset_of!(Sock6Key, cookie)),
            ("sock6_key.backend", offset_of!(Sock6Key, backend)),
            ("sock6_key.backend_port", offset_of!(Sock6Key, backend_port)),
            ("sock6_frontend size", size_of::<Sock6Frontend>()),
            ("sock6_frontend.address", offset_of!(Sock6Frontend, address)),
            ("sock6_frontend.port", offset_of!(Sock6Frontend, port)),
            ("ct4_key size", size_of::<Ct4Key>()),
            ("ct4_key.saddr", offset_of!(Ct4Key, saddr)),
            ("ct4_key.daddr", offset_of!(Ct4Key, daddr)),
            ("ct4_key.sport", offset_of!(Ct4Key, sport)),
            ("ct4_key.dport", offset_of!(Ct4Key, dport)),
            ("ct4_key.proto", offset_of!(Ct4Key, proto)),
            ("ct6_key size", size_of::<Ct6Key>()),
            ("ct6_key.saddr", offset_of!(Ct6Key, saddr)),
            ("ct6_key.daddr", offset_of!(Ct6Key, daddr)),
            ("ct6_key.sport", offset_of!(Ct6Key, sport)),
            ("ct6_key.dport", offset_of!(Ct6Key, dport)),
            ("ct6_key.proto", offset_of!(Ct6Key, proto)),
            ("ct4_value size", size_of::<Ct4Value>()),
            ("ct4_value.address", offset_of!(Ct4Value, address)),
            ("ct4_value.port", offset_of!(Ct4Value, port)),
            ("ct6_value size", size_of::<Ct6Value>()),
            ("ct6_value.address", offset_of!(Ct6Value, address)),
            ("ct6_value.port", offset_of!(Ct6Value, port)),
        ];
        let c: Vec<(String, usize)> = C_LAYOUT
            .lines()
            .map(|l| {
                let (name, n) = l.rsplit_once(' ').unwrap();
                (name.to_string(), n.parse().unwrap())
            })
            .collect();
        // The LPM prefix counts the frontend's bits before the source's.
        assert_eq!(SOURCE4_FRONTEND_BITS as usize, offset_of!(Lb4Source, source) * 8);
        assert_eq!(SOURCE6_FRONTEND_BITS as usize, offset_of!(Lb6Source, source) * 8);
        assert_eq!(c.len(), rust.len(), "every C line has a Rust counterpart: {C_LAYOUT}");
        for ((c_name, c_value), (r_name, r_value)) in c.iter().zip(rust) {
            assert_eq!((c_name.as_str(), *c_value), (r_name, r_value));
        }
    }

    #[test]
    fn keys_hold_addresses_and_ports_in_network_order() {
        let k = Lb4Key::new(Ipv4Addr::new(10, 43, 0, 1), 443, PROTO_TCP, SCOPE_INTERNAL, 0);
        assert_eq!(k.address, [10, 43, 0, 1]);
        assert_eq!(k.port, [1, 187]);
    }
}

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
    /// `BACKEND_REMOTE` or 0.
    pub flags: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb6Backend {
    pub address: [u8; 16],
    pub port: [u8; 2],
    pub flags: u8,
    pub pad: u8,
}

/// Backend flag: the endpoint is on another node, so traffic from outside
/// sent to it is SNATed to this node's address.
pub const BACKEND_REMOTE: u8 = 1;

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
    /// The flow's SNAT source port (to a remote backend); 0: none.
    pub snat_port: [u8; 2],
    /// Forward entries: the backend's id (checked on every packet).
    pub backend_id: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ct6Value {
    pub address: [u8; 16],
    pub port: [u8; 2],
    pub snat_port: [u8; 2],
    pub backend_id: u32,
}

/// The reverse translation of a SNATed flow, keyed by the backend's reply.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Snat4Value {
    pub client: [u8; 4],
    pub frontend: [u8; 4],
    pub client_port: [u8; 2],
    pub frontend_port: [u8; 2],
    pub ifindex: u32,
    pub client_mac: [u8; 6],
    pub node_mac: [u8; 6],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Snat6Value {
    pub client: [u8; 16],
    pub frontend: [u8; 16],
    pub client_port: [u8; 2],
    pub frontend_port: [u8; 2],
    pub ifindex: u32,
    pub client_mac: [u8; 6],
    pub node_mac: [u8; 6],
}

/// The node's SNAT addresses (the one entry of `nl_lb_node`, key 0); zeros
/// for a family it has none of.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LbNode {
    pub v6: [u8; 16],
    pub v4: [u8; 4],
}

/// A LoadBalancer IP answered for on the external interfaces (the value
/// counts the answers, a `u64`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb4AnnounceKey {
    pub address: [u8; 4],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lb6AnnounceKey {
    pub address: [u8; 16],
}

/// An external interface (keyed by ifindex): the MAC its answers carry.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LbDevice {
    pub mac: [u8; 6],
    pub pad: [u8; 2],
}

/// Entries of a Maglev table (`LB_MAGLEV_SIZE`).
pub const MAGLEV_SIZE: usize = 1021;

/// A Maglev table (value of `nl_lb_maglev`): the backend id behind each
/// entry, which a flow's hash picks.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbMaglev {
    pub backend_ids: [u32; MAGLEV_SIZE],
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
unsafe impl aya::Pod for Lb4AnnounceKey {}
unsafe impl aya::Pod for Lb6AnnounceKey {}
unsafe impl aya::Pod for LbDevice {}
unsafe impl aya::Pod for Snat4Value {}
unsafe impl aya::Pod for Snat6Value {}
unsafe impl aya::Pod for LbNode {}
unsafe impl aya::Pod for LbMaglev {}

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
    use bpfkit::layout::assert_same;
    use bpfkit::struct_rows;
    use std::mem::offset_of;

    /// What bpf/layout.c printed for lb.h, built by build.rs.
    const C_LAYOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/layout.txt"));

    #[test]
    fn rust_and_c_agree_on_every_size_and_offset() {
        let rust = [
            struct_rows!("lb4_key", Lb4Key, [address, port, proto, scope, slot]),
            struct_rows!("lb6_key", Lb6Key, [address, port, proto, scope, slot]),
            struct_rows!("lb_slot", LbSlot, [backend_id, count, flags, affinity_timeout]),
            struct_rows!("lb4_source_key", lpm Lb4Source, [frontend, port, proto, source]),
            struct_rows!("lb6_source_key", lpm Lb6Source, [frontend, port, proto, source]),
            struct_rows!("lb4_affinity_key", Lb4AffinityKey, [netns_cookie, address, port, proto]),
            struct_rows!("lb6_affinity_key", Lb6AffinityKey, [netns_cookie, address, port, proto]),
            struct_rows!("lb_affinity", LbAffinity, [last_used_ns, backend_id]),
            struct_rows!("lb4_backend", Lb4Backend, [address, port, flags]),
            struct_rows!("lb6_backend", Lb6Backend, [address, port, flags]),
            struct_rows!("sock4_key", Sock4Key, [cookie, backend, backend_port]),
            struct_rows!("sock4_frontend", Sock4Frontend, [address, port]),
            struct_rows!("sock6_key", Sock6Key, [cookie, backend, backend_port]),
            struct_rows!("sock6_frontend", Sock6Frontend, [address, port]),
            struct_rows!("ct4_key", Ct4Key, [saddr, daddr, sport, dport, proto]),
            struct_rows!("ct6_key", Ct6Key, [saddr, daddr, sport, dport, proto]),
            struct_rows!("ct4_value", Ct4Value, [address, port, snat_port, backend_id]),
            struct_rows!("ct6_value", Ct6Value, [address, port, snat_port, backend_id]),
            struct_rows!(
                "snat4_value",
                Snat4Value,
                [
                    client,
                    frontend,
                    client_port,
                    frontend_port,
                    ifindex,
                    client_mac,
                    node_mac
                ]
            ),
            struct_rows!(
                "snat6_value",
                Snat6Value,
                [
                    client,
                    frontend,
                    client_port,
                    frontend_port,
                    ifindex,
                    client_mac,
                    node_mac
                ]
            ),
            struct_rows!("lb_node", LbNode, [v6, v4]),
            struct_rows!("lb4_announce_key", Lb4AnnounceKey, [address]),
            struct_rows!("lb6_announce_key", Lb6AnnounceKey, [address]),
            struct_rows!("lb_device", LbDevice, [mac]),
            struct_rows!("lb_maglev", LbMaglev, [backend_ids]),
        ]
        .concat();
        // The LPM prefix counts the frontend's bits before the source's.
        assert_eq!(SOURCE4_FRONTEND_BITS as usize, offset_of!(Lb4Source, source) * 8);
        assert_eq!(SOURCE6_FRONTEND_BITS as usize, offset_of!(Lb6Source, source) * 8);
        assert_same(C_LAYOUT, &rust);
    }

    #[test]
    fn keys_hold_addresses_and_ports_in_network_order() {
        let k = Lb4Key::new(Ipv4Addr::new(10, 43, 0, 1), 443, PROTO_TCP, SCOPE_INTERNAL, 0);
        assert_eq!(k.address, [10, 43, 0, 1]);
        assert_eq!(k.port, [1, 187]);
    }
}

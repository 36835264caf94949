//! Ethernet frames for BPF_PROG_TEST_RUN, either family from the same
//! code. Checksums are left zero: the policy programs never look at them.

use std::net::IpAddr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|_| panic!("{text:?} is not an address"))
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// An IP packet; options to bend it.
#[derive(Debug, Clone)]
pub struct Ip {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: Vec<u8>,
    /// Fragment offset in 8-byte units (a non-zero one: a later fragment).
    pub fragment_offset: u16,
    /// IPv6: put a hop-by-hop options header before the payload.
    pub hop_by_hop: bool,
}

impl Ip {
    pub fn new(src: &str, dst: &str, proto: u8, payload: Vec<u8>) -> Ip {
        Ip {
            src: addr(src),
            dst: addr(dst),
            proto,
            payload,
            fragment_offset: 0,
            hop_by_hop: false,
        }
    }

    /// The IP packet itself (what ICMP errors quote).
    pub fn packet(&self) -> Vec<u8> {
        match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                let total = (20 + self.payload.len()) as u16;
                let mut ip = vec![0x45, 0];
                ip.extend(total.to_be_bytes());
                ip.extend([0, 1]);
                ip.extend((self.fragment_offset & 0x1fff).to_be_bytes());
                ip.extend([64, self.proto, 0, 0]);
                ip.extend(octets(self.src));
                ip.extend(octets(self.dst));
                ip.extend(&self.payload);
                ip
            }
            (IpAddr::V6(_), IpAddr::V6(_)) => {
                let mut headers = Vec::new();
                let mut next = self.proto;
                if self.fragment_offset != 0 {
                    let mut frag = vec![next, 0];
                    frag.extend((self.fragment_offset << 3).to_be_bytes());
                    frag.extend([0, 0, 0, 7]);
                    headers.splice(0..0, frag);
                    next = 44;
                }
                if self.hop_by_hop {
                    // Next header, length 0 (8 bytes), PadN.
                    headers.splice(0..0, [next, 0, 1, 4, 0, 0, 0, 0]);
                    next = 0;
                }
                let len = (headers.len() + self.payload.len()) as u16;
                let mut ip = vec![0x60, 0, 0, 0];
                ip.extend(len.to_be_bytes());
                ip.extend([next, 64]);
                ip.extend(octets(self.src));
                ip.extend(octets(self.dst));
                ip.extend(headers);
                ip.extend(&self.payload);
                ip
            }
            _ => panic!("{} and {} are of different families", self.src, self.dst),
        }
    }

    pub fn frame(&self) -> Vec<u8> {
        let ether_type: [u8; 2] = if self.src.is_ipv4() { [0x08, 0x00] } else { [0x86, 0xdd] };
        ethernet(ether_type, &self.packet())
    }
}

fn ethernet(ether_type: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    frame.extend(ether_type);
    frame.extend(payload);
    frame
}

pub fn tcp_segment(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend(sport.to_be_bytes());
    l4.extend(dport.to_be_bytes());
    l4.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    l4
}

pub fn udp_datagram(sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend(sport.to_be_bytes());
    l4.extend(dport.to_be_bytes());
    l4.extend([0, 12, 0, 0]);
    l4.extend(b"ping");
    l4
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

/// A TCP segment with `flags` from `src`:`sport` to `dst`:`dport`.
pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Ip {
    Ip::new(src, dst, TCP, tcp_segment(sport, dport, flags))
}

pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Ip {
    Ip::new(src, dst, UDP, udp_datagram(sport, dport))
}

fn icmp_proto(src: &str) -> u8 {
    if addr(src).is_ipv4() {
        ICMP
    } else {
        ICMPV6
    }
}

/// An echo request (or reply) with identifier `id`.
pub fn echo(src: &str, dst: &str, id: u16, request: bool) -> Ip {
    let proto = icmp_proto(src);
    let kind = match (proto, request) {
        (ICMP, true) => 8,
        (ICMP, false) => 0,
        (_, true) => 128,
        (_, false) => 129,
    };
    let mut icmp = vec![kind, 0, 0, 0];
    icmp.extend(id.to_be_bytes());
    icmp.extend([0, 1]);
    icmp.extend(b"abcdefgh");
    Ip::new(src, dst, proto, icmp)
}

/// Port unreachable from `src` to `dst`, quoting `about`'s header and
/// first 8 payload bytes.
pub fn unreachable(src: &str, dst: &str, about: &Ip) -> Ip {
    let proto = icmp_proto(src);
    let (kind, code) = if proto == ICMP { (3, 3) } else { (1, 4) };
    let mut icmp = vec![kind, code, 0, 0, 0, 0, 0, 0];
    let quoted = about.packet();
    let header = quoted.len() - about.payload.len();
    icmp.extend(&quoted[..header + 8.min(about.payload.len())]);
    Ip::new(src, dst, proto, icmp)
}

/// An IPv6 neighbour solicitation for `target`.
pub fn neighbour_solicitation(src: &str, dst: &str, target: &str) -> Ip {
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend(octets(addr(target)));
    Ip::new(src, dst, ICMPV6, icmp)
}

/// An ARP request: not IP.
pub fn arp() -> Vec<u8> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 2, 10, 10, 0, 2];
    arp.extend([0, 0, 0, 0, 0, 0, 10, 10, 0, 1]);
    ethernet([0x08, 0x06], &arp)
}

//! The TC programs on crafted packets (BPF_PROG_TEST_RUN: the kernel runs
//! the loaded program on a packet we build, and we read back the verdict
//! and the packet): NodePort DNAT on the way in, reverse NAT on the way
//! out, a frontend without backends refusing TCP with a reset and UDP
//! with ICMP port unreachable, externalTrafficPolicy: Local
//! with no endpoint on this node dropped, loadBalancerSourceRanges
//! enforced and changed, other traffic untouched; a backend on another
//! node gets the flow SNATed to the node's address and a port of its own,
//! and its reply goes back to the client from the frontend; every
//! rewritten packet has valid IP and L4 checksums. Backends are chosen
//! alike on every node (Maglev), and a flow whose backend left moves to a
//! live one.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
mod common;

use common::external;
use services::{Datapath, DatapathOptions, NodeView, Protocol};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// Internet checksum of `data` added to `sum`, not yet folded.
fn add(mut sum: u32, data: &[u8]) -> u32 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An Ethernet frame carrying TCP or UDP from `src` to `dst` with correct
/// checksums.
fn packet(proto: u8, src: (&str, u16), dst: (&str, u16)) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (src.0.parse().unwrap(), dst.0.parse().unwrap());
    let mut l4 = Vec::new();
    l4.extend(src.1.to_be_bytes());
    l4.extend(dst.1.to_be_bytes());
    if proto == TCP {
        l4.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    // SYN
    } else {
        l4.extend([0, 12, 0, 0]);
        l4.extend(b"ping");
        let len = l4.len() as u16;
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    match (s, d) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            frame.extend([0x08, 0x00]);
            let total = (20 + l4.len()) as u16;
            let mut ip = vec![0x45, 0];
            ip.extend(total.to_be_bytes());
            ip.extend([0, 1, 0x40, 0, 64, proto, 0, 0]);
            ip.extend(octets(s));
            ip.extend(octets(d));
            let c = fold(add(0, &ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            frame.extend(ip);
        }
        _ => {
            frame.extend([0x86, 0xdd]);
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend((l4.len() as u16).to_be_bytes());
            ip.extend([proto, 64]);
            ip.extend(octets(s));
            ip.extend(octets(d));
            frame.extend(ip);
        }
    }
    let check_at = if proto == TCP { 16 } else { 6 };
    let c = fold(add(pseudo(&frame, l4.len()), &l4));
    l4[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
    frame.extend(l4);
    frame
}

/// The pseudo-header sum for the frame's addresses and protocol.
fn pseudo(frame: &[u8], l4_len: usize) -> u32 {
    let (addrs, proto) = match frame[12..14] {
        [0x08, 0x00] => (&frame[26..34], frame[23]),
        _ => (&frame[22..54], frame[20]),
    };
    add(add(0, addrs), &[0, proto, (l4_len >> 8) as u8, l4_len as u8])
}

/// (source, destination) as addresses and ports, after checking every
/// checksum in the frame.
fn parse(frame: &[u8]) -> ((IpAddr, u16), (IpAddr, u16)) {
    let (src, dst, l4) = if frame[12..14] == [0x08, 0x00] {
        assert_eq!(fold(add(0, &frame[14..34])), 0, "IPv4 header checksum");
        let s: [u8; 4] = frame[26..30].try_into().unwrap();
        let d: [u8; 4] = frame[30..34].try_into().unwrap();
        (IpAddr::from(s), IpAddr::from(d), &frame[34..])
    } else {
        let s: [u8; 16] = frame[22..38].try_into().unwrap();
        let d: [u8; 16] = frame[38..54].try_into().unwrap();
        (IpAddr::from(s), IpAddr::from(d), &frame[54..])
    };
    assert_eq!(fold(add(pseudo(frame, l4.len()), l4)), 0, "L4 checksum");
    let port = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    ((src, port(0)), (dst, port(2)))
}

fn ep(a: &str, p: u16) -> (IpAddr, u16) {
    (a.parse().unwrap(), p)
}

/// A datapath on a cgroup and pin directory of its own (another node, as
/// far as the maps go), with no external interface: packets are run
/// through its TC programs by hand.
fn node(name: &str) -> (Datapath, testbed::Cgroup, testbed::PinDir) {
    let cgroup = testbed::Cgroup::new(name).unwrap();
    let pins = testbed::PinDir::new(name);
    let dp = Datapath::load(&options(&cgroup, &pins)).unwrap();
    (dp, cgroup, pins)
}

fn options(cgroup: &testbed::Cgroup, pins: &testbed::PinDir) -> DatapathOptions {
    DatapathOptions {
        pin_dir: pins.path().to_path_buf(),
        cgroup: cgroup.path().to_path_buf(),
        map_entries: 1024,
        devices: Vec::new(),
    }
}

#[test]
fn tc_programs_on_crafted_packets() {
    if !testbed::require_privileges("tc_programs_on_crafted_packets") {
        return;
    }
    let (mut dp, cgroup, pins) = node("tcp");
    dp.apply(&external("192.0.2.1", 30080, Protocol::Tcp, &[("10.250.0.2", 8080)]))
        .unwrap();
    dp.apply(&external("2001:db8::1", 30080, Protocol::Udp, &[("fd00:250::2", 5353)]))
        .unwrap();
    dp.apply(&external("192.0.2.1", 30099, Protocol::Tcp, &[])).unwrap();

    // NodePort DNAT, IPv4 TCP, and the reply's reverse NAT.
    let syn = packet(TCP, ("198.51.100.7", 40000), ("192.0.2.1", 30080));
    let (verdict, out) = dp.run_external(true, &syn).unwrap();
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(
        parse(&out),
        (ep("198.51.100.7", 40000), ep("10.250.0.2", 8080)),
        "to the backend, the client's address kept"
    );
    let again = dp.run_external(true, &syn).unwrap().1;
    assert_eq!(parse(&again).1, ep("10.250.0.2", 8080), "the flow stays on its backend");
    let reply = packet(TCP, ("10.250.0.2", 8080), ("198.51.100.7", 40000));
    let (verdict, out) = dp.run_external(false, &reply).unwrap();
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(parse(&out), (ep("192.0.2.1", 30080), ep("198.51.100.7", 40000)));

    // IPv6 UDP, both ways.
    let query = packet(UDP, ("2001:db8::99", 5000), ("2001:db8::1", 30080));
    let out = dp.run_external(true, &query).unwrap().1;
    assert_eq!(parse(&out), (ep("2001:db8::99", 5000), ep("fd00:250::2", 5353)));
    let answer = packet(UDP, ("fd00:250::2", 5353), ("2001:db8::99", 5000));
    let out = dp.run_external(false, &answer).unwrap().1;
    assert_eq!(parse(&out), (ep("2001:db8::1", 30080), ep("2001:db8::99", 5000)));

    // A frontend without backends refuses a TCP connection: the SYN
    // becomes a RST sent back where it came from. Other packets to it drop.
    let nobody = packet(TCP, ("198.51.100.7", 40001), ("192.0.2.1", 30099));
    let (verdict, rst) = dp.run_external(true, &nobody).unwrap();
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(parse(&rst), (ep("192.0.2.1", 30099), ep("198.51.100.7", 40001)));
    assert_eq!((&rst[..6], &rst[6..12]), (&nobody[6..12], &nobody[..6]), "MACs swapped");
    let tcp = &rst[34..];
    assert_eq!(tcp[13], 0x14, "RST and ACK");
    assert_eq!(&tcp[8..12], &[0, 0, 0, 2], "acknowledges the SYN");
    let nobody6 = packet(TCP, ("2001:db8::99", 40001), ("2001:db8::1", 30099));
    dp.apply(&external("2001:db8::1", 30099, Protocol::Tcp, &[])).unwrap();
    let (verdict, rst6) = dp.run_external(true, &nobody6).unwrap();
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(parse(&rst6), (ep("2001:db8::1", 30099), ep("2001:db8::99", 40001)));
    assert_eq!(rst6[54 + 13], 0x14);
    // Each refusal is counted against its frontend, in both families.
    let mut counts: Vec<(String, u64)> = dp
        .empty_counts()
        .unwrap()
        .into_iter()
        .map(|(f, n)| (format!("{}:{}", f.address, f.port), n))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![("192.0.2.1:30099".to_string(), 1), ("2001:db8::1:30099".to_string(), 1)]
    );
    // UDP is refused with ICMP port unreachable quoting the datagram.
    dp.apply(&external("192.0.2.1", 30099, Protocol::Udp, &[])).unwrap();
    let datagram = packet(UDP, ("198.51.100.7", 40001), ("192.0.2.1", 30099));
    let (verdict, icmp) = dp.run_external(true, &datagram).unwrap();
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(&icmp[12..14], &[0x08, 0x00]);
    assert_eq!(fold(add(0, &icmp[14..34])), 0, "IPv4 header checksum");
    assert_eq!(
        (icmp[23], &icmp[26..30], &icmp[30..34]),
        (1, &datagram[30..34], &datagram[26..34][..4])
    );
    assert_eq!((icmp[34], icmp[35]), (3, 3), "port unreachable");
    assert_eq!(fold(add(0, &icmp[34..])), 0, "ICMP checksum");
    assert_eq!(
        &icmp[42..],
        &datagram[14..42],
        "the datagram's IP header and first 8 bytes quoted"
    );
    dp.apply(&external("2001:db8::1", 30099, Protocol::Udp, &[])).unwrap();
    let datagram6 = packet(UDP, ("2001:db8::99", 40001), ("2001:db8::1", 30099));
    let (verdict, icmp6) = dp.run_external(true, &datagram6).unwrap();
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(
        (icmp6[20], &icmp6[22..38], &icmp6[38..54]),
        (58, &datagram6[38..54], &datagram6[22..38])
    );
    assert_eq!((icmp6[54], icmp6[55]), (1, 4), "port unreachable");
    let pseudo6 = add(
        add(0, &icmp6[22..54]),
        &[0, 0, 0, (icmp6.len() - 54) as u8, 0, 0, 0, 58],
    );
    assert_eq!(fold(add(pseudo6, &icmp6[54..])), 0, "ICMPv6 checksum");
    assert_eq!(&icmp6[62..], &datagram6[14..62]);

    // externalTrafficPolicy: Local with the only endpoint on another node:
    // traffic from outside is dropped here.
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "local", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": "10.43.0.20", "externalTrafficPolicy": "Local",
                 "ports": [{"port": 80, "nodePort": 30081}]},
    }))
    .unwrap();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "local-x"}, "addressType": "IPv4", "ports": [{"port": 8080}],
        "endpoints": [{"addresses": ["10.42.1.2"], "nodeName": "another-node"}],
    }))
    .unwrap();
    let addresses = ["192.0.2.1".parse().unwrap()];
    let node = NodeView {
        name: "this-node",
        addresses: &addresses,
    };
    for plan in services::plan(&svc, &[&slice], node) {
        dp.apply(&plan).unwrap();
    }
    let local = packet(TCP, ("198.51.100.7", 40002), ("192.0.2.1", 30081));
    assert_eq!(dp.run_external(true, &local).unwrap().0, TC_ACT_SHOT);

    // loadBalancerSourceRanges: only sources in the ranges get through,
    // and a change of the ranges applies to new flows at once.
    let mut guarded = external("203.0.113.80", 80, Protocol::Tcp, &[("10.250.0.2", 8080)]);
    guarded.source_ranges = vec!["192.0.2.0/24".parse().unwrap()];
    dp.apply(&guarded).unwrap();
    let from = |client: &str, port: u16| packet(TCP, (client, port), ("203.0.113.80", 80));
    assert_eq!(dp.run_external(true, &from("192.0.2.77", 41000)).unwrap().0, TC_ACT_OK);
    assert_eq!(
        dp.run_external(true, &from("198.51.100.7", 41001)).unwrap().0,
        TC_ACT_SHOT
    );
    guarded.source_ranges = vec!["198.51.100.0/24".parse().unwrap()];
    dp.apply(&guarded).unwrap();
    assert_eq!(
        dp.run_external(true, &from("198.51.100.7", 41002)).unwrap().0,
        TC_ACT_OK
    );
    assert_eq!(
        dp.run_external(true, &from("192.0.2.77", 41003)).unwrap().0,
        TC_ACT_SHOT
    );
    // A restarted agent reads the ranges back with the rest.
    drop(dp);
    let mut dp = Datapath::load(&options(&cgroup, &pins)).unwrap();
    assert!(!dp.apply(&guarded).unwrap(), "the ranges in place are recognised");
    guarded.source_ranges.clear();
    dp.apply(&guarded).unwrap();
    assert_eq!(dp.run_external(true, &from("192.0.2.77", 41004)).unwrap().0, TC_ACT_OK);

    // A backend on another node: the flow leaves with the node's address
    // and a SNAT port as source, and the reply to that comes back here and
    // goes to the client from the frontend, out where the client came in.
    dp.set_snat_addresses(&["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()])
        .unwrap();
    for (client, frontend, backend, proto) in [
        (("198.51.100.7", 40010), ("192.0.2.1", 30082), ("10.251.0.2", 8080), TCP),
        (("198.51.100.7", 40011), ("192.0.2.1", 30082), ("10.251.0.2", 5353), UDP),
        (
            ("2001:db8::99", 40010),
            ("2001:db8::1", 30082),
            ("fd00:251::2", 8080),
            TCP,
        ),
        (
            ("2001:db8::99", 40011),
            ("2001:db8::1", 30082),
            ("fd00:251::2", 5353),
            UDP,
        ),
    ] {
        let protocol = if proto == TCP { Protocol::Tcp } else { Protocol::Udp };
        let mut remote = external(frontend.0, frontend.1, protocol, &[backend]);
        remote.backends[0].remote = true;
        dp.apply(&remote).unwrap();
        let first = packet(proto, client, frontend);
        let (_, out) = dp.run_external(true, &first).unwrap();
        let (src, dst) = parse(&out);
        assert_eq!(dst, ep(backend.0, backend.1), "to the backend");
        assert_eq!(src.0, ep(frontend.0, 0).0, "from the node's address");
        assert!(src.1 >= 61000, "a SNAT port above the ephemeral range: {}", src.1);
        let again = dp.run_external(true, &first).unwrap().1;
        assert_eq!(parse(&again), (src, dst), "the flow keeps its SNAT port");
        // The backend's reply, to the node's address and the SNAT port.
        let reply = packet(proto, backend, (frontend.0, src.1));
        let (verdict, back) = dp.run_external(true, &reply).unwrap();
        assert_eq!(verdict, TC_ACT_REDIRECT, "sent back out towards the client");
        assert_eq!(parse(&back), (ep(frontend.0, frontend.1), ep(client.0, client.1)));
        assert_eq!(
            (&back[..6], &back[6..12]),
            (&first[6..12], &first[..6]),
            "to the MAC the client's packets came from"
        );
        // A reply to a SNAT port no flow holds is none of this program's.
        let stray = packet(proto, backend, (frontend.0, src.1.wrapping_add(1).max(61000)));
        if stray != reply {
            assert_eq!(dp.run_external(true, &stray).unwrap().0, TC_ACT_OK);
        }
    }
    // Under externalTrafficPolicy: Local (or to a local backend), no SNAT:
    // the client's address is kept (as above).
    let local_flow = packet(TCP, ("198.51.100.7", 40012), ("192.0.2.1", 30080));
    assert_eq!(
        parse(&dp.run_external(true, &local_flow).unwrap().1).0,
        ep("198.51.100.7", 40012)
    );

    // Anything else passes as it came.
    let other = packet(TCP, ("198.51.100.7", 40003), ("192.0.2.1", 22));
    assert_eq!(dp.run_external(true, &other).unwrap(), (TC_ACT_OK, other.clone()));
    let unrelated = packet(UDP, ("10.250.0.9", 53), ("198.51.100.7", 40000));
    assert_eq!(
        dp.run_external(false, &unrelated).unwrap(),
        (TC_ACT_OK, unrelated.clone())
    );
}

/// The backend each of `flows` (client ports) is sent to by `dp` for the
/// frontend `frontend`, from the client `client`.
fn chosen(
    dp: &Datapath,
    proto: u8,
    client: &str,
    frontend: (&str, u16),
    flows: std::ops::Range<u16>,
) -> Vec<(IpAddr, u16)> {
    flows
        .map(|port| {
            let (verdict, out) = dp.run_external(true, &packet(proto, (client, port), frontend)).unwrap();
            assert_eq!(verdict, TC_ACT_OK);
            parse(&out).1
        })
        .collect()
}

/// Maglev: a node that never saw a flow (behind ECMP, or after its
/// conntrack entry was evicted) sends it to the backend any other node
/// would, including through a NodePort on its own address; when a backend
/// goes, only the flows it had move.
#[test]
fn every_node_sends_a_flow_to_the_same_backend() {
    if !testbed::require_privileges("every_node_sends_a_flow_to_the_same_backend") {
        return;
    }
    let (mut a, cgroup_a, pins_a) = node("maglev-a");
    let (mut b, _cb, _pb) = node("maglev-b");
    let (mut c, _cc, _pc) = node("maglev-c");
    let families = [
        (
            TCP,
            "198.51.100.7",
            ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
            ["10.250.1.2", "10.250.1.3", "10.250.1.4"],
        ),
        (
            UDP,
            "2001:db8::99",
            ["2001:db8::1", "2001:db8::2", "2001:db8::3"],
            ["fd00:250::2", "fd00:250::3", "fd00:250::4"],
        ),
    ];
    for (proto, client, nodes, backends) in families {
        let protocol = if proto == TCP { Protocol::Tcp } else { Protocol::Udp };
        let all: Vec<(&str, u16)> = backends.iter().map(|a| (*a, 8080)).collect();
        // Nodes A and B list the endpoints in different orders.
        let mut reversed = all.clone();
        reversed.reverse();
        let gone = all[1];
        let rest: Vec<(&str, u16)> = all.iter().copied().filter(|b| *b != gone).collect();
        a.apply(&external(nodes[0], 30090, protocol, &all)).unwrap();
        b.apply(&external(nodes[1], 30090, protocol, &reversed)).unwrap();
        c.apply(&external(nodes[2], 30090, protocol, &rest)).unwrap();

        let flows = 41000..41060;
        let on_a = chosen(&a, proto, client, (nodes[0], 30090), flows.clone());
        let on_b = chosen(&b, proto, client, (nodes[1], 30090), flows.clone());
        assert_eq!(on_a, on_b, "node B chose as node A did");
        for backend in &all {
            assert!(
                on_a.contains(&ep(backend.0, backend.1)),
                "{backend:?} got no flow of 60"
            );
        }
        // Node C has one backend fewer: the flows that were on it move, and
        // (Maglev's promise is "few", not "none") hardly any other.
        let on_c = chosen(&c, proto, client, (nodes[2], 30090), flows);
        let mut needless = 0;
        for (before, after) in on_a.iter().zip(&on_c) {
            if *before == ep(gone.0, gone.1) {
                assert_ne!(after, before);
            } else if after != before {
                needless += 1;
            }
        }
        assert!(
            needless <= 6,
            "{needless} of 60 flows moved though their backend stayed"
        );
    }
    // One table per family and set of backends, shared by the frontends
    // that have them; the last frontend to go takes it along.
    assert_eq!(a.maglev_tables_in_map().unwrap(), 2);
    let second = external(
        "192.0.2.1",
        30091,
        Protocol::Tcp,
        &[("10.250.1.3", 8080), ("10.250.1.2", 8080), ("10.250.1.4", 8080)],
    );
    a.apply(&second).unwrap();
    assert_eq!(a.maglev_tables_in_map().unwrap(), 2, "the same backends share a table");
    // A restarted agent takes the tables over without writing them again.
    drop(a);
    let mut again = Datapath::load(&options(&cgroup_a, &pins_a)).unwrap();
    assert!(!again.apply(&second).unwrap(), "nothing to write after a restart");
    for frontend in [
        second.frontend,
        external("192.0.2.1", 30090, Protocol::Tcp, &[]).frontend,
    ] {
        again.remove(&frontend).unwrap();
    }
    assert_eq!(again.maglev_tables_in_map().unwrap(), 1, "the IPv6 one is left");
    again
        .remove(&external("2001:db8::1", 30090, Protocol::Udp, &[]).frontend)
        .unwrap();
    assert_eq!(again.maglev_tables_in_map().unwrap(), 0, "nothing leaked");
}

/// A tracked flow whose backend left the Service is sent to a live
/// backend from its next packet on (UDP flows would otherwise go on into
/// the void for as long as the client keeps sending), even when the
/// departed backend's id now names another backend.
#[test]
fn a_flow_whose_backend_left_goes_to_a_live_one() {
    if !testbed::require_privileges("a_flow_whose_backend_left_goes_to_a_live_one") {
        return;
    }
    let (mut dp, _cgroup, _pins) = node("left");
    for (proto, client, frontend, [x, y, z]) in [
        (
            UDP,
            ("198.51.100.7", 5000),
            ("192.0.2.1", 30053),
            [("10.250.2.2", 53), ("10.250.2.3", 53), ("10.250.2.4", 53)],
        ),
        (
            TCP,
            ("2001:db8::99", 40000),
            ("2001:db8::1", 30080),
            [("fd00:250::12", 80), ("fd00:250::13", 80), ("fd00:250::14", 80)],
        ),
    ] {
        let protocol = if proto == TCP { Protocol::Tcp } else { Protocol::Udp };
        let flow = packet(proto, client, frontend);
        let to = |dp: &Datapath| parse(&dp.run_external(true, &flow).unwrap().1).1;
        dp.apply(&external(frontend.0, frontend.1, protocol, &[x])).unwrap();
        assert_eq!(to(&dp), ep(x.0, x.1));
        dp.apply(&external(frontend.0, frontend.1, protocol, &[y])).unwrap();
        assert_eq!(to(&dp), ep(y.0, y.1), "moved off the backend that left");
        // y leaves and z arrives in one change: z takes y's freed id.
        dp.apply(&external(frontend.0, frontend.1, protocol, &[])).unwrap();
        dp.apply(&external(frontend.0, frontend.1, protocol, &[z])).unwrap();
        assert_eq!(to(&dp), ep(z.0, z.1), "not to y, whose id z now has");
        // While its backend stays, the flow stays, whatever else comes.
        dp.apply(&external(frontend.0, frontend.1, protocol, &[x, y, z]))
            .unwrap();
        assert_eq!(to(&dp), ep(z.0, z.1));
    }
}

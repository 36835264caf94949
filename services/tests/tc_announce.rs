//! Answering for LoadBalancer IPs on the node's link, on crafted frames
//! (BPF_PROG_TEST_RUN, as if they came in on an external interface): an
//! ARP request and a Neighbor Solicitation for an announced address come
//! back as the ARP reply and the Neighbor Advertisement, with the
//! interface's MAC, sent back out; requests for other addresses, on other
//! interfaces, or after the address is withdrawn pass as they came.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use services::{Datapath, DatapathOptions};
use testbed::{Cgroup, Netns};

const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;
const ASKER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

/// The ifindex and MAC of `device` in the calling thread's namespace.
fn link(device: &str) -> (u32, [u8; 6]) {
    let out = Command::new("ip")
        .args(["-j", "link", "show", device])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mac: Vec<u8> = links[0]["address"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    (links[0]["ifindex"].as_u64().unwrap() as u32, mac.try_into().unwrap())
}

fn arp(op: u8, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend(ASKER_MAC);
    frame.extend([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, op]);
    frame.extend(ASKER_MAC);
    frame.extend(sender.octets());
    frame.extend([0; 6]);
    frame.extend(target.octets());
    frame
}

/// Internet checksum of `data` added to `sum`, not yet folded.
fn add(mut sum: u32, data: &[u8]) -> u32 {
    for chunk in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The ICMPv6 checksum of an Ethernet frame's ICMPv6 message, summed with
/// its pseudo-header: 0 when valid.
fn icmp6_check(frame: &[u8]) -> u16 {
    let body = &frame[54..];
    let len = body.len() as u32;
    fold(add(add(add(0, &frame[22..54]), &len.to_be_bytes()), &[0, 0, 0, 58]) + add(0, body))
}

/// A Neighbor Solicitation for `target` from `source` (the unspecified
/// address for Duplicate Address Detection, which carries no source
/// link-layer address option), to the target's solicited-node group.
fn solicitation(source: Ipv6Addr, target: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend(t);
    if !source.is_unspecified() {
        icmp.extend([1, 1]);
        icmp.extend(ASKER_MAC);
    }
    let mut frame = vec![0x33, 0x33, 0xff, t[13], t[14], t[15]];
    frame.extend(ASKER_MAC);
    frame.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
    frame.extend((icmp.len() as u16).to_be_bytes());
    frame.extend([58, hop_limit]);
    frame.extend(source.octets());
    frame.extend(group.octets());
    frame.extend(icmp);
    let sum = icmp6_check(&frame);
    // The checksum field was zero: the complement of the sum goes there.
    frame[56..58].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(icmp6_check(&frame), 0);
    frame
}

#[test]
fn arp_and_neighbor_solicitations_for_load_balancer_ips_are_answered() {
    if !testbed::require_privileges("arp_and_neighbor_solicitations_for_load_balancer_ips_are_answered") {
        return;
    }
    let ns = Netns::new("tan").unwrap();
    let _wire = testbed::veth(Some(&ns), "ext0", Some(&ns), "peer0").unwrap();
    let cgroup = Cgroup::new("tan").unwrap();
    let pins = testbed::PinDir::new("tan");
    ns.run(|| {
        let options = DatapathOptions {
            pin_dir: pins.path().to_path_buf(),
            cgroup: cgroup.path().to_path_buf(),
            map_entries: 1024,
            devices: vec!["ext0".into()],
        };
        let mut dp = Datapath::load(&options).unwrap();
        let (ifindex, mac) = link("ext0");
        let (lb4, lb6): (Ipv4Addr, Ipv6Addr) = ("192.0.2.200".parse().unwrap(), "fd00:ffff::200".parse().unwrap());
        let asker4: Ipv4Addr = "192.0.2.100".parse().unwrap();
        let asker6: Ipv6Addr = "fd00:ffff::100".parse().unwrap();
        let announced: BTreeSet<IpAddr> = [IpAddr::V4(lb4), IpAddr::V6(lb6)].into();
        assert!(dp.set_announced(&announced).unwrap());
        let run = |frame: &[u8]| dp.run_external_on(ifindex, true, frame).unwrap();

        // ARP: the request comes back as the reply, to the asker, from the
        // interface's MAC, saying the address is at that MAC.
        let request = arp(1, asker4, lb4);
        let (verdict, reply) = run(&request);
        assert_eq!(verdict, TC_ACT_REDIRECT, "sent back out of the interface");
        assert_eq!(reply.len(), request.len());
        assert_eq!(
            (&reply[..6], &reply[6..12], &reply[12..14]),
            (&ASKER_MAC[..], &mac[..], &[8, 6][..])
        );
        assert_eq!(&reply[14..22], &[0, 1, 8, 0, 6, 4, 0, 2], "Ethernet/IPv4, opcode reply");
        assert_eq!(
            (&reply[22..28], &reply[28..32]),
            (&mac[..], &lb4.octets()[..]),
            "sender: the LB IP at our MAC"
        );
        assert_eq!(
            (&reply[32..38], &reply[38..42]),
            (&ASKER_MAC[..], &asker4.octets()[..]),
            "target: the asker"
        );

        // NDP: the solicitation comes back as a solicited, overriding
        // advertisement from the address, with our MAC as its target
        // link-layer address.
        let solicit = solicitation(asker6, lb6, 255);
        let (verdict, advert) = run(&solicit);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(
            advert.len(),
            14 + 40 + 32,
            "the advertisement and one option, nothing after"
        );
        assert_eq!(
            (&advert[..6], &advert[6..12], &advert[12..14]),
            (&ASKER_MAC[..], &mac[..], &[0x86, 0xdd][..])
        );
        assert_eq!(
            &advert[14..22],
            &[0x60, 0, 0, 0, 0, 32, 58, 255],
            "IPv6, 32 bytes of ICMPv6, hop limit 255"
        );
        assert_eq!(
            (&advert[22..38], &advert[38..54]),
            (&lb6.octets()[..], &asker6.octets()[..])
        );
        assert_eq!((advert[54], advert[55]), (136, 0), "Neighbor Advertisement");
        assert_eq!(&advert[58..62], &[0x60, 0, 0, 0], "Solicited and Override, not Router");
        assert_eq!(&advert[62..78], &lb6.octets()[..], "target");
        assert_eq!(
            (advert[78], advert[79], &advert[80..86]),
            (2, 1, &mac[..]),
            "target link-layer address option"
        );
        assert_eq!(icmp6_check(&advert), 0, "ICMPv6 checksum");

        // Duplicate Address Detection: the answer goes to all nodes, not
        // marked solicited.
        let (verdict, dad) = run(&solicitation(Ipv6Addr::UNSPECIFIED, lb6, 255));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_eq!(&dad[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&dad[38..54], &"ff02::1".parse::<Ipv6Addr>().unwrap().octets()[..]);
        assert_eq!(dad[58], 0x20, "Override only");
        assert_eq!(icmp6_check(&dad), 0);

        // Each answer is counted against its address.
        assert_eq!(
            dp.read_announced().unwrap(),
            [(IpAddr::V4(lb4), 1), (IpAddr::V6(lb6), 2)]
        );

        // Not ours to answer: another address, a reply, a solicitation
        // that a router forwarded (hop limit below 255), a gratuitous ARP.
        let other4: Ipv4Addr = "192.0.2.201".parse().unwrap();
        let other6: Ipv6Addr = "fd00:ffff::201".parse().unwrap();
        for frame in [
            arp(1, asker4, other4),
            arp(2, asker4, lb4),
            arp(1, lb4, lb4),
            solicitation(asker6, other6, 255),
            solicitation(asker6, lb6, 64),
        ] {
            assert_eq!(run(&frame), (TC_ACT_OK, frame.clone()), "{frame:x?}");
        }
        // On an interface that is not an external one, nothing is answered.
        let (peer, _) = link("peer0");
        assert_eq!(
            dp.run_external_on(peer, true, &request).unwrap(),
            (TC_ACT_OK, request.clone())
        );

        // A restarted agent finds what was announced; withdrawn, an address
        // is no longer answered for.
        drop(dp);
        let mut dp = Datapath::load(&options).unwrap();
        assert!(!dp.set_announced(&announced).unwrap(), "read back: nothing to change");
        assert!(dp.set_announced(&[IpAddr::V6(lb6)].into()).unwrap());
        let run = |frame: &[u8]| dp.run_external_on(ifindex, true, frame).unwrap();
        assert_eq!(run(&request), (TC_ACT_OK, request.clone()));
        assert_eq!(run(&solicit).0, TC_ACT_REDIRECT, "the other address still is");
    });
}

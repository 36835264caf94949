//! The policy programs on crafted packets (BPF_PROG_TEST_RUN: the kernel
//! runs the loaded program on a frame we build, as if it crossed a pod's
//! veth), with maps filled by `plan` + `apply` from a real `compile`:
//! allow and deny by pod, port range, protocol and ipBlock (with except),
//! in both families; replies of allowed flows pass while the reverse new
//! flow is denied; ICMP echo, related ICMP errors, neighbour discovery and
//! fragments; veths without an endpoint, pods not yet known and
//! containers without a pod; a policy change cutting a tracked flow; drop
//! events, counters, and a restarted agent taking over.
//!
//! The veths are veth pairs inside a network namespace of each test's
//! own (BPF_PROG_TEST_RUN resolves the ifindex there); nothing is sent
//! over them.

use std::collections::BTreeMap;
use std::time::Duration;

use policy::{
    Datapath, DatapathOptions, Direction, DropEvent, DropReason, Hook, Identity, NamespacedName, TC_ACT_SHOT,
    TC_ACT_UNSPEC,
};
use serde_json::json;

mod common;

use common::frames::{arp, echo, neighbour_solicitation, tcp, udp, unreachable, Ip, ACK, SYN, TCP};
use common::{identity, pod, Cluster};

/// The host-side veths of the test: server, client and prober pods, a pod
/// the agent has not seen yet, a container without a pod, and one with no
/// endpoint entry at all.
const DEVICES: [&str; 6] = ["srv", "cli", "prb", "pnd", "unm", "orp"];

/// The addresses of one family.
struct Family {
    server: &'static str,
    client: &'static str,
    prober: &'static str,
    remote: &'static str,
    /// In the server's ipBlock, in its except, and outside it.
    in_block: &'static str,
    in_except: &'static str,
    outside: &'static str,
}

const V4: Family = Family {
    server: "10.10.0.1",
    client: "10.10.0.2",
    prober: "10.10.0.3",
    remote: "10.20.0.4",
    in_block: "192.0.2.10",
    in_except: "192.0.2.200",
    outside: "203.0.113.1",
};

const V6: Family = Family {
    server: "fd10::1",
    client: "fd10::2",
    prober: "fd10::3",
    remote: "fd20::4",
    in_block: "2001:db8::5",
    in_except: "2001:db8:1::5",
    outside: "2001:db9::1",
};

/// The server: isolated both ways. Ingress from the client on 80-81/TCP
/// and 53/UDP, from an ipBlock (minus its except) on 443, and from the
/// prober on anything; no egress at all (replies only).
fn server_policy(client_ports: serde_json::Value) -> serde_json::Value {
    json!({
        "podSelector": {"matchLabels": {"app": "server"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": client_ports},
            {"from": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}},
                      {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}],
             "ports": [{"port": 443}]},
            {"from": [{"podSelector": {"matchLabels": {"app": "prober"}}}]}
        ]
    })
}

fn client_ports() -> serde_json::Value {
    json!([{"port": 80, "endPort": 81}, {"protocol": "UDP", "port": 53}])
}

struct Bed {
    ns: testbed::Netns,
    pins: testbed::PinDir,
    dp: Datapath,
    cluster: Cluster,
    ifindex: BTreeMap<&'static str, u32>,
}

impl Bed {
    fn new(prefix: &str) -> Bed {
        let ns = testbed::Netns::new(prefix).unwrap();
        for dev in DEVICES {
            let peer = format!("{dev}-pod");
            for cmd in [
                vec!["ip", "link", "add", dev, "type", "veth", "peer", "name", &peer],
                vec!["ip", "link", "set", dev, "up"],
            ] {
                let out = ns.exec(&cmd);
                assert!(
                    out.status.success(),
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let ifindex: BTreeMap<&str, u32> = ns.run(|| {
            DEVICES
                .iter()
                .map(|dev| (*dev, nix::net::if_::if_nametoindex(*dev).unwrap()))
                .collect()
        });
        let pins = testbed::PinDir::new(prefix);
        let dp = Datapath::load(&options(&pins)).unwrap_or_else(|e| panic!("{}", common::chain(&e)));
        let mut cluster = Cluster::new(vec![
            pod("x", "server", "server", &[V4.server, V6.server]),
            pod("x", "client", "client", &[V4.client, V6.client]),
            pod("x", "prober", "prober", &[V4.prober, V6.prober]),
            pod("x", "remote", "remote", &[V4.remote, V6.remote]),
        ]);
        cluster.set_policy("server", server_policy(client_ports()));
        cluster.set_policy(
            "client",
            json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "server"}}}]}]}),
        );
        cluster.local = vec![
            (Some("server".into()), ifindex["srv"]),
            (Some("client".into()), ifindex["cli"]),
            (Some("prober".into()), ifindex["prb"]),
            (Some("pending".into()), ifindex["pnd"]),
            (None, ifindex["unm"]),
        ];
        let mut bed = Bed {
            ns,
            pins,
            dp,
            cluster,
            ifindex,
        };
        bed.apply();
        bed
    }

    fn apply(&mut self) -> policy::Applied {
        self.cluster.apply(&mut self.dp).2
    }

    /// The program's verdict on `frame` crossing `dev` at `hook`.
    fn verdict(&self, hook: Hook, dev: &str, frame: &[u8]) -> i32 {
        let ifindex = self.ifindex[dev];
        let dp = &self.dp;
        self.ns.run(|| dp.run_packet(hook, ifindex, frame).unwrap())
    }

    #[track_caller]
    fn passes(&self, hook: Hook, dev: &str, packet: &Ip) {
        assert_eq!(
            self.verdict(hook, dev, &packet.frame()),
            TC_ACT_UNSPEC,
            "{hook:?} {dev}: {packet:?} should pass"
        );
    }

    #[track_caller]
    fn drops(&self, hook: Hook, dev: &str, packet: &Ip) {
        assert_eq!(
            self.verdict(hook, dev, &packet.frame()),
            TC_ACT_SHOT,
            "{hook:?} {dev}: {packet:?} should drop"
        );
    }

    /// A packet from the client to the server, through both veths.
    #[track_caller]
    fn client_to_server(&self, packet: &Ip, allowed: bool) {
        self.passes(Hook::FromPod, "cli", packet);
        if allowed {
            self.passes(Hook::ToPod, "srv", packet);
        } else {
            self.drops(Hook::ToPod, "srv", packet);
        }
    }

    fn events(&self) -> Vec<DropEvent> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut events = self.dp.drop_events().unwrap();
            let mut found = Vec::new();
            // At least one arrives through the async path; then the rest.
            let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
            found.extend(first.ok().map(Result::unwrap));
            while let Some(event) = events.try_next() {
                found.push(event);
            }
            found
        })
    }
}

fn options(pins: &testbed::PinDir) -> DatapathOptions {
    DatapathOptions {
        pin_dir: pins.path().to_path_buf(),
        rule_entries: 1024,
        ipcache_entries: 1024,
        ct_entries: 4096,
    }
}

fn skip(test: &str) -> bool {
    !testbed::require_privileges(test)
}

#[test]
fn allows_denies_and_tracks_replies_in_both_families() {
    if skip("allows_denies_and_tracks_replies_in_both_families") {
        return;
    }
    let bed = Bed::new("polpkt");
    for f in [V4, V6] {
        // Allowed both ways; the reply passes the server's egress (which
        // allows nothing new) as part of the flow.
        bed.client_to_server(&tcp(f.client, 40000, f.server, 80, SYN), true);
        let reply = tcp(f.server, 80, f.client, 40000, SYN | ACK);
        bed.passes(Hook::FromPod, "srv", &reply);
        bed.passes(Hook::ToPod, "cli", &reply);
        bed.client_to_server(&tcp(f.client, 40000, f.server, 80, ACK), true);
        // The same tuple as a new flow from the server is denied.
        bed.drops(Hook::FromPod, "srv", &tcp(f.server, 80, f.client, 40001, SYN));
        bed.drops(Hook::FromPod, "srv", &tcp(f.server, 40000, f.client, 80, SYN));
        // The port range, and the protocol of each port.
        bed.client_to_server(&tcp(f.client, 40002, f.server, 81, SYN), true);
        bed.client_to_server(&tcp(f.client, 40003, f.server, 79, SYN), false);
        bed.client_to_server(&tcp(f.client, 40004, f.server, 82, SYN), false);
        bed.client_to_server(&udp(f.client, 40005, f.server, 53), true);
        bed.client_to_server(&udp(f.client, 40006, f.server, 80), false);
        // The client may only talk to the server.
        bed.drops(Hook::FromPod, "cli", &tcp(f.client, 40007, f.remote, 80, SYN));
        bed.drops(Hook::FromPod, "cli", &tcp(f.client, 40008, f.outside, 80, SYN));
        // Nothing isolates the prober: it sends and receives anything.
        bed.passes(Hook::FromPod, "prb", &tcp(f.prober, 40009, f.outside, 22, SYN));
        bed.passes(Hook::ToPod, "prb", &udp(f.outside, 40010, f.prober, 9));
    }
    // Extension headers are skipped to find the ports.
    let mut hop = tcp(V6.client, 40011, V6.server, 80, SYN);
    hop.hop_by_hop = true;
    bed.client_to_server(&hop, true);
    let mut hop = tcp(V6.client, 40012, V6.server, 82, SYN);
    hop.hop_by_hop = true;
    bed.client_to_server(&hop, false);
}

#[test]
fn ip_blocks_match_by_prefix_with_excepts() {
    if skip("ip_blocks_match_by_prefix_with_excepts") {
        return;
    }
    let bed = Bed::new("polblk");
    for f in [V4, V6] {
        bed.passes(Hook::ToPod, "srv", &tcp(f.in_block, 41000, f.server, 443, SYN));
        bed.drops(Hook::ToPod, "srv", &tcp(f.in_block, 41001, f.server, 444, SYN));
        bed.drops(Hook::ToPod, "srv", &tcp(f.in_except, 41002, f.server, 443, SYN));
        bed.drops(Hook::ToPod, "srv", &tcp(f.outside, 41003, f.server, 443, SYN));
        // A pod outside the block is not in it either.
        bed.drops(Hook::ToPod, "srv", &tcp(f.remote, 41004, f.server, 443, SYN));
    }
    // An IPv4 block never matches IPv6. IPv6 with an IPv4-mapped
    // address, which the maps could not tell from IPv4, never passes.
    bed.drops(
        Hook::ToPod,
        "srv",
        &tcp("::ffff:192.0.2.10", 41005, V6.server, 443, SYN),
    );
    bed.drops(
        Hook::FromPod,
        "prb",
        &tcp(V6.prober, 41006, "::ffff:203.0.113.1", 80, SYN),
    );
    let events = bed.events();
    assert_eq!(
        events.iter().filter(|e| e.reason == DropReason::V4Mapped).count(),
        2,
        "{events:#?}"
    );
}

#[test]
fn icmp_echo_errors_fragments_and_neighbour_discovery() {
    if skip("icmp_echo_errors_fragments_and_neighbour_discovery") {
        return;
    }
    let bed = Bed::new("policmp");
    for f in [V4, V6] {
        // The prober may send anything, so echo too; the reply returns.
        let request = echo(f.prober, f.server, 7, true);
        bed.passes(Hook::FromPod, "prb", &request);
        bed.passes(Hook::ToPod, "srv", &request);
        bed.passes(Hook::FromPod, "srv", &echo(f.server, f.prober, 7, false));
        bed.drops(Hook::FromPod, "srv", &echo(f.server, f.prober, 8, false));
        // The client's rule has ports: no ICMP.
        bed.client_to_server(&echo(f.client, f.server, 9, true), false);

        // An error about a tracked flow passes with it; one about an
        // unknown flow is new (and the server may start nothing).
        let query = udp(f.client, 5353, f.server, 53);
        bed.client_to_server(&query, true);
        bed.passes(Hook::FromPod, "srv", &unreachable(f.server, f.client, &query));
        bed.passes(Hook::ToPod, "cli", &unreachable(f.server, f.client, &query));
        let unknown = udp(f.client, 5454, f.server, 53);
        bed.drops(Hook::FromPod, "srv", &unreachable(f.server, f.client, &unknown));

        // A later fragment has no ports: only a port-less rule allows it.
        let mut fragment = udp(f.client, 6000, f.server, 53);
        fragment.fragment_offset = 185;
        bed.client_to_server(&fragment, false);
        let mut fragment = udp(f.prober, 6000, f.server, 53);
        fragment.fragment_offset = 185;
        bed.passes(Hook::ToPod, "srv", &fragment);
    }
    // Neighbour discovery and ARP pass the isolated server both ways.
    bed.passes(
        Hook::FromPod,
        "srv",
        &neighbour_solicitation("fd10::1", "ff02::1:ff00:2", "fd10::2"),
    );
    bed.passes(
        Hook::ToPod,
        "srv",
        &neighbour_solicitation("fe80::1", "ff02::1:ff00:1", "fd10::1"),
    );
    assert_eq!(bed.verdict(Hook::ToPod, "srv", &arp()), TC_ACT_UNSPEC);
    assert_eq!(bed.verdict(Hook::FromPod, "srv", &arp()), TC_ACT_UNSPEC);
}

#[test]
fn veths_without_endpoint_pending_pods_and_containers_without_pod() {
    if skip("veths_without_endpoint_pending_pods_and_containers_without_pod") {
        return;
    }
    let bed = Bed::new("polend");
    // No endpoint entry: nothing at all passes, not even ARP.
    bed.drops(Hook::ToPod, "orp", &tcp(V4.client, 42000, "10.10.0.9", 80, SYN));
    bed.drops(Hook::FromPod, "orp", &udp("fd10::9", 42001, V6.server, 53));
    assert_eq!(bed.verdict(Hook::FromPod, "orp", &arp()), TC_ACT_SHOT);
    // A pod the agent has not seen yet: denied, but ARP and ND still work.
    bed.drops(Hook::ToPod, "pnd", &tcp(V4.client, 42002, "10.10.0.8", 80, SYN));
    bed.drops(Hook::FromPod, "pnd", &tcp("10.10.0.8", 42003, V4.outside, 80, SYN));
    assert_eq!(bed.verdict(Hook::FromPod, "pnd", &arp()), TC_ACT_UNSPEC);
    bed.passes(
        Hook::FromPod,
        "pnd",
        &neighbour_solicitation("fd10::8", "ff02::1:ff00:1", "fd10::1"),
    );
    // A container without a pod: nothing is enforced.
    bed.passes(Hook::ToPod, "unm", &tcp(V4.outside, 42004, "10.10.0.7", 80, SYN));
    bed.passes(Hook::FromPod, "unm", &tcp("fd10::7", 42005, V6.outside, 80, SYN));

    let events = bed.events();
    let orphan: Vec<&DropEvent> = events.iter().filter(|e| e.ifindex == bed.ifindex["orp"]).collect();
    assert_eq!(orphan.len(), 3, "{events:#?}");
    assert!(orphan
        .iter()
        .all(|e| e.reason == DropReason::NoEndpoint && e.local_identity == Identity(0)));
    assert_eq!(orphan[0].direction, Direction::Ingress);
    assert_eq!(orphan[0].destination, Some("10.10.0.9".parse().unwrap()));
    assert_eq!(orphan[1].source, Some("fd10::9".parse().unwrap()));
    assert_eq!(
        (orphan[2].source, orphan[2].direction),
        (None, Direction::Egress),
        "ARP: no addresses"
    );
    let pending: Vec<&DropEvent> = events.iter().filter(|e| e.ifindex == bed.ifindex["pnd"]).collect();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|e| e.reason == DropReason::Denied));
}

#[test]
fn a_policy_change_cuts_the_flows_it_no_longer_allows() {
    if skip("a_policy_change_cuts_the_flows_it_no_longer_allows") {
        return;
    }
    let mut bed = Bed::new("polrev");
    for f in [V4, V6] {
        bed.client_to_server(&tcp(f.client, 43000, f.server, 80, SYN), true);
        bed.client_to_server(&tcp(f.client, 43001, f.server, 81, SYN), true);
    }
    let before = bed.dp.revision();
    // Port 80 is no longer allowed.
    bed.cluster.set_policy("server", server_policy(json!([{"port": 81}])));
    let applied = bed.apply();
    assert!(applied.changed());
    assert_eq!(applied.revision, before + 1);
    for f in [V4, V6] {
        let cut = tcp(f.client, 43000, f.server, 80, ACK);
        // The client's egress still allows it; the server's ingress not.
        bed.passes(Hook::FromPod, "cli", &cut);
        bed.drops(Hook::ToPod, "srv", &cut);
        // Gone from tracking: the server's reply is a new flow now.
        bed.drops(Hook::FromPod, "srv", &tcp(f.server, 80, f.client, 43000, ACK));
        // Still allowed flows go on, both ways.
        bed.client_to_server(&tcp(f.client, 43001, f.server, 81, ACK), true);
        bed.passes(Hook::FromPod, "srv", &tcp(f.server, 81, f.client, 43001, ACK));
    }
    // Planning the same again changes nothing and keeps the revision.
    let again = bed.apply();
    assert_eq!((again.written, again.removed, again.revision), (0, 0, before + 1));

    let events = bed.events();
    let srv = bed.ifindex["srv"];
    let revoked: Vec<&DropEvent> = events.iter().filter(|e| e.reason == DropReason::Revoked).collect();
    assert_eq!(revoked.len(), 2, "{events:#?}");
    assert!(revoked
        .iter()
        .all(|e| e.ifindex == srv && e.destination_port == 80 && e.source_port == 43000));
    let replies = events
        .iter()
        .filter(|e| e.reason == DropReason::Denied && e.source_port == 80);
    assert_eq!(replies.count(), 2);
}

#[test]
fn drop_events_and_counters_say_what_happened() {
    if skip("drop_events_and_counters_say_what_happened") {
        return;
    }
    let mut bed = Bed::new("polcnt");
    bed.client_to_server(&tcp(V4.client, 44000, V4.server, 80, SYN), true);
    bed.client_to_server(&tcp(V4.client, 44000, V4.server, 80, ACK), true);
    bed.client_to_server(&udp(V6.client, 44001, V6.server, 53), true);
    for _ in 0..3 {
        bed.client_to_server(&tcp(V6.client, 44002, V6.server, 82, SYN), false);
    }

    let counters = bed.dp.endpoint_counters().unwrap();
    let srv = counters[&bed.ifindex["srv"]];
    assert_eq!((srv.ingress_allowed_flows, srv.ingress_dropped_packets), (2, 3));
    assert_eq!((srv.egress_allowed_flows, srv.egress_dropped_packets), (0, 0));
    let cli = counters[&bed.ifindex["cli"]];
    assert_eq!((cli.egress_allowed_flows, cli.egress_dropped_packets), (3, 0));

    let slots = bed.dp.slots();
    let slot = |name| slots.slot_of(&NamespacedName::new("x", name)).unwrap();
    let by_policy = bed.dp.policy_counters().unwrap();
    assert_eq!((by_policy[&slot("server")], by_policy[&slot("client")]), (2, 3));

    let compiled = bed.cluster.compile();
    let events = bed.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    for event in &events {
        assert_eq!(
            event,
            &DropEvent {
                timestamp_ns: event.timestamp_ns,
                ifindex: bed.ifindex["srv"],
                direction: Direction::Ingress,
                reason: DropReason::Denied,
                source: Some(V6.client.parse().unwrap()),
                destination: Some(V6.server.parse().unwrap()),
                protocol: TCP,
                source_port: 44002,
                destination_port: 82,
                local_identity: identity(&compiled, "server"),
                remote_identity: identity(&compiled, "client"),
            }
        );
    }
    assert!(events[0].timestamp_ns > 0 && events.windows(2).all(|w| w[0].timestamp_ns <= w[1].timestamp_ns));
}

#[test]
fn a_restarted_agent_takes_over_the_maps_and_flows() {
    if skip("a_restarted_agent_takes_over_the_maps_and_flows") {
        return;
    }
    let mut bed = Bed::new("polrst");
    bed.client_to_server(&tcp(V4.client, 45000, V4.server, 81, SYN), true);
    let revision = bed.dp.revision();
    let slots = bed.dp.slots().clone();
    // The agent goes; the next one loads the same pinned maps.
    bed.dp = Datapath::load(&options(&bed.pins)).unwrap();
    assert_eq!(bed.dp.revision(), revision);
    let class = |s: &policy::PolicySlots| s.classes().map(|(c, n)| (*c, n)).collect::<Vec<_>>();
    assert_eq!(class(bed.dp.slots()), class(&slots), "class numbers keep their meaning");
    let applied = bed.apply();
    assert_eq!((applied.written, applied.removed, applied.revision), (0, 0, revision));
    // The tracked flow goes on; new ones are judged as before.
    bed.passes(Hook::FromPod, "srv", &tcp(V4.server, 81, V4.client, 45000, SYN | ACK));
    bed.client_to_server(&tcp(V4.client, 45001, V4.server, 82, SYN), false);
    bed.client_to_server(&tcp(V4.client, 45002, V4.server, 80, SYN), true);
}

#[test]
fn a_full_map_says_which_and_what_to_do_and_a_bigger_one_replaces_it() {
    if skip("a_full_map_says_which_and_what_to_do_and_a_bigger_one_replaces_it") {
        return;
    }
    let pins = testbed::PinDir::new("polfull");
    let small = DatapathOptions {
        rule_entries: 2,
        ..options(&pins)
    };
    let mut dp = Datapath::load(&small).unwrap();
    let mut cluster = Cluster::new(vec![
        pod("x", "server", "server", &[V4.server, V6.server]),
        pod("x", "client", "client", &[V4.client, V6.client]),
    ]);
    cluster.set_policy("server", server_policy(client_ports()));
    cluster.local = vec![(Some("server".into()), 7)];
    let compiled = cluster.compile();
    let planned = policy::plan(&compiled, &cluster.endpoints(), dp.slots());
    assert!(planned.rules.len() > 2);
    let err = dp.apply(&planned).unwrap_err();
    assert_eq!(
        err.to_string(),
        "BPF map nl_pol_rules is full (2 entries); raise policy.ruleEntries"
    );
    // A bigger size is a new set of maps; the old ones go.
    drop(dp);
    let mut dp = Datapath::load(&options(&pins)).unwrap();
    let applied = dp.apply(&planned).unwrap();
    assert_eq!(applied.written, planned.rules.len() + planned.ipcache.len() + 1);
    let map_dirs: Vec<String> = std::fs::read_dir(pins.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("maps-"))
        .collect();
    assert_eq!(map_dirs.len(), 1, "{map_dirs:?}");
    assert!(map_dirs[0].ends_with("-r1024-i1024-c4096"), "{map_dirs:?}");
}

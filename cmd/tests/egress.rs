//! Egress NAT with real traffic: a node namespace whose external link
//! leads to an "outside" namespace that has no route back to the pod
//! ranges, so only the node's masquerading brings replies back. Pods reach
//! an outside TCP/UDP server in both families and it sees the node's
//! address; pod to pod (same node, and across nodes with native routing)
//! keeps the pod's own address; with `egress.masquerade: false` the
//! outside is unreachable; the table outlives an agent restart.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, external_addresses, Bed, Cluster, NodeWithOutside};
use netstack::wire::nft::{NftSocket, NFPROTO_INET};
use serde_json::{json, Value};
use testbed::{Netns, Proto};

/// One test at a time: each runs agents and pods of its own.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PORT: u16 = 9000;

/// TCP and UDP servers in a namespace that answer with the address the
/// client came from; stopped on drop.
struct PeerEcho {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl PeerEcho {
    fn start(ns: &Netns) -> PeerEcho {
        let (tcp, udp) = ns.run(|| {
            (
                TcpListener::bind(("::", PORT)).unwrap(),
                UdpSocket::bind(("::", PORT)).unwrap(),
            )
        });
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t1 = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.write_all(format!("{}\n", unmapped(peer.ip())).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let s = stop.clone();
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{}\n", unmapped(peer.ip())).as_bytes(), peer);
                }
            }
        });
        PeerEcho {
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for PeerEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What the server at `to` says the client's address is, asking from the
/// namespace at `from`; None when nothing answers within a second.
fn seen_as(from: &Path, to: SocketAddr, proto: Proto) -> Option<String> {
    let timeout = Duration::from_secs(1);
    testbed::run_in(from, || match proto {
        Proto::Tcp => {
            let mut c = TcpStream::connect_timeout(&to, timeout).ok()?;
            c.set_read_timeout(Some(timeout)).ok()?;
            let mut s = String::new();
            c.read_to_string(&mut s).ok()?;
            Some(s.trim().to_string())
        }
        Proto::Udp => {
            let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
            let socket = UdpSocket::bind(any).ok()?;
            socket.set_read_timeout(Some(timeout)).ok()?;
            socket.send_to(b"who\n", to).ok()?;
            let mut buf = [0u8; 512];
            let (n, _) = socket.recv_from(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
        }
    })
    .ok()
    .flatten()
}

/// Asks a few times (the agent's first pass may still be under way).
fn seen_as_eventually(from: &Path, to: SocketAddr, proto: Proto) -> Option<String> {
    for _ in 0..5 {
        if let Some(s) = seen_as(from, to, proto) {
            return Some(s);
        }
    }
    None
}

fn pod_ips(out: &common::Outcome) -> (IpAddr, IpAddr) {
    let ips: Vec<IpAddr> = out.ips();
    let v4 = *ips.iter().find(|ip| ip.is_ipv4()).expect("an IPv4 address");
    let v6 = *ips.iter().find(|ip| ip.is_ipv6()).expect("an IPv6 address");
    (v4, v6)
}

/// Whether table `inet netlet` exists in the calling thread's namespace.
fn table_exists() -> bool {
    NftSocket::open().unwrap().table_exists(NFPROTO_INET, "netlet").unwrap()
}

const OUTSIDE_V4: &str = "192.0.2.100";
const OUTSIDE_V6: &str = "fd00:ffff::100";

fn outside(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), PORT)
}

#[test]
fn pods_reach_the_outside_as_the_node_and_each_other_as_themselves() {
    if !testbed::require_privileges("pods_reach_the_outside_as_the_node_and_each_other_as_themselves") {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let NodeWithOutside {
        wire: _wire,
        outside: outside_ns,
        node,
    } = NodeWithOutside::new("egn", "ego");
    let _outside_server = PeerEcho::start(&outside_ns);
    node.run(|| {
        let bed = Bed::new(&["10.131.0.0/28", "fd00:131::/124"]);
        bed.set_node_addresses(external_addresses());
        // Test beds leave egress NAT off by default; this test is about it.
        let cluster = json!({"clusterCIDR": "10.131.0.0/16,fd00:131::/56", "egress": {"masquerade": true}});
        let agent = bed.agent_with(cluster.clone());
        let conf = bed.plugin.conf("1.0.0", json!({}));
        let (a, b) = (Netns::new("ega").unwrap(), Netns::new("egb").unwrap());
        let added = bed.plugin.exec("ADD", "a", Some(&a.path()), &conf);
        assert!(added.ok, "{added:?}");
        let (a_v4, a_v6) = pod_ips(&added);
        let added = bed.plugin.exec("ADD", "b", Some(&b.path()), &conf);
        assert!(added.ok, "{added:?}");
        let (b_v4, b_v6) = pod_ips(&added);
        let _pod_server = PeerEcho::start(&b);

        // Outside: seen as the node, TCP and UDP, both families.
        for proto in [Proto::Tcp, Proto::Udp] {
            for (to, node_ip) in [(OUTSIDE_V4, "192.0.2.10"), (OUTSIDE_V6, "fd00:ffff::1")] {
                let got = seen_as_eventually(&a.path(), outside(to), proto);
                assert_eq!(got.as_deref(), Some(node_ip), "{proto} to {to}");
            }
            // Pod to pod on the node: the pod's own address.
            for (to, me) in [(b_v4, a_v4), (b_v6, a_v6)] {
                let got = seen_as_eventually(&a.path(), SocketAddr::new(to, PORT), proto);
                assert_eq!(got, Some(me.to_string()), "{proto} to pod {to}");
            }
        }
        assert!(table_exists());
        let metrics = bed.metrics();
        let rules = metrics
            .lines()
            .find_map(|l| l.strip_prefix("netlet_egress_rules "))
            .unwrap_or_else(|| panic!("no netlet_egress_rules in {metrics}"));
        // Per family: accept to clusterCIDR, serviceCIDR, the node's
        // address; then masquerade.
        assert_eq!(rules.trim(), "8", "{metrics}");
        let report = || -> Value {
            let got = bed
                .rt
                .block_on(netstack::admin::client::get(&bed.admin_socket(), "/v1/egress"))
                .unwrap();
            serde_json::from_str(&got.body).unwrap()
        };
        let excepted = |r: &Value, cidr: &str| {
            r["sources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["except"].as_array().unwrap().iter().any(|e| e == cidr))
        };
        let r = report();
        assert_eq!(r["installed"], true, "{r}");
        assert!(excepted(&r, "192.0.2.10/32") && excepted(&r, "fd00:ffff::1/128"), "{r}");

        // A Node address change is a new table.
        let mut addresses = external_addresses();
        addresses
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "ExternalIP", "address": "198.51.100.7"}));
        bed.set_node_addresses(addresses);
        assert!(
            eventually(Duration::from_secs(5), || excepted(&report(), "198.51.100.7/32")),
            "{}",
            report()
        );
        assert_eq!(report()["rules"], 9);

        // The table stays across a restart, and so does the NAT.
        bed.rt.block_on(agent.shutdown());
        assert!(table_exists(), "the table went with the agent");
        let agent = bed.agent_with(cluster.clone());
        assert!(table_exists());
        let got = seen_as_eventually(&a.path(), outside(OUTSIDE_V4), Proto::Tcp);
        assert_eq!(got.as_deref(), Some("192.0.2.10"), "after a restart");

        // Off: the table goes, and the outside, with no route back to the
        // pods, is out of reach: the NAT is what made it work.
        bed.rt.block_on(agent.shutdown());
        let mut off = cluster.clone();
        off["egress"] = json!({"masquerade": false});
        let agent = bed.agent_with(off);
        assert!(
            eventually(Duration::from_secs(5), || !table_exists()),
            "the table stayed"
        );
        for proto in [Proto::Tcp, Proto::Udp] {
            for to in [OUTSIDE_V4, OUTSIDE_V6] {
                let got = seen_as(&a.path(), outside(to), proto);
                assert_eq!(got, None, "{proto} to {to} without NAT");
            }
            // Pod to pod is not affected.
            let got = seen_as_eventually(&a.path(), SocketAddr::new(b_v4, PORT), proto);
            assert_eq!(got, Some(a_v4.to_string()));
        }

        // exceptCIDRs: a destination reached with the pod's own address
        // (and so, here, not at all).
        bed.rt.block_on(agent.shutdown());
        let mut except = cluster.clone();
        except["egress"] = json!({"masquerade": true, "exceptCIDRs": ["192.0.2.0/24"]});
        let agent = bed.agent_with(except);
        let got = seen_as_eventually(&a.path(), outside(OUTSIDE_V6), Proto::Tcp);
        assert_eq!(got.as_deref(), Some("fd00:ffff::1"), "IPv6 is still masqueraded");
        assert_eq!(
            seen_as(&a.path(), outside(OUTSIDE_V4), Proto::Tcp),
            None,
            "192.0.2.0/24 is excepted"
        );

        assert!(bed.plugin.exec("DEL", "a", Some(&a.path()), &conf).ok);
        assert!(bed.plugin.exec("DEL", "b", Some(&b.path()), &conf).ok);
        bed.rt.block_on(agent.shutdown());
    });
}

#[test]
fn pods_on_other_nodes_see_the_pod_address_with_native_routing() {
    if !testbed::require_privileges("pods_on_other_nodes_see_the_pod_address_with_native_routing") {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = Cluster::new("egc", 2);
    cluster.start_agents(&json!({"routing": {"mode": "native"}}));
    let add = |i: usize, name: &str| {
        let node = &cluster.nodes[i];
        let ns = Netns::new(name).unwrap();
        let conf = node.plugin.conf("1.0.0", json!({}));
        let out = node
            .plugin
            .exec_pod("ADD", name, ("default", name), Some(&ns.path()), &conf);
        assert!(out.ok, "ADD {name} on {}: {out:?}", node.name);
        let ips = pod_ips(&out);
        (ns, ips)
    };
    let (client, (c_v4, c_v6)) = add(0, "egcc");
    let (server, (s_v4, s_v6)) = add(1, "egcs");
    let _server = PeerEcho::start(&server);
    assert!(cluster.nodes[0].ns.run(table_exists), "node 0 has the egress table");
    for proto in [Proto::Tcp, Proto::Udp] {
        for (to, me) in [(s_v4, c_v4), (s_v6, c_v6)] {
            let mut got = None;
            // Routes come a moment after the agents are ready.
            let reached = eventually(Duration::from_secs(10), || {
                got = seen_as(&client.path(), SocketAddr::new(to, PORT), proto);
                got.is_some()
            });
            assert!(reached, "{proto} to {to} on the other node");
            assert_eq!(got, Some(me.to_string()), "{proto} to {to}: NATed?");
        }
    }
}

//! Node-to-node pod routing with real traffic: three "nodes" (network
//! namespaces on one bridge), each with its own in-process agent, all
//! watching one API stand-in; pods wired by the netlet plugin on each node.
//! For `routing.mode` native and vxlan: pods on different nodes talk TCP
//! and UDP over IPv4 and IPv6, unNATed; a node deleted from the API takes
//! its routes (and tunnel entries) on the others with it; an earlier
//! agent's leftover route goes at start; a node switched back to `none`
//! keeps no tunnel or route of the mode it left.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::{eventually, Cluster, ClusterNode, ClusterPod};
use serde_json::{json, Value};
use testbed::{probe_all, serve, Netns, Probe, Proto};

/// One test at a time: three agents each is what two cores take.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PORT: u16 = 8080;
const ECHO_PEER_PORT: u16 = 9000;

type Pod = ClusterPod;

/// A TCP server in `ns` that answers each connection with the address it
/// came from: what the server sees of its client.
fn serve_peer_address(ns: &Netns) -> std::thread::JoinHandle<()> {
    let listener = ns.run(|| TcpListener::bind(("::", ECHO_PEER_PORT)).unwrap());
    listener.set_nonblocking(false).unwrap();
    std::thread::spawn(move || {
        // Two connections: one per family.
        for conn in listener.incoming().take(2) {
            let Ok(mut conn) = conn else { continue };
            let peer = conn.peer_addr().unwrap().ip();
            let peer = match peer {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
                v4 => v4,
            };
            let _ = conn.write_all(format!("{peer}\n").as_bytes());
        }
    })
}

/// What the server at `to` says it sees, connecting from `from`.
fn seen_as(from: &Path, to: SocketAddr) -> Option<String> {
    testbed::run_in(from, || {
        let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s.trim().to_string())
    })
    .ok()
    .flatten()
}

/// Every pod to every other pod: TCP and UDP, IPv4 and IPv6.
fn probes(pods: &[&Pod]) -> Vec<(Probe, usize)> {
    let mut out = Vec::new();
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            if i == j {
                continue;
            }
            for ip in [to.v4, to.v6] {
                for proto in [Proto::Tcp, Proto::Udp] {
                    let probe = Probe {
                        from: from.ns.path(),
                        to: SocketAddr::new(ip, PORT),
                        proto,
                    };
                    out.push((probe, j));
                }
            }
        }
    }
    out
}

/// Probes until every flow answers with the right pod (routes may take a
/// moment after the agents are ready), up to 10 s; the failures otherwise.
fn all_reach(pods: &[&Pod], names: &[&str]) -> Vec<String> {
    let probes = probes(pods);
    let list: Vec<Probe> = probes.iter().map(|p| p.0.clone()).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answers = probe_all(&list, Duration::from_secs(1));
        let failed: Vec<String> = probes
            .iter()
            .zip(&answers)
            .filter(|((_, j), a)| a.as_deref() != Some(names[*j]))
            .map(|((p, j), a)| format!("{} {} -> {} ({}): {a:?}", p.proto, p.from.display(), p.to, names[*j]))
            .collect();
        if failed.is_empty() || std::time::Instant::now() > deadline {
            return failed;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn routes_of(node: &ClusterNode) -> String {
    node.ip(&["route", "show", "proto", "110"]) + &node.ip(&["-6", "route", "show", "proto", "110"])
}

fn peers(report: &Value) -> Vec<String> {
    report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// The whole story for one mode; `check_mode` looks at what is particular
/// to it on node 0 while all three nodes are up.
fn cross_node_traffic(prefix: &str, mode: &str, check_mode: impl Fn(&Cluster)) {
    if !testbed::require_privileges(&format!("multinode {mode}")) {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = Cluster::new(prefix, 3);
    // An earlier agent's route (protocol 110) to a node long gone: the
    // first pass removes it.
    cluster.nodes[0].ip(&["route", "add", "10.42.99.0/24", "via", "192.168.77.99", "proto", "110"]);
    cluster.start_agents(&json!({"routing": {"mode": mode}}));
    assert!(
        eventually(Duration::from_secs(10), || !routes_of(&cluster.nodes[0])
            .contains("10.42.99.0")),
        "leftover route stays: {}",
        routes_of(&cluster.nodes[0])
    );

    let names: Vec<String> = (0..3).map(|i| format!("{prefix}pod{i}")).collect();
    let pods: Vec<Pod> = (0..3).map(|i| cluster.nodes[i].add_pod(&names[i])).collect();
    let _servers: Vec<_> = pods.iter().zip(&names).map(|(p, n)| serve(&p.ns, n, &[PORT])).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let failed = all_reach(&pods.iter().collect::<Vec<_>>(), &name_refs);
    assert!(failed.is_empty(), "{mode}: flows that failed:\n{}", failed.join("\n"));

    // No NAT: the server on node 1 sees the client pod's own addresses.
    let echo = serve_peer_address(&pods[1].ns);
    for (client, server) in [(pods[0].v4, pods[1].v4), (pods[0].v6, pods[1].v6)] {
        let seen = seen_as(&pods[0].ns.path(), SocketAddr::new(server, ECHO_PEER_PORT));
        assert_eq!(seen, Some(client.to_string()), "{mode}: the server saw another source");
    }
    drop(echo);

    // What the agent says: two peers, every route installed.
    let report = cluster.nodes[0].query("nodes");
    assert_eq!(report["mode"], mode);
    assert_eq!(
        peers(&report),
        [cluster.nodes[1].name.clone(), cluster.nodes[2].name.clone()]
    );
    for peer in report["peers"].as_array().unwrap() {
        let routes = peer["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2, "{peer}");
        let n = &cluster.nodes[0];
        assert!(
            routes.iter().all(|r| r["installed"] == true),
            "{peer}\n{}{}{}",
            routes_of(n),
            String::from_utf8_lossy(&n.ns.exec(&["bridge", "fdb", "show"]).stdout),
            String::from_utf8_lossy(&n.ns.exec(&["ip", "neigh", "show", "nud", "permanent"]).stdout)
        );
    }
    let table = cluster.nodes[0].query_table("nodes");
    assert!(table.contains("10.42.3.0/24") && table.contains("installed"), "{table}");
    let metrics = cluster.nodes[0].metrics();
    assert!(metrics.contains("netlet_routing_peers 2"), "{metrics}");
    assert!(metrics.contains("netlet_routing_errors_total 0"), "{metrics}");
    check_mode(&cluster);

    // Node 2's InternalIPs change (in the API only): the others follow,
    // nothing of the old addresses stays; then back.
    cluster.set_internal_ips(2, "192.168.77.33", "fd00:77::33");
    let moved = |n: &ClusterNode| {
        let state = routes_of(n) + &String::from_utf8_lossy(&n.ns.exec(&["bridge", "fdb", "show"]).stdout);
        match mode {
            "native" => state.contains("10.42.3.0/24 via 192.168.77.33") && !state.contains("via 192.168.77.3 "),
            _ => {
                state.contains("dst 192.168.77.33 ")
                    && !state.contains("dst 192.168.77.3 ")
                    && state.contains("dst fd00:77::33 ")
            }
        }
    };
    assert!(
        eventually(Duration::from_secs(10), || moved(&cluster.nodes[0])),
        "{mode}: routes do not follow the new InternalIPs: {}",
        routes_of(&cluster.nodes[0])
    );
    cluster.set_internal_ips(2, "192.168.77.3", "fd00:77::3");
    let failed = all_reach(&pods.iter().collect::<Vec<_>>(), &name_refs);
    assert!(
        failed.is_empty(),
        "{mode}: after the addresses came back:\n{}",
        failed.join("\n")
    );

    // Node 2 leaves: its routes go from the others, and its pod is out of
    // reach; nodes 0 and 1 still reach each other.
    cluster.delete_node(2);
    for n in &cluster.nodes[..2] {
        assert!(
            eventually(Duration::from_secs(10), || {
                let routes = routes_of(n);
                !routes.contains("10.42.3.0") && !routes.contains("fd00:42:0:3::")
            }),
            "{}: routes of the deleted node stay: {}",
            n.name,
            routes_of(n)
        );
    }
    assert!(eventually(Duration::from_secs(5), || cluster.nodes[0]
        .metrics()
        .contains("netlet_routing_peers 1")));
    if mode == "vxlan" {
        let fdb = cluster.nodes[0]
            .ns
            .exec(&["bridge", "fdb", "show", "dev", "netlet-vx4"]);
        let fdb = String::from_utf8_lossy(&fdb.stdout);
        assert!(!fdb.contains("192.168.77.3"), "{fdb}");
        assert!(fdb.contains("192.168.77.2"), "{fdb}");
        let neigh = cluster.nodes[0].ip(&["neigh", "show", "dev", "netlet-vx4"]);
        assert!(!neigh.contains("10.42.3.0") && neigh.contains("10.42.2.0"), "{neigh}");
        let neigh6 = cluster.nodes[0].ip(&["-6", "neigh", "show", "dev", "netlet-vx6"]);
        assert!(
            !neigh6.contains("fd00:42:0:3::") && neigh6.contains("fd00:42:0:2::"),
            "{neigh6}"
        );
    }
    let gone = Probe {
        from: pods[0].ns.path(),
        to: SocketAddr::new(pods[2].v4, PORT),
        proto: Proto::Tcp,
    };
    assert_eq!(
        testbed::probe(&gone, Duration::from_millis(500)),
        None,
        "node 2's pod still reached"
    );
    let failed = all_reach(&[&pods[0], &pods[1]], &name_refs[..2]);
    assert!(failed.is_empty(), "{mode}: after a node left:\n{}", failed.join("\n"));
    assert_eq!(peers(&cluster.nodes[1].query("nodes")), [cluster.nodes[0].name.clone()]);

    // It comes back: routes again, and a restarted agent keeps them
    // (idempotent: nothing to change).
    cluster.create_node(2);
    let failed = all_reach(&pods.iter().collect::<Vec<_>>(), &name_refs);
    assert!(
        failed.is_empty(),
        "{mode}: after the node came back:\n{}",
        failed.join("\n")
    );
    let tunnels = |n: &ClusterNode| {
        String::from_utf8_lossy(&n.ns.exec(&["ip", "-o", "link", "show", "type", "vxlan"]).stdout).into_owned()
    };
    let before = (routes_of(&cluster.nodes[0]), tunnels(&cluster.nodes[0]));
    let kubeconfig = cluster.kubeconfig.clone();
    cluster.nodes[0].start_agent(&kubeconfig, &json!({"routing": {"mode": mode}}));
    // The same routes, and the same devices (same ifindex: not re-created).
    assert_eq!((routes_of(&cluster.nodes[0]), tunnels(&cluster.nodes[0])), before);
    let failed = all_reach(&pods.iter().collect::<Vec<_>>(), &name_refs);
    assert!(failed.is_empty(), "{mode}: after a restart:\n{}", failed.join("\n"));
}

#[test]
fn native_routes_pods_between_nodes() {
    cross_node_traffic("mnn", "native", |cluster| {
        let routes = routes_of(&cluster.nodes[0]);
        assert!(routes.contains("10.42.2.0/24 via 192.168.77.2 dev eth0"), "{routes}");
        assert!(routes.contains("fd00:42:0:3::/64 via fd00:77::3 dev eth0"), "{routes}");
        assert!(
            cluster.nodes[0]
                .ns
                .exec(&["ip", "link", "show", "netlet-vx4"])
                .status
                .code()
                != Some(0)
        );
    });
}

#[test]
fn vxlan_tunnels_pods_between_nodes() {
    cross_node_traffic("mnv", "vxlan", |cluster| {
        let n = &cluster.nodes[0];
        let vx4 = n.ip(&["-d", "link", "show", "netlet-vx4"]);
        assert!(vx4.contains("mtu 1450"), "underlay 1500 - 50: {vx4}");
        assert!(
            vx4.contains("vxlan id 1 ") && vx4.contains("local 192.168.77.1"),
            "{vx4}"
        );
        assert!(vx4.contains("dstport 8472") && vx4.contains("nolearning"), "{vx4}");
        assert!(vx4.contains("0e:4e:c0:a8:4d:01"), "derived VTEP MAC: {vx4}");
        let vx6 = n.ip(&["-d", "link", "show", "netlet-vx6"]);
        assert!(vx6.contains("mtu 1430") && vx6.contains("local fd00:77::1"), "{vx6}");
        let fdb = n.ns.exec(&["bridge", "fdb", "show", "dev", "netlet-vx4"]);
        let fdb = String::from_utf8_lossy(&fdb.stdout);
        assert!(fdb.contains("0e:4e:c0:a8:4d:03 dst 192.168.77.3"), "{fdb}");
        let routes = routes_of(n);
        assert!(routes.contains("10.42.3.0/24 via 10.42.3.0 dev netlet-vx4"), "{routes}");
        assert!(routes.contains("onlink"), "{routes}");
        assert!(
            routes.contains("fd00:42:0:2::/64 via fd00:42:0:2:: dev netlet-vx6"),
            "{routes}"
        );
        // The pod traffic really is in the tunnel: no route to the peers'
        // pods via the underlay.
        assert!(!routes.contains("dev eth0"), "{routes}");
    });
}

/// A node switched back to `routing.mode: none` keeps nothing of the
/// mode it left: no VXLAN devices (their FDB and neighbour entries go with
/// them), no routes of protocol 110; and pods on different nodes no
/// longer reach each other. That also shows the bed itself routes nothing
/// (so the tests above see the module's work, not the bed's).
#[test]
fn without_routing_pods_of_other_nodes_are_out_of_reach() {
    if !testbed::require_privileges("multinode none") {
        return;
    }
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = Cluster::new("mnz", 2);
    cluster.start_agents(&json!({"routing": {"mode": "vxlan"}}));
    let names = ["mnzpod0", "mnzpod1"];
    let pods: Vec<Pod> = (0..2).map(|i| cluster.nodes[i].add_pod(names[i])).collect();
    let _servers: Vec<_> = pods.iter().zip(names).map(|(p, n)| serve(&p.ns, n, &[PORT])).collect();
    let failed = all_reach(&[&pods[0], &pods[1]], &names);
    assert!(failed.is_empty(), "vxlan: flows that failed:\n{}", failed.join("\n"));

    cluster.start_agents(&json!({"routing": {"mode": "none"}}));
    let tunnels = |n: &ClusterNode| n.ip(&["-o", "link", "show", "type", "vxlan"]);
    for n in &cluster.nodes {
        // Removed by the time the agent is ready: its one pass is done.
        assert_eq!(tunnels(n), "", "{}: tunnels stay", n.name);
        assert_eq!(routes_of(n), "", "{}: routes stay", n.name);
    }
    let list: Vec<Probe> = probes(&[&pods[0], &pods[1]]).into_iter().map(|p| p.0).collect();
    let answers = probe_all(&list, Duration::from_millis(500));
    assert!(answers.iter().all(Option::is_none), "{answers:?}");
    // No peers to route to: `netlet nodes` says what to do.
    let out = std::process::Command::new(common::NETLET)
        .args(["nodes", "--socket"])
        .arg(cluster.nodes[0].admin_socket())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("routing.mode"), "{err}");
}

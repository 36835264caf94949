//! NetworkPolicy enforced on real traffic: two "pods" (network namespaces)
//! wired to a node namespace of the test's own by veths, routed like a CNI
//! would (pod /32 and /128 routes on the node, a default route in each
//! pod via the node side). With the programs attached to the host-side
//! veths and a plan from a real `compile` applied: TCP connects allowed,
//! and denied ones failing by timeout (the SYN is dropped), in both
//! families; replies of allowed connections get through a pod isolated
//! for egress; the node itself always reaches a pod (kubelet probes); a
//! kept connection is cut when a policy change forbids it; and a veth
//! with the programs but no endpoint entry yet passes nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use policy::{Datapath, DatapathOptions};
use serde_json::json;
use testbed::{Netns, Probe, Proto};

mod common;

use common::{pod, Cluster};

const CLIENT: (&str, &str) = ("10.77.0.1", "fd77::1");
const SERVER: (&str, &str) = ("10.77.0.2", "fd77::2");
/// How long a connect may take before it counts as denied.
const DENIED_AFTER: Duration = Duration::from_millis(700);

struct Bed {
    node: Netns,
    client: Netns,
    server: Netns,
    pins: testbed::PinDir,
    dp: Datapath,
    cluster: Cluster,
}

fn run(ns: &Netns, argv: &[&str]) {
    let out = ns.exec(argv);
    assert!(
        out.status.success(),
        "{argv:?} in {}: {}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wires `pod` to `node` through the veth `host` (node side) / eth0.
fn wire(node: &Netns, pod: &Netns, host: &str, (v4, v6): (&str, &str)) {
    run(
        node,
        &[
            "ip",
            "link",
            "add",
            host,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.name(),
        ],
    );
    run(node, &["ip", "link", "set", host, "up"]);
    // The gateway address every pod uses, on every host-side veth.
    run(node, &["ip", "addr", "add", "169.254.1.1/32", "dev", host]);
    run(node, &["ip", "addr", "add", "fe80::1/64", "dev", host, "nodad"]);
    run(node, &["ip", "route", "add", &format!("{v4}/32"), "dev", host]);
    run(node, &["ip", "-6", "route", "add", &format!("{v6}/128"), "dev", host]);
    run(pod, &["ip", "link", "set", "eth0", "up"]);
    run(pod, &["ip", "addr", "add", &format!("{v4}/32"), "dev", "eth0"]);
    run(
        pod,
        &["ip", "addr", "add", &format!("{v6}/128"), "dev", "eth0", "nodad"],
    );
    run(
        pod,
        &["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"],
    );
    run(
        pod,
        &["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"],
    );
    run(
        pod,
        &["ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"],
    );
}

impl Bed {
    fn new() -> Bed {
        Bed::with_tc(None, ("polnode", "polcli", "polsrv", "polveth"))
    }

    /// A bed whose programs attach in `tc_mode` (probed if `None`), with
    /// namespaces and pin directory named after `names`.
    fn with_tc(tc_mode: Option<bpfkit::tc::TcMode>, names: (&str, &str, &str, &str)) -> Bed {
        let (node, client, server, pins) = names;
        let node = Netns::new(node).unwrap();
        let client = Netns::new(client).unwrap();
        let server = Netns::new(server).unwrap();
        run(&node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        run(&node, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        // The node's own addresses, as a node has.
        run(&node, &["ip", "addr", "add", "10.77.255.1/32", "dev", "lo"]);
        run(&node, &["ip", "addr", "add", "fd77::ff/128", "dev", "lo", "nodad"]);
        wire(&node, &client, "hcli", CLIENT);
        wire(&node, &server, "hsrv", SERVER);
        let pins = testbed::PinDir::new(pins);
        let dp = Datapath::load_with_tc(&options(&pins), tc_mode).unwrap_or_else(|e| panic!("{}", common::chain(&e)));
        let cluster = Cluster::new(vec![
            pod("x", "client", "client", &[CLIENT.0, CLIENT.1]),
            pod("x", "server", "server", &[SERVER.0, SERVER.1]),
        ]);
        Bed {
            node,
            client,
            server,
            pins,
            dp,
            cluster,
        }
    }

    /// Attaches to both host-side veths (in the node namespace), and makes
    /// their ifindexes the pods' endpoints.
    fn attach(&mut self) {
        let dp = &mut self.dp;
        let (cli, srv) = self
            .node
            .run(|| (dp.attach("hcli").unwrap(), dp.attach("hsrv").unwrap()));
        self.cluster.local = vec![(Some("client".into()), cli), (Some("server".into()), srv)];
    }

    fn apply(&mut self) -> policy::Applied {
        self.cluster.apply(&mut self.dp).2
    }
}

fn options(pins: &testbed::PinDir) -> DatapathOptions {
    DatapathOptions::new(pins.path())
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Whether a TCP connection from inside `from` to `to` is answered.
fn connects(from: &Netns, to: SocketAddr) -> bool {
    let probe = Probe {
        from: from.path(),
        to,
        proto: Proto::Tcp,
    };
    testbed::probe(&probe, DENIED_AFTER).is_some()
}

/// Asserts the expected outcome in both families: `to` picks the address.
#[track_caller]
fn expect(from: &Netns, to: (&str, &str), port: u16, allowed: bool) {
    for ip in [to.0, to.1] {
        assert_eq!(connects(from, at(ip, port)), allowed, "{} -> {ip}:{port}", from.name());
    }
}

/// Asserts that connections from `from` to `to` pass in both families
/// within a few seconds.
#[track_caller]
fn expect_soon(from: &Netns, to: (&str, &str), port: u16) {
    for ip in [to.0, to.1] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !connects(from, at(ip, port)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{} -> {ip}:{port} never passed",
                from.name()
            );
        }
    }
}

/// An echo server on `port` in `ns`, for connections kept open.
fn echo_server(ns: &Netns, port: u16) {
    let listener = ns.run(|| TcpListener::bind(at("::", port)).unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if writer.write_all(line.as_bytes()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
}

/// Sends a line over `conn`; whether it came back in time.
fn echoes(conn: &mut BufReader<TcpStream>, line: &str) -> bool {
    conn.get_mut().write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut back = String::new();
    conn.read_line(&mut back).is_ok() && back.trim() == line
}

#[test]
fn tcp_between_pods_follows_policy_and_changes_cut_kept_connections() {
    if !testbed::require_privileges("tcp_between_pods_follows_policy_and_changes_cut_kept_connections") {
        return;
    }
    let mut bed = Bed::new();
    let _servers = (
        testbed::serve(&bed.server, "server", &[80, 81]),
        testbed::serve(&bed.client, "client", &[80]),
    );
    echo_server(&bed.server, 7000);

    // Attached but no endpoint entries yet: closed both ways.
    bed.attach();
    assert_eq!(bed.dp.attached(), ["hcli", "hsrv"]);
    expect(&bed.client, SERVER, 80, false);

    // The server takes TCP 80 and 7000 from the client and starts nothing.
    bed.cluster.set_policy(
        "server",
        json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"port": 80}, {"port": 7000}]}]}),
    );
    bed.apply();
    expect(&bed.client, SERVER, 80, true);
    expect(&bed.client, SERVER, 81, false);
    // The replies above crossed the server's egress; a new flow may not.
    expect(&bed.server, CLIENT, 80, false);
    // The node reaches every port of the pod, as kubelet probes must.
    expect(&bed.node, SERVER, 81, true);

    // A kept connection, cut by a policy change, in both families.
    let open = |ip: &str| {
        let to = at(ip, 7000);
        let conn = bed
            .client
            .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap());
        conn.set_read_timeout(Some(DENIED_AFTER)).unwrap();
        BufReader::new(conn)
    };
    let mut kept = [open(SERVER.0), open(SERVER.1)];
    for conn in &mut kept {
        assert!(echoes(conn, "before"));
    }
    bed.cluster.set_policy(
        "server",
        json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"port": 80}]}]}),
    );
    assert!(bed.apply().changed());
    for conn in &mut kept {
        assert!(!echoes(conn, "after"), "the connection should be cut");
    }
    expect(&bed.client, SERVER, 80, true);

    // A restarted agent takes over: the same maps, and its programs put
    // into the pinned links in place (the pins stay the same files).
    let pin = bed.pins.path().join("links/to_pod-hsrv");
    let inode = std::fs::metadata(&pin).unwrap().ino();
    bed.dp = Datapath::load(&options(&bed.pins)).unwrap();
    let applied = bed.apply();
    assert_eq!((applied.written, applied.removed), (0, 0));
    bed.attach();
    assert_eq!(
        std::fs::metadata(&pin).unwrap().ino(),
        inode,
        "the link was updated in place"
    );
    expect(&bed.client, SERVER, 80, true);
    expect(&bed.client, SERVER, 81, false);
    expect(&bed.server, CLIENT, 80, false);

    // Without the programs, everything flows again (once the kernel has
    // released the unpinned link, which it does a moment later).
    let dp = &mut bed.dp;
    bed.node.run(|| dp.detach("hsrv").unwrap());
    assert_eq!(bed.dp.attached(), ["hcli"]);
    expect_soon(&bed.client, SERVER, 81);
    expect_soon(&bed.server, CLIENT, 80);

    // A pin whose veth is gone is pruned.
    run(&bed.node, &["ip", "link", "del", "hcli"]);
    let dp = &mut bed.dp;
    assert_eq!(bed.node.run(|| dp.prune_links()), ["hcli"]);
    assert!(bed.dp.attached().is_empty());
    assert!(bed.pins.path().exists());
}

/// On kernels without TCX the programs go on as netlink (cls_bpf)
/// filters (forced here): a clsact qdisc is added for them, they enforce,
/// a restarted agent replaces them in place, and detach removes them.
#[test]
fn netlink_filters_enforce_without_tcx() {
    if !testbed::require_privileges("netlink_filters_enforce_without_tcx") {
        return;
    }
    let netlink = Some(bpfkit::tc::TcMode::Netlink);
    let mut bed = Bed::with_tc(netlink, ("polnlnode", "polnlcli", "polnlsrv", "polnl"));
    assert_eq!(bed.dp.tc_mode(), bpfkit::tc::TcMode::Netlink);
    let _servers = (
        testbed::serve(&bed.server, "server", &[80, 81]),
        testbed::serve(&bed.client, "client", &[80]),
    );
    bed.attach();
    let dp = &bed.dp;
    assert_eq!(bed.node.run(|| dp.attached()), ["hcli", "hsrv"]);
    let egress = testbed::tc_filters(&bed.node, "hsrv", "egress");
    assert!(egress.len() == 1 && egress[0].contains("to_pod"), "{egress:?}");
    assert_eq!(testbed::tc_filters(&bed.node, "hsrv", "ingress").len(), 1);
    expect(&bed.client, SERVER, 80, false);

    bed.cluster.set_policy(
        "server",
        json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"port": 80}]}]}),
    );
    bed.apply();
    expect(&bed.client, SERVER, 80, true);
    expect(&bed.client, SERVER, 81, false);

    // The agent goes, its filters stay; the next one replaces them.
    bed.dp = Datapath::load_with_tc(&options(&bed.pins), netlink).unwrap();
    expect(&bed.client, SERVER, 81, false);
    let applied = bed.apply();
    assert_eq!((applied.written, applied.removed), (0, 0));
    bed.attach();
    let again = testbed::tc_filters(&bed.node, "hsrv", "egress");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again, egress, "the program was replaced");
    expect(&bed.client, SERVER, 80, true);
    expect(&bed.client, SERVER, 81, false);

    // Detached, the filters are gone and everything flows.
    let dp = &mut bed.dp;
    bed.node.run(|| dp.detach("hsrv").unwrap());
    let dp = &bed.dp;
    assert_eq!(bed.node.run(|| dp.attached()), ["hcli"]);
    assert!(testbed::tc_filters(&bed.node, "hsrv", "egress").is_empty());
    assert!(testbed::tc_filters(&bed.node, "hsrv", "ingress").is_empty());
    expect_soon(&bed.client, SERVER, 81);

    // A marker whose veth is gone is pruned.
    run(&bed.node, &["ip", "link", "del", "hcli"]);
    let dp = &mut bed.dp;
    assert_eq!(bed.node.run(|| dp.prune_links()), ["hcli"]);
    let dp = &bed.dp;
    assert!(bed.node.run(|| dp.attached()).is_empty());
}

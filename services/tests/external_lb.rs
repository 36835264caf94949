//! Packet-level Service translation for traffic from outside the node: a
//! client in an "outside" namespace, wired to the node's external
//! interface, reaches a NodePort on the node's address over TCP and UDP in
//! both families; the backend sees the client's own address; the replies
//! come from the frontend; a frontend without backends refuses.

use std::net::IpAddr;
use std::process::{Child, Stdio};

mod common;

use common::external;
use services::{Datapath, DatapathOptions, Protocol};
use testbed::{Cgroup, Netns};

fn ok(ns: &Netns, argv: &[&str]) {
    let out = ns.exec(argv);
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn outside_clients_reach_node_ports() {
    if !testbed::require_privileges("outside_clients_reach_node_ports") {
        return;
    }
    let node = Netns::new("xnd").unwrap();
    let outside = Netns::new("xout").unwrap();
    let _wire = testbed::veth(Some(&node), "ext0", Some(&outside), "out0").unwrap();
    ok(&node, &["ip", "addr", "add", "192.0.2.1/24", "dev", "ext0"]);
    ok(&node, &["ip", "addr", "add", "fd00:beef::1/64", "dev", "ext0", "nodad"]);
    ok(&node, &["ip", "link", "set", "ext0", "up"]);
    ok(&outside, &["ip", "addr", "add", "192.0.2.100/24", "dev", "out0"]);
    ok(
        &outside,
        &["ip", "addr", "add", "fd00:beef::100/64", "dev", "out0", "nodad"],
    );
    ok(&outside, &["ip", "link", "set", "out0", "up"]);
    // The backend: a server on the node at an address outside never sees.
    ok(&node, &["ip", "addr", "add", "10.250.0.2/32", "dev", "lo"]);
    ok(&node, &["ip", "addr", "add", "fd00:250::2/128", "dev", "lo", "nodad"]);
    let mut servers: Vec<Child> = [
        // Answers with the address the connection came from.
        (
            "TCP4-LISTEN:8080,bind=10.250.0.2,reuseaddr,fork",
            "SYSTEM:echo from $SOCAT_PEERADDR",
        ),
        (
            "TCP6-LISTEN:8080,bind=[fd00:250::2],reuseaddr,fork",
            "SYSTEM:echo from $SOCAT_PEERADDR",
        ),
        ("UDP4-RECVFROM:5353,bind=10.250.0.2,fork", "SYSTEM:echo udp"),
    ]
    .iter()
    .map(|(listen, reply)| {
        node.command("socat")
            .args([*listen, *reply])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    })
    .collect();

    let cgroup = Cgroup::new("xlb").unwrap();
    let pins = testbed::PinDir::new("xlb");
    let options = DatapathOptions {
        pin_dir: pins.path().to_path_buf(),
        cgroup: cgroup.path().to_path_buf(),
        map_entries: 1024,
        devices: vec!["ext0".into()],
    };
    // Interfaces are named in the namespace of the thread that attaches.
    let mut dp = node.run(|| Datapath::load(&options)).unwrap();
    dp.apply(&external("192.0.2.1", 30080, Protocol::Tcp, &[("10.250.0.2", 8080)]))
        .unwrap();
    dp.apply(&external(
        "fd00:beef::1",
        30080,
        Protocol::Tcp,
        &[("fd00:250::2", 8080)],
    ))
    .unwrap();
    dp.apply(&external("192.0.2.1", 30053, Protocol::Udp, &[("10.250.0.2", 5353)]))
        .unwrap();
    dp.apply(&external("192.0.2.1", 30099, Protocol::Tcp, &[])).unwrap();

    let ask = |target: &str, done: &dyn Fn(&str) -> bool| testbed::ask(&outside, None, target, done);
    // The backend names the address it saw: the client's own.
    let peer = |t: &str| -> Option<IpAddr> { t.trim().strip_prefix("from ")?.trim_matches(['[', ']']).parse().ok() };
    let got = ask("TCP4:192.0.2.1:30080", &|t| t.contains("from"));
    assert_eq!(peer(&got), "192.0.2.100".parse().ok(), "{got}");
    let got = ask("TCP6:[fd00:beef::1]:30080", &|t| t.contains("from"));
    assert_eq!(peer(&got), "fd00:beef::100".parse().ok(), "{got}");
    // socat takes datagrams only from where it sent: the reply comes back
    // from the NodePort, not from the backend.
    let got = ask("UDP4-SENDTO:192.0.2.1:30053", &|t| t.contains("udp"));
    assert_eq!(got.trim(), "udp");
    // No backends: refused at once, as a closed port would be (a RST for
    // TCP, ICMP port unreachable for UDP, both "Connection refused").
    dp.apply(&external("192.0.2.1", 30099, Protocol::Udp, &[])).unwrap();
    for target in ["TCP4:192.0.2.1:30099,connect-timeout=5", "UDP4:192.0.2.1:30099"] {
        let got = ask(target, &|t| t.contains("refused"));
        assert!(got.contains("Connection refused"), "{target}: {got}");
    }

    // Taken off the interface, the NodePort is a closed port of the node's
    // like any other (nothing listens on 30080 there); put back, it works
    // again. The pinned links follow.
    node.run(|| dp.set_devices(&[])).unwrap();
    assert_eq!(dp.devices(), Vec::<String>::new());
    let got = ask("TCP4:192.0.2.1:30080", &|t| t.contains("refused") || t.contains("from"));
    assert!(got.contains("Connection refused"), "detached: {got}");
    node.run(|| dp.set_devices(&["ext0".to_string()])).unwrap();
    assert_eq!(dp.devices(), vec!["ext0".to_string()]);
    let got = ask("TCP4:192.0.2.1:30080", &|t| t.contains("from"));
    assert_eq!(peer(&got), "192.0.2.100".parse().ok(), "attached again: {got}");

    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    drop(dp);
}

#[test]
fn an_interface_that_is_not_there_is_named() {
    if !testbed::require_privileges("an_interface_that_is_not_there_is_named") {
        return;
    }
    let cgroup = Cgroup::new("xbad").unwrap();
    let pins = testbed::PinDir::new("xbad");
    let options = DatapathOptions {
        pin_dir: pins.path().to_path_buf(),
        cgroup: cgroup.path().to_path_buf(),
        map_entries: 1024,
        devices: vec!["nosuchdev0".into()],
    };
    let error = Datapath::load(&options).err().expect("loading fails").to_string();
    assert!(
        error.contains("\"nosuchdev0\"") && error.contains("services.devices"),
        "{error}"
    );
}

/// On kernels without TCX the programs go on as netlink (cls_bpf)
/// filters: forced here. They handle traffic, stay when the agent goes,
/// are replaced in place by the next one, and go with the device.
#[test]
fn netlink_filters_stand_in_for_tcx() {
    if !testbed::require_privileges("netlink_filters_stand_in_for_tcx") {
        return;
    }
    let node = Netns::new("xnlnd").unwrap();
    let outside = Netns::new("xnlout").unwrap();
    let _wire = testbed::veth(Some(&node), "nlx0", Some(&outside), "nlo0").unwrap();
    ok(&node, &["ip", "addr", "add", "192.0.2.1/24", "dev", "nlx0"]);
    ok(&node, &["ip", "link", "set", "nlx0", "up"]);
    ok(&outside, &["ip", "addr", "add", "192.0.2.100/24", "dev", "nlo0"]);
    ok(&outside, &["ip", "link", "set", "nlo0", "up"]);
    ok(&node, &["ip", "addr", "add", "10.250.0.2/32", "dev", "lo"]);
    let mut server = node
        .command("socat")
        .args([
            "TCP4-LISTEN:8080,bind=10.250.0.2,reuseaddr,fork",
            "SYSTEM:echo from $SOCAT_PEERADDR",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let cgroup = Cgroup::new("xnl").unwrap();
    let pins = testbed::PinDir::new("xnl");
    let options = DatapathOptions {
        pin_dir: pins.path().to_path_buf(),
        cgroup: cgroup.path().to_path_buf(),
        map_entries: 1024,
        devices: vec!["nlx0".into()],
    };
    let netlink = Some(bpfkit::tc::TcMode::Netlink);
    let mut dp = node.run(|| Datapath::load_with_tc(&options, netlink)).unwrap();
    assert_eq!(dp.tc_mode(), bpfkit::tc::TcMode::Netlink);
    assert_eq!(dp.devices(), vec!["nlx0".to_string()]);
    let ingress = testbed::tc_filters(&node, "nlx0", "ingress");
    assert!(
        ingress.len() == 1 && ingress[0].contains("netlet_external_in"),
        "{ingress:?}"
    );
    assert_eq!(testbed::tc_filters(&node, "nlx0", "egress").len(), 1);
    dp.apply(&external("192.0.2.1", 30080, Protocol::Tcp, &[("10.250.0.2", 8080)]))
        .unwrap();
    let ask = |target: &str, done: &dyn Fn(&str) -> bool| testbed::ask(&outside, None, target, done);
    let got = ask("TCP4:192.0.2.1:30080", &|t| t.contains("from"));
    assert!(got.contains("from 192.0.2.100"), "{got}");

    // The agent goes: the filters stay, and still translate.
    drop(dp);
    assert_eq!(testbed::tc_filters(&node, "nlx0", "ingress"), ingress);
    let got = ask("TCP4:192.0.2.1:30080", &|t| t.contains("from"));
    assert!(got.contains("from 192.0.2.100"), "with no agent: {got}");

    // The next one replaces them in place: one filter each, its program.
    let mut dp = node.run(|| Datapath::load_with_tc(&options, netlink)).unwrap();
    let again = testbed::tc_filters(&node, "nlx0", "ingress");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again, ingress, "the program was replaced");
    assert_eq!(testbed::tc_filters(&node, "nlx0", "egress").len(), 1);
    let got = ask("TCP4:192.0.2.1:30080", &|t| t.contains("from"));
    assert!(got.contains("from 192.0.2.100"), "replaced: {got}");

    // Taken off the interface, the filters go.
    node.run(|| dp.set_devices(&[])).unwrap();
    assert_eq!(dp.devices(), Vec::<String>::new());
    assert!(testbed::tc_filters(&node, "nlx0", "ingress").is_empty());
    assert!(testbed::tc_filters(&node, "nlx0", "egress").is_empty());
    let got = ask("TCP4:192.0.2.1:30080", &|t| t.contains("refused") || t.contains("from"));
    assert!(got.contains("Connection refused"), "detached: {got}");

    let _ = server.kill();
    let _ = server.wait();
}

//! Pod wiring in network namespaces: a "node" namespace plays the host, two
//! pod namespaces get wired through it, and ICMP, TCP and UDP flow
//! pod-to-pod and node-to-pod in both families. Failed wiring leaves nothing behind.

use std::net::IpAddr;
use std::path::PathBuf;

use netstack::wire::{host_ifname, PodInterface, WireError, Wiring};
use testbed::Netns;

/// Runs `f` with pod wiring for `node`, on a thread inside it.
fn on_node<T: Send>(
    node: &Netns,
    f: impl FnOnce(Wiring) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send,
) -> T {
    node.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { f(Wiring::new().unwrap()).await })
    })
}

fn pod(container_id: &str, netns: PathBuf, v4: &str, v6: &str) -> PodInterface {
    PodInterface {
        container_id: container_id.into(),
        netns,
        ifname: "eth0".into(),
        addresses: vec![v4.parse::<IpAddr>().unwrap(), v6.parse().unwrap()],
        mtu: 1450,
    }
}

fn ping(ns: &Netns, addr: &str) -> bool {
    let out = ns.exec(&["ping", "-c", "1", "-W", "2", addr]);
    out.status.success()
}

/// Whether `target` (a socat address) answers "pong" from inside `ns`.
fn answers(ns: &Netns, target: &str) -> bool {
    let pong = |text: &str| text.contains("pong");
    pong(&testbed::exchange(
        || {
            let mut cmd = ns.command("socat");
            cmd.args(["-T", "1", "-", target]);
            cmd
        },
        pong,
    ))
}

fn links(ns: &Netns) -> String {
    String::from_utf8_lossy(&ns.exec(&["ip", "-o", "link"]).stdout).into_owned()
}

#[test]
fn pods_reach_each_other_and_the_node_in_both_families() {
    if !testbed::require_privileges("pods_reach_each_other_and_the_node_in_both_families") {
        return;
    }
    let node = Netns::new("wn").unwrap();
    let a = Netns::new("wa").unwrap();
    let b = Netns::new("wb").unwrap();
    let (pa, pb) = (
        pod("ctr-a", a.path(), "10.200.0.2", "fd00:200::2"),
        pod("ctr-b", b.path(), "10.200.0.3", "fd00:200::3"),
    );
    let (wa, wb) = on_node(&node, {
        let (pa, pb) = (pa.clone(), pb.clone());
        move |w| Box::pin(async move { (w.wire(&pa).await.unwrap(), w.wire(&pb).await.unwrap()) })
    });
    assert_eq!(wa.host_ifname, host_ifname("ctr-a", "eth0"));
    assert_eq!(wa.pod_mac.len(), 17);

    let pod_links = links(&a);
    assert!(
        pod_links.contains("eth0") && pod_links.contains("mtu 1450"),
        "{pod_links}"
    );
    for (from, to) in [
        (&a, "10.200.0.3"),
        (&a, "fd00:200::3"),
        (&b, "10.200.0.2"),
        (&b, "fd00:200::2"),
        (&node, "10.200.0.2"),
        (&node, "fd00:200::3"),
    ] {
        assert!(ping(from, to), "ping {to} from {} failed", from.name());
    }

    // TCP and UDP too, from the other pod and from the node, both
    // families: pod a answers on 7000 (TCP) and 7001 (UDP).
    let mut servers: Vec<std::process::Child> = [
        "TCP4-LISTEN:7000,reuseaddr,fork",
        "TCP6-LISTEN:7000,reuseaddr,fork,ipv6only=1",
        "UDP4-RECVFROM:7001,fork",
        "UDP6-RECVFROM:7001,fork,ipv6only=1",
    ]
    .iter()
    .map(|listen| {
        a.command("socat")
            .args(["-T", "5", listen, "SYSTEM:echo pong"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    })
    .collect();
    // Like a real node, this one has a global IPv6 address of its own, so
    // its packets to pods leave from it rather than from a link-local one
    // (a UDP server answering a link-local sender answers from its own
    // link-local address, which the sender's socket does not expect).
    assert!(node
        .exec(&["ip", "addr", "add", "fd00:ffff::1/128", "dev", "lo"])
        .status
        .success());
    for from in [&b, &node] {
        for target in [
            "TCP:10.200.0.2:7000",
            "TCP:[fd00:200::2]:7000",
            "UDP:10.200.0.2:7001",
            "UDP:[fd00:200::2]:7001",
        ] {
            assert!(answers(from, target), "{target} does not answer from {}", from.name());
        }
    }
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }

    // CHECK sees the interface. DEL takes it out of service at once (no
    // route to the pod is left) and is repeatable; the interface itself is
    // deleted by the reaper, both ends, once it has run.
    let (still, after, again, routes) = on_node(&node, {
        let pa = pa.clone();
        move |w| {
            Box::pin(async move {
                let still = w.is_wired("ctr-a", "eth0", &pa.netns).await.unwrap();
                w.unwire("ctr-a", "eth0").await.unwrap();
                let routes = std::process::Command::new("ip")
                    .args(["route"])
                    .output()
                    .unwrap()
                    .stdout;
                let after = w.is_wired("ctr-a", "eth0", &pa.netns).await.unwrap();
                let again = w.unwire("ctr-a", "eth0").await;
                w.settle().await;
                (
                    still,
                    after,
                    again.is_ok(),
                    String::from_utf8_lossy(&routes).into_owned(),
                )
            })
        }
    });
    assert!(still && !after && again);
    assert!(!routes.contains("10.200.0.2"), "the route went with DEL: {routes}");
    assert!(!links(&a).contains("eth0"), "the pod side went with the host side");
    assert!(!links(&node).contains(&wa.host_ifname));
    assert!(!ping(&a, "10.200.0.3"), "no route once unwired");
    assert!(links(&node).contains(&wb.host_ifname));

    // The same pod interface again straight after its DEL, before the
    // reaper has run: the retired one makes way.
    let rewired = on_node(&node, {
        let pb = pb.clone();
        move |w| {
            Box::pin(async move {
                w.unwire("ctr-b", "eth0").await.unwrap();
                w.wire(&pb).await.map(|_| ())
            })
        }
    });
    assert!(rewired.is_ok(), "{rewired:?}");
    assert!(ping(&node, "10.200.0.3") && ping(&node, "fd00:200::3"));
}

#[test]
fn failed_wiring_leaves_nothing_behind() {
    if !testbed::require_privileges("failed_wiring_leaves_nothing_behind") {
        return;
    }
    let node = Netns::new("wf").unwrap();
    let a = Netns::new("wx").unwrap();
    // The pod already has an eth0.
    assert!(a
        .exec(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0"])
        .status
        .success());
    let clash = pod("ctr-x", a.path(), "10.201.0.2", "fd00:201::2");
    let missing = pod(
        "ctr-y",
        PathBuf::from("/run/netns/does-not-exist"),
        "10.201.0.3",
        "fd00:201::3",
    );
    let (e1, e2) = on_node(&node, move |w| {
        Box::pin(async move {
            let errors = (w.wire(&clash).await.unwrap_err(), w.wire(&missing).await.unwrap_err());
            w.settle().await;
            errors
        })
    });
    assert!(
        matches!(e1, WireError::InterfaceExists { ref ifname } if ifname == "eth0"),
        "{e1}"
    );
    assert!(matches!(e2, WireError::NetnsMissing(_)), "{e2}");
    let node_links = links(&node);
    for ctr in ["ctr-x", "ctr-y"] {
        assert!(!node_links.contains(&host_ifname(ctr, "eth0")), "{node_links}");
    }
    assert!(
        links(&a).lines().count() == 3,
        "only lo and the pod's own veth pair are there: {}",
        links(&a)
    );
    let routes = String::from_utf8_lossy(&node.exec(&["ip", "route"]).stdout).into_owned();
    assert!(!routes.contains("10.201.0.2"), "{routes}");
}

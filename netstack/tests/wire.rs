//! Pod wiring in network namespaces: a "node" namespace plays the host, two
//! pod namespaces get wired through it, and packets flow pod-to-pod and
//! node-to-pod in both families. Failed wiring leaves nothing behind.

use std::net::IpAddr;
use std::path::PathBuf;

use netstack::wire::{self, host_ifname, Netlink, PodInterface, WireError};
use testbed::Netns;

/// Runs `f` with a netlink handle inside `node`, on a thread of its own.
fn on_node<T: Send>(
    node: &Netns,
    f: impl FnOnce(Netlink) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send,
) -> T {
    node.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move { f(Netlink::connect().unwrap()).await })
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
        move |nl| Box::pin(async move { (wire::wire(&nl, &pa).await.unwrap(), wire::wire(&nl, &pb).await.unwrap()) })
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

    // CHECK sees the interface; DEL removes both ends and is repeatable.
    let (still, after, again) = on_node(&node, {
        let pa = pa.clone();
        move |nl| {
            Box::pin(async move {
                let still = wire::is_wired(&nl, "ctr-a", "eth0", &pa.netns).await.unwrap();
                wire::unwire(&nl, "ctr-a", "eth0").await.unwrap();
                let after = wire::is_wired(&nl, "ctr-a", "eth0", &pa.netns).await.unwrap();
                let again = wire::unwire(&nl, "ctr-a", "eth0").await;
                (still, after, again.is_ok())
            })
        }
    });
    assert!(still && !after && again);
    assert!(!links(&a).contains("eth0"), "the pod side went with the host side");
    assert!(!links(&node).contains(&wa.host_ifname));
    assert!(!ping(&a, "10.200.0.3"), "no route once unwired");
    assert!(links(&node).contains(&wb.host_ifname));
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
    let (e1, e2) = on_node(&node, move |nl| {
        Box::pin(async move {
            (
                wire::wire(&nl, &clash).await.unwrap_err(),
                wire::wire(&nl, &missing).await.unwrap_err(),
            )
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
        !links(&a).contains("nt"),
        "no temporary peer left in the pod: {}",
        links(&a)
    );
    let routes = String::from_utf8_lossy(&node.exec(&["ip", "route"]).stdout).into_owned();
    assert!(!routes.contains("10.201.0.2"), "{routes}");
}

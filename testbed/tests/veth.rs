//! veth pairs between test namespaces. Needs root.

use testbed::{veth, Netns};

fn links(ns: &Netns) -> String {
    String::from_utf8_lossy(&ns.exec(&["ip", "-o", "link"]).stdout).into_owned()
}

#[test]
fn pair_carries_packets_and_goes_away_on_drop() {
    if !testbed::require_privileges("pair_carries_packets_and_goes_away_on_drop") {
        return;
    }
    let a = Netns::new("va").unwrap();
    let b = Netns::new("vb").unwrap();
    let pair = veth(Some(&a), "eth0", Some(&b), "eth0").unwrap();
    assert_eq!((pair.a_name(), pair.b_name()), ("eth0", "eth0"));
    assert!(a
        .exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"])
        .status
        .success());
    assert!(b
        .exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", "eth0"])
        .status
        .success());
    let ping = a.exec(&["ping", "-c", "1", "-W", "2", "192.0.2.2"]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));
    drop(pair);
    assert!(!links(&a).contains("eth0") && !links(&b).contains("eth0"));
}

#[test]
fn a_clashing_name_fails_and_leaves_nothing() {
    if !testbed::require_privileges("a_clashing_name_fails_and_leaves_nothing") {
        return;
    }
    let a = Netns::new("vc").unwrap();
    let b = Netns::new("vd").unwrap();
    let _first = veth(Some(&a), "x0", Some(&b), "y0").unwrap();
    let e = veth(Some(&a), "x0", Some(&b), "y1").unwrap_err();
    assert!(e.to_string().contains("ip link add x0"), "{e}");
    assert!(!links(&b).contains("y1"));
}

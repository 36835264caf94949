//! The plan on small clusters compiled for real, and cross-checked against
//! `verdict` through a model of what the BPF programs look up.

use std::net::IpAddr;

use serde_json::json;

use super::testing::{datapath_allows, endpoints, identity, pod, Cluster};
use super::*;
use crate::{verdict, Endpoint, Flow, Protocol};

/// Every flow between the local pods and a set of addresses, in both
/// directions and both families, judged by `verdict` and by the model of
/// the programs: they must agree.
fn assert_datapath_agrees(compiled: &Compiled, plan: &Plan) {
    let remotes = [
        "10.0.0.1",
        "10.0.0.2",
        "10.1.0.3",
        "10.1.2.3",
        "10.2.0.1",
        "10.2.255.255",
        "192.0.2.1",
        "fd00::1",
        "fd00::2",
        "fd00:1::3",
        "fd00:1::9",
        "fd00:2::1",
        "2001:db8::1",
    ];
    for (ifindex, local) in [(10, "a"), (11, "b")] {
        let pod = Endpoint::Pod(NamespacedName::new("x", local));
        for remote in remotes {
            let ip: IpAddr = remote.parse().unwrap();
            for (protocol, port) in [
                (Protocol::Tcp, 80),
                (Protocol::Tcp, 81),
                (Protocol::Udp, 53),
                (Protocol::Tcp, 443),
            ] {
                let family = dualstack::IpFamily::of(&ip);
                let egress = Flow {
                    from: pod.clone(),
                    to: Endpoint::Ip(ip),
                    port,
                    protocol,
                    family,
                };
                let ingress = Flow {
                    from: Endpoint::Ip(ip),
                    to: pod.clone(),
                    ..egress.clone()
                };
                let expected_egress = verdict(compiled, &egress).unwrap().egress.allows();
                let expected_ingress = verdict(compiled, &ingress).unwrap().ingress.allows();
                let proto = protocol.ip_proto();
                assert_eq!(
                    datapath_allows(plan, ifindex, Direction::Egress, ip, proto, port),
                    expected_egress,
                    "egress x/{local} -> {remote} {port}/{protocol}"
                );
                assert_eq!(
                    datapath_allows(plan, ifindex, Direction::Ingress, ip, proto, port),
                    expected_ingress,
                    "ingress {remote} -> x/{local} {port}/{protocol}"
                );
            }
        }
    }
}

#[test]
fn endpoints_unmanaged_pending_and_selected() {
    let mut cluster = Cluster::new().with(
        "a-ingress",
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"]}),
    );
    let compiled = cluster.compile();
    let mut endpoints = endpoints();
    endpoints.push(LocalEndpoint {
        ifindex: 12,
        pod: EndpointPod::Unmanaged,
    });
    endpoints.push(LocalEndpoint {
        ifindex: 13,
        pod: EndpointPod::Pod(NamespacedName::new("x", "not-yet-seen")),
    });
    let plan = plan(&compiled, &endpoints, &PolicySlots::default());
    assert_eq!(
        plan.endpoints[&10],
        EndpointEntry {
            identity: identity(&compiled, "a"),
            isolated_ingress: true,
            isolated_egress: false,
        }
    );
    assert_eq!(
        plan.endpoints[&11],
        EndpointEntry {
            identity: identity(&compiled, "b"),
            isolated_ingress: false,
            isolated_egress: false,
        }
    );
    assert_eq!(plan.endpoints[&12], EndpointEntry::OPEN);
    assert_eq!(plan.endpoints[&13], EndpointEntry::DENY_ALL);
    // Isolated without any allow rule: nothing to write but the roots and
    // the pod addresses (all six, the remote pod's too).
    assert!(plan.rules.is_empty());
    assert_eq!(plan.ipcache.len(), 2 + 6);
    assert_datapath_agrees(&compiled, &plan);
    // Identity 0 has no rules, so the pending pod is denied everything.
    assert!(!datapath_allows(
        &plan,
        13,
        Direction::Ingress,
        "10.0.0.2".parse().unwrap(),
        6,
        80
    ));
    assert!(!datapath_allows(
        &plan,
        13,
        Direction::Egress,
        "192.0.2.1".parse().unwrap(),
        17,
        53
    ));
}

#[test]
fn ip_blocks_become_classes_with_excepts() {
    let mut cluster = Cluster::new().with(
        "a-egress",
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                    {"ipBlock": {"cidr": "fd00::/16", "except": ["fd00:1::/32"]}}]}
        ]}),
    );
    let compiled = cluster.compile();
    let plan = plan(&compiled, &endpoints(), &PolicySlots::default());
    let class = |cidr: &str| plan.slots.class_of(&cidr.parse().unwrap()).unwrap();
    let remotes: BTreeSet<Remote> = plan.rules.keys().map(|k| k.remote).collect();
    // Only the blocks' own classes: not the excepts', not the roots'.
    assert_eq!(
        remotes,
        BTreeSet::from([Remote::Class(class("10.0.0.0/8")), Remote::Class(class("fd00::/16"))])
    );
    assert!(plan
        .rules
        .keys()
        .all(|k| k.ports == RulePorts::Any && k.direction == Direction::Egress));
    // Pod addresses carry the class of their longest boundary: c sits in
    // the except, a and b in the block.
    assert_eq!(
        plan.ipcache[&"10.1.0.3/32".parse().unwrap()].class,
        class("10.1.0.0/16")
    );
    assert_eq!(
        plan.ipcache[&"10.0.0.2/32".parse().unwrap()],
        IpcacheEntry {
            identity: identity(&compiled, "b"),
            class: class("10.0.0.0/8"),
        }
    );
    assert_eq!(
        plan.ipcache[&"fd00:1::3/128".parse().unwrap()].class,
        class("fd00:1::/32")
    );
    // Boundaries are in the ipcache as themselves.
    assert_eq!(plan.ipcache[&"10.1.0.0/16".parse().unwrap()].identity, Identity::WORLD);
    assert_eq!(plan.ipcache[&"0.0.0.0/0".parse().unwrap()].class, class("0.0.0.0/0"));
    assert_eq!(plan.ipcache[&"::/0".parse().unwrap()].class, class("::/0"));
    assert_datapath_agrees(&compiled, &plan);
    let allows = |ip: &str| datapath_allows(&plan, 10, Direction::Egress, ip.parse().unwrap(), 6, 443);
    assert!(allows("10.2.0.1") && allows("10.0.0.2") && allows("fd00:2::1"));
    assert!(!allows("10.1.2.3") && !allows("10.1.0.3") && !allows("192.0.2.1") && !allows("fd00:1::9"));
}

#[test]
fn a_v4_block_never_matches_v6_and_the_whole_internet_is_two_roots() {
    let mut cluster = Cluster::new().with(
        "a-egress",
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}], "ports": [{"port": 443}]}
        ]}),
    );
    let compiled = cluster.compile();
    let plan = plan(&compiled, &endpoints(), &PolicySlots::default());
    let v4_root = plan.slots.class_of(&"0.0.0.0/0".parse().unwrap()).unwrap();
    let remotes: BTreeSet<Remote> = plan.rules.keys().map(|k| k.remote).collect();
    assert_eq!(remotes, BTreeSet::from([Remote::Class(v4_root)]));
    assert_datapath_agrees(&compiled, &plan);
    let allows = |ip: &str| datapath_allows(&plan, 10, Direction::Egress, ip.parse().unwrap(), 6, 443);
    assert!(allows("192.0.2.1"));
    assert!(!allows("2001:db8::1") && !allows("10.0.0.2"));
}

#[test]
fn port_ranges_become_minimal_prefixes_and_pods_their_identities() {
    let mut cluster = Cluster::new().with(
        "b-ingress",
        json!({"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
             "ports": [{"port": 80, "endPort": 81}, {"protocol": "UDP", "port": 53}]}
        ]}),
    );
    let compiled = cluster.compile();
    let plan = plan(&compiled, &endpoints(), &PolicySlots::default());
    let b = identity(&compiled, "b");
    let a = identity(&compiled, "a");
    let key = |protocol, port, len| RuleKey {
        local: b,
        direction: Direction::Ingress,
        remote: Remote::Pod(a),
        ports: RulePorts::Prefix {
            protocol,
            prefix: PortPrefix { port, len },
        },
    };
    let slot = plan.slots.slot_of(&NamespacedName::new("x", "b-ingress")).unwrap();
    assert_eq!(
        plan.rules,
        BTreeMap::from([(key(6, 80, 15), slot), (key(17, 53, 16), slot)])
    );
    assert_datapath_agrees(&compiled, &plan);
}

#[test]
fn slots_stay_across_plans_and_the_lowest_wins_a_shared_key() {
    let allow_a_from_b = |port: u16| {
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": port}]}
        ]})
    };
    let mut cluster = Cluster::new()
        .with("p1", allow_a_from_b(80))
        .with("p2", allow_a_from_b(80))
        .with("p3", allow_a_from_b(443));
    let compiled = cluster.compile();
    let first = plan(&compiled, &endpoints(), &PolicySlots::default());
    let slot = |plan: &Plan, name: &str| plan.slots.slot_of(&NamespacedName::new("x", name));
    assert_eq!(
        (slot(&first, "p1"), slot(&first, "p2"), slot(&first, "p3")),
        (Some(0), Some(1), Some(2))
    );
    // p1 and p2 allow the very same key: the lower slot counts it.
    let slots: BTreeSet<u32> = first.rules.values().copied().collect();
    assert_eq!(slots, BTreeSet::from([0, 2]));
    assert_eq!(first.slots.policy_at(2), Some(&NamespacedName::new("x", "p3")));

    // p1 goes: p2 and p3 keep their slots, p2 now counts port 80.
    cluster.policies.retain(|p| p.metadata.name.as_deref() != Some("p1"));
    let compiled = cluster.compile();
    let second = plan(&compiled, &endpoints(), &first.slots);
    assert_eq!(
        (slot(&second, "p1"), slot(&second, "p2"), slot(&second, "p3")),
        (None, Some(1), Some(2))
    );
    let slots: BTreeSet<u32> = second.rules.values().copied().collect();
    assert_eq!(slots, BTreeSet::from([1, 2]));
    // Planning the same again changes nothing.
    assert_eq!(plan(&compiled, &endpoints(), &second.slots), second);
}

#[test]
fn pods_sharing_an_identity_share_rules() {
    let mut cluster = Cluster::new().with(
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}]}),
    );
    cluster.pods.push(pod("x", "a2", "a", &["10.0.0.4"]));
    let compiled = cluster.compile();
    let mut endpoints = endpoints();
    endpoints.push(LocalEndpoint {
        ifindex: 14,
        pod: EndpointPod::Pod(NamespacedName::new("x", "a2")),
    });
    let plan = plan(&compiled, &endpoints, &PolicySlots::default());
    assert_eq!(plan.endpoints[&14].identity, plan.endpoints[&10].identity);
    // One "anyone, any port" ingress rule per distinct local identity.
    assert_eq!(plan.rules.len(), 2);
    assert!(plan
        .rules
        .keys()
        .all(|k| k.remote == Remote::Any && k.ports == RulePorts::Any));
    assert_datapath_agrees(&compiled, &plan);
}

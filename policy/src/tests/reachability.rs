//! Reachability matrices for the upstream e2e scenarios.

use dualstack::IpFamily;
use serde_json::json;

use super::model::{allowed, assert_reachability, assert_reachability_in, flow, ip, pod, Model, Reachability};
use super::policy;
use crate::Protocol::{Sctp, Tcp, Udp};

fn deny_all_ingress_to_namespace(r: Reachability, ns: &str) -> Reachability {
    r.for_namespace(ns, |r, p| r.ingress_to(p, false))
}

#[test]
fn no_policies_allow_everything() {
    let compiled = Model::new().compile();
    for protocol in [Tcp, Udp, Sctp] {
        assert_reachability(&compiled, 80, protocol, Reachability::all(true));
    }
}

#[test]
fn default_deny_ingress() {
    let mut model = Model::new();
    model.apply(policy("x", "deny-ingress", json!({"podSelector": {}})));
    let compiled = model.compile();
    for protocol in [Tcp, Udp, Sctp] {
        assert_reachability(
            &compiled,
            81,
            protocol,
            deny_all_ingress_to_namespace(Reachability::all(true), "x"),
        );
    }
}

#[test]
fn default_deny_egress() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "deny-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    ));
    let expected = Reachability::all(true).for_namespace("x", |r, p| r.egress_from(p, false));
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn allow_ingress_from_pod_selector_in_policy_namespace() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "allow-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    // Only x/b: a podSelector alone never reaches into y or z.
    let expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .expect("x/b", "x/a", true);
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn allow_ingress_from_namespace_selector() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "allow-y",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}
        ]}]}),
    ));
    let expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .for_namespace("y", |r, p| r.expect(p, "x/a", true));
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn pod_and_namespace_selector_in_one_peer_are_anded() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "and",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
            "podSelector": {"matchLabels": {"pod": "b"}}
        }]}]}),
    ));
    let expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .expect("y/b", "x/a", true);
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn pod_and_namespace_selector_in_separate_peers_are_ored() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "or",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}},
            {"podSelector": {"matchLabels": {"pod": "b"}}}
        ]}]}),
    ));
    let expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .for_namespace("y", |r, p| r.expect(p, "x/a", true))
        .expect("x/b", "x/a", true);
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn match_expressions_in_and_not_in() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "expressions",
        json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
               "ingress": [{"from": [{
                   "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]},
                   "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["c"]}]}
               }]}]}),
    ));
    // x/a and x/b accept a and b of y and z.
    let mut expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .ingress_to("x/b", false);
    for from in ["y/a", "y/b", "z/a", "z/b"] {
        expected = expected.expect(from, "x/a", true).expect(from, "x/b", true);
    }
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn named_port_on_ingress_resolves_against_the_destination_pod() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "named",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]}),
    ));
    let compiled = model.compile();
    let denied_into_x = deny_all_ingress_to_namespace(Reachability::all(true), "x");
    assert_reachability(&compiled, 81, Udp, Reachability::all(true));
    assert_reachability(&compiled, 80, Udp, denied_into_x.clone());
    assert_reachability(&compiled, 81, Tcp, denied_into_x);
}

#[test]
fn named_port_on_ingress_only_opens_pods_that_have_it() {
    let mut model = Model::new();
    // x/b serves `serve-81-tcp` on 8081 instead; x/c does not have it at all.
    for (pod, port) in [(1, Some(8081)), (2, None)] {
        let ports = &mut model.pods[pod].spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap();
        let named = ports
            .iter_mut()
            .find(|p| p.name.as_deref() == Some("serve-81-tcp"))
            .unwrap();
        match port {
            Some(port) => named.container_port = port,
            None => named.name = None,
        }
    }
    model.apply(policy(
        "x",
        "named",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
    ));
    let compiled = model.compile();
    let expected_81 = Reachability::all(true)
        .ingress_to("x/b", false)
        .ingress_to("x/c", false);
    assert_reachability(&compiled, 81, Tcp, expected_81);
    assert!(allowed(&compiled, &flow(pod("y/a"), pod("x/b"), 8081, Tcp)));
    assert!(!allowed(&compiled, &flow(pod("y/a"), pod("x/a"), 8081, Tcp)));
}

#[test]
fn named_port_on_egress_resolves_against_each_peer_pod() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "named-egress",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
    ));
    let compiled = model.compile();
    assert_reachability(&compiled, 80, Tcp, Reachability::all(true));
    assert_reachability(&compiled, 81, Tcp, Reachability::all(true).egress_from("x/a", false));
    // Not a pod: it has no container ports, so a named port cannot match it.
    assert!(!allowed(&compiled, &flow(pod("x/a"), ip("192.0.2.1"), 80, Tcp)));
}

#[test]
fn named_port_on_egress_to_an_ip_block_matches_nothing() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "named-to-cidr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": "serve-80-tcp"}, {"port": 81}]}]}),
    ));
    let compiled = model.compile();
    assert_reachability_in(
        &compiled,
        80,
        Tcp,
        IpFamily::V4,
        Reachability::all(true).egress_from("x/a", false),
    );
    assert_reachability_in(&compiled, 81, Tcp, IpFamily::V4, Reachability::all(true));
}

#[test]
fn end_port_ranges() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "range",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 70, "endPort": 80}, {"protocol": "UDP", "port": 81, "endPort": 90}]}]}),
    ));
    let compiled = model.compile();
    let denied_into_x = deny_all_ingress_to_namespace(Reachability::all(true), "x");
    assert_reachability(&compiled, 80, Tcp, Reachability::all(true));
    assert_reachability(&compiled, 81, Tcp, denied_into_x.clone());
    assert_reachability(&compiled, 80, Udp, denied_into_x);
    assert_reachability(&compiled, 81, Udp, Reachability::all(true));
    assert!(allowed(&compiled, &flow(pod("y/a"), pod("x/a"), 70, Tcp)));
    assert!(!allowed(&compiled, &flow(pod("y/a"), pod("x/a"), 69, Tcp)));
}

#[test]
fn ip_block_with_except_on_egress() {
    let mut model = Model::new();
    // Everything in 10.0.0.0/16 except y's /24 and z/c's own address.
    model.apply(policy(
        "x",
        "cidr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [
            {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.0/24", "10.0.3.3/32"]}},
            {"ipBlock": {"cidr": "fd00::/64", "except": ["fd00::2:0/112"]}}
        ]}]}),
    ));
    let compiled = model.compile();
    let v4 = Reachability::all(true)
        .for_namespace("y", |r, p| r.expect("x/a", p, false))
        .expect("x/a", "z/c", false);
    assert_reachability_in(&compiled, 80, Tcp, IpFamily::V4, v4);
    let v6 = Reachability::all(true).for_namespace("y", |r, p| r.expect("x/a", p, false));
    assert_reachability_in(&compiled, 80, Tcp, IpFamily::V6, v6);
    assert!(!allowed(&compiled, &flow(pod("x/a"), ip("192.0.2.1"), 80, Tcp)));
}

#[test]
fn except_only_removes_from_its_own_peer() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "cidr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.0/24"]}},
            {"ipBlock": {"cidr": "10.0.2.2/32"}}
        ]}]}),
    ));
    let expected = Reachability::all(true)
        .expect("y/a", "x/a", false)
        .expect("y/c", "x/a", false);
    assert_reachability_in(&model.compile(), 80, Tcp, IpFamily::V4, expected);
}

#[test]
fn pod_label_change_reevaluates() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "allow-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    ));
    let base = Reachability::all(true).ingress_to("x/a", false);
    assert_reachability(&model.compile(), 80, Tcp, base.clone());
    model.set_pod_label("x/c", "role", "client");
    assert_reachability(&model.compile(), 80, Tcp, base.clone().expect("x/c", "x/a", true));
    // Relabelling the selected pod away lifts its isolation.
    model.set_pod_label("x/a", "pod", "renamed");
    assert_reachability(&model.compile(), 80, Tcp, Reachability::all(true));
}

#[test]
fn namespace_label_change_reevaluates() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "allow-team",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}),
    ));
    let base = deny_all_ingress_to_namespace(Reachability::all(true), "x");
    assert_reachability(&model.compile(), 80, Tcp, base.clone());
    model.set_namespace_label("z", "team", "blue");
    let expected = base.for_namespace("z", |r, from| r.for_namespace("x", |r, to| r.expect(from, to, true)));
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn policy_update_and_delete_restore_reachability() {
    let mut model = Model::new();
    let deny = policy("x", "p", json!({"podSelector": {}}));
    model.apply(deny);
    assert_reachability(
        &model.compile(),
        80,
        Tcp,
        deny_all_ingress_to_namespace(Reachability::all(true), "x"),
    );
    // The same policy updated to allow everyone from x.
    model.apply(policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    ));
    let within_x = deny_all_ingress_to_namespace(Reachability::all(true), "x")
        .for_namespace("x", |r, from| r.for_namespace("x", |r, to| r.expect(from, to, true)));
    assert_reachability(&model.compile(), 80, Tcp, within_x);
    model.delete_policy("x", "p");
    assert_reachability(&model.compile(), 80, Tcp, Reachability::all(true));
}

#[test]
fn egress_deny_with_dns_allowed() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "dns-only",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
               "egress": [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
    ));
    let compiled = model.compile();
    let expected = Reachability::all(true).for_namespace("x", |r, p| r.egress_from(p, false));
    assert_reachability(&compiled, 80, Udp, expected);
    let cluster_dns = ip("10.96.0.10");
    assert!(allowed(&compiled, &flow(pod("x/a"), cluster_dns.clone(), 53, Udp)));
    assert!(allowed(&compiled, &flow(pod("x/a"), pod("y/a"), 53, Udp)));
    assert!(!allowed(&compiled, &flow(pod("x/a"), cluster_dns, 80, Tcp)));
}

#[test]
fn a_rule_for_one_protocol_isolates_the_others() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "tcp-only",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"protocol": "TCP"}]}]}),
    ));
    let compiled = model.compile();
    assert_reachability(&compiled, 81, Tcp, Reachability::all(true));
    for protocol in [Udp, Sctp] {
        assert_reachability(
            &compiled,
            81,
            protocol,
            Reachability::all(true).ingress_to("x/a", false),
        );
    }
}

#[test]
fn egress_and_ingress_must_both_allow() {
    let mut model = Model::new();
    // x/a may only talk to y/b; y/b only accepts x/b.
    model.apply(policy(
        "x",
        "a-to-yb",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
            "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    model.apply(policy(
        "y",
        "yb-from-xb",
        json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}},
            "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    let expected = Reachability::all(true)
        .egress_from("x/a", false)
        .ingress_to("y/b", false)
        .expect("x/b", "y/b", true);
    assert_reachability(&model.compile(), 80, Tcp, expected);
    // Opening y/b to x/a as well makes the pair reachable.
    model.apply(policy(
        "y",
        "yb-from-xa",
        json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}},
            "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    let expected = Reachability::all(true)
        .egress_from("x/a", false)
        .ingress_to("y/b", false)
        .expect("x/b", "y/b", true)
        .expect("x/a", "y/b", true);
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn empty_and_absent_selectors() {
    let mut model = Model::new();
    // A peer with only `podSelector: {}`: every pod of the policy's namespace.
    model.apply(policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    ));
    let from_x = Reachability::all(true)
        .ingress_to("x/a", false)
        .for_namespace("x", |r, p| r.expect(p, "x/a", true));
    let compiled = model.compile();
    assert_reachability(&compiled, 80, Tcp, from_x);
    assert!(!allowed(&compiled, &flow(ip("192.0.2.1"), pod("x/a"), 80, Tcp)));

    // `namespaceSelector: {}` (podSelector absent): every pod everywhere, but
    // still no non-pod addresses.
    model.apply(policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    ));
    let compiled = model.compile();
    assert_reachability(&compiled, 80, Tcp, Reachability::all(true));
    assert!(!allowed(&compiled, &flow(ip("192.0.2.1"), pod("x/a"), 80, Tcp)));

    // `from` absent: everyone, including non-pod addresses.
    model.apply(policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{}]}),
    ));
    let compiled = model.compile();
    assert_reachability(&compiled, 80, Tcp, Reachability::all(true));
    assert!(allowed(&compiled, &flow(ip("192.0.2.1"), pod("x/a"), 80, Tcp)));

    // `ingress: []`: isolated, nothing allowed. `podSelector` absent: all pods.
    model.apply(policy("x", "p", json!({"ingress": []})));
    let compiled = model.compile();
    assert_reachability(
        &compiled,
        80,
        Tcp,
        deny_all_ingress_to_namespace(Reachability::all(true), "x"),
    );
    assert!(!allowed(&compiled, &flow(ip("192.0.2.1"), pod("x/a"), 80, Tcp)));
}

#[test]
fn policy_types_default_from_the_rules_present() {
    let mut model = Model::new();
    // No policyTypes, egress rules present: Ingress and Egress both isolate.
    model.apply(policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "egress": [{"ports": [{"port": 81}]}]}),
    ));
    let compiled = model.compile();
    let x_a = &compiled.local_pods[&crate::NamespacedName::new("x", "a")];
    assert!(x_a.ingress.is_isolated() && x_a.egress.is_isolated());
    assert_reachability(
        &compiled,
        80,
        Tcp,
        Reachability::all(true)
            .ingress_to("x/a", false)
            .egress_from("x/a", false),
    );
    // policyTypes [Egress] ignores ingress rules and leaves ingress open.
    model.apply(policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "ingress": [{}]}),
    ));
    assert_reachability(
        &model.compile(),
        80,
        Tcp,
        Reachability::all(true).egress_from("x/a", false),
    );
}

#[test]
fn ipv6_ip_blocks_on_ingress() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "v6",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "fd00::3:0/112"}}]}]}),
    ));
    let compiled = model.compile();
    let from_z_only = deny_all_ingress_to_namespace(Reachability::all(true), "x")
        .for_namespace("z", |r, from| r.for_namespace("x", |r, to| r.expect(from, to, true)));
    assert_reachability_in(&compiled, 80, Tcp, IpFamily::V6, from_z_only);
    // The same pods over IPv4 are outside the v6 block.
    assert_reachability_in(
        &compiled,
        80,
        Tcp,
        IpFamily::V4,
        deny_all_ingress_to_namespace(Reachability::all(true), "x"),
    );
}

#[test]
fn policies_are_unioned() {
    let mut model = Model::new();
    for (name, from) in [("from-b", "b"), ("from-c", "c")] {
        model.apply(policy(
            "x",
            name,
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": from}}}]}]}),
        ));
    }
    let expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .expect("x/b", "x/a", true)
        .expect("x/c", "x/a", true);
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

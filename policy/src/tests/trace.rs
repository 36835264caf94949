//! The compiled state's shape (provenance, identities, determinism) and
//! verdict explanations.

use std::collections::BTreeSet;

use serde_json::json;

use super::model::{flow, ip, pod, Model};
use super::policy;
use crate::{
    verdict, AllowRule, Direction, DirectionVerdict, Endpoint, Identity, NamespacedName, PeerSet, PortRange, PortSet,
    Protocol::{Tcp, Udp},
    RuleOrigin, TraceError,
};

fn allow_b_to_a_on_80() -> Model {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "allow-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
            "from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}, {"podSelector": {"matchLabels": {"pod": "b"}}}],
            "ports": [{"port": "serve-80-tcp"}]
        }]}),
    ));
    model.apply(policy("x", "deny-all", json!({"podSelector": {}})));
    model
}

#[test]
fn rules_carry_provenance_and_concrete_peers_and_ports() {
    let compiled = allow_b_to_a_on_80().compile();
    let x_a = &compiled.local_pods[&NamespacedName::new("x", "a")];
    let x_b_identity = compiled.pods[&NamespacedName::new("x", "b")].identity;
    let origin = |peer| RuleOrigin {
        policy: NamespacedName::new("x", "allow-b"),
        direction: Direction::Ingress,
        rule: 0,
        peer: Some(peer),
    };
    let port_80 = PortSet::Ranges(vec![PortRange::single(Tcp, 80)]);
    assert_eq!(
        x_a.ingress.isolated_by,
        [
            NamespacedName::new("x", "allow-b"),
            NamespacedName::new("x", "deny-all")
        ]
    );
    assert_eq!(x_a.ingress.rules.len(), 2);
    assert_eq!(x_a.ingress.rules[0].origin, origin(0));
    assert_eq!(x_a.ingress.rules[0].peers.to_string(), "ipBlock 192.0.2.0/24");
    assert_eq!(x_a.ingress.rules[0].ports, port_80);
    assert_eq!(
        x_a.ingress.rules[1],
        AllowRule {
            origin: origin(1),
            peers: PeerSet::Pods(BTreeSet::from([x_b_identity])),
            ports: port_80,
        }
    );
    assert!(!x_a.egress.is_isolated());
    assert_eq!(compiled.ipcache[&"fd00::1:2".parse().unwrap()], x_b_identity);
}

#[test]
fn verdict_names_the_isolating_and_allowing_policies() {
    let compiled = allow_b_to_a_on_80().compile();
    let allowed = verdict(&compiled, &flow(pod("x/b"), pod("x/a"), 80, Tcp)).unwrap();
    assert!(allowed.allowed());
    let text = allowed.to_string();
    assert!(text.starts_with("x/b (10.0.1.2, identity #"), "{text}");
    assert!(text.contains("10.0.1.1"), "{text}");
    assert!(text.contains("80/TCP: ALLOWED"), "{text}");
    assert!(text.contains("Egress of x/b: allowed: no policy isolates it"), "{text}");
    assert!(
        text.contains("Ingress of x/a: allowed: isolated by x/allow-b, x/deny-all, allowed by"),
        "{text}"
    );
    assert!(
        text.contains("    x/allow-b spec.ingress[0].from[1] (pods {#"),
        "{text}"
    );

    let denied = verdict(&compiled, &flow(pod("x/c"), pod("x/a"), 80, Tcp)).unwrap();
    assert!(!denied.allowed());
    assert_eq!(
        denied.ingress,
        DirectionVerdict::Denied {
            isolated_by: vec![
                NamespacedName::new("x", "allow-b"),
                NamespacedName::new("x", "deny-all")
            ]
        }
    );
    let outside = verdict(&compiled, &flow(ip("192.0.2.9"), pod("x/a"), 80, Tcp)).unwrap();
    assert!(outside.allowed());
    assert_eq!(outside.egress, DirectionVerdict::NotLocal);
    assert!(outside
        .to_string()
        .contains("x/allow-b spec.ingress[0].from[0] (ipBlock 192.0.2.0/24 on 80/TCP)"));
}

#[test]
fn loopback_is_always_allowed() {
    let compiled = allow_b_to_a_on_80().compile();
    let v = verdict(&compiled, &flow(pod("x/c"), pod("x/c"), 81, Udp)).unwrap();
    assert!(v.allowed() && v.loopback);
}

#[test]
fn ip_endpoints_are_classified_through_the_ipcache() {
    let compiled = allow_b_to_a_on_80().compile();
    assert!(verdict(&compiled, &flow(ip("fd00::1:2"), ip("fd00::1:1"), 80, Tcp))
        .unwrap()
        .allowed());
    assert!(!verdict(&compiled, &flow(ip("fd00::1:3"), ip("fd00::1:1"), 80, Tcp))
        .unwrap()
        .allowed());
}

#[test]
fn only_local_pods_are_judged() {
    let mut model = allow_b_to_a_on_80();
    // Only namespace y runs on this node.
    let compiled = model.compile_for(|p| p.metadata.namespace.as_deref() == Some("y"));
    assert_eq!(compiled.local_pods.len(), 3);
    let v = verdict(&compiled, &flow(pod("x/c"), pod("x/a"), 80, Tcp)).unwrap();
    assert!(v.allowed(), "x/a's ingress is enforced on its own node");
    assert_eq!(
        (v.egress, v.ingress),
        (DirectionVerdict::NotLocal, DirectionVerdict::NotLocal)
    );
}

#[test]
fn trace_errors_say_what_is_wrong() {
    let compiled = allow_b_to_a_on_80().compile();
    let unknown = verdict(&compiled, &flow(pod("x/nope"), pod("x/a"), 80, Tcp)).unwrap_err();
    assert_eq!(unknown, TraceError::UnknownPod(NamespacedName::new("x", "nope")));
    let mixed = verdict(&compiled, &flow(ip("10.0.1.1"), ip("fd00::1:1"), 80, Tcp)).unwrap_err();
    assert!(matches!(mixed, TraceError::FamilyMismatch { .. }));
    assert_eq!("x/a".parse::<Endpoint>().unwrap(), pod("x/a"));
    assert!("x/a/b".parse::<Endpoint>().is_err());
}

#[test]
fn output_is_deterministic_and_identities_are_stable() {
    let mut model = allow_b_to_a_on_80();
    let first = model.compile();
    model.pods.reverse();
    model.policies.reverse();
    assert_eq!(model.compile(), first);
    // Relabelling x/c gives it a new identity; everyone else keeps theirs.
    model.set_pod_label("x/c", "pod", "b");
    let second = model.compile();
    let id = |c: &crate::Compiled, p: &str| c.pods[&NamespacedName::new("x", p)].identity;
    assert_eq!(id(&second, "a"), id(&first, "a"));
    assert_eq!(id(&second, "b"), id(&first, "b"));
    assert_eq!(
        id(&second, "c"),
        id(&second, "b"),
        "same namespace, labels and ports: same identity"
    );
    assert_ne!(id(&second, "c"), id(&first, "c"));
    assert!(second.identities.key_of(id(&first, "c")).is_none());
    assert_ne!(id(&second, "c"), Identity::WORLD);
}

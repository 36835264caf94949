//! Policies the API server would refuse: reported, and failing closed.

use serde_json::json;

use super::model::{assert_reachability, Model, Reachability};
use super::policy;
use crate::{NamespacedName, Protocol::Tcp};

/// Applies one invalid policy selecting x/a and returns the error texts.
fn errors_of(spec: serde_json::Value) -> (Model, Vec<String>) {
    let mut model = Model::new();
    model.apply(policy("x", "bad", spec));
    let compiled = model.compile();
    let name = NamespacedName::new("x", "bad");
    let errors = compiled
        .errors_of(&name)
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    (model, errors)
}

#[test]
fn end_port_with_named_port_is_reported_and_fails_closed() {
    let (mut model, errors) = errors_of(json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"ports": [{"port": 80}, {"port": "serve-80-tcp", "endPort": 81}]}]
    }));
    assert_eq!(errors, ["spec.ingress[0].ports[1]: endPort requires a numeric port"]);
    let compiled = model.compile();
    assert_eq!(
        compiled.policy_errors[0].to_string(),
        "policy x/bad: spec.ingress[0].ports[1]: endPort requires a numeric port; \
         the policy isolates the pods it selects but allows nothing until it is fixed"
    );
    // The valid part (port 80) is not used either: x/a is isolated with no rules.
    assert_reachability(&compiled, 80, Tcp, Reachability::all(true).ingress_to("x/a", false));
    assert!(compiled.local_pods[&NamespacedName::new("x", "a")]
        .ingress
        .rules
        .is_empty());
}

#[test]
fn except_outside_its_cidr_is_reported_and_fails_closed() {
    let (mut model, errors) = errors_of(json!({
        "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24", "10.0.0.0/16", "fd00::/64"]}}]}]
    }));
    assert_eq!(
        errors,
        [
            "spec.egress[0].to[0].ipBlock.except[0]: except \"10.1.0.0/24\" must be a strict subset of cidr 10.0.0.0/16",
            "spec.egress[0].to[0].ipBlock.except[1]: except \"10.0.0.0/16\" must be a strict subset of cidr 10.0.0.0/16",
            "spec.egress[0].to[0].ipBlock.except[2]: except \"fd00::/64\" must be a strict subset of cidr 10.0.0.0/16",
        ]
    );
    assert_reachability(
        &model.compile(),
        80,
        Tcp,
        Reachability::all(true).egress_from("x/a", false),
    );
}

#[test]
fn malformed_peers_are_reported() {
    let (_, errors) = errors_of(json!({"ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/33"}},
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}},
        {},
        {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Near", "values": ["a"]}]}}
    ]}]}));
    assert_eq!(
        errors,
        [
            "spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR (expected e.g. 10.0.0.0/24 or fd00::/64)",
            "spec.ingress[0].from[1]: may not specify both ipBlock and another peer (podSelector or namespaceSelector)",
            "spec.ingress[0].from[2]: must specify a peer: podSelector, namespaceSelector or ipBlock",
            "spec.ingress[0].from[3].podSelector.matchExpressions[0].operator: unsupported operator \"Near\": use In, NotIn, Exists or DoesNotExist",
        ]
    );
}

#[test]
fn unknown_protocol_and_bad_end_port_are_reported() {
    let (_, errors) = errors_of(json!({"egress": [{"ports": [{"protocol": "ICMP"}, {"port": 90, "endPort": 80}]}]}));
    assert_eq!(
        errors,
        [
            "spec.egress[0].ports[0].protocol: unsupported protocol \"ICMP\": use TCP, UDP or SCTP",
            "spec.egress[0].ports[1].endPort: endPort 80 must be greater than or equal to port 90",
        ]
    );
}

#[test]
fn invalid_pod_selector_isolates_the_whole_namespace() {
    let (mut model, errors) = errors_of(json!({
        "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In"}]},
        "ingress": [{}]
    }));
    assert_eq!(
        errors,
        ["spec.podSelector.matchExpressions[0].values: must be specified when `operator` is 'In' or 'NotIn'"]
    );
    let expected = Reachability::all(true).for_namespace("x", |r, p| r.ingress_to(p, false));
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn invalid_policy_types_isolate_both_directions() {
    let (mut model, errors) = errors_of(json!({
        "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egres"], "ingress": [{}]
    }));
    assert_eq!(
        errors,
        ["spec.policyTypes[1]: unsupported policyType \"Egres\": use Ingress or Egress"]
    );
    let expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .egress_from("x/a", false);
    assert_reachability(&model.compile(), 80, Tcp, expected);
}

#[test]
fn an_invalid_policy_does_not_disturb_valid_ones() {
    let mut model = Model::new();
    model.apply(policy(
        "x",
        "good",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    ));
    model.apply(policy(
        "x",
        "bad",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"ipBlock": {"cidr": "nonsense"}}]}]}),
    ));
    let compiled = model.compile();
    assert_eq!(compiled.policy_errors.len(), 1);
    let expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .expect("x/b", "x/a", true);
    assert_reachability(&compiled, 80, Tcp, expected);
    let x_a = &compiled.local_pods[&NamespacedName::new("x", "a")];
    assert_eq!(
        x_a.ingress.isolated_by,
        [NamespacedName::new("x", "bad"), NamespacedName::new("x", "good")]
    );
}

#[test]
fn host_bits_in_a_cidr_are_accepted_like_the_api_server_does() {
    let (mut model, errors) = errors_of(json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.2.7/24", "except": ["10.0.2.1/32"]}}]}]
    }));
    assert!(errors.is_empty(), "{errors:?}");
    let expected = Reachability::all(true)
        .ingress_to("x/a", false)
        .expect("y/b", "x/a", true)
        .expect("y/c", "x/a", true);
    super::model::assert_reachability_in(&model.compile(), 80, Tcp, dualstack::IpFamily::V4, expected);
}

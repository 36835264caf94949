//! The Service spec fields allocation reads and writes, and which of them
//! each Service type needs (the real API server's `needsClusterIP`,
//! `needsNodePort` and `needsHCNodePort`).

use std::net::IpAddr;

use serde_json::{json, Map, Value};

pub type Spec = Map<String, Value>;

/// `clusterIP: None`: a headless Service, which gets no address.
pub const NONE: &str = "None";

pub fn text<'a>(spec: &'a Spec, field: &str) -> &'a str {
    spec.get(field).and_then(Value::as_str).unwrap_or("")
}

pub fn list(spec: &Spec, field: &str) -> Vec<String> {
    spec.get(field)
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Sets a string field; an empty one is removed, as Go's `omitempty` would.
pub fn set_text(spec: &mut Spec, field: &str, value: &str) {
    if value.is_empty() {
        spec.remove(field);
    } else {
        spec.insert(field.into(), json!(value));
    }
}

pub fn set_list(spec: &mut Spec, field: &str, values: &[String]) {
    if values.is_empty() {
        spec.remove(field);
    } else {
        spec.insert(field.into(), json!(values));
    }
}

/// A whole-number field; absent (or not a number) is 0, as in Go.
pub fn number(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

pub fn service_type(spec: &Spec) -> &str {
    match text(spec, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

pub fn needs_cluster_ip(spec: &Spec) -> bool {
    service_type(spec) != "ExternalName"
}

pub fn needs_node_ports(spec: &Spec) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

/// Whether ports without a nodePort get one: a LoadBalancer may opt out
/// (its load balancer then reaches pods some other way).
pub fn allocates_node_ports(spec: &Spec) -> bool {
    match service_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec.get("allocateLoadBalancerNodePorts") != Some(&json!(false)),
        _ => false,
    }
}

/// A LoadBalancer that keeps traffic on the node it arrives at needs a
/// port for its load balancer to ask which nodes have endpoints.
pub fn needs_health_check_port(spec: &Spec) -> bool {
    service_type(spec) == "LoadBalancer" && text(spec, "externalTrafficPolicy") == "Local"
}

pub fn ports(spec: &Spec) -> &[Value] {
    spec.get("ports").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The addresses a stored Service holds.
pub fn held_ips(spec: &Spec) -> Vec<IpAddr> {
    list(spec, "clusterIPs")
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect()
}

/// The node ports a stored Service holds, its health check port included.
pub fn held_ports(spec: &Spec) -> Vec<u16> {
    ports(spec)
        .iter()
        .map(|p| number(p.get("nodePort")))
        .chain([number(spec.get("healthCheckNodePort"))])
        .filter_map(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
        .collect()
}

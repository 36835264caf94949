//! The defaulting a real API server applies on every write, for the fields
//! netlet reads: a client never sees a Service port without a protocol
//! from a real cluster, so it does not see one here either. Allocation
//! (ClusterIPs, node ports) is `allocate`'s job.

use serde_json::{json, Value};

use crate::registry::Resource;

fn set_if_absent(obj: &mut Value, field: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get(field).is_none_or(Value::is_null) {
            m.insert(field.to_string(), value);
        }
    }
}

fn each<'a>(v: &'a mut Value, field: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(field).and_then(Value::as_array_mut).into_iter().flatten()
}

fn ports_tcp<'a>(ports: impl Iterator<Item = &'a mut Value>) {
    for p in ports {
        set_if_absent(p, "protocol", json!("TCP"));
    }
}

fn service(spec: &mut Value) {
    set_if_absent(spec, "type", json!("ClusterIP"));
    set_if_absent(spec, "sessionAffinity", json!("None"));
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if ty != "ExternalName" {
        set_if_absent(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_if_absent(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_if_absent(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    for p in each(spec, "ports") {
        set_if_absent(p, "protocol", json!("TCP"));
        let port = p["port"].clone();
        set_if_absent(p, "targetPort", port);
    }
}

fn pod(spec: &mut Value) {
    set_if_absent(spec, "restartPolicy", json!("Always"));
    set_if_absent(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_absent(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_absent(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        for c in each(spec, list) {
            ports_tcp(each(c, "ports"));
        }
    }
}

fn network_policy(spec: &mut Value) {
    if spec.get("policyTypes").is_none_or(Value::is_null) {
        let mut types = vec!["Ingress"];
        if spec["egress"].as_array().is_some_and(|e| !e.is_empty()) {
            types.push("Egress");
        }
        set_if_absent(spec, "policyTypes", json!(types));
    }
    for dir in ["ingress", "egress"] {
        for rule in each(spec, dir) {
            ports_tcp(each(rule, "ports"));
        }
    }
}

/// Fills in defaults of `obj` (a whole object of kind `res`).
pub fn apply(res: &Resource, obj: &mut Value) {
    let spec_object = obj.get("spec").is_some_and(Value::is_object);
    match (res.group, res.kind) {
        // A Service always has a spec: its type and addresses live there.
        ("", "Service") => {
            set_if_absent(obj, "spec", json!({}));
            if obj["spec"].is_object() {
                service(&mut obj["spec"])
            }
        }
        ("", "Pod") if spec_object => pod(&mut obj["spec"]),
        ("networking.k8s.io", "NetworkPolicy") if spec_object => network_policy(&mut obj["spec"]),
        ("discovery.k8s.io", "EndpointSlice") => ports_tcp(each(obj, "ports")),
        ("", "Endpoints") => {
            for subset in each(obj, "subsets") {
                ports_tcp(each(subset, "ports"));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn service_ports_get_protocol_and_target_port() {
        let mut svc = json!({"spec":{"ports":[{"port":80},{"port":53,"protocol":"UDP","targetPort":"dns"}]}});
        apply(find("", "v1", "services").unwrap(), &mut svc);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port":80,"protocol":"TCP","targetPort":80})
        );
        assert_eq!(
            svc["spec"]["ports"][1],
            json!({"port":53,"protocol":"UDP","targetPort":"dns"})
        );
        assert!(svc["spec"].get("clusterIP").is_none(), "defaulting allocates nothing");
    }

    #[test]
    fn policy_types_follow_the_rules_given() {
        let mut np = json!({"spec":{"podSelector":{},"egress":[{"ports":[{"port":53}]}]}});
        apply(find("networking.k8s.io", "v1", "networkpolicies").unwrap(), &mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    }
}

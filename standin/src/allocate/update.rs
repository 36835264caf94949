//! The Service fields made consistent before anything is allocated: what
//! an update keeps from the stored version, what it drops because the
//! type no longer needs it, and which type goes with which fields.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::fields::{
    list, needs_cluster_ip, needs_health_check_port, needs_node_ports, number, ports, service_type, set_list, set_text,
    text, Spec, NONE,
};
use super::{quoted, strings, Problem};

const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// Brings `clusterIP`/`clusterIPs` in line with each other and, on an
/// update, with the stored version `old`.
pub fn normalize(old: Option<&Spec>, spec: &mut Spec) {
    match old {
        None => {
            // Old clients set only the singular field; the real server
            // asks new ones to set both, here one is enough.
            let (ip, ips) = (text(spec, "clusterIP").to_string(), list(spec, "clusterIPs"));
            if !ip.is_empty() && ips.is_empty() {
                set_list(spec, "clusterIPs", &[ip]);
            } else if ip.is_empty() && !ips.is_empty() {
                set_text(spec, "clusterIP", &ips[0]);
            }
        }
        Some(old) => {
            keep_allocated(old, spec);
            sync_cluster_ips(old, spec);
            drop_type_dependent(old, spec);
        }
    }
}

/// An update that leaves out what the server allocated keeps it, so that
/// resubmitting the manifest a Service was created from works.
fn keep_allocated(old: &Spec, spec: &mut Spec) {
    if needs_cluster_ip(old) && needs_cluster_ip(spec) {
        if text(spec, "clusterIP").is_empty() {
            set_text(spec, "clusterIP", text(old, "clusterIP"));
        }
        if list(spec, "clusterIPs").is_empty() {
            set_list(spec, "clusterIPs", &list(old, "clusterIPs"));
        }
    }
    if needs_node_ports(old) && needs_node_ports(spec) {
        let node_ports = |s: &Spec| -> HashSet<i64> { ports(s).iter().map(|p| number(p.get("nodePort"))).collect() };
        // Ports given in both versions cannot be carried over to another port.
        let used: HashSet<i64> = node_ports(old).intersection(&node_ports(spec)).copied().collect();
        let by_name: HashMap<&str, i64> = ports(old)
            .iter()
            .map(|p| (p["name"].as_str().unwrap_or(""), number(p.get("nodePort"))))
            .collect();
        for p in spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let kept = by_name.get(p["name"].as_str().unwrap_or("")).copied().unwrap_or(0);
            if number(p.get("nodePort")) == 0 && kept != 0 && !used.contains(&kept) {
                p["nodePort"] = json!(kept);
            }
        }
    }
    if needs_health_check_port(old) && needs_health_check_port(spec) && number(spec.get("healthCheckNodePort")) == 0 {
        if let Some(hc) = old.get("healthCheckNodePort") {
            spec.insert("healthCheckNodePort".into(), hc.clone());
        }
    }
}

/// A changed `clusterIP` changes `clusterIPs` with it: clearing it clears
/// both, setting it sets the primary one.
fn sync_cluster_ips(old: &Spec, spec: &mut Spec) {
    let (old_ip, new_ip) = (text(old, "clusterIP"), text(spec, "clusterIP").to_string());
    let (old_ips, mut new_ips) = (list(old, "clusterIPs"), list(spec, "clusterIPs"));
    if old_ip == new_ip {
        return;
    }
    if new_ip.is_empty() {
        spec.remove("clusterIPs");
    } else if new_ips.is_empty() || new_ips == old_ips {
        new_ips.truncate(1);
        match new_ips.first_mut() {
            Some(first) => *first = new_ip,
            None => new_ips.push(new_ip),
        }
        set_list(spec, "clusterIPs", &new_ips);
    }
}

fn same(old: &Spec, spec: &Spec, field: &str) -> bool {
    old.get(field) == spec.get(field)
}

/// Fields only the old type needs go, unless the user changed them in
/// this very update (then validation tells them they cannot have them).
fn drop_type_dependent(old: &Spec, spec: &mut Spec) {
    let drop = |spec: &mut Spec, field: &str| {
        if same(old, spec, field) {
            spec.remove(field);
        }
    };
    if needs_cluster_ip(old) && !needs_cluster_ip(spec) {
        if same(old, spec, "clusterIPs") {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        drop(spec, "ipFamilies");
        drop(spec, "ipFamilyPolicy");
    }
    let node_ports = |s: &Spec| -> Vec<i64> { ports(s).iter().map(|p| number(p.get("nodePort"))).collect() };
    if needs_node_ports(old) && !needs_node_ports(spec) && node_ports(old) == node_ports(spec) {
        for p in spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(p) = p.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
    if needs_health_check_port(old) && !needs_health_check_port(spec) {
        drop(spec, "healthCheckNodePort");
    }
    if service_type(old) == "LoadBalancer" && service_type(spec) != "LoadBalancer" {
        drop(spec, "allocateLoadBalancerNodePorts");
        drop(spec, "loadBalancerClass");
    }
    if needs_node_ports(old) && !needs_node_ports(spec) {
        drop(spec, "externalTrafficPolicy");
    }
}

/// What the type allows, checked before anything is allocated for it.
pub fn check_type(spec: &Spec) -> Result<(), Problem> {
    let ty = service_type(spec);
    if !TYPES.contains(&ty) {
        return Err(Problem::unsupported("spec.type", ty, &TYPES));
    }
    if ty == "ExternalName" {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if spec
                .get(field)
                .is_some_and(|v| !v.is_null() && v != "" && v != &json!([]))
            {
                return Err(Problem::forbidden(
                    format!("spec.{field}"),
                    "may not be set for ExternalName services",
                ));
            }
        }
    }
    if !needs_node_ports(spec) {
        if let Some(i) = ports(spec).iter().position(|p| number(p.get("nodePort")) != 0) {
            return Err(Problem::forbidden(
                format!("spec.ports[{i}].nodePort"),
                format!("may not be used when `type` is '{ty}'"),
            ));
        }
    }
    let hc = number(spec.get("healthCheckNodePort"));
    if hc != 0 && !needs_health_check_port(spec) {
        return Err(Problem::invalid(
            "spec.healthCheckNodePort",
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    let (ip, ips) = (text(spec, "clusterIP"), list(spec, "clusterIPs"));
    if needs_node_ports(spec) && ip == NONE {
        return Err(Problem::invalid(
            "spec.clusterIPs[0]",
            quoted(NONE),
            format!("may not be set to 'None' for {ty} services"),
        ));
    }
    match ips.first() {
        Some(first) if ip.is_empty() => Err(Problem::invalid(
            "spec.clusterIPs",
            strings(&ips),
            format!("must be empty when `clusterIP` is not specified (it is {first:?})"),
        )),
        Some(first) if first != ip => Err(Problem::invalid(
            "spec.clusterIPs",
            strings(&ips),
            "first value must match `clusterIP`",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> Spec {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_resubmitted_manifest_keeps_what_was_allocated() {
        let old = spec(
            json!({"type":"NodePort","clusterIP":"10.43.0.9","clusterIPs":["10.43.0.9"],
            "ports":[{"name":"http","port":80,"nodePort":30080},{"name":"dns","port":53,"nodePort":30053}]}),
        );
        let mut new = spec(json!({"type":"NodePort","ports":[{"name":"dns","port":53},{"name":"http","port":80}]}));
        normalize(Some(&old), &mut new);
        assert_eq!(new["clusterIPs"], json!(["10.43.0.9"]));
        assert_eq!(new["ports"][0]["nodePort"], 30053, "matched by name, not position");
        assert_eq!(new["ports"][1]["nodePort"], 30080);
    }

    #[test]
    fn leaving_a_type_drops_what_only_it_needs() {
        let old = spec(
            json!({"type":"NodePort","clusterIP":"10.43.0.9","clusterIPs":["10.43.0.9"],
            "externalTrafficPolicy":"Cluster","ports":[{"port":80,"nodePort":30080}]}),
        );
        let mut to_cluster_ip = old.clone();
        to_cluster_ip.insert("type".into(), json!("ClusterIP"));
        normalize(Some(&old), &mut to_cluster_ip);
        assert!(to_cluster_ip["ports"][0].get("nodePort").is_none());
        assert!(to_cluster_ip.get("externalTrafficPolicy").is_none());
        assert_eq!(
            to_cluster_ip["clusterIP"], "10.43.0.9",
            "ClusterIP still needs its address"
        );
        check_type(&to_cluster_ip).unwrap();

        let mut to_external = old.clone();
        to_external.insert("type".into(), json!("ExternalName"));
        normalize(Some(&old), &mut to_external);
        assert!(to_external.get("clusterIP").is_none() && to_external.get("clusterIPs").is_none());
        check_type(&to_external).unwrap();
    }

    #[test]
    fn types_refuse_fields_they_cannot_have() {
        let err = |v: Value| match check_type(&spec(v)).unwrap_err() {
            Problem::Field { field, detail } => format!("{field}: {detail}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(json!({"ports":[{"port":80,"nodePort":30080}]})),
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
        );
        assert_eq!(
            err(json!({"type":"ExternalName","clusterIP":"10.43.0.9"})),
            "spec.clusterIP: Forbidden: may not be set for ExternalName services"
        );
        assert!(err(json!({"type":"NodePort","clusterIP":"None"})).starts_with("spec.clusterIPs[0]"));
        assert!(err(json!({"type":"Bogus"})).starts_with("spec.type: Unsupported value: \"Bogus\""));
        assert!(err(json!({"clusterIP":"10.43.0.9","clusterIPs":["10.43.0.8"]})).contains("must match"));
    }
}

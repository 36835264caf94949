//! `meta.k8s.io/v1` Table responses, which kubectl asks for to print
//! `kubectl get` output.

use serde_json::{json, Value};

use crate::registry::Resource;

struct Column {
    name: &'static str,
    cell: fn(&Value) -> String,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

fn age(obj: &Value) -> String {
    let Some(created) = obj["metadata"]["creationTimestamp"].as_str() else {
        return "<unknown>".into();
    };
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(created) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn ports(obj: &Value) -> String {
    let list = obj["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "<none>".into();
    }
    list.iter()
        .map(|p| format!("{}/{}", s(&p["port"]), p["protocol"].as_str().unwrap_or("TCP")))
        .collect::<Vec<_>>()
        .join(",")
}

fn node_status(obj: &Value) -> String {
    let ready = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True");
    match ready {
        Some(true) => "Ready".into(),
        Some(false) => "NotReady".into(),
        None => "Unknown".into(),
    }
}

fn endpoints(obj: &Value) -> String {
    let addrs: Vec<String> = obj["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| s(&a))
        .collect();
    if addrs.is_empty() {
        "<unset>".into()
    } else {
        addrs.join(",")
    }
}

fn columns(kind: &str) -> Vec<Column> {
    let name = Column {
        name: "Name",
        cell: |o| s(&o["metadata"]["name"]),
    };
    let age = Column { name: "Age", cell: age };
    let extra: Vec<Column> = match kind {
        "Pod" => vec![
            Column {
                name: "Status",
                cell: |o| o["status"]["phase"].as_str().unwrap_or("Pending").to_string(),
            },
            Column {
                name: "IP",
                cell: |o| s(&o["status"]["podIP"]),
            },
            Column {
                name: "Node",
                cell: |o| s(&o["spec"]["nodeName"]),
            },
        ],
        "Service" => vec![
            Column {
                name: "Type",
                cell: |o| o["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string(),
            },
            Column {
                name: "Cluster-IP",
                cell: |o| s(&o["spec"]["clusterIP"]),
            },
            Column {
                name: "Port(s)",
                cell: ports,
            },
        ],
        "Node" => vec![Column {
            name: "Status",
            cell: node_status,
        }],
        "Namespace" => vec![Column {
            name: "Status",
            cell: |o| s(&o["status"]["phase"]),
        }],
        "EndpointSlice" => vec![
            Column {
                name: "AddressType",
                cell: |o| s(&o["addressType"]),
            },
            Column {
                name: "Endpoints",
                cell: endpoints,
            },
        ],
        _ => vec![],
    };
    std::iter::once(name).chain(extra).chain(std::iter::once(age)).collect()
}

pub fn table(res: &Resource, objects: &[&Value], resource_version: u64) -> Value {
    let cols = columns(res.kind);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": "string", "format": if c.name == "Name" { "name" } else { "" },
                   "description": "", "priority": 0})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<String> = cols.iter().map(|c| (c.cell)(o)).collect();
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                              "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
           "metadata": {"resourceVersion": resource_version.to_string()},
           "columnDefinitions": defs, "rows": rows})
}

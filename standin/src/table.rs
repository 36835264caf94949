//! `meta.k8s.io/v1` Table responses, which kubectl asks for to print
//! `kubectl get` output. Columns follow the real server's printers where
//! the stored fields allow (priority 1 columns show with `-o wide`).

use serde_json::{json, Value};

use crate::registry::Resource;

/// The `includeObject` query parameter: what each row carries besides cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Result<IncludeObject, String> {
        match s.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!("includeObject must be None, Metadata or Object, not {other:?}")),
        }
    }
}

struct Column {
    name: &'static str,
    priority: u8,
    cell: fn(&Value) -> Value,
}

const fn col(name: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        priority: 0,
        cell,
    }
}

const fn wide(name: &'static str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        priority: 1,
        cell,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null | Value::String(_) => "<none>".into(),
        other => other.to_string(),
    }
}

fn t(v: &Value) -> Value {
    json!(text(v))
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if m < 10 => match secs % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        },
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            mm => format!("{h}h{mm}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            hh => format!("{d}d{hh}h"),
        },
        _ if h < 24 * 365 * 2 => format!("{d}d"),
        _ if h < 24 * 365 * 8 => match d % 365 {
            0 => format!("{}y", d / 365),
            dd => format!("{}y{dd}d", d / 365),
        },
        _ => format!("{}y", d / 365),
    }
}

fn since(ts: &Value) -> Value {
    let Some(Ok(t)) = ts.as_str().map(chrono::DateTime::parse_from_rfc3339) else {
        return json!("<unknown>");
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    json!(human_duration(secs))
}

fn age(o: &Value) -> Value {
    since(&o["metadata"]["creationTimestamp"])
}

fn name(o: &Value) -> Value {
    t(&o["metadata"]["name"])
}

fn join_or(items: Vec<String>, none: &str) -> Value {
    if items.is_empty() {
        json!(none)
    } else {
        json!(items.join(","))
    }
}

fn pod_ready(o: &Value) -> Value {
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = o["status"]["containerStatuses"]
        .as_array()
        .map_or(0, |l| l.iter().filter(|c| c["ready"] == true).count());
    json!(format!("{ready}/{total}"))
}

fn pod_status(o: &Value) -> Value {
    if !o["metadata"]["deletionTimestamp"].is_null() {
        return json!("Terminating");
    }
    match o["status"]["reason"].as_str() {
        Some(r) if !r.is_empty() => json!(r),
        _ => json!(o["status"]["phase"].as_str().unwrap_or("Pending")),
    }
}

fn pod_restarts(o: &Value) -> Value {
    let n: i64 = o["status"]["containerStatuses"]
        .as_array()
        .map_or(0, |l| l.iter().filter_map(|c| c["restartCount"].as_i64()).sum());
    json!(n)
}

fn service_type(o: &Value) -> Value {
    json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP"))
}

fn external_ip(o: &Value) -> Value {
    let mut ips: Vec<String> = o["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()).map(str::to_string))
        .collect();
    ips.extend(
        o["spec"]["externalIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str().map(str::to_string)),
    );
    match (ips.is_empty(), o["spec"]["type"].as_str()) {
        (true, Some("LoadBalancer")) => json!("<pending>"),
        (true, Some("ExternalName")) => t(&o["spec"]["externalName"]),
        _ => join_or(ips, "<none>"),
    }
}

fn service_ports(o: &Value) -> Value {
    let ports = o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", text(&p["port"])),
                None => format!("{}/{proto}", text(&p["port"])),
            }
        })
        .collect();
    join_or(ports, "<none>")
}

fn selector(o: &Value) -> Value {
    let sel = o["spec"]["selector"].as_object().map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
    });
    join_or(sel.unwrap_or_default(), "<none>")
}

fn node_status(o: &Value) -> Value {
    let ready = o["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True");
    let mut s = match ready {
        Some(true) => "Ready",
        Some(false) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if o["spec"]["unschedulable"] == true {
        s.push_str(",SchedulingDisabled");
    }
    json!(s)
}

fn node_roles(o: &Value) -> Value {
    let roles = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
        .collect();
    join_or(roles, "<none>")
}

fn node_internal_ip(o: &Value) -> Value {
    let ips = o["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "InternalIP")
        .map(|a| text(&a["address"]))
        .collect();
    join_or(ips, "<none>")
}

fn slice_ports(o: &Value) -> Value {
    let ports = o["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| text(&p["port"]))
        .collect();
    join_or(ports, "<unset>")
}

fn slice_endpoints(o: &Value) -> Value {
    let addrs = o["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| text(&a))
        .collect();
    join_or(addrs, "<unset>")
}

fn endpoints_addresses(o: &Value) -> Value {
    let mut out = Vec::new();
    for subset in o["subsets"].as_array().into_iter().flatten() {
        let ports: Vec<String> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| text(&p["port"]))
            .collect();
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if ports.is_empty() {
                out.push(text(&a["ip"]));
            }
            for p in &ports {
                out.push(format!("{}:{p}", text(&a["ip"])));
            }
        }
    }
    join_or(out, "<none>")
}

fn pod_selector(o: &Value) -> Value {
    let labels = o["spec"]["podSelector"]["matchLabels"].as_object().map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
    });
    join_or(labels.unwrap_or_default(), "<none>")
}

fn event_object(o: &Value) -> Value {
    let obj = &o["involvedObject"];
    json!(format!(
        "{}/{}",
        obj["kind"].as_str().unwrap_or("").to_lowercase(),
        text(&obj["name"])
    ))
}

fn event_last_seen(o: &Value) -> Value {
    let ts = [
        &o["lastTimestamp"],
        &o["eventTime"],
        &o["metadata"]["creationTimestamp"],
    ]
    .into_iter()
    .find(|v| v.is_string())
    .cloned()
    .unwrap_or(Value::Null);
    since(&ts)
}

fn columns(res: &Resource) -> Vec<Column> {
    let extra: Vec<Column> = match (res.group, res.kind) {
        ("", "Pod") => vec![
            col("Ready", pod_ready),
            col("Status", pod_status),
            col("Restarts", pod_restarts),
            col("IP", |o| t(&o["status"]["podIP"])),
        ],
        ("", "Service") => vec![
            col("Type", service_type),
            col("Cluster-IP", |o| t(&o["spec"]["clusterIP"])),
            col("External-IP", external_ip),
            col("Port(s)", service_ports),
        ],
        ("", "Node") => vec![
            col("Status", node_status),
            col("Roles", node_roles),
            col("Version", |o| t(&o["status"]["nodeInfo"]["kubeletVersion"])),
        ],
        ("", "Namespace") => vec![col("Status", |o| t(&o["status"]["phase"]))],
        ("", "Endpoints") => vec![col("Endpoints", endpoints_addresses)],
        ("", "ConfigMap") => vec![col("Data", |o| json!(o["data"].as_object().map_or(0, |m| m.len())))],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            col("AddressType", |o| t(&o["addressType"])),
            col("Ports", slice_ports),
            col("Endpoints", slice_endpoints),
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![col("Pod-Selector", pod_selector)],
        ("coordination.k8s.io", "Lease") => vec![col("Holder", |o| t(&o["spec"]["holderIdentity"]))],
        ("", "Event") => {
            return vec![
                col("Last Seen", event_last_seen),
                col("Type", |o| t(&o["type"])),
                col("Reason", |o| t(&o["reason"])),
                col("Object", event_object),
                col("Message", |o| t(&o["message"])),
            ]
        }
        _ => vec![],
    };
    std::iter::once(col("Name", name))
        .chain(extra)
        .chain(std::iter::once(col("Age", age)))
        .chain(columns_wide(res))
        .collect()
}

/// Priority-1 columns go after Age, as in the real printers.
fn columns_wide(res: &Resource) -> Vec<Column> {
    match (res.group, res.kind) {
        ("", "Pod") => vec![wide("Node", |o| t(&o["spec"]["nodeName"]))],
        ("", "Service") => vec![wide("Selector", selector)],
        ("", "Node") => vec![
            wide("Internal-IP", node_internal_ip),
            wide("Pod-CIDR", |o| t(&o["spec"]["podCIDR"])),
        ],
        _ => vec![],
    }
}

pub fn table(res: &Resource, objects: &[&Value], resource_version: u64, include: IncludeObject) -> Value {
    let cols = columns(res);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            let ty = if c.name == "Restarts" || c.name == "Data" {
                "integer"
            } else {
                "string"
            };
            json!({"name": c.name, "type": ty, "format": format, "description": "", "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(o)).collect();
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                          "metadata": o["metadata"]})
                }
                IncludeObject::Object => row["object"] = (*o).clone(),
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
           "metadata": {"resourceVersion": resource_version.to_string()},
           "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(100 * 86400), "100d");
    }

    #[test]
    fn pod_and_service_rows() {
        let pod = json!({"metadata":{"name":"p","creationTimestamp":"2020-01-01T00:00:00Z"},
                         "spec":{"nodeName":"n1","containers":[{"name":"c"}]},
                         "status":{"phase":"Running","podIP":"10.0.0.5","containerStatuses":[{"ready":true,"restartCount":2}]}});
        let tbl = table(find("", "v1", "pods").unwrap(), &[&pod], 7, IncludeObject::Metadata);
        let names: Vec<&str> = tbl["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Ready", "Status", "Restarts", "IP", "Age", "Node"]);
        assert_eq!(
            tbl["rows"][0]["cells"].as_array().unwrap()[..5],
            [json!("p"), json!("1/1"), json!("Running"), json!(2), json!("10.0.0.5")]
        );
        assert_eq!(tbl["rows"][0]["object"]["kind"], "PartialObjectMetadata");

        let svc = json!({"metadata":{"name":"s"},"spec":{"clusterIP":"10.96.0.10","ports":[{"port":53,"protocol":"UDP"},{"port":80,"nodePort":30080}]}});
        let tbl = table(find("", "v1", "services").unwrap(), &[&svc], 7, IncludeObject::None);
        assert_eq!(tbl["rows"][0]["cells"][4], "53/UDP,80:30080/TCP");
        assert!(tbl["rows"][0].get("object").is_none());
    }
}

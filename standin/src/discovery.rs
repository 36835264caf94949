//! Discovery documents: what clients (kubectl, kube-rs) ask before they
//! know where a kind lives.

use serde_json::{json, Value};

use crate::registry::{groups, Resource, RESOURCES};

pub fn version() -> Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-standin", "platform": "linux/amd64",
           "goVersion": "n/a", "compiler": "n/a", "buildDate": "2026-01-01T00:00:00Z", "gitCommit": "standin"})
}

pub fn core_versions(server: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]})
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(|(g, v)| group_doc(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    let (g, v) = groups().into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_doc(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let verbs = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut out = vec![
        json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                              "kind": r.kind, "verbs": verbs, "shortNames": r.short_names}),
    ];
    if r.status {
        out.push(
            json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"]}),
        );
    }
    out
}

/// The APIResourceList of one group version (`""` for core).
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(resource_entries)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`: where each group version's document is.
pub fn openapi_root() -> Value {
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    gvs.extend(groups());
    let paths: serde_json::Map<String, Value> = gvs
        .into_iter()
        .map(|(g, v)| {
            let p = group_version_path(g, v);
            let url = format!("/openapi/v3/{p}");
            (p, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// `GET /openapi/v3/<group version>`: only what kubectl reads, namely that
/// PATCH of each kind takes the `fieldValidation` query parameter. Seeing
/// it, kubectl leaves validation to the server (which the stand-in does
/// not do) instead of downloading full schemas to validate locally.
pub fn openapi_group_version(path: &str) -> Option<Value> {
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    gvs.extend(groups());
    let (group, version) = gvs.into_iter().find(|(g, v)| group_version_path(g, v) == path)?;
    let paths: serde_json::Map<String, Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            let item = if r.namespaced {
                format!("/{path}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
            } else {
                format!("/{path}/{}/{{name}}", r.plural)
            };
            let patch = json!({
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}},
            });
            (item, json!({"patch": patch}))
        })
        .collect();
    Some(json!({"openapi": "3.0.0", "info": {"title": "Kubernetes API stand-in", "version": version}, "paths": paths}))
}

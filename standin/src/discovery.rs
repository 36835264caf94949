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
    let mut main = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                          "kind": r.kind, "verbs": verbs});
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    if r.kind == "Pod" && r.group.is_empty() {
        out.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true,
                        "kind": "Binding", "verbs": ["create"]}));
    }
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

/// The OpenAPI v2 protobuf content type, in the spelling Go's
/// `mime.ParseMediaType` accepts (the `@v1.0` one clients also send in
/// Accept is not a valid media type, and client-go refuses a response
/// labelled with it).
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`: an empty document. kubectl validates manifests on
/// the client against it (all versions when `/openapi/v3` is missing, as
/// here) and refuses to create anything when it cannot be fetched; finding
/// no schema for a kind, it skips validation. Asked for protobuf (what
/// kubectl asks for), the empty document is zero bytes. The stand-in does
/// no schema validation on the server either.
pub fn openapi_v2(accept: &str) -> (&'static str, Vec<u8>) {
    if accept.contains("protobuf") {
        (OPENAPI_V2_PROTOBUF, Vec::new())
    } else {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes API stand-in", "version": "v1.33.0"},
                         "paths": {}, "definitions": {}});
        (
            "application/json",
            serde_json::to_vec(&doc).expect("JSON values serialize"),
        )
    }
}

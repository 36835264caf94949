//! The wire protocol as clients other than kube-rs see it: watch event
//! streams (410 Gone, bookmarks, timeouts, selector transitions),
//! discovery documents, Tables, errors.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The events of a watch response, one JSON document a line.
    fn events(&self) -> Vec<Value> {
        self.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.0 exchange, so the body ends when the connection closes.
async fn call(api: &standin::ApiServer, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let addr = api.url().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the server ends the response")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    }
}

async fn get(api: &standin::ApiServer, path: &str) -> Reply {
    call(api, "GET", path, &[], "").await
}

async fn post(api: &standin::ApiServer, path: &str, body: Value) -> Value {
    let r = call(
        api,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

async fn patch(api: &standin::ApiServer, path: &str, body: Value) -> Value {
    let r = call(
        api,
        "PATCH",
        path,
        &[("Content-Type", "application/merge-patch+json")],
        &body.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

async fn start() -> standin::ApiServer {
    standin::ApiServer::start(standin::Options::default()).await.unwrap()
}

fn pod(name: &str, app: &str) -> Value {
    json!({"metadata":{"name":name,"labels":{"app":app}},"spec":{"containers":[{"name":"c","image":"x"}]}})
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn a_watch_replays_from_a_version_and_ends_at_its_timeout() {
    let api = start().await;
    let a = post(&api, PODS, pod("a", "web")).await;
    let rv = a["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    post(&api, PODS, pod("b", "web")).await;
    patch(&api, &format!("{PODS}/a"), json!({"metadata":{"labels":{"app":"db"}}})).await;

    // From the start: the current state as ADDED.
    let r = get(&api, &format!("{PODS}?watch=true&timeoutSeconds=1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let types: Vec<Value> = r.events().iter().map(|e| e["type"].clone()).collect();
    assert_eq!(types, [json!("ADDED"), json!("ADDED")]);

    // From a version: what happened after it, with a label selector
    // turning "a stopped matching" into DELETED.
    let r = get(
        &api,
        &format!("{PODS}?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb&timeoutSeconds=1"),
    )
    .await;
    let events = r.events();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["object"]["metadata"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(seen, [("ADDED".into(), "b".into()), ("DELETED".into(), "a".into())]);
    assert_eq!(events[1]["object"]["kind"], "Pod");
    assert_eq!(events[1]["object"]["apiVersion"], "v1");
}

#[tokio::test]
async fn a_forgotten_version_is_410_gone() {
    let api = start().await;
    let a = post(&api, PODS, pod("a", "web")).await;
    let rv = a["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    api.expire_watches();
    let r = get(&api, &format!("{PODS}?watch=true&resourceVersion={rv}")).await;
    assert_eq!(r.status, 200, "the error comes as an event");
    let events = r.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "ERROR");
    let status = &events[0]["object"];
    assert_eq!(
        (&status["kind"], &status["status"], &status["reason"], &status["code"]),
        (&json!("Status"), &json!("Failure"), &json!("Expired"), &json!(410))
    );
    assert!(status["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("too old resource version: {rv} (")));

    // A bounded history forgets too.
    let api = standin::ApiServer::start(standin::Options {
        history: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let a = post(&api, PODS, pod("a", "web")).await;
    for n in ["b", "c", "d"] {
        post(&api, PODS, pod(n, "web")).await;
    }
    let rv = a["metadata"]["resourceVersion"].as_str().unwrap();
    let r = get(&api, &format!("{PODS}?watch=true&resourceVersion={rv}")).await;
    assert_eq!(r.events()[0]["object"]["code"], 410);
}

#[tokio::test]
async fn bookmarks_and_streaming_lists() {
    let api = start().await;
    post(&api, PODS, pod("a", "web")).await;
    let r = get(
        &api,
        &format!("{PODS}?watch=true&allowWatchBookmarks=true&timeoutSeconds=3&resourceVersion=1"),
    )
    .await;
    let events = r.events();
    assert!(events.iter().any(|e| e["type"] == "BOOKMARK"), "{}", r.body);
    let bm = events.iter().find(|e| e["type"] == "BOOKMARK").unwrap();
    assert_eq!(bm["object"]["kind"], "Pod");
    assert!(bm["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());

    let r = get(
        &api,
        &format!("{PODS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"),
    )
    .await;
    let events = r.events();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[tokio::test]
async fn errors_are_status_documents() {
    let api = start().await;
    let r = get(&api, &format!("{PODS}/nope")).await;
    assert_eq!(r.status, 404);
    let s = r.json();
    assert_eq!(
        (&s["kind"], &s["reason"], &s["message"]),
        (&json!("Status"), &json!("NotFound"), &json!("pods \"nope\" not found"))
    );
    assert_eq!(s["details"], json!({"name":"nope","group":"","kind":"pods"}));

    let r = get(&api, "/apis/coordination.k8s.io/v1/namespaces/default/leases/x").await;
    assert_eq!(r.json()["message"], "leases.coordination.k8s.io \"x\" not found");

    let r = call(&api, "POST", PODS, &[], r#"{"kind":"Service","metadata":{"name":"x"}}"#).await;
    assert_eq!((r.status, r.json()["reason"].clone()), (400, json!("BadRequest")));
    let r = call(&api, "POST", PODS, &[], "{not json").await;
    assert_eq!(r.status, 400);
    let r = call(&api, "PUT", PODS, &[], "{}").await;
    assert_eq!((r.status, r.json()["reason"].clone()), (405, json!("MethodNotAllowed")));
    let r = call(
        &api,
        "PATCH",
        &format!("{PODS}/x"),
        &[("Content-Type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 415);
    let r = get(&api, "/api/v1/namespaces/default/pods/x/log").await;
    assert_eq!(r.status, 404);
    let r = get(&api, "/apis/apps/v1/deployments").await;
    assert_eq!(r.status, 404);
    let r = get(&api, &format!("{PODS}?labelSelector=a%20b")).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn discovery_documents() {
    let api = start().await;
    let v = get(&api, "/version").await.json();
    assert_eq!(
        (&v["gitVersion"], &v["major"], &v["minor"]),
        (&json!("v1.33.0-standin"), &json!("1"), &json!("33"))
    );
    for path in ["/healthz", "/readyz", "/livez"] {
        let r = get(&api, path).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    assert_eq!(get(&api, "/api").await.json()["versions"], json!(["v1"]));

    let core = get(&api, "/api/v1").await.json();
    assert_eq!(core["kind"], "APIResourceList");
    let resources = core["resources"].as_array().unwrap();
    let pods = resources.iter().find(|r| r["name"] == "pods").unwrap();
    assert_eq!(
        (&pods["kind"], &pods["namespaced"], &pods["shortNames"]),
        (&json!("Pod"), &json!(true), &json!(["po"]))
    );
    assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
    assert!(resources.iter().any(|r| r["name"] == "pods/status"));
    let nodes = resources.iter().find(|r| r["name"] == "nodes").unwrap();
    assert_eq!(nodes["namespaced"], false);

    // Aggregated discovery is answered with the classic documents.
    let r = call(
        &api,
        "GET",
        "/apis",
        &[(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )],
        "",
    )
    .await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    let groups = r.json();
    assert_eq!(groups["kind"], "APIGroupList");
    let slices = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "discovery.k8s.io")
        .unwrap();
    assert_eq!(slices["preferredVersion"]["groupVersion"], "discovery.k8s.io/v1");
    assert_eq!(get(&api, "/apis/networking.k8s.io").await.json()["kind"], "APIGroup");
    let leases = get(&api, "/apis/coordination.k8s.io/v1").await.json();
    assert_eq!(leases["resources"][0]["name"], "leases");

    assert_eq!(get(&api, "/openapi/v3").await.status, 404);
}

#[tokio::test]
async fn tables_for_kubectl() {
    let api = start().await;
    let a = post(&api, PODS, pod("a", "web")).await;
    patch(
        &api,
        &format!("{PODS}/a/status"),
        json!({"status":{"phase":"Running","podIP":"10.0.0.5"}}),
    )
    .await;
    let accept = [(
        "Accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )];
    let t = call(&api, "GET", "/api/v1/pods", &accept, "").await.json();
    assert_eq!(
        (&t["kind"], &t["apiVersion"]),
        (&json!("Table"), &json!("meta.k8s.io/v1"))
    );
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in ["Name", "Status", "IP", "Age"] {
        assert!(cols.contains(&want), "{cols:?}");
    }
    let row = &t["rows"][0];
    let cell = |name: &str| &row["cells"][cols.iter().position(|c| *c == name).unwrap()];
    assert_eq!(
        (cell("Name"), cell("Status"), cell("IP")),
        (&json!("a"), &json!("Running"), &json!("10.0.0.5"))
    );
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["uid"], a["metadata"]["uid"]);

    let t = call(&api, "GET", &format!("{PODS}/a?includeObject=Object"), &accept, "")
        .await
        .json();
    assert_eq!(t["rows"][0]["object"]["kind"], "Pod");
}

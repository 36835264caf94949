//! The shared watch cache against the API stand-in: every kind converges
//! through create, update and delete; a 410 leads to a relist; readiness
//! waits for the initial lists.

mod common;

use std::collections::BTreeMap;

use common::{eventually, metric, Bed};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use netstack::cache::{Cache, Cached, Kind};
use serde::de::DeserializeOwned;
use serde_json::json;

async fn create<K>(api: &Api<K>, obj: serde_json::Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj).await.expect("create")
}

fn label_of<K: Cached>(cache: &Cache, ns: Option<&str>, name: &str) -> Option<String> {
    let obj = cache.get::<K>(ns, name)?;
    Some(
        obj.meta()
            .labels
            .as_ref()
            .and_then(|l| l.get("v"))
            .cloned()
            .unwrap_or_default(),
    )
}

/// Creates an object, changes a label, deletes it, and waits for the cache
/// to show each step.
async fn round_trip<K>(cache: &Cache, api: Api<K>, ns: Option<&str>, obj: serde_json::Value)
where
    K: Cached + serde::Serialize,
{
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    create(&api, obj).await;
    eventually(&format!("{} {name} cached", K::KIND), || async {
        label_of::<K>(cache, ns, &name).is_some()
    })
    .await;

    let patch = json!({"metadata": {"labels": {"v": "2"}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    eventually(&format!("{} {name} updated", K::KIND), || async {
        label_of::<K>(cache, ns, &name).as_deref() == Some("2")
    })
    .await;

    api.delete(&name, &DeleteParams::default()).await.expect("delete");
    eventually(&format!("{} {name} removed", K::KIND), || async {
        cache.get::<K>(ns, &name).is_none()
    })
    .await;
}

#[tokio::test]
async fn every_kind_converges_and_only_this_nodes_pods_are_cached() {
    let bed = Bed::new().await;
    let agent = bed.agent("node-a").await;
    let cache = agent.cache().clone();
    eventually("agent ready", || async { bed.admin_get("/readyz").await.status == 200 }).await;
    let mut changes = cache.subscribe(&[Kind::Service, Kind::Pod]);
    assert_eq!(changes.changed().await.resynced, [Kind::Service, Kind::Pod].into());

    let c = bed.client.clone();
    round_trip::<Node>(
        &cache,
        Api::all(c.clone()),
        None,
        json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"node-b"}}),
    )
    .await;
    round_trip::<Namespace>(
        &cache,
        Api::all(c.clone()),
        None,
        json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team"}}),
    )
    .await;
    round_trip::<Service>(
        &cache,
        Api::namespaced(c.clone(), "default"),
        Some("default"),
        json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},
               "spec":{"selector":{"app":"web"},"ports":[{"port":80,"protocol":"TCP"}]}}),
    )
    .await;
    round_trip::<EndpointSlice>(
        &cache,
        Api::namespaced(c.clone(), "default"),
        Some("default"),
        json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-x",
               "labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4",
               "endpoints":[{"addresses":["10.42.0.5"],"conditions":{"ready":true}}],"ports":[{"port":8080}]}),
    )
    .await;
    round_trip::<NetworkPolicy>(
        &cache,
        Api::namespaced(c.clone(), "default"),
        Some("default"),
        json!({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny"},
               "spec":{"podSelector":{},"policyTypes":["Ingress"]}}),
    )
    .await;
    round_trip::<Pod>(
        &cache,
        Api::namespaced(c.clone(), "default"),
        Some("default"),
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"mine"},
               "spec":{"nodeName":"node-a","containers":[{"name":"c","image":"x","env":[{"name":"A","value":"b"}]}]}}),
    )
    .await;

    // A Pod of another node never reaches this node's cache; a Pod of
    // this node created after it does, so the first was not just slow.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    create(&pods, json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"theirs"},"spec":{"nodeName":"node-b","containers":[{"name":"c","image":"x"}]}})).await;
    create(&pods, json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"mine2","managedFields":[{"manager":"kubectl","operation":"Update","apiVersion":"v1"}]},"spec":{"nodeName":"node-a","containers":[{"name":"c","image":"x","env":[{"name":"A","value":"b"}]}]}})).await;
    eventually("mine2 cached", || async {
        cache.get::<Pod>(Some("default"), "mine2").is_some()
    })
    .await;
    assert!(cache.get::<Pod>(Some("default"), "theirs").is_none());
    let mine2 = cache.get::<Pod>(Some("default"), "mine2").unwrap();
    assert!(
        mine2.spec.as_ref().unwrap().containers[0].env.is_none(),
        "cached Pods are trimmed"
    );
    assert!(mine2.metadata.managed_fields.is_none());

    // Notifications name what changed, coalesced.
    let mut seen = BTreeMap::new();
    eventually("notifications for web and mine2", || {
        if let Some(c) = changes.try_take() {
            for (kind, key) in c.objects {
                seen.insert(key.to_string(), kind);
            }
        }
        let done = seen.get("default/web") == Some(&Kind::Service) && seen.get("default/mine2") == Some(&Kind::Pod);
        async move { done }
    })
    .await;
    assert!(!seen.contains_key("default/theirs"));
    assert!(
        !seen.contains_key("default/web-x"),
        "EndpointSlices were not subscribed to"
    );

    let page = bed.admin_get("/metrics").await.body;
    assert_eq!(metric(&page, "netlet_cache_objects{kind=\"Pod\"}"), Some(1.0), "{page}");
    assert_eq!(metric(&page, "netlet_cache_objects{kind=\"Node\"}"), Some(0.0));
    assert_eq!(metric(&page, "netlet_ready"), Some(1.0));
    assert!(agent.shutdown().await, "agent stops within its grace period");
}

#[tokio::test]
async fn readiness_waits_for_the_api_and_a_410_relists() {
    let bed = Bed::new().await;
    let agent = bed.agent("node-a").await;
    let cache = agent.cache().clone();
    cache.wait_synced().await;
    eventually("agent ready", || async { bed.admin_get("/readyz").await.status == 200 }).await;
    let lists_before = bed.api.list_requests("services");

    bed.api.expire_watches();
    let svcs: Api<Service> = Api::namespaced(bed.client.clone(), "default");
    create(&svcs, json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"after"},"spec":{"ports":[{"port":53,"protocol":"UDP"}]}})).await;
    eventually("service created after the 410 is cached", || async {
        cache.get::<Service>(Some("default"), "after").is_some()
    })
    .await;
    // The relist is counted when the list is served, and the watcher may
    // still be backing off from the 410 when the test looks: awaited.
    eventually("the watcher listed again", || async {
        bed.api.list_requests("services") > lists_before
    })
    .await;
    eventually("the relist is reported", || async {
        let report = agent.status();
        report.cache.iter().any(|k| k.kind == "Service" && k.relists >= 1)
    })
    .await;
    let page = bed.admin_get("/metrics").await.body;
    assert!(
        metric(&page, "netlet_watch_restarts_total{kind=\"Service\"}").unwrap() >= 1.0,
        "{page}"
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn not_ready_until_the_api_answers() {
    // An API server address nobody listens on: the agent starts, reports
    // why it is not ready, and keeps trying.
    let bed = Bed::new().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = kube::Config::new(format!("http://{dead}").parse().unwrap());
    let client = kube::Client::try_from(cfg).unwrap();
    let agent = netstack::Agent::new(bed.config("node-a"), client)
        .start()
        .await
        .expect("starts without the API");
    let resp = bed.admin_get("/readyz").await;
    assert_eq!(resp.status, 503);
    assert!(
        resp.body.contains("cache: Node not synced from the API server"),
        "{}",
        resp.body
    );
    eventually("watch errors counted", || async {
        agent.status().cache.iter().all(|k| k.errors > 0)
    })
    .await;
    assert_eq!(bed.admin_get("/healthz").await.status, 200);
    agent.shutdown().await;
}

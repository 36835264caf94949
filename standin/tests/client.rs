//! kube-rs against the stand-in: CRUD of every kind netlet uses, with the
//! real server's rules, selectors, and watchers/reflectors that converge,
//! also across a forced relist.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

async fn start() -> (standin::ApiServer, kube::Client) {
    let api = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let c = api.client().await.unwrap();
    (api, c)
}

fn obj<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

fn pod(name: &str, node: &str) -> Pod {
    obj(json!({"metadata":{"name":name,"labels":{"app":name}},
        "spec":{"nodeName":node,"containers":[{"name":"c","image":"x"}]}}))
}

fn api_error(err: kube::Error) -> (u16, String, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("not an API error: {other}"),
    }
}

/// Create, get, list, label (merge patch), replace, delete: the round trip
/// every kind must survive.
async fn round_trip<K>(api: Api<K>, object: Value)
where
    K: Clone + Debug + DeserializeOwned + Serialize + Resource<DynamicType = ()>,
{
    let pp = PostParams::default();
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let created = api.create(&pp, &obj::<K>(object)).await.unwrap();
    let kind = K::kind(&()).to_string();
    assert!(created.meta().uid.is_some(), "{kind} has a uid");
    assert!(
        created.meta().creation_timestamp.is_some(),
        "{kind} has a creationTimestamp"
    );
    let rv: u64 = created.resource_version().unwrap().parse().unwrap();

    let (code, reason, _) = api_error(api.create(&pp, &created).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"), "{kind}");

    let got = api.get(&name).await.unwrap();
    assert_eq!(got.meta().uid, created.meta().uid);
    assert!(api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|o| o.name_any() == name));

    let labelled = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata":{"labels":{"round":"trip"}}})),
        )
        .await
        .unwrap();
    let rv2: u64 = labelled.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv, "{kind}: every write gets a newer resourceVersion");
    let selected = api.list(&ListParams::default().labels("round=trip")).await.unwrap();
    assert_eq!(selected.items.len(), 1, "{kind}");

    // A replace from the stale copy conflicts; from the fresh one it works.
    let (code, reason, _) = api_error(api.replace(&name, &pp, &created).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"), "{kind}");
    api.replace(&name, &pp, &labelled).await.unwrap();

    api.delete(&name, &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt(&name).await.unwrap().is_none(), "{kind} deleted");
    let (code, reason, _) = api_error(api.delete(&name, &DeleteParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"), "{kind}");
}

#[tokio::test]
async fn every_kind_makes_the_round_trip() {
    let (_api, c) = start().await;
    round_trip::<Pod>(
        Api::namespaced(c.clone(), "default"),
        serde_json::to_value(pod("p", "n1")).unwrap(),
    )
    .await;
    round_trip::<Service>(
        Api::namespaced(c.clone(), "default"),
        json!({"metadata":{"name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"port":80}]}}),
    )
    .await;
    round_trip::<Node>(
        Api::all(c.clone()),
        json!({"metadata":{"name":"n1"},"spec":{"podCIDRs":["10.0.0.0/24"]}}),
    )
    .await;
    round_trip::<EndpointSlice>(
        Api::namespaced(c.clone(), "default"),
        json!({"metadata":{"name":"web-x","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4",
               "endpoints":[{"addresses":["10.0.0.5"]}],"ports":[{"port":80}]}),
    )
    .await;
    round_trip::<NetworkPolicy>(
        Api::namespaced(c.clone(), "default"),
        json!({"metadata":{"name":"deny"},"spec":{"podSelector":{}}}),
    )
    .await;
    round_trip::<Namespace>(Api::all(c.clone()), json!({"metadata":{"name":"team"}})).await;
    round_trip::<Lease>(
        Api::namespaced(c.clone(), "kube-node-lease"),
        json!({"metadata":{"name":"n1"},"spec":{"holderIdentity":"n1"}}),
    )
    .await;
}

#[tokio::test]
async fn writes_follow_the_api_servers_rules() {
    let (_api, c) = start().await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("a", "n1")).await.unwrap();
    pods.create(&pp, &pod("b", "n2")).await.unwrap();

    // Selectors.
    let on_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(on_n1.items.len(), 1);
    assert_eq!(on_n1.items[0].name_any(), "a");
    let by_label = pods.list(&ListParams::default().labels("app in (b,c)")).await.unwrap();
    assert_eq!(by_label.items.len(), 1);
    assert_eq!(by_label.items[0].name_any(), "b");
    let all: Api<Pod> = Api::all(c.clone());
    let not_a = all
        .list(
            &ListParams::default()
                .labels("app notin (a)")
                .fields("metadata.namespace=default"),
        )
        .await
        .unwrap();
    assert_eq!(not_a.items.len(), 1);

    // Status only through /status; the main resource keeps it.
    let st = pods
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status":{"phase":"Running","podIP":"10.0.0.5"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().unwrap().pod_ip.as_deref(), Some("10.0.0.5"));
    let mut replaced = pods.get("a").await.unwrap();
    replaced.status = None;
    let after = pods.replace("a", &pp, &replaced).await.unwrap();
    assert_eq!(after.status.unwrap().phase.as_deref(), Some("Running"));

    // JSON patch, with a failing test operation giving 422.
    let p: Patch<()> = Patch::Json(obj(json!([{"op":"add","path":"/metadata/labels/x","value":"y"}])));
    let patched = pods.patch("a", &PatchParams::default(), &p).await.unwrap();
    assert_eq!(patched.labels()["x"], "y");
    let p: Patch<()> = Patch::Json(obj(json!([{"op":"test","path":"/metadata/labels/x","value":"z"}])));
    assert_eq!(
        api_error(pods.patch("a", &PatchParams::default(), &p).await.unwrap_err()).0,
        422
    );

    // Strategic merge patch merges node conditions by type.
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .create(
            &pp,
            &obj(json!({"metadata":{"name":"n1"},"status":{"conditions":[{"type":"Ready","status":"False"}]}})),
        )
        .await
        .unwrap();
    let n = nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status":{"conditions":[{"type":"MemoryPressure","status":"False"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(n.status.unwrap().conditions.unwrap().len(), 2);

    // Server-side apply creates, then merges.
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-node-lease");
    let ssa = PatchParams::apply("test");
    let cfg = json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n1"},"spec":{"holderIdentity":"n1"}});
    leases.patch("n1", &ssa, &Patch::Apply(&cfg)).await.unwrap();
    let cfg = json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n1"},"spec":{"leaseDurationSeconds":40}});
    let l = leases
        .patch("n1", &ssa, &Patch::Apply(&cfg))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        (l.holder_identity.as_deref(), l.lease_duration_seconds),
        (Some("n1"), Some(40))
    );

    // Errors the agent branches on.
    let missing: Api<Pod> = Api::namespaced(c.clone(), "nowhere");
    let (code, _, message) = api_error(missing.create(&pp, &pod("z", "n1")).await.unwrap_err());
    assert_eq!((code, message.as_str()), (404, "namespaces \"nowhere\" not found"));
    let (code, _, message) = api_error(pods.get("zz").await.unwrap_err());
    assert_eq!((code, message.as_str()), (404, "pods \"zz\" not found"));
    let (code, reason, _) = api_error(pods.create(&pp, &pod("Bad_Name", "n1")).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    let (code, ..) = api_error(leases.get("absent").await.unwrap_err());
    assert_eq!(code, 404);

    // Defaulting: a Service port always has a protocol; allocation: an address.
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    let svc = svcs
        .create(
            &pp,
            &obj(json!({"metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}})),
        )
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(svc.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    let ip: std::net::IpAddr = svc.cluster_ip.as_deref().unwrap().parse().unwrap();
    assert!(ip.to_string().starts_with("10.43."), "{ip}");
    assert_eq!(svc.ip_families, Some(vec!["IPv4".to_string()]));

    // Binding places an unscheduled pod, once.
    pods.create(&pp, &pod("u", "")).await.unwrap();
    let binding =
        json!({"apiVersion":"v1","kind":"Binding","metadata":{"name":"u"},"target":{"kind":"Node","name":"n1"}});
    let bind = || async {
        pods.create_subresource::<Value, Value>("binding", "u", &pp, &binding)
            .await
    };
    bind().await.unwrap();
    assert_eq!(
        pods.get("u").await.unwrap().spec.unwrap().node_name.as_deref(),
        Some("n1")
    );
    assert_eq!(api_error(bind().await.unwrap_err()).0, 409);

    // Deleting a namespace deletes what is in it.
    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .create(&pp, &obj(json!({"metadata":{"name":"team"}})))
        .await
        .unwrap();
    let team: Api<Pod> = Api::namespaced(c.clone(), "team");
    team.create(&pp, &pod("t", "n1")).await.unwrap();
    namespaces.delete("team", &DeleteParams::default()).await.unwrap();
    assert!(team.get_opt("t").await.unwrap().is_none());
}

#[tokio::test]
async fn kube_rs_discovery_finds_every_kind() {
    let (_api, c) = start().await;
    let d = kube::Discovery::new(c).run().await.unwrap();
    for (group, kind) in [
        ("", "Pod"),
        ("", "Service"),
        ("", "Node"),
        ("", "Namespace"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("coordination.k8s.io", "Lease"),
    ] {
        let gvk = kube::api::GroupVersionKind::gvk(group, "v1", kind);
        assert!(d.resolve_gvk(&gvk).is_some(), "{kind} not discovered");
    }
}

async fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(store: &Store<Pod>) -> Vec<String> {
    let mut n: Vec<String> = store.state().iter().map(|p| p.name_any()).collect();
    n.sort();
    n
}

fn label(store: &Store<Pod>, name: &str) -> Option<String> {
    store
        .state()
        .iter()
        .find(|p| p.name_any() == name)
        .and_then(|p| p.labels().get("v").cloned())
}

/// A reflector over `cfg`, driven in the background until the handle drops.
async fn reflect(c: &kube::Client, cfg: watcher::Config) -> (Store<Pod>, tokio::task::JoinHandle<()>) {
    let (store, writer) = reflector::store::<Pod>();
    let stream = reflector(writer, watcher(Api::<Pod>::all(c.clone()), cfg))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    store.wait_until_ready().await.unwrap();
    (store, task)
}

#[tokio::test]
async fn a_reflector_converges_through_create_update_delete() {
    let (_api, c) = start().await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("before", "n1")).await.unwrap();
    for cfg in [watcher::Config::default(), watcher::Config::default().streaming_lists()] {
        let (store, task) = reflect(&c, cfg).await;
        wait("the initial list", || names(&store) == ["before"]).await;
        pods.create(&pp, &pod("a", "n1")).await.unwrap();
        wait("a added", || names(&store) == ["a", "before"]).await;
        pods.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata":{"labels":{"v":"2"}}})),
        )
        .await
        .unwrap();
        wait("a updated", || label(&store, "a").as_deref() == Some("2")).await;
        pods.delete("a", &DeleteParams::default()).await.unwrap();
        wait("a deleted", || names(&store) == ["before"]).await;
        task.abort();
    }
}

#[tokio::test]
async fn a_field_selected_watch_drops_pods_that_leave_the_node() {
    let (_api, c) = start().await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let (store, task) = reflect(&c, watcher::Config::default().fields("spec.nodeName=n1")).await;
    pods.create(&PostParams::default(), &pod("a", "n1")).await.unwrap();
    pods.create(&PostParams::default(), &pod("b", "n2")).await.unwrap();
    wait("only a", || names(&store) == ["a"]).await;
    // Moving a pod off the node looks like a delete to this watch, and
    // moving one onto it like an add.
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec":{"nodeName":"n3"}})),
    )
    .await
    .unwrap();
    wait("a gone", || names(&store).is_empty()).await;
    pods.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec":{"nodeName":"n1"}})),
    )
    .await
    .unwrap();
    wait("b arrived", || names(&store) == ["b"]).await;
    task.abort();
}

#[tokio::test]
async fn expired_watches_relist_and_still_converge() {
    let (api, c) = start().await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("a", "n1")).await.unwrap();
    let (store, task) = reflect(&c, watcher::Config::default()).await;
    wait("a listed", || names(&store) == ["a"]).await;
    let lists = api.list_requests("pods");
    assert!(lists >= 1);

    api.expire_watches();
    // Changes made after the expiry: one the 410 hides from the old watch.
    pods.create(&pp, &pod("b", "n1")).await.unwrap();
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    wait("the store after the relist", || names(&store) == ["b"]).await;
    assert!(api.list_requests("pods") > lists, "the watcher listed again");
    // And the new watch keeps going.
    pods.create(&pp, &pod("c", "n1")).await.unwrap();
    wait("c after the relist", || names(&store) == ["b", "c"]).await;
    task.abort();
    api.shutdown().await;
}

//! kube-rs against the stand-in: CRUD with the real server's rules, and
//! watches that converge, including a field-selected one.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use serde_json::json;

async fn client(api: &standin::ApiServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&api.kubeconfig_yaml()).unwrap();
    kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap()
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({"metadata":{"name":name,"labels":{"app":name}},
        "spec":{"nodeName":node,"containers":[{"name":"c","image":"x"}]}}))
    .unwrap()
}

#[tokio::test]
async fn crud_follows_the_api_servers_rules() {
    let api = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let c = client(&api).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    let a = pods.create(&pp, &pod("a", "n1")).await.unwrap();
    pods.create(&pp, &pod("b", "n2")).await.unwrap();
    let err = pods.create(&pp, &pod("a", "n1")).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err}"
    );

    let on_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(on_n1.items.len(), 1);
    let by_label = pods.list(&ListParams::default().labels("app in (b,c)")).await.unwrap();
    assert_eq!(by_label.items[0].metadata.name.as_deref(), Some("b"));

    // Optimistic concurrency: an update from a stale copy conflicts.
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"labels":{"v":"2"}}})),
    )
    .await
    .unwrap();
    let err = pods.replace("a", &pp, &a).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );

    // Status only through /status; JSON patch works.
    let st = pods
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status":{"phase":"Running","podIP":"10.0.0.5"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().pod_ip.as_deref(), Some("10.0.0.5"));
    let p: Patch<()> =
        Patch::Json(serde_json::from_value(json!([{"op":"add","path":"/metadata/labels/x","value":"y"}])).unwrap());
    let patched = pods.patch("a", &PatchParams::default(), &p).await.unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");

    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-node-lease");
    leases
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata":{"name":"n1"},"spec":{"holderIdentity":"n1"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        leases.get("n1").await.unwrap().spec.unwrap().holder_identity.as_deref(),
        Some("n1")
    );

    let missing: Api<Pod> = Api::namespaced(c.clone(), "nowhere");
    let err = missing.create(&pp, &pod("z", "n1")).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 404), "{err}");
    pods.delete("a", &Default::default()).await.unwrap();
    assert!(pods.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn a_field_selected_watch_drops_pods_that_leave_the_node() {
    let api = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let c = client(&api).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let (store, writer) = reflector::store::<Pod>();
    let cfg = watcher::Config::default().fields("spec.nodeName=n1");
    let stream = reflector(writer, watcher(Api::<Pod>::all(c.clone()), cfg)).applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    store.wait_until_ready().await.unwrap();

    pods.create(&PostParams::default(), &pod("a", "n1")).await.unwrap();
    pods.create(&PostParams::default(), &pod("b", "n2")).await.unwrap();
    wait(|| store.state().len() == 1).await;
    // Moving a pod off the node looks like a delete to this watch.
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec":{"nodeName":"n3"}})),
    )
    .await
    .unwrap();
    wait(|| store.state().is_empty()).await;
    pods.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec":{"nodeName":"n1"}})),
    )
    .await
    .unwrap();
    wait(|| store.state().iter().any(|p| p.metadata.name.as_deref() == Some("b"))).await;
    task.abort();
}

async fn wait(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! The EndpointSlice controller against the API stand-in: slices follow
//! Services and Pods as pods become ready, change labels and go away, are
//! written only when their content changes, and are restored when someone
//! else edits them. Needs no privileges.

mod common;

use std::collections::BTreeMap;

use common::{api, until_eq};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use sandbox::EndpointSliceController;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A pod labelled `app`, with a named container port `http`, addresses
/// and readiness already in its status (the stand-in keeps a status given
/// at create).
fn pod(name: &str, app: &str, http_port: i32, ips: &[&str], ready: bool) -> Pod {
    let ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
            "ports": [{"name": "http", "containerPort": http_port}]}]},
        "status": {"phase": "Running", "podIP": ips.first().map(|i| i["ip"].clone()), "podIPs": ips,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    }))
    .unwrap()
}

fn service(name: &str, app: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ipFamilyPolicy": "PreferDualStack",
            "ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap()
}

/// The slices of Service `svc` by name.
async fn slices_of(slices: &Api<EndpointSlice>, svc: &str) -> BTreeMap<String, EndpointSlice> {
    let selector = format!("kubernetes.io/service-name={svc}");
    let list = slices.list(&ListParams::default().labels(&selector)).await.unwrap();
    list.items
        .into_iter()
        .map(|s| (s.metadata.name.clone().unwrap(), s))
        .collect()
}

/// `name=ready` per endpoint of each slice, with the slice's port numbers.
fn summary(slices: &BTreeMap<String, EndpointSlice>) -> BTreeMap<String, (Vec<i32>, Vec<String>)> {
    slices
        .iter()
        .map(|(name, s)| {
            let ports = s.ports.iter().flatten().filter_map(|p| p.port).collect();
            let endpoints = s
                .endpoints
                .iter()
                .map(|e| {
                    let pod = e.target_ref.as_ref().and_then(|t| t.name.clone()).unwrap_or_default();
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
                    format!("{pod}@{}={ready}", e.addresses[0])
                })
                .collect();
            (name.clone(), (ports, endpoints))
        })
        .collect()
}

/// Waits until Service `svc`'s slices summarise to `want`.
async fn expect_slices(slices: &Api<EndpointSlice>, svc: &str, want: &[(&str, &[i32], &[&str])]) {
    let want: BTreeMap<String, (Vec<i32>, Vec<String>)> = want
        .iter()
        .map(|(n, p, e)| (n.to_string(), (p.to_vec(), e.iter().map(|s| s.to_string()).collect())))
        .collect();
    until_eq(&format!("the slices of {svc}"), &want, || async {
        summary(&slices_of(slices, svc).await)
    })
    .await;
}

fn resource_versions(slices: &BTreeMap<String, EndpointSlice>) -> Vec<Option<String>> {
    slices.values().map(|s| s.metadata.resource_version.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_follow_pods_through_their_lives() {
    let (server, client) = api().await;
    let cancel = CancellationToken::new();
    let controller = tokio::spawn(EndpointSliceController::run(client.clone(), cancel.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    services.create(&pp, &service("web", "web")).await.unwrap();
    expect_slices(&slices, "web", &[("web-ipv4", &[], &[]), ("web-ipv6", &[], &[])]).await;

    pods.create(&pp, &pod("a", "web", 8080, &["10.42.0.2", "fd00:42::2"], true))
        .await
        .unwrap();
    pods.create(&pp, &pod("b", "web", 8080, &["10.42.0.3", "fd00:42::3"], false))
        .await
        .unwrap();
    expect_slices(
        &slices,
        "web",
        &[
            ("web-ipv4", &[8080], &["a@10.42.0.2=true", "b@10.42.0.3=false"]),
            ("web-ipv6", &[8080], &["a@fd00:42::2=true", "b@fd00:42::3=false"]),
        ],
    )
    .await;
    let web_v4 = slices.get("web-ipv4").await.unwrap();
    let labels = web_v4.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &web_v4.metadata.owner_references.as_ref().unwrap()[0];
    let svc_uid = services.get("web").await.unwrap().metadata.uid.unwrap();
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Service", svc_uid.as_str()));

    // b becomes ready.
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("b", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    expect_slices(
        &slices,
        "web",
        &[
            ("web-ipv4", &[8080], &["a@10.42.0.2=true", "b@10.42.0.3=true"]),
            ("web-ipv6", &[8080], &["a@fd00:42::2=true", "b@fd00:42::3=true"]),
        ],
    )
    .await;

    // b leaves the Service by changing its labels; c serves "http" on
    // another port number, so it gets a slice of its own.
    let relabel = json!({"metadata": {"labels": {"app": "db"}}});
    pods.patch("b", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    pods.create(&pp, &pod("c", "web", 9090, &["10.42.0.4"], true))
        .await
        .unwrap();
    expect_slices(
        &slices,
        "web",
        &[
            ("web-ipv4", &[8080], &["a@10.42.0.2=true"]),
            ("web-ipv4-1", &[9090], &["c@10.42.0.4=true"]),
            ("web-ipv6", &[8080], &["a@fd00:42::2=true"]),
        ],
    )
    .await;

    // A change that does not matter to the slices writes nothing. The
    // probe pod comes after it in the same watch, so once the probe is in
    // its slice, the controller has seen the annotation too.
    services.create(&pp, &service("probe", "probe")).await.unwrap();
    expect_slices(&slices, "probe", &[("probe-ipv4", &[], &[]), ("probe-ipv6", &[], &[])]).await;
    let before = resource_versions(&slices_of(&slices, "web").await);
    let annotate = json!({"metadata": {"annotations": {"note": "irrelevant"}}});
    pods.patch("a", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    pods.create(&pp, &pod("p", "probe", 8080, &["10.42.0.9"], true))
        .await
        .unwrap();
    expect_slices(
        &slices,
        "probe",
        &[("probe-ipv4", &[8080], &["p@10.42.0.9=true"]), ("probe-ipv6", &[], &[])],
    )
    .await;
    assert_eq!(
        resource_versions(&slices_of(&slices, "web").await),
        before,
        "no needless writes"
    );

    // Someone else's edit of a managed slice is undone.
    let tamper = json!({"endpoints": []});
    slices
        .patch("web-ipv6", &PatchParams::default(), &Patch::Merge(&tamper))
        .await
        .unwrap();
    expect_slices(
        &slices,
        "web",
        &[
            ("web-ipv4", &[8080], &["a@10.42.0.2=true"]),
            ("web-ipv4-1", &[9090], &["c@10.42.0.4=true"]),
            ("web-ipv6", &[8080], &["a@fd00:42::2=true"]),
        ],
    )
    .await;

    // After the watches expire (etcd compaction) the controller relists
    // and goes on; deleting a pod removes its endpoints.
    server.expire_watches();
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    expect_slices(
        &slices,
        "web",
        &[("web-ipv4", &[9090], &["c@10.42.0.4=true"]), ("web-ipv6", &[], &[])],
    )
    .await;

    cancel.cancel();
    controller.await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_go_with_the_selector_or_the_service() {
    let (server, client) = api().await;
    let cancel = CancellationToken::new();
    let controller = tokio::spawn(EndpointSliceController::run(client.clone(), cancel.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // A slice someone else manages is left alone.
    let foreign: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "manual", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["192.0.2.1"]}],
    }))
    .unwrap();
    slices.create(&pp, &foreign).await.unwrap();

    pods.create(&pp, &pod("a", "web", 8080, &["10.42.0.2", "fd00:42::2"], true))
        .await
        .unwrap();
    services.create(&pp, &service("web", "web")).await.unwrap();
    services.create(&pp, &service("other", "web")).await.unwrap();
    let both = [
        ("manual", &[][..], &["@192.0.2.1=false"][..]),
        ("web-ipv4", &[8080], &["a@10.42.0.2=true"]),
        ("web-ipv6", &[8080], &["a@fd00:42::2=true"]),
    ];
    expect_slices(&slices, "web", &both).await;

    // Without a selector the Service's slices go; so do a deleted
    // Service's (the stand-in has no garbage collector to do it).
    let no_selector = json!({"spec": {"selector": null}});
    services
        .patch("web", &PatchParams::default(), &Patch::Merge(&no_selector))
        .await
        .unwrap();
    services.delete("other", &DeleteParams::default()).await.unwrap();
    expect_slices(&slices, "web", &[("manual", &[], &["@192.0.2.1=false"])]).await;
    expect_slices(&slices, "other", &[]).await;

    cancel.cancel();
    controller.await.unwrap();
    server.shutdown().await;
}

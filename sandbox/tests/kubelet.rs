//! The sandbox kubelet and EndpointSlice controller against the API
//! stand-in, with stand-in CNI plugins written by the test: a pod gets a
//! namespace, addresses in its status, echo servers, and slices; deleting
//! it runs DEL and removes the namespace; a failing plugin is reported.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use sandbox::{EndpointSliceController, Kubelet, KubeletConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A plugin that logs each call, puts the address on loopback inside the
/// pod's namespace (there is no wiring without the real plugin) and prints
/// a CNI 1.1.0 result.
const GOOD_PLUGIN: &str = r#"#!/bin/sh
cat > /dev/null
echo "$CNI_COMMAND $CNI_CONTAINERID" >> "$(dirname "$0")/calls"
case "$CNI_COMMAND" in
ADD)
  ip netns exec "$(basename "$CNI_NETNS")" ip addr add 10.99.0.7/32 dev lo
  echo '{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"address":"fd00:99::7/128","interface":0},{"address":"10.99.0.7/32","interface":0}]}' ;;
*) echo '{}' ;;
esac
"#;

const BAD_PLUGIN: &str = r#"#!/bin/sh
cat > /dev/null
echo "$CNI_COMMAND $CNI_CONTAINERID" >> "$(dirname "$0")/calls"
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.1.0","code":100,"msg":"no free address","details":"pool exhausted"}'; exit 1
fi
"#;

fn plugin(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("plugin");
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn config(plugin: PathBuf, prefix: &str) -> KubeletConfig {
    KubeletConfig {
        node_name: "n1".into(),
        cni_conf: json!({"cniVersion":"1.1.0","name":"test","plugins":[{"type":"plugin"}]}),
        cni_path: vec![plugin.parent().unwrap().to_path_buf()],
        cni_plugin: plugin,
        netns_prefix: prefix.into(),
        ifname: "eth0".into(),
        teardown_on_exit: true,
    }
}

async fn client(api: &standin::ApiServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&api.kubeconfig_yaml()).unwrap();
    kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap()
}

async fn eventually<F: FnMut() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn web_pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata":{"name":name,"labels":{"app":"web"}},"spec":{"nodeName":"n1",
        "containers":[{"name":"c","image":"x","ports":[{"name":"http","containerPort":8080},{"containerPort":5353,"protocol":"UDP"}]}]}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_namespaces_addresses_servers_and_slices() {
    if !testbed::require_privileges("pods_get_namespaces_addresses_servers_and_slices") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let api = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let c = client(&api).await;
    let kubelet = Kubelet::new(config(plugin(dir.path(), GOOD_PLUGIN), "kg"));
    let table = kubelet.pods();
    let cancel = CancellationToken::new();
    let k = tokio::spawn(kubelet.run(c.clone(), cancel.clone()));
    let e = tokio::spawn(EndpointSliceController::run(c.clone(), cancel.clone()));

    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(c.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata":{"name":"web"},"spec":{"selector":{"app":"web"},
            "ipFamilyPolicy":"PreferDualStack","ports":[{"port":80,"targetPort":"http"}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.create(&PostParams::default(), &web_pod("web")).await.unwrap();

    eventually("pod status written back", || async {
        let p = pods.get("web").await.unwrap();
        p.status.and_then(|s| s.pod_ips).map(|ips| ips.len()) == Some(2)
    })
    .await;
    let p = pods.get("web").await.unwrap().status.unwrap();
    assert_eq!(p.pod_ip.as_deref(), Some("10.99.0.7"), "IPv4 first");
    assert_eq!(p.phase.as_deref(), Some("Running"));
    let report = table.get("default/web").unwrap();
    assert!(netns_exists(&report.netns));
    assert_eq!(report.servers, ["8080/TCP", "5353/UDP"]);

    // The echo servers answer inside the pod's namespace.
    let ns_path = Path::new("/run/netns").join(&report.netns);
    let echoed = std::thread::spawn(move || {
        let f = std::fs::File::open(ns_path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("10.99.0.7:8080").unwrap();
        s.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.send_to(b"dns?", "127.0.0.1:5353").unwrap();
        let mut ubuf = [0u8; 4];
        let n = u.recv(&mut ubuf).unwrap();
        (buf, ubuf[..n].to_vec())
    })
    .join()
    .unwrap();
    assert_eq!((&echoed.0, echoed.1.as_slice()), (b"ping", &b"dns?"[..]));

    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    eventually("slices with the pod", || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .unwrap();
        list.items.len() == 2 && list.items.iter().all(|s| s.endpoints.len() == 1)
    })
    .await;
    let v4 = slices.get("web-ipv4").await.unwrap();
    assert_eq!(v4.endpoints[0].addresses, ["10.99.0.7"]);
    assert_eq!(v4.ports.unwrap()[0].port, Some(8080));

    pods.delete("web", &Default::default()).await.unwrap();
    eventually("namespace removed", || async { !netns_exists(&report.netns) }).await;
    eventually("slice emptied", || async {
        slices.get("web-ipv4").await.unwrap().endpoints.is_empty()
    })
    .await;
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    assert!(
        calls.lines().any(|l| l.starts_with("ADD ")) && calls.lines().any(|l| l.starts_with("DEL ")),
        "{calls}"
    );

    cancel.cancel();
    k.await.unwrap().unwrap();
    e.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_is_reported_and_cleaned_up() {
    if !testbed::require_privileges("a_failing_plugin_is_reported_and_cleaned_up") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let api = standin::ApiServer::start(standin::Options::default()).await.unwrap();
    let c = client(&api).await;
    let kubelet = Kubelet::new(config(plugin(dir.path(), BAD_PLUGIN), "kb"));
    let table = kubelet.pods();
    let cancel = CancellationToken::new();
    let k = tokio::spawn(kubelet.run(c.clone(), cancel.clone()));
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.create(&PostParams::default(), &web_pod("broken")).await.unwrap();
    eventually("failure reported", || async {
        table.get("default/broken").is_some_and(|r| r.cni_error.is_some())
    })
    .await;
    let report = table.get("default/broken").unwrap();
    assert_eq!(report.cni_error.unwrap().code, 100);
    let status = pods.get("broken").await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(status.conditions.unwrap()[0]
        .message
        .as_deref()
        .unwrap()
        .contains("no free address"));
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    assert!(
        calls.lines().any(|l| l.starts_with("DEL ")),
        "DEL follows a failed ADD: {calls}"
    );

    // Stopping the kubelet tears down what it made.
    cancel.cancel();
    k.await.unwrap().unwrap();
    assert!(!netns_exists(&report.netns));
}

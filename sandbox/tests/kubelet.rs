//! The sandbox kubelet against the API stand-in, with CNI plugins written
//! by the test (shell scripts that record their calls): a pod gets a
//! network namespace, its addresses in its status and echo servers;
//! deleting it runs DEL and removes the namespace; a failing plugin leaves
//! nothing behind, is reported, and is retried. Needs root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{api, eventually};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use sandbox::{Kubelet, KubeletConfig};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Records each call (verb, container ID, netns, ifname, CNI_ARGS on one
/// line of `calls`; the config in `stdin`), gives the pod 10.99.0.7 and
/// fd00:99::7 on its loopback (nothing connects the namespace to the host
/// without the real plugin) and prints a CNI 1.1.0 result, IPv6 first.
const GOOD_PLUGIN: &str = r#"#!/bin/sh
dir=$(dirname "$0")
cat >> "$dir/stdin"; echo >> "$dir/stdin"
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS" >> "$dir/calls"
if [ "$CNI_COMMAND" = ADD ]; then
  ns=$(basename "$CNI_NETNS")
  ip -n "$ns" addr add 10.99.0.7/32 dev lo && ip -n "$ns" addr add fd00:99::7/128 dev lo || exit 1
  echo '{"cniVersion":"1.1.0","interfaces":[{"name":"'"$CNI_IFNAME"'","sandbox":"'"$CNI_NETNS"'"}],
    "ips":[{"address":"fd00:99::7/128","interface":0},{"address":"10.99.0.7/32","interface":0}]}'
fi
"#;

/// Fails every ADD with a CNI error document.
const BAD_PLUGIN: &str = r#"#!/bin/sh
cat > /dev/null
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS" >> "$(dirname "$0")/calls"
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.1.0","code":100,"msg":"no free address","details":"pool exhausted"}'
  exit 1
fi
"#;

/// Installs `body` as the plugin in `dir`, replacing any earlier one in
/// one step (a rename), as a package upgrade would.
fn install_plugin(dir: &Path, body: &str) -> PathBuf {
    let staged = dir.join("plugin.new");
    std::fs::write(&staged, body).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("plugin");
    std::fs::rename(&staged, &path).unwrap();
    path
}

fn config(plugin: PathBuf, prefix: &str, teardown_on_exit: bool) -> KubeletConfig {
    KubeletConfig {
        node_name: "n1".into(),
        cni_conf: json!({"cniVersion": "1.1.0", "name": "test",
            "plugins": [{"type": "plugin", "runtimeConfig": {"portMappings": []}}, {"type": "portmap"}]}),
        cni_path: vec![plugin.parent().unwrap().to_path_buf()],
        cni_plugin: plugin,
        netns_prefix: prefix.into(),
        ifname: "eth0".into(),
        teardown_on_exit,
    }
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
            "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 5353, "protocol": "UDP"}]}]}}))
    .unwrap()
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The call line the plugin records for `verb` on pod `name`.
fn call_line(verb: &str, uid: &str, netns: &str, name: &str) -> String {
    format!(
        "{verb} {uid} /run/netns/{netns} eth0 IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name};\
         K8S_POD_INFRA_CONTAINER_ID={uid};K8S_POD_UID={uid}"
    )
}

async fn running(pods: &Api<Pod>, name: &str) -> bool {
    let status = pods.get(name).await.unwrap().status.unwrap_or_default();
    status.phase.as_deref() == Some("Running")
}

/// TCP to both of the pod's addresses and UDP to its loopback, from a
/// thread inside the pod's namespace.
fn echoes(netns: &str) -> Vec<Vec<u8>> {
    use std::io::{Read, Write};
    testbed::run_in(&Path::new("/run/netns").join(netns), || {
        let mut answers = Vec::new();
        for addr in ["10.99.0.7:8080", "[fd00:99::7]:8080"] {
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            conn.write_all(addr.as_bytes()).unwrap();
            let mut got = vec![0u8; addr.len()];
            conn.read_exact(&mut got).unwrap();
            answers.push(got);
        }
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        udp.send_to(b"dns?", "127.0.0.1:5353").unwrap();
        let mut got = [0u8; 16];
        let n = udp.recv(&mut got).unwrap();
        answers.push(got[..n].to_vec());
        answers
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_gets_a_network_echo_servers_and_loses_them_on_delete() {
    if !testbed::require_privileges("a_pod_gets_a_network_echo_servers_and_loses_them_on_delete") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = api().await;
    let kubelet = Kubelet::new(config(install_plugin(dir.path(), GOOD_PLUGIN), "kg", true));
    let table = kubelet.pods();
    let cancel = CancellationToken::new();
    let running_kubelet = tokio::spawn(kubelet.run(client.clone(), cancel.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // A pod of another node comes first and must be left alone.
    pods.create(&pp, &pod("elsewhere", "n2")).await.unwrap();
    let uid = pods.create(&pp, &pod("web", "n1")).await.unwrap().uid().unwrap();
    eventually("the pod's status written back", || running(&pods, "web")).await;

    let status = pods.get("web").await.unwrap().status.unwrap();
    let ips: Vec<String> = status.pod_ips.unwrap().into_iter().map(|i| i.ip).collect();
    assert_eq!(ips, ["10.99.0.7", "fd00:99::7"], "IPv4 first");
    assert_eq!(status.pod_ip.as_deref(), Some("10.99.0.7"));
    let conditions = status.conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(conditions
        .iter()
        .any(|c| c.type_ == "ContainersReady" && c.status == "True"));

    let report = table.get("default/web").unwrap();
    assert!(netns_exists(&report.netns));
    assert_eq!(report.servers, ["8080/TCP", "5353/UDP"]);
    assert_eq!(report.cni_error, None);
    assert_eq!(report.ips.len(), 2);
    assert_eq!(table.get("default/elsewhere"), None);
    assert_eq!(calls(dir.path()), [call_line("ADD", &uid, &report.netns, "web")]);
    let stdin: Value = serde_json::from_str(std::fs::read_to_string(dir.path().join("stdin")).unwrap().trim()).unwrap();
    assert_eq!(
        stdin,
        json!({"type": "plugin", "name": "test", "cniVersion": "1.1.0"}),
        "the first plugin's config, with the list's name and version, without runtimeConfig"
    );

    let netns = report.netns.clone();
    let answers = tokio::task::spawn_blocking(move || echoes(&netns)).await.unwrap();
    assert_eq!(answers, [&b"10.99.0.7:8080"[..], b"[fd00:99::7]:8080", b"dns?"]);

    // The watch expires and the kubelet lists again: the running pod is
    // neither set up again nor torn down.
    let lists = server.list_requests("pods");
    server.expire_watches();
    eventually("the kubelet to list pods again", || async {
        server.list_requests("pods") > lists
    })
    .await;
    let second = pods.create(&pp, &pod("second", "n1")).await.unwrap().uid().unwrap();
    eventually("the second pod running", || running(&pods, "second")).await;
    let adds: Vec<String> = calls(dir.path()).into_iter().filter(|c| c.starts_with("ADD")).collect();
    assert_eq!(adds.len(), 2, "{adds:?}");
    assert!(netns_exists(&report.netns));

    // Deleting the pod runs DEL for the same sandbox and removes its namespace.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the namespace removed", || async { !netns_exists(&report.netns) }).await;
    eventually("the pod gone from the table", || async {
        table.get("default/web").is_none()
    })
    .await;
    assert!(calls(dir.path()).contains(&call_line("DEL", &uid, &report.netns, "web")));

    // Stopping tears down what is left.
    let second_netns = table.get("default/second").unwrap().netns;
    cancel.cancel();
    running_kubelet.await.unwrap().unwrap();
    assert!(!netns_exists(&second_netns));
    assert!(calls(dir.path()).contains(&call_line("DEL", &second, &second_netns, "second")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_leaves_nothing_and_is_retried() {
    if !testbed::require_privileges("a_failing_plugin_leaves_nothing_and_is_retried") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = api().await;
    let kubelet = Kubelet::new(config(install_plugin(dir.path(), BAD_PLUGIN), "kb", true));
    let table = kubelet.pods();
    let cancel = CancellationToken::new();
    let running_kubelet = tokio::spawn(kubelet.run(client.clone(), cancel.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let uid = pods
        .create(&PostParams::default(), &pod("broken", "n1"))
        .await
        .unwrap()
        .uid()
        .unwrap();

    eventually("the failure reported", || async {
        table.get("default/broken").is_some_and(|r| r.cni_error.is_some())
    })
    .await;
    let report = table.get("default/broken").unwrap();
    let failure = report.cni_error.unwrap();
    assert_eq!((failure.code, failure.msg.as_str()), (Some(100), "no free address"));
    assert!(
        !netns_exists(&report.netns),
        "the failed attempt's namespace is removed"
    );
    assert!(report.ips.is_empty() && report.servers.is_empty());
    // The runtime calls DEL after a failed ADD.
    let first_two: Vec<String> = calls(dir.path()).into_iter().take(2).collect();
    assert_eq!(
        first_two,
        [
            call_line("ADD", &uid, &report.netns, "broken"),
            call_line("DEL", &uid, &report.netns, "broken")
        ]
    );
    eventually("the failure in the pod's status", || async {
        let status = pods.get("broken").await.unwrap().status.unwrap_or_default();
        let condition = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodReadyToStartContainers")
            .cloned();
        status.phase.as_deref() == Some("Pending")
            && condition.is_some_and(|c| {
                c.status == "False" && c.message.as_deref() == Some("CNI error 100: no free address (pool exhausted)")
            })
    })
    .await;

    // Once the plugin works, the next retry brings the pod up.
    install_plugin(dir.path(), GOOD_PLUGIN);
    eventually("the pod running after a retry", || running(&pods, "broken")).await;
    let report = table.get("default/broken").unwrap();
    assert_eq!(report.cni_error, None);
    assert!(netns_exists(&report.netns));
    let status = pods.get("broken").await.unwrap().status.unwrap();
    assert_eq!(status.message, None, "the failure message is cleared");

    cancel.cancel();
    running_kubelet.await.unwrap().unwrap();
    assert!(!netns_exists(&report.netns));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_teardown_the_pods_network_stays() {
    if !testbed::require_privileges("without_teardown_the_pods_network_stays") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = api().await;
    let kubelet = Kubelet::new(config(install_plugin(dir.path(), GOOD_PLUGIN), "kk", false));
    let table = kubelet.pods();
    let cancel = CancellationToken::new();
    let running_kubelet = tokio::spawn(kubelet.run(client.clone(), cancel.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("stays", "n1")).await.unwrap();
    eventually("the pod running", || running(&pods, "stays")).await;
    let netns = table.get("default/stays").unwrap().netns;

    cancel.cancel();
    running_kubelet.await.unwrap().unwrap();
    // Take the namespace over first, so it is removed however the test ends.
    let kept = testbed::Netns::adopt(&netns);
    assert!(kept.is_ok(), "the namespace stays after the kubelet stops");
    assert!(!calls(dir.path()).iter().any(|c| c.starts_with("DEL")));
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_plugin_is_a_config_error() {
    let (server, client) = api().await;
    let mut cfg = config(PathBuf::from("/nonexistent/netlet"), "kx", true);
    cfg.cni_path.clear();
    let e = Kubelet::new(cfg)
        .run(client, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/netlet"), "{e}");
    server.shutdown().await;
}

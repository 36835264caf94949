//! The netlet binary driven as a container runtime drives a CNI plugin
//! (environment, config on stdin, result or error on stdout), against an
//! agent running in this process: every verb, the spec's error cases, and
//! no veth, route or lease left behind by anything that failed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};
use testbed::Netns;

const NETLET: &str = env!("CARGO_BIN_EXE_netlet");
const NODE: &str = "cni-test-node";

struct Plugin {
    socket: PathBuf,
}

#[derive(Debug)]
struct Outcome {
    ok: bool,
    doc: Option<Value>,
}

impl Plugin {
    fn conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({"cniVersion": version, "name": "netlet", "type": "netlet", "agentSocket": self.socket});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c
    }

    fn exec(&self, command: &str, id: &str, netns: Option<&Path>, conf: &Value) -> Outcome {
        let mut cmd = Command::new(NETLET);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={id}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(ns) = netns {
            cmd.env("CNI_NETNS", ns);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        Outcome {
            ok: out.status.success(),
            doc: (!text.trim().is_empty())
                .then(|| serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))),
        }
    }
}

fn host_link_exists(id: &str) -> bool {
    let name = netstack::wire::host_ifname(id, "eth0");
    Command::new("ip")
        .args(["link", "show", &name])
        .output()
        .unwrap()
        .status
        .success()
}

fn host_routes() -> String {
    let v4 = Command::new("ip").args(["route"]).output().unwrap().stdout;
    let v6 = Command::new("ip").args(["-6", "route"]).output().unwrap().stdout;
    format!("{}{}", String::from_utf8_lossy(&v4), String::from_utf8_lossy(&v6))
}

fn error_code(o: &Outcome) -> u64 {
    assert!(!o.ok, "expected an error, got {o:?}");
    o.doc
        .as_ref()
        .and_then(|d| d["code"].as_u64())
        .unwrap_or_else(|| panic!("no error document: {o:?}"))
}

#[test]
fn every_verb_through_the_exec_path() {
    if !testbed::require_privileges("every_verb_through_the_exec_path") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = rt
        .block_on(standin::ApiServer::start(standin::Options::default()))
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    // A /29 and a /125 hold five and six pod addresses: small enough to
    // run out of.
    let agent = rt.block_on(async {
        let client = netlet::kube_client::client(Some(&kubeconfig)).await.unwrap();
        let node: Node = serde_json::from_value(
            json!({"metadata":{"name":NODE},"spec":{"podCIDRs":["10.123.0.0/29","fd00:123::/125"]}}),
        )
        .unwrap();
        kube::Api::<Node>::all(client.clone())
            .create(&Default::default(), &node)
            .await
            .unwrap();
        let raw: netstack::RawConfig = serde_json::from_value(json!({
            "nodeName": NODE, "stateDir": dir.path().join("state"), "runDir": dir.path().join("run"), "mtu": 1400,
        }))
        .unwrap();
        let agent = netlet::agent_cmd::agent(raw.validate(NODE).unwrap(), client)
            .start()
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !agent.status().ready {
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent not ready: {:?}",
                agent.status().not_ready
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        agent
    });
    let plugin = Plugin {
        socket: dir.path().join("run/cni.sock"),
    };
    let conf = plugin.conf("1.1.0", json!({}));
    let pods: Vec<Netns> = (0..6).map(|_| Netns::new("cni").unwrap()).collect();

    // VERSION and STATUS.
    let v = plugin.exec("VERSION", "x", None, &conf);
    assert_eq!(v.doc.unwrap()["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    assert!(plugin.exec("STATUS", "", None, &conf).ok);

    // ADD: the result has the spec's shape.
    let a = plugin.exec("ADD", "pod-a", Some(&pods[0].path()), &conf);
    assert!(a.ok, "{a:?}");
    let r = a.doc.unwrap();
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"], pods[0].path().display().to_string());
    assert_eq!(r["interfaces"][1]["mtu"], 1400);
    assert_eq!(
        r["ips"][0],
        json!({"address":"10.123.0.2/32","gateway":"169.254.1.1","interface":1})
    );
    assert_eq!(r["ips"][1]["address"], "fd00:123::2/128");
    assert_eq!(
        r["routes"],
        json!([{"dst":"0.0.0.0/0","gw":"169.254.1.1"},{"dst":"::/0","gw":"fe80::1"}])
    );
    assert_eq!(r["dns"]["search"][0], "default.svc.cluster.local");
    let pod_addrs = String::from_utf8_lossy(&pods[0].exec(&["ip", "addr", "show", "eth0"]).stdout).into_owned();
    assert!(
        pod_addrs.contains("10.123.0.2/32") && pod_addrs.contains("fd00:123::2/128"),
        "{pod_addrs}"
    );
    assert!(host_link_exists("pod-a"));
    assert!(plugin.exec("CHECK", "pod-a", Some(&pods[0].path()), &conf).ok);

    // A second ADD of the same interface errors and leaves the first alone.
    assert_eq!(
        error_code(&plugin.exec("ADD", "pod-a", Some(&pods[0].path()), &conf)),
        101
    );
    assert!(plugin.exec("CHECK", "pod-a", Some(&pods[0].path()), &conf).ok);

    // A namespace that does not exist: an error, nothing left behind.
    let gone = plugin.exec("ADD", "pod-gone", Some(Path::new("/run/netns/no-such-ns")), &conf);
    assert_eq!(error_code(&gone), 4);
    assert!(!host_link_exists("pod-gone"));

    // Config at 0.4.0 gets the 0.4.0 result shape.
    let b = plugin.exec("ADD", "pod-b", Some(&pods[1].path()), &plugin.conf("0.4.0", json!({})));
    assert!(b.ok, "{b:?}");
    assert_eq!(b.doc.unwrap()["ips"][0]["version"], "4");

    // Three more fill the /29 (five addresses; no lease leaked by the
    // failures above), then the pool is exhausted, cleanly.
    for (i, id) in ["pod-c", "pod-d", "pod-e"].iter().enumerate() {
        assert!(plugin.exec("ADD", id, Some(&pods[2 + i].path()), &conf).ok, "{id}");
    }
    let full = plugin.exec("ADD", "pod-f", Some(&pods[5].path()), &conf);
    assert_eq!(error_code(&full), 100);
    assert!(full.doc.unwrap()["msg"]
        .as_str()
        .unwrap()
        .contains("no free IPv4 address"));
    assert!(!host_link_exists("pod-f"));

    // DEL: works, works again, and works when the namespace is gone.
    assert!(plugin.exec("DEL", "pod-a", Some(&pods[0].path()), &conf).ok);
    assert!(!host_link_exists("pod-a"));
    assert!(!host_routes().contains("10.123.0.2 "), "{}", host_routes());
    assert!(plugin.exec("DEL", "pod-a", Some(&pods[0].path()), &conf).ok);
    assert_eq!(
        error_code(&plugin.exec("CHECK", "pod-a", Some(&pods[0].path()), &conf)),
        3
    );
    assert!(
        plugin
            .exec("DEL", "pod-b", Some(Path::new("/run/netns/no-such-ns")), &conf)
            .ok
    );
    assert!(!host_link_exists("pod-b"));

    // The freed address is usable again.
    assert!(plugin.exec("ADD", "pod-f", Some(&pods[5].path()), &conf).ok);

    // GC keeps what the runtime lists and removes the rest.
    let valid = json!({"cni.dev/valid-attachments": [{"containerID": "pod-c", "ifname": "eth0"}]});
    assert!(plugin.exec("GC", "", None, &plugin.conf("1.1.0", valid)).ok);
    assert!(host_link_exists("pod-c"));
    for id in ["pod-d", "pod-e", "pod-f"] {
        assert!(!host_link_exists(id), "{id} survived GC");
    }
    assert!(plugin.exec("DEL", "pod-c", Some(&pods[2].path()), &conf).ok);
    assert!(!host_routes().contains("10.123.0."), "{}", host_routes());

    rt.block_on(agent.shutdown());
    rt.block_on(api.shutdown());
}

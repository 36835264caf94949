//! What the CNI integration tests share: an API stand-in with a Node, an
//! agent on a temporary directory (in this process or as a process), and
//! the netlet plugin executed the way a container runtime executes it.
#![allow(dead_code)] // each test binary uses its own part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

pub const NETLET: &str = env!("CARGO_BIN_EXE_netlet");
pub const NODE: &str = "cni-test-node";

pub struct Plugin {
    pub socket: PathBuf,
}

#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub doc: Option<Value>,
}

impl Outcome {
    /// The addresses an ADD result gives the pod, without prefix lengths.
    pub fn ips(&self) -> Vec<std::net::IpAddr> {
        let ips = self.doc.as_ref().map(|d| d["ips"].clone()).unwrap_or_default();
        (ips.as_array().into_iter().flatten())
            .map(|ip| {
                let address = ip["address"].as_str().unwrap_or_else(|| panic!("no address in {ip}"));
                address.split('/').next().unwrap_or_default().parse().unwrap()
            })
            .collect()
    }
}

impl Plugin {
    pub fn conf(&self, version: &str, extra: Value) -> Value {
        let mut c = json!({"cniVersion": version, "name": "netlet", "type": "netlet", "agentSocket": self.socket});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c
    }

    pub fn exec(&self, command: &str, id: &str, netns: Option<&Path>, conf: &Value) -> Outcome {
        self.exec_pod(command, id, ("default", id), netns, conf)
    }

    /// [`Plugin::exec`] for pod `namespace/name` (kubelet's `K8S_POD_*` args).
    pub fn exec_pod(
        &self,
        command: &str,
        id: &str,
        (namespace, name): (&str, &str),
        netns: Option<&Path>,
        conf: &Value,
    ) -> Outcome {
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}");
        let netns = netns.map(|n| n.display().to_string());
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            ("CNI_ARGS", args.as_str()),
        ];
        env.extend(netns.as_deref().map(|n| ("CNI_NETNS", n)));
        exec_raw(&env, conf.to_string().as_bytes())
    }
}

/// Runs the plugin with exactly `env` and `stdin`, as a runtime would.
pub fn exec_raw(env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
    let mut child = Command::new(NETLET)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    Outcome {
        ok: out.status.success(),
        doc: (!text.trim().is_empty()).then(|| serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))),
    }
}

pub fn host_link_exists(id: &str) -> bool {
    let name = netstack::wire::host_ifname(id, "eth0");
    Command::new("ip")
        .args(["link", "show", &name])
        .output()
        .unwrap()
        .status
        .success()
}

/// Whether the pod's host interface is gone. DEL takes it out of service
/// at once and the agent deletes retired interfaces in batches just after,
/// so this waits for that, up to 10 s.
pub fn host_link_gone(id: &str) -> bool {
    eventually(std::time::Duration::from_secs(10), || !host_link_exists(id))
}

/// Polls `cond` every 20 ms for up to `within`; whether it came to hold.
pub fn eventually(within: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn host_routes() -> String {
    let v4 = Command::new("ip").args(["route"]).output().unwrap().stdout;
    let v6 = Command::new("ip").args(["-6", "route"]).output().unwrap().stdout;
    format!("{}{}", String::from_utf8_lossy(&v4), String::from_utf8_lossy(&v6))
}

pub fn error_code(o: &Outcome) -> u64 {
    assert!(!o.ok, "expected an error, got {o:?}");
    o.doc
        .as_ref()
        .and_then(|d| d["code"].as_u64())
        .unwrap_or_else(|| panic!("no error document: {o:?}"))
}

/// Agents here wire pods into this machine's own namespace and remove pod
/// interfaces they do not know at start: one test at a time.
static ONE_AGENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An API stand-in with this test's Node, and a directory for agents.
pub struct Bed {
    pub rt: tokio::runtime::Runtime,
    _api: standin::ApiServer,
    pub dir: tempfile::TempDir,
    pub plugin: Plugin,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Bed {
    /// `pod_cidrs` become the Node's `spec.podCIDRs`.
    pub fn new(pod_cidrs: &[&str]) -> Bed {
        let one = ONE_AGENT.lock().unwrap_or_else(|p| p.into_inner());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let api = rt
            .block_on(standin::ApiServer::start(standin::Options::default()))
            .unwrap();
        api.write_kubeconfig(&dir.path().join("kubeconfig")).unwrap();
        let bed = Bed {
            plugin: Plugin {
                socket: dir.path().join("run/cni.sock"),
            },
            rt,
            _api: api,
            dir,
            _one: one,
        };
        bed.rt.block_on(async {
            let node: Node =
                serde_json::from_value(json!({"metadata":{"name":NODE},"spec":{"podCIDRs":pod_cidrs}})).unwrap();
            kube::Api::<Node>::all(bed.client().await)
                .create(&Default::default(), &node)
                .await
                .unwrap();
        });
        bed
    }

    pub async fn client(&self) -> kube::Client {
        netlet::kube_client::client(Some(&self.dir.path().join("kubeconfig")))
            .await
            .unwrap()
    }

    /// The Services and EndpointSlices of namespace `default`.
    pub fn default_apis(
        &self,
    ) -> (
        kube::Api<k8s_openapi::api::core::v1::Service>,
        kube::Api<k8s_openapi::api::discovery::v1::EndpointSlice>,
    ) {
        self.rt.block_on(async {
            let client = self.client().await;
            (
                kube::Api::namespaced(client.clone(), "default"),
                kube::Api::namespaced(client, "default"),
            )
        })
    }

    /// Sets the Node's addresses (`status.addresses`), e.g. InternalIPs:
    /// NodePorts are served there, and the interfaces holding them are
    /// where the agent load-balances traffic from outside.
    pub fn set_node_addresses(&self, addresses: Value) {
        self.rt.block_on(async {
            kube::Api::<Node>::all(self.client().await)
                .patch_status(
                    NODE,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&json!({"status": {"addresses": addresses}})),
                )
                .await
                .unwrap();
        })
    }

    /// The `/metrics` page of this bed's agent.
    pub fn metrics(&self) -> String {
        self.rt
            .block_on(netstack::admin::client::get(&self.admin_socket(), "/metrics"))
            .unwrap()
            .body
    }

    /// The admin socket of this bed's agents.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("run/admin.sock")
    }

    /// What `netlet ipam -o json` says about this bed's agent.
    pub fn ipam(&self) -> Value {
        let out = Command::new(NETLET)
            .args(["ipam", "-o", "json", "--socket"])
            .arg(self.admin_socket())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("netlet ipam: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Starts an agent on this bed's state directory and waits until ready.
    pub fn agent(&self) -> netstack::RunningAgent {
        self.agent_with(json!({}))
    }

    /// An agent with `extra` config over the bed's own (its `cni` settings
    /// merged into the bed's: config and plugin directories inside the
    /// bed's directory). It installs the netlet binary there as the plugin,
    /// as `netlet agent` does.
    pub fn agent_with(&self, extra: Value) -> netstack::RunningAgent {
        let mut raw = json!({
            "nodeName": NODE, "stateDir": self.dir.path().join("state"), "runDir": self.dir.path().join("run"), "mtu": 1400,
            // Off unless a test is about it: agents of tests that run in
            // this machine's own namespace would leave the NAT table there.
            "egress": {"masquerade": false},
            "cni": {"confDir": self.dir.path().join("net.d"), "binDir": self.dir.path().join("bin")},
        });
        for (key, value) in extra.as_object().into_iter().flatten() {
            match (raw[key].as_object_mut(), value.as_object()) {
                (Some(base), Some(over)) => base.extend(over.clone()),
                _ => raw[key] = value.clone(),
            }
        }
        self.rt
            .block_on(async { start_ready(raw, NODE, self.client().await).await })
    }
}

/// Starts an agent (with `raw` config, as node `node`) in this process, as
/// `netlet agent` would, and waits until it is ready.
async fn start_ready(raw: Value, node: &str, client: kube::Client) -> netstack::RunningAgent {
    let raw: netstack::RawConfig = serde_json::from_value(raw).unwrap();
    let config = raw.validate(node).unwrap();
    let agent = netlet::agent_cmd::agent(config, client, Some(NETLET.into()))
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !agent.status().ready {
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent of {node} not ready: {:?}",
            agent.status().not_ready
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    agent
}

/// An agent process on the bed's directories, killed with SIGKILL on drop.
pub struct AgentProcess(std::process::Child);

impl AgentProcess {
    pub fn start(bed: &Bed) -> AgentProcess {
        let d = bed.dir.path();
        let agent = AgentProcess(
            Command::new(NETLET)
                .args(["agent", "--node-name", NODE, "--kubeconfig"])
                .arg(d.join("kubeconfig"))
                .arg("--state-dir")
                .arg(d.join("state"))
                .arg("--run-dir")
                .arg(d.join("run"))
                .arg("--cni-conf-dir")
                .arg(d.join("net.d"))
                .arg("--cni-bin-dir")
                .arg(d.join("bin"))
                .arg("--egress-masquerade=false")
                .env("NETLET_LOG", "off")
                .spawn()
                .unwrap(),
        );
        let socket = d.join("run/admin.sock").display().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let out = Command::new(NETLET)
                .args(["status", "--socket", &socket])
                .output()
                .unwrap();
            if out.status.success() {
                return agent;
            }
            assert!(std::time::Instant::now() < deadline, "agent process not ready");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node namespace with an external interface (`ext0`: 192.0.2.10/24,
/// fd00:ffff::1/64) wired to an "outside" namespace (`out0`: .100, ::100):
/// where NodePort traffic from beyond the node comes from. Like a real
/// node, the node has an IPv6 address of its own (see netstack/tests/wire.rs
/// for what goes wrong with only link-local ones).
pub struct NodeWithOutside {
    /// Keep it bound for the test's length (dropping it removes the pair).
    pub wire: testbed::VethPair,
    pub outside: testbed::Netns,
    pub node: testbed::Netns,
}

/// The node's external addresses, as `status.addresses` InternalIPs.
pub fn external_addresses() -> Value {
    json!([{"type": "InternalIP", "address": "192.0.2.10"}, {"type": "InternalIP", "address": "fd00:ffff::1"}])
}

impl NodeWithOutside {
    pub fn new(node_prefix: &str, outside_prefix: &str) -> NodeWithOutside {
        let node = testbed::Netns::new(node_prefix).unwrap();
        let outside = testbed::Netns::new(outside_prefix).unwrap();
        let wire = testbed::veth(Some(&node), "ext0", Some(&outside), "out0").unwrap();
        for (ns, dev, addresses) in [
            (&node, "ext0", ["192.0.2.10/24", "fd00:ffff::1/64"]),
            (&outside, "out0", ["192.0.2.100/24", "fd00:ffff::100/64"]),
        ] {
            for address in addresses {
                let out = ns.exec(&["ip", "addr", "add", address, "dev", dev, "nodad"]);
                assert!(out.status.success(), "{address} on {dev}");
            }
        }
        NodeWithOutside { node, outside, wire }
    }
}

/// A pod wired by [`ClusterNode::add_pod`].
pub struct ClusterPod {
    pub name: String,
    pub ns: testbed::Netns,
    pub v4: std::net::IpAddr,
    pub v6: std::net::IpAddr,
}

/// One node of a [`Cluster`]: a network namespace joined to the cluster's
/// link, an agent of its own in it, and the netlet plugin for its socket.
pub struct ClusterNode {
    pub name: String,
    pub ns: testbed::Netns,
    /// The node's InternalIPs (on `eth0`), IPv4 then IPv6.
    pub v4: String,
    pub v6: String,
    /// The Node's `spec.podCIDRs`.
    pub pod_cidrs: Vec<String>,
    pub plugin: Plugin,
    pub dir: PathBuf,
    /// The agent's runtime, whose threads were born in `ns`.
    rt: Option<tokio::runtime::Runtime>,
    agent: Option<netstack::RunningAgent>,
    _wire: testbed::VethPair,
}

impl ClusterNode {
    /// Runs `f` to completion on the agent's runtime from a thread inside
    /// the node's namespace: whatever it does to the kernel, it does there.
    pub fn block_on<F: std::future::Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        let rt = self.rt.as_ref().expect("the node's runtime");
        self.ns.run(|| rt.block_on(f))
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("run/admin.sock")
    }

    /// `netlet <what> -o json` against this node's agent.
    pub fn query(&self, what: &str) -> Value {
        let out = Command::new(NETLET)
            .args([what, "-o", "json", "--socket"])
            .arg(self.admin_socket())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("netlet {what}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// `netlet <what>` (table output) against this node's agent.
    pub fn query_table(&self, what: &str) -> String {
        let out = Command::new(NETLET)
            .args([what, "--socket"])
            .arg(self.admin_socket())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "netlet {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn metrics(&self) -> String {
        let socket = self.admin_socket();
        self.block_on(async move { netstack::admin::client::get(&socket, "/metrics").await })
            .unwrap()
            .body
    }

    /// `ip <args>` inside the node, its output; panics when it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip"];
        argv.extend(args);
        let out = self.ns.exec(&argv);
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the agent (kernel state stays, as when it restarts).
    pub fn stop_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            self.block_on(agent.shutdown());
        }
    }

    /// Starts the node's agent with `extra` config, and waits until it is
    /// ready.
    pub fn start_agent(&mut self, kubeconfig: &Path, extra: &Value) {
        self.stop_agent();
        let mut raw = json!({
            "nodeName": self.name, "stateDir": self.dir.join("state"), "runDir": self.dir.join("run"), "mtu": 1400,
            "kubeconfig": kubeconfig,
            "cni": {"confDir": self.dir.join("net.d"), "binDir": self.dir.join("bin")},
        });
        for (key, value) in extra.as_object().into_iter().flatten() {
            raw[key] = value.clone();
        }
        let name = self.name.clone();
        let agent = self.block_on(async move {
            let kubeconfig = raw["kubeconfig"].as_str().map(PathBuf::from);
            let client = netlet::kube_client::client(kubeconfig.as_deref()).await.unwrap();
            start_ready(raw, &name, client).await
        });
        self.agent = Some(agent);
    }
}

impl ClusterNode {
    /// Adds pod `default/<name>` on this node through the plugin.
    pub fn add_pod(&self, name: &str) -> ClusterPod {
        let ns = testbed::Netns::new(name).unwrap();
        let conf = self.plugin.conf("1.0.0", json!({}));
        let out = self
            .plugin
            .exec_pod("ADD", name, ("default", name), Some(&ns.path()), &conf);
        assert!(out.ok, "ADD {name} on {}: {out:?}", self.name);
        let ips = out.ips();
        ClusterPod {
            name: name.to_string(),
            v4: *ips.iter().find(|ip| ip.is_ipv4()).expect("an IPv4 address"),
            v6: *ips.iter().find(|ip| ip.is_ipv6()).expect("an IPv6 address"),
            ns,
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.stop_agent();
        // Shut the runtime down from inside the namespace too.
        if let Some(rt) = self.rt.take() {
            self.ns.run(move || drop(rt));
        }
    }
}

/// The nodes of a [`testbed::Underlay`] (veths to one bridge in a "link"
/// namespace, which also holds the API stand-in, on the bridge's address,
/// so every node reaches it): a small cluster in one process. Node `i`
/// (from 0) has InternalIPs 192.168.77.(i+1) and fd00:77::(i+1), and
/// podCIDRs 10.42.(i+1).0/24 and fd00:42:0:(i+1)::/64.
pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
    pub kubeconfig: PathBuf,
    api_rt: Option<tokio::runtime::Runtime>,
    api: Option<standin::ApiServer>,
    pub link: testbed::Netns,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// `count` nodes (namespaces named after `prefix`), their Node objects
    /// created, no agents yet.
    pub fn new(prefix: &str, count: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let testbed::Underlay { link, nodes: underlay } = testbed::Underlay::new(prefix, count).unwrap();
        let (api_rt, api) = link.run(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let options = standin::Options {
                addr: format!("{}:0", testbed::BRIDGE_V4).parse().unwrap(),
                ..Default::default()
            };
            let api = rt.block_on(standin::ApiServer::start(options)).unwrap();
            (rt, api)
        });
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig).unwrap();
        let mut nodes = Vec::new();
        for (i, node) in underlay.into_iter().enumerate() {
            let name = format!("{prefix}-node-{i}");
            let node_dir = dir.path().join(&name);
            std::fs::create_dir_all(&node_dir).unwrap();
            let rt = node.ns.run(|| tokio::runtime::Runtime::new().unwrap());
            nodes.push(ClusterNode {
                pod_cidrs: vec![format!("10.42.{}.0/24", i + 1), format!("fd00:42:0:{}::/64", i + 1)],
                plugin: Plugin {
                    socket: node_dir.join("run/cni.sock"),
                },
                dir: node_dir,
                name,
                ns: node.ns,
                v4: node.v4,
                v6: node.v6,
                rt: Some(rt),
                agent: None,
                _wire: node.wire,
            });
        }
        let cluster = Cluster {
            nodes,
            kubeconfig,
            api_rt: Some(api_rt),
            api: Some(api),
            link,
            dir,
        };
        for i in 0..count {
            cluster.create_node(i);
        }
        cluster
    }

    /// A client of the stand-in, for the test thread (the link namespace's
    /// runtime makes the connections, from inside it).
    pub fn api<T, F>(&self, f: impl FnOnce(kube::Client) -> F + Send) -> T
    where
        F: std::future::Future<Output = T> + Send,
        T: Send,
    {
        let rt = self.api_rt.as_ref().unwrap();
        let kubeconfig = self.kubeconfig.clone();
        self.link.run(|| {
            rt.block_on(async move {
                let client = netlet::kube_client::client(Some(&kubeconfig)).await.unwrap();
                f(client).await
            })
        })
    }

    /// Creates node `i`'s Node object: podCIDRs and InternalIPs.
    pub fn create_node(&self, i: usize) {
        let n = &self.nodes[i];
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": n.name}, "spec": {"podCIDRs": n.pod_cidrs}})).unwrap();
        self.api(|client| async move {
            kube::Api::<Node>::all(client)
                .create(&Default::default(), &node)
                .await
                .unwrap();
        });
        self.set_internal_ips(i, &n.v4, &n.v6);
    }

    /// Sets node `i`'s InternalIPs in the API (not on its interface).
    pub fn set_internal_ips(&self, i: usize, v4: &str, v6: &str) {
        let name = self.nodes[i].name.clone();
        let addresses = json!({"status": {"addresses": [
            {"type": "InternalIP", "address": v4}, {"type": "InternalIP", "address": v6},
        ]}});
        self.api(|client| async move {
            kube::Api::<Node>::all(client)
                .patch_status(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&addresses),
                )
                .await
                .unwrap();
        });
    }

    /// Deletes node `i`'s Node object, as when a node leaves the cluster.
    pub fn delete_node(&self, i: usize) {
        let name = self.nodes[i].name.clone();
        self.api(|client| async move {
            kube::Api::<Node>::all(client)
                .delete(&name, &Default::default())
                .await
                .unwrap();
        });
    }

    /// Starts every node's agent with `extra` config.
    pub fn start_agents(&mut self, extra: &Value) {
        let kubeconfig = self.kubeconfig.clone();
        for n in &mut self.nodes {
            n.start_agent(&kubeconfig, extra);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents before the API they watch; the API from inside its namespace.
        self.nodes.clear();
        let (rt, api) = (self.api_rt.take(), self.api.take());
        self.link.run(move || {
            drop(api);
            drop(rt);
        });
    }
}

//! A cluster of VMs: the API stand-in on this machine, one Node object and
//! one VM per node, `netlet agent` in each, and pods as network namespaces
//! wired by the netlet CNI plugin inside the VMs.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::vm::{Vm, VmSpec};
use crate::{Error, Host};

/// The cluster's pod CIDRs; node `i` (1-based) gets `10.42.<i>.0/24` and
/// `fd00:42:0:<i>::/64` as its Node's `spec.podCIDRs`.
pub const CLUSTER_CIDR: &str = "10.42.0.0/16,fd00:42::/56";

/// What kind of cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: u8,
    /// `routing.mode` of the agents (`native`, `vxlan`); `None` leaves the
    /// `routing` section out of the config (agents without it).
    pub routing_mode: Option<String>,
    /// `dns.enabled`, `services.enabled`, `policy.enabled` of the agents.
    pub dns: bool,
    pub services: bool,
    pub policy: bool,
    pub memory_mb: u32,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 2,
            routing_mode: None,
            dns: false,
            services: false,
            policy: false,
            memory_mb: 512,
        }
    }
}

/// One node's names and addresses.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// Node-link addresses (no prefix length).
    pub ipv4: String,
    pub ipv6: String,
    pub pod_cidrs: [String; 2],
}

impl NodeInfo {
    pub fn new(i: u8) -> NodeInfo {
        NodeInfo {
            name: format!("vm-node-{i}"),
            ipv4: format!("192.168.77.{}", 10 + u16::from(i)),
            ipv6: format!("fd00:77::{}", 10 + u16::from(i)),
            pod_cidrs: [format!("10.42.{i}.0/24"), format!("fd00:42:0:{i}::/64")],
        }
    }
}

/// A pod made by the CNI plugin: its netns in the VM and its addresses.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub name: String,
    pub node: usize,
    pub netns: String,
    pub ips: Vec<IpAddr>,
    /// The DNS servers of the CNI result (the agent's clusterDNS).
    pub nameservers: Vec<String>,
}

impl PodInfo {
    pub fn ipv4(&self) -> Option<IpAddr> {
        self.ips.iter().copied().find(IpAddr::is_ipv4)
    }
    pub fn ipv6(&self) -> Option<IpAddr> {
        self.ips.iter().copied().find(IpAddr::is_ipv6)
    }
}

pub struct Cluster {
    pub vms: Vec<Vm>,
    pub nodes: Vec<NodeInfo>,
    pub spec: ClusterSpec,
    /// The pods [`Cluster::add_pod`] made, in order.
    pub pods: Vec<PodInfo>,
    /// (pod, port) pairs [`Cluster::serve`] started servers for.
    served: BTreeSet<(String, u16)>,
    api: Option<standin::ApiServer>,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    api_port: u16,
    _dir: tempfile::TempDir,
}

/// What the bulk TCP server sends per connection.
pub const BULK_BYTES: u64 = 1 << 20;

const SHORT: Duration = Duration::from_secs(20);
/// How long a UDP client waits for answers, in seconds (TCG is slow to
/// fork the server's answering process).
pub const UDP_WAIT: u64 = 2;

impl Cluster {
    /// Starts the stand-in, creates the Nodes, builds the initramfs and
    /// boots one VM per node (in parallel), up to their control loop.
    /// Agents are not started: see [`Cluster::start_agents`].
    pub fn boot(host: &Host, spec: ClusterSpec) -> Result<Cluster, Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
        let initrd = dir.path().join("initramfs.cpio");
        let started = Instant::now();
        crate::initramfs::build(
            &crate::initramfs::Spec {
                netlet: host.netlet.clone(),
                kernel_release: host.kernel_release.clone(),
                modules_base: host.modules_base.clone(),
            },
            &initrd,
        )?;
        eprintln!(
            "initramfs: {} MB in {:.1}s",
            std::fs::metadata(&initrd).map(|m| m.len() >> 20).unwrap_or(0),
            started.elapsed().as_secs_f64()
        );

        let rt = tokio::runtime::Runtime::new().map_err(|e| Error::io("starting a tokio runtime", e))?;
        let api = rt
            .block_on(standin::ApiServer::start(standin::Options::default()))
            .map_err(|e| Error::Command(format!("starting the API stand-in: {e}")))?;
        let api_port = api
            .url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the stand-in's URL ends in its port");
        let client = rt
            .block_on(api.client())
            .map_err(|e| Error::Command(format!("a client for the stand-in: {e}")))?;

        let nodes: Vec<NodeInfo> = (1..=spec.nodes).map(NodeInfo::new).collect();
        rt.block_on(async {
            let api = kube::Api::<Node>::all(client.clone());
            for n in &nodes {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": n.name},
                    "spec": {"podCIDRs": n.pod_cidrs},
                }))
                .expect("a valid Node");
                api.create(&Default::default(), &node).await?;
                api.patch_status(
                    &n.name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&json!({"status": {"addresses": [
                        {"type": "InternalIP", "address": n.ipv4},
                        {"type": "InternalIP", "address": n.ipv6},
                        {"type": "Hostname", "address": n.name},
                    ]}})),
                )
                .await?;
            }
            Ok::<_, kube::Error>(())
        })
        .map_err(|e| Error::Command(format!("creating the Nodes: {e}")))?;

        // A multicast port of this run's own, so parallel runs do not share
        // a node link.
        let link_port = 20000 + (std::process::id() % 20000) as u16 + u16::from(spec.nodes);
        let mut vms = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            vms.push(Vm::spawn(VmSpec {
                index: i as u8 + 1,
                node_name: n.name.clone(),
                ipv4: format!("{}/24", n.ipv4),
                ipv6: format!("{}/64", n.ipv6),
                kernel: host.kernel.clone(),
                initrd: initrd.clone(),
                link_port,
                memory_mb: spec.memory_mb,
            })?);
        }
        for vm in &mut vms {
            let took = vm.wait_ready(Duration::from_secs(90))?;
            eprintln!("{}: booted in {:.1}s", vm.spec.node_name, took.as_secs_f64());
        }
        Ok(Cluster {
            vms,
            nodes,
            spec,
            pods: Vec::new(),
            served: BTreeSet::new(),
            api: Some(api),
            rt,
            client,
            api_port,
            _dir: dir,
        })
    }

    /// The agent config of node `i` (0-based), JSON (which YAML reads).
    pub fn agent_config(&self, i: usize) -> Value {
        let mut config = json!({
            "nodeName": self.nodes[i].name,
            "kubeconfig": "/etc/netlet/kubeconfig",
            "clusterCIDR": CLUSTER_CIDR,
            "mtu": 1500,
        });
        if let Some(mode) = &self.spec.routing_mode {
            config["routing"] = json!({"mode": mode});
        }
        for (section, on) in [
            ("dns", self.spec.dns),
            ("services", self.spec.services),
            ("policy", self.spec.policy),
        ] {
            if on {
                config[section] = json!({"enabled": true});
            }
        }
        config
    }

    /// Writes each VM's kubeconfig (the stand-in through the slirp gateway
    /// 10.0.2.2) and config, starts `netlet agent` and waits until
    /// `netlet status` exits 0 in every VM.
    pub fn start_agents(&mut self) -> Result<(), Error> {
        self.start_agents_on(&(0..self.vms.len()).collect::<Vec<_>>())
    }

    /// [`Cluster::start_agents`] in the VMs `which` only.
    pub fn start_agents_on(&mut self, which: &[usize]) -> Result<(), Error> {
        let kubeconfig = self.api.as_ref().expect("running").kubeconfig_yaml().replace(
            &format!("127.0.0.1:{}", self.api_port),
            &format!("10.0.2.2:{}", self.api_port),
        );
        for &i in which {
            let config = self.agent_config(i).to_string();
            let vm = &mut self.vms[i];
            vm.write_file("/etc/netlet/kubeconfig", kubeconfig.as_bytes())?;
            vm.write_file("/etc/netlet/netlet.yaml", config.as_bytes())?;
            vm.check(
                "NO_COLOR=1 NETLET_LOG=info setsid netlet agent --config /etc/netlet/netlet.yaml >>/var/log/netlet.log 2>&1 & \
                 echo $! > /run/netlet-agent.pid",
                SHORT,
            )?;
        }
        for &i in which {
            let vm = &mut self.vms[i];
            let started = Instant::now();
            let out = vm.run(
                "end=$(($(date +%s) + 60)); \
                 while [ $(date +%s) -lt $end ] && [ -e /proc/$(cat /run/netlet-agent.pid) ]; do \
                 netlet status >/dev/null 2>&1 && exit 0; sleep 0.2; done; \
                 netlet status; /usr/local/bin/ip route; /usr/local/bin/ip -6 route; \
                 tail -n 10 /var/log/netlet.log; exit 1",
                Duration::from_secs(100),
            )?;
            if !out.ok() {
                return Err(Error::Vm {
                    node: vm.spec.node_name.clone(),
                    what: format!("agent not ready:\n{}", out.text.trim_end()),
                    console: String::new(),
                });
            }
            eprintln!(
                "{}: agent ready in {:.1}s",
                vm.spec.node_name,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Stops every agent (SIGTERM, waiting for it to exit; none yet is
    /// fine) and starts them
    /// again with `routing.mode` `mode` (None: no `routing` section), up to
    /// ready. Pods keep their network across the restart.
    pub fn restart_agents(&mut self, mode: Option<&str>) -> Result<(), Error> {
        self.reconfigure(|spec| spec.routing_mode = mode.map(str::to_string))
    }

    /// Stops every agent, changes the agents' part of the spec with
    /// `change` and starts them again, up to ready.
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut ClusterSpec)) -> Result<(), Error> {
        for vm in &mut self.vms {
            vm.check(
                "[ -f /run/netlet-agent.pid ] || exit 0; p=$(cat /run/netlet-agent.pid); kill $p; i=0; \
                 while [ -e /proc/$p ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done; [ ! -e /proc/$p ]",
                Duration::from_secs(60),
            )?;
        }
        change(&mut self.spec);
        self.start_agents()
    }

    /// Restarts the agents with `change` applied to the spec, unless that
    /// changes nothing and they have been started already.
    pub fn ensure_config(&mut self, change: impl FnOnce(&mut ClusterSpec)) -> Result<(), Error> {
        let mut want = self.spec.clone();
        change(&mut want);
        let same = format!("{want:?}") == format!("{:?}", self.spec);
        let started = self.vms[0].run("[ -f /run/netlet-agent.pid ]", SHORT)?.ok();
        if same && started {
            return Ok(());
        }
        self.reconfigure(|spec| *spec = want)
    }

    /// Powers VM `i` off (as `poweroff -f`: no agent shutdown) and boots a
    /// new one with the same node name, addresses and MACs from a fresh
    /// initramfs, then starts its agent with the cluster's config, up to
    /// ready. Its Node object stays in the API, as on a real reboot; its
    /// pods are forgotten (their Pod objects stay: see [`Cluster::add_pod`]).
    pub fn reboot(&mut self, i: usize) -> Result<Duration, Error> {
        let started = Instant::now();
        let vm = self.vms.remove(i);
        let spec = vm.spec.clone();
        if !vm.shutdown(Duration::from_secs(5)) {
            eprintln!("{}: killed (no clean poweroff)", spec.node_name);
        }
        let gone: BTreeSet<String> = self
            .pods
            .iter()
            .filter(|p| p.node == i)
            .map(|p| p.name.clone())
            .collect();
        self.pods.retain(|p| p.node != i);
        self.served.retain(|(pod, _)| !gone.contains(pod));
        self.vms.insert(i, Vm::spawn(spec)?);
        let took = self.vms[i].wait_ready(Duration::from_secs(90))?;
        eprintln!("{}: booted again in {:.1}s", self.nodes[i].name, took.as_secs_f64());
        self.start_agents_on(&[i])?;
        Ok(started.elapsed())
    }

    /// The agent's log in VM `i` (its last `n` lines).
    pub fn agent_log(&mut self, i: usize, n: usize) -> String {
        self.vms[i]
            .run(&format!("tail -n {n} /var/log/netlet.log"), SHORT)
            .map(|o| o.text)
            .unwrap_or_else(|e| e.to_string())
    }

    /// Creates Pod `default/<name>` on node `i` in the API, a network
    /// namespace for it in the VM, and runs the CNI plugin's ADD there as
    /// a runtime would; the pod's addresses come from the ADD result.
    ///
    /// The Pod is labelled `app: <name>`; see [`Cluster::add_pod_labeled`].
    pub fn add_pod(&mut self, i: usize, name: &str) -> Result<PodInfo, Error> {
        self.add_pod_labeled(i, name, json!({"app": name}))
    }

    /// [`Cluster::add_pod`] with the Pod's `labels`. A Pod of that name
    /// already in the API (its node rebooted) is kept, as kubelet keeps it
    /// when it starts the pod's sandbox again. After the ADD the Pod's
    /// `status.podIPs` get the pod's addresses, as kubelet reports them
    /// (other nodes' policy learns pod addresses from there).
    pub fn add_pod_labeled(&mut self, i: usize, name: &str, labels: Value) -> Result<PodInfo, Error> {
        let node = self.nodes[i].name.clone();
        let created = self.create::<Pod>(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "none"}]},
        }));
        match created {
            Err(Error::Api(kube::Error::Api(e))) if e.is_already_exists() => {}
            other => {
                other?;
            }
        }
        let vm = &mut self.vms[i];
        vm.check(&format!("/usr/local/bin/ip netns add {name}"), SHORT)?;
        let conf =
            json!({"cniVersion": "1.0.0", "name": "netlet", "type": "netlet", "agentSocket": "/run/netlet/cni.sock"});
        vm.write_file(&format!("/tmp/{name}.conf"), conf.to_string().as_bytes())?;
        let out = vm.check(
            &format!(
                "env -i CNI_COMMAND=ADD CNI_CONTAINERID={name} CNI_NETNS=/run/netns/{name} CNI_IFNAME=eth0 \
                 CNI_PATH=/opt/cni/bin 'CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}' \
                 /opt/cni/bin/netlet < /tmp/{name}.conf"
            ),
            SHORT,
        )?;
        let doc: Value = out
            .lines()
            .find(|l| l.trim_start().starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| Error::Command(format!("CNI ADD for {name}: no result in {out:?}")))?;
        let ips = doc["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
            .collect::<Vec<IpAddr>>();
        let nameservers = doc["dns"]["nameservers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some(s.as_str()?.to_string()))
            .collect();
        let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
        self.rt
            .block_on(
                kube::Api::<Pod>::namespaced(self.client.clone(), "default").patch_status(
                    name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&json!({"status": {
                        "phase": "Running",
                        "podIP": ips.first().map(ToString::to_string),
                        "podIPs": pod_ips,
                    }})),
                ),
            )
            .map_err(|e| Error::Command(format!("reporting Pod {name}'s IPs: {e}")))?;
        let pod = PodInfo {
            name: name.into(),
            node: i,
            netns: format!("/run/netns/{name}"),
            ips,
            nameservers,
        };
        self.pods.push(pod.clone());
        Ok(pod)
    }

    /// Creates `object` (namespaced; `default` unless its metadata says
    /// otherwise) in the API and returns it as stored.
    pub fn create<K>(&self, object: Value) -> Result<K, Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + k8s_openapi::serde::Serialize
            + k8s_openapi::serde::de::DeserializeOwned,
    {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let object: K =
            serde_json::from_value(object).map_err(|e| Error::Command(format!("not a valid {}: {e}", K::kind(&()))))?;
        self.rt
            .block_on(kube::Api::<K>::namespaced(self.client.clone(), &namespace).create(&Default::default(), &object))
            .map_err(Error::Api)
    }

    /// Deletes `namespace/name` of kind `K` from the API.
    pub fn delete<K>(&self, namespace: &str, name: &str) -> Result<(), Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + k8s_openapi::serde::de::DeserializeOwned,
    {
        self.rt
            .block_on(kube::Api::<K>::namespaced(self.client.clone(), namespace).delete(name, &Default::default()))
            .map(|_| ())
            .map_err(Error::Api)
    }

    /// Whether Node `name` is in the API.
    pub fn node_exists(&self, name: &str) -> Result<bool, Error> {
        self.rt
            .block_on(kube::Api::<Node>::all(self.client.clone()).get_opt(name))
            .map(|n| n.is_some())
            .map_err(Error::Api)
    }

    /// Whether `to` answers a ping from VM `from`, in pod namespace
    /// `netns` (None: from the node itself). Tries three times (IPv6
    /// duplicate address detection and neighbor discovery are slow under
    /// TCG); the error says what the pod and the node had for addresses,
    /// routes and neighbors.
    pub fn ping(&mut self, from: usize, netns: Option<&str>, to: &str) -> Result<(), Error> {
        let prefix = netns
            .map(|n| format!("/usr/local/bin/ip netns exec {n} "))
            .unwrap_or_default();
        let mut last = String::new();
        for _ in 0..3 {
            let out = self.vms[from].run(&format!("{prefix}ping -c 1 -W 2 {to}"), SHORT)?;
            if out.ok() {
                return Ok(());
            }
            last = out.text;
        }
        let state = |p: &str| {
            format!(
                "{p}ip addr; {p}ip route; {p}ip -6 route; {p}ip neigh; {p}ip -6 neigh",
                p = p
            )
        };
        let mut diagnosis = self.vms[from].run(&state(&prefix), SHORT)?.text;
        if netns.is_some() {
            diagnosis.push_str("--- node ---\n");
            diagnosis.push_str(&self.vms[from].run(&state("/usr/local/bin/"), SHORT)?.text);
        }
        Err(Error::Command(format!(
            "{} ({}) cannot reach {to}: {}\n{diagnosis}",
            self.nodes[from].name,
            netns.unwrap_or("node"),
            last.trim_end()
        )))
    }

    /// Starts servers in `pod`'s namespace (both families): on TCP `port`
    /// one that answers every connection with `<pod name>` and a newline,
    /// on TCP `port + 1` one that sends [`BULK_BYTES`] zero bytes (full-size
    /// segments: MTU trouble shows there), on UDP `port` one that answers
    /// every datagram with `<pod name>` and a newline.
    /// Waits until all listen. Servers already started for `pod` and
    /// `port` are left as they are.
    pub fn serve(&mut self, pod: &PodInfo, port: u16) -> Result<(), Error> {
        if !self.served.insert((pod.name.clone(), port)) {
            return Ok(());
        }
        self.vms[pod.node].check(
            &format!(
                "/usr/local/bin/ip netns exec {name} setsid /usr/local/bin/socat \
                 TCP6-LISTEN:{port},ipv6only=0,fork,reuseaddr SYSTEM:'echo {name}' >/dev/null 2>&1 & \
                 /usr/local/bin/ip netns exec {name} setsid /usr/local/bin/socat \
                 TCP6-LISTEN:{bulk},ipv6only=0,fork,reuseaddr SYSTEM:'head -c {BULK_BYTES} /dev/zero' >/dev/null 2>&1 & \
                 /usr/local/bin/ip netns exec {name} setsid /usr/local/bin/socat \
                 UDP6-RECVFROM:{port},ipv6only=0,fork,reuseaddr SYSTEM:'echo {name}' >/dev/null 2>&1 & \
                 i=0; while [ $i -lt 50 ]; do i=$((i+1)); \
                 s=$(/usr/local/bin/ip netns exec {name} netstat -ltn); \
                 u=$(/usr/local/bin/ip netns exec {name} netstat -lun); \
                 echo \"$s\" | grep -q ':{port} ' && echo \"$s\" | grep -q ':{bulk} ' \
                 && echo \"$u\" | grep -q ':{port} ' && exit 0; sleep 0.1; done; \
                 echo \"$s$u\"; exit 1",
                name = pod.name,
                bulk = port + 1
            ),
            SHORT,
        )?;
        Ok(())
    }

    /// How many bytes `from` receives from the bulk server of the pod at
    /// `ip` (see [`Cluster::serve`]).
    pub fn tcp_bulk(&mut self, from: &PodInfo, ip: IpAddr, port: u16) -> Result<u64, Error> {
        let target = socat_target(ip, port + 1);
        let out = self.vms[from.node].run(
            &format!(
                "/usr/local/bin/ip netns exec {} /usr/local/bin/socat -T 10 -u {target},connect-timeout=3 - | wc -c",
                from.name
            ),
            Duration::from_secs(60),
        )?;
        out.text
            .trim()
            .parse()
            .map_err(|_| Error::Command(format!("{} <- {target}: {}", from.name, out.text.trim_end())))
    }

    /// Connects from `from`'s namespace to `ip`:`port` and returns what the
    /// server sent (trimmed); tries three times, a second apart.
    pub fn tcp_get(&mut self, from: &PodInfo, ip: IpAddr, port: u16) -> Result<String, Error> {
        let target = socat_target(ip, port);
        let command = format!(
            "for i in 1 2 3; do /usr/local/bin/ip netns exec {} /usr/local/bin/socat -T 3 - {target},connect-timeout=3 \
             </dev/null 2>/tmp/tcp_get.err && exit 0; sleep 1; done; cat /tmp/tcp_get.err; exit 1",
            from.name
        );
        let out = self.vms[from.node].run(&command, SHORT)?;
        if !out.ok() {
            return Err(Error::Command(format!(
                "{} cannot connect to {target}: {}",
                from.name,
                out.text.trim_end()
            )));
        }
        Ok(out.text.trim().to_string())
    }

    /// One datagram from `from`'s namespace to each of `ips` (UDP `port`,
    /// the servers of [`Cluster::serve`]), all at once in one console
    /// command: the answer to each (trimmed), "" where none came within
    /// [`UDP_WAIT`]. The client waits that long in any case (UDP has no
    /// end of stream), hence one run for every address.
    pub fn udp_get_all(&mut self, from: &PodInfo, ips: &[IpAddr], port: u16) -> Result<Vec<String>, Error> {
        let targets: Vec<String> = ips
            .iter()
            .map(|ip| match ip {
                // Quoted: brackets are a pattern to the shell.
                IpAddr::V4(v4) => format!("'UDP4:{v4}:{port}'"),
                IpAddr::V6(v6) => format!("'UDP6:[{v6}]:{port}'"),
            })
            .collect();
        let targets = targets.join(" ");
        let out = self.vms[from.node].run(
            &format!(
                "n=0; for t in {targets}; do n=$((n+1)); (echo hi | /usr/local/bin/ip netns exec {pod} \
                 /usr/local/bin/socat -t {UDP_WAIT} - \"$t\" >/tmp/udp.$n 2>/dev/null) & done; wait; \
                 n=0; for t in {targets}; do n=$((n+1)); echo \"@@ $(cat /tmp/udp.$n)\"; done",
                pod = from.name
            ),
            SHORT + Duration::from_secs(UDP_WAIT),
        )?;
        Ok(answers(&out.text))
    }

    /// One TCP connection from VM `node` (in namespace `netns`; None: the
    /// node itself) to `ip`:`port` with a `timeout` (whole seconds) for
    /// connecting and for the answer: what the server sent (trimmed), or
    /// None if the connection failed.
    pub fn tcp_once(
        &mut self,
        node: usize,
        netns: Option<&str>,
        ip: IpAddr,
        port: u16,
        timeout: u32,
    ) -> Result<Option<String>, Error> {
        let prefix = netns
            .map(|n| format!("/usr/local/bin/ip netns exec {n} "))
            .unwrap_or_default();
        let target = socat_target(ip, port);
        let out = self.vms[node].run(
            &format!("{prefix}/usr/local/bin/socat -T {timeout} - {target},connect-timeout={timeout} </dev/null"),
            SHORT + Duration::from_secs(2 * u64::from(timeout)),
        )?;
        Ok(out.ok().then(|| out.text.trim().to_string()))
    }

    /// `count` TCP connections one after the other from `from` to
    /// `ip`:`port` (in one console command): each one's answer, "" for a
    /// connection that failed.
    pub fn tcp_get_many(&mut self, from: &PodInfo, ip: IpAddr, port: u16, count: u32) -> Result<Vec<String>, Error> {
        let target = socat_target(ip, port);
        let out = self.vms[from.node].run(
            &format!(
                "i=0; while [ $i -lt {count} ]; do i=$((i+1)); \
                 a=$(/usr/local/bin/ip netns exec {} /usr/local/bin/socat -T 3 - {target},connect-timeout=3 </dev/null 2>/dev/null); \
                 echo \"@@ $a\"; done",
                from.name
            ),
            SHORT + Duration::from_secs(7 * u64::from(count)),
        )?;
        Ok(answers(&out.text))
    }

    /// Powers every VM off and stops the stand-in.
    pub fn shutdown(mut self) {
        let started = Instant::now();
        let count = self.vms.len();
        let killed = self
            .vms
            .drain(..)
            .map(|vm| vm.shutdown(Duration::from_secs(5)))
            .filter(|clean| !clean)
            .count();
        eprintln!(
            "{count} VMs powered off in {:.1}s{}",
            started.elapsed().as_secs_f64(),
            if killed > 0 {
                format!(" ({killed} killed)")
            } else {
                String::new()
            }
        );
        if let Some(api) = self.api.take() {
            self.rt.block_on(api.shutdown());
        }
    }
}

/// The answers a console command printed, one a line after `@@`
/// (trimmed): output of the VM's own around them does not count.
fn answers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("@@"))
        .map(|a| a.trim().to_string())
        .collect()
}

/// socat's address for a TCP connection to `ip`:`port`.
fn socat_target(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("TCP4:{v4}:{port}"),
        IpAddr::V6(v6) => format!("TCP6:[{v6}]:{port}"),
    }
}

/// The newest cloud kernel under /boot: (vmlinuz, release).
pub fn find_cloud_kernel(boot: &Path) -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir(boot)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let release = name.strip_prefix("vmlinuz-")?.to_string();
            (release.ends_with("-cloud-amd64") && Path::new("/lib/modules").join(&release).is_dir())
                .then(|| (e.path(), release))
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found.pop()
}

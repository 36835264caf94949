//! The sandbox's kubelet: for each Pod bound to its node, a network
//! namespace wired through the CNI plugin exactly as a runtime does, echo
//! servers for the declared container ports, and `status.podIPs` written
//! back. Deleting the Pod runs CNI DEL and removes the namespace.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cni_exec::{self, CniFailure, CniOutcome, Invocation};
use crate::echo::{self, Protocol};
use crate::Error;

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    /// The plugin executable (the `netlet` binary for the real path).
    pub cni_plugin: PathBuf,
    /// The network config or conflist, as in `/etc/cni/net.d`.
    pub cni_conf: Value,
    pub cni_path: Vec<PathBuf>,
    pub netns_prefix: String,
    pub ifname: String,
    /// On stop, run DEL for every pod and remove every namespace.
    pub teardown_on_exit: bool,
}

/// What the kubelet did for one pod, for the sandbox's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodReport {
    pub netns: String,
    pub ips: Vec<IpAddr>,
    pub cni_error: Option<CniFailure>,
    /// `port/PROTO` of each echo server.
    pub servers: Vec<String>,
}

/// Reports keyed by `namespace/name`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PodTable(Arc<Mutex<BTreeMap<String, PodReport>>>);

impl PodTable {
    pub fn get(&self, key: &str) -> Option<PodReport> {
        self.0.lock().expect("pod table lock").get(key).cloned()
    }

    pub fn all(&self) -> BTreeMap<String, PodReport> {
        self.0.lock().expect("pod table lock").clone()
    }

    fn set(&self, key: &str, report: Option<PodReport>) {
        let mut t = self.0.lock().expect("pod table lock");
        match report {
            Some(r) => t.insert(key.to_string(), r),
            None => t.remove(key),
        };
    }
}

/// A pod the kubelet runs: its namespace, container ID and servers.
struct RunningPod {
    key: String,
    container_id: String,
    netns: testbed::Netns,
    _servers: JoinSet<()>,
}

pub struct Kubelet {
    config: KubeletConfig,
    table: PodTable,
}

impl Kubelet {
    pub fn new(config: KubeletConfig) -> Kubelet {
        Kubelet {
            config,
            table: PodTable::default(),
        }
    }

    pub fn pods(&self) -> PodTable {
        self.table.clone()
    }

    /// Runs until `cancel`; pods are keyed by UID, so a pod deleted and
    /// created again under the same name gets a fresh sandbox.
    pub async fn run(self, client: kube::Client, cancel: CancellationToken) -> Result<(), Error> {
        let pods: Api<Pod> = Api::all(client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.config.node_name));
        let mut events = watcher::watcher(pods, cfg).default_backoff().boxed();
        let mut running: BTreeMap<String, RunningPod> = BTreeMap::new();
        let mut listed: Vec<String> = Vec::new();
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => break,
                e = events.next() => e,
            };
            match event {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "kubelet watch failed; retrying"),
                Some(Ok(Event::Init)) => listed.clear(),
                Some(Ok(Event::InitApply(pod))) => {
                    listed.push(pod.uid().unwrap_or_default());
                    self.apply(&client, &mut running, pod).await;
                }
                Some(Ok(Event::InitDone)) => {
                    // Pods deleted while the watch was away.
                    let gone: Vec<String> = running.keys().filter(|uid| !listed.contains(uid)).cloned().collect();
                    for uid in gone {
                        let pod = running.remove(&uid).expect("key from the map");
                        self.stop(pod).await;
                    }
                }
                Some(Ok(Event::Apply(pod))) => self.apply(&client, &mut running, pod).await,
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(p) = running.remove(&pod.uid().unwrap_or_default()) {
                        self.stop(p).await;
                    }
                }
            }
        }
        if self.config.teardown_on_exit {
            for (_, pod) in std::mem::take(&mut running) {
                self.stop(pod).await;
            }
        }
        Ok(())
    }

    async fn apply(&self, client: &kube::Client, running: &mut BTreeMap<String, RunningPod>, pod: Pod) {
        let uid = pod.uid().unwrap_or_default();
        let ns = pod.namespace().unwrap_or_default();
        let key = format!("{ns}/{}", pod.name_any());
        if pod.metadata.deletion_timestamp.is_some() {
            // The real kubelet stops the containers, then confirms the
            // deletion with a zero grace period.
            if let Some(p) = running.remove(&uid) {
                self.stop(p).await;
            }
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let _ = api
                .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await;
            return;
        }
        if running.contains_key(&uid) {
            return;
        }
        match self.start(client, &pod, &key).await {
            Ok(p) => {
                running.insert(uid, p);
            }
            Err(e) => tracing::warn!(pod = %key, error = %e, "cannot start pod"),
        }
    }

    fn cni_args(pod: &Pod, container_id: &str) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={}",
            pod.namespace().unwrap_or_default(),
            pod.name_any(),
            pod.uid().unwrap_or_default()
        )
    }

    fn invocation<'a>(
        &'a self,
        command: &'a str,
        container_id: &'a str,
        netns: &'a std::path::Path,
        args: &'a str,
    ) -> Invocation<'a> {
        Invocation {
            plugin: &self.config.cni_plugin,
            command,
            container_id,
            netns: Some(netns),
            ifname: &self.config.ifname,
            args,
            cni_path: &self.config.cni_path,
            config: &self.config.cni_conf,
        }
    }

    async fn start(&self, client: &kube::Client, pod: &Pod, key: &str) -> Result<RunningPod, Error> {
        let netns = testbed::Netns::new(&self.config.netns_prefix).map_err(|source| Error::Netns {
            pod: key.to_string(),
            source,
        })?;
        // A container ID as a runtime makes one: unique per sandbox.
        let container_id = format!("sandbox-{}", pod.uid().unwrap_or_else(|| pod.name_any()));
        let args = Self::cni_args(pod, &container_id);
        let outcome = cni_exec::invoke(&self.invocation("ADD", &container_id, &netns.path(), &args)).await?;
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        let mut report = PodReport {
            netns: netns.name().to_string(),
            ips: Vec::new(),
            cni_error: None,
            servers: Vec::new(),
        };
        let mut servers = JoinSet::new();
        match outcome {
            CniOutcome::Ok { ips, .. } => {
                report.servers = start_servers(&netns, pod, &mut servers);
                report.ips = order_ips(ips);
                let status = running_status(&report.ips);
                api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                    .await?;
                tracing::info!(pod = %key, ips = ?report.ips, "pod running");
            }
            CniOutcome::Failed(failure) => {
                // The runtime must call DEL after a failed ADD so the plugin
                // can release whatever it half-made.
                let _ = cni_exec::invoke(&self.invocation("DEL", &container_id, &netns.path(), &args)).await;
                let status = json!({"status": {"phase": "Pending", "conditions": [{
                    "type": "PodReadyToStartContainers", "status": "False",
                    "reason": "NetworkSetupFailed", "message": failure.to_string()}]}});
                api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                    .await?;
                tracing::warn!(pod = %key, error = %failure, "pod network setup failed");
                report.cni_error = Some(failure);
            }
        }
        self.table.set(key, Some(report));
        Ok(RunningPod {
            key: key.to_string(),
            container_id,
            netns,
            _servers: servers,
        })
    }

    async fn stop(&self, pod: RunningPod) {
        let args = String::new();
        let del = cni_exec::invoke(&self.invocation("DEL", &pod.container_id, &pod.netns.path(), &args)).await;
        if let Ok(CniOutcome::Failed(f)) = &del {
            tracing::warn!(pod = %pod.key, error = %f, "CNI DEL failed");
        }
        self.table.set(&pod.key, None);
        tracing::info!(pod = %pod.key, "pod stopped");
        // Dropping the namespace and the servers' task set ends them.
    }
}

/// IPv4 first, as the API server orders `podIPs` on a dual-stack node.
fn order_ips(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips
}

fn running_status(ips: &[IpAddr]) -> Value {
    let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    json!({"status": {
        "phase": "Running",
        "podIP": ips.first().map(ToString::to_string),
        "podIPs": pod_ips,
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "ContainersReady", "status": "True"},
        ],
    }})
}

fn start_servers(netns: &testbed::Netns, pod: &Pod, tasks: &mut JoinSet<()>) -> Vec<String> {
    let ports: Vec<(Protocol, u16)> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let proto = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                _ => return None,
            };
            Some((proto, u16::try_from(p.container_port).ok()?))
        })
        .collect();
    let bound = netns.run(|| {
        ports
            .iter()
            .map(|(proto, port)| (*proto, *port, echo::bind_in_current_netns(*proto, *port)))
            .collect::<Vec<_>>()
    });
    let mut started = Vec::new();
    for (proto, port, result) in bound {
        let name = format!("{port}/{}", if proto == Protocol::Tcp { "TCP" } else { "UDP" });
        match result.and_then(|b| echo::serve(b, tasks)) {
            Ok(()) => started.push(name),
            Err(e) => tracing::warn!(port = %name, error = %e, "cannot start echo server"),
        }
    }
    started
}

//! netlet's side: the API stand-in, the `netlet agent` binary as its own
//! process with the cluster DNS on, pinned to the servers' core, and the
//! Services created through the API as a cluster would create them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Service as KubeService};
use kube::api::{Api, PostParams};
use netstack::admin::StatusReport;
use netstack::module::{ModuleReport, ModuleState};
use serde_json::json;

use super::records::{Service, DOMAIN, NAMESPACES, PORT, PORT_NAME, TTL};
use super::server::{pinned, Server};

/// Where netlet serves: its `clusterDNS` address, which the agent puts on
/// its `netlet-dns` interface.
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);
const NODE: &str = "bench-node";
/// Long enough for 10,000 creates and the agent's sync on a slow machine.
const WAIT: Duration = Duration::from_secs(180);

/// A running agent serving the data set, and the API it watches.
pub struct Netlet {
    // Fields drop in order: the agent stops before its API goes away.
    server: Server,
    socket: PathBuf,
    _api: standin::ApiServer,
    runtime: tokio::runtime::Runtime,
}

impl Netlet {
    /// Starts the stand-in and the agent (`binary`, pinned to `cpu`),
    /// creates `services` Services, and returns once the agent has them all
    /// and answers for one created last.
    pub fn start(binary: &Path, dir: &Path, cpu: usize, services: usize) -> anyhow::Result<Netlet> {
        // One worker: the stand-in only has to keep up with one watcher.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let api = runtime.block_on(standin::ApiServer::start(standin::Options::default()))?;
        let client = runtime
            .block_on(api.client())
            .map_err(|e| anyhow!("cannot make a client for the API stand-in: {e}"))?;
        runtime.block_on(create_cluster(&client))?;

        let dir = dir.join("netlet");
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)?;
        let config = dir.join("netlet.yaml");
        // JSON is YAML: the agent reads it as its config file.
        std::fs::write(&config, serde_json::to_string_pretty(&agent_config(&dir, &kubeconfig))?)?;
        let mut cmd = pinned(cpu, binary);
        cmd.arg("agent").arg("--config").arg(&config).env("NETLET_LOG", "warn");
        let server = Server::start(
            "netlet",
            SocketAddr::from((CLUSTER_DNS, 53)),
            cmd,
            &dir.join("agent.log"),
        )
        .with_context(|| {
            format!(
                "build netlet with `cargo build --release -p netlet` ({})",
                binary.display()
            )
        })?;

        let mut netlet = Netlet {
            server,
            socket: dir.join("run/admin.sock"),
            _api: api,
            runtime,
        };
        netlet.wait_for_status("load its DNS zone", dns_ready)?;
        netlet.runtime.block_on(create_services(&client, services))?;
        netlet.wait_for_status(&format!("see {services} Services"), |s| {
            Ok(cached(s, "Service") == Some(services))
        })?;
        // The zone follows the cache: wait until it answers, too.
        let last = Service(services - 1);
        netlet
            .server
            .wait_until_answers(&last.fqdn(), "A", &last.a_record(), WAIT)?;
        Ok(netlet)
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Polls the agent's status until `want` says yes; fails if the agent
    /// exits, `want` fails, or `WAIT` passes.
    fn wait_for_status(
        &mut self,
        what: &str,
        want: impl Fn(&StatusReport) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        while Instant::now() < deadline {
            super::interrupt::check()?;
            self.server.check_running()?;
            if let Some(status) = self.runtime.block_on(status(&self.socket)) {
                if want(&status)? {
                    return Ok(());
                }
                last = Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let why = match &last {
            None => "its admin socket never answered".to_string(),
            Some(s) if dns_module(s).is_none() => {
                "it has no dns module: is target/release/netlet built with the cluster DNS?".to_string()
            }
            Some(s) => format!("not ready: {}", s.not_ready.join("; ")),
        };
        bail!("netlet did not {what} within {WAIT:?}: {why}")
    }
}

async fn status(socket: &Path) -> Option<StatusReport> {
    let resp = netstack::admin::client::get(socket, "/v1/status").await.ok()?;
    serde_json::from_str(&resp.body).ok()
}

fn dns_module(status: &StatusReport) -> Option<&ModuleReport> {
    status.modules.iter().find(|m| m.name == "dns")
}

fn dns_ready(status: &StatusReport) -> anyhow::Result<bool> {
    match dns_module(status) {
        Some(m) if m.state == ModuleState::Failed => {
            bail!(
                "netlet's dns module failed: {}",
                m.last_error.as_deref().unwrap_or("no error given")
            )
        }
        Some(m) => Ok(m.state == ModuleState::Ready),
        None => Ok(false),
    }
}

fn cached(status: &StatusReport, kind: &str) -> Option<usize> {
    status.cache.iter().find(|k| k.kind == kind).map(|k| k.objects)
}

/// The agent's config: the cluster DNS on, everything else the agent keeps
/// under `dir`.
fn agent_config(dir: &Path, kubeconfig: &Path) -> serde_json::Value {
    json!({
        "nodeName": NODE,
        "kubeconfig": kubeconfig,
        "stateDir": dir.join("state"),
        "runDir": dir.join("run"),
        "clusterCIDR": "10.42.0.0/16",
        "serviceCIDR": "10.43.0.0/16",
        "clusterDomain": DOMAIN,
        "clusterDNS": [CLUSTER_DNS.to_string()],
        "cni": {"confDir": dir.join("net.d"), "binDir": dir.join("bin")},
        "dns": {
            "enabled": true,
            "port": 53,
            "ttl": TTL,
            // Other names are forwarded; the benchmark asks none, so a
            // port where nothing listens will do.
            "upstreams": ["127.0.0.1:5399"],
            "podRecords": "verified",
        },
    })
}

/// This node (with pod CIDRs, so that the agent's CNI side is ready too)
/// and the data set's namespaces.
async fn create_cluster(client: &kube::Client) -> anyhow::Result<()> {
    let pp = PostParams::default();
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": NODE}, "spec": {"podCIDRs": ["10.42.0.0/24"]}}))?;
    Api::<Node>::all(client.clone()).create(&pp, &node).await?;
    let namespaces = Api::<Namespace>::all(client.clone());
    for i in 0..NAMESPACES {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": format!("ns-{i}")}}))?;
        namespaces.create(&pp, &ns).await?;
    }
    Ok(())
}

/// The data set's Services, 64 creates in flight: enough to keep the
/// stand-in busy without queueing thousands of requests.
async fn create_services(client: &kube::Client, services: usize) -> anyhow::Result<()> {
    let creates = (0..services).map(Service).map(|s| {
        let client = client.clone();
        async move {
            let svc: KubeService = serde_json::from_value(json!({
                "metadata": {"name": s.name()},
                "spec": {
                    "clusterIP": s.cluster_ip().to_string(),
                    "selector": {"app": s.name()},
                    "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": 8080, "protocol": "TCP"}],
                },
            }))?;
            Api::<KubeService>::namespaced(client, &s.namespace())
                .create(&PostParams::default(), &svc)
                .await
                .with_context(|| format!("cannot create Service {}/{}", s.namespace(), s.name()))?;
            anyhow::Ok(())
        }
    });
    let results: Vec<_> = futures::stream::iter(creates).buffer_unordered(64).collect().await;
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_serves_the_zone_on_the_cluster_dns_address() {
        let c = agent_config(Path::new("/t"), Path::new("/t/kubeconfig"));
        assert_eq!(c["clusterDNS"], json!(["10.43.0.10"]));
        assert_eq!(c["dns"]["enabled"], true);
        assert_eq!(c["dns"]["ttl"], TTL);
        assert_eq!(c["clusterDomain"], "cluster.local");
        assert_eq!(c["runDir"], "/t/run");
    }
}

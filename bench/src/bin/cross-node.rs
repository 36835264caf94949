//! Cross-node pod-to-pod TCP throughput with `routing.mode` native and
//! vxlan, each against node-to-node throughput on the same underlay,
//! measured in one run (iperf3, one stream).
//!
//! The bed: two node namespaces whose `eth0` veths are ports of one bridge
//! in a link namespace ([`testbed::Underlay`]), the API stand-in on the
//! bridge's address, and per mode one `netlet agent` process in each node
//! namespace (a fresh state each time) with one pod per node wired by the
//! netlet CNI plugin. Underlay rounds run between the pod rounds of every
//! mode, so drift on a busy machine reaches both sides of each ratio.
//! Everything goes when the benchmark ends, fails or gets Ctrl-C.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::agent_process::AgentProcess;
use bench::iperf;
use clap::Parser;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use testbed::{Netns, Underlay};

#[derive(Parser)]
struct Args {
    /// The netlet binary: the agents, and the CNI plugin.
    #[arg(long, default_value = "target/release/netlet")]
    netlet: PathBuf,
    /// Rounds per path and family (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 5)]
    round_secs: u64,
    /// The pods' MTU with vxlan: the IPv6 tunnel's (underlay 1500 - 70),
    /// so both families' packets fit their tunnel without fragmenting.
    #[arg(long, default_value_t = 1430)]
    vxlan_mtu: u32,
    /// IPv4 only.
    #[arg(long)]
    ipv4_only: bool,
}

const NODES: usize = 2;
const MODES: [&str; 2] = ["native", "vxlan"];
/// The underlay's MTU (veths), which native routing keeps for pods.
const UNDERLAY_MTU: u32 = 1500;

/// Samples in bits per second, per family (IPv4, IPv6).
#[derive(Default)]
struct Samples([Vec<f64>; 2]);

impl Samples {
    fn median(&self, family: usize) -> Option<f64> {
        let mut v = self.0[family].clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.netlet.exists() {
        bail!("{} is missing (build netlet with --release)", args.netlet.display());
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        bail!("iperf3 is missing (`make bench-routing` installs it)");
    }
    if args.rounds == 0 || args.round_secs == 0 {
        bail!("--rounds and --round-secs must be at least 1");
    }
    let families = if args.ipv4_only { 1 } else { 2 };
    let bed = Bed::new()?;
    let stop = bed.stop_on_ctrl_c();
    let mut underlay = Samples::default();
    let mut pods = Vec::new();
    for mode in MODES {
        eprintln!("cross-node: {mode}");
        let mode_bed = bed.start_mode(&args, mode)?;
        let mut samples = Samples::default();
        for _ in 0..args.rounds {
            for family in 0..families {
                // (client, server addresses): node to node, pod to pod.
                let paths = [
                    (&mut underlay, &bed.underlay.nodes[0].ns, bed.node_ips(1)?),
                    (&mut samples, &mode_bed.pods[0].0, mode_bed.pods[1].1),
                ];
                for (into, client, server) in paths {
                    if stop.load(Ordering::Relaxed) {
                        bail!("interrupted");
                    }
                    into.0[family].push(iperf::tcp_throughput(client, server[family], args.round_secs)?);
                }
            }
        }
        pods.push((mode, samples));
    }
    report(&args, families, &underlay, &pods);
    Ok(())
}

fn report(args: &Args, families: usize, underlay: &Samples, pods: &[(&str, Samples)]) {
    let gbps = |bps: f64| format!("{:6.2} Gbit/s", bps / 1e9);
    let row = |label: &str, cells: Vec<String>| {
        let cells: Vec<String> = cells.iter().map(|c| format!("{c:<24}")).collect();
        println!("  {label:<22}{}", cells.concat().trim_end());
    };
    println!(
        "cross-node: TCP throughput between two nodes on one bridge (iperf3, one stream, {} s rounds; medians of {} \
         rounds per mode, and of the underlay's {} rounds between them)",
        args.round_secs,
        args.rounds,
        args.rounds * MODES.len()
    );
    row(
        "",
        ["  IPv4", "  IPv6"][..families].iter().map(|f| f.to_string()).collect(),
    );
    row(
        "underlay node -> node",
        (0..families)
            .map(|f| underlay.median(f).map(gbps).unwrap_or_default())
            .collect(),
    );
    for (mode, samples) in pods {
        let cells = (0..families).map(|f| match (samples.median(f), underlay.median(f)) {
            (Some(pod), Some(base)) => format!("{} {:4.2}x", gbps(pod), pod / base),
            _ => String::new(),
        });
        row(&format!("{mode} pod -> pod"), cells.collect());
    }
    println!(
        "  (ratio: pod to pod vs node to node; pod MTU {UNDERLAY_MTU} native, {} vxlan; underlay MTU {UNDERLAY_MTU})",
        args.vxlan_mtu
    );
}

/// The underlay, the API stand-in on it and the Node objects.
struct Bed {
    // Fields drop in this order: the API and its runtime before the
    // namespaces, the namespaces before the directory.
    api: Option<standin::ApiServer>,
    rt: tokio::runtime::Runtime,
    underlay: Underlay,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> anyhow::Result<Bed> {
        let dir = tempfile::tempdir()?;
        let underlay = Underlay::new("bxn", NODES)?;
        // The runtime's threads are born in the link namespace: the API
        // listens there, and clients connect from there.
        let rt = underlay.link.run(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        })?;
        let options = standin::Options {
            addr: format!("{}:0", testbed::BRIDGE_V4).parse()?,
            ..Default::default()
        };
        let api = underlay.link.run(|| rt.block_on(standin::ApiServer::start(options)))?;
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)?;
        let bed = Bed {
            api: Some(api),
            rt,
            underlay,
            kubeconfig,
            dir,
        };
        for i in 0..NODES {
            bed.create_node(i)?;
        }
        Ok(bed)
    }

    /// Node `i`: podCIDRs 10.42.(i+1).0/24 and fd00:42:0:(i+1)::/64, its
    /// underlay addresses as InternalIPs.
    fn create_node(&self, i: usize) -> anyhow::Result<()> {
        let u = &self.underlay.nodes[i];
        let name = node_name(i);
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"podCIDRs": [format!("10.42.{}.0/24", i + 1), format!("fd00:42:0:{}::/64", i + 1)]}}))?;
        let addresses = json!({"status": {"addresses": [
            {"type": "InternalIP", "address": u.v4}, {"type": "InternalIP", "address": u.v6}]}});
        let (rt, kubeconfig) = (&self.rt, &self.kubeconfig);
        self.underlay.link.run(|| {
            rt.block_on(async {
                let client = netlet::kube_client::client(Some(kubeconfig)).await?;
                let nodes = Api::<Node>::all(client);
                nodes.create(&PostParams::default(), &node).await?;
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&addresses))
                    .await?;
                anyhow::Ok(())
            })
        })
    }

    /// A flag that Ctrl-C raises; the measurement loop stops there, so
    /// what the bed made goes as it unwinds.
    fn stop_on_ctrl_c(&self) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        self.rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("cross-node: interrupted; cleaning up after the current run");
                flag.store(true, Ordering::Relaxed);
            }
        });
        stop
    }

    /// Agents with `routing.mode: <mode>` on every node (fresh state), a
    /// pod on each, iperf3 servers on node 1 and its pod, and pod 0
    /// reaching pod 1 in every family.
    fn start_mode(&self, args: &Args, mode: &str) -> anyhow::Result<ModeBed> {
        let mtu = if mode == "vxlan" { args.vxlan_mtu } else { UNDERLAY_MTU };
        let mut agents = Vec::new();
        let mut pods = Vec::new();
        for (i, node) in self.underlay.nodes.iter().enumerate() {
            let dir = self.dir.path().join(format!("{mode}-{i}"));
            agents.push(start_agent(
                &args.netlet,
                &node.ns,
                &dir,
                &self.kubeconfig,
                i,
                mode,
                mtu,
            )?);
        }
        for (i, agent) in agents.iter_mut().enumerate() {
            let dir = self.dir.path().join(format!("{mode}-{i}"));
            self.rt.block_on(wait_ready(agent, &dir.join("run/admin.sock")))?;
            let ns = Netns::new(&format!("bxp{i}"))?;
            let conf = json!({"cniVersion": "1.0.0", "name": "netlet", "type": "netlet", "agentSocket": dir.join("run/cni.sock")});
            let name = format!("{mode}-pod-{i}");
            let ips = self
                .rt
                .block_on(bench::cni::cni_add(&args.netlet, &conf, &ns, &name, "default", &name))?;
            let ips: Vec<IpAddr> = ips.iter().map(|ip| ip.parse()).collect::<Result<_, _>>()?;
            pods.push((ns, by_family(&ips)?));
        }
        let servers = vec![
            iperf::Server::start(&self.underlay.nodes[1].ns)?,
            iperf::Server::start(&pods[1].0)?,
        ];
        for ip in pods[1].1 {
            wait_reachable(&pods[0].0, ip)?;
        }
        Ok(ModeBed {
            _servers: servers,
            _agents: agents,
            pods,
        })
    }

    /// Node `i`'s underlay addresses, IPv4 then IPv6.
    fn node_ips(&self, i: usize) -> anyhow::Result<[IpAddr; 2]> {
        let n = &self.underlay.nodes[i];
        Ok([n.v4.parse()?, n.v6.parse()?])
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(api) = self.api.take() {
            let rt = &self.rt;
            self.underlay.link.run(|| rt.block_on(api.shutdown()));
        }
    }
}

/// One mode's agents, pods and iperf3 servers. Dropping it stops the
/// servers and agents, then removes the pods (in field order).
struct ModeBed {
    _servers: Vec<iperf::Server>,
    _agents: Vec<AgentProcess>,
    /// Per node: the pod's namespace and addresses (IPv4, IPv6).
    pods: Vec<(Netns, [IpAddr; 2])>,
}

fn node_name(i: usize) -> String {
    format!("bench-node-{i}")
}

fn by_family(ips: &[IpAddr]) -> anyhow::Result<[IpAddr; 2]> {
    let v4 = ips.iter().find(|ip| ip.is_ipv4()).context("no IPv4 pod address")?;
    let v6 = ips.iter().find(|ip| ip.is_ipv6()).context("no IPv6 pod address")?;
    Ok([*v4, *v6])
}

/// `netlet agent` in node `i`'s namespace, on `dir`.
fn start_agent(
    netlet: &Path,
    ns: &Netns,
    dir: &Path,
    kubeconfig: &Path,
    i: usize,
    mode: &str,
    mtu: u32,
) -> anyhow::Result<AgentProcess> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("netlet.yaml");
    // JSON is YAML.
    std::fs::write(
        &config,
        serde_json::to_string_pretty(&json!({
            "nodeName": node_name(i),
            "kubeconfig": kubeconfig,
            "stateDir": dir.join("state"),
            "runDir": dir.join("run"),
            "cni": {"confDir": dir.join("net.d"), "binDir": dir.join("bin")},
            "mtu": mtu,
            "routing": {"mode": mode},
            "egress": {"masquerade": false},
            "shutdownGraceSeconds": 1,
        }))?,
    )?;
    let child = ns
        .command(netlet)
        .arg("agent")
        .arg("--config")
        .arg(&config)
        .env("NETLET_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", netlet.display()))?;
    Ok(AgentProcess(child))
}

/// Polls `/readyz` until 200, for up to 30 s.
async fn wait_ready(agent: &mut AgentProcess, socket: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = agent.exited() {
            bail!("the agent exited ({status}) before it was ready");
        }
        let last = match netstack::admin::client::get(socket, "/readyz").await {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => r.body,
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("the agent was not ready within 30 s: {}", last.trim());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pings `ip` from `ns` until it answers (routes and tunnel entries come
/// a moment after the agents are ready), for up to 20 s.
fn wait_reachable(ns: &Netns, ip: IpAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let ip = ip.to_string();
    loop {
        if ns.exec(&["ping", "-c", "1", "-W", "1", &ip]).status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{ip} did not answer a ping from the other node's pod within 20 s");
        }
    }
}

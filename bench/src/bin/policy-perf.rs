//! NetworkPolicy's cost, measured in one run: TCP throughput (iperf3) and
//! connection rate between two pods of one node with no policy, then with
//! 1,000 policies selecting the server pod (each with an ipBlock rule of
//! its own, plus one letting the client in); and the time from a policy
//! change written to the API stand-in to its enforcement on the wire (the
//! first UDP probe through, probes every 0.1 ms), split into the watch
//! delivery, the wait for the policy module and each step of its sync.
//! The agent and the API run in this process (one clock for both), the
//! whole benchmark in a network namespace of its own.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use testbed::Netns;

use breakdown::Breakdown;
use probe::UdpProbe;

#[derive(Parser)]
struct Args {
    /// The netlet binary, run as the CNI plugin.
    #[arg(long, default_value = "target/release/netlet")]
    netlet: PathBuf,
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Rounds per side (the median is reported); the side without
    /// policies runs half before and half after the side with them.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    #[arg(long, default_value_t = 2)]
    round_secs: u64,
    /// Policy changes timed to enforcement.
    #[arg(long, default_value_t = 200)]
    changes: usize,
}

const NODE: &str = "bench-node";
const NAMESPACE: &str = "bench";
const CONNECT_PORT: u16 = 7000;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.netlet.exists() {
        bail!("{} is missing (build netlet with --release)", args.netlet.display());
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        bail!("iperf3 is missing (`make bench-policy` installs it)");
    }
    // Before any thread exists: this process and its children get a
    // network namespace of their own, the node's.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET) needs root")?;
    run(&["ip", "link", "set", "lo", "up"])?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let pins = testbed::PinDir::new("bpol");
    let (_api, _agent, client) = rt.block_on(start(dir.path(), pins.path()))?;
    let conf = json!({"cniVersion": "1.0.0", "name": "netlet", "type": "netlet", "agentSocket": dir.path().join("run/cni.sock")});
    let server = Netns::new("bpols")?;
    let client_ns = Netns::new("bpolc")?;
    let server_ip = add_pod(&rt, &args.netlet, &conf, &server, "server")?;
    add_pod(&rt, &args.netlet, &conf, &client_ns, "client")?;
    let _listener = ConnectServer::start(&server)?;
    let iperf = bench::iperf::Server::start(&server)?;

    // Half the rounds without policies before, half after, the rounds
    // with policies in between: drift on a busy machine hits both sides.
    let early = args.rounds / 2;
    let mut without = measure(early, &args, &client_ns, server_ip)?;
    println!(
        "policy-perf: {} policies vs none, pod to pod on one node",
        args.policies
    );
    rt.block_on(create_policies(&client, args.policies))?;
    let allow = allow_client();
    rt.block_on(wait_enforced(&client_ns, server_ip, true))?;
    let with = measure(args.rounds, &args, &client_ns, server_ip)?;

    let probe = UdpProbe::new(&client_ns, &server, server_ip)?;
    let admin = dir.path().join("run/admin.sock");
    let mut changes = Vec::new();
    for _ in 0..args.changes {
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
        rt.block_on(api.delete("allow-client", &DeleteParams::default()))?;
        rt.block_on(wait_enforced(&client_ns, server_ip, false))?;
        let change = probe.time(|| {
            rt.block_on(api.create(&PostParams::default(), &allow))?;
            Ok(())
        })?;
        changes.push(rt.block_on(breakdown_of(&change, &admin))?);
    }
    rt.block_on(delete_policies(&client, &admin))?;
    without.extend(measure(args.rounds - early, &args, &client_ns, server_ip)?);
    let (without, with) = (without.medians(), with.medians());
    drop(iperf);
    let gbps = |bps: f64| bps / 1e9;
    println!(
        "  TCP throughput   none {:6.2} Gbit/s   {} policies {:6.2} Gbit/s   ratio {:.3} (target >= 0.95)",
        gbps(without.throughput),
        args.policies,
        gbps(with.throughput),
        with.throughput / without.throughput
    );
    println!(
        "  connections/s    none {:8.0}         {} policies {:8.0}         ratio {:.3} (target >= 0.95)",
        without.connects,
        args.policies,
        with.connects,
        with.connects / without.connects
    );
    breakdown::print(&changes, args.policies);
    let page = rt.block_on(netstack::admin::client::get(&admin, "/metrics"))?.body;
    let series = |name: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!(
        "  inside the agent: compile + plan + map writes, mean {:.2} ms over {} syncs",
        series("netlet_policy_sync_duration_seconds_sum") * 1000.0
            / series("netlet_policy_sync_duration_seconds_count").max(1.0),
        series("netlet_policy_sync_duration_seconds_count")
    );
    Ok(())
}

/// Samples of each figure, one per round.
#[derive(Default)]
struct Figures {
    /// bits per second
    throughput: Vec<f64>,
    connects: Vec<f64>,
}

struct Medians {
    throughput: f64,
    connects: f64,
}

impl Figures {
    fn extend(&mut self, more: Figures) {
        self.throughput.extend(more.throughput);
        self.connects.extend(more.connects);
    }

    fn medians(mut self) -> Medians {
        Medians {
            throughput: median(&mut self.throughput),
            connects: median(&mut self.connects),
        }
    }
}

/// `rounds` rounds of each measurement.
fn measure(rounds: usize, args: &Args, client: &Netns, server: IpAddr) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    for _ in 0..rounds {
        figures
            .throughput
            .push(bench::iperf::tcp_throughput(client, server, args.round_secs)?);
        figures
            .connects
            .push(connect_rate(client, server, Duration::from_secs(args.round_secs))?);
    }
    Ok(figures)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Connections per second from `client`, each opened, answered with one
/// byte and closed.
fn connect_rate(client: &Netns, server: IpAddr, length: Duration) -> anyhow::Result<f64> {
    let to = SocketAddr::new(server, CONNECT_PORT);
    client.run(|| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < length {
            let mut conn = TcpStream::connect(to)?;
            let mut byte = [0u8; 1];
            conn.read_exact(&mut byte)?;
            n += 1;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })
}

/// Accepts connections and answers each with one byte.
struct ConnectServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConnectServer {
    fn start(ns: &Netns) -> anyhow::Result<ConnectServer> {
        let listener = ns.run(|| TcpListener::bind(("::", CONNECT_PORT)))?;
        listener.set_nonblocking(false)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(mut conn) = conn {
                    let _ = conn.write_all(b"!");
                }
            }
        });
        Ok(ConnectServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ConnectServer {
    fn drop(&mut self) {
        // The accept loop ends with the process; it is not joined.
        self.stop.store(true, Ordering::Relaxed);
        drop(self.thread.take());
    }
}

/// Polls new connections (2 ms each) until they pass (`allowed`) or not;
/// for waits that are not timed.
async fn wait_enforced(client: &Netns, server: IpAddr, allowed: bool) -> anyhow::Result<()> {
    let to = SocketAddr::new(server, CONNECT_PORT);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let passes = client.run(|| TcpStream::connect_timeout(&to, Duration::from_millis(2)).is_ok());
        if passes == allowed {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "connections did not become {} within 30 s",
                if allowed { "allowed" } else { "blocked" }
            );
        }
    }
}

/// The breakdown of `change`, once the agent has recorded the sync that
/// served it (it records a sync just after the maps are written, which the
/// probe may notice first).
async fn breakdown_of(change: &probe::TimedChange, admin: &Path) -> anyhow::Result<Breakdown> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let report: netstack::policy::PolicyReport =
            serde_json::from_str(&netstack::admin::client::get(admin, "/v1/policy").await?.body)?;
        match Breakdown::of(change, &report.recent_syncs) {
            Some(breakdown) => return Ok(breakdown),
            None if Instant::now() > deadline => bail!("the agent reports no sync for the change"),
            None => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

fn allow_client() -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": "allow-client"},
        "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]},
    }))
    .expect("a valid NetworkPolicy")
}

/// `n` policies selecting the server, each allowing an address block of
/// its own on a port of its own (so each adds map entries), and one
/// letting the client in.
async fn create_policies(client: &kube::Client, n: usize) -> anyhow::Result<()> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    for i in 0..n {
        let policy: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": format!("p{i}")},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                     "ingress": [{"from": [{"ipBlock": {"cidr": format!("192.168.{}.{}/32", i / 250, i % 250 + 1)}}],
                                  "ports": [{"protocol": "TCP", "port": 10000 + i}]}]},
        }))?;
        api.create(&PostParams::default(), &policy).await?;
    }
    api.create(&PostParams::default(), &allow_client()).await?;
    Ok(())
}

/// Deletes every policy of the bench's namespace and waits until the
/// agent no longer enforces any.
async fn delete_policies(client: &kube::Client, admin: &Path) -> anyhow::Result<()> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    for policy in api.list(&Default::default()).await? {
        let name = policy.metadata.name.unwrap_or_default();
        api.delete(&name, &DeleteParams::default()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report: netstack::policy::PolicyReport =
            serde_json::from_str(&netstack::admin::client::get(admin, "/v1/policy").await?.body)?;
        let open = report.pods.iter().all(|p| p.ingress.isolated_by.is_empty());
        if report.policies == 0 && open {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the agent still enforces policies 60 s after they were deleted");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The API stand-in and the agent in this process, with the bench's
/// namespace and its two pods in the API.
async fn start(dir: &Path, pins: &Path) -> anyhow::Result<(standin::ApiServer, netstack::RunningAgent, kube::Client)> {
    let api = standin::ApiServer::start(standin::Options::default()).await?;
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let client = netlet::kube_client::client(Some(&kubeconfig)).await?;
    let node =
        serde_json::from_value(json!({"metadata":{"name":NODE},"spec":{"podCIDRs":["10.42.0.0/24","fd00:42::/64"]}}))?;
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await?;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    for name in ["server", "client"] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "bench"}]},
        }))?;
        Api::<Pod>::namespaced(client.clone(), NAMESPACE)
            .create(&PostParams::default(), &pod)
            .await?;
    }
    let raw: netstack::RawConfig = serde_json::from_value(json!({
        "nodeName": NODE, "stateDir": dir.join("state"), "runDir": dir.join("run"),
        "cni": {"confDir": dir.join("net.d"), "binDir": dir.join("bin")},
        "policy": {"enabled": true, "pinDir": pins},
    }))?;
    let agent = netlet::agent_cmd::agent(raw.validate(NODE)?, client.clone(), None)
        .start()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.status().ready {
        if Instant::now() > deadline {
            bail!("agent not ready: {:?}", agent.status().not_ready);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((api, agent, client))
}

/// CNI ADD for pod `bench/<name>` in `ns`; returns its IPv4 address.
fn add_pod(
    rt: &tokio::runtime::Runtime,
    plugin: &Path,
    conf: &Value,
    ns: &Netns,
    name: &str,
) -> anyhow::Result<IpAddr> {
    let ips = rt.block_on(bench::cni::cni_add(plugin, conf, ns, name, NAMESPACE, name))?;
    let ip = (ips.iter())
        .find_map(|ip| ip.parse::<IpAddr>().ok().filter(IpAddr::is_ipv4))
        .with_context(|| format!("CNI ADD of {name} gave no IPv4 address: {ips:?}"))?;
    Ok(ip)
}

fn run(argv: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(argv[0]).args(&argv[1..]).output()?;
    if !out.status.success() {
        bail!("{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Detects the moment a policy change lets packets through, finer than
/// connections can: while a change is timed, the client pod sends a UDP
/// datagram to the server pod every [`probe::PROBE_EVERY`], each carrying
/// its send time, and the first one the server receives tells when the
/// datapath began to pass them.
mod probe {
    use std::net::{IpAddr, SocketAddr, UdpSocket};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use anyhow::{bail, Context};
    use testbed::Netns;

    pub const PROBE_EVERY: Duration = Duration::from_micros(100);
    const PROBE_PORT: u16 = 7001;

    pub struct UdpProbe {
        client: UdpSocket,
        server: UdpSocket,
    }

    /// One timed change, in nanoseconds since the Unix epoch.
    pub struct TimedChange {
        /// Just before the write to the API.
        pub start: u64,
        /// The API answered the write.
        pub answered: u64,
        /// Sent time of the first datagram that got through.
        pub passed: u64,
    }

    impl UdpProbe {
        pub fn new(client: &Netns, server: &Netns, server_ip: IpAddr) -> anyhow::Result<UdpProbe> {
            let to = SocketAddr::new(server_ip, PROBE_PORT);
            let server = server.run(|| UdpSocket::bind(("0.0.0.0", PROBE_PORT)))?;
            let client = client.run(|| UdpSocket::bind(("0.0.0.0", 0)))?;
            client.connect(to)?;
            Ok(UdpProbe { client, server })
        }

        /// Times `write` (a change that lets the client through) from its
        /// start to the first datagram passing.
        pub fn time(&self, write: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<TimedChange> {
            self.drain()?;
            let stop = AtomicBool::new(false);
            let start = now();
            std::thread::scope(|s| {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        // Refused or dropped sends are what a denied flow looks like.
                        let _ = self.client.send(&now().to_le_bytes());
                        std::thread::sleep(PROBE_EVERY);
                    }
                });
                let timed = write().and_then(|()| {
                    let answered = now();
                    let passed = self.first_sent_since(start)?;
                    Ok(TimedChange {
                        start,
                        answered,
                        passed,
                    })
                });
                stop.store(true, Ordering::Relaxed);
                timed
            })
        }

        /// Forgets datagrams of earlier changes.
        fn drain(&self) -> anyhow::Result<()> {
            self.server.set_nonblocking(true)?;
            let mut buf = [0u8; 8];
            while self.server.recv(&mut buf).is_ok() {}
            self.server.set_nonblocking(false)?;
            Ok(())
        }

        fn first_sent_since(&self, start: u64) -> anyhow::Result<u64> {
            self.server.set_read_timeout(Some(Duration::from_secs(30)))?;
            let mut buf = [0u8; 8];
            loop {
                let n = (self.server.recv(&mut buf)).context("no probe got through within 30 s of the change")?;
                if n != buf.len() {
                    bail!("a probe of {n} bytes: not ours");
                }
                let sent = u64::from_le_bytes(buf);
                if sent >= start {
                    return Ok(sent);
                }
            }
        }
    }

    pub fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

/// Where the time of each change goes, from the bench's own moments and
/// the agent's record of its syncs (`/v1/policy`, the same clock: the
/// agent runs in this process).
mod breakdown {
    use netstack::policy::SyncTimes;

    use super::probe::{TimedChange, PROBE_EVERY};

    /// Milliseconds per stage of one change.
    pub struct Breakdown([f64; STAGES.len()]);

    const STAGES: [&str; 8] = [
        "API answered the write",
        "API write -> event in the agent's cache",
        "event in cache -> sync start",
        "compile (cache snapshot included)",
        "plan",
        "map writes",
        "maps written -> first probe through",
        "END TO END (write -> first probe through)",
    ];

    impl Breakdown {
        /// `change` split at the first sync that served an event seen after
        /// its start.
        pub fn of(change: &TimedChange, syncs: &[SyncTimes]) -> Option<Breakdown> {
            let sync = (syncs.iter()).find(|s| s.change_seen.is_some_and(|seen| seen >= change.start))?;
            let seen = sync.change_seen.unwrap_or(sync.woken);
            let ms = |from: u64, to: u64| (to as f64 - from as f64) / 1e6;
            Some(Breakdown([
                ms(change.start, change.answered),
                ms(change.start, seen),
                ms(seen, sync.started),
                ms(sync.started, sync.compiled),
                ms(sync.compiled, sync.planned),
                ms(sync.planned, sync.applied),
                ms(sync.applied, change.passed),
                ms(change.start, change.passed),
            ]))
        }
    }

    pub fn print(changes: &[Breakdown], policies: usize) {
        println!(
            "  policy created in the API -> enforced, with {policies} policies, over {} changes (probe every {:?}; target < 10 ms end to end):",
            changes.len(),
            PROBE_EVERY
        );
        println!("    {:<45} {:>8} {:>8} {:>8} {:>8}", "ms", "p50", "p99", "max", "mean");
        for (i, stage) in STAGES.iter().enumerate() {
            let mut v: Vec<f64> = changes.iter().map(|c| c.0[i]).collect();
            v.sort_by(f64::total_cmp);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            println!(
                "    {stage:<45} {:>8.3} {:>8.3} {:>8.3} {mean:>8.3}",
                rank(&v, 0.50),
                rank(&v, 0.99),
                v[v.len() - 1]
            );
        }
    }

    /// The nearest-rank percentile of sorted `v`.
    fn rank(v: &[f64], q: f64) -> f64 {
        let n = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[n - 1]
    }
}

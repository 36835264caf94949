//! The agent's footprint with every module on (CNI, Services, cluster DNS,
//! NetworkPolicy): resident memory and CPU of the whole `netlet agent`
//! process, idle and at load (1,000 Services with 5,000 endpoints, 100
//! NetworkPolicies and 100 pods wired through the CNI plugin), against the
//! target of 40 MiB for the whole stack; and the size of the stripped
//! binary against 25 MiB.
//!
//! The API stand-in runs in this process, the agent as a process of its
//! own started from a config file, both in a network namespace of this
//! benchmark's own: the pods' veths, the policy programs on them and the
//! cluster DNS addresses never touch the machine's network. Service
//! translation is attached to a cgroup of its own, the BPF maps and links
//! are pinned in a directory of their own, and names outside the cluster
//! zone go to a fixed local DNS server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::agent_process::AgentProcess;
use bench::cni::cni_add;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use testbed::Netns;

#[derive(Parser)]
struct Args {
    /// The netlet binary to measure (built with --release); also run as
    /// the CNI plugin.
    #[arg(long, default_value = "target/release/netlet")]
    netlet: PathBuf,
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints in all; each Service's slice gets an equal share.
    #[arg(long, default_value_t = 5000)]
    endpoints: usize,
    #[arg(long, default_value_t = 100)]
    policies: usize,
    /// Pods on this node, each wired by a CNI ADD into a namespace of its own.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Namespaces the pods, Services and policies are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Length of each CPU measurement.
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// Agents started one after the other, each on a fresh state; the
    /// table shows the worst of them. Whether glibc's malloc gives memory
    /// freed after the start back to the system depends on the order in
    /// which the agent's threads allocated it, so one start can differ
    /// from the next by more than 15 MiB.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Extra environment for the agent, e.g. glibc's
    /// `MALLOC_ARENA_MAX=2`; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env)]
    agent_env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))
}

const NODE: &str = "bench-node";
const RSS_TARGET_MIB: f64 = 40.0;
const BINARY_TARGET_MIB: f64 = 25.0;
/// Pod labels take one of this many `app` values per namespace.
const APPS: usize = 5;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.netlet.exists() {
        bail!(
            "{} is missing (build it with `cargo build --release -p netlet`)",
            args.netlet.display()
        );
    }
    if args.pods == 0 || args.namespaces == 0 || args.pods > 250 {
        bail!("--pods must be between 1 and 250 (one /24 of pod addresses) and --namespaces at least 1");
    }
    // Before any thread exists: this process and its children (the agent)
    // get a network namespace of their own, the node's.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET) needs root")?;
    let lo = Command::new("ip").args(["link", "set", "lo", "up"]).status()?;
    if !lo.success() {
        bail!("ip link set lo up failed");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Ctrl-C drops the run, so the namespaces, cgroup and pins go too.
    rt.block_on(async {
        tokio::select! {
            r = runs(&args) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    })
}

/// What one agent start measured.
struct Run {
    modules: Vec<String>,
    ready_in: Duration,
    idle_rss: u64,
    /// VmHWM once idle: the start's peak.
    start_peak: u64,
    /// VmHWM since the idle figures, when the kernel could reset it.
    load_peak: Option<u64>,
    idle_cpu: CpuUse,
    load_cpu: CpuUse,
    load_rss: u64,
    synced_in: Duration,
    /// Agent CPU seconds from the first object created to synced.
    sync_cpu: f64,
    threads: u64,
    loaded: Loaded,
}

async fn runs(args: &Args) -> anyhow::Result<()> {
    let binary = binary_size(&args.netlet)?;
    let mut runs = Vec::new();
    for i in 0..args.runs.max(1) {
        eprintln!("footprint: run {} of {}", i + 1, args.runs.max(1));
        runs.push(run(args).await?);
    }
    report(args, &runs, &binary);
    Ok(())
}

fn report(args: &Args, runs: &[Run], binary: &BinarySize) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let worst = |f: &dyn Fn(&Run) -> u64| runs.iter().map(f).max().unwrap_or(0);
    let worst_f = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).fold(0.0, f64::max);
    let share = |c: &CpuUse| c.ticks as f64 / clock_ticks() / c.seconds * 100.0;
    let fine = |c: &CpuUse| c.run_ns.map(|ns| ns as f64 / 1e9 / c.seconds * 100.0);
    let per_slice = args.endpoints.div_ceil(args.services.max(1));
    println!(
        "footprint: the netlet agent with every module on ({}), as its own process",
        runs.first().map(|r| r.modules.join(", ")).unwrap_or_default()
    );
    println!(
        "  load: {} Services, {} endpoints ({per_slice} per slice), {} NetworkPolicies, {} pods wired by CNI ADD, over {} namespaces",
        args.services,
        args.services * per_slice,
        args.policies,
        args.pods,
        args.namespaces
    );
    println!();
    println!("  worst of {} runs          idle        load      target", runs.len());
    let load_rss = worst(&|r| r.load_rss);
    println!(
        "  RSS (VmRSS)         {:7.1} MiB {:7.1} MiB   < {RSS_TARGET_MIB} MiB: {}",
        mib(worst(&|r| r.idle_rss)),
        mib(load_rss),
        verdict(mib(load_rss) < RSS_TARGET_MIB)
    );
    let load_peak = runs.iter().map(|r| r.load_peak).collect::<Option<Vec<_>>>();
    println!(
        "  peak RSS (VmHWM)    {:7.1} MiB {:>7} MiB   {}",
        mib(worst(&|r| r.start_peak)),
        match &load_peak {
            Some(p) => format!("{:.1}", mib(p.iter().copied().max().unwrap_or(0))),
            None => "-".to_string(),
        },
        match load_peak {
            Some(_) => "idle: the start's; load: while syncing and after",
            None => "the start's (the kernel could not reset VmHWM)",
        }
    );
    println!(
        "  CPU (utime+stime)   {:7.2} %   {:7.2} %     of one core over {} s; 1 clock tick = {:.2} %",
        worst_f(&|r| share(&r.idle_cpu)),
        worst_f(&|r| share(&r.load_cpu)),
        args.window_secs,
        100.0 / clock_ticks() / args.window_secs as f64
    );
    if runs
        .iter()
        .all(|r| r.idle_cpu.run_ns.is_some() && r.load_cpu.run_ns.is_some())
    {
        println!(
            "  CPU (run time)      {:7.3} %   {:7.3} %     the same windows, from the threads' schedstat (ns)",
            worst_f(&|r| fine(&r.idle_cpu).unwrap_or(0.0)),
            worst_f(&|r| fine(&r.load_cpu).unwrap_or(0.0))
        );
    }
    println!(
        "  binary (stripped)   {:7.1} MiB                 < {BINARY_TARGET_MIB} MiB: {}",
        mib(binary.stripped),
        verdict(mib(binary.stripped) < BINARY_TARGET_MIB)
    );
    // `strip` of a stripped binary shaves a few bytes at most.
    if binary.file - binary.stripped > 64 * 1024 {
        println!(
            "  ({} is {:.1} MiB unstripped)",
            args.netlet.display(),
            mib(binary.file)
        );
    }
    println!();
    println!(
        "  run  RSS idle  RSS load  peak start  peak load  CPU idle  CPU load  ready in  synced in  sync CPU  threads"
    );
    for (i, r) in runs.iter().enumerate() {
        let cpu = |c: &CpuUse| match fine(c) {
            Some(p) => format!("{p:.3} %"),
            None => format!("{:.2} %", share(c)),
        };
        println!(
            "  {:3}  {:8.1}  {:8.1}  {:10.1}  {:>9}  {:>8}  {:>8}  {:6.1} s  {:7.1} s  {:6.2} s  {:7}",
            i + 1,
            mib(r.idle_rss),
            mib(r.load_rss),
            mib(r.start_peak),
            r.load_peak.map_or("-".to_string(), |p| format!("{:.1}", mib(p))),
            cpu(&r.idle_cpu),
            cpu(&r.load_cpu),
            r.ready_in.as_secs_f64(),
            r.synced_in.as_secs_f64(),
            r.sync_cpu,
            r.threads
        );
    }
    println!(
        "  (MiB; CPU in % of one core; sync CPU: the agent's CPU seconds from the first object created to synced)"
    );
    if let Some(r) = runs.last() {
        println!(
            "  policy: {} pods enforced, {} identities, {} rules on them, {} invalid policies",
            args.pods, r.loaded.identities, r.loaded.rules, r.loaded.policy_errors
        );
    }
}

async fn run(args: &Args) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let api = standin::ApiServer::start(standin::Options::default()).await?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let client = netlet::kube_client::client(Some(&kubeconfig)).await?;
    let node: Node =
        serde_json::from_value(json!({"metadata":{"name":NODE},"spec":{"podCIDRs":["10.42.0.0/24","fd00:42::/64"]}}))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await?;

    let cgroup = testbed::Cgroup::new("bfoot").context("cannot create a cgroup")?;
    let pins = testbed::PinDir::new("bfoot");
    let upstream = dns::fixed::serve_fixed("127.0.0.1:0".parse()?, &[("example.internal.", "192.0.2.80".parse()?)])
        .context("cannot start the upstream DNS server")?;
    let config = dir.path().join("netlet.yaml");
    // JSON is YAML.
    std::fs::write(
        &config,
        serde_json::to_string_pretty(&json!({
            "nodeName": NODE,
            "kubeconfig": kubeconfig,
            "stateDir": dir.path().join("state"),
            "runDir": dir.path().join("run"),
            "cni": {"confDir": dir.path().join("net.d"), "binDir": dir.path().join("bin")},
            "services": {"enabled": true, "cgroup": cgroup.path(), "pinDir": pins.path()},
            "dns": {"enabled": true, "upstreams": [upstream.to_string()]},
            "policy": {"enabled": true, "pinDir": pins.path().join("policy")},
            "shutdownGraceSeconds": 5,
        }))?,
    )?;
    let socket = dir.path().join("run/admin.sock");
    let socket = socket.as_path();
    let mut agent = AgentProcess(
        Command::new(&args.netlet)
            .arg("agent")
            .arg("--config")
            .arg(&config)
            .env("NETLET_LOG", "warn")
            .envs(args.agent_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", args.netlet.display()))?,
    );
    let pid = agent.0.id();

    // Idle: every module up, nothing to do.
    let started = Instant::now();
    let modules = wait_until("every module running", &mut agent, move || async move {
        let status = admin(socket, "/v1/status").await?;
        let running: Vec<String> = (status["modules"].as_array().into_iter().flatten())
            .map(|m| m["name"].as_str().unwrap_or("?").to_string())
            .collect();
        let all_on = status["ready"] == true
            && admin(socket, "/v1/policy").await?["enforcing"] == true
            && admin(socket, "/v1/dns").await?["listen"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
            && admin(socket, "/v1/services").await?.is_array();
        Ok(all_on.then_some(running))
    })
    .await?;
    let ready_in = started.elapsed();
    let idle_rss = settle_rss(pid).await?;
    // The peak so far is the start's; from here on it is the load's.
    let start_peak = proc_status_bytes(pid, "VmHWM:")?;
    let peak_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let idle_cpu = cpu_use(pid, Duration::from_secs(args.window_secs)).await?;

    // Load.
    let load_started = Instant::now();
    let cpu_before = cpu_ticks(pid)?;
    let per_slice = args.endpoints.div_ceil(args.services.max(1));
    let conf = json!({"cniVersion": "1.0.0", "name": "netlet", "type": "netlet", "agentSocket": dir.path().join("run/cni.sock")});
    let pods = create_pods(&client, args, &conf).await?;
    create_policies(&client, args).await?;
    create_services(&client, args, &pods, per_slice).await?;
    let names: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    let names = &names;
    let loaded = wait_until("the load synced", &mut agent, move || async move {
        let status = admin(socket, "/v1/status").await?;
        let count = |kind: &str| {
            (status["cache"].as_array().into_iter().flatten())
                .find(|k| k["kind"] == kind)
                .and_then(|k| k["objects"].as_u64())
                .unwrap_or(0) as usize
        };
        if status["ready"] != true
            || count("Service") < args.services
            || count("EndpointSlice") < args.services
            || count("Pod") < args.pods
            || count("NetworkPolicy") < args.policies
        {
            return Ok(None);
        }
        let policy = admin(socket, "/v1/policy").await?;
        let enforced: Vec<&Value> = (policy["pods"].as_array().into_iter().flatten())
            .filter(|p| {
                p["pod"].as_str().is_some_and(|n| names.contains(n))
                    && p["identity"].as_u64().unwrap_or(0) != 0
                    && is_isolated(&p["ingress"])
                    && is_isolated(&p["egress"])
            })
            .collect();
        let dns = admin(socket, "/v1/dns").await?;
        if policy["policies"].as_u64() != Some(args.policies as u64)
            || enforced.len() != args.pods
            || dns["zoneSynced"] != true
            || dns["zoneServices"].as_u64().unwrap_or(0) < args.services as u64
        {
            return Ok(None);
        }
        // The most expensive read (every map entry): last.
        let services = admin(socket, "/v1/services").await?;
        let complete = (services.as_array().into_iter().flatten())
            .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with("svc-")))
            .filter(|s| {
                let frontends = s["frontends"].as_array();
                frontends.is_some_and(|f| {
                    !f.is_empty()
                        && f.iter()
                            .all(|f| f["backends"].as_array().is_some_and(|b| b.len() == per_slice))
                })
            })
            .count();
        if complete != args.services {
            return Ok(None);
        }
        let rules: u64 = enforced
            .iter()
            .map(|p| p["ingress"]["rules"].as_u64().unwrap_or(0) + p["egress"]["rules"].as_u64().unwrap_or(0))
            .sum();
        Ok(Some(Loaded {
            identities: policy["identities"].as_u64().unwrap_or(0),
            rules,
            policy_errors: policy["errors"].as_array().map_or(0, Vec::len),
        }))
    })
    .await?;
    let synced_in = load_started.elapsed();
    let sync_cpu = (cpu_ticks(pid)? - cpu_before) as f64 / clock_ticks();
    let load_rss = settle_rss(pid).await?;
    let load_cpu = cpu_use(pid, Duration::from_secs(args.window_secs)).await?;
    let load_peak = proc_status_bytes(pid, "VmHWM:")?;
    let threads = proc_status_field(pid, "Threads:")?;
    agent.stop();
    drop(api);
    Ok(Run {
        modules,
        ready_in,
        idle_rss,
        start_peak,
        load_peak: peak_reset.then_some(load_peak),
        idle_cpu,
        load_cpu,
        load_rss,
        synced_in,
        sync_cpu,
        threads,
        loaded,
    })
}

struct Loaded {
    identities: u64,
    rules: u64,
    policy_errors: usize,
}

fn is_isolated(direction: &Value) -> bool {
    (direction["isolatedBy"].as_array().into_iter().flatten()).any(|p| p.as_str().is_some_and(|p| !p.starts_with('(')))
}

/// A GET on the admin API, as JSON; an error while the agent cannot
/// answer it yet.
async fn admin(socket: &Path, path: &str) -> anyhow::Result<Value> {
    let resp = netstack::admin::client::get(socket, path).await?;
    if resp.status != 200 {
        bail!("{path}: {} {}", resp.status, resp.body.trim());
    }
    Ok(serde_json::from_str(&resp.body)?)
}

/// Polls `check` every 250 ms for up to 5 minutes, until it gives a value.
async fn wait_until<T, F, Fut>(what: &str, agent: &mut AgentProcess, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = agent.exited() {
            bail!("the agent exited ({status}) before {what}");
        }
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "not yet".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("the agent did not reach {what} within 5 minutes (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

struct PodInfo {
    /// `namespace/name`
    name: String,
    namespace: String,
    ipv4: String,
    _netns: Netns,
}

fn namespace_of(i: usize, args: &Args) -> String {
    format!("ns-{}", i % args.namespaces)
}

/// The namespaces and pods in the API, each pod wired by a real CNI ADD
/// with the plugin binary into a network namespace of its own, then given
/// its addresses in its status, as kubelet does.
async fn create_pods(client: &kube::Client, args: &Args, conf: &Value) -> anyhow::Result<Vec<PodInfo>> {
    let pp = PostParams::default();
    for n in 0..args.namespaces {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": format!("ns-{n}"),
            "labels": {"kubernetes.io/metadata.name": format!("ns-{n}"), "team": format!("team-{}", n % APPS)}}}))?;
        Api::<Namespace>::all(client.clone()).create(&pp, &ns).await?;
    }
    let jobs = (0..args.pods).map(|i| {
        let (client, pp) = (client.clone(), pp.clone());
        async move {
            let namespace = namespace_of(i, args);
            let name = format!("pod-{i}");
            let api: Api<Pod> = Api::namespaced(client, &namespace);
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {
                    "app": format!("app-{}", (i / args.namespaces) % APPS),
                    "role": if i % 2 == 0 { "frontend" } else { "backend" }}},
                "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "registry.example/app:1.0",
                    "ports": [{"name": "http", "containerPort": 8080},
                              {"name": "metrics", "containerPort": 9090},
                              {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]},
                "status": {"phase": "Pending"},
            }))?;
            api.create(&pp, &pod).await?;
            let netns = Netns::new("bfp")?;
            let ips = cni_add(&args.netlet, conf, &netns, &format!("foot{i}"), &namespace, &name).await?;
            let ipv4 = ips
                .iter()
                .find(|ip| !ip.contains(':'))
                .cloned()
                .with_context(|| format!("CNI ADD of {namespace}/{name} gave no IPv4 address"))?;
            let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running", "podIP": ipv4, "podIPs": pod_ips}})),
            )
            .await?;
            anyhow::Ok(PodInfo {
                name: format!("{namespace}/{name}"),
                namespace,
                ipv4,
                _netns: netns,
            })
        }
    });
    futures::stream::iter(jobs)
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Policies spread over the namespaces, each selecting the pods of one
/// `app` label (so every pod is isolated both ways by two of them), with
/// pod, namespace and ipBlock peers on named and numeric ports and ranges.
async fn create_policies(client: &kube::Client, args: &Args) -> anyhow::Result<()> {
    let jobs = (0..args.policies).map(|k| {
        let client = client.clone();
        async move {
            let n = k % args.namespaces;
            let j = k / args.namespaces;
            let policy: NetworkPolicy = serde_json::from_value(json!({
                "metadata": {"name": format!("pol-{k}")},
                "spec": {
                    "podSelector": {"matchLabels": {"app": format!("app-{}", j % APPS)}},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {"from": [
                            {"podSelector": {"matchLabels": {"app": format!("app-{}", (j + 1) % APPS)}}},
                            {"namespaceSelector": {"matchLabels": {"team": format!("team-{}", (n + j) % APPS)}},
                             "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["frontend"]}]}},
                         ],
                         "ports": [{"protocol": "TCP", "port": "http"}, {"protocol": "TCP", "port": 9000 + k}]},
                        {"from": [{"ipBlock": {"cidr": format!("192.168.{}.0/24", k % 256),
                                               "except": [format!("192.168.{}.128/25", k % 256)]}}],
                         "ports": [{"protocol": "TCP", "port": "metrics"}]},
                    ],
                    "egress": [
                        {"to": [{"namespaceSelector": {}}],
                         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "UDP", "port": "dns"}]},
                        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": format!("ns-{}", (n + 1) % args.namespaces)}},
                                 "podSelector": {"matchLabels": {"app": format!("app-{}", (j + 2) % APPS)}}}],
                         "ports": [{"protocol": "TCP", "port": "http"},
                                   {"protocol": "TCP", "port": 8000, "endPort": 8000 + 100 + k as i32}]},
                    ],
                },
            }))?;
            Api::<NetworkPolicy>::namespaced(client, &format!("ns-{n}"))
                .create(&PostParams::default(), &policy)
                .await?;
            anyhow::Ok(())
        }
    });
    run_all(jobs).await
}

/// Services spread over the namespaces, each with one EndpointSlice of
/// `per_slice` endpoints on pods of its namespace.
async fn create_services(client: &kube::Client, args: &Args, pods: &[PodInfo], per_slice: usize) -> anyhow::Result<()> {
    let jobs = (0..args.services).map(|i| {
        let client = client.clone();
        async move {
            let namespace = namespace_of(i, args);
            let local: Vec<&PodInfo> = pods.iter().filter(|p| p.namespace == namespace).collect();
            let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
            let slices: Api<EndpointSlice> = Api::namespaced(client, &namespace);
            let pp = PostParams::default();
            let svc: Service = serde_json::from_value(json!({"metadata": {"name": format!("svc-{i}")}, "spec": {
                // Away from 10.43.0.1 (kept by the API server) and the
                // clusterDNS address 10.43.0.10.
                "clusterIP": format!("10.43.{}.{}", i / 250 + 1, i % 250 + 2),
                "selector": {"app": format!("app-{}", i % APPS)},
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}))?;
            services.create(&pp, &svc).await?;
            let endpoints: Vec<Value> = (0..per_slice)
                .map(|j| {
                    let (address, target) = match local.get((i / args.namespaces * per_slice + j) % local.len().max(1)) {
                        // Pods of the namespace, while there are enough.
                        Some(p) if per_slice <= local.len() => (
                            p.ipv4.clone(),
                            json!({"kind": "Pod", "namespace": namespace, "name": p.name.split('/').nth(1)}),
                        ),
                        // Made-up addresses otherwise.
                        _ => {
                            let n = i * per_slice + j;
                            (
                                format!("10.44.{}.{}", n / 250, n % 250 + 1),
                                json!({"kind": "Pod", "namespace": namespace, "name": format!("remote-{n}")}),
                            )
                        }
                    };
                    json!({"addresses": [address], "conditions": {"ready": true}, "nodeName": NODE, "targetRef": target})
                })
                .collect();
            let slice: EndpointSlice = serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}-abcde"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                "addressType": "IPv4", "endpoints": endpoints,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))?;
            slices.create(&pp, &slice).await?;
            anyhow::Ok(())
        }
    });
    run_all(jobs).await
}

async fn run_all(
    jobs: impl Iterator<Item = impl std::future::Future<Output = anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let results: Vec<_> = futures::stream::iter(jobs).buffer_unordered(16).collect().await;
    results.into_iter().collect()
}

/// Resident memory once it stops moving (allocator caches settle within
/// a second or two after a burst).
async fn settle_rss(pid: u32) -> anyhow::Result<u64> {
    let mut last = proc_status_bytes(pid, "VmRSS:")?;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = proc_status_bytes(pid, "VmRSS:")?;
        if now.abs_diff(last) < 64 * 1024 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn proc_status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// A `kB` field of /proc/PID/status, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    Ok(proc_status_field(pid, field)? * 1024)
}

/// utime + stime of the whole process (every thread), in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no field {n} in /proc/{pid}/stat"))
    };
    Ok(field(14)? + field(15)?)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// The run time (ns) of each live thread of the process, when the kernel
/// keeps it (`/proc/PID/task/TID/schedstat`): finer than clock ticks.
fn run_ns(pid: u32) -> Option<BTreeMap<u64, u64>> {
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task = task.ok()?;
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may end between the listing and the read.
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            threads.insert(tid, text.split_whitespace().next()?.parse().ok()?);
        }
    }
    Some(threads)
}

/// Run time between two [`run_ns`] readings: threads that lived through
/// both, and threads started in between in full. A thread that ended in
/// between takes its share along.
fn run_between(before: &BTreeMap<u64, u64>, after: &BTreeMap<u64, u64>) -> u64 {
    after
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

struct CpuUse {
    ticks: u64,
    run_ns: Option<u64>,
    seconds: f64,
}

/// The CPU the process used over `window`, without asking it anything.
async fn cpu_use(pid: u32, window: Duration) -> anyhow::Result<CpuUse> {
    let (ticks, run) = (cpu_ticks(pid)?, run_ns(pid));
    let start = Instant::now();
    tokio::time::sleep(window).await;
    Ok(CpuUse {
        ticks: cpu_ticks(pid)? - ticks,
        run_ns: run.zip(run_ns(pid)).map(|(before, after)| run_between(&before, &after)),
        seconds: start.elapsed().as_secs_f64(),
    })
}

struct BinarySize {
    file: u64,
    stripped: u64,
}

/// The binary's size, and a stripped copy's (the same when the release
/// profile strips already, or when `strip` is not installed).
fn binary_size(path: &Path) -> anyhow::Result<BinarySize> {
    let file = std::fs::metadata(path)?.len();
    let copy = tempfile::NamedTempFile::new()?;
    let stripped = match Command::new("strip")
        .arg("-o")
        .arg(copy.path())
        .arg(path)
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => std::fs::metadata(copy.path())?.len().min(file),
        _ => file,
    };
    Ok(BinarySize { file, stripped })
}

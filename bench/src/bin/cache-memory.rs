//! Agent memory with a loaded cache: starts the API stand-in, runs the
//! `netlet agent` binary against it as its own process, and prints the
//! agent's resident memory idle and after it has synced 1,000 Services,
//! 5,000 EndpointSlice endpoints and 1,000 Pods of its node.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::StreamExt;
use kube::api::{Api, PostParams};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The netlet binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/netlet")]
    netlet: PathBuf,
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints in all; each Service's slice gets an equal share.
    #[arg(long, default_value_t = 5000)]
    endpoints: usize,
    #[arg(long, default_value_t = 1000)]
    pods: usize,
}

const NODE: &str = "bench-node";
const TARGET_MIB: f64 = 25.0;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = standin::ApiServer::start(standin::Options::default()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let socket = dir.path().join("run/admin.sock");
    let client = api.client().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    // The agent's CNI module becomes ready once its Node has pod CIDRs.
    let node = serde_json::from_value(json!({"metadata":{"name":NODE},"spec":{"podCIDRs":["10.42.0.0/24"]}}))?;
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await?;

    let mut agent = Agent(
        Command::new(&args.netlet)
            .args(["agent", "--node-name", NODE, "--kubeconfig"])
            .arg(&kubeconfig)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .arg("--cni-conf-dir")
            .arg(dir.path().join("net.d"))
            .arg("--cni-bin-dir")
            .arg(dir.path().join("bin"))
            .env("NETLET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (build it with `cargo build --release -p netlet`)",
                    args.netlet.display()
                )
            })?,
    );
    wait_for(&socket, |s| s["ready"] == true).await?;
    let idle = settle_rss(agent.0.id()).await?;

    let started = Instant::now();
    populate(&client, &args).await?;
    let per_slice = args.endpoints.div_ceil(args.services.max(1));
    wait_for(&socket, |s| {
        let count = |kind: &str| {
            s["cache"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["kind"] == kind)
                .map(|k| k["objects"].as_u64().unwrap_or(0))
        };
        count("Service") == Some(args.services as u64)
            && count("EndpointSlice") == Some(args.services as u64)
            && count("Pod") == Some(args.pods as u64)
    })
    .await?;
    let synced_in = started.elapsed();
    let loaded = settle_rss(agent.0.id()).await?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);

    println!(
        "cache-memory: {} Services, {} endpoints ({} per slice), {} Pods",
        args.services,
        args.services * per_slice,
        per_slice,
        args.pods
    );
    println!("  agent RSS idle:    {:6.1} MiB", mib(idle));
    println!(
        "  agent RSS loaded:  {:6.1} MiB   (target < {TARGET_MIB} MiB: {})",
        mib(loaded),
        if mib(loaded) < TARGET_MIB { "met" } else { "MISSED" }
    );
    println!("  loaded / idle:     {:6.2}x", loaded as f64 / idle as f64);
    println!("  created and synced in {:.1} s", synced_in.as_secs_f64());
    agent.stop();
    Ok(())
}

/// Kills the agent even when the benchmark fails half-way.
struct Agent(Child);

impl Agent {
    fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

async fn populate(client: &kube::Client, args: &Args) -> anyhow::Result<()> {
    let per_slice = args.endpoints.div_ceil(args.services.max(1));
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    let svc_jobs = (0..args.services).map(|i| {
        let (services, slices, pp) = (services.clone(), slices.clone(), pp.clone());
        async move {
            let svc = serde_json::from_value(json!({"metadata":{"name":format!("svc-{i}")},"spec":{
                // From .2: the API server keeps 10.43.0.1 for `kubernetes`.
                "clusterIP": format!("10.43.{}.{}", i / 250, i % 250 + 2),
                "selector":{"app":format!("app-{i}")},
                "ports":[{"name":"http","port":80,"targetPort":8080,"protocol":"TCP"}]}}))?;
            services.create(&pp, &svc).await?;
            let endpoints: Vec<_> = (0..per_slice)
                .map(|j| {
                    let n = i * per_slice + j;
                    json!({"addresses":[format!("10.42.{}.{}", n / 250, n % 250 + 1)],
                       "conditions":{"ready":true},"nodeName":NODE,
                       "targetRef":{"kind":"Pod","namespace":"default","name":format!("pod-{n}")}})
                })
                .collect();
            let slice = serde_json::from_value(json!({"metadata":{"name":format!("svc-{i}-abcde"),
                "labels":{"kubernetes.io/service-name":format!("svc-{i}")}},
                "addressType":"IPv4","endpoints":endpoints,"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}))?;
            slices.create(&pp, &slice).await?;
            anyhow::Ok(())
        }
    });
    run_all(svc_jobs).await?;

    let pod_jobs = (0..args.pods).map(|i| {
        let (pods, pp) = (pods.clone(), pp.clone());
        async move {
            let pod = serde_json::from_value(json!({"metadata":{"name":format!("pod-{i}"),
                "labels":{"app":format!("app-{}", i % args.services.max(1))}},
                "spec":{"nodeName":NODE,"containers":[{"name":"app","image":"registry.example/app:1.0",
                    "ports":[{"name":"http","containerPort":8080}],
                    "env":[{"name":"MODE","value":"bench"}]}]},
                "status":{"phase":"Running","podIP":format!("10.42.{}.{}", i / 250, i % 250 + 1)}}))?;
            pods.create(&pp, &pod).await?;
            anyhow::Ok(())
        }
    });
    run_all(pod_jobs).await
}

async fn run_all(
    jobs: impl Iterator<Item = impl std::future::Future<Output = anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let results: Vec<_> = futures::stream::iter(jobs).buffer_unordered(16).collect().await;
    results.into_iter().collect()
}

async fn wait_for(socket: &std::path::Path, want: impl Fn(&serde_json::Value) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(resp) = netstack::admin::client::get(socket, "/v1/status").await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&resp.body) {
                if want(&v) {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the agent did not reach the expected state within 120 s")
}

/// Resident memory once it stops moving (allocator caches settle within
/// a second or two after a burst).
async fn settle_rss(pid: u32) -> anyhow::Result<u64> {
    let mut last = rss(pid)?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss(pid)?;
        if now.abs_diff(last) < 64 * 1024 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kib * 1024)
}

//! CNI ADD+DEL latency: netlet against the reference plugins (Debian's
//! containernetworking-plugins `bridge` with `host-local` IPAM) doing the
//! same work, dual-stack, measured in one run and interleaved so both see
//! the same machine. The whole benchmark runs in a network namespace of its
//! own, so neither side touches the machine's network.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use testbed::Netns;

#[derive(Parser)]
struct Args {
    /// The netlet binary to measure, as the runtime would exec it.
    #[arg(long, default_value = "target/release/netlet")]
    netlet: PathBuf,
    /// Where the reference plugins live.
    #[arg(long, default_value = "/usr/lib/cni")]
    reference: PathBuf,
    #[arg(long, default_value_t = 200)]
    iterations: usize,
}

const NODE: &str = "bench-node";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for needed in [
        args.netlet.clone(),
        args.reference.join("bridge"),
        args.reference.join("host-local"),
    ] {
        if !needed.exists() {
            bail!(
                "{} is missing (build netlet with --release; `make bench-cni` installs the reference plugins)",
                needed.display()
            );
        }
    }
    // Before any thread exists: this process and its children get a
    // network namespace of their own.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET) needs root")?;
    run(&["ip", "link", "set", "lo", "up"])?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let _api_and_agent = rt.block_on(start_agent(dir.path()))?;

    let netlet_conf = json!({"cniVersion": "1.0.0", "name": "netlet", "type": "netlet", "agentSocket": dir.path().join("run/cni.sock")});
    let reference_conf = json!({"cniVersion": "1.0.0", "name": "ref", "type": "bridge", "bridge": "cni0", "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": dir.path().join("host-local"),
                 "ranges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd00:88::/64"}]]}});

    let mut netlet_times = Vec::with_capacity(args.iterations);
    let mut reference_times = Vec::with_capacity(args.iterations);
    for i in 0..args.iterations {
        // A namespace each, as two pods would have.
        let (ns_netlet, ns_reference) = (Netns::new("cln")?, Netns::new("clr")?);
        netlet_times.push(add_del(
            &args.netlet,
            &args.reference,
            &netlet_conf,
            &ns_netlet,
            &format!("nl{i}"),
        )?);
        reference_times.push(add_del(
            &args.reference.join("bridge"),
            &args.reference,
            &reference_conf,
            &ns_reference,
            &format!("ref{i}"),
        )?);
    }
    // netlet's DEL leaves deleting the veth to a background reaper; say
    // how long after the last DEL it was done, so no work goes unseen.
    let last_del = Instant::now();
    while retired_links()? > 0 {
        if last_del.elapsed() > Duration::from_secs(30) {
            bail!("retired pod interfaces were not deleted within 30 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let reaped_after = last_del.elapsed();
    let page = rt
        .block_on(netstack::admin::client::get(
            &dir.path().join("run/admin.sock"),
            "/metrics",
        ))?
        .body;
    let (n50, n99) = percentiles(&mut netlet_times);
    let (r50, r99) = percentiles(&mut reference_times);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cni-latency: {} dual-stack ADD+DEL pairs each, interleaved",
        args.iterations
    );
    println!("  netlet           p50 {:7.2} ms   p99 {:7.2} ms", ms(n50), ms(n99));
    println!("  bridge+host-local p50 {:7.2} ms   p99 {:7.2} ms", ms(r50), ms(r99));
    println!(
        "  netlet / reference: p50 {:.2}x, p99 {:.2}x   (target: p50 at most 0.50x)",
        ms(n50) / ms(r50),
        ms(n99) / ms(r99)
    );
    println!(
        "  netlet's reaper deleted the last retired veth {:.2} ms after the last DEL",
        ms(reaped_after)
    );
    for verb in ["ADD", "DEL"] {
        let series = |suffix: &str| {
            let prefix = format!("netlet_cni_request_duration_seconds_{suffix}{{verb=\"{verb}\"}} ");
            page.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        println!(
            "  inside the agent: {verb} mean {:.2} ms",
            series("sum") * 1000.0 / series("count").max(1.0)
        );
    }
    Ok(())
}

/// Starts the API stand-in and the agent in this process.
async fn start_agent(dir: &Path) -> anyhow::Result<(standin::ApiServer, netstack::RunningAgent)> {
    let api = standin::ApiServer::start(standin::Options::default()).await?;
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let client = netlet::kube_client::client(Some(&kubeconfig)).await?;
    let node =
        serde_json::from_value(json!({"metadata":{"name":NODE},"spec":{"podCIDRs":["10.42.0.0/16","fd00:42::/64"]}}))?;
    kube::Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .create(&Default::default(), &node)
        .await?;
    let raw: netstack::RawConfig = serde_json::from_value(json!({
        "nodeName": NODE, "stateDir": dir.join("state"), "runDir": dir.join("run"),
        "cni": {"confDir": dir.join("net.d"), "binDir": dir.join("bin")},
    }))?;
    let agent = netlet::agent_cmd::agent(raw.validate(NODE)?, client, None)
        .start()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.status().ready {
        if Instant::now() > deadline {
            bail!("the agent did not become ready: {:?}", agent.status().not_ready);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((api, agent))
}

/// Time of one ADD and the DEL that undoes it.
fn add_del(plugin: &Path, cni_path: &Path, conf: &Value, ns: &Netns, id: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for command in ["ADD", "DEL"] {
        let mut child = Command::new(plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", ns.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(conf.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{} {command} failed: {}",
                plugin.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    Ok(start.elapsed())
}

/// Pod interfaces netlet's DEL retired that still exist.
fn retired_links() -> anyhow::Result<usize> {
    let group = netstack::wire::RETIRED_GROUP.to_string();
    let out = Command::new("ip")
        .args(["-o", "link", "show", "group", &group])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

fn percentiles(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.50), at(0.99))
}

fn run(argv: &[&str]) -> anyhow::Result<()> {
    let ok = Command::new(argv[0]).args(&argv[1..]).status()?.success();
    if !ok {
        bail!("{} failed", argv.join(" "));
    }
    Ok(())
}

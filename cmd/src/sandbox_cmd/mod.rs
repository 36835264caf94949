//! `netlet sandbox`: a one-machine cluster for networking. It starts the API
//! stand-in and the agent, plays the cluster parts netlet does not replace
//! (a kubelet, the EndpointSlice controller and a one-node scheduler),
//! applies the example manifests, and reports what works.

mod apply;
mod cache_check;
mod checks;
mod dns_check;
mod policy_check;
mod report;
mod scheduler;
mod service_check;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use netstack::RawConfig;
use sandbox::{EndpointSliceController, Kubelet, KubeletConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::SandboxArgs;
use report::Report;

/// The sandbox's node.
pub const NODE: &str = "netlet-sandbox";

pub fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init_quiet();
    anyhow::ensure!(
        testbed::privileged(),
        "netlet sandbox needs root: it creates network namespaces for its pods"
    );
    crate::agent_cmd::runtime()?.block_on(sandbox(args))
}

/// The sandbox's files: a temporary directory removed at the end, or the
/// one given with --dir (kept).
struct Workdir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Workdir {
    fn new(dir: Option<PathBuf>) -> anyhow::Result<Workdir> {
        match dir {
            Some(path) => {
                std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
                Ok(Workdir { path, _temp: None })
            }
            None => {
                let temp = tempfile::Builder::new().prefix("netlet-sandbox-").tempdir()?;
                Ok(Workdir {
                    path: temp.path().to_path_buf(),
                    _temp: Some(temp),
                })
            }
        }
    }
}

async fn sandbox(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let work = Workdir::new(args.dir.clone())?;
    let api = standin::ApiServer::start(standin::Options::default()).await?;
    let kubeconfig = work.path.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig)?;
    let client = crate::kube_client::client(Some(&kubeconfig)).await?;
    register_node(&client).await?;

    // Service translation is attached to a cgroup of the sandbox's own,
    // with its maps pinned apart from a real agent's, so the machine's other
    // processes are not affected.
    let cgroup = testbed::Cgroup::new("sandbox").context("cannot create the sandbox's cgroup")?;
    let pins = testbed::PinDir::new("sandbox");
    // The node's resolver for names outside the cluster, answering the
    // example ExternalName's target.
    let (outside, outside_ip) = dns_check::OUTSIDE;
    let upstream = dns::fixed::serve_fixed("127.0.0.1:0".parse()?, &[(outside, outside_ip.parse()?)])
        .context("cannot start the sandbox's upstream DNS server")?;
    let config = agent_config(&work.path, &kubeconfig, cgroup.path(), pins.path(), upstream)?;
    let socket = config.admin.socket.clone();
    let cluster_dns = config.cluster_dns.clone();
    let dns_server = *cluster_dns.first().context("no clusterDNS address")?;
    let cni = config.cni.clone();
    let exe = std::env::current_exe().context("cannot find the netlet binary")?;
    let agent = crate::agent_cmd::agent(config, client.clone(), Some(exe))
        .start()
        .await?;

    let cancel = CancellationToken::new();
    let mut parts = JoinSet::new();
    let kubelet = Kubelet::new(kubelet_config(&cni).await?);
    let pods = kubelet.pods();
    parts.spawn({
        let (c, t) = (client.clone(), cancel.clone());
        async move {
            if let Err(e) = kubelet.run(c, t).await {
                tracing::error!(error = %e, "sandbox kubelet stopped");
            }
        }
    });
    parts.spawn(EndpointSliceController::run(client.clone(), cancel.clone()));
    parts.spawn(scheduler::run(client.clone(), NODE.to_string(), cancel.clone()));

    println!("netlet sandbox: API stand-in at {}, node {NODE}", api.url());
    let mut report = Report::default();
    let interrupted = tokio::select! {
        r = checks::run(&client, &agent, &pods, &args.examples, &cgroup, dns_server, &mut report) => { r?; false }
        _ = crate::agent_cmd::terminated() => true,
    };
    println!("{}", report.summary());

    if args.keep && !interrupted {
        println!();
        println!("The sandbox keeps running; Ctrl-C removes everything it made.");
        println!(
            "  kubectl --kubeconfig {} get pods,svc,endpointslices -A",
            kubeconfig.display()
        );
        println!("  netlet status --socket {}", socket.display());
        crate::agent_cmd::terminated().await;
    }

    // Teardown: the kubelet runs CNI DEL and removes every namespace.
    cancel.cancel();
    while parts.join_next().await.is_some() {}
    agent.shutdown().await;
    // The agent leaves the cluster DNS addresses in place for its next
    // start; the sandbox has no next start.
    if let Err(e) = netstack::dns::release(&cluster_dns).await {
        eprintln!("netlet sandbox: cannot remove the cluster DNS addresses: {e}");
    }
    // Nor the egress NAT table.
    if let Err(e) = netstack::egress::release() {
        eprintln!("netlet sandbox: cannot remove the egress NAT table: {e}");
    }
    // Unpinning the links detaches the programs; the maps go with them.
    drop(pins);
    api.shutdown().await;
    println!("netlet sandbox: cleaned up");
    Ok(if interrupted || report.failures() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn register_node(client: &kube::Client) -> anyhow::Result<()> {
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .context("cannot register the sandbox node")?;
    Ok(())
}

fn agent_config(
    dir: &Path,
    kubeconfig: &Path,
    cgroup: &Path,
    pins: &Path,
    upstream: std::net::SocketAddr,
) -> anyhow::Result<netstack::Config> {
    let raw: RawConfig = serde_json::from_value(serde_json::json!({
        "nodeName": NODE,
        "kubeconfig": kubeconfig,
        "stateDir": dir.join("state"),
        "runDir": dir.join("run"),
        "cni": {"confDir": dir.join("cni/net.d"), "binDir": dir.join("cni/bin")},
        "services": {"enabled": true, "cgroup": cgroup, "pinDir": pins},
        "dns": {"enabled": true, "upstreams": [upstream.to_string()]},
        "policy": {"enabled": true, "pinDir": pins.join("policy")},
        "shutdownGraceSeconds": 5,
    }))?;
    Ok(raw.validate(NODE)?)
}

/// The kubelet waits, as a real one does, for the network config the
/// agent writes once it is ready, and runs the plugin the agent installed.
async fn kubelet_config(cni: &netstack::config::CniConfig) -> anyhow::Result<KubeletConfig> {
    let conflist = cni.conf_dir.join(netstack::cni::install::CONFLIST_NAME);
    if !wait_until(Duration::from_secs(60), || async { conflist.exists() }).await {
        anyhow::bail!("the agent did not write {} within 60 s", conflist.display());
    }
    let text = std::fs::read(&conflist).with_context(|| format!("cannot read {}", conflist.display()))?;
    Ok(KubeletConfig {
        node_name: NODE.into(),
        cni_plugin: cni.bin_dir.join("netlet"),
        cni_conf: serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", conflist.display()))?,
        cni_path: vec![cni.bin_dir.clone()],
        netns_prefix: "sbx".into(),
        ifname: "eth0".into(),
        teardown_on_exit: true,
    })
}

/// Polls `cond` every 100 ms for up to `within`.
pub(crate) async fn wait_until<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

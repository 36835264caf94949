//! `netlet agent`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use netstack::{Agent, Config, RunningAgent};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::AgentArgs;

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init();
    return_freed_memory();
    let config = args.config.load()?;
    let notifier = crate::install::notify::Notifier::from_env();
    runtime()?.block_on(async {
        let agent = start(config).await?;
        let clean = match notifier {
            // Under systemd (Type=notify): READY=1 once ready, STOPPING=1 on the way out.
            Some(notifier) => crate::install::notify::run_until(agent, notifier, terminated()).await,
            None => agent.run_until(terminated()).await,
        };
        Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

/// The agent's runtime. Two workers: the agent mostly waits on the API and
/// the kernel, and each worker thread costs memory on small nodes.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Builds the client and starts the agent, which installs this binary as
/// the CNI plugin.
pub async fn start(config: Config) -> anyhow::Result<RunningAgent> {
    let client = crate::kube_client::client(config.kubeconfig.as_deref()).await?;
    let exe = std::env::current_exe().context("cannot find the netlet binary to install as the CNI plugin")?;
    Ok(agent(config, client, Some(exe)).start().await?)
}

/// The agent with every module this build has. `plugin_binary` is the
/// netlet binary to install as the CNI plugin, if the agent should.
pub fn agent(config: Config, client: kube::Client, plugin_binary: Option<PathBuf>) -> Agent {
    let mut cni = match plugin_binary {
        Some(binary) => netstack::cni::CniModule::installing(binary),
        None => netstack::cni::CniModule::default(),
    };
    let (services, dns, policy) = (config.services.enabled, config.dns.enabled, config.policy.enabled);
    let routing = config.routing.mode;
    let policy = policy.then(netstack::policy::PolicyModule::default);
    if let Some(policy) = &policy {
        cni = cni.with_hook(policy.interface_hook());
    }
    let mut agent = Agent::new(config, client).with_module(Box::new(cni));
    if let Some(policy) = policy {
        agent = agent.with_module(Box::new(policy));
    }
    if services {
        agent = agent.with_module(Box::<netstack::lb::ServicesModule>::default());
    }
    if dns {
        agent = agent.with_module(Box::<netstack::dns::DnsModule>::default());
    }
    // Always: with routing.mode none it removes an earlier mode's tunnels
    // and routes.
    agent = agent.with_module(Box::new(netstack::routing::RoutingModule::for_mode(routing)));
    // Always: with egress.masquerade off it removes an earlier table.
    agent = agent.with_module(Box::<netstack::egress::EgressModule>::default());
    agent
}

/// Makes glibc give freed memory back to the kernel. Starting up briefly
/// takes tens of MiB (the kernel's BTF parsed by the BPF loaders, one per
/// module); by default glibc then raises its trim threshold to the largest
/// block freed, and that memory stays resident for the agent's lifetime.
/// A fixed threshold keeps the resident set near what is in use (measured
/// by `make bench-footprint`: about 30 instead of up to 45 MiB at load).
fn return_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn terminated() {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler cannot fail");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

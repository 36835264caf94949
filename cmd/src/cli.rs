//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config_load::ConfigFlags;

#[derive(Debug, Parser)]
#[command(
    name = "netlet",
    version,
    about = "The networking stack of a Kubernetes node: IPAM, CNI, Services, DNS, NetworkPolicy."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent (the daemon).
    Agent(Box<AgentArgs>),
    /// Show the running agent's state.
    Status(QueryArgs),
    /// Show this node's pod CIDRs and address leases.
    Ipam(QueryArgs),
    /// Each Service's frontends and backends, as the BPF maps hold them.
    Services(QueryArgs),
    /// Other Nodes: their addresses and pod CIDRs, and the routes (tunnels) to them.
    Nodes(QueryArgs),
    /// Cluster DNS: the server's state, or ask it a question.
    Dns(DnsArgs),
    /// NetworkPolicy: what is enforced, why a flow is allowed or denied, what was dropped.
    Policy(PolicyArgs),
    /// Print version information.
    Version,
    /// Run a one-machine cluster for networking: API stand-in, agent, pods.
    Sandbox(SandboxArgs),
    /// Install netlet as a systemd service: binary, CNI plugin, unit, default config.
    Install(crate::install::InstallArgs),
    /// Remove what `netlet install` placed; --purge also the datapath, the store and the config.
    Uninstall(crate::install::UninstallArgs),
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub config: ConfigFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    /// The agent's admin socket.
    #[arg(long, env = "NETLET_ADMIN_SOCKET", default_value = "/run/netlet/admin.sock")]
    pub socket: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DnsArgs {
    #[command(subcommand)]
    pub command: DnsCommand,
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Where the server listens, its upstreams, zone and counters.
    Status(QueryArgs),
    /// Ask the running server NAME (absolute: no search list) and print the reply.
    Query {
        name: String,
        /// Record type: A, AAAA, SRV, PTR, TXT, CNAME, SOA, ... or a number.
        #[arg(name = "TYPE", default_value = "A")]
        rtype: String,
        /// Ask over TCP (UDP falls back to TCP by itself on a truncated reply).
        #[arg(long)]
        tcp: bool,
        /// Ask this server instead of the agent's first listen address.
        #[arg(long)]
        server: Option<std::net::SocketAddr>,
        #[command(flatten)]
        admin: QueryArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Each pod's isolation and rules, counters, and invalid policies.
    Status(QueryArgs),
    /// Explain the verdict on one flow: the policies that isolate, allow or deny it.
    Trace {
        /// NAMESPACE/POD or an IP address.
        #[arg(long)]
        from: String,
        /// NAMESPACE/POD or an IP address.
        #[arg(long)]
        to: String,
        /// Destination port and protocol, e.g. 80/TCP.
        #[arg(long)]
        port: String,
        /// Which address of a pod endpoint: IPv4 or IPv6.
        #[arg(long, default_value = "IPv4")]
        family: String,
        #[command(flatten)]
        admin: QueryArgs,
    },
    /// Packets dropped by NetworkPolicy (the last ones kept by the agent).
    Drops {
        /// Keep printing new drops as they happen.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        admin: QueryArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Keep running after the checks (Ctrl-C to stop) and print the kubeconfig path for kubectl.
    #[arg(long)]
    pub keep: bool,
    /// Directory for the sandbox's files (kubeconfig, state, sockets); a fresh temporary one by default.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Example manifests to apply.
    #[arg(long, default_value = "deploy/examples")]
    pub examples: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent(args) => crate::agent_cmd::run(*args),
        Command::Status(args) => crate::status_cmd::run(args),
        Command::Ipam(args) => crate::ipam_cmd::run(args),
        Command::Dns(args) => crate::dns_cmd::run(args),
        Command::Policy(args) => crate::policy_cmd::run(args),
        Command::Services(args) => crate::services_cmd::run(args),
        Command::Nodes(args) => crate::nodes_cmd::run(args),
        Command::Version => {
            print_version();
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox(args) => crate::sandbox_cmd::run(args),
        Command::Install(args) => crate::install::install(args),
        Command::Uninstall(args) => crate::install::uninstall(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line that names the problem; the cause chain joined in.
            eprintln!("netlet: {}", format_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn format_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        // Some sources (YAML parsers) add a multi-line excerpt; its first
        // line says what is wrong.
        let text = cause.to_string();
        let s = text.lines().next().unwrap_or_default().trim().to_string();
        // thiserror messages often repeat their source inline; skip echoes.
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn print_version() {
    println!("netlet {}", env!("CARGO_PKG_VERSION"));
    println!("kubernetes API {}", netstack::admin::KUBERNETES_API);
    println!("CNI spec {}", netstack::cni::spec::SPEC_VERSION);
}

//! Cluster DNS with 10,000 Services: dnsperf's queries per second and
//! latency percentiles for netlet's cluster DNS against two DNS servers
//! from Debian serving the same records, knot (authoritative, from a zone
//! file) and unbound (a static local zone), each server's process pinned
//! to one core and dnsperf to the other; then each server's memory. The
//! servers take turns in every round, so all see the same machine, and
//! medians over the rounds are reported.
//!
//! Two kinds of run: throughput (dnsperf as fast as it can go) and latency
//! (every server at the same fixed rate, below what the slowest sustains,
//! so the latency is the server's, not a queue's).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bench::dnsbench::dnsperf::{self, Load, Summary};
use bench::dnsbench::interrupt;
use bench::dnsbench::netlet::Netlet;
use bench::dnsbench::peers;
use bench::dnsbench::probe::{self, Reply};
use bench::dnsbench::records::{self, QueryFile, DOMAIN, MAX_SERVICES, MIX};
use bench::dnsbench::server::Server;
use clap::{Parser, ValueEnum};

#[derive(Parser)]
struct Args {
    /// The netlet binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/netlet")]
    netlet: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Rounds of each kind of run; in each, every server is measured once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Length of one dnsperf run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// dnsperf's sockets (`-c`).
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// dnsperf's queries in flight (`-q`).
    #[arg(long, default_value_t = 200)]
    outstanding: u32,
    /// Rate of the latency runs; default: half the slowest server's
    /// throughput.
    #[arg(long)]
    latency_qps: Option<u32>,
    /// The servers to measure, in turn.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "netlet,knot,unbound")]
    servers: Vec<Kind>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Netlet,
    Knot,
    Unbound,
}

/// dnsperf's core; this process (the stand-in included) runs there too.
const CLIENT_CPU: usize = 0;
/// Every server's core, one server measured at a time.
const SERVER_CPU: usize = 1;
// The peers listen on loopback addresses of the namespace, netlet on its
// clusterDNS address; all are local, so their packets take the same path.
const KNOT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 53));
const UNBOUND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 53));
/// Queries in dnsperf's file: every Service about ten times at 10,000.
const QUERY_LINES: usize = 100_000;
/// Below this share of its core on CPU, the core was not what held a server
/// back.
const BUSY: f64 = 0.9;
const TARGET_RATIO: f64 = 1.0;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    preflight(&args)?;
    isolate()?;
    interrupt::catch()?;
    // After a Ctrl-C, whatever failed first (dnsperf, a server) says less
    // than that it was interrupted.
    bench(&args).map_err(|e| interrupt::check().err().unwrap_or(e))
}

/// Everything after the checks; every server and file it makes is gone
/// when it returns, whichever way.
fn bench(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let queries = records::query_file(args.services, QUERY_LINES.max(args.services));
    let query_path = dir.path().join("queries");
    std::fs::write(&query_path, &queries.text)?;

    let started = start_servers(args, dir.path())?;
    let servers = started.servers();
    verify(&servers, args.services)?;

    let mut load = Load {
        seconds: args.seconds,
        clients: args.clients,
        outstanding: args.outstanding,
        rate: None,
    };
    let throughput = rounds(&servers, &query_path, &load, args.rounds, None)?;
    let slowest = throughput
        .iter()
        .map(|s| median(s, |r| r.qps))
        .fold(f64::INFINITY, f64::min);
    let rate = args.latency_qps.unwrap_or((slowest / 2.0) as u32).max(1);
    load.rate = Some(rate);
    let verbose = dir.path().join("dnsperf-verbose.log");
    let latency = rounds(&servers, &query_path, &load, args.rounds, Some(&verbose))?;

    let all = servers
        .iter()
        .zip(throughput.iter().zip(&latency))
        .map(|(server, (fast, fixed))| figures(server, fast, fixed))
        .collect::<anyhow::Result<Vec<_>>>()?;
    report(args, &queries, rate, &all);
    Ok(())
}

/// Everything is checked before anything starts, each missing piece
/// named with what to do about it.
fn preflight(args: &Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("dns-perf makes a network namespace and runs servers on port 53: run it as root");
    }
    if args.services == 0 || args.services > MAX_SERVICES {
        bail!("--services must be between 1 and {MAX_SERVICES}");
    }
    if args.servers.is_empty() || args.rounds == 0 {
        bail!("nothing to measure: give --servers and --rounds");
    }
    if std::thread::available_parallelism()?.get() < 2 {
        bail!("dns-perf needs two CPUs: one for the server measured, one for dnsperf");
    }
    let mut tools = vec!["taskset", "dnsperf"];
    tools.extend(args.servers.contains(&Kind::Knot).then_some("knotd"));
    tools.extend(args.servers.contains(&Kind::Unbound).then_some("unbound"));
    for tool in tools {
        if !in_path(tool) {
            bail!("{tool} is not installed (or not in PATH): run scripts/install-deps.sh bench");
        }
    }
    if args.servers.contains(&Kind::Netlet) && !args.netlet.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p netlet`",
            args.netlet.display()
        );
    }
    Ok(())
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Moves this process into a network namespace of its own, before any
/// thread exists, so that every thread and child (the stand-in, the agent,
/// the peers, dnsperf) shares it and none touches the machine's network.
/// Unlike a named namespace (`testbed::Netns`) it needs no removal: it
/// goes away with the last process in it, even if this one is killed (the
/// servers die with it, see `server::pinned`). The process is pinned to
/// dnsperf's core, so only the server measured runs on the other.
fn isolate() -> anyhow::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("cannot make a network namespace")?;
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("cannot run ip (iproute2)")?;
    if !status.success() {
        bail!("cannot bring up lo in the benchmark's network namespace");
    }
    let mut cpus = nix::sched::CpuSet::new();
    cpus.set(CLIENT_CPU)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).context("cannot pin dns-perf to CPU 0")?;
    Ok(())
}

/// The servers, in the order they take turns; each is stopped on drop.
struct Started {
    netlet: Option<Netlet>,
    peers: Vec<Server>,
}

impl Started {
    fn servers(&self) -> Vec<&Server> {
        self.netlet.iter().map(Netlet::server).chain(&self.peers).collect()
    }
}

/// Starts the servers asked for, each pinned to the servers' core, and
/// returns once each answers for the data set.
fn start_servers(args: &Args, dir: &Path) -> anyhow::Result<Started> {
    let zone = records::zone_records(args.services);
    let mut started = Started {
        netlet: None,
        peers: Vec::new(),
    };
    for kind in &args.servers {
        match kind {
            Kind::Netlet => {
                eprintln!("dns-perf: starting netlet and creating {} Services", args.services);
                started.netlet = Some(Netlet::start(&args.netlet, dir, SERVER_CPU, args.services)?);
            }
            Kind::Knot => started.peers.push(peers::knot(dir, KNOT, SERVER_CPU, &zone)?),
            Kind::Unbound => started.peers.push(peers::unbound(dir, UNBOUND, SERVER_CPU, &zone)?),
        }
    }
    let last = records::Service(args.services - 1);
    for peer in &mut started.peers {
        peer.wait_until_answers(&last.fqdn(), "A", &last.a_record(), std::time::Duration::from_secs(60))?;
    }
    for server in started.servers() {
        server.pin_threads(SERVER_CPU)?;
    }
    Ok(started)
}

/// Asks every server each sample query and fails unless every answer is
/// the expected one, so that the figures compare servers doing the same
/// work.
fn verify(servers: &[&Server], services: usize) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    for (kind, service) in records::samples(services) {
        let (name, qtype) = kind.query(service);
        let answers = kind.answers(service);
        let expected = Reply {
            rcode: kind.rcode().to_string(),
            authority: match answers.is_empty() {
                true => vec![records::soa_record()],
                false => Vec::new(),
            },
            answers,
        };
        for server in servers {
            let got = probe::ask(server.addr(), &name, qtype, std::time::Duration::from_secs(1))?;
            if got != expected {
                wrong.push(format!(
                    "  {} for {name} {qtype}: {got}\n    expected: {expected}",
                    server.label()
                ));
            }
        }
    }
    if !wrong.is_empty() {
        bail!(
            "wrong answers, so the servers' figures would not compare:\n{}",
            wrong.join("\n")
        );
    }
    Ok(())
}

/// One dnsperf run against one server.
struct Measured {
    summary: Summary,
    qps: f64,
    /// Of its one core, over the run.
    cpu_share: f64,
    /// Of the run, the time the server's threads were ready to run but did
    /// not: its other threads or other work had the core, or it was still
    /// waking up.
    wait_share: f64,
    p50: Option<f64>,
    p99: Option<f64>,
}

/// `rounds` rounds in which every server gets one run, in turn; results
/// per server, in the servers' order.
fn rounds(
    servers: &[&Server],
    queries: &Path,
    load: &Load,
    rounds: usize,
    verbose: Option<&Path>,
) -> anyhow::Result<Vec<Vec<Measured>>> {
    let mut results: Vec<Vec<Measured>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (server, results) in servers.iter().zip(&mut results) {
            interrupt::check()?;
            let m = measure(server, queries, load, verbose)?;
            eprintln!(
                "dns-perf: {} round {round}/{rounds}: {}: {:.0} q/s, server CPU {:.0}%",
                match load.rate {
                    Some(_) => "latency",
                    None => "throughput",
                },
                server.label(),
                m.qps,
                m.cpu_share * 100.0
            );
            results.push(m);
        }
    }
    Ok(results)
}

fn measure(server: &Server, queries: &Path, load: &Load, verbose: Option<&Path>) -> anyhow::Result<Measured> {
    let before = server.sched_time()?;
    let run = dnsperf::run(server.addr(), queries, load, CLIENT_CPU, verbose)?;
    let used = server.sched_time()?.since(&before);
    let seconds = run.elapsed.as_secs_f64();
    Ok(Measured {
        qps: run.summary.qps,
        cpu_share: used.on_cpu.as_secs_f64() / seconds,
        wait_share: used.waiting.as_secs_f64() / seconds,
        p50: dnsperf::percentile(&run.latencies, 50.0),
        p99: dnsperf::percentile(&run.latencies, 99.0),
        summary: run.summary,
    })
}

fn median(runs: &[Measured], value: impl Fn(&Measured) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(value).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What is reported of one server: medians over the rounds, answers summed
/// over all runs.
struct Figures {
    label: &'static str,
    qps: f64,
    on_cpu: f64,
    waiting: f64,
    /// Queries answered per second the server spent on a CPU: its cost,
    /// whichever side was the limit.
    per_cpu_second: f64,
    p50: f64,
    p99: f64,
    answers: Summary,
    rss: u64,
}

fn figures(server: &Server, throughput: &[Measured], latency: &[Measured]) -> anyhow::Result<Figures> {
    let mut answers = Summary::default();
    throughput.iter().chain(latency).for_each(|r| answers.add(&r.summary));
    Ok(Figures {
        label: server.label(),
        qps: median(throughput, |r| r.qps),
        on_cpu: median(throughput, |r| r.cpu_share),
        waiting: median(throughput, |r| r.wait_share),
        per_cpu_second: median(throughput, |r| r.qps / r.cpu_share),
        p50: median(latency, |r| r.p50.unwrap_or(f64::NAN)),
        p99: median(latency, |r| r.p99.unwrap_or(f64::NAN)),
        answers,
        rss: server.rss()?,
    })
}

fn report(args: &Args, queries: &QueryFile, rate: u32, all: &[Figures]) {
    println!(
        "dns-perf: {DOMAIN} with {} Services; each server's process on CPU {SERVER_CPU} (taskset), dnsperf on CPU {CLIENT_CPU}",
        args.services
    );
    println!("  queries ({} in a fixed random order, replayed):", queries.lines);
    for (kind, percent) in MIX {
        println!("    {percent:3}%  {}", kind.describe());
    }
    println!(
        "  dnsperf -c {} -q {} -T 1 over UDP; {} rounds of {} s per server and kind of run, servers in turn; medians",
        args.clients, args.outstanding, args.rounds, args.seconds
    );

    println!("\n  throughput, dnsperf as fast as it goes");
    println!(
        "{:16}{:>10}{:>9}{:>10}{:>21}",
        "", "q/s", "on CPU", "waiting", "q/s per CPU-second"
    );
    for f in all {
        println!(
            "    {:<12}{:10.0}{:8.0}%{:9.0}%{:21.0}",
            f.label,
            f.qps,
            f.on_cpu * 100.0,
            f.waiting * 100.0,
            f.per_cpu_second
        );
    }
    println!(
        "    (on CPU, waiting: the server's threads' time on their core, and ready but not running, over the run;"
    );
    println!(
        "     below {:.0}% on CPU the core was not what held the server back)",
        BUSY * 100.0
    );

    let why = match args.latency_qps {
        Some(_) => "--latency-qps",
        None => "half the slowest server's throughput",
    };
    println!("\n  latency at {rate} q/s ({why})");
    println!("{:16}{:>10}{:>10}", "", "p50 (ms)", "p99 (ms)");
    for f in all {
        println!("    {:<12}{:10.3}{:10.3}", f.label, f.p50 * 1e3, f.p99 * 1e3);
    }

    println!(
        "\n  answers, all runs (expected NXDOMAIN: {:.2}%)",
        queries.nxdomain_share * 100.0
    );
    println!(
        "{:16}{:>11}{:>11}{:>7}{:>10}",
        "", "sent", "completed", "lost", "NXDOMAIN"
    );
    for f in all {
        let a = &f.answers;
        println!(
            "    {:<12}{:11}{:11}{:7}{:9.2}%   {}",
            f.label,
            a.sent,
            a.completed,
            a.lost,
            a.rcode_share("NXDOMAIN") * 100.0,
            answers_verdict(a, queries.nxdomain_share)
        );
    }

    println!("\n  memory after the runs (RSS)");
    for f in all {
        println!("    {:<12}{:7.1} MiB", f.label, f.rss as f64 / (1024.0 * 1024.0));
    }
    println!();
    ratios(all);
}

/// "ok", or what is wrong with a server's answers: lost queries, rcodes
/// other than NOERROR and NXDOMAIN, or a share of NXDOMAIN the query mix
/// does not explain.
fn answers_verdict(total: &Summary, nxdomain_share: f64) -> String {
    let mut wrong = Vec::new();
    if total.lost * 1000 > total.sent {
        wrong.push(format!("{:.2}% lost", total.lost as f64 * 100.0 / total.sent as f64));
    }
    for (rcode, n) in &total.rcodes {
        if rcode != "NOERROR" && rcode != "NXDOMAIN" {
            wrong.push(format!("{n} {rcode}"));
        }
    }
    if (total.rcode_share("NXDOMAIN") - nxdomain_share).abs() > 0.01 {
        wrong.push(format!("expected {:.2}% NXDOMAIN", nxdomain_share * 100.0));
    }
    match wrong.is_empty() {
        true => "ok".to_string(),
        false => format!("WRONG: {}", wrong.join(", ")),
    }
}

/// netlet against each peer measured in the same run.
fn ratios(all: &[Figures]) {
    let Some(netlet) = all.iter().find(|f| f.label == "netlet") else {
        return;
    };
    let peers = || all.iter().filter(|f| f.label != "netlet");
    for peer in peers() {
        let qps = netlet.qps / peer.qps;
        println!(
            "  netlet/{} qps ratio: {qps:.2}x   (target at least {TARGET_RATIO:.1}x: {}; per CPU-second {:.2}x)",
            peer.label,
            if qps >= TARGET_RATIO { "met" } else { "MISSED" },
            netlet.per_cpu_second / peer.per_cpu_second
        );
    }
    for peer in peers() {
        println!(
            "  netlet/{} p99 ratio: {:.2}x   (lower is better)",
            peer.label,
            netlet.p99 / peer.p99
        );
    }
}

//! Connection rate through a ClusterIP against straight to the pod's
//! address, with 10,000 Services in netlet's maps, in one run: the cost
//! the socket-level translation adds to each connect(). Both sides run in
//! the same process, which sits in the cgroup the programs are attached
//! to, so the hook runs for every connect on both sides, as on a node;
//! only the ClusterIP side finds a Service. Rounds alternate between the
//! two so both see the same machine.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use services::{Datapath, DatapathOptions, Frontend, FrontendPlan, Protocol, Scope};

#[derive(Parser)]
struct Args {
    /// Services in the maps besides the one measured.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Alternating rounds per side (the median smooths a noisy machine).
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Length of one round.
    #[arg(long, default_value_t = 1000)]
    round_ms: u64,
}

const POD: &str = "10.251.0.2";
const CLUSTER_IP: &str = "10.43.255.254";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("service-connect loads BPF programs and uses a network namespace: run it as root");
    }
    let ns = testbed::Netns::new("bconn").context("cannot create a network namespace")?;
    let out = ns.exec(&["ip", "addr", "add", &format!("{POD}/32"), "dev", "lo"]);
    if !out.status.success() {
        bail!("cannot add {POD} in the namespace");
    }
    let cgroup = testbed::Cgroup::new("bconn")?;
    let pins = testbed::PinDir::new("bconn");
    let mut datapath = Datapath::load(&DatapathOptions {
        pin_dir: pins.path().to_path_buf(),
        cgroup: cgroup.path().to_path_buf(),
        map_entries: u32::try_from(args.services * 4 + 64)?,
        devices: Vec::new(),
    })?;
    let pod: IpAddr = POD.parse()?;
    for i in 0..args.services {
        let address: IpAddr = format!("10.43.{}.{}", i / 250, i % 250 + 1).parse()?;
        datapath.apply(&plan(address, 80, &[(pod, 8080)]))?;
    }
    datapath.apply(&plan(CLUSTER_IP.parse()?, 80, &[(pod, 8080)]))?;
    // From here on every connect() of this process meets the programs.
    std::fs::write(cgroup.path().join("cgroup.procs"), "0").context("cannot join the cgroup")?;

    let (direct, service) = ns.run(|| -> anyhow::Result<(f64, f64)> {
        let listener = TcpListener::bind((pod, 8080))?;
        let stop = Arc::new(AtomicBool::new(false));
        let server = std::thread::spawn({
            let stop = stop.clone();
            move || serve(listener, &stop)
        });
        let (mut direct, mut service) = (Vec::new(), Vec::new());
        let round = Duration::from_millis(args.round_ms);
        for _ in 0..args.rounds {
            direct.push(rate(SocketAddr::new(pod, 8080), round)?);
            service.push(rate(SocketAddr::new(CLUSTER_IP.parse()?, 80), round)?);
        }
        stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect((pod, 8080));
        let _ = server.join();
        Ok((median(&mut direct), median(&mut service)))
    })?;
    // Out of the cgroup again, so it can be removed.
    let root = testbed::cgroup2_root().join("cgroup.procs");
    std::fs::write(&root, "0").context("cannot leave the cgroup")?;
    drop(datapath);

    println!(
        "service-connect: TCP connects per second, median of {} rounds of {} ms, {} Services in the maps",
        args.rounds, args.round_ms, args.services
    );
    println!("  straight to the pod {direct:10.0}/s");
    println!("  through a ClusterIP {service:10.0}/s");
    println!("  ClusterIP / pod: {:.3}   (target: at least 0.95)", service / direct);
    Ok(())
}

fn plan(address: IpAddr, port: u16, backends: &[(IpAddr, u16)]) -> FrontendPlan {
    let frontend = Frontend {
        address,
        port,
        protocol: Protocol::Tcp,
        scope: Scope::Internal,
    };
    FrontendPlan::to(frontend, backends.iter().copied())
}

/// Accepts, answers one byte and closes, until told to stop.
fn serve(listener: TcpListener, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut c) = conn {
            let _ = c.write_all(b"x");
        }
    }
}

/// Connections per second to `to` for `round`: connect, read the
/// server's byte, close. (Ports in TIME_WAIT are reused: the traffic never
/// leaves the namespace's loopback, where the kernel allows that.)
fn rate(to: SocketAddr, round: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < round {
        let mut s = TcpStream::connect(to).with_context(|| format!("connect {to}"))?;
        s.read_exact(&mut [0u8; 1]).with_context(|| format!("read from {to}"))?;
        drop(s);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

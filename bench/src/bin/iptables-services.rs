//! kube-proxy's Service update cost in iptables mode, the peer netlet's
//! eBPF Services are compared with: for each size, loads the rules
//! kube-proxy would write for that many Services into a network namespace
//! of its own with `iptables-restore`, then times single-Service changes
//! applied as partial syncs and full syncs. The machine's own tables are
//! never touched.

use std::time::Duration;

use anyhow::Context;
use bench::kube_proxy::{self, Stats};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Service counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    services: Vec<usize>,
    /// Endpoints of each Service.
    #[arg(long, default_value_t = 2)]
    endpoints: usize,
    /// Single-Service changes timed per size.
    #[arg(long, default_value_t = 100)]
    repeats: usize,
    /// Full syncs timed per size (each takes minutes at 10,000 Services).
    #[arg(long, default_value_t = 10)]
    full_syncs: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let version = std::process::Command::new("iptables")
        .arg("--version")
        .output()
        .context("cannot run iptables")?;
    println!(
        "iptables-services: kube-proxy (iptables mode) rules, {} endpoints per Service, {} one-Service changes per size",
        args.endpoints, args.repeats
    );
    println!(
        "  {}, iptables-restore {}",
        String::from_utf8_lossy(&version.stdout).trim(),
        kube_proxy::RESTORE_ARGS.join(" ")
    );
    for &services in &args.services {
        let stats = kube_proxy::time_one_change(services, args.endpoints, args.repeats, args.full_syncs)?;
        report(&stats);
    }
    Ok(())
}

fn report(s: &Stats) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let kib = |b: usize| b as f64 / 1024.0;
    println!(
        "{} Services x {} endpoints: {} nat rules{}",
        s.services,
        s.endpoints_per_service,
        s.nat_rules,
        if s.large_cluster_mode {
            " (large cluster mode)"
        } else {
            ""
        }
    );
    println!("  initial load              {:9.1} ms", ms(s.initial_load));
    println!(
        "  one change, partial sync  p50 {:9.2} ms   p99 {:9.2} ms   ({} samples, {:.0} KiB input)",
        ms(s.partial.p50),
        ms(s.partial.p99),
        s.partial.samples,
        kib(s.partial_input_bytes)
    );
    println!(
        "  full sync                 p50 {:9.2} ms   p99 {:9.2} ms   ({} samples, {:.0} KiB input)",
        ms(s.full.p50),
        ms(s.full.p99),
        s.full.samples,
        kib(s.full_input_bytes)
    );
    println!(
        "  + jump-rule checks before each full sync: p50 {:.2} ms",
        ms(s.full_jump_checks.p50)
    );
    println!("  iptables-save -t nat (stale-chain scan): {:.1} ms", ms(s.nat_save));
}

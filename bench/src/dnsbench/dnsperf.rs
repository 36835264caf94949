//! dnsperf (DNS-OARC's, Debian's 2.x) on its own core, and what it prints.
//! It reports queries per second and only the mean latency; percentiles
//! come from its verbose mode, which prints every answer's latency.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::server::pinned;

/// How dnsperf loads a server.
#[derive(Debug, Clone)]
pub struct Load {
    pub seconds: u64,
    /// Sockets (source ports) the queries are spread over (`-c`).
    pub clients: u32,
    /// Queries in flight at most (`-q`).
    pub outstanding: u32,
    /// Queries per second at most (`-Q`); None: as fast as dnsperf can.
    pub rate: Option<u32>,
}

/// dnsperf's statistics for one run, or summed over several.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    /// Answers by rcode, as dnsperf names them (NOERROR, NXDOMAIN, ...).
    pub rcodes: BTreeMap<String, u64>,
    pub qps: f64,
}

impl Summary {
    /// Adds another run's counts (not its rate).
    pub fn add(&mut self, other: &Summary) {
        self.sent += other.sent;
        self.completed += other.completed;
        self.lost += other.lost;
        for (rcode, n) in &other.rcodes {
            *self.rcodes.entry(rcode.clone()).or_default() += n;
        }
    }

    pub fn rcode_share(&self, rcode: &str) -> f64 {
        self.rcodes.get(rcode).copied().unwrap_or(0) as f64 / self.completed.max(1) as f64
    }
}

pub struct Run {
    pub summary: Summary,
    /// From start to exit of dnsperf.
    pub elapsed: Duration,
    /// Each answer's latency in seconds, sorted; only when asked for.
    pub latencies: Vec<f64>,
}

/// Runs dnsperf on `cpu` against `server` with the queries in `queries`
/// (replayed from the top when they run out). With `verbose_log`, every
/// answer is written there and the latencies are collected: verbose mode
/// costs dnsperf time, so it is for runs at a fixed rate only.
pub fn run(
    server: SocketAddr,
    queries: &Path,
    load: &Load,
    cpu: usize,
    verbose_log: Option<&Path>,
) -> anyhow::Result<Run> {
    let mut cmd = pinned(cpu, "dnsperf");
    cmd.arg("-s")
        .arg(server.ip().to_string())
        .arg("-p")
        .arg(server.port().to_string())
        .arg("-d")
        .arg(queries)
        .arg("-l")
        .arg(load.seconds.to_string())
        .arg("-c")
        .arg(load.clients.to_string())
        .arg("-q")
        .arg(load.outstanding.to_string())
        // One sending and one receiving thread: dnsperf has one core.
        .args(["-T", "1"]);
    if let Some(rate) = load.rate {
        cmd.arg("-Q").arg(rate.to_string());
    }
    match verbose_log {
        Some(log) => cmd.arg("-v").stdout(File::create(log)?),
        None => cmd.stdout(Stdio::piped()),
    };
    let started = Instant::now();
    let out = cmd.stderr(Stdio::piped()).output().context("cannot run dnsperf")?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!(
            "dnsperf failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = match verbose_log {
        Some(log) => std::fs::read_to_string(log)?,
        None => String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    let mut latencies = latencies(&text);
    latencies.sort_by(f64::total_cmp);
    Ok(Run {
        summary: summary(&text).with_context(|| format!("cannot read dnsperf's statistics from:\n{text}"))?,
        elapsed,
        latencies,
    })
}

/// The statistics dnsperf prints at the end of a run.
pub fn summary(text: &str) -> Option<Summary> {
    let count = |label: &str| field(text, label)?.split_whitespace().next()?.parse::<u64>().ok();
    let mut rcodes = BTreeMap::new();
    // "NOERROR 735460 (50.00%), NXDOMAIN 735452 (50.00%)"; absent when
    // nothing was answered.
    for part in field(text, "Response codes:").unwrap_or("").split(',') {
        let mut words = part.split_whitespace();
        if let (Some(rcode), Some(n)) = (words.next(), words.next()) {
            rcodes.insert(rcode.to_string(), n.parse().ok()?);
        }
    }
    Some(Summary {
        sent: count("Queries sent:")?,
        completed: count("Queries completed:")?,
        lost: count("Queries lost:")?,
        rcodes,
        qps: field(text, "Queries per second:")?.parse().ok()?,
    })
}

fn field<'t>(text: &'t str, label: &str) -> Option<&'t str> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
}

/// Latencies from verbose lines, `> RCODE NAME TYPE SECONDS`; timed out
/// (`T`) and interrupted (`I`) queries have none.
pub fn latencies(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("> "))
        .filter(|l| !l.starts_with("T ") && !l.starts_with("I "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// The nearest-rank `p`th percentile of `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.2 -d queries -l 3 -v -Q 50000
> NXDOMAIN svc-2433.ns-3.ns-4.svc.cluster.local. A 0.000141
> NOERROR svc-2842.ns-2.svc.cluster.local. A 0.000034
> T svc-1.ns-1.svc.cluster.local. A
> NOERROR _http._tcp.svc-7.ns-7.svc.cluster.local. SRV 0.000023
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         149998
  Queries completed:    149997 (100.00%)
  Queries lost:         1 (0.00%)

  Response codes:       NOERROR 75012 (50.01%), NXDOMAIN 74985 (49.99%)
  Average packet size:  request 52, response 87
  Run time (s):         3.000110
  Queries per second:   49997.500092

  Average Latency (s):  0.000030 (min 0.000006, max 0.003586)
";

    #[test]
    fn the_statistics_are_read() {
        let s = summary(OUTPUT).unwrap();
        assert_eq!((s.sent, s.completed, s.lost), (149_998, 149_997, 1));
        assert_eq!(s.rcodes["NOERROR"], 75_012);
        assert_eq!(s.rcodes["NXDOMAIN"], 74_985);
        assert!((s.qps - 49_997.5).abs() < 0.01);
        assert!((s.rcode_share("NXDOMAIN") - 0.49993).abs() < 0.0001);
        assert_eq!(summary("dnsperf: out of memory"), None);
    }

    #[test]
    fn a_run_without_answers_has_no_rcodes() {
        let text = "  Queries sent: 10\n  Queries completed: 0 (0.00%)\n  Queries lost: 10 (100.00%)\n  Queries per second: 0.000000\n";
        let s = summary(text).unwrap();
        assert!(s.rcodes.is_empty());
        assert_eq!(s.rcode_share("NXDOMAIN"), 0.0);
    }

    #[test]
    fn latencies_skip_timeouts() {
        assert_eq!(latencies(OUTPUT), vec![0.000141, 0.000034, 0.000023]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50.0));
        assert_eq!(percentile(&sorted, 99.0), Some(99.0));
        assert_eq!(percentile(&sorted, 100.0), Some(100.0));
        assert_eq!(percentile(&sorted, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 99.0), None);
    }

    #[test]
    fn summed_runs_add_counts() {
        let one = summary(OUTPUT).unwrap();
        let mut total = Summary::default();
        total.add(&one);
        total.add(&one);
        assert_eq!(total.sent, 2 * 149_998);
        assert_eq!(total.rcodes["NXDOMAIN"], 2 * 74_985);
    }
}

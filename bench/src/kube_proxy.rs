//! The peer for netlet's Service update cost: what kube-proxy in iptables
//! mode writes for the same Services, applied with `iptables-restore` in a
//! network namespace of our own and timed.
//!
//! The generated text follows kube-proxy's iptables proxier (the modern one,
//! with partial syncs, KEP-3453 `MinimizeIPTablesRestore`, on by default
//! since 1.27) for the simplest Service shape: ClusterIP, one TCP port,
//! `Cluster` traffic policies, no session affinity, no NodePort, all
//! endpoints ready. What it reproduces:
//!
//! * chain names: `KUBE-SVC-` + the first 16 characters of base32(sha256(
//!   "<namespace>/<name>:<port name>" + "tcp")), and `KUBE-SEP-` the same
//!   over the port name, protocol and "<pod IP>:<target port>";
//! * the `nat` table: `KUBE-SERVICES` (one rule per Service port, then the
//!   `KUBE-NODEPORTS` tail call), `KUBE-NODEPORTS`, `KUBE-POSTROUTING`,
//!   `KUBE-MARK-MASQ`, per Service port a `KUBE-SVC-…` chain (masquerade
//!   off-cluster sources, then `-m statistic --mode random --probability
//!   1/n` per endpoint, formatted `%0.10f`) and per endpoint a `KUBE-SEP-…`
//!   chain (hairpin mark, DNAT);
//! * the `filter` table kube-proxy writes in the same `iptables-restore`
//!   call (its top-level chains and the `KUBE-FORWARD` / `KUBE-FIREWALL`
//!   rules);
//! * "large cluster mode": above 1,000 endpoints in all, the per-endpoint
//!   rules lose their `-m comment`;
//! * how it calls the tools: `iptables-restore -w 5 -W 100000 --noflush
//!   --counters` for every sync, full or partial (kube-proxy never lets
//!   `iptables-restore` flush a whole table, since PREROUTING, OUTPUT and
//!   POSTROUTING hold other rules), and on a full sync first the jump rules
//!   from the built-in chains, checked one `iptables` process at a time.
//!
//! A partial sync rewrites the top-level chains (so `KUBE-SERVICES` with
//! every Service's rule), the filter table, and the chains of the Services
//! that changed; a full sync rewrites every chain.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use testbed::Netns;

/// Namespace, port name, ports and protocol of every generated Service.
pub const NAMESPACE: &str = "default";
pub const PORT_NAME: &str = "http";
pub const PORT: u16 = 80;
pub const TARGET_PORT: u16 = 8080;
const PROTOCOL: &str = "tcp";
/// `--cluster-cidr`: kube-proxy's local traffic detector masquerades
/// ClusterIP traffic from outside it.
pub const CLUSTER_CIDR: &str = "10.42.0.0/16";
/// kube-proxy's default `--iptables-masquerade-bit` 14, written `%#08x`.
const MASQ_MARK: &str = "0x004000";
/// Above this many endpoints in all kube-proxy drops per-endpoint comments.
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;
/// Addresses per /24-ish block in the deterministic address plan (10.4x.A.B
/// with B in 1..=250).
const PER_BLOCK: usize = 250;
const MAX_ADDRESSES: usize = PER_BLOCK * 256;

/// What kube-proxy passes to `iptables-restore` (utiliptables' wait flags,
/// `NoFlushTables`, `RestoreCounters`).
pub const RESTORE_ARGS: &[&str] = &["-w", "5", "-W", "100000", "--noflush", "--counters"];
const WAIT_ARGS: &[&str] = &["-w", "5", "-W", "100000"];

// Top-level chains.
const KUBE_SERVICES: &str = "KUBE-SERVICES";
const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
const KUBE_FORWARD: &str = "KUBE-FORWARD";
const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
const KUBE_FIREWALL: &str = "KUBE-FIREWALL";

/// Jump rules from built-in chains that kube-proxy ensures with single
/// `iptables` calls before every full sync: (table, from, to, comment,
/// extra match arguments). The last two are kubelet's, which kube-proxy
/// also ensures.
const JUMPS: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "filter",
        "INPUT",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        &["-m", "conntrack", "--ctstate", "NEW"],
    ),
    (
        "filter",
        "FORWARD",
        KUBE_EXTERNAL_SERVICES,
        "kubernetes externally-visible service portals",
        &["-m", "conntrack", "--ctstate", "NEW"],
    ),
    (
        "filter",
        "INPUT",
        KUBE_NODEPORTS,
        "kubernetes health check service ports",
        &[],
    ),
    (
        "filter",
        "FORWARD",
        KUBE_SERVICES,
        "kubernetes service portals",
        &["-m", "conntrack", "--ctstate", "NEW"],
    ),
    (
        "filter",
        "OUTPUT",
        KUBE_SERVICES,
        "kubernetes service portals",
        &["-m", "conntrack", "--ctstate", "NEW"],
    ),
    ("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules", &[]),
    (
        "filter",
        "INPUT",
        KUBE_PROXY_FIREWALL,
        "kubernetes load balancer firewall",
        &["-m", "conntrack", "--ctstate", "NEW"],
    ),
    (
        "filter",
        "OUTPUT",
        KUBE_PROXY_FIREWALL,
        "kubernetes load balancer firewall",
        &["-m", "conntrack", "--ctstate", "NEW"],
    ),
    (
        "filter",
        "FORWARD",
        KUBE_PROXY_FIREWALL,
        "kubernetes load balancer firewall",
        &["-m", "conntrack", "--ctstate", "NEW"],
    ),
    ("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", &[]),
    ("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals", &[]),
    (
        "nat",
        "POSTROUTING",
        KUBE_POSTROUTING,
        "kubernetes postrouting rules",
        &[],
    ),
    ("filter", "INPUT", KUBE_FIREWALL, "", &[]),
    ("filter", "OUTPUT", KUBE_FIREWALL, "", &[]),
];

/// N Services, each with one TCP port and its endpoints, as kube-proxy
/// would see them. Addresses are deterministic: Service `i` has ClusterIP
/// `10.43.(i/250).(i%250+1)`; pod `n` (numbered in creation order) has
/// `10.42.(n/250).(n%250+1)`.
#[derive(Clone, Debug)]
pub struct Ruleset {
    /// Pod numbers of each Service's endpoints.
    endpoints: Vec<Vec<usize>>,
    next_pod: usize,
}

/// The name of Service `i`.
pub fn service_name(i: usize) -> String {
    format!("svc-{i}")
}

/// The ClusterIP of Service `i`.
pub fn cluster_ip(i: usize) -> String {
    format!("10.43.{}.{}", i / PER_BLOCK, i % PER_BLOCK + 1)
}

/// The address of pod `n`.
pub fn pod_ip(n: usize) -> String {
    format!("10.42.{}.{}", n / PER_BLOCK, n % PER_BLOCK + 1)
}

/// kube-proxy's `ServicePortName.String()`: "namespace/name:port".
fn service_port_name(i: usize) -> String {
    format!("{NAMESPACE}/{}:{PORT_NAME}", service_name(i))
}

/// base32 (RFC 4648 alphabet, as Go's `base32.StdEncoding`) of sha256, cut
/// to 16 characters: kube-proxy's chain name hash.
fn hash16(input: &str) -> String {
    let mut encoded = base32(&sha256(input.as_bytes()));
    encoded.truncate(16);
    encoded
}

/// The `KUBE-SVC-…` chain for a Service port name ("ns/name:port") and a
/// lower-case protocol.
pub fn svc_chain_name(service_port_name: &str, protocol: &str) -> String {
    format!("KUBE-SVC-{}", hash16(&format!("{service_port_name}{protocol}")))
}

/// The `KUBE-SEP-…` chain for one endpoint ("ip:port") of a Service port.
pub fn sep_chain_name(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash16(&format!("{service_port_name}{protocol}{endpoint}"))
    )
}

/// kube-proxy's `computeProbability`: `fmt.Sprintf("%0.10f", 1.0/n)`.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

fn chain_line(out: &mut String, chain: &str) {
    let _ = writeln!(out, ":{chain} - [0:0]");
}

impl Ruleset {
    /// `services` Services with `endpoints_per_service` endpoints each.
    /// Panics if the address plan (64,000 ClusterIPs and pods) overflows.
    pub fn new(services: usize, endpoints_per_service: usize) -> Ruleset {
        assert!(services <= MAX_ADDRESSES, "at most {MAX_ADDRESSES} Services");
        assert!(
            services * endpoints_per_service <= MAX_ADDRESSES,
            "at most {MAX_ADDRESSES} endpoints in all"
        );
        let endpoints = (0..services)
            .map(|i| {
                (0..endpoints_per_service)
                    .map(|j| i * endpoints_per_service + j)
                    .collect()
            })
            .collect();
        Ruleset {
            endpoints,
            next_pod: services * endpoints_per_service,
        }
    }

    pub fn services(&self) -> usize {
        self.endpoints.len()
    }

    pub fn total_endpoints(&self) -> usize {
        self.endpoints.iter().map(Vec::len).sum()
    }

    /// The endpoints ("ip:port") of Service `i`, in the order its chain
    /// picks them.
    pub fn endpoints(&self, i: usize) -> Vec<String> {
        self.endpoints[i]
            .iter()
            .map(|&n| format!("{}:{TARGET_PORT}", pod_ip(n)))
            .collect()
    }

    /// One more endpoint (a new pod) for Service `i`, as an EndpointSlice
    /// update would bring; returns its address.
    pub fn add_endpoint(&mut self, i: usize) -> anyhow::Result<String> {
        if self.next_pod >= MAX_ADDRESSES {
            bail!("the pod address plan is exhausted ({MAX_ADDRESSES} pods)");
        }
        let n = self.next_pod;
        self.next_pod += 1;
        self.endpoints[i].push(n);
        Ok(pod_ip(n))
    }

    /// True above 1,000 endpoints in all, where kube-proxy drops the
    /// per-endpoint comments.
    pub fn large_cluster_mode(&self) -> bool {
        self.total_endpoints() > LARGE_CLUSTER_ENDPOINTS
    }

    /// Service `i`'s `KUBE-SVC-…` chain.
    pub fn svc_chain(&self, i: usize) -> String {
        svc_chain_name(&service_port_name(i), PROTOCOL)
    }

    /// The `KUBE-SEP-…` chains of Service `i`, one per endpoint.
    pub fn sep_chains(&self, i: usize) -> Vec<String> {
        let name = service_port_name(i);
        self.endpoints(i)
            .iter()
            .map(|ep| sep_chain_name(&name, PROTOCOL, ep))
            .collect()
    }

    /// Rules in the nat table after a sync (kube-proxy's own, not the jump
    /// rules in the built-in chains).
    pub fn nat_rules(&self) -> usize {
        // POSTROUTING (3) + MARK-MASQ (1) + the nodeports tail call (1);
        // per Service: its KUBE-SERVICES rule, the masquerade rule, one
        // rule per endpoint in KUBE-SVC and two in each KUBE-SEP.
        5 + self.endpoints.iter().map(|eps| 2 + 3 * eps.len()).sum::<usize>()
    }

    /// Chains kube-proxy owns in the nat table.
    pub fn nat_chains(&self) -> usize {
        4 + self.endpoints.iter().map(|eps| 1 + eps.len()).sum::<usize>()
    }

    /// What kube-proxy would pass to `iptables-restore` on a full sync.
    pub fn full_sync_input(&self) -> String {
        self.sync_input(None)
    }

    /// The same as [`Ruleset::full_sync_input`]: the input of a sync that
    /// rewrites everything.
    pub fn restore_input(&self) -> String {
        self.full_sync_input()
    }

    /// What kube-proxy ≥ 1.27 passes to `iptables-restore` on a partial
    /// sync after Service `changed_service` (or its endpoints) changed: the
    /// filter table, the top-level nat chains (`KUBE-SERVICES` with every
    /// Service's rule) and only that Service's SVC and SEP chains.
    pub fn partial_sync_input(&self, changed_service: usize) -> String {
        assert!(changed_service < self.services(), "no Service {changed_service}");
        self.sync_input(Some(changed_service))
    }

    fn sync_input(&self, only: Option<usize>) -> String {
        let large = self.large_cluster_mode();
        let rewritten = |i: usize| only.is_none_or(|c| c == i);
        let mut chains = String::new();
        let mut rules = String::with_capacity(match only {
            None => self.services() * (200 + 300 * self.endpoints.first().map_or(1, Vec::len)),
            Some(_) => self.services() * 160,
        });

        let mut out = String::new();
        out.push_str("*filter\n");
        for chain in [
            KUBE_SERVICES,
            KUBE_EXTERNAL_SERVICES,
            KUBE_FORWARD,
            KUBE_NODEPORTS,
            KUBE_PROXY_FIREWALL,
            KUBE_FIREWALL,
        ] {
            chain_line(&mut out, chain);
        }
        let _ = writeln!(
            out,
            "-A {KUBE_FIREWALL} -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 \
             ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        );
        let _ = writeln!(out, "-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP");
        let _ = writeln!(
            out,
            "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" \
             -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT"
        );
        let _ = writeln!(
            out,
            "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" \
             -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        out.push_str("COMMIT\n*nat\n");

        for chain in [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ] {
            chain_line(&mut chains, chain);
        }
        let _ = writeln!(
            rules,
            "-A {KUBE_POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"
        );
        let _ = writeln!(rules, "-A {KUBE_POSTROUTING} -j MARK --xor-mark {MASQ_MARK}");
        let _ = writeln!(
            rules,
            "-A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" \
             -j MASQUERADE --random-fully"
        );
        let _ = writeln!(rules, "-A {KUBE_MARK_MASQ} -j MARK --or-mark {MASQ_MARK}");

        for (i, pods) in self.endpoints.iter().enumerate() {
            let name = service_port_name(i);
            let ip = cluster_ip(i);
            let svc = svc_chain_name(&name, PROTOCOL);
            if pods.is_empty() {
                // kube-proxy REJECTs these in the filter table instead; the
                // benchmark never makes one.
                continue;
            }
            let _ = writeln!(
                rules,
                "-A {KUBE_SERVICES} -m comment --comment \"{name} cluster IP\" -m {PROTOCOL} -p {PROTOCOL} \
                 -d {ip} --dport {PORT} -j {svc}"
            );
            if !rewritten(i) {
                continue;
            }
            chain_line(&mut chains, &svc);
            let _ = writeln!(
                rules,
                "-A {svc} -m comment --comment \"{name} cluster IP\" -m {PROTOCOL} -p {PROTOCOL} \
                 -d {ip} --dport {PORT} ! -s {CLUSTER_CIDR} -j {KUBE_MARK_MASQ}"
            );
            let endpoints = self.endpoints(i);
            let seps: Vec<String> = endpoints.iter().map(|ep| sep_chain_name(&name, PROTOCOL, ep)).collect();
            for (k, (ep, sep)) in endpoints.iter().zip(&seps).enumerate() {
                let _ = write!(rules, "-A {svc}");
                if !large {
                    let _ = write!(rules, " -m comment --comment \"{name} -> {ep}\"");
                }
                if k + 1 < endpoints.len() {
                    let _ = write!(
                        rules,
                        " -m statistic --mode random --probability {}",
                        probability(endpoints.len() - k)
                    );
                }
                let _ = writeln!(rules, " -j {sep}");
            }
            for (ep, sep) in endpoints.iter().zip(&seps) {
                chain_line(&mut chains, sep);
                let pod = ep.rsplit_once(':').map_or(ep.as_str(), |(ip, _)| ip);
                let comment = if large {
                    String::new()
                } else {
                    format!(" -m comment --comment {name}")
                };
                let _ = writeln!(rules, "-A {sep}{comment} -s {pod} -j {KUBE_MARK_MASQ}");
                let _ = writeln!(
                    rules,
                    "-A {sep}{comment} -m {PROTOCOL} -p {PROTOCOL} -j DNAT --to-destination {ep}"
                );
            }
        }
        let _ = writeln!(
            rules,
            "-A {KUBE_SERVICES} -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last \
             rule in this chain\" -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}"
        );
        out.push_str(&chains);
        out.push_str(&rules);
        out.push_str("COMMIT\n");
        out
    }

    /// Applies `input` with `iptables-restore` inside the network namespace
    /// `netns` as kube-proxy runs it (see
    /// [`RESTORE_ARGS`]: `--noflush` for full and partial syncs alike) and
    /// returns the wall time from spawning the process to its exit.
    pub fn apply(&self, input: &str, netns: &Netns) -> anyhow::Result<Duration> {
        restore(input, netns)
    }
}

/// `iptables-restore` with kube-proxy's arguments, `input` on stdin, inside
/// `netns`; the wall time of the process.
pub fn restore(input: &str, netns: &Netns) -> anyhow::Result<Duration> {
    let mut cmd = netns.command("iptables-restore");
    cmd.args(RESTORE_ARGS)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context("cannot run iptables-restore")?;
    let written = child.stdin.take().expect("stdin is piped").write_all(input.as_bytes());
    let out = child.wait_with_output().context("iptables-restore")?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "iptables-restore {} failed ({}): {}",
            RESTORE_ARGS.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.context("writing iptables-restore input")?;
    Ok(elapsed)
}

/// `iptables-save -t <table>` inside `netns`, and how long it took (what
/// kube-proxy pays to find stale chains).
pub fn save(table: &str, netns: &Netns) -> anyhow::Result<(String, Duration)> {
    let mut cmd = netns.command("iptables-save");
    cmd.args(["-t", table]);
    let start = Instant::now();
    let out = cmd.output().context("cannot run iptables-save")?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!(
            "iptables-save -t {table} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((String::from_utf8(out.stdout)?, elapsed))
}

/// Exit code of `iptables -w 5 -W 100000 <args>` in `netns`.
fn iptables(netns: &Netns, args: &[&str]) -> anyhow::Result<i32> {
    let mut cmd = netns.command("iptables");
    let out = cmd
        .args(WAIT_ARGS)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run iptables")?;
    match out.status.code() {
        Some(code @ (0 | 1)) => Ok(code),
        _ => bail!(
            "iptables {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// What kube-proxy does before every full sync: for each jump rule from a
/// built-in chain, `iptables -N` (exit 1: exists) and `iptables -C`, then
/// `iptables -I` if the rule is missing. Returns the wall time.
pub fn ensure_jump_rules(netns: &Netns) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for (table, from, to, comment, extra) in JUMPS {
        iptables(netns, &["-N", to, "-t", table])?;
        let mut rule: Vec<&str> = extra.to_vec();
        if !comment.is_empty() {
            rule.extend(["-m", "comment", "--comment", comment]);
        }
        rule.extend(["-j", to]);
        let check: Vec<&str> = ["-C", from, "-t", table]
            .into_iter()
            .chain(rule.iter().copied())
            .collect();
        if iptables(netns, &check)? == 1 {
            let insert: Vec<&str> = ["-I", from, "-t", table]
                .into_iter()
                .chain(rule.iter().copied())
                .collect();
            if iptables(netns, &insert)? != 0 {
                bail!("iptables {} failed", insert.join(" "));
            }
        }
    }
    Ok(start.elapsed())
}

/// Median and 99th percentile of a series.
#[derive(Clone, Copy, Debug)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub samples: usize,
}

impl Percentiles {
    pub fn of(times: &[Duration]) -> Percentiles {
        let mut sorted = times.to_vec();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            samples: sorted.len(),
        }
    }
}

/// What [`time_one_change`] measured.
#[derive(Clone, Debug)]
pub struct Stats {
    pub services: usize,
    pub endpoints_per_service: usize,
    /// Whether kube-proxy would be in large cluster mode (no per-endpoint
    /// comments, stale-chain scans at most every 30 s).
    pub large_cluster_mode: bool,
    /// The first `iptables-restore` of the whole ruleset into empty tables.
    pub initial_load: Duration,
    /// One Service changed (an endpoint added), partial sync.
    pub partial: Percentiles,
    /// The `iptables-restore` of a full sync of the loaded ruleset.
    pub full: Percentiles,
    /// The jump-rule checks kube-proxy runs before each full sync (14
    /// `iptables -N` and 14 `iptables -C`, nothing to insert).
    pub full_jump_checks: Percentiles,
    /// `iptables-save -t nat` of the loaded ruleset: kube-proxy's stale
    /// chain scan (every sync below 1,000 endpoints; in large cluster mode
    /// at most every `syncPeriod`, 30 s by default).
    pub nat_save: Duration,
    pub partial_input_bytes: usize,
    pub full_input_bytes: usize,
    /// Rules in the nat table at the end, counted from `iptables-save`.
    pub nat_rules: usize,
}

/// In a fresh network namespace: loads `services` Services with
/// `endpoints` endpoints each as kube-proxy's first sync would, then times
/// `repeats` single-Service changes (one endpoint added to a different
/// Service each time) applied as partial syncs, then `full_syncs` full
/// syncs (at least one; at 10,000 Services each takes minutes). The
/// namespace is deleted at the end, also on error.
pub fn time_one_change(services: usize, endpoints: usize, repeats: usize, full_syncs: usize) -> anyhow::Result<Stats> {
    if services == 0 || repeats == 0 {
        bail!("need at least one Service and one repeat");
    }
    let netns = Netns::new("kp").context("cannot create a network namespace (needs root)")?;
    let mut ruleset = Ruleset::new(services, endpoints);

    ensure_jump_rules(&netns)?;
    let full_input = ruleset.full_sync_input();
    let initial_load = ruleset.apply(&full_input, &netns)?;

    let mut partial = Vec::with_capacity(repeats);
    let mut partial_input_bytes = 0;
    for r in 0..repeats {
        // Spread the changed Services over the table.
        let i = (r * 7919) % services;
        ruleset.add_endpoint(i)?;
        let input = ruleset.partial_sync_input(i);
        partial_input_bytes = input.len();
        partial.push(ruleset.apply(&input, &netns)?);
    }

    let (mut full, mut checks) = (Vec::new(), Vec::new());
    let mut full_input_bytes = 0;
    for _ in 0..full_syncs.max(1) {
        checks.push(ensure_jump_rules(&netns)?);
        let input = ruleset.full_sync_input();
        full_input_bytes = input.len();
        full.push(ruleset.apply(&input, &netns)?);
    }

    let (saved, nat_save) = save("nat", &netns)?;
    let nat_rules = saved.lines().filter(|l| l.starts_with("-A KUBE-")).count();
    if nat_rules != ruleset.nat_rules() {
        bail!(
            "the nat table holds {nat_rules} kube-proxy rules, expected {}",
            ruleset.nat_rules()
        );
    }
    Ok(Stats {
        services,
        endpoints_per_service: endpoints,
        large_cluster_mode: ruleset.large_cluster_mode(),
        initial_load,
        partial: Percentiles::of(&partial),
        full: Percentiles::of(&full),
        full_jump_checks: Percentiles::of(&checks),
        nat_save,
        partial_input_bytes,
        full_input_bytes,
        nat_rules,
    })
}

/// SHA-256 (FIPS 180-4). The bench crate has no hashing dependency and this
/// is only used for chain names.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (slot, word) in w.iter_mut().zip(block.chunks_exact(4)) {
            *slot = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for t in 16..64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16].wrapping_add(s0).wrapping_add(w[t - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for (k, wt) in K.iter().zip(w.iter()) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(*k).wrapping_add(*wt);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (slot, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *slot = slot.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, v) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// RFC 4648 base32 with `=` padding (Go's `base32.StdEncoding`).
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u64, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u64::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    let padding = (8 - out.len() % 8) % 8;
    out.extend(std::iter::repeat_n('=', padding));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_and_base32_match_their_standards() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Two blocks.
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // RFC 4648 section 10.
        for (input, want) in [
            ("", ""),
            ("f", "MY======"),
            ("fo", "MZXQ===="),
            ("foo", "MZXW6==="),
            ("foob", "MZXW6YQ="),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI======"),
        ] {
            assert_eq!(base32(input.as_bytes()), want, "base32({input:?})");
        }
    }

    #[test]
    fn chain_names_match_real_kube_proxy() {
        // Chains as kube-proxy names them on real clusters (kubeadm's
        // default Services).
        assert_eq!(
            svc_chain_name("default/kubernetes:https", "tcp"),
            "KUBE-SVC-NPX46M4PTMTKRN6Y"
        );
        assert_eq!(
            svc_chain_name("kube-system/kube-dns:dns", "udp"),
            "KUBE-SVC-TCOU7JCQXEZGVUNU"
        );
        assert_eq!(
            svc_chain_name("kube-system/kube-dns:dns-tcp", "tcp"),
            "KUBE-SVC-ERIFXISQEP7F7OF4"
        );
        assert_eq!(
            svc_chain_name("kube-system/kube-dns:metrics", "tcp"),
            "KUBE-SVC-JD5MR3NA4I4DYORP"
        );
    }

    #[test]
    fn chain_names_are_stable_and_sixteen_base32_characters() {
        let a = Ruleset::new(50, 3);
        let b = Ruleset::new(50, 3);
        let mut seen = std::collections::HashSet::new();
        for i in 0..50 {
            assert_eq!(a.svc_chain(i), b.svc_chain(i));
            assert_eq!(a.sep_chains(i), b.sep_chains(i));
            let svc = a.svc_chain(i);
            let seps = a.sep_chains(i);
            assert_eq!(seps.len(), 3);
            for (chain, prefix) in std::iter::once((&svc, "KUBE-SVC-")).chain(seps.iter().map(|s| (s, "KUBE-SEP-"))) {
                let hash = chain.strip_prefix(prefix).unwrap();
                assert_eq!(hash.len(), 16, "{chain}");
                assert!(
                    hash.bytes()
                        .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)),
                    "{chain}"
                );
                assert!(
                    chain.len() <= 28,
                    "iptables chain names are at most 28 characters: {chain}"
                );
                assert!(seen.insert(chain.clone()), "duplicate chain {chain}");
            }
        }
        assert_eq!(
            a.svc_chain(7),
            svc_chain_name("default/svc-7:http", "tcp"),
            "the hash input is namespace/name:port + protocol"
        );
        assert_eq!(
            a.sep_chains(7)[1],
            sep_chain_name("default/svc-7:http", "tcp", "10.42.0.23:8080")
        );
    }

    #[test]
    fn probabilities_are_formatted_as_kube_proxy_does() {
        assert_eq!(probability(2), "0.5000000000");
        assert_eq!(probability(3), "0.3333333333");
        assert_eq!(probability(6), "0.1666666667");
        assert_eq!(probability(7), "0.1428571429");
        let input = Ruleset::new(1, 4).full_sync_input();
        let probabilities: Vec<&str> = input
            .lines()
            .filter_map(|l| {
                l.split_once("--probability ")
                    .map(|(_, rest)| rest.split(' ').next().unwrap())
            })
            .collect();
        assert_eq!(probabilities, ["0.2500000000", "0.3333333333", "0.5000000000"]);
    }

    /// The `-A` lines of each chain in a restore input, per table.
    fn rules_by_chain(input: &str, table: &str) -> std::collections::BTreeMap<String, usize> {
        let mut in_table = false;
        let mut map = std::collections::BTreeMap::new();
        for line in input.lines() {
            if let Some(t) = line.strip_prefix('*') {
                in_table = t == table;
            } else if in_table {
                if let Some(chain) = line.strip_prefix(':') {
                    map.entry(chain.split(' ').next().unwrap().to_string()).or_insert(0);
                } else if let Some(rule) = line.strip_prefix("-A ") {
                    *map.entry(rule.split(' ').next().unwrap().to_string()).or_insert(0) += 1;
                }
            }
        }
        map
    }

    #[test]
    fn full_sync_has_every_chain_and_rule() {
        for (n, k) in [(1, 1), (10, 2), (300, 3), (1000, 2)] {
            let r = Ruleset::new(n, k);
            let input = r.full_sync_input();
            let nat = rules_by_chain(&input, "nat");
            assert_eq!(nat.len(), r.nat_chains(), "{n}x{k}");
            assert_eq!(nat.len(), 4 + n * (1 + k));
            assert_eq!(nat.values().sum::<usize>(), r.nat_rules());
            assert_eq!(r.nat_rules(), 5 + n * (2 + 3 * k));
            assert_eq!(nat["KUBE-SERVICES"], n + 1);
            assert_eq!(nat["KUBE-POSTROUTING"], 3);
            assert_eq!(nat["KUBE-MARK-MASQ"], 1);
            assert_eq!(nat["KUBE-NODEPORTS"], 0);
            assert_eq!(input.matches(" -j DNAT --to-destination ").count(), n * k);
            assert_eq!(input.matches("-m statistic --mode random").count(), n * (k - 1));
            assert_eq!(input.matches("\nCOMMIT\n").count(), 2);
            // The nodeports tail call is the last rule of KUBE-SERVICES.
            let last = input.lines().rfind(|l| l.starts_with("-A KUBE-SERVICES")).unwrap();
            assert!(
                last.ends_with("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"),
                "{last}"
            );
            let filter = rules_by_chain(&input, "filter");
            assert_eq!(filter["KUBE-FORWARD"], 3);
        }
    }

    #[test]
    fn rules_look_like_kube_proxys() {
        let r = Ruleset::new(3, 2);
        let input = r.full_sync_input();
        let svc = r.svc_chain(1);
        let seps = r.sep_chains(1);
        let want = [
            format!(
                "-A KUBE-SERVICES -m comment --comment \"default/svc-1:http cluster IP\" -m tcp -p tcp \
                 -d 10.43.0.2 --dport 80 -j {svc}"
            ),
            format!(
                "-A {svc} -m comment --comment \"default/svc-1:http cluster IP\" -m tcp -p tcp -d 10.43.0.2 \
                 --dport 80 ! -s 10.42.0.0/16 -j KUBE-MARK-MASQ"
            ),
            format!(
                "-A {svc} -m comment --comment \"default/svc-1:http -> 10.42.0.3:8080\" -m statistic --mode random \
                 --probability 0.5000000000 -j {}",
                seps[0]
            ),
            format!(
                "-A {svc} -m comment --comment \"default/svc-1:http -> 10.42.0.4:8080\" -j {}",
                seps[1]
            ),
            format!(
                "-A {} -m comment --comment default/svc-1:http -s 10.42.0.3 -j KUBE-MARK-MASQ",
                seps[0]
            ),
            format!(
                "-A {} -m comment --comment default/svc-1:http -m tcp -p tcp -j DNAT --to-destination 10.42.0.3:8080",
                seps[0]
            ),
            "-A KUBE-MARK-MASQ -j MARK --or-mark 0x004000".to_string(),
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE \
             --random-fully"
                .to_string(),
        ];
        for line in want {
            assert!(input.lines().any(|l| l == line), "missing {line}\nin\n{input}");
        }
    }

    #[test]
    fn large_clusters_drop_per_endpoint_comments() {
        let small = Ruleset::new(500, 2);
        assert!(!small.large_cluster_mode());
        assert!(small
            .full_sync_input()
            .contains("-m comment --comment default/svc-0:http -s 10.42.0.1 "));
        let large = Ruleset::new(1000, 2);
        assert!(large.large_cluster_mode());
        let input = large.full_sync_input();
        let sep = &large.sep_chains(0)[0];
        assert!(input.contains(&format!("-A {sep} -s 10.42.0.1 -j KUBE-MARK-MASQ\n")));
        assert!(
            !input.contains(" -> "),
            "no per-endpoint comments in large cluster mode"
        );
        // Service-level comments stay.
        assert_eq!(input.matches(" cluster IP\"").count(), 2 * 1000);
    }

    #[test]
    fn partial_sync_rewrites_only_the_changed_service() {
        let mut r = Ruleset::new(200, 2);
        let added = r.add_endpoint(42).unwrap();
        assert_eq!(added, "10.42.1.151", "pod 400 comes after the 400 initial pods");
        let input = r.partial_sync_input(42);
        let nat = rules_by_chain(&input, "nat");
        let mut expected: Vec<String> = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
            .map(String::from)
            .to_vec();
        expected.push(r.svc_chain(42));
        expected.extend(r.sep_chains(42));
        expected.sort();
        assert_eq!(nat.keys().cloned().collect::<Vec<_>>(), expected);
        // KUBE-SERVICES still lists every Service, as kube-proxy rewrites
        // it whole on every sync.
        assert_eq!(nat["KUBE-SERVICES"], 200 + 1);
        assert_eq!(nat[&r.svc_chain(42)], 1 + 3);
        for sep in r.sep_chains(42) {
            assert_eq!(nat[&sep], 2);
        }
        assert_eq!(
            input.matches(" -j DNAT --to-destination ").count(),
            3,
            "only the changed Service's endpoints"
        );
        assert!(input.contains(&format!("--to-destination {added}:8080\n")));
        assert!(input.contains("--probability 0.3333333333"));
        assert!(!input.contains(&format!(":{} ", r.svc_chain(41))));
        // The filter table is in every sync.
        assert_eq!(rules_by_chain(&input, "filter")["KUBE-FORWARD"], 3);
        // A full sync of the changed ruleset has everything.
        let full = r.full_sync_input();
        assert_eq!(rules_by_chain(&full, "nat").values().sum::<usize>(), r.nat_rules());
        assert_eq!(r.nat_rules(), 5 + 199 * (2 + 3 * 2) + (2 + 3 * 3));
    }

    #[test]
    fn addresses_follow_the_plan() {
        assert_eq!(cluster_ip(0), "10.43.0.1");
        assert_eq!(cluster_ip(9999), "10.43.39.250");
        assert_eq!(pod_ip(0), "10.42.0.1");
        assert_eq!(pod_ip(19999), "10.42.79.250");
        let r = Ruleset::new(10_000, 2);
        assert_eq!(r.endpoints(9999), ["10.42.79.249:8080", "10.42.79.250:8080"]);
        assert_eq!(r.total_endpoints(), 20_000);
    }

    #[test]
    fn loads_100_services_into_a_network_namespace() {
        if !testbed::require_privileges("kube_proxy::loads_100_services_into_a_network_namespace") {
            return;
        }
        let netns = Netns::new("kp").unwrap();
        let mut r = Ruleset::new(100, 2);
        ensure_jump_rules(&netns).unwrap();
        r.apply(&r.full_sync_input(), &netns).unwrap();
        let (saved, _) = save("nat", &netns).unwrap();
        let kube_rules = saved.lines().filter(|l| l.starts_with("-A KUBE-")).count();
        assert_eq!(kube_rules, r.nat_rules(), "{saved}");
        for i in [0, 57, 99] {
            let svc = r.svc_chain(i);
            let jump = format!(
                "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"default/svc-{i}:http cluster IP\" \
                 -m tcp --dport 80 -j {svc}",
                cluster_ip(i)
            );
            assert!(saved.lines().any(|l| l == jump), "missing {jump}");
            assert!(saved.contains(&format!(":{svc} - [0:0]")));
            for (sep, ep) in r.sep_chains(i).iter().zip(r.endpoints(i)) {
                assert!(saved.contains(&format!("-A {sep} ")), "{sep}");
                assert!(saved.contains(&format!("--to-destination {ep}")), "{ep}");
            }
        }
        assert!(saved.contains("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"));
        assert!(saved.contains("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"));
        assert_eq!(saved.matches("-m statistic --mode random").count(), 100);

        // A partial sync after one endpoint is added to svc-57.
        let added = r.add_endpoint(57).unwrap();
        r.apply(&r.partial_sync_input(57), &netns).unwrap();
        let (saved, _) = save("nat", &netns).unwrap();
        assert_eq!(
            saved.lines().filter(|l| l.starts_with("-A KUBE-")).count(),
            r.nat_rules()
        );
        assert!(saved.contains(&format!("--to-destination {added}:8080")));
        assert_eq!(saved.matches(&format!("-A {} ", r.svc_chain(57))).count(), 4);
        // Jump rules are ensured once, not duplicated by a second check.
        ensure_jump_rules(&netns).unwrap();
        let (saved, _) = save("nat", &netns).unwrap();
        assert_eq!(saved.matches("-j KUBE-SERVICES").count(), 2);
        let path_kept = netns.path();
        drop(netns);
        assert!(!path_kept.exists(), "the namespace is deleted on drop");
    }
}

//! TCP throughput between network namespaces, measured with iperf3.

use std::net::IpAddr;
use std::process::{Child, Stdio};

use anyhow::Context;
use serde_json::Value;
use testbed::Netns;

/// The port every server listens on (one server per namespace).
pub const PORT: u16 = 5201;

/// An `iperf3 -s` in a namespace (both families), stopped on drop.
pub struct Server(Child);

impl Server {
    pub fn start(ns: &Netns) -> anyhow::Result<Server> {
        let child = ns
            .command("iperf3")
            .args(["-s", "-p", &PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run iperf3")?;
        Ok(Server(child))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `secs`-long TCP run from `client` to the [`Server`] at `server`:
/// bits per second received.
pub fn tcp_throughput(client: &Netns, server: IpAddr, secs: u64) -> anyhow::Result<f64> {
    let out = client
        .command("iperf3")
        .args(["-c", &server.to_string(), "-p", &PORT.to_string()])
        .args(["-J", "-t", &secs.to_string()])
        .output()
        .context("cannot run iperf3")?;
    let report: Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3 to {server} reported no throughput: {}", report["error"]))
}

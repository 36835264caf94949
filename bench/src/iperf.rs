//! TCP throughput between network namespaces, measured with iperf3.

use std::net::IpAddr;
use std::process::{Child, Stdio};

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use testbed::Netns;

/// The port every server listens on (one server per namespace).
pub const PORT: u16 = 5201;

/// An `iperf3 -s` in a namespace (both families), stopped on drop.
pub struct Server(Child);

impl Server {
    /// Starts the server and waits until it listens, so that the first
    /// run does not meet a closed port.
    pub fn start(ns: &Netns) -> anyhow::Result<Server> {
        let child = ns
            .command("iperf3")
            .args(["-s", "-p", &PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run iperf3")?;
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ns.run(|| listening(PORT)) {
            if Instant::now() > deadline {
                bail!("iperf3 did not listen on port {PORT} within 5 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a TCP socket of the calling thread's network namespace listens
/// on `port` (any address, either family). The thread's own view: /proc/net
/// would show the process's namespace.
fn listening(port: u16) -> bool {
    let wanted = format!(":{port:04X} ");
    ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
        .iter()
        .any(|table| {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            // Fields: sl local_address rem_address st ...; st 0A is LISTEN.
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && format!("{} ", fields[1]).ends_with(&wanted) && fields[3] == "0A"
            })
        })
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_listening_socket_is_seen_and_a_closed_port_is_not() {
        let listener = std::net::TcpListener::bind("[::]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(super::listening(port));
        drop(listener);
        assert!(!super::listening(port));
    }
}

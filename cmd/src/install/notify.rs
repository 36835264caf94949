//! systemd's readiness protocol (sd_notify): one datagram per state change
//! to the unix socket named by `$NOTIFY_SOCKET`, a path or, starting with
//! '@', an abstract name. Without the variable there is no service manager
//! listening and nothing is sent.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use netstack::RunningAgent;

pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names; None when it is unset, or
    /// (with a warning) when it cannot be used: the agent runs the same
    /// without a manager to tell.
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        Notifier::to(name.as_bytes())
            .inspect_err(|e| tracing::warn!(socket = ?name, error = %e, "cannot use NOTIFY_SOCKET; not notifying"))
            .ok()
    }

    fn to(name: &[u8]) -> io::Result<Notifier> {
        let to = match name.strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
            None => SocketAddr::from_pathname(OsStr::from_bytes(name))?,
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            to,
        })
    }

    /// Sends `state`, e.g. "READY=1". A manager that cannot be told is no
    /// reason to stop the agent: a failure is logged and that is all.
    pub fn tell(&self, state: &str) {
        match self.socket.send_to_addr(state.as_bytes(), &self.to) {
            Ok(_) => tracing::debug!(state, "service manager notified"),
            Err(e) => tracing::warn!(state, error = %e, "cannot notify the service manager"),
        }
    }
}

/// Runs `agent` until `stop` resolves, telling the service manager
/// READY=1 once the agent is ready (when `/readyz` would answer 200) and
/// STOPPING=1 as it begins to stop. Returns what `RunningAgent::run_until`
/// does.
pub async fn run_until(agent: RunningAgent, notifier: Notifier, stop: impl Future<Output = ()>) -> bool {
    let mut stop = std::pin::pin!(stop);
    let stopped_first = tokio::select! {
        () = ready(&agent) => { notifier.tell("READY=1"); false }
        () = &mut stop => true,
    };
    let stopping = async {
        if !stopped_first {
            stop.await;
        }
        notifier.tell("STOPPING=1");
    };
    agent.run_until(stopping).await
}

/// Resolves once the agent is ready. Readiness has no event to wait on
/// (it is computed from every module and watcher), so it is polled; this
/// runs only until the first time it holds.
async fn ready(agent: &RunningAgent) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !agent.status().ready {
        tick.tick().await;
    }
}

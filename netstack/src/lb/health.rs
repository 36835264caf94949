//! Health checks for `externalTrafficPolicy: Local`: on each such
//! Service's `healthCheckNodePort` the agent answers HTTP with 200 while
//! this node has a ready endpoint of it and 503 while it has none, with the
//! JSON body kube-proxy sends, so a cloud load balancer only sends traffic
//! to nodes that can serve it without a second hop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What one health check port reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

#[derive(Default)]
pub struct HealthServers {
    /// Per port: what it reports (shared with its task) and its task.
    ports: HashMap<u16, (Arc<Mutex<Health>>, JoinHandle<()>)>,
}

impl HealthServers {
    /// Serves exactly `wanted`: opens new ports, updates the others, closes
    /// the ones no longer wanted. A port that cannot be opened is an error
    /// naming it; the rest are still served.
    pub async fn set(&mut self, wanted: HashMap<u16, Health>) -> Result<(), String> {
        self.ports.retain(|port, (_, task)| {
            let keep = wanted.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut failed = Vec::new();
        for (port, health) in wanted {
            if let Some((shared, _)) = self.ports.get(&port) {
                *shared.lock().expect("health lock") = health;
                continue;
            }
            // [::] takes IPv4 too (v4-mapped), as kube-proxy's listener does.
            match TcpListener::bind(("::", port)).await {
                Ok(listener) => {
                    let shared = Arc::new(Mutex::new(health));
                    let task = tokio::spawn(serve(listener, shared.clone()));
                    self.ports.insert(port, (shared, task));
                }
                Err(e) => failed.push(format!(
                    "healthCheckNodePort {port} of Service {}/{}: {e}",
                    health.namespace, health.name
                )),
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(failed.join("; ")),
        }
    }
}

impl Drop for HealthServers {
    fn drop(&mut self) {
        for (_, task) in self.ports.values() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, health: Arc<Mutex<Health>>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "health check port cannot accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let now = health.lock().expect("health lock").clone();
        tokio::spawn(answer(stream, now));
    }
}

/// One request, one answer, whatever was asked (as kube-proxy does).
async fn answer(mut stream: TcpStream, health: Health) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // Read the request head (bounded) so the client sees an orderly reply.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (code, reason) = match health.local_endpoints {
        0 => (503, "Service Unavailable"),
        _ => (200, "OK"),
    };
    let body = serde_json::json!({
        "service": {"namespace": health.namespace, "name": health.name},
        "localEndpoints": health.local_endpoints,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let reply = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

//! The admin API's access rules: a 0600 unix socket, an open loopback TCP
//! listener, a token-guarded non-loopback one, and a refusal to take over
//! the socket of a live agent.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use common::{eventually, Bed};
use netstack::{Agent, AgentError};

/// A raw HTTP/1.0 GET, returning the status code and body.
fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn socket_is_private_and_status_reports_every_kind() {
    let bed = Bed::new().await;
    let agent = bed.agent("node-a").await;
    let mode = std::fs::metadata(bed.admin_socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    eventually("ready", || async { bed.admin_get("/readyz").await.status == 200 }).await;
    let status: serde_json::Value = serde_json::from_str(&bed.admin_get("/v1/status").await.body).unwrap();
    assert_eq!(status["node"], "node-a");
    assert_eq!(status["ready"], true);
    assert_eq!(status["versions"]["netlet"], env!("CARGO_PKG_VERSION"));
    let kinds: Vec<&str> = status["cache"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["Node", "Namespace", "Pod", "Service", "EndpointSlice", "NetworkPolicy"]
    );
    assert_eq!(status["store"]["schemaVersion"], 1);

    // A second agent must not share the store, nor push the live one off
    // its socket.
    let second = Agent::new(bed.config("node-a"), bed.client.clone()).start().await;
    match second {
        Err(AgentError::Store(e)) => assert!(e.to_string().contains("in use by another netlet agent"), "{e}"),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a second agent opened the store"),
    }
    let mut other_store = bed.config("node-a");
    other_store.state_dir = bed.dir.path().join("state2");
    match Agent::new(other_store, bed.client.clone()).start().await {
        Err(AgentError::Admin(e)) => assert!(e.to_string().contains("already serving"), "{e}"),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a second agent took the socket"),
    }
    agent.shutdown().await;
    assert!(!bed.admin_socket().exists(), "the socket is removed on shutdown");
}

#[tokio::test]
async fn tcp_listener_needs_a_token_off_loopback() {
    let bed = Bed::new().await;
    let token_file = bed.dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let mut cfg = bed.config("node-a");
    cfg.admin.listen = Some("0.0.0.0:0".parse().unwrap());
    cfg.admin.token_file = Some(token_file);
    let agent = Agent::new(cfg, bed.client.clone()).start().await.unwrap();
    let port = agent.admin_tcp_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let (code, _) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz", None))
        .await
        .unwrap();
    assert_eq!(code, 401);
    let (code, _) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz", Some("wrong")))
        .await
        .unwrap();
    assert_eq!(code, 401);
    let (code, body) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz", Some("s3cret")))
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    agent.shutdown().await;
}

#[tokio::test]
async fn loopback_tcp_listener_is_open() {
    let bed = Bed::new().await;
    let mut cfg = bed.config("node-a");
    cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    let agent = Agent::new(cfg, bed.client.clone()).start().await.unwrap();
    let addr = agent.admin_tcp_addr().unwrap();
    let (code, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics", None))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("# TYPE netlet_cache_objects gauge"), "{body}");
    agent.shutdown().await;
}

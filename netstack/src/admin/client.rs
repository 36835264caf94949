//! A minimal HTTP/1 client for the admin unix socket, for the CLI and tests.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("cannot reach the netlet agent at {path}: {source} (is `netlet agent` running? see --socket)")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent at {path} broke off the request: {detail}")]
    Protocol { path: PathBuf, detail: String },
}

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct AdminResponse {
    pub status: u16,
    pub body: String,
}

/// `GET path` over the unix socket at `socket`.
pub async fn get(socket: &Path, path: &str) -> Result<AdminResponse, AdminClientError> {
    let resp = send_get(socket, path).await?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(socket, e.to_string()))?
        .to_bytes();
    Ok(AdminResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET path`, handing each line of a 200 answer's body to `line` as it
/// arrives (for endpoints that stream, like `/v1/policy/drops?follow=true`).
/// Any other answer comes back whole.
pub async fn get_lines(
    socket: &Path,
    path: &str,
    mut line: impl FnMut(&str),
) -> Result<AdminResponse, AdminClientError> {
    let resp = send_get(socket, path).await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    let mut whole = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| protocol(socket, e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let text = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..=end);
            match status {
                200 => line(&text),
                _ => whole.push_str(&(text + "\n")),
            }
        }
    }
    whole.push_str(&String::from_utf8_lossy(&pending));
    Ok(AdminResponse { status, body: whole })
}

fn protocol(socket: &Path, detail: String) -> AdminClientError {
    AdminClientError::Protocol {
        path: socket.to_path_buf(),
        detail,
    }
}

async fn send_get(socket: &Path, path: &str) -> Result<hyper::Response<hyper::body::Incoming>, AdminClientError> {
    let protocol = |detail: String| protocol(socket, detail);
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| AdminClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "netlet")
        .body(Empty::<Bytes>::new())
        .expect("static request parts are valid");
    sender.send_request(req).await.map_err(|e| protocol(e.to_string()))
}

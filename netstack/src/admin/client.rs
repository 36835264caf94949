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
    let protocol = |detail: String| AdminClientError::Protocol {
        path: socket.to_path_buf(),
        detail,
    };
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
    let resp = sender.send_request(req).await.map_err(|e| protocol(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(e.to_string()))?
        .to_bytes();
    Ok(AdminResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

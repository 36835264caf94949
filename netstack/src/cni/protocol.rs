//! The plugin process and the agent talk over a unix socket: one request,
//! one answer, each a line of JSON. The plugin has already checked the
//! environment and parsed the config; the agent does the work.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::spec::{code, CniError, Command};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS` as pairs.
    pub args: Vec<(String, String)>,
    /// The network config from stdin, parsed.
    pub config: Value,
}

impl Request {
    pub fn cni_version(&self) -> &str {
        self.config["cniVersion"].as_str().unwrap_or("")
    }

    /// A `CNI_ARGS` value, e.g. `K8S_POD_NAME`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The agent's answer: the document to print, or the error to print.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Response {
    Ok(Value),
    Err(CniError),
}

/// Sends `req` to the agent at `socket` (plugin side).
pub async fn call(socket: &Path, req: &Request) -> Result<Value, CniError> {
    let unreachable = |e: std::io::Error| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!("cannot reach the netlet agent at {}: {e}", socket.display()),
            "is the netlet agent running on this node?",
        )
    };
    let stream = UnixStream::connect(socket).await.map_err(unreachable)?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    write.write_all(&line).await.map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await.map_err(unreachable)?;
    match serde_json::from_str(&answer) {
        Ok(Response::Ok(v)) => Ok(v),
        Ok(Response::Err(e)) => Err(e),
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            "the netlet agent's answer is malformed",
            format!("{e}: {answer:?}"),
        )),
    }
}

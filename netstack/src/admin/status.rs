//! The agent's state as the admin API reports it, shared by the server
//! (which builds it) and the CLI (which prints it).

use serde::{Deserialize, Serialize};

use crate::cache::KindReport;
use crate::module::ModuleReport;

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub node: String,
    pub ready: bool,
    /// Why the agent is not ready, one line per reason; empty when ready.
    pub not_ready: Vec<String>,
    pub versions: Versions,
    pub uptime_seconds: u64,
    pub cache: Vec<KindReport>,
    pub modules: Vec<ModuleReport>,
    pub store: StoreReport,
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    pub netlet: String,
    /// The Kubernetes API version the agent was built against.
    pub kubernetes_api: String,
    /// The API server's own version, once it has answered.
    pub api_server: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreReport {
    pub path: String,
    pub schema_version: u32,
    pub size_bytes: u64,
}

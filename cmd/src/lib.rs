//! The `netlet` command: CLI, config loading, wiring the agent's modules,
//! and the CNI plugin entry point. Business logic lives in the other crates.

pub mod agent_cmd;
pub mod cli;
pub mod cni;
pub mod config_load;
pub mod dns_cmd;
pub mod install;
pub mod ipam_cmd;
pub mod kube_client;
pub mod logging;
pub mod nodes_cmd;
pub mod policy_cmd;
pub mod sandbox_cmd;
pub mod services_cmd;
pub mod status_cmd;

//! CNI: the specification's data shared by the plugin process and the
//! agent, the plugin-to-agent protocol, and the agent's CNI module.

pub mod blocks;
pub mod handler;
mod hook;
pub mod install;
mod metrics;
mod orphans;
pub mod protocol;
pub mod report;
mod server;
pub mod spec;

pub use hook::InterfaceHook;
pub use server::CniModule;

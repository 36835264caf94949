//! The netlet agent runtime: the shared watch cache, the local store, the
//! admin API and the module runtime. Modules (IPAM, Services, DNS, policy,
//! node routing) plug in through [`module::Module`] and read the cache;
//! they never watch the API themselves.

pub mod admin;
pub mod agent;
pub mod cache;
pub mod cni;
pub mod config;
pub mod dns;
pub mod egress;
pub mod lb;
pub mod metrics;
pub mod module;
pub mod policy;
pub mod routing;
pub mod store;
pub mod wire;

pub use agent::{Agent, AgentError, RunningAgent};
pub use config::{Config, ConfigError, RawConfig};

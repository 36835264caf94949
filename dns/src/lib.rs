//! Cluster DNS: the authority for the cluster zone answered from the shared
//! cache (the Kubernetes DNS-Based Service Discovery specification),
//! forwarding and caching for other names. hickory's types never appear in
//! this crate's interface: `forward` and `client` use them inside.
//!
//! - `name`, `zone`: what a name means in the zone and the zone's answers,
//!   independent of any wire format;
//! - `wire`: the query and response format of the serving path;
//! - `handler`: one query in, one decision out (zone, cache, forward);
//! - `udp`, `serve`: the UDP threads (batched) and the TCP tasks;
//! - `forward`: forwarding and caching for every other name;
//! - `client`: the stub resolver behind `netlet dns query`;
//! - `fixed`: a server of fixed records, the upstream of sandbox and tests;
//! - `metrics`: what the server counts.

pub mod client;
pub mod fixed;
pub mod forward;
pub mod handler;
pub mod metrics;
pub mod name;
pub mod serve;
pub mod udp;
pub mod wire;
pub mod zone;

#[cfg(test)]
mod serve_tests;
#[cfg(test)]
mod wire_tests;
#[cfg(test)]
mod zone_tests;

pub use handler::{Handler, Outcome, SharedZone, Transport};
pub use zone::{Answer, ClusterZone, PodRecords, QueryType, RData, Rcode, Record};

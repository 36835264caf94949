//! Cluster DNS: the authority for the cluster zone answered from the shared
//! cache (the Kubernetes DNS-Based Service Discovery specification),
//! forwarding and caching for other names. hickory's types stay behind one
//! module of this crate.
//!
//! So far: what a name means in the zone (`name`) and the zone's answers
//! (`zone`), independent of any wire format. Serving, forwarding and pod
//! records arrive with the rest of the cluster DNS issue.

pub mod forward;
pub mod name;
pub mod zone;

#[cfg(test)]
mod zone_tests;

pub use zone::{Answer, ClusterZone, PodRecords, QueryType, RData, Rcode, Record};

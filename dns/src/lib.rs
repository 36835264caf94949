//! Cluster DNS: the authority for the cluster zone answered from the shared
//! cache (the Kubernetes DNS-Based Service Discovery specification),
//! forwarding and caching for other names. hickory's types stay behind one
//! module of this crate.
//!
//! Arrives with the cluster DNS issue.

//! Dual-stack address allocation for pods: pools from the cluster CIDRs,
//! this node's pod CIDR blocks, per-pod leases keyed by container ID and
//! interface, and garbage collection. Pure logic: no netlink, no BPF; the
//! agent persists leases in its store before a CNI result is returned.
//!
//! Arrives with the IPAM/CNI issue.

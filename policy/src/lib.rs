//! NetworkPolicy: compiling policies into per-pod enforcement state, the BPF
//! programs that enforce it at each pod's host-side veth, and verdict
//! tracing.
//!
//! Arrives with the NetworkPolicy issue.
